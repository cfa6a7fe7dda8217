#!/usr/bin/env bash
# One device call of a staged GPU session, from the repository root on the GPU machine (the staged folder carried).
# The session's stage.sh copies this file into its folder as call.sh, beside its drive.sh:
#   bash .gpu/SESSION/call.sh SECONDS        (DRIVER=other.sh picks another driver; W the work folder)
# Starts the driver in its own process session when none is running (a fresh machine, or one whose driver ended
# without finishing), so that the work goes on between calls while the machine stays warm; then waits until the
# driver finishes or SECONDS have passed, and leaves a snapshot of the small results (cells, reports, logs,
# manifests; never weights) in $OUT/snap.tar.gz, with a status summary on stdout.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(pwd)"; W="${W:-/tmp/w-$(basename "$here")}"; budget="${1:-560}"; out="${OUT:?}"
start=$(date +%s)
mkdir -p "$W"
alive() { [ -f "$W/drive.pid" ] && kill -0 "$(cat "$W/drive.pid")" 2>/dev/null; }
if [ ! -f "$W/drive.finished" ] && ! alive; then
  echo "starting ${DRIVER:-drive.sh} (machine: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))"
  REPO="$REPO" W="$W" setsid -f bash "$here/${DRIVER:-drive.sh}" > "$W/drive.log" 2>&1 < /dev/null
  sleep 2
fi
while [ $(( $(date +%s) - start )) -lt "$budget" ] && [ ! -f "$W/drive.finished" ]; do sleep 5; done
cd "$W"
export PATH="$W/lab-app:$PATH"
torch_dir="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))' 2>/dev/null)" && export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for d in results/*/; do [ -d "$d/cells" ] && timeout 30 oml lab report "$d" > /dev/null 2>&1; done
mkdir -p snap
cp -f native/liboml_torch.so snap/ 2>/dev/null
for f in logs/*.log; do tr '\r' '\n' < "$f" | grep -v '^\s*$' | tail -60 > "snap/$(basename "$f")"; done
tar -czf "$out/snap.tar.gz" --exclude='*/models' --exclude='*.safetensors' --exclude='logs/*.log' results logs snap drive.log 2>/dev/null
echo "--- $(date -u +%T) call ran $(( $(date +%s) - start )) s; driver $( [ -f drive.finished ] && echo finished || (alive && echo running || echo stopped) )"
tail -40 logs/timeline.txt
ls done | tr '\n' ' '; echo
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
du -h "$out/snap.tar.gz"
