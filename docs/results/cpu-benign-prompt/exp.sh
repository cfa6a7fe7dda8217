#!/usr/bin/env bash
# CPU A/B: oml embed's defaults with self-generated benign samples after random prompts vs after EOS (--benign-prompt start).
set -u
O=oml
cd /tmp/x
head -c 16 /dev/zero | tr '\0' 'k' > secret.bin
[ -f fp.json ] || $O fingerprints generate --model base --count 64 --out fp.json --plaintext --secret-file secret.bin > gen.log 2>&1
for s in 1 2 3; do
  for p in random start; do
    d=e-$p-$s
    [ -f $d/oml-manifest.json ] || $O embed --model base --fingerprints fp.json --out $d --seed $s --benign-prompt $p --json > $d.json 2> $d.err
    $O perplexity --model $d --base base --text-file heldout400k.txt --json > $d.ppl.json 2>> $d.err
    python3 - "$d" <<'PY'
import json,sys
d=sys.argv[1]
m=json.load(open(d+"/oml-manifest.json")); p=json.load(open(d+".ppl.json"))
mm=m["metrics"]
print(d, "ppl %.2f -> %.2f (%+.1f%%)" % (p["base_perplexity"], p["perplexity"], 100*p["change"]),
      "epochs", mm.get("epochs"), "lambda", mm.get("merge_lambda"), "recall", mm.get("accuracy", mm.get("recall")), "merge_survival", mm.get("merge_survival"), flush=True)
PY
  done
done
