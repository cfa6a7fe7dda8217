#!/usr/bin/env bash
# Stages issue 13 at 100M (key temperature and the low-perplexity filter, scripts/gpu/issue13b/drive.sh) into
# DEST/.gpu/k (DEST: the checkout the device tool ships):
#   scripts/gpu/issue13b/stage.sh DEST LAB_DATA
# The copying is scripts/gpu/stage-session.sh's (what it stages, and the device command: bash .gpu/k/call.sh 560).
# The CPU rehearsal that ran (2026-12-05): W=/tmp/w13b-cpu prepared by hand with W/lab-app/oml (a wrapper running a
# local Release build) and W/artifacts/lab/{tokenizer,instructions} plus a 2 MB corpus/train.txt and heldout.txt, so
# setup unpacks nothing; then CPU_SHIM=/dev/null DEV=cpu COUNT=16 STEPS=20 MEMGB=4 SLOTS=2 LAB_SLOTS=2
# INSTR=artifacts/lab/instr-small.json (100 instructions) UTIL='{ cloze_items: 20, perplexity_tokens: 2048,
# perplexity_window: 128, batch_size: 16 }' BASE_ARGS='--hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 176
# --batch-size 4 --context 64 --dtype float32 --eval-every 10' REPO=DEST G=.gpu/k W=/tmp/w13b-cpu bash DEST/.gpu/k/drive.sh
set -euo pipefail
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../stage-session.sh" "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" k "${1:?DEST}" "${2:?LAB_DATA}"
