#!/usr/bin/env python3
"""Analysis step of scripts/lab/trace-real-copies.sh (run by it; rerunnable on its output folder).

Reads OUT/json/deliver/h*.json (each copy's allocated pool indices and recall, from `oml owner deliver --json`) and
OUT/json/trace/*.json (what each suspect answered and whom the protocol's LeakTracer accused, from
`oml prover trace --copy ... --json`), and writes:
  OUT/survival.json        per attack: per-copy and pooled survival of the allocated keys and false hits on the others
  OUT/sim-tardos.json, OUT/sim-random-p0.243.json   `oml trace simulate` at 1,000 hosts fed with the measured noise
  OUT/summary.md           the tables
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys

ATTACKS = ["none", "suppress", "sft", "sft-strong", "merge", "int4", "sft+suppress"]
ATTACK_NAMES = {
    "none": "none (the copy as delivered, greedy)",
    "suppress": "top-1 first-token suppression (suppress:k=1,m=1)",
    "sft": "SFT (full, instruction data)",
    "sft-strong": "stronger SFT (--sft-strong)",
    "merge": "linear merge with the base, 0.5",
    "int4": "int4 quantization (group 64)",
    "sft+suppress": "SFT, then served with top-1 suppression",
}
STRATEGIES = ["majority", "minority", "unanimity", "interleaving"]


def fmt_score(x):
    return "-" if x is None else f"{x:.1f}"


def load(path):
    with open(path) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--oml", required=True, help="the oml command line")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--lengths", default="1024,2048,4096")
    a = ap.parse_args()
    out = a.out

    deliver = {}
    ddir = os.path.join(out, "json", "deliver")
    for f in sorted(os.listdir(ddir)):
        m = re.fullmatch(r"h(\d+)\.json", f)
        if m:
            d = load(os.path.join(ddir, f))
            deliver[d["host"].lower()] = d
    by_ordinal = {d["ordinal"]: d for d in deliver.values()}
    pool = load(os.path.join(out, "json", "pool.json"))
    pool_size = pool["count"]

    traces = {}
    tdir = os.path.join(out, "json", "trace")
    for f in sorted(os.listdir(tdir)):
        if f.endswith(".json"):
            traces[f[:-5]] = load(os.path.join(tdir, f))

    # Per-key survival on single copies.
    survival = {}
    for attack in ATTACKS:
        rows = []
        for name, t in traces.items():
            m = re.fullmatch(re.escape(attack) + r"-h(\d+)", name)
            if not m:
                continue
            j = int(m.group(1))
            d = by_ordinal[j]
            held = set(d["poolIndices"])
            obs = t["observed"]
            kept = sum(1 for i in held if obs[i] is True)
            false = sum(1 for i in range(pool_size) if i not in held and obs[i] is True)
            accused = {h["ordinal"] for h in t["hosts"] if h["accused"]}
            own = next(h for h in t["hosts"] if h["ordinal"] == j)
            rows.append({"copy": j, "held": len(held), "kept": kept, "not_held": pool_size - len(held), "false_hits": false,
                         "accused_self": j in accused, "innocents_accused": len(accused - {j}), "score": own["score"]})
        if not rows:
            continue
        rows.sort(key=lambda r: r["copy"])
        held = sum(r["held"] for r in rows)
        kept = sum(r["kept"] for r in rows)
        nh = sum(r["not_held"] for r in rows)
        fh = sum(r["false_hits"] for r in rows)
        per_copy = [r["kept"] / r["held"] for r in rows if r["held"]]
        survival[attack] = {
            "copies": len(rows), "held": held, "kept": kept, "survival": kept / held if held else None,
            "survival_min": min(per_copy), "survival_max": max(per_copy),
            "not_held": nh, "false_hits": fh, "false_hit_rate": fh / nh if nh else None,
            "accused_self": sum(r["accused_self"] for r in rows), "innocents_accused": sum(r["innocents_accused"] for r in rows),
            "rows": rows,
        }
    base_surv = survival.get("none", {}).get("survival")
    for attack, s in survival.items():
        s["persistence"] = s["survival"] / base_surv if base_surv else None

    # Coalitions.
    coalitions = []
    for name, t in traces.items():
        m = re.fullmatch(r"coalition-(none|sft|merge|int4)-(majority|minority|interleave|refuse)-h([\d-]+)", name)
        if not m:
            continue
        members = [int(x) for x in m.group(3).split("-")]
        accused = {h["ordinal"] for h in t["hosts"] if h["accused"]}
        scores = {h["ordinal"]: h["score"] for h in t["hosts"]}
        top = max(scores, key=lambda k: scores[k])
        obs = t["observed"]
        coalitions.append({"variant": m.group(1), "rule": m.group(2), "members": members, "c": len(members),
                           "answered": sum(1 for x in obs if x is True),
                           "colluders_accused": sorted(accused & set(members)), "innocents_accused": sorted(accused - set(members)),
                           "top_is_colluder": top in members,
                           "best_colluder_score": max(scores[k] for k in members),
                           "best_innocent_score": max((v for k, v in scores.items() if k not in members), default=None)})
    coalitions.sort(key=lambda c: (c["variant"], c["c"], c["members"], c["rule"]))

    with open(os.path.join(out, "survival.json"), "w") as f:
        json.dump({"pool": pool_size, "copies": len(deliver), "survival": survival, "coalitions": coalitions}, f, indent=1)

    # The simulation at 1,000 hosts with each attack's measured noise.
    noises = []
    for attack in ATTACKS:
        s = survival.get(attack)
        if not s:
            continue
        loss = min(0.999, max(0.0, 1 - s["survival"]))
        fh = min(0.999, s["false_hit_rate"] or 0.0)
        noises.append((attack, round(loss, 3), round(fh, 4)))
    oml = shlex.split(a.oml)
    sims = {}
    for label, extra in [("tardos", ["--scheme", "tardos"]), ("random-p0.243", ["--scheme", "random", "--random-fraction", "0.243"])]:
        path = os.path.join(out, f"sim-{label}.json")
        if not os.path.exists(path):
            cmd = oml + ["trace", "simulate", "--hosts", str(a.hosts), "--coalition", "2,3,4", "--strategies", ",".join(STRATEGIES),
                         "--lengths", a.lengths, "--noise-loss", ",".join(str(n[1]) for n in noises),
                         "--noise-false-hit", ",".join(str(n[2]) for n in noises), "--trials", str(a.trials), "--seed", "oml-13",
                         "--json-out", path, "--force"] + extra
            print("running: " + " ".join(cmd[len(oml):]), file=sys.stderr)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        sims[label] = load(path)

    # The same simulation at the real copies' scale (their host count and pool size), to set the real coalitions'
    # outcomes beside what the simulation predicts for them.
    small_path = os.path.join(out, "sim-tardos-real-scale.json")
    variants = [v for v in ("none", "sft", "merge", "int4") if any(c["variant"] == v for c in coalitions) or v in ("none", "sft")]
    if not os.path.exists(small_path):
        cmd = oml + ["trace", "simulate", "--hosts", str(len(deliver)), "--coalition", "2,3,4", "--strategies", ",".join(STRATEGIES),
                     "--lengths", str(pool_size), "--noise-loss", ",".join(str(n[1]) for n in noises if n[0] in variants),
                     "--noise-false-hit", ",".join(str(n[2]) for n in noises if n[0] in variants), "--trials", str(a.trials),
                     "--seed", "oml-13", "--scheme", "tardos", "--cutoff", "0.000833", "--json-out", small_path, "--force"]
        print("running: " + " ".join(cmd[len(oml):]), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    small = load(small_path)

    md = []
    w = md.append
    recalls = [d["recall"] for d in deliver.values() if "recall" in d]
    sizes = [d["fingerprints"] for d in deliver.values()]
    w(f"# Tracing on real fingerprinted copies\n")
    w(f"Pool of {pool_size} Perinucleus fingerprints; {len(deliver)} copies delivered with `tardos` allocation "
      f"(keys per copy {min(sizes)}..{max(sizes)}, mean {sum(sizes) / len(sizes):.1f}); recall after embedding "
      f"{min(recalls):.3f}..{max(recalls):.3f}. Raw cells: json/deliver (allocation, recall), json/trace (answers, scores, accusations).\n")
    w("## Per-key survival on the real copies\n")
    w("| attack | copies | allocated keys answered | survival (min..max per copy) | persistence vs none | false hits on keys not held | copy's own host accused | innocents accused |")
    w("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for attack in ATTACKS:
        s = survival.get(attack)
        if not s:
            continue
        pers = f"{s['persistence']:.2f}" if s["persistence"] is not None else "-"
        w(f"| {ATTACK_NAMES[attack]} | {s['copies']} | {s['kept']}/{s['held']} | {s['survival']:.3f} ({s['survival_min']:.2f}..{s['survival_max']:.2f}) | {pers} "
          f"| {s['false_hits']}/{s['not_held']} ({s['false_hit_rate']:.4f}) | {s['accused_self']}/{s['copies']} | {s['innocents_accused']} |")
    w("")
    w(f"## Coalitions of real copies (accused by LeakTracer / TardosAccuser over the {len(deliver)} licensed hosts, "
      f"1e-3 / {len(deliver)} per host)\n")
    w("| copies | rule | members | keys answered | colluders accused | innocents accused | top score a colluder | best colluder / best innocent score |")
    w("| --- | --- | --- | ---: | --- | --- | --- | --- |")
    for c in coalitions:
        w(f"| {c['variant']} | {c['rule']} | {','.join('h' + str(m) for m in c['members'])} | {c['answered']} "
          f"| {','.join('h' + str(m) for m in c['colluders_accused']) or 'none'} | {','.join('h' + str(m) for m in c['innocents_accused']) or 'none'} "
          f"| {'yes' if c['top_is_colluder'] else 'no'} | {c['best_colluder_score']:.1f} / {fmt_score(c['best_innocent_score'])} |")
    w("")
    w(f"Beside the simulation at the same scale ({len(deliver)} hosts, {pool_size} positions, the noise measured on the "
      f"copies of each version in coalitions ({', '.join(variants)}), {a.trials} trials): real coalitions with a colluder accused / real coalitions, "
      f"against the simulated P(catch ≥ 1).\n")
    rule_to_strategy = {"majority": "majority", "minority": "minority", "interleave": "interleaving", "refuse": "unanimity"}
    w("| copies | c | rule | real: caught / coalitions | real: innocents accused | simulated P(catch) | simulated P(innocent) |")
    w("| --- | ---: | --- | --- | ---: | ---: | ---: |")
    for variant in variants:
        noise = next((n for n in noises if n[0] == variant), None)
        for c in (2, 3, 4):
            for rule in ("majority", "minority", "interleave", "refuse"):
                real = [x for x in coalitions if x["variant"] == variant and x["c"] == c and x["rule"] == rule]
                if not real or noise is None:
                    continue
                sim = [r for r in small["results"] if r["coalition"] == c and r["strategy"] == rule_to_strategy[rule]
                       and abs(r["noise_loss"] - noise[1]) < 1e-9 and abs(r["noise_false_hit"] - noise[2]) < 1e-9]
                caught = sum(1 for x in real if x["colluders_accused"])
                inn = sum(len(x["innocents_accused"]) for x in real)
                w(f"| {variant} | {c} | {rule} | {caught}/{len(real)} | {inn} | {sim[0]['p_catch']:.2f} | {sim[0]['p_innocent']:.2f} |" if sim else
                  f"| {variant} | {c} | {rule} | {caught}/{len(real)} | {inn} | - | - |")
    w("")
    w(f"## The simulation at {a.hosts} hosts with the measured noise\n")
    w(f"`oml trace simulate --hosts {a.hosts} --coalition 2,3,4 --strategies {','.join(STRATEGIES)} --lengths {a.lengths} "
      f"--trials {a.trials} --seed oml-13`, δ = 1 − survival and ε = the false-hit rate measured above, for Tardos "
      f"(cutoff 1/1200) and the random baseline at p = 0.243. Each cell: the worst strategy's P(catch ≥ 1 colluder) "
      f"(union bound 1e-3 on accusing any innocent).\n")
    lengths = [int(x) for x in a.lengths.split(",")]
    w("| attack | δ | ε | c | " + " | ".join(f"Tardos {m} | random {m}" for m in lengths) + " |")
    w("| --- | ---: | ---: | ---: | " + " | ".join("---: | ---:" for _ in lengths) + " |")
    innocent = {"tardos": 0, "random-p0.243": 0}
    for label in sims:
        innocent[label] = sum(r["p_innocent"] * r["trials"] for r in sims[label]["results"])
    for attack, loss, fh in noises:
        for c in (2, 3, 4):
            cells = []
            for m in lengths:
                for label in ("tardos", "random-p0.243"):
                    rs = [r for r in sims[label]["results"] if r["length"] == m and r["coalition"] == c
                          and abs(r["noise_loss"] - loss) < 1e-9 and abs(r["noise_false_hit"] - fh) < 1e-9]
                    cells.append(f"{min(r['p_catch'] for r in rs):.2f}" if rs else "-")
            w(f"| {attack} | {loss} | {fh} | {c} | " + " | ".join(cells) + " |")
    total = sum(len(s["results"]) * s["trials"] for s in sims.values())
    w(f"\nInnocents accused in the simulation: {int(sum(innocent.values()))} of {total} simulated trials.")
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
