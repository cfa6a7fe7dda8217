#!/usr/bin/env bash
# Issue 12 (second GPU session): the whole device pipeline as one idempotent driver, started by call.sh in its own
# process session (setsid) so that it runs on between device calls while the machine stays warm. Every step leaves a
# marker in $W/done and is skipped when it exists; a fresh machine reruns what is missing. Priorities, in order:
#   1. the 102.7M Llama base (lab/recipes/base-100m.yaml, 800 steps, saved in float32 so that `oml embed` with no
#      flags trains in float32), its unrelated fine-tune (1 epoch of instructions at 3e-5, never fingerprinted);
#   2. 1,024 Perinucleus fingerprints embedded by `oml embed` with NO tuning flags, three sets and seeds
#      (defaults-set1..3), each measured by the lab (utility, even merges with the base and the fine-tune, SFT
#      2 epochs at 3e-5 and 1e-5);
#   3. frontier points on set 1 (one seed): post-hoc merges of defaults-set1 towards the base (λ 0.25, 0.5), half
#      the default lr, β 0.5, benign mixing on corpus text instead of self-generated samples, bfloat16 training;
#      measured with the merges and SFT at 3e-5;
#   4. if started early enough: Qwen2 and Mistral small bases (make_init.py + `oml train --init`) and the recall of
#      16 and 256 keys embedded with `oml embed` defaults.
# Environment (defaults for the H200): W work dir, REPO the repository copy holding .gpu/, DEV, COUNT, STEPS,
# BASE_ARGS (extra `oml train` flags), INSTR (instruction data), UTIL (the lab's utility settings), P3_MAX_START.
set -uo pipefail
W="${W:-/tmp/w2}"; REPO="${REPO:?}"
DEV="${DEV:-cuda}"; COUNT="${COUNT:-1024}"; STEPS="${STEPS:-800}"; BASE_ARGS="${BASE_ARGS:-}"; MEMGB="${MEMGB:-16}"
SMALL_ARGS="${SMALL_ARGS:-}"; SMALL_COUNTS="${SMALL_COUNTS:-16 256}"
[ -n "${UTIL:-}" ] || UTIL='{ cloze_items: 500, perplexity_tokens: 65536, perplexity_window: 256, batch_size: 64 }'
P3_MAX_START="${P3_MAX_START:-900}"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # scripts/gpu/session-lib.sh: session_start, step, ok, waitfor, ...
SLOTS="${SLOTS:-6}"
session_start
session_setup "$REPO/.gpu" "$REPO/.gpu/issue12b" "$REPO/native" "$REPO/.gpu/issue12b/recipes"
session_env

