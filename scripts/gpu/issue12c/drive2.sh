#!/usr/bin/env bash
# Issue 12 (third GPU session, second machine): frontier points around the new `oml embed` defaults on a fresh
# 102.7M base (the first machine's weights are gone), one seed (set 1): the defaults again as the reference, β 0.5,
# half the lr, both, and 128-token benign samples; measured by the lab (utility, even merges, SFT 2 epochs at 3e-5).
# Issue 13: 256 keys with 4-token Perinucleus responses, embedded with the defaults, SFT 2 epochs at 3e-5, then
# `oml verify --match exact` vs `--match partial --min-tokens 2` on the SFT'd copy, on it before SFT, and on the base's
# unrelated fine-tune (a negative). Same machinery as drive.sh (started by call.sh with DRIVER=drive2.sh).
set -uo pipefail
W="${W:-/tmp/w4}"; REPO="${REPO:?}"
DEV="${DEV:-cuda}"; COUNT="${COUNT:-1024}"; STEPS="${STEPS:-800}"; BASE_ARGS="${BASE_ARGS:-}"; MEMGB="${MEMGB:-16}"
R4_COUNT="${R4_COUNT:-256}"
[ -n "${UTIL:-}" ] || UTIL='{ cloze_items: 500, perplexity_tokens: 65536, perplexity_window: 256, batch_size: 64 }'
[ -n "${UTIL13:-}" ] || UTIL13='{ cloze_items: 500, perplexity_tokens: 65536, perplexity_window: 256, batch_size: 64, instructions: ../../artifacts/lab/instructions/instructions-heldout.json, instruction_items: 200, answer_tokens: 32 }'
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # scripts/gpu/session-lib.sh: session_start, step, ok, waitfor, ...
SLOTS="${SLOTS:-7}"
session_start
session_setup "$REPO/.gpu" "$REPO/.gpu" "$REPO/.gpu/native" "$REPO/.gpu/issue12c/recipes"
session_env

# ---- the lab configs (paths relative to lab/experiments/) ----
cfg() {  # name output attacks(yaml lines) models(yaml lines) [utility]
  cat > lab/experiments/$1.yaml <<EOC
# Issue 12 (scripts/gpu/issue12c/drive.sh): models embedded by 'oml embed' (paths), measured by the lab.
version: 1
name: $1
kind: persistence
base_model: ../../$M/base-100m
tokenizer: ../../$M/base-100m
corpus: [../../artifacts/lab/corpus/train.txt]
heldout: [../../artifacts/lab/corpus/heldout.txt]
max_corpus_chars: 5000000
device: $DEV
dtype: float32
utility: ${4:-$UTIL}
seeds: [1]
output: ../../$R/$1
persistence:
  models:
$3
  attacks:
$2
EOC
}
A_MERGE="    - { weight: \"merge(with=../../$M/base-100m, method=linear, weight=0.5)\" }
    - { weight: \"merge(with=../../$M/base-100m-sft, method=linear, weight=0.5)\" }"
A_SFT3="    - { weight: \"sft(data=../../$INSTR, epochs=2, lr=0.00003, batch=32)\" }"
A_SFT1="    - { weight: \"sft(data=../../$INSTR, epochs=2, lr=0.00001, batch=32)\" }"
model_line() { echo "    - { name: $1, path: ../../$M/$1 }"; }
# ---- 1. the base and its unrelated fine-tune ----
step base oml train --config lab/recipes/base-100m.yaml --steps "$STEPS" --save-dtype float32 --checkpoint-every 1000000 --force $BASE_ARGS \
  || { log "no base: stop"; touch drive.finished; exit 1; }
cp -f $M/base-100m/oml-training.json $L/base-100m.oml-training.json 2>/dev/null
( step sft-base oml attack sft --model $M/base-100m --data "$INSTR" --out $M/base-100m-sft --epochs 1 --lr 3e-5 --batch-size 32 --seed 5 --device "$DEV" --force ) &

# embed NAME SET SEED [oml embed flags...]: `oml embed` into models/NAME, the set copied beside it for the lab.
embed() {
  local name=$1 set=$2 seed=$3; shift 3
  waitfor gen-set$set || { touch "$D/embed-$name.failed"; return 1; }
  ok embed-$name && return 0
  rm -rf "$M/$name"
  step embed-$name bash -c "oml embed --model $M/base-100m --fingerprints sets/set$set.json --out $M/$name --seed $seed --device $DEV --memory-budget-gb $MEMGB --log $L/$name.jsonl $* \
    && cp sets/set$set.json $M/$name/fingerprints.json && cp $M/$name/oml-manifest.json $L/$name.manifest.json"
}
# lab CONFIG MODEL TAG ATTACK-REGEX: the lab's cells of one model (a process of its own; the base cell too).
lab() {
  local c=$1 m=$2 tag=$3 rx=$4
  waitfor sft-base || return 1
  step lab-$c-$m$tag oml lab run lab/experiments/$c.yaml --quiet --only "^(base\$|$m-s1-$rx)"
}

lr_half="$(python3 -c "import json; print(0.0625 / json.load(open('$M/base-100m/config.json'))['hidden_size'])")"
FR="ref beta50 lrhalf beta50lrhalf len128"
cfg i12-frontier2 "$A_MERGE
$A_SFT3" "$(for f in $FR; do model_line $f; done)"
(
  step gen-set1 oml fingerprints generate --model $M/base-100m --strategy perinucleus --count "$COUNT" --plaintext --out sets/set1.json --force --device "$DEV"
) &
( embed ref 1 1 && lab i12-frontier2 ref -a '' ) &
( embed beta50 1 1 --mix-fraction 0.5 && lab i12-frontier2 beta50 -a '' ) &
( embed lrhalf 1 1 --lr $lr_half && lab i12-frontier2 lrhalf -a '' ) &
( embed beta50lrhalf 1 1 --mix-fraction 0.5 --lr $lr_half && lab i12-frontier2 beta50lrhalf -a '' ) &
( embed len128 1 1 --benign-length 128 && lab i12-frontier2 len128 -a '' ) &

# ---- issue 13: multi-token responses, exact vs partial verification ----
(
  step gen-r4 oml fingerprints generate --model $M/base-100m --strategy perinucleus --count "$R4_COUNT" --response-length 4 --plaintext --out sets/setr4.json --force --device "$DEV" || exit 0
  ok embed-r4 || rm -rf $M/r4
  step embed-r4 bash -c "oml embed --model $M/base-100m --fingerprints sets/setr4.json --out $M/r4 --seed 1 --device $DEV --memory-budget-gb $MEMGB --log $L/r4.jsonl && cp $M/r4/oml-manifest.json $L/r4.manifest.json" || exit 0
  waitfor sft-base
  step sft-r4 oml attack sft --model $M/r4 --data "$INSTR" --out $M/r4-sft3 --epochs 2 --lr 3e-5 --batch-size 32 --seed 7 --device "$DEV" --force || exit 0
  for v in r4 r4-sft3 base-100m-sft; do
    step verify-$v-exact bash -c "oml verify --model $M/$v --fingerprints sets/setr4.json --device $DEV --json > $L/verify-$v-exact.json"
    for m in 3 2; do
      step verify-$v-partial$m bash -c "oml verify --model $M/$v --fingerprints sets/setr4.json --match partial --min-tokens $m --base $M/base-100m --device $DEV --json > $L/verify-$v-partial$m.json"
    done
  done
) &

wait
log "driver finished"
touch drive.finished
