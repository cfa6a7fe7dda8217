#!/usr/bin/env bash
# Issue 13 at 100M (run 2026-12-05 except t1r4, which hit the per-row recall bug since fixed: rerun it, anchored keys
# and keys at temperature 1 under the harmless setting (issue 12), beside plain ones of the same machine's base:
# MODELS="t1-s1 t1a-s1 t1h-s1 t1r4-s1 t1-s2 t1a-s2 t1h-s2 t1-s3 t1a-s3 t1h-s3" from a fresh pack; results of the first
# run in docs/results/issue13-100m, of the second in issue13-100m-b): does camouflage cost the owner at scale, and does it beat
# the low-perplexity filter there? On the CPU models (0.1-0.5M parameters, docs/results.md "The low-perplexity detector
# as a filter" and "Key temperature on the demo's model") the filter that refuses prompts less perplexing than ordinary
# text removed most default keys (sampled at temperature 0.5) at almost no cost to the host, keys sampled at
# temperature 1 kept most, and their cost to the owner was unresolved (none on the 125k base, +14.6 % against +4.6 %
# on the demo's). Here: a fresh 102.7M base (lab/recipes/base-100m.yaml, 800 steps), 1,024 Perinucleus keys per set
# embedded by `oml embed` with its defaults; keys at temperature 0.5 (the default) and 1.0 on three sets and seeds;
# on one set each, perplexity-matched keys (`--camouflage` against the base's own training text, the owner's corpus)
# and keys at 1.0 with four responses per key (k 4); the lab measures utility, even merges with the base and an
# unrelated fine-tune, SFT 2 epochs at 3e-5, the low filter at q 0.02 and 0.1, first-token suppression (top 1, top 3)
# and the filter with top-3 suppression; `oml attack detect` gives each model's key AUC.
# One idempotent driver, started by call.sh in its own process session (scripts/gpu/session-lib.sh).
set -uo pipefail
W="${W:-/tmp/w13b}"; REPO="${REPO:?}"; G="${G:-.gpu/k}"
DEV="${DEV:-cuda}"; COUNT="${COUNT:-1024}"; STEPS="${STEPS:-800}"; BASE_ARGS="${BASE_ARGS:-}"; MEMGB="${MEMGB:-14}"
[ -n "${UTIL:-}" ] || UTIL='{ cloze_items: 500, perplexity_tokens: 65536, perplexity_window: 256, batch_size: 64 }'
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SLOTS="${SLOTS:-8}"; LAB_SLOTS="${LAB_SLOTS:-5}"
session_start
session_setup "$REPO/$G" "$REPO/$G" "$REPO/$G/native" "$REPO/$G/recipes"
session_env

# MODELS (priority order: a shorter list for a smaller device budget): NAME-sSEED, NAME one of t05, t1 (keys at that
# temperature), m (perplexity-matched keys), t1r4 (t 1 with four responses per key); the set is NAME-setSEED. A name
# ending in "a" (t1a, t05a, ma) embeds the set of the name without it with `oml embed --anchor-keys`; one ending in "h"
# (t1h) with the harmless setting of the fifth issue-12 session (`--mix-fraction 0.5 --lr 8.1e-5`, half the default lr
# of this width); both letters may stand together (t1ah).
MODELS="${MODELS:-t05-s1 t1-s1 m-s1 t05-s2 t1-s2 t05-s3 t1-s3 t1r4-s1}"
persistence_config i13b "Issue 13 at 100M (scripts/gpu/issue13b/drive.sh)" \
'    - { weight: "merge(with=../../'$M'/base-100m, method=linear, weight=0.5)" }
    - { weight: "merge(with=../../'$M'/base-100m-sft, method=linear, weight=0.5)" }
    - { weight: "sft(data=../../'$INSTR', epochs=2, lr=0.00003, batch=32)" }
    - { responder: "filter:q=0.02,side=low" }
    - { responder: "filter:q=0.1,side=low" }
    - { responder: "suppress:k=1,m=1" }
    - { responder: "suppress:k=1,m=3" }
    - { responder: "filter:q=0.05,side=low+suppress:k=1,m=3" }' \
"$(for m in $MODELS; do echo "    - { name: $m, path: ../../$M/$m }"; done)"

