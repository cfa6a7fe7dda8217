#!/usr/bin/env bash
# Runs one lab experiment as N shard processes side by side on one GPU (a small model leaves most of an H100/H200 idle
# in one process), then renders the report over all cells:
#
#   scripts/gpu/lab-shards.sh CONFIG OUT N SECONDS
#
# Each shard (`oml lab run CONFIG --out OUT --shard i/N`) logs to OUT/shard-i.log. A shard that fails (a CUDA
# out-of-memory error when the shards' peaks coincide) is started again, resuming from the cells already saved, until
# SECONDS have passed; then it is interrupted, losing only the cell it was computing. Needs `oml` on PATH
# (scripts/gpu/lab.sh bash -c '...').
set -uo pipefail
[ $# -eq 4 ] || { echo "usage: $0 CONFIG OUT N SECONDS" >&2; exit 2; }
config="$1"; out="$2"; n="$3"; limit="$4"
mkdir -p "$out"
deadline=$(( $(date +%s) + limit ))
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
shard() {
  local i="$1" left
  while left=$(( deadline - $(date +%s) )); [ "$left" -gt 5 ]; do
    if timeout -s INT "$left" oml lab run "$config" --out "$out" --shard "$i/$n" --quiet >> "$out/shard-$i.log" 2>&1; then return 0; fi
    echo "shard $i/$n: exited with an error; restarting ($(date -u +%T))" >> "$out/shard-$i.log"
    sleep 2
  done
}
for ((i = 0; i < n; i++)); do shard "$i" & done
wait
oml lab report "$out" > /dev/null || true
echo "$config: $(ls "$out/cells" 2>/dev/null | wc -l) cells saved in $out"
