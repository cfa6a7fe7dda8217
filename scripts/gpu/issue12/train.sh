#!/usr/bin/env bash
# Device call 1 of issue 12 (see docs/results.md, "Larger bases"): from the repository root on the GPU machine,
#   bash .gpu/issue12/train.sh SECONDS
# 1. probes the 102.7M-parameter recipe (lab/recipes/base-100m.yaml) for 15 steps in float32 (TF32) and in bfloat16,
#    keeps the faster dtype and sets --steps so that training fits SECONDS (the cosine schedule needs the step count
#    up front); a later call on a warm machine resumes from the checkpoints (same recipe, same --steps);
# 2. meanwhile makes random-init Qwen2 and Mistral folders (make_init.py) and pretrains them (qwen2-small.yaml,
#    mistral-small.yaml) alongside; 3. copies logs and training summaries to $OUT (weights stay on the device).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
budget="${1:-420}"
out="${OUT:?}"
cd "$W"
start=$(date +%s)
python3 "$REPO/.gpu/issue12/make_init.py" artifacts/lab/tokenizer artifacts/lab/init > "$out/make_init.txt" 2>&1 &
initpid=$!
probe() {  # dtype -> tokens/s of steps 5..15 (after warm-up)
  oml train --config lab/recipes/base-100m.yaml --data artifacts/lab/corpus/heldout.txt --dtype "$1" --steps 15 --warmup 2 --log-every 5 --eval-every 0 --checkpoint-every 100000 \
    --out /tmp/probe-$1 --force --checkpoint-dir /tmp/probe-ck-$1 --log /tmp/probe-$1.jsonl > /tmp/probe-$1.txt 2>&1 || { tail -5 /tmp/probe-$1.txt >&2; echo 0; return; }
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(f"/tmp/probe-{sys.argv[1]}.jsonl") if l.strip() and '"tokens_per_second"' in l]
a, b = rows[0], rows[-1]
print(int((b["tokens"] - a["tokens"]) / max(1e-9, b["seconds"] - a["seconds"])))
PY
}
rate_bf16=$(probe bfloat16); rate_f32=$(probe float32)
echo "probe: bfloat16 $rate_bf16 tok/s, float32 (TF32) $rate_f32 tok/s" | tee "$out/probe.txt"
dtype=bfloat16; rate=$rate_bf16
[ "$rate_f32" -gt "$rate_bf16" ] && { dtype=float32; rate=$rate_f32; }
left=$(( budget - ($(date +%s) - start) - 45 ))          # 45 s: tokenizing, evaluation and saving
steps=$(( rate * left * 88 / 100 / 65536 ))               # 12 % for the small bases beside it
echo "base-100m: $dtype, $steps steps (${left}s at $rate tok/s)" | tee -a "$out/probe.txt"
echo "$dtype $steps" > "$W/base-100m.plan"
wait $initpid
( for a in qwen2 mistral; do oml train --config lab/recipes/$a-small.yaml > "$out/$a-small.txt" 2>&1; done ) &
smallpid=$!
timeout $(( budget - ($(date +%s) - start) + 20 )) oml train --config lab/recipes/base-100m.yaml --dtype "$dtype" --steps "$steps" > /tmp/base-100m.txt 2>&1 || echo "base-100m: exit $?" | tee -a "$out/probe.txt"
tr '\r' '\n' < /tmp/base-100m.txt | grep -v '^\s*$' | awk 'NR%10==1 || /saved|held-out|error|rror/' | tail -60 > "$out/base-100m.txt"
wait $smallpid || true
for m in base-100m qwen2-small mistral-small; do
  cp -f artifacts/lab/logs/$m.jsonl "$out/" 2>/dev/null || true
  cp -f artifacts/lab/models/$m/oml-training.json "$out/$m.oml-training.json" 2>/dev/null || true
  cp -f artifacts/lab/models/$m/config.json "$out/$m.config.json" 2>/dev/null || true
done
ls artifacts/lab/models artifacts/lab/checkpoints/*; nvidia-smi --query-gpu=name,memory.used --format=csv
echo "train.sh done in $(( $(date +%s) - start )) s"
