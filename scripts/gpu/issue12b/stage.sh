#!/usr/bin/env bash
# Stages issue 12's second GPU session into DEST/.gpu (DEST: the checkout the device tool ships, e.g. the lead's):
#   scripts/gpu/issue12b/stage.sh DEST [--no-data]
# Copies the driver (drive.sh, call.sh: scripts/gpu/session-call.sh), make_init.py and the recipes into DEST/.gpu/issue12b, and the packs made by
# scripts/gpu/pack-lab.sh (artifacts/gpu/oml-lab.tar.xz, lab-data.tar.xz) into DEST/.gpu. Then, on the device:
#   run: bash .gpu/issue12b/call.sh 560      (carry [".gpu"]; chain the next call within the machine's idle window)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; root="$here/../../.."
dest="${1:?DEST}"
mkdir -p "$dest/.gpu/issue12b/recipes"
cp -f "$here/drive.sh" "$root/scripts/gpu/issue12/make_init.py" "$dest/.gpu/issue12b/"
cp -f "$root/scripts/gpu/session-call.sh" "$dest/.gpu/issue12b/call.sh"; cp -f "$root/scripts/gpu/session-lib.sh" "$dest/.gpu/issue12b/lib.sh"
cp -f "$root/lab/recipes/base-100m.yaml" "$root/lab/recipes/qwen2-small.yaml" "$root/lab/recipes/mistral-small.yaml" "$dest/.gpu/issue12b/recipes/"
if [ "${2:-}" != "--no-data" ]; then
  cp -f "$root/artifacts/gpu/oml-lab.tar.xz" "$root/artifacts/gpu/lab-data.tar.xz" "$dest/.gpu/"
fi
du -sh "$dest/.gpu"
