#!/usr/bin/env python3
"""Ownership verdicts of a lab run's fingerprinted models through responders (the owner's claim, not only the keys hit).

For each model folder OUT/models/NAME-sS and each responder spec, runs `oml attack probe --json` (the set is the
folder's plaintext fingerprints.json; the per-key null is the sum of the base's recorded probabilities of every accepted
response, floored at the rule's 1e-3) and writes a Markdown table: hits, the per-key nulls (median, max), the p-value
and the verdict at alpha = 1e-6.

With --negatives, also queries every set against the models that never saw its keys: the base (OUT/base) and every
model folder of another seed (a sibling fingerprinted with other keys; folders of the same seed share the keys by the
lab's paired design and are skipped), and writes per negative model the hits, the hits the per-key nulls predict (their
sum) and a one-sided 95 % Clopper-Pearson upper bound on the per-key hit rate.

Usage: scripts/lab/probe-verdicts.py [--negatives] OUT MD_OUT RESPONDER [RESPONDER ...]   (OML_BIN: the oml executable, default `oml`)
"""
import json, os, re, statistics, subprocess, sys

def probe(oml, model_dir, fp, resp):
    p = subprocess.run(oml + ["attack", "probe", "--model", model_dir, "--fingerprints", fp, "--responder", resp, "--json"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"probe of {model_dir} through {resp} failed: {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(p.stdout)

def beta_ppf(q, a, b):
    """Quantile of Beta(a, b) by bisection on the regularised incomplete beta (a, b integers here)."""
    from math import comb
    n = a + b - 1
    def cdf(x):   # P(Beta(a, b) <= x) = P(Binomial(n, x) >= a)
        return sum(comb(n, j) * x**j * (1 - x)**(n - j) for j in range(a, n + 1))
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if cdf(mid) < q: lo = mid
        else: hi = mid
    return (lo + hi) / 2

def upper95(hits, n):
    return 1.0 if hits >= n else beta_ppf(0.95, hits + 1, n - hits)

def main():
    args = sys.argv[1:]
    negatives = "--negatives" in args
    args = [a for a in args if a != "--negatives"]
    if len(args) < 3:
        sys.exit(__doc__)
    out, md, responders = args[0], args[1], args[2:]
    oml = os.environ.get("OML_BIN", "oml").split()
    models = sorted(d for d in os.listdir(os.path.join(out, "models")) if re.search(r"-s\d+$", d))
    rows = []
    for name in models:
        d = os.path.join(out, "models", name)
        fp = os.path.join(d, "fingerprints.json")
        if not os.path.exists(fp):
            continue
        for resp in responders:
            r = probe(oml, d, fp, resp)
            nulls = [k["null_probability"] for k in r["keys"]]
            model, seed = name.rsplit("-s", 1)
            rows.append((model, seed, resp, r["hits"], r["queried"], statistics.median(nulls), max(nulls), r["log10_p_value"], r["verdict"]))
            print(f"{name} {resp}: {r['hits']}/{r['queried']} log10 p {r['log10_p_value']:.1f} {r['verdict']}", file=sys.stderr)
    with open(md, "w") as f:
        f.write(f"# Ownership verdicts through responders ({out})\n\n")
        f.write("Written by scripts/lab/probe-verdicts.py: `oml attack probe` on each fingerprinted model folder; per-key null = the base's "
                "probability of any accepted response (the sum over a key's responses), floored at 1e-3; verdict at alpha = 1e-6.\n\n")
        f.write("| model | seed | responder | hits | median per-key null | max per-key null | log10 p | verdict |\n|---|---|---|---|---|---|---|---|\n")
        for m, s, resp, h, q, med, mx, lp, v in rows:
            f.write(f"| {m} | {s} | `{resp}` | {h}/{q} | {med:.2e} | {mx:.2e} | {lp:.1f} | {v} |\n")
        if negatives:
            f.write("\n## Negatives: models that never saw the set's keys\n\n"
                    "Each set against the base and every model of another seed (siblings fingerprinted with other keys). "
                    "Expected = the sum of the set's per-key nulls (the hits the verdict's null predicts); "
                    "CP95 = one-sided 95 % Clopper-Pearson upper bound on the per-key hit rate.\n\n"
                    "| set | negative | responder | hits | expected | per-key rate | CP95 | min log10 p | verdicts |\n|---|---|---|---|---|---|---|---|---|\n")
            bases = [os.path.join(out, "base")] if os.path.exists(os.path.join(out, "base", "config.json")) else []
            for set_name in sorted({m for m, *_ in rows}):
                for resp in responders:
                    per_neg = {}
                    for name in models:
                        model, seed = name.rsplit("-s", 1)
                        if model != set_name: continue
                        fp = os.path.join(out, "models", name, "fingerprints.json")
                        negs = [("base", b) for b in bases] + [(n.rsplit("-s", 1)[0] + " (other seed)", os.path.join(out, "models", n))
                                                              for n in models if n.rsplit("-s", 1)[1] != seed]
                        for label, nd in negs:
                            r = probe(oml, nd, fp, resp)
                            acc = per_neg.setdefault(label, [0, 0, 0.0, 0.0, []])
                            acc[0] += r["hits"]; acc[1] += r["queried"]
                            acc[2] += sum(k["null_probability"] for k in r["keys"])
                            acc[3] = min(acc[3], r["log10_p_value"]); acc[4].append(r["verdict"])
                            print(f"negative {label} vs {name} {resp}: {r['hits']}/{r['queried']}", file=sys.stderr)
                    for label, (h, q, e, lp, vs) in sorted(per_neg.items()):
                        counts = ", ".join(f"{vs.count(v)} {v}" for v in sorted(set(vs)))
                        f.write(f"| {set_name} | {label} | `{resp}` | {h}/{q} | {e:.2f} | {h / q:.3f} | {upper95(h, q):.3f} | {lp:.2f} | {counts} |\n")

if __name__ == "__main__":
    main()
