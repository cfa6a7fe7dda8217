#!/usr/bin/env bash
# Which response-tree fingerprints the attacks remove at 100M (issue 13 item 5, the question of arXiv 2502.07760's
# Fig. 11), from committed GPU runs on the 500M-token base that kept a plaintext tree set and its lab cells (per-key
# outcomes): laid out as one lab run with one model per set (llama-trees-A, -B, ...) and read by scripts/lab/forgetting.py.
# Of the three runs with a tree set (docs/results/issue12-500m-cells, issue12-500m-confirm/run-a, run-d) only run-d has
# the tree model's cells; the next GPU run's TREE_SEEDS sets add theirs.
#   scripts/lab/forgetting-100m.sh > docs/results/forgetting-100m/forgetting.md
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/cells"
for pair in A:issue12-500m-cells B:issue12-500m-confirm/run-a C:issue12-500m-confirm/run-d; do
  tag=${pair%%:*} run="$root/docs/results/${pair#*:}/results"
  ls "$run"/i12e-llama/cells/llama-trees-s1-*.json > /dev/null 2>&1 || continue
  mkdir -p "$tmp/models/llama-trees-$tag-s1"
  cp "$run/trees-set.json" "$tmp/models/llama-trees-$tag-s1/fingerprints.json"
  for c in "$run"/i12e-llama/cells/llama-trees-s1-*.json; do
    python3 - "$c" "$tmp/cells/$tag-$(basename "$c")" "llama-trees-$tag" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["labels"]["model"] = sys.argv[3]; json.dump(c, open(sys.argv[2], "w"))
PY
  done
done
python3 "$root/scripts/lab/forgetting.py" "$tmp"
