#!/usr/bin/env bash
# Stages issue 12's other-architecture session (scripts/gpu/issue12e/drive.sh) into DEST/.gpu/a (DEST: the checkout the
# device tool ships):
#   scripts/gpu/issue12e/stage.sh DEST LAB_DATA [PIECES_DIR]
# The copying is scripts/gpu/stage-session.sh's, plus make_init.py, planes.py and the qwen2-100m and mistral-100m recipes.
# Then, on the device: bash .gpu/a/call.sh 560 (carry [".gpu/a"]; chain calls within the idle window until "driver
# finished"). PIECES_DIR (a model packed by scripts/gpu/issue12g/planes.py, e.g. the 500M-token base brought back in the
# twelfth session) is cut into 7 MiB pieces spread over .gpu/a/pieces, .gpu/a2/pieces, ... so that each call carries at
# most PIECE_BUDGET_MB (default 44) of them beside the checkout: call 1 carries .gpu/a, call k carries .gpu/ak (run
# `bash .gpu/a/call.sh 5`); the driver (BASE_PIECES=1 LLAMA_BASE=NAME) takes them as they arrive.
# The 500M base's cells (twelfth session): LAB_DATA holds the tokenizer, the instructions, the larger corpus's held-out
# file and the first 8 MB of its train.txt (the lab reads 5M characters), and heldout-v1.txt; driver environment
#   MODELS="llama-s1 llama-s2 llama-s3" BASE_PIECES=1 LLAMA_BASE=base-500m HELDOUT=heldout-v1 [TREES=1: the tree diagnosis]
# CPU rehearsal (as issue13b's, W prepared with lab-app/oml wrapping a local build and a small corpus):
#   CPU_SHIM=/dev/null DEV=cpu SHAPE=tiny COUNT=16 STEPS=20 MEMGB=4 SLOTS=2 LAB_SLOTS=2 INSTR=artifacts/lab/instr-small.json
#   UTIL='{ cloze_items: 20, perplexity_tokens: 2048, perplexity_window: 128, batch_size: 16 }'
#   BASE_ARGS='--batch-size 4 --context 64 --dtype float32 --eval-every 10' MODELS="qwen2-s1 mistral-s1"
#   REPO=DEST G=.gpu/a W=/tmp/w12e-cpu bash DEST/.gpu/a/drive.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; root="$(cd "$here/../../.." && pwd)"
dest="${1:?DEST}"; data="${2:?LAB_DATA}"
"$root/scripts/gpu/stage-session.sh" "$here" a "$dest" "$data"
cp -f "$root/scripts/gpu/issue12/make_init.py" "$dest/.gpu/a/"
cp -f "$root/lab/recipes/qwen2-100m.yaml" "$root/lab/recipes/mistral-100m.yaml" "$dest/.gpu/a/recipes/"
cp -f "$root/scripts/gpu/issue12g/planes.py" "$dest/.gpu/a/"
if [ -n "${3:-}" ]; then
  rm -rf "$dest"/.gpu/a/pieces "$dest"/.gpu/a[0-9]*
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  python3 "$root/scripts/gpu/issue12g/planes.py" repiece "$3" "$tmp" 7
  budget=$(( ${PIECE_BUDGET_MB:-44} * 1000000 )); used=$(du -sb "$dest/.gpu/a" | cut -f1); k=1; dir="$dest/.gpu/a/pieces"
  mkdir -p "$dir"; cp -f "$tmp/manifest.json" "$dir/"
  for f in $(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); [print(p['file']) for pl in m['planes'].values() for p in pl['pieces']]" "$tmp/manifest.json"); do
    s=$(stat -c %s "$tmp/$f")
    if [ $(( used + s )) -gt "$budget" ]; then k=$(( k + 1 )); dir="$dest/.gpu/a$k/pieces"; mkdir -p "$dir"; used=0; fi
    cp -f "$tmp/$f" "$dir/"; used=$(( used + s ))
  done
fi
du -sh "$dest"/.gpu/a*
