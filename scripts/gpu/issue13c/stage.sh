#!/usr/bin/env bash
# Stages issue 13's tracing on real copies at 100M (scripts/gpu/issue13c/drive.sh) into DEST/.gpu/t (DEST: the checkout
# the device tool ships):
#   scripts/gpu/issue13c/stage.sh DEST LAB_DATA
# The copying is scripts/gpu/stage-session.sh's (the device command: bash .gpu/t/call.sh 560, carry [".gpu/t"]); the
# repository's own scripts/lab/trace-real-copies.sh runs from the shipped checkout. POOL=512 (or 1024) in the call's
# environment for more positions; each delivery embeds about half the pool into the base.
# The CPU rehearsal that ran (2026-12-07, 15 min on the shared 2-core machine): W=/tmp/w13c-cpu prepared by hand with
# W/lab-app/oml (a wrapper running a local Release build), W/artifacts/lab/tokenizer, a 2 MB corpus/train.txt, 0.5 MB
# heldout.txt and 100 instructions (instructions/instr-small.json); then CPU_SHIM=/dev/null DEV=cpu POOL=16 COPIES=4
# JOBS=2 STEPS=20 SLOTS=2 INSTR=artifacts/lab/instructions/instr-small.json SFT_EXTRA="--epochs 1 --batch-size 8"
# SFT_STRONG=20@1e-3 BASE_ARGS='--hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 176 --batch-size 4
# --context 64 --dtype float32 --eval-every 10' REPO=DEST G=.gpu/t W=/tmp/w13c-cpu bash DEST/.gpu/t/drive.sh
# (it found the coalition race fixed in trace-real-copies.sh: with 4 copies two groups of 4 are the same hosts).
# The response-length tail rehearsed the same way (2026-12-07, RESP="r1-s1 r4-s1" RESP_COUNT=16 SLOTS_RESP=2 LAB_SLOTS_RESP=2 on the
# rehearsal's finished folder, a small UTIL: 8 min here, report written).
# Staged and asked for four times in the thirty-second session (2026-12-07; no machine came), one call for both runs:
#   mkdir -p $OUT/a $OUT/b
#   (export W=/tmp/w-tk STEPS=800 TRACE= RESP="t50-k3-s3 t80-k3-s3 t95-k3-s3 t80-k1-s3 t80-k10-s3" SLOTS_RESP=3 LAB_SLOTS_RESP=2;
#    OUT=$OUT/b bash .gpu/t/call.sh 1)                                    # Perinucleus t, k: the third seed, in the background
#   OUT=$OUT/a STEPS=400 POOL=1024 COPIES=8 ATTACKED=8 ATTACKS=merge COALITION_COPIES="none merge" RESP="" SFT_STRONG="" JOBS=4 \
#     bash .gpu/t/call.sh 530                                             # merged coalitions of 2-4 at 1,024 positions
#   OUT=$OUT/b W=/tmp/w-tk bash .gpu/t/call.sh 1
# Ran in the thirty-third session (2026-12-07, one H100, 15:23-15:34 UTC): the t, k third seed finished (committed in
# docs/results/perinucleus-tk-100m/seed3); the trace embedded its eight copies in 409 s and then stopped, every
# 'oml prover trace' refusing a pool response of two newlines (fixed in b06b824: Perinucleus.IsAcceptable, and the text
# matcher counts a whitespace-only response as a miss instead of refusing it). .gpu/t's pack was rebuilt after the fix (7ae88b5). Next, the merged
# coalitions alone (about 200 s of base, 400 s of copies, then the coalitions; two calls while the machine stays warm):
#   OUT=$OUT/a STEPS=400 POOL=1024 COPIES=8 ATTACKED=8 ATTACKS=merge COALITION_COPIES="none merge" RESP="" SFT_STRONG="" JOBS=4 \
#     bash .gpu/t/call.sh 560        then        OUT=$OUT/a bash .gpu/t/call.sh 560
# Asked for seven times in the thirty-fourth session (2026-12-07, 18:04-19:09 UTC, four machine starts failed, the other
# calls fell in refusal windows; JOBS=8 the last two times; no machine
# came). A fresh checkout builds LAB_DATA with scripts/gpu/lab-data.sh (artifacts/gpu/lab-data.tar.xz); with .gpu/t
# (38 MB) the call fits 64 MiB only with docs/results and tests/ moved out of the checkout for the call.
# then, here, scripts/lab/trace-rescore.sh on the returned tracing-100m folder (its replay/ holds the ledger and pool)
# for the three Tardos scores, and scripts/lab/trace-real-copies.py for survival and the simulation.
set -euo pipefail
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../stage-session.sh" "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" t "${1:?DEST}" "${2:?LAB_DATA}"
