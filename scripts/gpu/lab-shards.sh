#!/usr/bin/env bash
# Runs one lab experiment as N worker processes side by side on one GPU (a small model leaves most of an H100/H200
# idle in one process) until SECONDS have passed, then renders the report over all cells:
#
#   scripts/gpu/lab-shards.sh CONFIG OUT N SECONDS
#
# The same as `oml lab run CONFIG --out OUT --workers N --time-limit SECONDS`: each worker is a shard
# (`--shard i/N`) logging to OUT/shard-i.log; a worker that fails (a CUDA out-of-memory error when the workers' peaks
# coincide) is restarted and resumes from the saved cells; at the time limit all are stopped, losing only the cells
# they were computing. Needs `oml` on PATH (scripts/gpu/lab.sh bash -c '...').
set -uo pipefail
[ $# -eq 4 ] || { echo "usage: $0 CONFIG OUT N SECONDS" >&2; exit 2; }
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
oml lab run "$1" --out "$2" --workers "$3" --time-limit "$4"
status=$?
echo "$1: $(ls "$2/cells" 2>/dev/null | wc -l) cells saved in $2"
exit $status
