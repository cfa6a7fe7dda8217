#!/usr/bin/env python3
"""Writes a randomly initialised Llama model folder with transformers, for benchmarks on a machine with PyTorch.

    python3 bench/make_model.py OUT_DIR [--hidden 1024 --layers 8 --heads 16 --kv-heads 4 --vocab 32000 --dtype bfloat16]
"""
import argparse

import torch
import transformers

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--hidden", type=int, default=1024)
ap.add_argument("--layers", type=int, default=8)
ap.add_argument("--heads", type=int, default=16)
ap.add_argument("--kv-heads", type=int, default=4)
ap.add_argument("--intermediate", type=int, default=2816)
ap.add_argument("--vocab", type=int, default=32000)
ap.add_argument("--dtype", default="bfloat16")
a = ap.parse_args()
torch.manual_seed(0)
cfg = transformers.LlamaConfig(hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                               num_key_value_heads=a.kv_heads, intermediate_size=a.intermediate, vocab_size=a.vocab,
                               max_position_embeddings=2048, tie_word_embeddings=False)
model = transformers.LlamaForCausalLM(cfg).to(getattr(torch, a.dtype))
model.save_pretrained(a.out, safe_serialization=True)
print(f"wrote {a.out}: {sum(p.numel() for p in model.parameters()):,} parameters, {a.dtype}")
