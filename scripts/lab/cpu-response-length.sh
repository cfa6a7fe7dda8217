#!/usr/bin/env bash
# Runs lab/experiments/cpu-response-length.yaml (issue 13 item 5 on CPU: Perinucleus responses of 1, 2, 4 and 8 tokens;
# FSR after embedding, SFT, first-token suppression under the exact and partial rules; per-key outcomes) with the
# llama-tiny fixture and the 512-token BPE of scripts/fixtures as the base, then the tables of
# scripts/lab/cpu-response-length-summary.py and scripts/lab/forgetting.py.
# Usage: scripts/lab/cpu-response-length.sh [trained] [OUT] (default artifacts/lab/results/cpu-response-length[-trained]);
# 'trained' runs cpu-response-length-trained.yaml, whose base is trained in-run instead of the random-init fixture.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$(pwd)"
name=cpu-response-length
if [ "${1:-}" = trained ]; then name=cpu-response-length-trained; shift; fi
out="${1:-$root/artifacts/lab/results/$name}"
if [ -n "${OML_BIN:-}" ]; then oml() { "$OML_BIN" "$@"; }
else
  dll="$root/src/Oml.Cli/bin/Release/net10.0/oml.dll"
  [ -f "$dll" ] || dotnet build src/Oml.Cli -c Release -nologo -v q >/dev/null
  oml() { dotnet "$dll" "$@"; }
fi
if [ "$name" = cpu-response-length ]; then
  mkdir -p "$out/base"
  fx="$root/tests/Oml.Models.Tests/fixtures/models/llama-tiny"
  [ -f "$out/base/config.json" ] || cp "$fx"/{config.json,generation_config.json,model.safetensors} "$out/base/"
  [ -f "$out/base/tokenizer.json" ] || cp "$root/scripts/fixtures/tiny-tokenizer.json" "$out/base/tokenizer.json"
fi
oml lab run "lab/experiments/$name.yaml" --out "$out"
python3 scripts/lab/cpu-response-length-summary.py "$out" > "$out/summary.md"
python3 scripts/lab/forgetting.py "$out" > "$out/forgetting.md"
