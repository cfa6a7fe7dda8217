#!/usr/bin/env bash
# Issue 12 item 4 at 100M: how often models that never saw a set's keys hit them when a host suppresses the top tokens
# (on CPU, docs/results.md "The null under suppression at thousands of keys", a 0.2M base hit 1.1 % of 8,192 keys
# through top-3 suppression and was "owned" under the default null). On the 102.7M Llama base of the headline
# (lab/recipes/base-100m.yaml, STEPS steps): one probe set A of COUNT_A Perinucleus keys (`oml fingerprints generate`,
# defaults), and strong negatives that never saw A: the base, its 1-epoch instruction fine-tune, two siblings embedded
# by `oml embed` (defaults) with sets B and C of COUNT_SIB keys, the fine-tune of sibling B, and a 108.9M Mistral base
# trained on the same data (another architecture and init). Each negative is probed on A greedily and through top-m
# first-token suppression (m = 1, 2, 3, 5) and sampled at t 0.7 (top-p 0.9) and 1: `oml attack probe --json` (verdict and p-value under the default null) and
# `--calibrate` over all negatives (rates, Clopper-Pearson bounds, the floor). Then, issue 13 at 100M: response trees
# (TREE keys with 2 first tokens, each branching twice: 8 answers per key) beside as many plain keys, embedded with the
# defaults, through the lab (utility; top-1 suppression of the first and of every answer token; the low filter).
# Results: docs/results/issue12-null (scripts/gpu/issue12f/summarize.py). One idempotent driver (session-lib.sh).
set -uo pipefail
W="${W:-/tmp/w12f}"; REPO="${REPO:?}"; G="${G:-.gpu/f}"
DEV="${DEV:-cuda}"; STEPS="${STEPS:-800}"; BASE_ARGS="${BASE_ARGS:-}"; MEMGB="${MEMGB:-14}"; SHAPE="${SHAPE:-100m}"
COUNT_A="${COUNT_A:-8192}"; COUNT_SIB="${COUNT_SIB:-1024}"; TREE="${TREE:-256}"
[ -n "${UTIL:-}" ] || UTIL='{ cloze_items: 500, perplexity_tokens: 65536, perplexity_window: 256, batch_size: 64 }'
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
gib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1)
if [ -n "$gib" ] && [ "$gib" -lt 100000 ]; then SLOTS="${SLOTS:-4}"; LAB_SLOTS="${LAB_SLOTS:-2}"; fi
SLOTS="${SLOTS:-6}"; LAB_SLOTS="${LAB_SLOTS:-3}"
session_start
session_setup "$REPO/$G" "$REPO/$G" "$REPO/$G/native" "$REPO/$G/recipes"
session_env
B=base-100m
RESPONDERS="greedy suppress:k=1,m=1 suppress:k=1,m=2 suppress:k=1,m=3 suppress:k=1,m=5 sample:t=0.7,top_p=0.9 sample:t=1"
NEGS="base=$M/$B base-sft=$M/$B-sft sib-B=$M/sib-B sib-C=$M/sib-C sib-B-sft=$M/sib-B-sft mistral=$M/mistral-100m"
tag() { echo "$1" | tr ':,=' '___'; }

