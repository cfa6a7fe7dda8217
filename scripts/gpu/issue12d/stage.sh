#!/usr/bin/env bash
# Stages the fifth session of issue 12 (the lead's three seeds) into DEST/.gpu/d (DEST: the checkout the device tool ships):
#   scripts/gpu/issue12d/stage.sh DEST LAB_DATA
# Copies drive.sh and call.sh (scripts/gpu/session-call.sh), the base recipe, native/ (the shim's source, built on the machine), the trimmed oml made
# by `scripts/gpu/pack-lab.sh --app-only` (artifacts/gpu/oml-lab.tar.xz) and LAB_DATA (a lab-data.tar.xz made as in the
# third session: the corpus cut to 80 MB, tokenizer, instructions; see scripts/gpu/issue12c/stage.sh). Then:
#   run: bash .gpu/d/call.sh 560    (carry [".gpu/d"]; chain the next call within the machine's idle window)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; root="$here/../../.."
dest="${1:?DEST}"; data="${2:?LAB_DATA}"
mkdir -p "$dest/.gpu/d/recipes" "$dest/.gpu/d/native"
cp -f "$here/drive.sh" "$dest/.gpu/d/"
cp -f "$root/scripts/gpu/session-call.sh" "$dest/.gpu/d/call.sh"; cp -f "$root/scripts/gpu/session-lib.sh" "$dest/.gpu/d/lib.sh"
cp -f "$root/lab/recipes/base-100m.yaml" "$dest/.gpu/d/recipes/"
cp -f "$root/native/build.sh" "$root/native/oml_torch.cpp" "$root/native/oml_dist.inc" "$dest/.gpu/d/native/"
cp -f "$root/artifacts/gpu/oml-lab.tar.xz" "$dest/.gpu/d/"
[ "$(realpath "$data")" = "$(realpath -m "$dest/.gpu/d/lab-data.tar.xz")" ] || cp -f "$data" "$dest/.gpu/d/lab-data.tar.xz"
du -sh "$dest/.gpu/d"
