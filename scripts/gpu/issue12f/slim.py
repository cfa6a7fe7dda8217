#!/usr/bin/env python3
"""A probe report without its per-key records, small enough to bring back from the device: FULL SLIM.
Keeps every top-level field, and in place of "keys" the hit string ("1"/"0" per key, in the set's order)."""
import json, os, sys

with open(sys.argv[1]) as f:
    d = json.load(f)
keys = d.pop("keys", [])
d["hit_string"] = "".join("1" if k.get("hit") else "0" for k in keys)
with open(sys.argv[2] + ".tmp", "w") as f:
    json.dump(d, f)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
