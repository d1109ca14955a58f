#!/usr/bin/env bash
# The intent flagship (scenarios/intent-advgame-dpo.toml, all 40 rounds) in one process against the same run with
# its attacker, defender and judge on three `sparring node`s on loopback (a, b, c): wall time of `sparring run` as a
# whole process, in alternating pairs (the order swapped every pair) after one warm-up run of each; medians, the
# ratio of the medians and the median of the per-pair ratios, and the same for the runs' mean round time; then a
# check that every run's records (episodes.jsonl, metrics.jsonl, summary.json) are byte-identical to the first
# in-process run's.
#
# usage: bash scripts/bench-cluster.sh     (builds nothing: target/debug/sparring or $SPARRING_BIN, copied aside
#                                           first so that a build in the tree meanwhile does not change it)
# env: PAIRS (5); SCENARIO (scenarios/intent-advgame-dpo.toml); OUT (a new temporary directory, kept); EXTRA_SET
#      (more --set overrides for both sides, space-separated, e.g. "game.rounds=10"); WARM_NODES=1 to keep one set
#      of nodes for every run instead of fresh nodes for each.
#
# Fresh nodes by default, started before the timer: a node is a long-lived process, and the intent players cache
# their warm start per process, so a node that already built a player skips the warm start (≈ 5 s of the run) that
# the in-process run pays; WARM_NODES=1 shows that case. The nodes and the game share this machine's cores: on a
# 2-core machine three node processes and the game compete for 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=${SCENARIO:-scenarios/intent-advgame-dpo.toml}
PAIRS=${PAIRS:-5}
OUT=${OUT:-$(mktemp -d /tmp/bench-cluster.XXXXXX)}
mkdir -p "$OUT"
BIN="$OUT/sparring"
cp "${SPARRING_BIN:-target/debug/sparring}" "$BIN"

COOKIE_ENV=SPARRING_BENCH_CLUSTER_COOKIE
export "$COOKIE_ENV=bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"

pids=()
stop_nodes() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
trap stop_nodes EXIT

# start node $1 on a free loopback port; sets $addr
start_node() {
    local name=$1 log="$OUT/node-$1.log"
    "$BIN" node --listen 127.0.0.1:0 --name "$name" --cookie-env "$COOKIE_ENV" >"$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 600); do
        addr=$(sed -n 's/^node .* listening on //p' "$log" | head -1)
        [[ -n $addr ]] && return 0
        sleep 0.05
    done
    echo "node $name did not start: $(cat "$log")" >&2
    exit 1
}

# three nodes, and the overrides that place the roles on them
on_nodes=()
start_nodes() {
    local a b c
    start_node a; a=$addr
    start_node b; b=$addr
    start_node c; c=$addr
    on_nodes=(--set "cluster={nodes=[{name=\"a\",addr=\"$a\"},{name=\"b\",addr=\"$b\"},{name=\"c\",addr=\"$c\"}],cookie_env=\"$COOKIE_ENV\"}"
        --set attacker.node=a --set defender.node=b --set judge.node=c)
}

extra=()
for s in ${EXTRA_SET:-}; do extra+=(--set "$s"); done

# one run: $1 = local|nodes, $2 = run directory; sets $wall (seconds) and $round (mean round, ms)
run_one() {
    local side=$1 dir=$2 t0 t1 sets=("${extra[@]}")
    if [[ $side == nodes ]]; then
        [[ ${WARM_NODES:-0} == 1 && ${#pids[@]} -gt 0 ]] || start_nodes
        sets+=("${on_nodes[@]}")
    fi
    rm -rf "$dir"
    t0=$(date +%s%N)
    if ! "$BIN" run "$SCENARIO" --out "$dir" --quiet "${sets[@]}" >"$dir.log" 2>&1; then
        echo "$side run failed: $(tail -5 "$dir.log")" >&2
        exit 1
    fi
    t1=$(date +%s%N)
    [[ $side == nodes && ${WARM_NODES:-0} != 1 ]] && stop_nodes
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    round=$(sed -n 's/^mean round \([0-9.]*\) ms.*/\1/p' "$dir.log")
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

run_one local "$OUT/warm-local"; wl=$wall
run_one nodes "$OUT/warm-nodes"; wn=$wall
echo "warm-up: local $wl s, nodes $wn s"
: >"$OUT/times"
for i in $(seq "$PAIRS"); do
    if (( i % 2 )); then order=(local nodes); else order=(nodes local); fi
    declare -A w=() r=()
    for side in "${order[@]}"; do
        run_one "$side" "$OUT/$side-$i"
        w[$side]=$wall
        r[$side]=$round
    done
    echo "$i ${w[local]} ${w[nodes]} ${r[local]} ${r[nodes]}" >>"$OUT/times"
    echo "pair $i (${order[0]} first): wall local ${w[local]} s, nodes ${w[nodes]} s ($(ratio "${w[nodes]}" "${w[local]}")×);" \
        "mean round local ${r[local]} ms, nodes ${r[nodes]} ms ($(ratio "${r[nodes]}" "${r[local]}")×)"
done

col() { awk -v c="$1" '{ print $c }' "$OUT/times" | median; }
wl=$(col 2) wn=$(col 3) rl=$(col 4) rn=$(col 5)
pw=$(awk '{ print $3 / $2 }' "$OUT/times" | median)
pr=$(awk '{ print $5 / $4 }' "$OUT/times" | median)
echo "median wall: local $wl s, nodes $wn s: ratio of medians $(ratio "$wn" "$wl")×, median of pair ratios $(printf '%.3f' "$pw")×"
echo "median mean round: local $rl ms, nodes $rn ms: ratio of medians $(ratio "$rn" "$rl")×, median of pair ratios $(printf '%.3f' "$pr")×"

# records: every run against the first in-process run
ref="$OUT/local-1"
same=0 differ=0
for dir in "$OUT"/warm-* "$OUT"/local-* "$OUT"/nodes-*; do
    [[ -d $dir ]] || continue
    for f in episodes.jsonl metrics.jsonl summary.json; do
        if cmp -s "$ref/$f" "$dir/$f"; then
            same=$((same + 1))
        else
            differ=$((differ + 1))
            echo "DIFFERS: $dir/$f"
        fi
    done
done
echo "records: $same files identical to $ref's, $differ differ"
echo "output kept in $OUT"
(( differ == 0 ))
