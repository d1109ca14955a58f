#!/usr/bin/env bash
# Byte identity of the shipped scenarios: runs each one and compares the SHA-256 of its episodes.jsonl,
# metrics.jsonl and summary.json with the digests recorded in scripts/byte-identity.digests.
#
#   bash scripts/byte-identity.sh            # check (the short scenarios: intent-* and scripted-*)
#   bash scripts/byte-identity.sh --all      # check, with the SmolLM2 scenarios cut to one round (needs the model)
#   bash scripts/byte-identity.sh --record   # write the digests of this build (before a refactoring)
#   SPARRING_BIN=/tmp/old/sparring bash scripts/byte-identity.sh --record --all   # of another build
#
# A refactoring that is meant to change no behaviour records on the old tree and checks on the new one. The digests
# also carry the CPU they were recorded on: the matrix kernels pick their SIMD path at run time, so floats (and so
# digests) may differ between CPU models. On another CPU the script says so and checks that two runs of each scenario
# are byte-identical to each other (determinism by seed) instead.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=check
all=0
for arg in "$@"; do
    case "$arg" in
        --record) mode=record ;;
        --all) all=1 ;;
        *) echo "usage: $0 [--record] [--all]" >&2; exit 2 ;;
    esac
done

digests=scripts/byte-identity.digests
# SPARRING_BIN: a binary built elsewhere (e.g. the old tree's, to record), else this tree's
if [[ -n ${SPARRING_BIN:-} ]]; then
    bin=$SPARRING_BIN
else
    cargo build --quiet --features "${FEATURES:-wgpu}" --bin sparring
    bin=target/debug/sparring
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cpu=$( (grep -m1 'model name' /proc/cpuinfo; grep -m1 '^flags' /proc/cpuinfo) | sha256sum | cut -c1-16)

scenarios=(scenarios/intent-*.toml scenarios/scripted-*.toml)
if [[ $all == 1 ]]; then
    scenarios+=(scenarios/smollm2-*.toml)
fi

# one scenario into a run directory; SmolLM2 scenarios are cut to one round so the check stays minutes long
run_one() {
    local file=$1 out=$2 sets=()
    case "$file" in
        scenarios/smollm2-*) sets=(--set game.rounds=1) ;;
    esac
    "$bin" run "$file" --out "$out" --quiet "${sets[@]}" >/dev/null
}

digest_of() {
    local file=$1 out=$2 name
    name=$(basename "$file" .toml)
    for f in episodes.jsonl metrics.jsonl summary.json; do
        printf '%s %s %s\n' "$name" "$f" "$(sha256sum < "$out/$f" | cut -c1-64)"
    done
}

if [[ $mode == record ]]; then
    {
        echo "cpu $cpu"
        for file in "${scenarios[@]}"; do
            run_one "$file" "$work/$(basename "$file" .toml)"
            digest_of "$file" "$work/$(basename "$file" .toml)"
        done
    } > "$digests.new"
    # keep recorded lines of scenarios not run this time (the SmolLM2 ones without --all)
    if [[ -f $digests ]]; then
        grep -v '^cpu ' "$digests" | while read -r name f d; do
            grep -q "^$name $f " "$digests.new" || echo "$name $f $d"
        done >> "$digests.new"
    fi
    mv "$digests.new" "$digests"
    echo "recorded $(grep -vc '^cpu ' "$digests") digests in $digests (cpu $cpu)"
    exit 0
fi

recorded_cpu=$(sed -n 's/^cpu //p' "$digests")
failed=0
for file in "${scenarios[@]}"; do
    name=$(basename "$file" .toml)
    run_one "$file" "$work/$name"
    if [[ $cpu == "$recorded_cpu" ]]; then
        while read -r n f d; do
            want=$(sed -n "s/^$n $f //p" "$digests")
            if [[ -z $want ]]; then
                echo "MISSING  $n $f (no recorded digest; run --record on the old tree)"; failed=1
            elif [[ $want != "$d" ]]; then
                echo "DIFFERS  $n $f"; failed=1
            else
                echo "same     $n $f"
            fi
        done < <(digest_of "$file" "$work/$name")
    else
        run_one "$file" "$work/$name-again"
        if diff <(digest_of "$file" "$work/$name") <(digest_of "$file" "$work/$name-again") >/dev/null; then
            echo "same     $name (two runs; digests were recorded on another CPU, $recorded_cpu, this is $cpu)"
        else
            echo "DIFFERS  $name: two runs of one scenario and seed differ"; failed=1
        fi
    fi
done
if [[ $failed == 1 ]]; then
    echo "byte identity: FAILED" >&2
    exit 1
fi
echo "byte identity: ok"
