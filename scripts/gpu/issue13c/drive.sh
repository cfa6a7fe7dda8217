#!/usr/bin/env bash
# Issue 13, item 3 at 100M: leak tracing on real fingerprinted copies of a 102.7M lab base, on one GPU, through the
# product's own commands (scripts/lab/trace-real-copies.sh: a protocol ledger, `oml owner deliver --allocation tardos`
# for 16 hosts from a pool of 1,024 Perinucleus keys, attacks, `oml prover trace` of every copy and of 2-4-copy
# coalitions). The CPU run of the same script (158k-parameter base) is docs/results/tracing-real.
# The base: lab/recipes/base-100m.yaml for STEPS (800: 52M tokens, as issue13b's base; about 190 s on an H200), saved
# in float32 as the lab's 100M runs are. The SFT attack is the lab's 100M SFT cell (the whole instruction set, 2 epochs
# at 3e-5, batch 32); the strong one 2,000 instructions at 1e-3 (batch 8). The analysis (survival, the simulation at
# 1,000 hosts) runs afterwards on the CPU from the returned JSON: scripts/lab/trace-real-copies.py.
# One idempotent driver, started by call.sh in its own process session (scripts/gpu/session-lib.sh).
set -uo pipefail
W="${W:-/tmp/w13c}"; REPO="${REPO:?}"; G="${G:-.gpu/t}"
DEV="${DEV:-cuda}"; STEPS="${STEPS:-800}"; POOL="${POOL:-1024}"; COPIES="${COPIES:-16}"; JOBS="${JOBS:-6}"
BASE_ARGS="${BASE_ARGS:-}"; SFT_STRONG="${SFT_STRONG:-2000@1e-3}"; SFT_EXTRA="${SFT_EXTRA:---epochs 2 --batch-size 32}"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SLOTS="${SLOTS:-2}"
session_start
session_setup "$REPO/$G" "$REPO/$G" "$REPO/$G/native" "$REPO/$G/recipes"
session_env

# The traces' JSON (small) into results/, where call.sh's snapshot takes it, while the run goes on.
( while [ ! -f drive.finished ]; do
    if [ -d tracing/json ]; then mkdir -p $R/tracing-100m; cp -rf tracing/json tracing/run.log $R/tracing-100m/ 2>/dev/null; fi
    sleep 15
  done ) &

step base oml train --config lab/recipes/base-100m.yaml --device "$DEV" --steps "$STEPS" --save-dtype float32 --checkpoint-every 1000000 --force $BASE_ARGS \
  || { log "no base: stop"; touch drive.finished; exit 1; }
cp -f $M/base-100m/oml-training.json $L/base-100m.oml-training.json 2>/dev/null
step trace env OML_BIN="$W/lab-app/oml" bash "$REPO/scripts/lab/trace-real-copies.sh" --out "$W/tracing" --base "$W/$M/base-100m" \
  --sft-data "$W/$INSTR" --sft-samples 1000000 --sft-lr 3e-5 --sft-extra "$SFT_EXTRA" --sft-strong "$SFT_STRONG" \
  --pool "$POOL" --copies "$COPIES" --device "$DEV" --jobs "$JOBS" --no-analysis
mkdir -p $R/tracing-100m; cp -rf tracing/json tracing/run.log $R/tracing-100m/ 2>/dev/null
log "driver finished"
touch drive.finished
