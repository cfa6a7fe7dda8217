#!/usr/bin/env bash
# Extra: persistence after an even linear merge with an UNRELATED fine-tune of the same base (1 epoch of instruction SFT
# of the base, lr 1e-3, on 1,971 Alpaca-form examples from `oml data instructions --corpus $CAP/corpus --count 2000 --seed 0`, made here when missing).
#   CAP=DIR scripts/lab/cpu-lambda-cap/run-sft-merge.sh ARCH...      (resumable)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
[ -f $W/instr/instructions-train.json ] || $O data instructions --corpus $CAP/corpus --out $W/instr --count 2000 --seed 0 > $W/logs/instr.log 2>&1
for arch in "$@"; do
  base=$CAP/models/$arch-base; ft=$W/models/$arch-sft
  if [ ! -f $ft/config.json ]; then
    $O attack sft --model $base --data $W/instr/instructions-train.json --epochs 1 --lr 1e-3 --batch-size 8 --seed 7 --out $ft --force --device cpu --json > $W/res/$arch-sft.sft.json 2> $W/logs/sft-$arch.log || { echo "sft $arch failed"; continue; }
    $O perplexity --model $ft --base $base --text-file $HELD --window 64 --json --device cpu > $W/res/$arch-sft.ppl.json 2>/dev/null
  fi
  for man in $W/res/$arch-s?-?.manifest.json; do
    name=$(basename $man .manifest.json); s=${name#$arch-s}; s=${s%%-*}; m=$W/models/$name
    [ -s $W/res/$name.msft-probe.json ] && continue
    $O attack merge --model $m --with $ft --method linear --weight 0.5 --out $m-msft --force --device cpu > $W/logs/msft-$name.log 2>&1 \
      && $O attack probe --model $m-msft --fingerprints $W/sets/$arch-s$s.json --device cpu --json > $W/res/$name.msft-probe.json.tmp 2>>$W/logs/msft-$name.log \
      && mv $W/res/$name.msft-probe.json.tmp $W/res/$name.msft-probe.json
    rm -rf $m-msft
    echo "$(date -u +%T) msft $name done" >> $W/logs/timeline.txt
  done
done
