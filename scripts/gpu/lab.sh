#!/usr/bin/env bash
# Runs a command of the evaluation lab on the GPU machine (PyTorch, no .NET), from the repository root:
#
#   scripts/gpu/lab.sh COMMAND [ARGS...]        e.g. scripts/gpu/lab.sh oml train --config lab/recipes/base.yaml
#
# Unpacks artifacts/gpu/oml-lab.tar.xz (a trimmed self-contained oml) and, when present, artifacts/gpu/lab-data.tar.xz
# (corpus, tokenizer, instructions, into artifacts/lab), both made by scripts/gpu/pack-lab.sh; builds the native shim
# against that machine's PyTorch libtorch; then runs COMMAND with oml on PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
work="${OML_GPU_WORK:-/tmp/oml-lab}"
mkdir -p "$work"
if [ ! -x "$work/lab-app/oml" ]; then
  tar -C "$work" -xJf artifacts/gpu/oml-lab.tar.xz
fi
if [ -f artifacts/gpu/lab-data.tar.xz ] && [ ! -f artifacts/lab/.unpacked ]; then
  tar -C "$root" -xJf artifacts/gpu/lab-data.tar.xz && touch artifacts/lab/.unpacked
fi
python="${PYTHON:-python3}"
torch_dir="$("$python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
[ -f "$work/native/liboml_torch.so" ] || PYTHON="$python" "$root/native/build.sh" "$work/native" >&2
cp -f "$work/native/liboml_torch.so" "$work/lab-app/liboml_torch.so"
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$work/lab-app:$PATH"
exec "$@"
