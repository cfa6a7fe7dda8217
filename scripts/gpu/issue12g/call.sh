#!/usr/bin/env bash
# One device call of the issue-12 500M-token session, from the repository root on the GPU machine:
#   bash .gpu/g/call.sh SECONDS [UNTIL]      (carry [".gpu/g"]; later calls carry [".gpu/gN"], which hold corpus parts;
#                                             GO=2 releases the driver's second training run)
# Copies the corpus parts this call carries into $W/parts, starts the driver in its own process session when none is
# running, then waits until the driver finishes, UNTIL names a marker in $W/done that exists (e.g. probes, train), or
# SECONDS have passed; leaves $OUT/snap.tar.gz (results, logs; never weights) and prints the timeline.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(pwd)"; W="${W:-/tmp/w12g}"; budget="${1:-560}"; until="${2:-}"; out="${OUT:?}"
start=$(date +%s)
mkdir -p "$W/parts" "$W/bin" "$W/done"
for p in "$here"/train.part*.txt.xz; do
  [ -f "$p" ] || continue
  [ -f "$W/parts/$(basename "$p")" ] || { cp -f "$p" "$W/parts/.tmp" && mv "$W/parts/.tmp" "$W/parts/$(basename "$p")"; }
done
echo "corpus parts on the machine: $(ls "$W/parts" | tr '\n' ' ')"
# The engine's tests on the GPU (FusedOpTests hold the fused kernels to the composite ops), once, beside the training.
if [ -f "$here/etests.tar.xz" ] && [ -f "$W/native/liboml_torch.so" ] && [ ! -f "$W/results/engine-cuda-tests.txt" ]; then
  ( cd "$W" && mkdir -p results && tar -xJf "$here/etests.tar.xz" && cp -f native/liboml_torch.so etests/ \
    && td="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')" \
    && LD_LIBRARY_PATH="$td/lib" OML_TEST_DEVICE=cuda timeout 300 ./etests/Oml.Engine.Tests > results/engine-cuda-tests.tmp 2>&1;
    echo "exit $?" >> results/engine-cuda-tests.tmp; mv results/engine-cuda-tests.tmp results/engine-cuda-tests.txt )
  tail -5 "$W/results/engine-cuda-tests.txt"
fi
alive() { [ -f "$W/drive.pid" ] && kill -0 "$(cat "$W/drive.pid")" 2>/dev/null; }
# GO=2: the driver's second training run may start (it resumes from the first run's checkpoint; drive.sh RUN1_S).
[ "${GO:-}" = 2 ] && { touch "$W/go-2"; echo "second training run released"; }
if [ -f "$here/drive.sh" ] && [ ! -f "$W/drive.finished" ] && ! alive; then
  cp -f "$here/drive.sh" "$here/lib.sh" "$here/planes.py" "$W/bin/"
  echo "starting the driver (machine: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))"
  REPO="$REPO" W="$W" G=".gpu/$(basename "$here")" setsid -f bash "$W/bin/drive.sh" > "$W/drive.log" 2>&1 < /dev/null
  sleep 2
fi
while [ $(( $(date +%s) - start )) -lt "$budget" ] && [ ! -f "$W/drive.finished" ]; do
  [ -n "$until" ] && { [ -f "$W/done/$until" ] || [ -f "$W/done/$until.failed" ]; } && break
  sleep 3
done
cd "$W" || exit 1
mkdir -p snap
for f in logs/*.log; do [ -f "$f" ] && tr '\r' '\n' < "$f" | grep -v '^\s*$' | tail -40 > "snap/$(basename "$f")"; done
tar -czf "$out/snap.tar.gz" results logs/*.jsonl logs/timeline.txt snap drive.log plan 2>/dev/null
echo "--- $(date -u +%T) call ran $(( $(date +%s) - start )) s; driver $( [ -f drive.finished ] && echo finished || (alive && echo running || echo stopped) )"
tail -25 logs/timeline.txt 2>/dev/null
for f in results/probe-*.json; do [ -f "$f" ] && python3 -c "import json,sys; d=json.load(open('$f')); print('$f', int(d['tokens_per_second']), d['losses'])"; done
cat results/shim.txt 2>/dev/null
for f in logs/train-1.log logs/train.log; do [ -f "$f" ] && { echo "$f:"; tr '\r' '\n' < "$f" | grep "step\|held-out\|rror\|stopped\|resuming" | tail -4; }; done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
