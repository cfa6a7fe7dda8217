#!/usr/bin/env bash
# λ-cap measurement on the CPU lab bases (resumable: every finished output file is kept and skipped).
#   CAP=DIR scripts/lab/cpu-lambda-cap/run.sh UNIT...   where UNIT = ARCH:SEED (base $CAP/models/ARCH-base, 64 keys)
#                                  or init-ARCH:SEED (random init $CAP/init/ARCH-cpu, 16 keys)
# Per unit: one Perinucleus set, then per setting A (defaults), B (--averaging-lambda 0.1), C (--averaging-lambda 0.05):
# (SETTINGS overrides; extra settings D: --mix-fraction 0.75 --benign-text $CAP/corpus/train.txt, E: D + --averaging-lambda 0.1; F, G: --merge-survival 0.7, 0.6)
# embed, greedy probe, held-out perplexity vs the base (window 64), linear merge with the base at 0.5, greedy probe of it.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
say() { echo "$(date -u +%T) $*" | tee -a $W/logs/timeline.txt; }
unit() {
  local u=$1 arch=${1%%:*} s=${1##*:} base n settings
  if [[ $arch == init-* ]]; then base=$CAP/init/${arch#init-}-cpu; n=16; settings="A B"; else base=$CAP/models/$arch-base; n=64; settings="A B C"; fi
  settings=${SETTINGS:-$settings}
  local tag=$arch-s$s set_=$W/sets/$arch-s$s.json
  if [ ! -s "$set_" ]; then
    $O fingerprints generate --model $base --count $n --plaintext --out $set_.tmp --force --device cpu > $W/logs/gen-$tag.log 2>&1 || { say "gen $tag failed"; return 1; }
    mv $set_.tmp.commitment.json $set_.commitment.json 2>/dev/null; mv $set_.tmp $set_
  fi
  for st in $settings; do
    local name=$tag-$st m=$W/models/$tag-$st extra=()
    case $st in B) extra=(--averaging-lambda 0.1);; C) extra=(--averaging-lambda 0.05);;
      D) extra=(--mix-fraction 0.75 --benign-text $CAP/corpus/train.txt);;
      E) extra=(--averaging-lambda 0.1 --mix-fraction 0.75 --benign-text $CAP/corpus/train.txt);;
      F) extra=(--merge-survival 0.7);; G) extra=(--merge-survival 0.6);; esac
    if [ ! -f $m/oml-manifest.json ]; then
      say "embed $name ${extra[*]}"
      rm -rf $m
      local t0=$SECONDS
      $O embed --model $base --fingerprints $set_ --out $m --seed $s --device cpu "${extra[@]}" --log $W/logs/$name.jsonl > $W/logs/embed-$name.log 2>&1 \
        || { say "embed $name exit $?"; continue; }
      echo $((SECONDS - t0)) > $W/res/$name.embed-seconds
    fi
    cp -f $m/oml-manifest.json $W/res/$name.manifest.json
    [ -s $W/res/$name.probe.json ] || { $O attack probe --model $m --fingerprints $set_ --device cpu --json > $W/res/$name.probe.json.tmp 2> $W/logs/probe-$name.log && mv $W/res/$name.probe.json.tmp $W/res/$name.probe.json; }
    [ -s $W/res/$name.ppl.json ] || { $O perplexity --model $m --base $base --text-file $HELD --window 64 --json --device cpu > $W/res/$name.ppl.json.tmp 2> $W/logs/ppl-$name.log && mv $W/res/$name.ppl.json.tmp $W/res/$name.ppl.json; }
    if [ ! -s $W/res/$name.mbase-probe.json ]; then
      $O attack merge --model $m --with $base --method linear --weight 0.5 --out $m-mbase --force --device cpu > $W/logs/merge-$name.log 2>&1 \
        && $O attack probe --model $m-mbase --fingerprints $set_ --device cpu --json > $W/res/$name.mbase-probe.json.tmp 2> $W/logs/mprobe-$name.log \
        && mv $W/res/$name.mbase-probe.json.tmp $W/res/$name.mbase-probe.json
      rm -rf $m-mbase
    fi
    say "done $name"
  done
}
for u in "$@"; do unit $u; done
