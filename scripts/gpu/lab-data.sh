#!/usr/bin/env bash
# Builds the lab's data on a fresh checkout and packs it for a device call, in one command:
#   scripts/gpu/lab-data.sh [MB]        (default 80)
# 1. the corpus (scripts/lab/build-corpus.sh: the Debian packages, then `oml data corpus`), the 8,192-token tokenizer
#    and the instruction data, each only when missing (the commands of docs/results.md "Reproducing");
# 2. artifacts/gpu/lab-data.tar.xz: train.txt cut to its first MB megabytes at a document boundary, heldout.txt, the
#    corpus manifest, the tokenizer and the instructions, under artifacts/lab/ as the session drivers unpack them
#    (scripts/gpu/session-lib.sh). A device call carries at most 64 MiB with the checkout and its .git: the 80 MB cut
#    packs to about 23 MB (xz -6), the whole 288 MiB corpus to 73 MB, too much.
# About 8 minutes on the 2-core CPU machine from nothing (apt 2-3 min, corpus 1.5 min, tokenizer 3 min, xz 1 min).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mb="${1:-80}"
case "$mb" in ''|*[!0-9]*) echo "lab-data: MB must be a whole number of megabytes, not '$mb'" >&2; exit 2 ;; esac
lab=artifacts/lab
oml=src/Oml.Cli/bin/Release/net10.0/oml
[ -x "$oml" ] || dotnet build src/Oml.Cli -c Release -nologo -v q >/dev/null
[ -f "$lab/corpus/train.txt" ] && [ -f "$lab/corpus/heldout.txt" ] || scripts/lab/build-corpus.sh
[ -f "$lab/tokenizer/tokenizer.json" ] \
  || "$oml" tokenizer train --input "$lab/corpus/train.txt" --vocab-size 8192 --out "$lab/tokenizer" --force
[ -f "$lab/instructions/instructions-train.json" ] \
  || "$oml" data instructions --corpus "$lab/corpus" --out "$lab/instructions" --count 20000 --seed 1
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/$lab/corpus" artifacts/gpu
python3 - "$lab/corpus/train.txt" "$tmp/$lab/corpus/train.txt" "$mb" <<'PY'
import sys
src, dst, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
limit = mb * 1_000_000
d = open(src, 'rb').read(limit + 1_000_000)
cut = len(d) if len(d) <= limit else d.rfind(b'\n\n', 0, limit) + 2
if cut < 2:
    sys.exit(f"lab-data: no document boundary in the first {mb} MB of {src}")
open(dst, 'wb').write(d[:cut])
print(f"train.txt: {cut:,} of {len(d):,}+ bytes")
PY
cp "$lab/corpus/heldout.txt" "$lab/corpus/manifest.json" "$tmp/$lab/corpus/"
cp -r "$lab/tokenizer" "$lab/instructions" "$tmp/$lab/"
tar -C "$tmp" -cf - artifacts | xz -T0 -6 > artifacts/gpu/lab-data.tar.xz.tmp
mv -f artifacts/gpu/lab-data.tar.xz.tmp artifacts/gpu/lab-data.tar.xz
du -h artifacts/gpu/lab-data.tar.xz
