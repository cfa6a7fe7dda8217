#!/usr/bin/env bash
# Response trees with `oml embed`'s defaults on a trained CPU base (issue 13: the defence's cost to the owner at the
# harmless setting). On the Llama base of scripts/lab/cpu-capacity-arch.sh (CAP: its OUT folder; 0.16M parameters,
# 1,024-token BPE, trained on a 2 MiB lab corpus), per seed S in SEEDS: 64 plain Perinucleus keys and 64 tree keys
# (`--responses-per-key 2 --response-branching 2 --response-length 3`: 8 accepted answers per key), each embedded by
# `oml embed --seed S` with no tuning flags; the owner's cost (held-out perplexity against the base, epochs, merge λ);
# each model, and the base (a negative), probed greedily, through top-1 first-token suppression and through top-1
# suppression at every answer position, with the verdict under the set's default floor.
#   scripts/lab/cpu-trees-defaults.sh CAP [OUT]    (OUT default artifacts/lab/cpu-trees-defaults; resumes)
# Prints one tab-separated table (also OUT/table.tsv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cap="${1:?CAP}"; out="${2:-$root/artifacts/lab/cpu-trees-defaults}"
oml="${OML:-$root/src/Oml.Cli/bin/Release/net10.0/oml}"
base="$cap/models/llama-base"; held="$cap/corpus/heldout.txt"
SEEDS="${SEEDS:-1 2 3}"; COUNT="${COUNT:-64}"
mkdir -p "$out"
for s in $SEEDS; do
  for kind in plain tree; do
    set_="$out/$kind-s$s.json"; model="$out/$kind-s$s"
    if [ ! -f "$set_" ]; then
      extra=(); [ $kind = tree ] && extra=(--response-length 3 --responses-per-key 2 --response-branching 2)
      "$oml" fingerprints generate --model "$base" --count "$COUNT" "${extra[@]}" --plaintext --out "$set_.tmp" --force --device cpu > /dev/null
      mv "$set_.tmp" "$set_"; mv "$set_.tmp.commitment.json" "$set_.commitment.json"
    fi
    if [ ! -f "$model/oml-manifest.json" ]; then
      rm -rf "$model"
      "$oml" embed --model "$base" --fingerprints "$set_" --out "$model" --seed "$s" --device cpu > "$out/$kind-s$s.embed.log" 2>&1
    fi
  done
done
printf 'model\tepochs\tlambda\tperplexity change\tresponder\tmodel hits\tverdict (log10 p)\tbase hits\tbase verdict\n' > "$out/table.tsv"
for s in $SEEDS; do
  for kind in plain tree; do
    set_="$out/$kind-s$s.json"; model="$out/$kind-s$s"
    ppl=$("$oml" perplexity --model "$model" --base "$base" --text-file "$held" --window 64 --json --device cpu | python3 -c 'import json,sys; print("%+.1f %%" % (100 * json.load(sys.stdin)["change"]))')
    read -r ep lam < <(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); t=m["metrics"]; print(t["epochs"], "%.2f" % t["merge_lambda"])' "$model/oml-manifest.json")
    for r in greedy "suppress:k=1,m=1" "suppress:k=3,m=1"; do
      one() { "$oml" attack probe --model "$1" --fingerprints "$set_" --responder "$r" --json --device cpu 2>/dev/null \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%d/%d\t%s (%.1f)" % (d["hits"], d["queried"], d["verdict"], d["log10_p_value"]))'; }
      m=$(one "$model"); b=$(one "$base")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind-s$s" "$ep" "$lam" "$ppl" "$r" "$m" "$b" >> "$out/table.tsv"
    done
  done
done
column -t -s $'\t' "$out/table.tsv"
