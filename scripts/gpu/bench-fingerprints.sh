#!/usr/bin/env bash
# Stages the GPU fingerprint benchmark (bench/gpu/fingerprint_bench.py) into one folder that a GPU machine with PyTorch
# but no .NET can run from:
#
#   scripts/gpu/pack-lab.sh --app-only [--bench]            # here: trimmed self-contained oml (artifacts/gpu/oml-lab.tar.xz),
#                                                           # with --bench also Oml.Bench for --model-io (oml-bench.tar.xz)
#   scripts/gpu/bench-fingerprints.sh DEST [TOKENIZER_DIR]   # here: DEST gets the pack, the shim source, the scripts, the tokenizer
#   DEST/run.sh 1b|8b|all OUT [--only 0] [--model-io]       # there: builds the shim against that PyTorch, runs the cases
#
# TOKENIZER_DIR holds the Llama-3 tokenizer.json and tokenizer_config.json (default artifacts/tokenizers/llama3, from
# scripts/fetch-tokenizers.sh). The staged folder is about 20 MB.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
dest="${1:?usage: bench-fingerprints.sh DEST [TOKENIZER_DIR]}"
tok="${2:-artifacts/tokenizers/llama3}"
[ -f artifacts/gpu/oml-lab.tar.xz ] || { echo "bench-fingerprints: run scripts/gpu/pack-lab.sh --app-only first" >&2; exit 1; }
[ -f "$tok/tokenizer.json" ] || { echo "bench-fingerprints: $tok/tokenizer.json is missing (scripts/fetch-tokenizers.sh)" >&2; exit 1; }
mkdir -p "$dest/native" "$dest/bench" "$dest/tokenizer"
cp artifacts/gpu/oml-lab.tar.xz "$dest/"
cp native/oml_torch.cpp native/oml_dist.inc native/oml_kernels.cu native/build.sh "$dest/native/"
[ -f artifacts/gpu/oml-bench.tar.xz ] && cp artifacts/gpu/oml-bench.tar.xz "$dest/"
cp bench/gpu/fingerprint_bench.py bench/gpu/llama_peer.py "$dest/bench/"
cp "$tok/tokenizer.json" "$tok/tokenizer_config.json" "$dest/tokenizer/"
cp bench/gpu/run.sh "$dest/run.sh"
chmod +x "$dest/run.sh" "$dest/native/build.sh"
du -sh "$dest"
