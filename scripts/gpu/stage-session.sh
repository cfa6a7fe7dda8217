#!/usr/bin/env bash
# Stages a GPU session's driver into DEST/.gpu/NAME (DEST: the checkout the device tool ships), for the sessions whose
# stage.sh calls this (issue12kl, issue12d, issue13b):
#   scripts/gpu/stage-session.sh SESSION_DIR NAME DEST LAB_DATA
# Copies SESSION_DIR/drive.sh, call.sh (session-call.sh) and lib.sh (session-lib.sh), the base recipe, native/ (the
# shim's source and the fused CUDA kernels, built on the machine), the trimmed oml made by `scripts/gpu/pack-lab.sh --app-only`
# (artifacts/gpu/oml-lab.tar.xz; about 17 MB with OML_PACK_R2R=0) and LAB_DATA (a lab-data.tar.xz as in
# scripts/gpu/issue12c/stage.sh: the corpus cut to 80 MB, tokenizer, instructions). Then, on the device:
#   bash .gpu/NAME/call.sh 560    (carry [".gpu/NAME"]; chain the next call within the machine's idle window)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="${1:?SESSION_DIR}"; name="${2:?NAME}"; dest="${3:?DEST}"; data="${4:?LAB_DATA}"
g="$dest/.gpu/$name"
mkdir -p "$g/recipes" "$g/native"
cp -f "$src/drive.sh" "$g/"
cp -f "$root/scripts/gpu/session-call.sh" "$g/call.sh"; cp -f "$root/scripts/gpu/session-lib.sh" "$g/lib.sh"
cp -f "$root/lab/recipes/base-100m.yaml" "$g/recipes/"
cp -f "$root/native/build.sh" "$root/native/oml_torch.cpp" "$root/native/oml_dist.inc" "$root/native/oml_kernels.cu" "$g/native/"
cp -f "$root/artifacts/gpu/oml-lab.tar.xz" "$g/"
[ "$(realpath "$data")" = "$(realpath -m "$g/lab-data.tar.xz")" ] || cp -f "$data" "$g/lab-data.tar.xz"
du -sh "$g"
