#!/usr/bin/env bash
# On the GPU machine, through scripts/gpu/lab.sh: trains the lab's reference base model (lab/recipes/base.yaml) and
# copies it to $OUT for the trip back (weights in ≤15 MB bf16 shards, the small files in one tar).
#   scripts/gpu/lab.sh lab/gpu/train-base.sh [STEPS]
# A probe of 40 steps first measures the speed and reports the time the recipe's steps will take.
set -euo pipefail
out="${OUT:?set OUT to the folder that goes back}"
steps="${1:-}"
oml train --config lab/recipes/base.yaml --steps 40 --warmup 10 --eval-every 0 --checkpoint-every 1000 \
  --out /tmp/probe --force --checkpoint-dir /tmp/probe-ck --log /tmp/probe.jsonl > /tmp/probe.txt 2>&1 || { tail -20 /tmp/probe.txt; exit 1; }
python3 - <<'PY'
import json
rows=[json.loads(l) for l in open('/tmp/probe.jsonl') if l.strip()]
r=rows[-1]; print(f"probe: {r['step']} steps, {r['tokens_per_second']:.0f} tokens/s (includes warm-up)")
PY
args=()
[ -n "$steps" ] && args+=(--steps "$steps")
start=$(date +%s)
oml train --config lab/recipes/base.yaml "${args[@]}" 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | awk 'NR%20==1 || /saved|held-out|error/' | tail -40
echo "base trained in $(( $(date +%s) - start )) s"
m=artifacts/lab/models/base
cp "$m"/*.safetensors "$out"/
tar -C artifacts/lab -cf "$out/base-meta.tar" --exclude='*.safetensors' models/base logs/base.jsonl
ls -la "$out"
