#!/usr/bin/env bash
# `sparring serve` against llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) on the same GGUF with 2
# threads, measured side by side in one run with one load generator (scripts/serve_load.py): completion tokens/s
# and p50/p99 latency at concurrency 1, 4 and 16, max_tokens 64, greedy, the same prompts; each server's peak RSS;
# the loopback round trip of a request that does no model work (GET /health) and of a 1-token completion.
#
# usage: bash scripts/bench-serve.sh            (needs: pip install 'llama-cpp-python[server]' (or LLAMACPP_PYTHON=a venv's python); the model from
#                                                 scripts/fetch-model.sh; a built target/debug/sparring or $SPARRING_BIN)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SPARRING_BIN:-target/debug/sparring}
GGUF=${SPARRING_SMOLLM2_GGUF:-$HOME/.cache/sparring/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
PS=${PORT_SPARRING:-18081}
PL=${PORT_LLAMACPP:-18082}
REQS=${REQUESTS:-32}
OUT=${OUT:-/tmp/bench-serve}
mkdir -p "$OUT"

"$BIN" serve scenarios/smollm2-advgame.toml --role defender --addr "127.0.0.1:$PS" >"$OUT/sparring.log" 2>&1 &
SP=$!
"${LLAMACPP_PYTHON:-python3}" -m llama_cpp.server --model "$GGUF" --model_alias smollm2 --n_threads 2 --n_threads_batch 2 \
  --n_ctx 4096 --host 127.0.0.1 --port "$PL" >"$OUT/llamacpp.log" 2>&1 &
LP=$!
trap 'kill $SP $LP 2>/dev/null || true' EXIT

wait_up() { for _ in $(seq 600); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "no server at $1" >&2; exit 1; }
wait_up "http://127.0.0.1:$PS/health"
wait_up "http://127.0.0.1:$PL/v1/models"

load() { python3 scripts/serve_load.py "$1" "$2" --concurrency "$3" --requests "$4" --max-tokens 64; }
echo "server concurrency requests completion_tokens wall_s tok_per_s p50_ms p99_ms errors"
for c in 1 4 16; do
  n=$(( c == 1 ? 8 : REQS ))
  # warm-up, then the measured load, alternating the two servers
  load "http://127.0.0.1:$PS/v1" defender "$c" "$c" >/dev/null
  load "http://127.0.0.1:$PL/v1" smollm2 "$c" "$c" >/dev/null
  for side in sparring llamacpp; do
    if [ $side = sparring ]; then r=$(load "http://127.0.0.1:$PS/v1" defender "$c" "$n"); else r=$(load "http://127.0.0.1:$PL/v1" smollm2 "$c" "$n"); fi
    echo "$r" >>"$OUT/results.jsonl"
    python3 -c "import json,sys; r=json.loads(sys.argv[2]); print(sys.argv[1], r['concurrency'], r['requests'], r['completion_tokens'], r['wall_s'], r['tok_per_s'], r['p50_ms'], r['p99_ms'], r['errors'])" "$side" "$r"
  done
done

rss() { awk '/VmHWM/ {printf "%.0f MB", $2/1024}' "/proc/$1/status"; }
echo "peak RSS: sparring serve $(rss $SP), llama.cpp server $(rss $LP)"

python3 - "$PS" <<'PY'
import http.client, json, sys, time
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port)
def t(method, path, body=None, n=200):
    xs = []
    for _ in range(n):
        s = time.perf_counter()
        c.request(method, path, body, {"Content-Type": "application/json"})
        c.getresponse().read()
        xs.append(time.perf_counter() - s)
    xs.sort()
    return 1e6 * xs[len(xs) // 2]
h = t("GET", "/health")
one = t("POST", "/v1/chat/completions", json.dumps({"model": "defender", "max_tokens": 1, "temperature": 0,
        "messages": [{"role": "user", "content": "Hi"}]}), n=50)
print(f"loopback round trip (median): GET /health {h:.0f} us; 1-token completion {one/1000:.1f} ms")
PY
