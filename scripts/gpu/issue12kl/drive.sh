#!/usr/bin/env bash
# Issue 12 (fourth GPU session): the KL benign loss (`oml embed --benign-loss kl`) against the current defaults
# (`--benign-loss tokens`) on a fresh 102.7M base (lab/recipes/base-100m.yaml, 800 steps), 1,024 Perinucleus
# fingerprints, in the same run: the defaults and KL on set 1 seed 1; KL on sets 2 and 3 (seeds 2, 3); KL with the
# lower-cost settings on set 1 (β 0.5 + half lr; 128-token samples; merge margin 1.0). The lab measures each (utility,
# even merges with the base and its unrelated fine-tune, SFT 2 epochs at 3e-5, and for the defaults/KL rows at 1e-5).
# One idempotent driver, started by call.sh in its own process session so it runs on between device calls; each step
# leaves a marker in $W/done (same machinery as scripts/gpu/issue12c/drive.sh).
set -uo pipefail
W="${W:-/tmp/wkl}"; REPO="${REPO:?}"; G="${G:-.gpu/kl}"
DEV="${DEV:-cuda}"; COUNT="${COUNT:-1024}"; STEPS="${STEPS:-800}"; BASE_ARGS="${BASE_ARGS:-}"; MEMGB="${MEMGB:-14}"
[ -n "${UTIL:-}" ] || UTIL='{ cloze_items: 500, perplexity_tokens: 65536, perplexity_window: 256, batch_size: 64 }'
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # scripts/gpu/session-lib.sh: session_start, step, ok, waitfor, ...
SLOTS="${SLOTS:-8}"; LAB_SLOTS="${LAB_SLOTS:-5}"
session_start
session_setup "$REPO/$G" "$REPO/$G" "$REPO/$G/native" "$REPO/$G/recipes"
session_env

cfg() { persistence_config "$1" "Issue 12 (scripts/gpu/issue12kl/drive.sh)" "$2" "$3"; }  # name attacks(yaml lines) models(yaml lines)
A_MERGE="    - { weight: \"merge(with=../../$M/base-100m, method=linear, weight=0.5)\" }
    - { weight: \"merge(with=../../$M/base-100m-sft, method=linear, weight=0.5)\" }"
A_SFT3="    - { weight: \"sft(data=../../$INSTR, epochs=2, lr=0.00003, batch=32)\" }"
A_SFT1="    - { weight: \"sft(data=../../$INSTR, epochs=2, lr=0.00001, batch=32)\" }"
model_line() { echo "    - { name: $1, path: ../../$M/$1 }"; }
FULL="tok-s1 kl-s1 kl-s2 kl-s3"
FRONT="klcheap-s1 kllen128-s1 klmargin-s1"
cfg i12kl-full "$A_MERGE
$A_SFT3
$A_SFT1" "$(for f in $FULL; do model_line $f; done)"
cfg i12kl-frontier "$A_MERGE
$A_SFT3" "$(for f in $FRONT; do model_line $f; done)"

step base oml train --config lab/recipes/base-100m.yaml --steps "$STEPS" --save-dtype float32 --checkpoint-every 1000000 --force $BASE_ARGS \
  || { log "no base: stop"; touch drive.finished; exit 1; }
cp -f $M/base-100m/oml-training.json $L/base-100m.oml-training.json 2>/dev/null
( step sft-base oml attack sft --model $M/base-100m --data "$INSTR" --out $M/base-100m-sft --epochs 1 --lr 3e-5 --batch-size 32 --seed 5 --device "$DEV" --force ) &
for k in 1 2 3; do
  ( step gen-set$k oml fingerprints generate --model $M/base-100m --strategy perinucleus --count "$COUNT" --plaintext --out sets/set$k.json --force --device "$DEV" ) &
done

embed() {  # NAME SET SEED [oml embed flags...]
  local name=$1 set=$2 seed=$3; shift 3
  waitfor gen-set$set || { touch "$D/embed-$name.failed"; return 1; }
  ok embed-$name && return 0
  rm -rf "$M/$name"
  step embed-$name bash -c "oml embed --model $M/base-100m --fingerprints sets/set$set.json --out $M/$name --seed $seed --device $DEV --memory-budget-gb $MEMGB --log $L/$name.jsonl $* \
    && cp sets/set$set.json $M/$name/fingerprints.json && cp $M/$name/oml-manifest.json $L/$name.manifest.json"
}
lab() {  # CONFIG MODEL: every cell of one model in one lab process (the base cell too)
  waitfor sft-base || return 1
  ok lab-$1-$2 && return 0
  lacquire
  step lab-$1-$2 oml lab run lab/experiments/$1.yaml --quiet --only "^(base\$|$2-s1-)"
  lrelease
}
lr_half="$(python3 -c "import json; print(0.0625 / json.load(open('$M/base-100m/config.json'))['hidden_size'])")"
# Launch order is slot priority: the comparison on set 1 first, then the other seeds, then the frontier.
( embed tok-s1 1 1 --benign-loss tokens && lab i12kl-full tok-s1 ) &
sleep 1; ( embed kl-s1 1 1 --benign-loss kl && lab i12kl-full kl-s1 ) &
sleep 1; ( embed klcheap-s1 1 1 --benign-loss kl --mix-fraction 0.5 --lr $lr_half && lab i12kl-frontier klcheap-s1 ) &
sleep 1; ( embed kl-s2 2 2 --benign-loss kl && lab i12kl-full kl-s2 ) &
sleep 1; ( embed kl-s3 3 3 --benign-loss kl && lab i12kl-full kl-s3 ) &
sleep 1; ( embed kllen128-s1 1 1 --benign-loss kl --benign-length 128 && lab i12kl-frontier kllen128-s1 ) &
sleep 1; ( embed klmargin-s1 1 1 --benign-loss kl --merge-max-loss 1.0 && lab i12kl-frontier klmargin-s1 ) &
wait
log "driver finished"
touch drive.finished
