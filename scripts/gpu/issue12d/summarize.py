#!/usr/bin/env python3
"""Summarises issue 12's fifth GPU session (scripts/gpu/issue12d/drive.sh) from the unpacked snapshot:

   summarize.py DIR OUT_DIR

DIR (docs/results/issue12-d) holds the lab's output folders i12d-full and i12d-frontier and logs/ (manifests of
`oml embed`, epoch logs, timeline, oml-training.json). Writes OUT_DIR/summary.md (the tables) and
OUT_DIR/frontier-*.svg (utility cost against persistence, one point per model). Plain Python, no packages."""
import os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import labsummary as ls  # noqa: E402

lines = ls.persistence_session(
    sys.argv[1], sys.argv[2], "i12d-full", "i12d-frontier",
    settings={
        "kl-s1": "the defaults (KL benign loss, β 0.25, lr 0.125/d), set 1, seed 1",
        "klcheap-s1": "`--mix-fraction 0.5 --lr` half (0.0625/d), set 1, seed 1",
        "klcheap-s2": "the same, set 2, seed 2",
        "klcheap-s3": "the same, set 3, seed 3",
        "klquarter-s1": "`--mix-fraction 0.5 --lr` quarter (0.03125/d), set 1",
        "klb67-s1": "`--mix-fraction 0.667 --lr` half, set 1",
        "klcheapm-s1": "`--mix-fraction 0.5 --lr` half `--merge-max-loss 1.0`, set 1",
    },
    full=["kl-s1", "klcheap-s1", "klcheap-s2", "klcheap-s3"], front=["klquarter-s1", "klb67-s1", "klcheapm-s1"],
    seeded=["klcheap-s1", "klcheap-s2", "klcheap-s3"],
    title="### Same base, same run: the defaults vs KL with β 0.5 and half the lr (3 seeds), and the frontier, 1,024 fingerprints",
    seeded_label="KL, β 0.5, half lr",
    colour=lambda n: "#D55E00" if n.startswith("kl-") else "#0072B2" if n.startswith("klcheap-") else "#CC79A7",
    legend=(("#D55E00", "the defaults (1 seed)"), ("#0072B2", "β 0.5, half lr (3 seeds)"), ("#CC79A7", "other settings (1 seed)")),
    skip_points=("klcheapm-s1",))   # the same model as klcheap-s1 (the margin did not bind: same λ 0.30)
print("\n".join(lines))
