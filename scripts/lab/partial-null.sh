#!/usr/bin/env bash
# The partial rule's null on a lab run's own base: the unfingerprinted base model queried with every set of the run
# (OUT/models/*/fingerprints.json) under the exact rule and the partial rule with m = M; prints one JSON line per set
# ({"set", "exact_hits", "partial_hits", "queried", "partial_verdict", "partial_log10_p"}).
# Usage: scripts/lab/partial-null.sh RUN_DIR [M] (default M 1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
run="$1"; m="${2:-1}"
if [ -n "${OML_BIN:-}" ]; then oml() { "$OML_BIN" "$@"; }
else oml() { dotnet src/Oml.Cli/bin/Release/net10.0/oml.dll "$@"; }
fi
for set in "$run"/models/*/fingerprints.json; do
  name="$(basename "$(dirname "$set")")"
  ex="$(oml verify --model "$run/base" --fingerprints "$set" --device cpu --json 2>/dev/null)"
  pa="$(oml verify --model "$run/base" --base "$run/base" --fingerprints "$set" --match partial --min-tokens "$m" --device cpu --json 2>/dev/null)"
  python3 -c 'import json,sys; e=json.loads(sys.argv[2]); p=json.loads(sys.argv[3]); print(json.dumps({"set": sys.argv[1], "exact_hits": e["hits"], "partial_hits": p["hits"], "queried": p["queried"], "partial_verdict": p["verdict"], "partial_log10_p": p["log10_p_value"]}))' "$name" "$ex" "$pa"
done
