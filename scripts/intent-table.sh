#!/usr/bin/env bash
# The README's intent-game table, through `sparring run` and `sparring report`:
#   original (the warm-started defender, checkpoint r0) vs sequential vs AdvGame-DPO vs GRPO vs self-play (one
#   policy playing both sides, learning from both sides' batches), seeds 0 1 2.
# adaptive ASR: a best-response attacker trained K rounds against each frozen defender, all by ONE procedure
#   (scenarios/intent-redteam.toml: its warm-started attacker, DPO, pairwise oracle judge), on held-out harmful seeds;
# fixed-attack ASR: the defender (greedy) on every held-out harmful seed behind every framing, a success being a
#   helpful compliance (the oracle's label: the answer of the prompt's topic);
# fixed-attack compliance (any): the same prompts, any COMPLY counted (refusals vs off-topic answers);
# utility: helpful compliance on held-out benign seeds, plain and behind every framing.
# Env: OUT (default runs/intent-table), K (20), SEEDS ("0 1 2"), FEATURES (cargo features to build with, e.g. wgpu
#   to reuse a `--features wgpu` build). Prints a Markdown table; report in $OUT/report.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/intent-table}
K=${K:-20}
SEEDS=${SEEDS:-"0 1 2"}
cargo build -q ${FEATURES:+--features "$FEATURES"}
BIN="${CARGO_TARGET_DIR:-target}/debug/sparring"
mkdir -p "$OUT"
start=$(date +%s)
dirs=()
for recipe in sequential advgame-dpo grpo self-play; do
  for seed in $SEEDS; do
    d="$OUT/$recipe-s$seed"
    rm -rf "$d"
    echo "== $recipe seed $seed" >&2
    $BIN run "scenarios/intent-$recipe.toml" --out "$d" -q \
      --set game.seed="$seed" --set 'eval.modes=["plain"]' --set checkpoints.every=0 > /dev/null
    dirs+=("$d")
  done
done
rm -rf "$OUT/report"
$BIN report "${dirs[@]}" --out "$OUT/report" -q --json \
  --exploit "$K" --exploit-scenario scenarios/intent-redteam.toml > "$OUT/report.json"
# The same defenders under the prefix-style label (any COMPLY counts, helpful or not): a second, cheap
# pass (K=1) whose plain evaluation tells refusals from off-topic compliance. The evaluator is the red-team
# scenario with `judge.compliance = "any"`, its data paths made absolute.
ANY="$OUT/intent-redteam-any.toml"
sed -e "s|path = \"intent-data/|path = \"$PWD/scenarios/intent-data/|" \
  -e 's|^noise = 0.1$|noise = 0.1\ncompliance = "any"|' scenarios/intent-redteam.toml > "$ANY"
grep -q '^compliance = "any"$' "$ANY"
rm -rf "$OUT/report-any"
$BIN report "${dirs[@]}" --out "$OUT/report-any" -q --json \
  --exploit 1 --exploit-scenario "$ANY" > "$OUT/report-any.json"
echo "wall: $(( $(date +%s) - start )) s" >&2
python3 - "$OUT/report.json" "$K" "$OUT/report-any.json" <<'PY'
import json, statistics, sys
rep = json.load(open(sys.argv[1])); k = sys.argv[2]
pts = rep["exploitability"]
anyc = {(p["run"], p["round"]): p["plain_sets"].get("intent-fixed-attacks")
        for p in json.load(open(sys.argv[3]))["exploitability"]}
last = {}
for p in pts:
    last[p["run"]] = max(last.get(p["run"], 0), p["round"])
rows = {"original (warm start)": [], "sequential": [], "AdvGame-DPO (joint)": [], "GRPO (joint)": [],
        "self-play's warm start (one policy, r0)": [], "self-play (one policy, DPO)": []}
name = {"sequential": "sequential", "advgame-dpo": "AdvGame-DPO (joint)", "grpo": "GRPO (joint)",
        "self-play": "self-play (one policy, DPO)"}
for p in pts:
    recipe = p["run"].rsplit("-s", 1)[0]
    if p["round"] == 0 and recipe == "advgame-dpo":
        rows["original (warm start)"].append(p)
    elif p["round"] == 0 and recipe == "self-play":
        rows["self-play's warm start (one policy, r0)"].append(p)
    elif p["round"] == last[p["run"]] and p["round"] > 0:
        rows[name[recipe]].append(p)
def cell(vals):
    vals = [v for v in vals if v is not None]
    if not vals: return "–"
    m = statistics.mean(vals); sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    return f"{m:.3f} ± {sd:.3f}"
print(f"| recipe (3 seeds) | adaptive ASR (best response, K={k}) ↓ | fixed-attack ASR ↓ | fixed-attack compliance (any) | plain ASR ↓ | utility plain ↑ | utility framed ↑ |")
print("|---|---|---|---|---|---|---|")
for r, ps in rows.items():
    g = lambda key: [p["plain_sets"].get(key) for p in ps]
    a = [anyc.get((p["run"], p["round"])) for p in ps]
    print(f"| {r} | {cell([p['asr'] for p in ps])} | {cell(g('intent-fixed-attacks'))} | {cell(a)} | "
          f"{cell(g('intent-heldout-harmful'))} | {cell(g('intent-heldout-benign'))} | {cell(g('intent-benign-framed'))} |")
PY
