#!/usr/bin/env bash
# Brings the packed model back, one batch a device call (at most 8 files of 16 MiB, 64 MiB a call):
#   bash .gpu/g/ret.sh K      copies pieces 4K..4K+3 (manifest order) and manifest.json from $W/ret/NAME to $OUT
# Here: `python3 scripts/gpu/issue12g/planes.py unpack DIR DEST` once every piece is in DIR.
set -euo pipefail
W="${W:-/tmp/w12g}"; k="${1:?K}"; name="${NAME:-base-500m}"; src="$W/ret/$name"
[ -f "$src/manifest.json" ] || { echo "no packed model in $src (driver: RETURN=1)"; exit 1; }
mapfile -t pieces < <(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); [print(p['file']) for pl in ('lo','hi') for p in m['planes'][pl]['pieces']]" "$src/manifest.json")
echo "${#pieces[@]} pieces; this call: $(( 4 * k ))..$(( 4 * k + 3 ))"
cp -f "$src/manifest.json" "$OUT/"
for p in "${pieces[@]:$(( 4 * k )):4}"; do cp -f "$src/$p" "$OUT/"; echo "  $p $(stat -c %s "$src/$p")"; done
