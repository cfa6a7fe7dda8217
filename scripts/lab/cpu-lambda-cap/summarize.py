#!/usr/bin/env python3
"""Collect OUT/res (scripts/lab/cpu-lambda-cap/run.sh) into OUT/results.tsv and print per-base tables with per-setting
means. Usage: summarize.py [OUT] (default artifacts/lab/cpu-lambda-cap)."""
import json, os, re, glob, statistics as st, sys
W = sys.argv[1] if len(sys.argv) > 1 else "artifacts/lab/cpu-lambda-cap"; R = W + "/res"
def load(p):
    try: return json.load(open(p))
    except Exception: return None
rows = []
for man in sorted(glob.glob(R + "/*.manifest.json")):
    name = os.path.basename(man)[:-len(".manifest.json")]
    m = re.match(r"(.+)-s(\d+)-([A-G])$", name); arch, seed, setting = m.group(1), int(m.group(2)), m.group(3)
    t = load(man)["metrics"]; pr = load(f"{R}/{name}.probe.json"); pp = load(f"{R}/{name}.ppl.json"); mb = load(f"{R}/{name}.mbase-probe.json"); ms = load(f"{R}/{name}.msft-probe.json")
    sec = open(f"{R}/{name}.embed-seconds").read().strip() if os.path.exists(f"{R}/{name}.embed-seconds") else ""
    hits = pr["hits"] if pr else None; q = pr["queried"] if pr else None
    rows.append(dict(base=arch, setting=setting, seed=seed, lam=t.get("merge_lambda"), epochs=t.get("epochs"), kept=t.get("kept_epoch"),
        fp_loss=t.get("loss"), kl=t.get("held_out_kl"), converged=t.get("converged"), hits=hits, queried=q,
        recall=hits / q if pr else None, ppl=pp["perplexity"] if pp else None, base_ppl=pp["base_perplexity"] if pp else None,
        ppl_change=pp["change"] if pp else None, merge_hits=mb["hits"] if mb else None,
        merge_persist=(mb["hits"] / hits if mb and hits else None), merge_verdict=mb["verdict"] if mb else None, msft_hits=ms["hits"] if ms else None, msft_persist=(ms["hits"] / hits if ms and hits else None), msft_verdict=ms["verdict"] if ms else None, embed_s=sec))
cols = list(rows[0].keys()) if rows else []
with open(W + "/results.tsv", "w") as f:
    f.write("\t".join(cols) + "\n")
    for r in rows: f.write("\t".join("" if r[c] is None else (f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c])) for c in cols) + "\n")
def fmt(v, p): return "-" if v is None else p % v
for b in sorted({r["base"] for r in rows}, key=lambda x: (x.startswith("init"), x)):
    print(f"\n### {b}\n\n| setting | seed | λ | epochs | recall | ppl change | merge-with-base (hits / hits before) | merged verdict | merge-with-SFT (hits / hits before) |\n|---|---|---|---|---|---|---|---|---|")
    br = sorted([r for r in rows if r["base"] == b], key=lambda r: (r["setting"], r["seed"]))
    for r in br:
        print(f"| {r['setting']} | {r['seed']} | {fmt(r['lam'],'%.2f')} | {r['epochs']} | {r['hits']}/{r['queried']} | {fmt(r['ppl_change'] and 100*r['ppl_change'],'%+.1f %%')} | {r['merge_hits']}/{r['hits']} = {fmt(r['merge_persist'],'%.2f')} | {r['merge_verdict']} | {r['msft_hits']}/{r['hits']} = {fmt(r['msft_persist'],'%.2f')} |")
    for s in sorted({r["setting"] for r in br}):
        sr = [r for r in br if r["setting"] == s]
        def mean(k, scale=1):
            v = [r[k] * scale for r in sr if r[k] is not None]; return (st.mean(v), st.pstdev(v) if len(v) > 1 else 0.0, len(v)) if v else None
        lam, ep, rc, pc, mp, ms = mean("lam"), mean("epochs"), mean("recall"), mean("ppl_change", 100), mean("merge_persist"), mean("msft_persist")
        f2 = lambda x, p: "-" if x is None else (p % x[0]) + (f" ± {p.replace('+', '') % x[1]}" if x[2] > 1 else "")
        print(f"| **{s} mean** (n={len(sr)}) | | {f2(lam,'%.2f')} | {f2(ep,'%.1f')} | {f2(rc,'%.3f')} | {f2(pc,'%+.1f')} % | {f2(mp,'%.2f')} | | {f2(ms,'%.2f')} |")

# Pooled over the four trained bases: per setting, and paired differences against A (same base, seed, set, trained weights).
trained = [r for r in rows if not r["base"].startswith("init")]
key = {(r["base"], r["seed"], r["setting"]): r for r in trained}
print("\n### pooled over the trained bases (paired with A on the same base and seed)\n")
print("| setting | n | λ | ppl change | merge-with-base | merge-with-SFT | Δppl vs A (points) | Δmerge-base vs A | Δmerge-SFT vs A | merge-base gained per ppl point |\n|---|---|---|---|---|---|---|---|---|---|")
for s in "ABCDEFG":
    sr = [r for r in trained if r["setting"] == s]
    if not sr: continue
    M = lambda k, sc=1: st.mean([r[k] * sc for r in sr if r[k] is not None]) if any(r[k] is not None for r in sr) else float("nan")
    pairs = [(r, key.get((r["base"], r["seed"], "A"))) for r in sr]
    def D(k, sc=1):
        v = [(r[k] - a[k]) * sc for r, a in pairs if a and r[k] is not None and a[k] is not None]; return (st.mean(v), st.pstdev(v)) if v else (float("nan"), 0)
    dp, db, dsft = D("ppl_change", 100), D("merge_persist"), D("msft_persist")
    slope = db[0] / dp[0] if dp[0] else float("nan")
    print(f"| {s} | {len(sr)} | {M('lam'):.3f} | {M('ppl_change',100):+.1f} % | {M('merge_persist'):.3f} | {M('msft_persist'):.3f} | {dp[0]:+.1f} ± {dp[1]:.1f} | {db[0]:+.3f} ± {db[1]:.3f} | {dsft[0]:+.3f} ± {dsft[1]:.3f} | {slope:.4f} |")
# E against D (the cap on top of β 0.75 + corpus text), paired.
ed = [(key[(b, s, "E")], key[(b, s, "D")]) for (b, s, x) in key if x == "E" and (b, s, "D") in key]
if ed:
    f = lambda k, sc=1: [(e[k] - d[k]) * sc for e, d in ed if e[k] is not None and d[k] is not None]
    for lab, k, sc in (("Δppl (points)", "ppl_change", 100), ("Δmerge-base", "merge_persist", 1), ("Δmerge-SFT", "msft_persist", 1)):
        v = f(k, sc); print(f"\nE − D, {lab}: {st.mean(v):+.3f} ± {st.pstdev(v):.3f} (n={len(v)})" if v else f"\nE − D {lab}: -", end="")
    print()