mistral() {
  step init-mistral python3 "$REPO/$G/make_init.py" artifacts/lab/tokenizer artifacts/lab/init "mistral-$SHAPE" || { touch $D/base-mistral.failed; return 1; }
  step base-mistral oml train --config lab/recipes/mistral-100m.yaml --init "artifacts/lab/init/mistral-$SHAPE" --device "$DEV" \
    --steps "$STEPS" --save-dtype float32 --checkpoint-every 1000000 --force $BASE_ARGS
}
llama() {
  step base-llama oml train --config lab/recipes/base-100m.yaml --device "$DEV" --steps "$STEPS" --save-dtype float32 \
    --checkpoint-every 1000000 --force $BASE_ARGS || { for s in A B C P T; do touch $D/gen-$s.failed; done; touch $D/sft-base.failed; return 1; }
  cp -f $M/$B/oml-training.json $L/$B.oml-training.json 2>/dev/null
  step sft-base oml attack sft --model $M/$B --data "$INSTR" --out $M/$B-sft --epochs 1 --lr 3e-5 --batch-size 32 --seed 5 --device "$DEV" --force &
  step gen-A oml fingerprints generate --model $M/$B --count "$COUNT_A" --plaintext --out sets/A.json --force --device "$DEV" &
  for s in B C; do
    step gen-$s oml fingerprints generate --model $M/$B --count "$COUNT_SIB" --plaintext --out sets/$s.json --force --device "$DEV" &
  done
  step gen-P oml fingerprints generate --model $M/$B --count "$TREE" --plaintext --out sets/P.json --force --device "$DEV" &
  step gen-T oml fingerprints generate --model $M/$B --count "$TREE" --response-length 3 --responses-per-key 2 \
    --response-branching 2 --plaintext --out sets/T.json --force --device "$DEV" &
  wait
}
embed() {  # NAME SET SEED
  local name=$1 set=$2 seed=$3
  waitfor gen-$set || { touch $D/embed-$name.failed; return 1; }
  ok embed-$name && return 0
  rm -rf "$M/$name"
  step embed-$name bash -c "oml embed --model $M/$B --fingerprints sets/$set.json --out $M/$name --seed $seed --device $DEV --memory-budget-gb $MEMGB --log $L/$name.jsonl \
    && cp sets/$set.json $M/$name/fingerprints.json && cp $M/$name/oml-manifest.json $L/$name.manifest.json"
}
probes() {  # every negative through every responder on set A
  local s; for s in sft-base embed-sib-B embed-sib-C sft-sib-B base-mistral; do waitfor $s || true; done
  waitfor gen-A || return 1
  local r t n negs=""
  mkdir -p probes   # whole reports (every key's answer: megabytes at 8,192 keys); the results keep slim copies
  for n in $NEGS; do [ -f "${n#*=}/config.json" ] && negs="$negs --calibrate $n"; done
  for r in $RESPONDERS; do
    t=$(tag "$r")
    step cal-$t bash -c "oml attack probe --fingerprints sets/A.json --responder '$r' $negs --calibration-out $R/cal-$t.json --force > $R/cal-$t.txt" &
    for n in $NEGS; do
      [ -f "${n#*=}/config.json" ] || continue
      step probe-${n%%=*}-$t bash -c "oml attack probe --model ${n#*=} --fingerprints sets/A.json --responder '$r' --json > probes/probe-${n%%=*}-$t.json \
        && python3 '$REPO/$G/slim.py' probes/probe-${n%%=*}-$t.json $R/probe-${n%%=*}-$t.json" &
    done
    wait
  done
}
trees() {
  waitfor embed-plain-$TREE && waitfor embed-tree-$TREE || return 1
  persistence_config i12f-trees "Issue 13 at 100M: response trees beside plain keys (scripts/gpu/issue12f/drive.sh)" \
"    - { responder: \"suppress:k=1,m=1\" }
    - { responder: \"suppress:k=3,m=1\" }
    - { responder: \"filter:q=0.1,side=low\" }" \
"    - { name: plain-$TREE, path: ../../$M/plain-$TREE }
    - { name: tree-$TREE, path: ../../$M/tree-$TREE }"
  lacquire
  step lab-trees oml lab run lab/experiments/i12f-trees.yaml --quiet
  lrelease
}

( mistral || log "no mistral base" ) &
( llama || log "no llama base" ) &
( { embed sib-B B 1 || { touch $D/sft-sib-B.failed; false; }; } && step sft-sib-B oml attack sft --model $M/sib-B --data "$INSTR" --out $M/sib-B-sft --epochs 1 --lr 3e-5 --batch-size 32 --seed 5 --device "$DEV" --force ) &
( embed sib-C C 2 ) &
( embed plain-$TREE P 1 ) &
( embed tree-$TREE T 1 ) &
( probes ) &
( trees ) &
wait
log "driver finished"
touch drive.finished
