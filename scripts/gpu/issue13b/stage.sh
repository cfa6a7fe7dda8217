#!/usr/bin/env bash
# Stages issue 13 at 100M (key temperature and the low-perplexity filter, scripts/gpu/issue13b/drive.sh) into
# DEST/.gpu/k (DEST: the checkout the device tool ships):
#   scripts/gpu/issue13b/stage.sh DEST LAB_DATA
# Copies drive.sh, call.sh (scripts/gpu/session-call.sh) and lib.sh, the base recipe, native/ (the shim's source, built
# on the machine), the trimmed oml made by `scripts/gpu/pack-lab.sh --app-only` (artifacts/gpu/oml-lab.tar.xz; with
# OML_PACK_R2R=0 it is about 17 MB) and LAB_DATA (a lab-data.tar.xz as in scripts/gpu/issue12c/stage.sh: the corpus cut
# to 80 MB, tokenizer, instructions). Then:
#   run: bash .gpu/k/call.sh 560    (carry [".gpu/k"]; chain the next call within the machine's idle window)
# A CPU rehearsal of the driver: CPU_SHIM=PATH_TO_CPU_SHIM DEV=cpu COUNT=16 STEPS=20 UTIL='{ cloze_items: 20,
# perplexity_tokens: 2048, perplexity_window: 128, batch_size: 16 }' BASE_ARGS='--hidden 64 --layers 2 --heads 4
# --kv-heads 2 --intermediate 176 --batch-size 4 --context 64' REPO=DEST W=/tmp/w13b-cpu bash DEST/.gpu/k/drive.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; root="$here/../../.."
dest="${1:?DEST}"; data="${2:?LAB_DATA}"
mkdir -p "$dest/.gpu/k/recipes" "$dest/.gpu/k/native"
cp -f "$here/drive.sh" "$dest/.gpu/k/"
cp -f "$root/scripts/gpu/session-call.sh" "$dest/.gpu/k/call.sh"; cp -f "$root/scripts/gpu/session-lib.sh" "$dest/.gpu/k/lib.sh"
cp -f "$root/lab/recipes/base-100m.yaml" "$dest/.gpu/k/recipes/"
cp -f "$root/native/build.sh" "$root/native/oml_torch.cpp" "$root/native/oml_dist.inc" "$dest/.gpu/k/native/"
cp -f "$root/artifacts/gpu/oml-lab.tar.xz" "$dest/.gpu/k/"
[ "$(realpath "$data")" = "$(realpath -m "$dest/.gpu/k/lab-data.tar.xz")" ] || cp -f "$data" "$dest/.gpu/k/lab-data.tar.xz"
du -sh "$dest/.gpu/k"
