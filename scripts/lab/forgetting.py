#!/usr/bin/env python3
"""Which fingerprints an attack removes (issue 13 item 5, the question of arXiv 2502.07760's Fig. 11), from a lab run
whose FSR cells keep each key's outcome (series per_key): for every weight attack, the keys hit before the attack,
split into survived / lost, binned by per-key features read from each model's fingerprints.json:
  - response length in tokens (one per model of cpu-response-length.yaml);
  - the response's log-probability under the base (recorded in the set), per token, in quartiles within each response
    length (the total scales with the length, so pooled bins would only restate the length; within a length the total
    and the per-token value rank keys alike);
  - the key's length in characters (keys are a fixed number of tokens);
  - with several accepted responses per key (response trees), the most probable one's log-probability per token.
For each feature, a rank AUC of the feature for survival (0.5: no relation), computed within response lengths, and a
permutation p-value (survival shuffled within each (model, seed), 2,000 draws, fixed seed). The loss of each
fingerprint at the end of embedding is not recorded per key, so it is not a feature here.
Plain Python, no packages. Usage: forgetting.py RUN_DIR"""
import glob, json, os, random, sys
from collections import defaultdict

run = sys.argv[1]

def read_set(path):
    d = open(path, "rb").read()
    hl = int.from_bytes(d[10:14], "big")
    head = json.loads(d[14:14 + hl])
    if head.get("encryption") != "none":
        raise SystemExit(f"{path}: encrypted set")
    return json.loads(d[-head["payloadLength"]:])["fingerprints"]

cells = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(run, "cells", "*.json")))]
before, after = {}, defaultdict(dict)
for c in cells:
    l = c.get("labels", {})
    if "model" not in l or "per_key" not in c.get("series", {}):
        continue
    key = (l["model"], l["seed"])
    if l["attack"] == "none":
        before[key] = c["series"]["per_key"]
    elif l["attack"].startswith(("sft", "merge", "noise", "quantize", "prune", "distill")):
        after[l["attack"]][key] = c["series"]["per_key"]
if not before:
    raise SystemExit("no per-key outcomes in the cells (series per_key): rerun with a lab that records them")

keys = {}   # (model, seed) -> list of feature dicts in the set's order
for (mo, s) in before:
    fps = read_set(os.path.join(run, "models", f"{mo}-s{s}", "fingerprints.json"))
    keys[(mo, s)] = [{
        "resp_tokens": len(f["responses"][0]["tokenIds"]),
        "logprob": f["responses"][0].get("logProb"),
        "logprob_per_token": (f["responses"][0]["logProb"] / len(f["responses"][0]["tokenIds"])) if f["responses"][0].get("logProb") is not None else None,
        "key_chars": len(f["key"]),
        "best_logprob_per_token": max((r["logProb"] / len(r["tokenIds"]) for r in f["responses"] if r.get("logProb") is not None), default=None),
    } for f in sorted(fps, key=lambda f: f["index"])]
multi = any(len(f["responses"]) > 1 for fps in [read_set(os.path.join(run, "models", f"{mo}-s{s}", "fingerprints.json")) for (mo, s) in before] for f in fps)

def quartile_edges(xs):
    xs = sorted(xs)
    return [xs[int(len(xs) * q / 4)] for q in (1, 2, 3)]

def bin_of(x, edges):
    return sum(x >= e for e in edges)

