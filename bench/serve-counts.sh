#!/usr/bin/env bash
# Counts what `oml serve` does to answer `oml verify --endpoint`: one server over MODEL, then for each concurrency
# RUNS verify runs of COUNT keys of SET, each line giving the client's wall seconds and phase `endpoint queries`
# (OML_TIMINGS=1) and the server's work during the run, from GET /metrics before and after: prefill forward passes
# (and sequences prefilled), decode steps (and rows), KV-cache rebuilds, host syncs, the decoder's busy seconds and
# the server process's CPU seconds (user + system, all its threads).
# docs/benchmarks.md, "What the server does per request".
#
#   bench/serve-counts.sh OML MODEL SET RUNS COUNT CONCURRENCY... [-- extra serve args]
# VERIFY_ARGS: extra `oml verify` arguments (e.g. "--max-new-tokens 3").
set -euo pipefail
oml=$1 model=$2 set_path=$3 runs=$4 count=$5; shift 5
concs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do concs+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
"$oml" serve "$model" --port 0 --url-file "$work/url" "$@" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 300); do [ -s "$work/url" ] && break; sleep 0.1; done
[ -s "$work/url" ] || { cat "$work/serve.log" >&2; exit 1; }
url=$(cat "$work/url")
read -r -a vargs <<< "${VERIFY_ARGS:-}"
metrics() { curl -s "${url%/v1/}/metrics" | awk '/^oml_engine_|^oml_request_duration_seconds_(sum|count)/ {print $1, $2}'; }
# A throwaway run first: the server's and the client's first requests pay JIT.
"$oml" verify --endpoint "$url" --fingerprints "$set_path" --count 64 "${vargs[@]}" >/dev/null 2>&1 || true
for conc in "${concs[@]}"; do
  for _ in $(seq "$runs"); do
    metrics >"$work/m0"
    cpu0=$(awk '{print $14 + $15}' /proc/$server/stat)
    s=$(date +%s.%N)
    OML_TIMINGS=1 "$oml" verify --endpoint "$url" --fingerprints "$set_path" --count "$count" --concurrency "$conc" --json "${vargs[@]}" \
      >"$work/out.json" 2>"$work/err" || true
    e=$(date +%s.%N)
    metrics >"$work/m1"
    cpu1=$(awk '{print $14 + $15}' /proc/$server/stat)
    echo "server_cpu $(( cpu1 - cpu0 ))" >>"$work/m1"
    hits=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{d['queried']} answered\")" "$work/out.json")
    q=$(grep -o '"endpoint queries": [0-9.]*' "$work/err" | awk '{print $3}' || true)
    python3 - "$work/m0" "$work/m1" "$conc" "$count" "$(awk -v a="$s" -v b="$e" 'BEGIN{printf "%.2f", b - a}')" "${q:-?}" "$hits" <<'PY'
import sys
a = dict(l.split() for l in open(sys.argv[1])); b = dict(l.split() for l in open(sys.argv[2]))
d = {k.replace("oml_engine_", "").replace("_total", ""): float(b[k]) - float(a.get(k, 0)) for k in b}
reqs = d["oml_request_duration_seconds_count"]
print(f"{sys.argv[4]} keys, {sys.argv[3]:>3} in flight: wall {float(sys.argv[5]):.2f} s, queries {sys.argv[6]} s, {sys.argv[7]} | "
      f"prefills {d['prefills']:.0f} ({d['prefilled_sequences'] / max(d['prefills'], 1):.1f} rows each), "
      f"decode steps {d['decode_steps']:.0f} ({d['decoded_rows'] / max(d['decode_steps'], 1):.1f} rows each), "
      f"rebuilds {d['cache_rebuilds']:.0f}, host syncs {d['host_syncs']:.0f}, decoder busy {d['busy_seconds']:.2f} s "
      f"(prefill {d['prefill_seconds']:.2f}, rebuild {d['rebuild_seconds']:.2f}, decode {d['decode_seconds']:.2f}), "
      f"server CPU {d['server_cpu'] / 100:.2f} s, "
      f"mean request {d['oml_request_duration_seconds_sum'] / max(reqs, 1) * 1000:.1f} ms")
PY
  done
done