step base oml train --config lab/recipes/base-100m.yaml --device "$DEV" --steps "$STEPS" --save-dtype float32 --checkpoint-every 1000000 --force $BASE_ARGS \
  || { log "no base: stop"; touch drive.finished; exit 1; }
cp -f $M/base-100m/oml-training.json $L/base-100m.oml-training.json 2>/dev/null
( step sft-base oml attack sft --model $M/base-100m --data "$INSTR" --out $M/base-100m-sft --epochs 1 --lr 3e-5 --batch-size 32 --seed 5 --device "$DEV" --force ) &

gen() {  # SET TEMPERATURE [generate flags...]: a set of COUNT Perinucleus keys
  local set=$1 t=$2; shift 2
  step gen-$set oml fingerprints generate --model $M/base-100m --strategy perinucleus --count "$COUNT" --temperature "$t" "$@" \
    --plaintext --out sets/$set.json --force --device "$DEV"
}
embed_lab() {  # NAME SET SEED: embed with the defaults, score the keys' stealth, then every cell of the model in one lab process
  local name=$1 set=$2 seed=$3
  waitfor gen-$set || return 1
  if ! ok embed-$name; then
    rm -rf "$M/$name"
    local flags="" v; v="$(variant_of "$name")"
    case "$v" in *a*) flags="$flags --anchor-keys" ;; esac
    case "$v" in *h*) flags="$flags --mix-fraction 0.5 --lr 8.1e-5" ;; esac
    step embed-$name bash -c "oml embed --model $M/base-100m --fingerprints sets/$set.json --out $M/$name --seed $seed --device $DEV --memory-budget-gb $MEMGB --log $L/$name.jsonl$flags \
      && cp sets/$set.json $M/$name/fingerprints.json && cp $M/$name/oml-manifest.json $L/$name.manifest.json" || return 1
  fi
  step detect-$name bash -c "oml attack detect --model $M/$name --fingerprints sets/$set.json --heldout artifacts/lab/corpus/heldout.txt --device $DEV --json > $R/detect-$name.json"
  waitfor sft-base || return 1
  ok lab-$name && return 0
  lacquire
  step lab-$name oml lab run lab/experiments/i13b.yaml --quiet --only "^(base\$|$name-s1-)"
  lrelease
}
# NAME-sSEED -> the embedding letters after the set's name ("a", "h", "ah"), the set's name, its set.
variant_of() { local n="${1%-s*}"; [[ "$n" =~ ^(t05|t1r4|t1|m)([ah]*)$ ]] && echo "${BASH_REMATCH[2]}"; }
keys_of() { local n="${1%-s*}"; [[ "$n" =~ ^(t05|t1r4|t1|m)([ah]*)$ ]] && echo "${BASH_REMATCH[1]}"; }
set_of() { echo "$(keys_of "$1")-set${1##*-s}"; }
gen_args() {  # NAME-sSEED: the temperature and generate flags of its set
  case "$(keys_of "$1")" in
    t05) echo 0.5 ;;
    t1) echo 1.0 ;;
    m) echo 1.0 --camouflage artifacts/lab/corpus/train.txt ;;
    t1r4) echo 1.0 --responses-per-key 4 --k 4 ;;
    *) log "unknown model $1"; return 1 ;;
  esac
}
# One generation per set (an anchored model shares its set with the plain one).
declare -A started
for m in $MODELS; do sn="$(set_of $m)"; [ -n "${started[$sn]:-}" ] && continue; started[$sn]=1; a="$(gen_args $m)" && gen "$sn" $a & done
# Launch order is slot priority: MODELS' order.
for m in $MODELS; do ( embed_lab "$m" "$(set_of $m)" "${m##*-s}" ) & sleep 1; done
wait
log "driver finished"
touch drive.finished
