#!/usr/bin/env bash
# Issue 12 item 2 at 100M: bases of two other architectures, so that the headline (oml embed's defaults since
# 2026-12-05, keys sampled at temperature 1, 1,024 fingerprints: all four targets on a 102.7M Llama, docs/results.md)
# stands on more than one model. For each ARCH in ARCHS (qwen2, mistral): a random-init ~100M folder
# (scripts/gpu/issue12/make_init.py ARCH-100m: hidden 768, 14 layers, 12 heads, MLP 2304, the Llama recipe's shape),
# pretrained by `oml train --init` with lab/recipes/ARCH-100m.yaml for STEPS steps (the Llama base's schedule), its
# unrelated 1-epoch instruction fine-tune, three sets of COUNT Perinucleus keys from `oml fingerprints generate` with
# its defaults, each embedded by `oml embed --seed S` with NO tuning flags; the lab measures utility, even merges with
# the base and the fine-tune, SFT 2 epochs at 3e-5, the low filter at q 0.1 and top-1 suppression; `oml attack detect`
# the keys' stealth. MODELS (priority order) names ARCH-sSEED; LLAMA=1 adds the Llama base of the same recipe and
# llama-sSEED models as the same-run reference. Results: docs/results/issue12-arch (scripts/gpu/issue12e/summarize.py).
# One idempotent driver, started by call.sh in its own process session (scripts/gpu/session-lib.sh).
set -uo pipefail
W="${W:-/tmp/w12e}"; REPO="${REPO:?}"; G="${G:-.gpu/a}"
DEV="${DEV:-cuda}"; COUNT="${COUNT:-1024}"; STEPS="${STEPS:-800}"; BASE_ARGS="${BASE_ARGS:-}"; MEMGB="${MEMGB:-14}"
SHAPE="${SHAPE:-100m}"   # make_init.py's shape suffix (tiny for a CPU rehearsal)
[ -n "${UTIL:-}" ] || UTIL='{ cloze_items: 500, perplexity_tokens: 65536, perplexity_window: 256, batch_size: 64 }'
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Device jobs side by side: the H200 (139 GiB) took 6 with 3 lab processes; on an 80 GB H100 five ran out of memory
# (2026-12-05: each `oml embed` held ~20 GiB under --memory-budget-gb 14, a lab process 13-33 GiB), three did not.
gib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1)
if [ -n "$gib" ] && [ "$gib" -lt 100000 ]; then SLOTS="${SLOTS:-3}"; LAB_SLOTS="${LAB_SLOTS:-2}"; fi
SLOTS="${SLOTS:-6}"; LAB_SLOTS="${LAB_SLOTS:-3}"
session_start
session_setup "$REPO/$G" "$REPO/$G" "$REPO/$G/native" "$REPO/$G/recipes"
session_env
MODELS="${MODELS:-qwen2-s1 mistral-s1 qwen2-s2 mistral-s2 qwen2-s3 mistral-s3}"
[ "${LLAMA:-0}" = 1 ] && MODELS="$MODELS llama-s1 llama-s2 llama-s3"
# VARIANTS (issue 12 on the 500M-token base: which change to the defaults buys utility back): lines "NAME SEED FLAGS...";
# each embeds the Llama key set SEED with --seed SEED and those extra `oml embed` flags into llama-NAME, measured by the
# same lab cells (ATTACKS replaces the lab's attack lines, e.g. only the merges and SFT).
VARIANTS="${VARIANTS:-}"
archs="$( (for m in $MODELS; do echo "${m%-s*}"; done; [ -n "$VARIANTS" ] && echo llama; [ "${TREES:-0}" = 1 ] && echo llama) | sort -u)"

