#!/bin/bash
# How the key-temperature runs on the demo's model were measured (docs/results.md, "Key temperature on the demo's
# model"). DIR holds `oml demo --out DIR/VARIANT-sS --seed S --json > DIR/VARIANT-sS.json` for the variants main (keys at
# temperature 0.5, the default), keyt08 and keyt1 (the same program with GenerationSettings.Temperature 0.8 and 1.0),
# heldout.txt (the demo corpus's held-out tail, the last 5 % of the licence texts) and prompts.txt (its lines of 6 or
# more words, the filter's ordinary prompts). For each variant and seed: the demo's numbers, the detector's AUC, and
# hits under the low-perplexity filter at q 0.02 and 0.1. Usage: collect.sh DIR (OML_BIN: the oml command).
cd "${1:?usage: collect.sh DIR}"; export OML_PASSPHRASE=oml-demo-passphrase
oml() { ${OML_BIN:-oml} "$@"; }
for v in main keyt08 keyt1; do for s in 1 2 3; do
  d=$v-s$s; [ -f $d.json ] || continue
  auc=$(oml attack detect --model $d/fingerprinted --fingerprints $d/fingerprints.omlfp --heldout heldout.txt --device cpu --json 2>/dev/null | python3 -c "import json,sys; j=json.load(sys.stdin); print('%.3f %.1f %.1f'%(j['detector_auc'], j['key_perplexity'], j['text_perplexity']))")
  h=""
  for q in 0.02 0.1; do
    h="$h $(oml attack probe --model $d/fingerprinted --fingerprints $d/fingerprints.omlfp --responder "filter:q=$q,side=low" --filter-prompts prompts.txt --device cpu 2>/dev/null | grep '^hits:' | cut -d' ' -f2)"
  done
  p=$(python3 -c "import json; d=json.load(open('$d.json')); print('%.2f %.2f %+.1f%% %d %.2f'%(d['perplexity']['base'], d['perplexity']['fingerprinted'], 100*d['perplexity']['change'], d['epochs'], d['merge_lambda']))")
  echo "$v $s | $p | auc keyppl textppl $auc | low q0.02 q0.1:$h"
done; done
