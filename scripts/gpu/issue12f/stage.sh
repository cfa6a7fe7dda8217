#!/usr/bin/env bash
# Stages issue 12's null-at-100M session (scripts/gpu/issue12f/drive.sh) into DEST/.gpu/f (DEST: the checkout the device
# tool ships):
#   scripts/gpu/issue12f/stage.sh DEST LAB_DATA
# The copying is scripts/gpu/stage-session.sh's, plus make_init.py, slim.py and the mistral-100m recipe. Then, on the device:
# bash .gpu/f/call.sh 560 (carry [".gpu/f"]; chain calls within the idle window until "driver finished").
# CPU rehearsal (W prepared with lab-app/oml wrapping a local build, a small corpus, tokenizer and instructions):
#   CPU_SHIM=/dev/null DEV=cpu SHAPE=tiny STEPS=20 COUNT_A=64 COUNT_SIB=16 TREE=8 MEMGB=4 SLOTS=2 LAB_SLOTS=1
#   INSTR=artifacts/lab/instr-small.json UTIL='{ cloze_items: 20, perplexity_tokens: 2048, perplexity_window: 128, batch_size: 16 }'
#   BASE_ARGS='--batch-size 4 --context 64 --dtype float32 --eval-every 10' REPO=DEST G=.gpu/f W=/tmp/w12f-cpu bash DEST/.gpu/f/drive.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; root="$(cd "$here/../../.." && pwd)"
dest="${1:?DEST}"; data="${2:?LAB_DATA}"
"$root/scripts/gpu/stage-session.sh" "$here" f "$dest" "$data"
cp -f "$root/scripts/gpu/issue12/make_init.py" "$here/slim.py" "$dest/.gpu/f/"
cp -f "$root/lab/recipes/mistral-100m.yaml" "$dest/.gpu/f/recipes/"
du -sh "$dest/.gpu/f"
