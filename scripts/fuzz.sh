#!/usr/bin/env bash
# Fuzz the parsers of outside input with cargo-fuzz (libFuzzer, nightly toolchain), each target for a time budget,
# and print its executions and crashes.
#
#   bash scripts/fuzz.sh                 # every target, 60 s each
#   bash scripts/fuzz.sh gguf 600        # one target, 10 minutes
#
# Needs: `rustup toolchain install nightly` and `cargo install cargo-fuzz`.
# Corpora live under fuzz/corpus/<target> (git-ignored: they are seeded from ../shared's files, which never enter
# the repository, from the shipped scenarios, and from small files written here) and grow from run to run. A crash
# is kept by libFuzzer under <crate>/artifacts/<target>/ and fails the script; turn it into a regression test in
# the normal suite.
# Targets: gguf, safetensors (actors/fuzz: the model-file parsers); scenario (a scenario file and `--set`
# overrides through validation), data (the data-set readers), replay (the replay log's readers) (engine/fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SPARRING_SHARED:-$ROOT/../shared}
TARGETS=(gguf safetensors scenario data replay)
WANT=${1:-all}
SECONDS_EACH=${2:-60}
if [[ "$WANT" != all ]]; then
  [[ " ${TARGETS[*]} " == *" $WANT "* ]] || { echo "unknown target $WANT (targets: ${TARGETS[*]})" >&2; exit 2; }
  TARGETS=("$WANT")
fi
cargo +nightly fuzz --help > /dev/null 2>&1 || {
  echo "needs the nightly toolchain and cargo-fuzz: rustup toolchain install nightly && cargo install cargo-fuzz" >&2
  exit 2
}

# The cargo-fuzz crate of a target.
crate() {
  case $1 in
    gguf|safetensors) echo actors/fuzz ;;
    *) echo engine/fuzz ;;
  esac
}

# Seeds: small valid files, and prefixes of the real ones (parsers fail on them at every depth).
seed() {
  local t=$1 dir=$ROOT/fuzz/corpus/$1
  mkdir -p "$dir"
  [[ -n "$(ls -A "$dir")" ]] && return 0
  python3 - "$t" "$dir" <<'PY'
import struct, sys, json
t, d = sys.argv[1], sys.argv[2]
if t == "gguf":
    def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
    kv = [
        s("general.architecture") + struct.pack("<I", 8) + s("llama"),
        s("llama.block_count") + struct.pack("<I", 4) + struct.pack("<I", 1),
        s("llama.rope.freq_base") + struct.pack("<I", 6) + struct.pack("<f", 10000.0),
        s("tokenizer.ggml.tokens") + struct.pack("<I", 9) + struct.pack("<I", 8) + struct.pack("<Q", 2) + s("a") + s("b"),
    ]
    # one F32 tensor [2, 3] and one Q8_0 block (type 8: f16 scale + 32 int8)
    infos = s("w") + struct.pack("<I", 2) + struct.pack("<QQ", 3, 2) + struct.pack("<I", 0) + struct.pack("<Q", 0)
    infos += s("q") + struct.pack("<I", 1) + struct.pack("<Q", 32) + struct.pack("<I", 8) + struct.pack("<Q", 32)
    head = b"GGUF" + struct.pack("<IQQ", 3, 2, len(kv)) + b"".join(kv) + infos
    head += b"\0" * (-len(head) % 32)
    data = struct.pack("<6f", *range(6)) + b"\0" * 8 + struct.pack("<e", 0.5) + bytes(range(32))
    open(f"{d}/tiny-valid", "wb").write(head + data)
elif t == "safetensors":
    h = json.dumps({"__metadata__": {"format": "pt"},
                    "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                    "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
                    "c": {"dtype": "F16", "shape": [1], "data_offsets": [22, 24]}}).encode()
    h += b" " * (-len(h) % 8)
    open(f"{d}/tiny-valid", "wb").write(struct.pack("<Q", len(h)) + h + bytes(range(24)))
PY
  case $t in
    scenario)
      for f in scenarios/*.toml; do cp "$f" "$dir/"; done
      { cat scenarios/scripted-redteam.toml; printf '\n%%%%\ngame.rounds=2\ngame.turns=3\ndata.eval[0].limit=4\n'; } \
        > "$dir/with-overrides" ;;
    data)
      # The first byte picks the file type (byte % 3: csv, tsv, jsonl) and the layout (byte / 3 % 9).
      for f in "$SHARED"/data/*/*.jsonl "$SHARED"/data/*/*.csv scenarios/intent-data/*.jsonl; do
        [[ -f "$f" ]] || continue
        case $f in *.csv) pick='\x00' ;; *) pick='\x02' ;; esac
        { printf "$pick"; head -c 4096 "$f"; } > "$dir/$(basename "$f")"
      done ;;
    replay)
      # A real log: a short scripted run's, whole and cut.
      local bin=${SPARRING_BIN:-target/debug/sparring} run
      run=$(mktemp -d)
      if [[ -x "$bin" ]] && "$bin" run scenarios/scripted-redteam.toml -q --out "$run/r" --set game.rounds=2 \
        --set game.seeds_per_round=2 --set 'data.eval[0].limit=2' --set 'data.eval[1].limit=2' > /dev/null 2>&1; then
        head -c 16384 "$run/r/episodes.jsonl" > "$dir/log-16k"
        head -c 2048 "$run/r/episodes.jsonl" > "$dir/log-2k"
      fi
      rm -rf "$run"
      printf '{"type":"commit","round":1}\n' > "$dir/commit-only" ;;
  esac
  local real=()
  case $t in
    gguf) real=("${SPARRING_SMOLLM2_GGUF:-$HOME/.cache/sparring/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}") ;;
    safetensors) real=("$SHARED"/fixtures/tiny-llama3/model-00003-of-00003.safetensors "$SHARED"/fixtures/tiny-qwen2/*.safetensors) ;;
  esac
  for f in "${real[@]}"; do
    [[ -f "$f" ]] || continue
    for n in 4096 16384; do head -c "$n" "$f" > "$dir/prefix-$n-$(basename "$f")"; done
  done
}

# Files libFuzzer kept for a target (crashes, leaks, timeouts, out-of-memory inputs).
kept() { { find "$(crate "$1")/artifacts/$1" -type f 2>/dev/null || true; } | wc -l; }

status=0
printf '%-12s %8s %14s %10s %8s\n' target seconds executions exec/s crashes
for t in "${TARGETS[@]}"; do
  seed "$t"
  log=$(mktemp)
  before=$(kept "$t")
  set +e
  (cd "$(crate "$t")" && cargo +nightly fuzz run "$t" "$ROOT/fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -max_len=16384 -rss_limit_mb=2048 -print_final_stats=1) > "$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  after=$(kept "$t")
  crashes=$((after - before))
  printf '%-12s %8s %14s %10s %8s\n' "$t" "$SECONDS_EACH" "${runs:-?}" "$(( ${runs:-0} / SECONDS_EACH ))" "$crashes"
  if [[ $rc -ne 0 || $crashes -gt 0 ]]; then
    status=1
    echo "$t: exit $rc; the end of its log:" >&2
    tail -30 "$log" >&2
  fi
  rm -f "$log"
done
exit $status
