#!/usr/bin/env bash
# Issue 12 (fifth GPU session): the lead of the fourth session, the KL benign loss with β 0.5 and half the default lr
# (`--mix-fraction 0.5 --lr 0.0625/d`, "klcheap"), on three sets and seeds, beside the current defaults (KL, β 0.25,
# lr 0.125/d) on set 1 in the same run, and three settings that push utility further (set 1, seed 1): a quarter of the
# default lr with β 0.5, β 2/3 with half the lr, and klcheap with the merge margin 1.0. Fresh 102.7M base
# (lab/recipes/base-100m.yaml, 800 steps), 1,024 Perinucleus fingerprints per set; the lab measures utility, even merges
# with the base and with its unrelated fine-tune, SFT 2 epochs at 3e-5 (and at 1e-5 for the 3-seed rows).
# One idempotent driver, started by call.sh in its own process session so it runs on between device calls; each step
# leaves a marker in $W/done (scripts/gpu/session-lib.sh).
set -uo pipefail
W="${W:-/tmp/w12d}"; REPO="${REPO:?}"; G="${G:-.gpu/d}"
DEV="${DEV:-cuda}"; COUNT="${COUNT:-1024}"; STEPS="${STEPS:-800}"; BASE_ARGS="${BASE_ARGS:-}"; MEMGB="${MEMGB:-14}"
[ -n "${UTIL:-}" ] || UTIL='{ cloze_items: 500, perplexity_tokens: 65536, perplexity_window: 256, batch_size: 64 }'
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SLOTS="${SLOTS:-8}"; LAB_SLOTS="${LAB_SLOTS:-5}"
session_start
session_setup "$REPO/$G" "$REPO/$G" "$REPO/$G/native" "$REPO/$G/recipes"
session_env

cfg() { persistence_config "$1" "Issue 12 (scripts/gpu/issue12d/drive.sh)" "$2" "$3"; }  # name attacks(yaml lines) models(yaml lines)
A_MERGE="    - { weight: \"merge(with=../../$M/base-100m, method=linear, weight=0.5)\" }
    - { weight: \"merge(with=../../$M/base-100m-sft, method=linear, weight=0.5)\" }"
A_SFT3="    - { weight: \"sft(data=../../$INSTR, epochs=2, lr=0.00003, batch=32)\" }"
A_SFT1="    - { weight: \"sft(data=../../$INSTR, epochs=2, lr=0.00001, batch=32)\" }"
model_line() { echo "    - { name: $1, path: ../../$M/$1 }"; }
FULL="kl-s1 klcheap-s1 klcheap-s2 klcheap-s3"
FRONT="klquarter-s1 klb67-s1 klcheapm-s1"
cfg i12d-full "$A_MERGE
$A_SFT3
$A_SFT1" "$(for f in $FULL; do model_line $f; done)"
cfg i12d-frontier "$A_MERGE
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
d="$(python3 -c "import json; print(json.load(open('$M/base-100m/config.json'))['hidden_size'])")"
lr_half="$(python3 -c "print(0.0625 / $d)")"; lr_quarter="$(python3 -c "print(0.03125 / $d)")"
# Launch order is slot priority: the three seeds of the lead and its peer first, then the frontier.
( embed klcheap-s1 1 1 --mix-fraction 0.5 --lr $lr_half && lab i12d-full klcheap-s1 ) &
sleep 1; ( embed kl-s1 1 1 && lab i12d-full kl-s1 ) &
sleep 1; ( embed klcheap-s2 2 2 --mix-fraction 0.5 --lr $lr_half && lab i12d-full klcheap-s2 ) &
sleep 1; ( embed klcheap-s3 3 3 --mix-fraction 0.5 --lr $lr_half && lab i12d-full klcheap-s3 ) &
sleep 1; ( embed klquarter-s1 1 1 --mix-fraction 0.5 --lr $lr_quarter && lab i12d-frontier klquarter-s1 ) &
sleep 1; ( embed klb67-s1 1 1 --mix-fraction 0.667 --lr $lr_half && lab i12d-frontier klb67-s1 ) &
sleep 1; ( embed klcheapm-s1 1 1 --mix-fraction 0.5 --lr $lr_half --merge-max-loss 1.0 && lab i12d-frontier klcheapm-s1 ) &
wait
log "driver finished"
touch drive.finished
