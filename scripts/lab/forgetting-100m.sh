#!/usr/bin/env bash
# Which response-tree fingerprints the attacks remove at 100M (issue 13 item 5, the question of arXiv 2502.07760's
# Fig. 11), from committed GPU runs on the 500M-token base that kept a plaintext tree set and its lab cells (per-key
# outcomes): laid out as one lab run with one model per set (llama-trees-A, -B, ...) and read by scripts/lab/forgetting.py.
# Runs with a tree set: issue12-500m-cells (no tree cells: skipped), issue12-500m-confirm/run-a and run-d (one set each)
# and run-e (TREE_SEEDS 1 2 3: three sets, one embedding seed each).
#   scripts/lab/forgetting-100m.sh > docs/results/forgetting-100m/forgetting.md
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/cells"
for entry in A:issue12-500m-cells:llama-trees-s1:trees-set B:issue12-500m-confirm/run-a:llama-trees-s1:trees-set \
             C:issue12-500m-confirm/run-d:llama-trees-s1:trees-set D:issue12-500m-confirm/run-e:llama-trees-s1:trees-set \
             E:issue12-500m-confirm/run-e:llama-trees-s2-s1:trees-s2-set F:issue12-500m-confirm/run-e:llama-trees-s3-s1:trees-s3-set; do
  IFS=: read -r tag rel prefix set <<< "$entry"
  run="$root/docs/results/$rel/results"
  ls "$run"/i12e-llama/cells/"$prefix"-*.json > /dev/null 2>&1 || continue
  mkdir -p "$tmp/models/llama-trees-$tag-s1"
  cp "$run/$set.json" "$tmp/models/llama-trees-$tag-s1/fingerprints.json"
  for c in "$run"/i12e-llama/cells/"$prefix"-*.json; do
    python3 - "$c" "$tmp/cells/$tag-$(basename "$c")" "llama-trees-$tag" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["labels"]["model"] = sys.argv[3]; json.dump(c, open(sys.argv[2], "w"))
PY
  done
done
python3 "$root/scripts/lab/forgetting.py" "$tmp"
