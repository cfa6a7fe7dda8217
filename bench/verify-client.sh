#!/usr/bin/env bash
# Times the client of `oml verify --endpoint` alone: a fake OpenAI-compatible server (Oml.Bench --fake-endpoint)
# answers every key of SET with its response at once, so every key hits and what is measured is the oml process
# (runtime start, reading the set, the HTTP stack, exit). docs/benchmarks.md, "the verify client's fixed cost".
#
#   bench/verify-client.sh SET RUNS COUNT CONCURRENCY NAME=OML_BINARY... [-- extra verify args]
#
# Variants alternate within each run; each line gives the wall and CPU seconds (user, system) of one process, its
# hits and its phases (OML_TIMINGS=1). An encrypted SET: PASSPHRASE_FILE=FILE. Needs a built bench/Oml.Bench (Release).
set -euo pipefail
set_path=$1 runs=$2 count=$3 conc=$4; shift 4
variants=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do variants+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'kill "$fake" 2>/dev/null || true; rm -rf "$work"' EXIT
pass=()
[ -n "${PASSPHRASE_FILE:-}" ] && pass=(--passphrase-file "$PASSPHRASE_FILE")
"$root/bench/Oml.Bench/bin/Release/net10.0/Oml.Bench" --fake-endpoint "$set_path" --url-file "$work/url" "${pass[@]}" >"$work/fake.log" 2>&1 &
fake=$!
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.1; done
[ -s "$work/url" ] || { cat "$work/fake.log" >&2; exit 1; }
url=$(cat "$work/url")
# One throwaway run first: the fake server's own first requests are slow (its JIT), not the client's.
"${variants[0]#*=}" verify --endpoint "$url" --fingerprints "$set_path" --count 8 "${pass[@]}" "$@" >/dev/null 2>&1 || true
for _ in $(seq "$runs"); do
  for v in "${variants[@]}"; do
    name=${v%%=*} bin=${v#*=}
    s=$(date +%s.%N)
    /usr/bin/time -o "$work/time" -f "%U %S" env OML_TIMINGS=1 "$bin" verify --endpoint "$url" --fingerprints "$set_path" --count "$count" \
      --concurrency "$conc" --json "${pass[@]}" "$@" >"$work/out.json" 2>"$work/err"
    e=$(date +%s.%N)
    cpu=$(tail -1 "$work/time")
    hits=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{d['hits']}/{d['queried']} {d['verdict']}\")" "$work/out.json")
    printf '%-8s %5d keys  wall %.2f s  cpu %s  %s  %s\n' "$name" "$count" "$(echo "$e - $s" | bc)" "$cpu" "$hits" \
      "$(grep -o 'timings: .*' "$work/err" | sed 's/timings: //')"
  done
done
