#!/usr/bin/env bash
# Stages the KL session of issue 12 into DEST/.gpu/kl (DEST: the checkout the device tool ships):
#   scripts/gpu/issue12kl/stage.sh DEST LAB_DATA
# Copies drive.sh and call.sh (scripts/gpu/session-call.sh), the base recipe, native/ (the shim's source, built on the machine), the trimmed oml made
# by `scripts/gpu/pack-lab.sh --app-only` (artifacts/gpu/oml-lab.tar.xz) and LAB_DATA (the lab-data.tar.xz of the
# third session: the corpus cut to 80 MB, tokenizer, instructions; see scripts/gpu/issue12c/stage.sh). Then:
#   run: bash .gpu/kl/call.sh 560    (carry [".gpu/kl"]; chain the next call within the machine's idle window)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; root="$here/../../.."
dest="${1:?DEST}"; data="${2:?LAB_DATA}"
mkdir -p "$dest/.gpu/kl/recipes" "$dest/.gpu/kl/native"
cp -f "$here/drive.sh" "$dest/.gpu/kl/"
cp -f "$root/scripts/gpu/session-call.sh" "$dest/.gpu/kl/call.sh"; cp -f "$root/scripts/gpu/session-lib.sh" "$dest/.gpu/kl/lib.sh"
cp -f "$root/lab/recipes/base-100m.yaml" "$dest/.gpu/kl/recipes/"
cp -f "$root/native/build.sh" "$root/native/oml_torch.cpp" "$root/native/oml_dist.inc" "$dest/.gpu/kl/native/"
cp -f "$root/artifacts/gpu/oml-lab.tar.xz" "$dest/.gpu/kl/"
[ "$(realpath "$data")" = "$(realpath -m "$dest/.gpu/kl/lab-data.tar.xz")" ] || cp -f "$data" "$dest/.gpu/kl/lab-data.tar.xz"
du -sh "$dest/.gpu/kl"
