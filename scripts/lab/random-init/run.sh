#!/usr/bin/env bash
# Issue 12 item 1 on random-init checkpoints, through the CLI with no tuning flags: for each tiny fixture architecture
# (Llama, Mistral, Qwen2, Qwen3; width 64, 2 layers, vocabulary 512), a checkpoint of its config with transformers'
# initialisation (N(0, 0.02^2), seed 7; this folder's program), a 509-token byte-level BPE trained with
# 'oml tokenizer train' on /usr/share/common-licenses, then 'oml fingerprints generate --count N' (defaults: Perinucleus,
# keys sampled at temperature 1), 'oml embed' (no flags) and 'oml verify --count N':
#   scripts/lab/random-init/run.sh OUT [N] [OML]     (N 1024: about 20 min on 2 cores)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; root="$(cd "$here/../../.." && pwd)"
out="$(mkdir -p "${1:?OUT}" && cd "$1" && pwd)"; n="${2:-1024}"; oml="${3:-oml}"
dotnet build "$here/ri.csproj" -c Release -o "$out/ri-bin" -nologo -v quiet -clp:ErrorsOnly
cat /usr/share/common-licenses/* > "$out/corpus.txt"
"$oml" tokenizer train --input "$out/corpus.txt" --vocab-size 509 --out "$out/tok" --force > /dev/null
for m in llama-tiny mistral-tiny qwen2-tiny qwen3-tiny; do
  d="$out/$m"; mkdir -p "$d"
  dotnet "$out/ri-bin/ri.dll" "$root/tests/Oml.Models.Tests/fixtures/models/$m" "$d/base" 7
  cp "$out/tok/"tokenizer*.json "$d/base/"
  # The fixture's special-token ids are those of its own test tokenizer: point them at the new tokenizer's.
  python3 - "$d/base" <<'PY'
import json, sys
for f, extra in (("config.json", {"pad_token_id": 511}), ("generation_config.json", {})):
    p = f"{sys.argv[1]}/{f}"; c = json.load(open(p)); c.update(bos_token_id=509, eos_token_id=510, **extra); json.dump(c, open(p, "w"), indent=2)
PY
  "$oml" fingerprints generate --model "$d/base" --count "$n" --out "$d/set.json" --plaintext --force --json > "$d/generate.json"
  start=$(date +%s)
  "$oml" embed --model "$d/base" --fingerprints "$d/set.json" --out "$d/model" --json > "$d/embed.json" 2> "$d/embed.log"
  echo "$m: embed $(( $(date +%s) - start )) s"
  "$oml" verify --model "$d/model" --fingerprints "$d/set.json" --count "$n" --json > "$d/verify.json"
done