def ranks(xs):
    """Average ranks (1-based) of xs, ties sharing their mean rank."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r

def strata(rows, feat):
    """Per response length: the rows with the feature, and their ranks (fixed under a shuffle of the outcomes)."""
    out = []
    for L in sorted({r["resp_tokens"] for r in rows}):
        rs = [r for r in rows if r["resp_tokens"] == L and r[feat] is not None]
        out.append((rs, ranks([r[feat] for r in rs])))
    return out

def strat_auc(st, outcome):
    """Mann-Whitney AUC of the feature for survival, pairs compared only within one response length."""
    w = t = 0.0
    for (rs, rk), surv in zip(st, outcome):
        npos = sum(surv); nneg = len(surv) - npos
        if npos and nneg:
            w += sum(r for r, v in zip(rk, surv) if v) - npos * (npos + 1) / 2
            t += npos * nneg
    return (w / t) if t else None

def perm_p(rows, feat, draws=2000):
    st = strata(rows, feat)
    outcome = [[r["survived"] for r in rs] for rs, _ in st]
    obs = strat_auc(st, outcome)
    if obs is None:
        return None, None
    rng = random.Random(13)
    extreme = 0
    for _ in range(draws):
        shuffled = []
        for rs, _ in st:   # survival shuffled within each (model, seed)
            surv = [r["survived"] for r in rs]
            idx = defaultdict(list)
            for i, r in enumerate(rs):
                idx[(r["model"], r["seed"])].append(i)
            for ii in idx.values():
                vals = [surv[i] for i in ii]
                rng.shuffle(vals)
                for i, v in zip(ii, vals):
                    surv[i] = v
            shuffled.append(surv)
        if abs(strat_auc(st, shuffled) - 0.5) >= abs(obs - 0.5) - 1e-12:
            extreme += 1
    return obs, (extreme + 1) / (draws + 1)

def fmt(rs):
    n = len(rs); k = sum(r["survived"] for r in rs)
    return f"{k}/{n} ({100 * k / n:.0f} %)" if n else "–"

for attack in sorted(after):
    rows = []
    for (mo, s), post in after[attack].items():
        pre = before.get((mo, s))
        if pre is None:
            continue
        for i, (b, a) in enumerate(zip(pre, post)):
            if b > 0.5:
                rows.append(dict(keys[(mo, s)][i], model=mo, seed=s, survived=a > 0.5))
    seeds = sorted({r["seed"] for r in rows})
    print(f"## {attack}")
    print()
    models = sorted({r["model"] for r in rows})
    print(f"Keys hit before the attack: {len(rows)} ({len(models)} model{'s' if len(models) > 1 else ''}: {', '.join(models)}; seeds {', '.join(seeds)}); survived: {fmt(rows)}. Exact rule.")
    print()
    lengths = sorted({r["resp_tokens"] for r in rows})
    print("| response tokens | survived | by seed |")
    print("| --- | --- | --- |")
    for L in lengths:
        rs = [r for r in rows if r["resp_tokens"] == L]
        print(f"| {L} | {fmt(rs)} | " + ", ".join(fmt([r for r in rs if r["seed"] == s]) for s in seeds) + " |")
    print()
    # Within one response length the total log-probability ranks keys exactly as the per-token one, so it is not repeated.
    feats = [("logprob_per_token", "base log-probability per response token" + (" (the set's first response)" if multi else "")),
             ("key_chars", "key length in characters")]
    if multi:
        feats.insert(1, ("best_logprob_per_token", "base log-probability per response token of the most probable accepted response"))
    for feat, title in feats:
        print(f"Survival by quartile of the {title} (quartiles within each response length; Q1 lowest):")
        print()
        print("| response tokens | Q1 | Q2 | Q3 | Q4 | quartile edges |")
        print("| --- | --- | --- | --- | --- | --- |")
        allq = defaultdict(list)
        for L in lengths:
            rs = [r for r in rows if r["resp_tokens"] == L and r[feat] is not None]
            if not rs:
                continue
            edges = quartile_edges([r[feat] for r in rs])
            bins = defaultdict(list)
            for r in rs:
                bins[bin_of(r[feat], edges)].append(r); allq[bin_of(r[feat], edges)].append(r)
            print(f"| {L} | " + " | ".join(fmt(bins[q]) for q in range(4)) + " | " + ", ".join(f"{e:.3g}" for e in edges) + " |")
        print("| all | " + " | ".join(fmt(allq[q]) for q in range(4)) + " | |")
        obs, p = perm_p(rows, feat)
        print()
        print(f"AUC of the feature for survival, within response lengths: {obs:.3f}; permutation p = {p:.3f} (two-sided, 2,000 draws)." if obs is not None else "AUC: not computable (no survivors or no losses).")
        print()