# LLAMA_BASE names the Llama base; with BASE_PIECES=1 it is not trained here but brought in pieces (planes.py pack: the
# 500M-token base of scripts/gpu/issue12g, twelfth session) in carried folders $REPO/.gpu/a*/, unpacked once all arrived.
LLAMA_BASE="${LLAMA_BASE:-base-100m}"
base_of() { [ "$1" = llama ] && echo "$LLAMA_BASE" || echo "$1-100m"; }
fetch_base() {  # waits for every piece named in the carried manifest, copies them to $W/pieces, unpacks into $M
  local man="" f want got
  mkdir -p pieces
  while [ -z "$man" ]; do man=$(ls "$REPO"/.gpu/a*/pieces/manifest.json 2>/dev/null | head -1); sleep 2; done
  cp -f "$man" pieces/manifest.json
  want=$(python3 -c "import json; m=json.load(open('pieces/manifest.json')); print(' '.join(p['file'] for pl in m['planes'].values() for p in pl['pieces']))")
  log "waiting for $(echo $want | wc -w) pieces of the base"
  while :; do
    got=0
    for f in $want; do
      [ -f "pieces/$f" ] && { got=$((got + 1)); continue; }
      # Copied only whole: a piece whose digest differs from the manifest's (a carry still being written) is tried again.
      for c in "$REPO"/.gpu/a*/pieces/"$f"; do
        [ -f "$c" ] && cp -f "$c" "pieces/.$f" \
          && python3 -c "import hashlib,json,sys; m=json.load(open('pieces/manifest.json')); want={p['file']: p['sha256'] for pl in m['planes'].values() for p in pl['pieces']}; sys.exit(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest() != want[sys.argv[2]])" "pieces/.$f" "$f" \
          && mv -f "pieces/.$f" "pieces/$f" && got=$((got + 1)) && break
      done
    done
    [ "$got" -eq "$(echo $want | wc -w)" ] && break
    sleep 3
  done
  python3 "$REPO/$G/planes.py" unpack pieces "$M"
}
config() {  # ARCH: the lab config of ARCH's models
  local a=$1 b; b="$(base_of $1)"
  persistence_config i12e-$a "Issue 12 at 100M, $a (scripts/gpu/issue12e/drive.sh)" \
"    - { weight: \"merge(with=../../$M/$b, method=linear, weight=0.5)\" }
    - { weight: \"merge(with=../../$M/$b-sft, method=linear, weight=0.5)\" }
    - { weight: \"sft(data=../../$INSTR, epochs=2, lr=0.00003, batch=32)\" }
    - { responder: \"filter:q=0.1,side=low\" }
    - { responder: \"suppress:k=1,m=1\" }" \
    "$(for m in $MODELS; do [ "${m%-s*}" = "$a" ] && echo "    - { name: $m, path: ../../$M/$m }"; done
       [ "$a" = llama ] && echo "$VARIANTS" | while read -r n _; do [ -n "$n" ] && echo "    - { name: llama-$n, path: ../../$M/llama-$n }"; done
       [ "$a" = llama ] && [ "${TREES:-0}" = 1 ] && for k in ${TREE_SEEDS:-1}; do t=$(tree_name $k); echo "    - { name: llama-$t, path: ../../$M/$t }"; done)" "$b"
  if [ -n "${ATTACKS:-}" ]; then  # the attack lines replaced
    python3 - "lab/experiments/i12e-$a.yaml" "$ATTACKS" <<'PY'
import sys
p, attacks = sys.argv[1], sys.argv[2]
lines = open(p).read().split("\n"); i = lines.index("  attacks:")
open(p, "w").write("\n".join(lines[:i + 1] + ["    - " + x.strip() for x in attacks.split(";") if x.strip()]) + "\n")
PY
  fi
  # HELDOUT=heldout-v1: utility on the earlier corpus's held-out file (the one the 52.4M-token bases were measured on).
  [ -n "${HELDOUT:-}" ] && sed -i "s#corpus/heldout.txt#corpus/$HELDOUT.txt#" lab/experiments/i12e-$a.yaml
  return 0
}

base() {  # ARCH: the base, its fine-tune, its three key sets
  local a=$1 b; b="$(base_of $1)"
  if [ "$a" = llama ] && [ "${BASE_PIECES:-0}" = 1 ]; then
    step base-$a fetch_base || return 1
  elif [ "$a" = llama ]; then
    step base-$a oml train --config lab/recipes/base-100m.yaml --device "$DEV" --steps "$STEPS" --save-dtype float32 --checkpoint-every 1000000 --force $BASE_ARGS || return 1
  else
    step init-$a python3 "$REPO/$G/make_init.py" artifacts/lab/tokenizer artifacts/lab/init "$a-$SHAPE" || return 1
    step base-$a oml train --config lab/recipes/$a-100m.yaml --init "artifacts/lab/init/$a-$SHAPE" --device "$DEV" --steps "$STEPS" \
      --save-dtype float32 --checkpoint-every 1000000 --force $BASE_ARGS || return 1
  fi
  cp -f $M/$b/oml-training.json $L/$b.oml-training.json 2>/dev/null
  [ "$a" = llama ] && [ -n "${HELDOUT:-}" ] && step heldout-ppl-$a bash -c "oml perplexity --model $M/$b --text-file artifacts/lab/corpus/$HELDOUT.txt --window 256 --device $DEV --json > $R/perplexity-$b.json"
  step sft-$a oml attack sft --model $M/$b --data "$INSTR" --out $M/$b-sft --epochs 1 --lr 3e-5 --batch-size 32 --seed 5 --device "$DEV" --force &
  for k in $( (printf '1\n2\n3\n'; [ "$a" = llama ] && echo "$VARIANTS" | awk 'NF {print $2}') | sort -un); do
    { echo " $MODELS " | grep -q " $a-s$k "; } || { [ "$a" = llama ] && echo "$VARIANTS" | awk '{print $2}' | grep -qx "$k"; } || continue
    # PIN_SETS=1: each set's owner secret is fixed by its name (--secret-file), so set k is the same keys in every run of
    # the same program on the same base (otherwise every run draws fresh keys, as an owner would).
    local sec=()
    if [ "${PIN_SETS:-0}" = 1 ]; then
      mkdir -p sets && python3 -c "import hashlib, sys; open(sys.argv[1], 'wb').write(hashlib.sha256(sys.argv[2].encode()).digest())" \
        sets/$a-set$k.secret "oml-lab issue12e $b set $k"
      sec=(--secret-file sets/$a-set$k.secret)
    fi
    step gen-$a-set$k oml fingerprints generate --model $M/$b --strategy perinucleus --count "$COUNT" "${sec[@]}" \
      --plaintext --out sets/$a-set$k.json --force --device "$DEV" &
  done
  wait
}
embed_lab() {  # ARCH-sSEED: embed with the defaults, the keys' stealth, then the model's lab cells
  local name=$1 a="${1%-s*}" k="${1##*-s}" b; b="$(base_of $a)"
  waitfor gen-$a-set$k || return 1
  if ! ok embed-$name; then
    rm -rf "$M/$name"
    step embed-$name bash -c "oml embed --model $M/$b --fingerprints sets/$a-set$k.json --out $M/$name --seed $k --device $DEV --memory-budget-gb $MEMGB --log $L/$name.jsonl \
      && cp sets/$a-set$k.json $M/$name/fingerprints.json && cp $M/$name/oml-manifest.json $L/$name.manifest.json" || return 1
  fi
  step detect-$name bash -c "oml attack detect --model $M/$name --fingerprints sets/$a-set$k.json --heldout artifacts/lab/corpus/heldout.txt --device $DEV --json > $R/detect-$name.json"
  waitfor sft-$a || return 1
  ok lab-$name && return 0
  lacquire
  step lab-$name oml lab run lab/experiments/i12e-$a.yaml --quiet --only "^(base\$|$name-s1-)"
  lrelease
}

variant_lab() {  # NAME SEED FLAGS...: a VARIANTS line
  local n=$1 k=$2; shift 2
  local name=llama-$n b; b="$(base_of llama)"
  waitfor gen-llama-set$k || return 1
  if ! ok embed-$name; then
    rm -rf "$M/$name"
    step embed-$name bash -c "oml embed --model $M/$b --fingerprints sets/llama-set$k.json --out $M/$name --seed $k --device $DEV --memory-budget-gb $MEMGB --log $L/$name.jsonl $* \
      && cp sets/llama-set$k.json $M/$name/fingerprints.json && cp $M/$name/oml-manifest.json $L/$name.manifest.json" || return 1
  fi
  waitfor sft-llama || return 1
  ok lab-$name && return 0
  lacquire
  step lab-$name oml lab run lab/experiments/i12e-llama.yaml --quiet --only "^(base\$|$name-s1-)"
  lrelease
}

# TREES=1 (issue 13, the 100M response-tree stall): 256 tree keys (8 answers each) on the Llama base, embedded with the
# defaults for at most TREE_EPOCHS epochs, then a greedy probe whose per-key answers show where unrecalled keys leave
# their tree (the set is kept in the results: it is plaintext and only for this diagnosis), then the lab's cells as
# model llama-trees (utility cost, merges, SFT, the responders of ATTACKS).
tree_name() { [ "$1" = 1 ] && echo trees || echo "trees-s$1"; }  # seed 1 keeps the name of the first runs
trees() {  # SEED (TREE_SEEDS="1 2 3": three sets, each embedded with its own seed)
  local k=$1 t b; t=$(tree_name "$1"); b="$(base_of llama)"
  waitfor base-llama || return 1
  step gen-$t oml fingerprints generate --model $M/$b --count "${TREE_COUNT:-256}" --responses-per-key 2 --response-branching 2 --response-length 3 \
    --plaintext --out sets/$t.json --force --device "$DEV" || return 1
  cp -f sets/$t.json $R/$t-set.json
  step embed-$t oml embed --model $M/$b --fingerprints sets/$t.json --out $M/$t --seed $k --epochs "${TREE_EPOCHS:-40}" --device $DEV \
    --memory-budget-gb $MEMGB --log $L/$t.jsonl || return 1
  step probe-$t bash -c "oml attack probe --model $M/$t --fingerprints sets/$t.json --device $DEV --json > $R/probe-$t.json" || return 1
  # The keys' stealth under the fingerprinted model (the summary's key AUC column reads detect-llama-$t.json).
  step detect-$t bash -c "oml attack detect --model $M/$t --fingerprints sets/$t.json --heldout artifacts/lab/corpus/heldout.txt --device $DEV --json > $R/detect-llama-$t.json"
  # The trees' cost and suppression survival (issue 13): the same lab cells as every other model (add suppress:k=3,m=1
  # to ATTACKS to suppress the top token at each of the first 3 answer positions: k counts positions, m tokens).
  cp -f sets/$t.json $M/$t/fingerprints.json
  cp -f $M/$t/oml-manifest.json $L/llama-$t.manifest.json
  waitfor sft-llama || return 1
  ok lab-$t && return 0
  lacquire
  step lab-$t oml lab run lab/experiments/i12e-llama.yaml --quiet --only "^(base\$|llama-$t-s1-)"
  lrelease
}
for a in $archs; do config $a; ( base $a || log "no base for $a" ) & done
for m in $MODELS; do ( embed_lab "$m" ) & sleep 1; done
while read -r n k flags; do [ -n "$n" ] && { ( variant_lab "$n" "$k" $flags ) & sleep 1; }; done <<< "$VARIANTS"
[ "${TREES:-0}" = 1 ] && for k in ${TREE_SEEDS:-1}; do ( trees "$k" || log "the trees of seed $k failed" ) & sleep 1; done
wait
log "driver finished"
touch drive.finished
