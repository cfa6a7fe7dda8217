#!/usr/bin/env bash
# Publishes self-contained linux-x64 builds of oml, the engine tests and the engine benchmark into one folder and
# packs it as artifacts/gpu/oml-gpu.tar.xz, for a GPU machine that has PyTorch but no .NET
# (see scripts/gpu/run-on-device.sh). The three programs share one runtime, so they are published untrimmed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=artifacts/gpu
rm -rf "$out/app" && mkdir -p "$out/app"
for p in src/Oml.Cli tests/Oml.Engine.Tests bench/Oml.Bench bench/Oml.Bench.Tokenizer; do
  dotnet publish "$p" -c Release -r linux-x64 --self-contained -o "$out/app" -nologo -v quiet -clp:ErrorsOnly
done
rm -f "$out/app/liboml_torch.so" "$out/app"/*.pdb   # the shim is rebuilt there against that machine's libtorch
tar -C "$out" -cJf "$out/oml-gpu.tar.xz.tmp" app
mv -f "$out/oml-gpu.tar.xz.tmp" "$out/oml-gpu.tar.xz"
du -h "$out/oml-gpu.tar.xz"
