#!/usr/bin/env python3
"""Loads model folders written by `oml convert` in Hugging Face transformers and compares their logits with the
reference logits that transformers computed for the original folders (reference.safetensors of the fixtures).

    python3 scripts/gpu/check_transformers.py FIXTURE_DIR CONVERTED_DIR [...pairs]
Prints one line per pair and exits 1 if any differs by more than 1e-4.
"""
import sys

import torch
import transformers
from safetensors.torch import load_file

worst = 0.0
pairs = list(zip(sys.argv[1::2], sys.argv[2::2]))
print(f"transformers {transformers.__version__}, torch {torch.__version__}")
for fixture, converted in pairs:
    ref = load_file(f"{fixture}/reference.safetensors")
    model = transformers.AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        logits = model(ref["input_ids"]).logits
    diff = (logits - ref["logits"]).abs().max().item()
    worst = max(worst, diff)
    print(f"{converted}: {type(model).__name__} loaded; max |logits - reference| = {diff:.3e}")
sys.exit(0 if worst <= 1e-4 else 1)
