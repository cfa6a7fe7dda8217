#!/usr/bin/env bash
# Stages the issue-12 500M-token session (scripts/gpu/issue12g/drive.sh) into DEST (the checkout the device tool ships):
#   scripts/gpu/issue12g/stage.sh DEST CORPUS_DIR OLD_HELDOUT [FIRST_MB] [PART_MB]
# DEST/.gpu/g: the driver, call.sh, lib.sh (scripts/gpu/session-lib.sh), the base recipe, native/ (the shim and the
# fused kernels, built on the machine), the trimmed oml (artifacts/gpu/oml-lab.tar.xz from
# `OML_PACK_R2R=0 scripts/gpu/pack-lab.sh --app-only`), lab-data.tar.xz (artifacts/lab/tokenizer, CORPUS_DIR's heldout.txt
# and manifest.json, and OLD_HELDOUT as artifacts/lab/corpus/heldout-v1.txt) and the first FIRST_MB (default 20) of
# CORPUS_DIR/train.txt compressed with xz; DEST/.gpu/g2, g3, ...: call.sh and the next PART_MB (default 40) each.
# A call carries at most 64 MiB with the checkout and its .git, hence the pieces. Then, on the device, chained within
# the machine's idle window: `bash .gpu/g/call.sh 300 probes` (carry .gpu/g), `bash .gpu/g2/call.sh 120 train-start`
# (carry .gpu/g2), ..., then `bash .gpu/g/call.sh 570` (no carry) until the driver finishes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; root="$(cd "$here/../../.." && pwd)"
dest="${1:?DEST}"; corpus="${2:?CORPUS_DIR}"; old="${3:?OLD_HELDOUT}"; first="${4:-20}"; part="${5:-40}"
g="$dest/.gpu/g"
rm -rf "$dest"/.gpu/g "$dest"/.gpu/g[0-9]*
mkdir -p "$g/recipes" "$g/native"
cp -f "$here/drive.sh" "$here/call.sh" "$here/planes.py" "$here/ret.sh" "$g/"; cp -f "$root/scripts/gpu/session-lib.sh" "$g/lib.sh"
cp -f "$root/lab/recipes/base-100m.yaml" "$g/recipes/"
cp -f "$root/native/build.sh" "$root/native/oml_torch.cpp" "$root/native/oml_dist.inc" "$root/native/oml_kernels.cu" "$g/native/"
cp -f "$root/artifacts/gpu/oml-lab.tar.xz" "$g/"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/artifacts/lab/corpus"
cp -r "$root/artifacts/lab/tokenizer" "$root/artifacts/lab/instructions" "$tmp/artifacts/lab/"
cp -f "$corpus/heldout.txt" "$corpus/manifest.json" "$tmp/artifacts/lab/corpus/"
cp -f "$old" "$tmp/artifacts/lab/corpus/heldout-v1.txt"
tar -C "$tmp" -cf - artifacts | xz -T0 -6 > "$g/lab-data.tar.xz"
sha256sum "$corpus/train.txt" | cut -d' ' -f1 > "$g/corpus.sha256"
# One xz stream of the whole train.txt, cut into byte pieces: the driver concatenates them in name order and decompresses.
xz -T0 -9 -c "$corpus/train.txt" > "$tmp/train.xz"
split -b "${first}M" -d -a 2 "$tmp/train.xz" "$tmp/head."
cp -f "$tmp/head.00" "$g/train.part00.txt.xz"
tail -c +$(( first * 1048576 + 1 )) "$tmp/train.xz" > "$tmp/rest.xz"
n=1
if [ -s "$tmp/rest.xz" ]; then
  split -b "${part}M" -d -a 2 "$tmp/rest.xz" "$tmp/piece."
  for f in "$tmp"/piece.*; do
    n=$(( n + 1 ))
    mkdir -p "$dest/.gpu/g$n"
    cp -f "$here/call.sh" "$dest/.gpu/g$n/"
    cp -f "$f" "$dest/.gpu/g$n/train.part$(printf %02d $(( n - 1 ))).txt.xz"
  done
fi
echo "$n" > "$g/corpus.parts"
# The engine's tests, to run on the GPU beside the training (call.sh), when published into artifacts/gpu/etests.tar.xz:
#   dotnet publish tests/Oml.Engine.Tests -c Release -r linux-x64 --self-contained -o artifacts/gpu/etests, then tar + xz.
if [ -f "$root/artifacts/gpu/etests.tar.xz" ]; then
  n=$(( n + 1 )); mkdir -p "$dest/.gpu/g$n"; cp -f "$here/call.sh" "$root/artifacts/gpu/etests.tar.xz" "$dest/.gpu/g$n/"
fi
du -sh "$dest"/.gpu/g*