# ---- the lab configs (paths relative to lab/experiments/) ----
cfg() {  # name output attacks(yaml lines) models(yaml lines)
  cat > lab/experiments/$1.yaml <<EOF
# Issue 12 (scripts/gpu/issue12b/drive.sh): models embedded by 'oml embed' (paths), measured by the lab.
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
utility: $UTIL
seeds: [1]
output: ../../$R/$1
persistence:
  models:
$3
  attacks:
$2
EOF
}
A_MERGE="    - { weight: \"merge(with=../../$M/base-100m, method=linear, weight=0.5)\" }
    - { weight: \"merge(with=../../$M/base-100m-sft, method=linear, weight=0.5)\" }"
A_SFT3="    - { weight: \"sft(data=../../$INSTR, epochs=2, lr=0.00003, batch=32)\" }"
A_SFT1="    - { weight: \"sft(data=../../$INSTR, epochs=2, lr=0.00001, batch=32)\" }"
model_line() { echo "    - { name: $1, path: ../../$M/$1 }"; }
cfg i12-defaults "$A_MERGE
$A_SFT3
$A_SFT1" "$(for k in 1 2 3; do model_line defaults-set$k; done)"
FRONTIER="merge25 merge50 lrhalf beta50 benign bf16"
cfg i12-frontier "$A_MERGE
$A_SFT3" "$(for f in $FRONTIER; do model_line $f; done)"

# ---- 1. the base and its unrelated fine-tune ----
step base oml train --config lab/recipes/base-100m.yaml --steps "$STEPS" --save-dtype float32 --checkpoint-every 1000000 --force $BASE_ARGS \
  || { log "no base: stop"; touch drive.finished; exit 1; }
cp -f $M/base-100m/oml-training.json $L/base-100m.oml-training.json 2>/dev/null
( step sft-base oml attack sft --model $M/base-100m --data "$INSTR" --out $M/base-100m-sft --epochs 1 --lr 3e-5 --batch-size 32 --seed 5 --device "$DEV" --force ) &

# embed NAME SET SEED [oml embed flags...]: `oml embed` into models/NAME, the set copied beside it for the lab.
embed() {
  local name=$1 set=$2 seed=$3; shift 3
  waitfor gen-set$set || { touch "$D/embed-$name.failed"; return 1; }
  ok embed-$name && return 0      # never remove a model a finished step made (a restarted driver skips it)
  rm -rf "$M/$name"
  step embed-$name bash -c "oml embed --model $M/base-100m --fingerprints sets/set$set.json --out $M/$name --seed $seed --device $DEV --memory-budget-gb $MEMGB --log $L/$name.jsonl $* \
    && cp sets/set$set.json $M/$name/fingerprints.json && cp $M/$name/oml-manifest.json $L/$name.manifest.json"
}
# lab CONFIG MODEL [TAG ATTACK-REGEX]: the lab's cells of one model (a process of its own; the base cell too).
lab() {
  local c=$1 m=$2 tag=${3:-} rx=${4:-}
  waitfor sft-base || return 1
  step lab-$m$tag oml lab run lab/experiments/$c.yaml --quiet --only "^(base\$|$m-s1-$rx)"
}
perp() { step perp-$1 oml perplexity --model $M/$1 --base $M/base-100m --text-file artifacts/lab/corpus/heldout.txt --device "$DEV" --json; }

# ---- 2. oml embed defaults, three sets and seeds ----
for k in 1 2 3; do
  (
    step gen-set$k oml fingerprints generate --model $M/base-100m --strategy perinucleus --count "$COUNT" --plaintext --out sets/set$k.json --force --device "$DEV"
    embed defaults-set$k $k $k || exit 0
    lab i12-defaults defaults-set$k -a '(before|merge|sft.*lr=0\.00003_)' &
    # SFT at 1e-5 in a second process once the 'before' cell is saved.
    while [ ! -f $R/i12-defaults/cells/defaults-set$k-s1-before.json ] && [ ! -f $D/lab-defaults-set$k-a.failed ]; do sleep 3; done
    lab i12-defaults defaults-set$k -b 'sft.*lr=0\.00001_'
    wait
  ) &
done

# ---- 3. frontier points (set 1, one seed) ----
(
  waitfor embed-defaults-set1 || exit 0
  for lam in 25 50; do
    (
      step merge-$lam bash -c "rm -rf $M/merge$lam && oml attack merge --model $M/defaults-set1 --with $M/base-100m --method linear --weight 0.$lam --out $M/merge$lam --device $DEV && cp sets/set1.json $M/merge$lam/fingerprints.json"
      lab i12-frontier merge$lam
    ) &
  done
  wait
) &
# The embedding variants start once the defaults' three embeddings are done (priority 2 after priority 1).
head -c 3000000 artifacts/lab/corpus/train.txt | sed '$d' > benign.txt
p1() { for k in 1 2 3; do while ! ok embed-defaults-set$k && ! [ -f $D/embed-defaults-set$k.failed ]; do sleep 2; done; done; }
( p1; embed lrhalf 1 1 --lr "$(python3 -c "import json; print(0.0625 / json.load(open('$M/base-100m/config.json'))['hidden_size'])")" && lab i12-frontier lrhalf ) &
( p1; embed beta50 1 1 --mix-fraction 0.5 && lab i12-frontier beta50 ) &
( p1; embed benign 1 1 --benign-text benign.txt && lab i12-frontier benign ) &
( p1; embed bf16 1 1 --dtype bfloat16 && lab i12-frontier bf16 ) &

# ---- 4. other architectures (only if the defaults' embeddings are done early enough) ----
(
  for e in defaults-set1 defaults-set2 defaults-set3 lrhalf beta50 benign bf16; do while ! ok embed-$e && ! [ -f $D/embed-$e.failed ]; do sleep 2; done; done
  [ $(( $(date +%s) - T0 )) -le "$P3_MAX_START" ] || { log "skip other architectures (late)"; exit 0; }
  step make-init python3 "$REPO/.gpu/issue12b/make_init.py" artifacts/lab/tokenizer artifacts/lab/init || exit 0
  for a in qwen2 mistral; do
    (
      step train-$a oml train --config lab/recipes/$a-small.yaml --checkpoint-every 1000000 --force $SMALL_ARGS || exit 0
      cp -f $M/$a-small/oml-training.json $L/$a-small.oml-training.json
      for n in $SMALL_COUNTS; do
        step gen-$a-$n oml fingerprints generate --model $M/$a-small --strategy perinucleus --count $n --plaintext --out sets/$a-$n.json --force --device "$DEV" || continue
        ok embed-$a-$n || rm -rf $M/$a-$n
        step embed-$a-$n bash -c "oml embed --model $M/$a-small --fingerprints sets/$a-$n.json --out $M/$a-$n --device $DEV --memory-budget-gb $MEMGB --log $L/$a-$n.jsonl && cp $M/$a-$n/oml-manifest.json $L/$a-$n.manifest.json" || continue
        step perp-$a-$n oml perplexity --model $M/$a-$n --base $M/$a-small --text-file artifacts/lab/corpus/heldout.txt --device "$DEV" --json
      done
    ) &
  done
  wait
) &

for k in 1 2 3; do ( waitfor embed-defaults-set$k && perp defaults-set$k ) & done
wait
log "driver finished"
touch drive.finished
