#!/usr/bin/env bash
# Runs lab/experiments/cpu-defence.yaml (issue 13 on CPU: suppression against the exact and partial rules with and
# without resumption pairs, query rewriting, paraphrasing, a revealed-key blocker) with the llama-tiny fixture and the
# 512-token BPE of scripts/fixtures as the base. Usage: scripts/lab/cpu-defence.sh [trained|responses|filter|combined|camouflage|trees|matched-trees|cost|filter-responses]
# [OUT] (default artifacts/lab/results/cpu-defence[-trained|-responses|-combined], cpu-detector-filter, cpu-camouflage,
# cpu-response-trees, cpu-matched-trees or cpu-attacker-cost); 'trained' runs
# cpu-defence-trained.yaml, whose base is trained in-run, 'responses' cpu-defence-responses.yaml (the same base recipe;
# several responses per key), 'filter' cpu-detector-filter.yaml (the same base; the low-perplexity detector as a filter),
# 'combined' cpu-defence-combined.yaml (camouflaged keys with four responses against suppression and that filter),
# 'camouflage' cpu-camouflage.yaml (perplexity-matched keys against both filters), 'trees' cpu-response-trees.yaml
# (response trees against suppression of every answer token), 'matched-trees' cpu-matched-trees.yaml (both against the
# filters and suppression together), 'cost' cpu-attacker-cost.yaml (the same defences on an instruction-tuned base, with
# the attacks' whole-answer cost), 'filter-responses' cpu-filter-responses.yaml (what the instruction-calibrated filter's
# flagged prompts get: refusal, the base's answer, or a paraphrase).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$(pwd)"
name=cpu-defence
case "${1:-}" in
  trained) name=cpu-defence-trained; shift ;;
  responses) name=cpu-defence-responses; shift ;;
  filter) name=cpu-detector-filter; shift ;;
  combined) name=cpu-defence-combined; shift ;;
  camouflage) name=cpu-camouflage; shift ;;
  trees) name=cpu-response-trees; shift ;;
  matched-trees) name=cpu-matched-trees; shift ;;
  cost) name=cpu-attacker-cost; shift ;;
  filter-responses) name=cpu-filter-responses; shift ;;
esac
out="${1:-$root/artifacts/lab/results/$name}"
if [ -n "${OML_BIN:-}" ]; then oml() { "$OML_BIN" "$@"; }
else
  dll="$root/src/Oml.Cli/bin/Release/net10.0/oml.dll"
  [ -f "$dll" ] || dotnet build src/Oml.Cli -c Release -nologo -v q >/dev/null
  oml() { dotnet "$dll" "$@"; }
fi
if [ "$name" = cpu-defence ]; then
  mkdir -p "$out/base"
  fx="$root/tests/Oml.Models.Tests/fixtures/models/llama-tiny"
  [ -f "$out/base/config.json" ] || cp "$fx"/{config.json,generation_config.json,model.safetensors} "$out/base/"
  [ -f "$out/base/tokenizer.json" ] || cp "$root/scripts/fixtures/tiny-tokenizer.json" "$out/base/tokenizer.json"
fi
oml lab run "lab/experiments/$name.yaml" --out "$out" ${OML_LAB_WORKERS:+--workers "$OML_LAB_WORKERS"}
