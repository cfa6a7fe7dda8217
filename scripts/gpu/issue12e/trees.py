#!/usr/bin/env python3
"""Where unrecalled response-tree keys leave their tree (issue 13's 100M stall; drive.sh TREES=1): reads the greedy probe
of the tree model (results/probe-trees.json) and prints, over the keys it missed, how far the answer follows an accepted
response (the longest common prefix in characters, against the closest one) and the most common ways it leaves, with a
few examples. Usage: trees.py SNAPSHOT_DIR"""
import collections, json, os, sys

d = json.load(open(os.path.join(sys.argv[1], "results", "probe-trees.json")))
keys = d["keys"]
missed = [k for k in keys if not k["hit"]]
print(f"{d['hits']} of {d['queried']} tree keys answered with an accepted response; {len(missed)} missed")


def lcp(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


depth = collections.Counter()
for k in missed:
    best = max(k["expected_responses"], key=lambda r: lcp(r, k["answer"]))
    n = lcp(best, k["answer"])
    # 0: not even the first accepted characters; else how far into the closest response the answer stays.
    depth["none of the first characters" if n == 0 else f"leaves after {n} of {len(best)} characters"] += 1
for what, c in depth.most_common(12):
    print(f"  {c:4d}  {what}")
for k in missed[:8]:
    print(f"  answer {k['answer']!r:28}  accepted {k['expected_responses'][:4]} ...")
