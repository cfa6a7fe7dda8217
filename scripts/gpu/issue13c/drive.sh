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
BASE_ARGS="${BASE_ARGS:-}"; SFT_STRONG="${SFT_STRONG-2000@1e-3}"; SFT_EXTRA="${SFT_EXTRA:---epochs 2 --batch-size 32}"
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
if [ -n "${TRACE-1}" ]; then   # TRACE= skips the tracing (only the RESP models below)
  step trace env OML_BIN="$W/lab-app/oml" bash "$REPO/scripts/lab/trace-real-copies.sh" --out "$W/tracing" --base "$W/$M/base-100m" \
    --sft-data "$W/$INSTR" --sft-samples 1000000 --sft-lr 3e-5 --sft-extra "$SFT_EXTRA" --sft-strong "$SFT_STRONG" \
    --pool "$POOL" --copies "$COPIES" --attacked "${ATTACKED:-$COPIES}" --device "$DEV" --jobs "$JOBS" --no-analysis \
    --coalition-copies "${COALITION_COPIES:-none sft}" --attacks "${ATTACKS:-sft merge int4}"
  mkdir -p $R/tracing-100m; cp -rf tracing/json tracing/run.log $R/tracing-100m/ 2>/dev/null
  # The run's own ledger, encrypted pool and throwaway passphrase (a few hundred KB), so that the recorded observations
  # can be accused again elsewhere with other scores or bounds (`oml prover trace --observed`).
  mkdir -p $R/tracing-100m/replay; cp -f tracing/ledger.db* tracing/pool.omlfp tracing/pass.txt $R/tracing-100m/replay/ 2>/dev/null
fi

# Then, while the machine lasts, issue 13 item 5's response length (and Perinucleus t, k: models tTT-kK-sSEED) at 100M
# on the same base (RESP="" skips it): 256
# Perinucleus keys per model with responses of 1, 2, 4 and 8 tokens, embedded by `oml embed` with its defaults (the
# committed lab/experiments/response-length.yaml is the 22M base's at the paper's λ 0.75 / β 0.25); the lab measures
# utility, the lab's 100M SFT (2 epochs at 3e-5) and first-token suppression, exact rule. Models in priority order
# rN-sSEED (N tokens, set and seed SEED); every model's cells are resumable lab cells.
RESP="${RESP-r1-s1 r2-s1 r4-s1 r8-s1 r1-s2 r2-s2 r4-s2 r8-s2 r1-s3 r2-s3 r4-s3 r8-s3}"
if [ -n "$RESP" ]; then
  SLOTS="${SLOTS_RESP:-6}"; LAB_SLOTS="${LAB_SLOTS_RESP:-3}"; MEMGB="${MEMGB:-14}"
  [ -n "${UTIL:-}" ] || UTIL='{ cloze_items: 500, perplexity_tokens: 65536, perplexity_window: 256, batch_size: 64 }'
  persistence_config resp-100m "Issue 13 item 5, response length at 100M (scripts/gpu/issue13c/drive.sh)" \
'    - { weight: "sft(data=../../'$INSTR', epochs=2, lr=0.00003, batch=32)" }
    - { responder: "suppress:k=1,m=1" }' \
"$(for m in $RESP; do echo "    - { name: $m, path: ../../$M/$m }"; done)"
  resp_model() {  # rN-sSEED: N response tokens; tTT-kK-sSEED: Perinucleus t = 0.TT and width K, one response token
    local m=$1 n=1 tk=() t k
    case "$m" in
      r*) n="${1%-s*}"; n="${n#r}" ;;
      t*) t="${m%%-*}"; t="${t#t}"; k="${m#*-k}"; k="${k%%-*}"; tk=(--t "0.$t" --k "$k") ;;
    esac
    step gen-$m oml fingerprints generate --model $M/base-100m --strategy perinucleus --count "${RESP_COUNT:-256}" --response-length "$n" \
      "${tk[@]}" --plaintext --out sets/$m.json --force --device "$DEV" || return 1
    if ! ok embed-$m; then rm -rf "$M/$m"; fi
    step embed-$m bash -c "oml embed --model $M/base-100m --fingerprints sets/$m.json --out $M/$m --seed ${m##*-s} --device $DEV \
      --memory-budget-gb $MEMGB --log $L/$m.jsonl && cp sets/$m.json $M/$m/fingerprints.json && cp $M/$m/oml-manifest.json $L/$m.manifest.json" || return 1
    ok lab-$m && return 0
    lacquire
    step lab-$m oml lab run lab/experiments/resp-100m.yaml --quiet --only "^(base\$|$m-s1-)"
    lrelease
  }
  pids=()
  for m in $RESP; do ( resp_model "$m" ) & pids+=($!); sleep 1; done
  wait "${pids[@]}"   # not a bare wait: the snapshot loop above runs until drive.finished
fi
log "driver finished"
touch drive.finished
