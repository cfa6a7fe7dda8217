#!/usr/bin/env bash
# Stages issue 12's other-architecture session (scripts/gpu/issue12e/drive.sh) into DEST/.gpu/a (DEST: the checkout the
# device tool ships):
#   scripts/gpu/issue12e/stage.sh DEST LAB_DATA
# The copying is scripts/gpu/stage-session.sh's, plus make_init.py and the qwen2-100m and mistral-100m recipes. Then, on
# the device: bash .gpu/a/call.sh 560 (carry [".gpu/a"]; chain calls within the idle window until "driver finished").
# CPU rehearsal (as issue13b's, W prepared with lab-app/oml wrapping a local build and a small corpus):
#   CPU_SHIM=/dev/null DEV=cpu SHAPE=tiny COUNT=16 STEPS=20 MEMGB=4 SLOTS=2 LAB_SLOTS=2 INSTR=artifacts/lab/instr-small.json
#   UTIL='{ cloze_items: 20, perplexity_tokens: 2048, perplexity_window: 128, batch_size: 16 }'
#   BASE_ARGS='--batch-size 4 --context 64 --dtype float32 --eval-every 10' MODELS="qwen2-s1 mistral-s1"
#   REPO=DEST G=.gpu/a W=/tmp/w12e-cpu bash DEST/.gpu/a/drive.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; root="$(cd "$here/../../.." && pwd)"
dest="${1:?DEST}"; data="${2:?LAB_DATA}"
"$root/scripts/gpu/stage-session.sh" "$here" a "$dest" "$data"
cp -f "$root/scripts/gpu/issue12/make_init.py" "$dest/.gpu/a/"
cp -f "$root/lab/recipes/qwen2-100m.yaml" "$root/lab/recipes/mistral-100m.yaml" "$dest/.gpu/a/recipes/"
du -sh "$dest/.gpu/a"
