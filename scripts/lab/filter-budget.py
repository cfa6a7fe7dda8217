#!/usr/bin/env python3
"""The strongest perplexity filter against each fingerprinted model of a lab run (docs/results.md, "The strongest
threshold filter"): for every model folder RUN_DIR/models/NAME-sSEED, `oml attack detect --instructions RECORDS --json`
scores its keys and the host's instruction prompts under the model and reports the share of keys that the best
thresholds, chosen with hindsight on those prompts, remove while refusing at most 1, 2 or 5 % of them: below one
threshold (keys less perplexing than the prompts), above one, or both. Prints a markdown table per refusal budget.
--instruction-text user (default) scores each record's user message as the keys are scored; prompt scores the whole
raw-format prompt with its headers, as the lab's filters do.
Usage: filter-budget.py RUN_DIR RECORDS [--instruction-text user|prompt] [--oml "dotnet path/oml.dll"] > filter-budget.md"""
import argparse, glob, json, os, re, shlex, subprocess, statistics

ap = argparse.ArgumentParser()
ap.add_argument("run"); ap.add_argument("records")
ap.add_argument("--instruction-text", default="user", choices=["user", "prompt"])
ap.add_argument("--oml", default="dotnet " + os.path.join(os.path.dirname(__file__), "../../src/Oml.Cli/bin/Release/net10.0/oml.dll"))
a = ap.parse_args()
rows = {}   # variant -> seed -> detect json
for d in sorted(glob.glob(os.path.join(a.run, "models", "*-s[0-9]*"))):
    m = re.fullmatch(r"(.+)-s(\d+)", os.path.basename(d))
    if not m or not os.path.exists(os.path.join(d, "fingerprints.json")):
        continue
    out = subprocess.run(shlex.split(a.oml) + ["attack", "detect", "--model", d, "--fingerprints", os.path.join(d, "fingerprints.json"),
                          "--instructions", a.records, "--instruction-text", a.instruction_text, "--device", "cpu", "--json"], capture_output=True, text=True, check=True)
    rows.setdefault(m.group(1), {})[int(m.group(2))] = json.loads(out.stdout)
variants = sorted(rows, key=lambda v: (v != "none", v))
any_row = next(iter(next(iter(rows.values())).values()))
print(f"# The strongest threshold filter: {os.path.basename(os.path.abspath(a.run))}\n")
what = "each record's user message, scored as the keys are" if a.instruction_text == "user" else "each record's whole raw-format prompt (headers included)"
print(f"Prompts: the {any_row['ordinary']} records of `{os.path.basename(a.records)}`, {what}, beside the keys under each "
      f"fingerprinted model (`oml attack detect --instructions --instruction-text {a.instruction_text}`). Each cell: the share of keys removed per seed "
      f"({', '.join(str(s) for s in sorted(next(iter(rows.values()))))}) by the best thresholds refusing at most that share of the prompts; "
      "AUC: the high-perplexity detector's on these prompts.\n")
for b in [0.01, 0.02, 0.05]:
    print(f"## At most {b:.0%} of the prompts refused\n")
    print("| defence | AUC | below one threshold | above one | both | both, mean |")
    print("| --- | --- | --- | --- | --- | --- |")
    for v in variants:
        seeds = sorted(rows[v])
        def cell(side):
            return " / ".join(f"{next(x for x in rows[v][s]['filter_budget'] if abs(x['refused'] - b) < 1e-9)['keys_removed_' + side]:.2f}" for s in seeds)
        both = [next(x for x in rows[v][s]['filter_budget'] if abs(x['refused'] - b) < 1e-9)['keys_removed_both'] for s in seeds]
        auc = " / ".join(f"{rows[v][s]['detector_auc']:.2f}" for s in seeds)
        print(f"| {v} | {auc} | {cell('low')} | {cell('high')} | {cell('both')} | {statistics.mean(both):.2f} |")
    print()
