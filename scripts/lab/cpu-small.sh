#!/usr/bin/env bash
# Runs one of the small CPU experiments of issue 13 item 5 (lab/experiments/cpu-embedding-method*.yaml,
# cpu-perinucleus-tk*.yaml) and writes the tables of scripts/lab/cpu-small-summary.py to OUT/summary.md. A config whose
# name does not end in -trained runs on the llama-tiny test fixture with the 512-token BPE of scripts/fixtures (copied
# into OUT/base); the -trained ones build their base in-run (build_base).
# Usage: scripts/lab/cpu-small.sh NAME [OUT] (default artifacts/lab/results/NAME), e.g. cpu-embedding-method-trained.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$(pwd)"
name="${1:?usage: cpu-small.sh NAME [OUT]}"
[ -f "lab/experiments/$name.yaml" ] || { echo "no lab/experiments/$name.yaml" >&2; exit 2; }
out="${2:-$root/artifacts/lab/results/$name}"
if [ -n "${OML_BIN:-}" ]; then oml() { "$OML_BIN" "$@"; }
else
  dll="$root/src/Oml.Cli/bin/Release/net10.0/oml.dll"
  [ -f "$dll" ] || dotnet build src/Oml.Cli -c Release -nologo -v q >/dev/null
  oml() { dotnet "$dll" "$@"; }
fi
if [[ "$name" != *-trained ]]; then
  mkdir -p "$out/base"
  fx="$root/tests/Oml.Models.Tests/fixtures/models/llama-tiny"
  [ -f "$out/base/config.json" ] || cp "$fx"/{config.json,generation_config.json,model.safetensors} "$out/base/"
  [ -f "$out/base/tokenizer.json" ] || cp "$root/scripts/fixtures/tiny-tokenizer.json" "$out/base/tokenizer.json"
fi
oml lab run "lab/experiments/$name.yaml" --out "$out" --quiet
python3 scripts/lab/cpu-small-summary.py "$out" > "$out/summary.md"
