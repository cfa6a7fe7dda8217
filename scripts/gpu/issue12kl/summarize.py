#!/usr/bin/env python3
"""Summarises issue 12's KL session (scripts/gpu/issue12kl/drive.sh) from the unpacked snapshot:

   summarize.py DIR OUT_DIR

DIR (docs/results/issue12-kl) holds the lab's output folders i12kl-full and i12kl-frontier and logs/ (manifests of
`oml embed`, epoch logs, timeline, oml-training.json). Writes OUT_DIR/summary.md (the tables) and
OUT_DIR/frontier-*.svg (utility cost against persistence, one point per model). Plain Python, no packages."""
import os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import labsummary as ls  # noqa: E402

lines = ls.persistence_session(
    sys.argv[1], sys.argv[2], "i12kl-full", "i12kl-frontier",
    settings={
        "tok-s1": "the old defaults (`--benign-loss tokens`), set 1, seed 1",
        "kl-s1": "`--benign-loss kl` (top 32 + tail), set 1, seed 1",
        "kl-s2": "`--benign-loss kl`, set 2, seed 2",
        "kl-s3": "`--benign-loss kl`, set 3, seed 3",
        "klcheap-s1": "kl, `--mix-fraction 0.5 --lr` half (8.1e-5), set 1",
        "kllen128-s1": "kl, `--benign-length 128`, set 1",
        "klmargin-s1": "kl, `--merge-max-loss 1.0`, set 1",
    },
    full=["tok-s1", "kl-s1", "kl-s2", "kl-s3"], front=["klcheap-s1", "kllen128-s1", "klmargin-s1"],
    seeded=["kl-s1", "kl-s2", "kl-s3"],
    title="### Same base, same run: the token loss (old default) vs the KL benign loss (new default), 1,024 fingerprints",
    seeded_label="KL benign loss",
    colour=lambda n: "#D55E00" if n.startswith("tok") else "#0072B2" if n.startswith("kl-") else "#CC79A7",
    legend=(("#D55E00", "tokens (the old default, 1 seed)"), ("#0072B2", "KL (the new default, 3 seeds)"), ("#CC79A7", "KL, non-default settings (1 seed)")),
    skip_points=("klmargin-s1",))   # the same model as kl-s1 (the margin did not bind: same λ 0.40)
print("\n".join(lines))
