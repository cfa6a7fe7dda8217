#!/usr/bin/env bash
# On the GPU machine, through scripts/gpu/lab.sh: trains the unrelated models (lab/recipes/unrelated-*.yaml) used as
# false-positive controls, stopping before a time budget (seconds, default 300) runs out.
#   scripts/gpu/lab.sh lab/gpu/train-unrelated.sh [BUDGET_S]
set -euo pipefail
budget="${1:-300}"
start=$(date +%s)
for r in lab/recipes/unrelated-*.yaml; do
  name=$(basename "$r" .yaml)
  if [ $(( $(date +%s) - start )) -gt "$budget" ]; then echo "$name: skipped (time budget)"; continue; fi
  t0=$(date +%s)
  oml train --config "$r" 2>&1 | tr '\r' '\n' | grep -E '^saved|error' | sed "s/^/$name: /"
  echo "$name: $(( $(date +%s) - t0 )) s"
done
