#!/usr/bin/env bash
# Accuses again every trace of a scripts/lab/trace-real-copies.sh run with each Tardos score (`oml prover trace
# --observed --score symmetric|asymmetric|combined`): nothing is asked again, the recorded observations are rescored.
#   scripts/lab/trace-rescore.sh RUN [OML]
# RUN holds json/trace/*.json and either the run's own ledger.db, pool.omlfp and pass.txt or a replay/ folder with
# them (as scripts/gpu/issue13c/drive.sh brings them back). Writes RUN/rescore/SCORE/NAME.json and prints a table of the
# coalitions: for each score, which members are accused and whether any innocent is.
set -euo pipefail
run="${1:?usage: trace-rescore.sh RUN [OML]}"
read -r -a oml <<< "${2:-${OML_BIN:-oml}}"
src="$run"; [ -f "$src/ledger.db" ] || src="$run/replay"
for f in ledger.db pool.omlfp pass.txt; do
  [ -f "$src/$f" ] || { echo "trace-rescore: $src/$f is missing (the run's ledger, pool and passphrase)" >&2; exit 2; }
done
# Every trace of a run has the same model and bound: read them once, from the first.
read -r model bound < <(python3 -c "import json,glob,sys; d=json.load(open(sorted(glob.glob(sys.argv[1] + '/json/trace/*.json'))[0])); print(d['model'], d['bound'])" "$run")
for score in symmetric asymmetric combined; do
  mkdir -p "$run/rescore/$score"
  for t in "$run"/json/trace/*.json; do
    name=$(basename "$t")
    [ -s "$run/rescore/$score/$name" ] && continue
    "${oml[@]}" prover trace --ledger "$src/ledger.db" --passphrase-file "$src/pass.txt" --pool "$src/pool.omlfp" --model-id "$model" \
      --observed "$t" --score "$score" --bound "$bound" --json > "$run/rescore/$score/$name.tmp"
    mv -f "$run/rescore/$score/$name.tmp" "$run/rescore/$score/$name"
  done
done
python3 - "$run" <<'PY'
import json, os, re, sys
run = sys.argv[1]
names = sorted(f[:-5] for f in os.listdir(os.path.join(run, "rescore", "symmetric")) if f.startswith("coalition-"))
print("| copies | rule | members | symmetric | asymmetric | combined |")
print("| --- | --- | --- | --- | --- | --- |")
totals = {}
for n in names:
    m = re.fullmatch(r"coalition-(\w+)-(\w+)-h([\d-]+)", n)
    if not m:
        continue
    members = {int(x) for x in m.group(3).split("-")}
    cells = []
    for score in ("symmetric", "asymmetric", "combined"):
        d = json.load(open(os.path.join(run, "rescore", score, n + ".json")))
        acc = {h["ordinal"] for h in d["hosts"] if h["accused"]}
        caught, innocent = acc & members, acc - members
        key = (m.group(1), len(members), score)
        t = totals.setdefault(key, [0, 0, 0])
        t[0] += bool(caught); t[1] += 1; t[2] += len(innocent)
        cells.append((",".join(f"h{x}" for x in sorted(caught)) or "none") + (f" (innocent {sorted(innocent)})" if innocent else ""))
    print(f"| {m.group(1)} | {m.group(2)} | {','.join('h' + x for x in m.group(3).split('-'))} | " + " | ".join(cells) + " |")
print()
print("| copies | c | symmetric: caught / coalitions (innocents) | asymmetric | combined |")
print("| --- | ---: | --- | --- | --- |")
for (variant, c) in sorted({(k[0], k[1]) for k in totals}):
    cells = [f"{totals[(variant, c, s)][0]}/{totals[(variant, c, s)][1]} ({totals[(variant, c, s)][2]})" for s in ("symmetric", "asymmetric", "combined")]
    print(f"| {variant} | {c} | " + " | ".join(cells) + " |")
PY
