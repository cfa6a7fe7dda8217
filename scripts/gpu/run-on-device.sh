#!/usr/bin/env bash
# Runs the published oml programs on a machine with PyTorch (and a GPU), from the repository root:
#
#   scripts/gpu/run-on-device.sh COMMAND [ARGS...]
#
# It unpacks artifacts/gpu/oml-gpu.tar.xz (made by scripts/gpu/pack.sh on a machine with .NET), builds
# native/oml_torch.cpp against the libtorch inside that machine's PyTorch (CUDA included), and runs COMMAND with
# the programs on PATH: oml, Oml.Engine.Tests (xunit; OML_TEST_DEVICE=cuda runs the tests on the GPU) and Oml.Bench.
#   e.g.  scripts/gpu/run-on-device.sh oml info
#         OML_TEST_DEVICE=cuda scripts/gpu/run-on-device.sh Oml.Engine.Tests
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
pack="$root/artifacts/gpu/oml-gpu.tar.xz"
[ -f "$pack" ] || { echo "run-on-device: $pack is missing; run scripts/gpu/pack.sh first" >&2; exit 1; }
work="${OML_GPU_WORK:-/tmp/oml-gpu}"
mkdir -p "$work"
if [ ! -x "$work/app/oml" ] || [ "$pack" -nt "$work/app/oml" ]; then
  rm -rf "$work/app"
  tar -C "$work" -xJf "$pack"
  touch "$work/app/oml"
fi
python="${PYTHON:-python3}"
torch_dir="$("$python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
PYTHON="$python" "$root/native/build.sh" "$work/native" >&2
cp -f "$work/native/liboml_torch.so" "$work/app/liboml_torch.so"
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$work/app:$PATH"
export DOTNET_CLI_TELEMETRY_OPTOUT=1
exec "$@"
