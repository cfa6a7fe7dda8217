#!/usr/bin/env bash
# Issue 12 (third GPU session): the new `oml embed` defaults (a self-generated benign pool that scales with the set)
# measured on the 102.7M base with 3 seeds, the old 64 × 32 pool as the peer, a Qwen2 base, and (issue 13) the
# adaptive responders and partial-match verification on one fingerprinted model. One idempotent driver, started by
# call.sh in its own process session so it runs on between device calls; every step leaves a marker in $W/done.
#   1. base-100m (lab/recipes/base-100m.yaml, STEPS steps, saved in float32) and its unrelated fine-tune;
#   2. three sets of COUNT Perinucleus keys, `oml embed` with NO tuning flags (new-set1..3, --seed k), and the old
#      pool (old64-set1: --benign-count 64 --benign-length 32) on set 1; the lab measures each (utility, even merges
#      with the base and the fine-tune, SFT 2 epochs at 3e-5 and, for the new defaults, 1e-5);
#   3. qwen2-small (make_init.py + `oml train --init`), 16 and 256 keys with the defaults, `oml perplexity`;
#   4. issue 13 on new-set1: the lab's responder attacks (whole-answer utility on held-out instructions), and
#      `oml verify` exact vs partial on new-set1 after SFT 2 epochs at 3e-5, and on the base (a negative).
# Environment: W, REPO (the repository copy holding .gpu/), DEV, COUNT, STEPS, SLOTS, MEMGB, UTIL, CPU_SHIM (tests).
set -uo pipefail
W="${W:-/tmp/w3}"; REPO="${REPO:?}"
DEV="${DEV:-cuda}"; COUNT="${COUNT:-1024}"; STEPS="${STEPS:-800}"; BASE_ARGS="${BASE_ARGS:-}"; MEMGB="${MEMGB:-16}"
SMALL_ARGS="${SMALL_ARGS:-}"; SMALL_COUNTS="${SMALL_COUNTS:-16 256}"; SMALL_ARCH="${SMALL_ARCH:-qwen2}"
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
cfg i12-new "$A_MERGE
$A_SFT3
$A_SFT1" "$(for k in 1 2 3; do model_line new-set$k; done)"
cfg i12-old "$A_MERGE
$A_SFT3" "$(model_line old64-set1)"
A_ADAPT='    - { responder: "suppress:k=1,m=1" }
    - { responder: "suppress:k=3,m=1" }
    - { responder: "suppress:k=1,m=3" }
    - { responder: "filter:q=0.9" }
    - { responder: "filter:q=0.9+suppress:k=1,m=1" }
    - { responder: "sample:t=1,seed=1" }
    - { responder: "system:\"You are a helpful assistant.\"" }'
cfg i13-adaptive "$A_ADAPT" "$(model_line new-set1)" "$UTIL13"

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

# ---- 2. the new defaults, three sets and seeds; the old pool on set 1 ----
for k in 1 2 3; do
  (
    step gen-set$k oml fingerprints generate --model $M/base-100m --strategy perinucleus --count "$COUNT" --plaintext --out sets/set$k.json --force --device "$DEV"
    embed new-set$k $k $k || exit 0
    lab i12-new new-set$k -a '(before|merge|sft.*lr=0\.00003_)' &
    while [ ! -f $R/i12-new/cells/new-set$k-s1-before.json ] && [ ! -f $D/lab-i12-new-new-set$k-a.failed ] && [ ! -f $D/lab-i12-new-new-set$k-a ]; do sleep 3; done
    lab i12-new new-set$k -b 'sft.*lr=0\.00001_'
    wait
  ) &
done
( embed old64-set1 1 1 --benign-count 64 --benign-length 32 && lab i12-old old64-set1 -a '(before|merge|sft)' ) &

# ---- 3. another architecture ----
(
  step make-init python3 "$REPO/.gpu/issue12c/make_init.py" artifacts/lab/tokenizer artifacts/lab/init || exit 0
  a=$SMALL_ARCH
  step train-$a oml train --config lab/recipes/$a-small.yaml --checkpoint-every 1000000 --force $SMALL_ARGS || exit 0
  cp -f $M/$a-small/oml-training.json $L/$a-small.oml-training.json
  for n in $SMALL_COUNTS; do
    step gen-$a-$n oml fingerprints generate --model $M/$a-small --strategy perinucleus --count $n --plaintext --out sets/$a-$n.json --force --device "$DEV" || continue
    ok embed-$a-$n || rm -rf $M/$a-$n
    step embed-$a-$n bash -c "oml embed --model $M/$a-small --fingerprints sets/$a-$n.json --out $M/$a-$n --device $DEV --memory-budget-gb $MEMGB --log $L/$a-$n.jsonl && cp $M/$a-$n/oml-manifest.json $L/$a-$n.manifest.json" || continue
    step perp-$a-$n oml perplexity --model $M/$a-$n --base $M/$a-small --text-file artifacts/lab/corpus/heldout.txt --device "$DEV" --json
  done
) &

# ---- 4. issue 13 on new-set1: responders, partial-match verification ----
(
  waitfor embed-new-set1 || exit 0
  lab i13-adaptive new-set1 "" '' &
  waitfor sft-base
  step sft-new1 oml attack sft --model $M/new-set1 --data "$INSTR" --out $M/new-set1-sft3 --epochs 2 --lr 3e-5 --batch-size 32 --seed 7 --device "$DEV" --force || exit 0
  for mt in exact partial; do
    extra=""; [ $mt = partial ] && extra="--base $M/base-100m"
    for v in new-set1-sft3 base-100m-sft new-set1; do
      step verify-$v-$mt bash -c "oml verify --model $M/$v --fingerprints sets/set1.json --match $mt $extra --device $DEV --json > $L/verify-$v-$mt.json"
    done
  done
  wait
) &

wait
log "driver finished"
touch drive.finished
