#!/usr/bin/env bash
# Stages issue 12's third GPU session into DEST/.gpu (DEST: the checkout the device tool ships, e.g. the lead's):
#   scripts/gpu/issue12c/stage.sh DEST [--no-data]
# Copies the drivers (drive.sh, drive2.sh, call.sh: scripts/gpu/session-call.sh), make_init.py, the recipes and native/ (the shim's source, built there) into
# DEST/.gpu, and the packs made by scripts/gpu/pack-lab.sh (artifacts/gpu/oml-lab.tar.xz, lab-data.tar.xz). Then:
#   run: bash .gpu/issue12c/call.sh 560      (carry [".gpu"]; chain the next call within the machine's idle window)
#   then, on a fresh machine: W=/tmp/w4 DRIVER=drive2.sh SLOTS=5 bash .gpu/issue12c/call.sh 555
# Size: a call carries at most 64 MB. This session's lab-data.tar.xz held train.txt cut to its first 80.0 MB at a
# document boundary and was packed with `xz -T2 -1` (the xz -6 of pack-lab.sh took too long on the shared CPU):
# 30.9 MB, with oml-lab.tar.xz 16.9 MB and the checkout 13.3 MB, 61.3 MB in all (the whole corpus at xz -1 was over).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; root="$here/../../.."
dest="${1:?DEST}"
mkdir -p "$dest/.gpu/issue12c/recipes" "$dest/.gpu/native"
cp -f "$here/drive.sh" "$here/drive2.sh" "$root/scripts/gpu/issue12/make_init.py" "$dest/.gpu/issue12c/"
cp -f "$root/scripts/gpu/session-call.sh" "$dest/.gpu/issue12c/call.sh"; cp -f "$root/scripts/gpu/session-lib.sh" "$dest/.gpu/issue12c/lib.sh"
cp -f "$root/lab/recipes/base-100m.yaml" "$root/lab/recipes/qwen2-small.yaml" "$root/lab/recipes/mistral-small.yaml" "$dest/.gpu/issue12c/recipes/"
cp -f "$root/native/build.sh" "$root/native/oml_torch.cpp" "$root/native/oml_dist.inc" "$dest/.gpu/native/"
if [ "${2:-}" != "--no-data" ]; then
  cp -f "$root/artifacts/gpu/oml-lab.tar.xz" "$root/artifacts/gpu/lab-data.tar.xz" "$dest/.gpu/"
fi
du -sh "$dest/.gpu"
