#!/usr/bin/env bash
# Issue 14's open question on one GPU, in one call: why the one-token pass (BatchEngine.PrefillOnly) measured 40-90 ms a
# pass on an H100 against ~10 ms for the same rows through the batch (docs/benchmarks.md, "One-token answers").
#   1. bench/gpu/sdpa_shapes.py: what a new batch shape's first SDPA call costs per backend (cuDNN builds a plan per shape).
#   2. scripts/gpu/serve-ab.sh three times, A = PACK_A with --max-new-tokens 3 (the fast path measured before),
#      B = PACK_B with its defaults, counted both; the environment of both servers:
#        default    - the shim keeps inference off cuDNN's attention; B's one-token requests join the batch (CUDA default)
#        onepass    - OML_ONE_TOKEN_PASS=1: B answers them in a pass of its own (the path measured slow)
#        onepass-cudnn - and OML_SDPA_CUDNN=1: libtorch's own SDPA dispatch, as in the slow measurement
#   ARGS_A / ARGS_B (environment): each side's `oml verify` arguments instead (default A "--max-new-tokens 3", B none);
#   RUNS: which of the runs, in order (default "default onepass onepass-cudnn"); SHAPES=0 skips step 1.
# From the repository root: scripts/gpu/serve-onetoken.sh OUT STAGE PACK_A PACK_B [ROUNDS]
# Writes OUT/sdpa-shapes.txt and OUT/{default,onepass,onepass-cudnn}.log (the servers' own logs stay in /tmp). One round
# of the three runs takes about 4-5 minutes on an H100 (each serve-ab round: two servers, two counted servers).
set -uo pipefail
out=$1 stage=$2 packA=$3 packB=$4 rounds=${5:-1}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; repo="$(cd "$here/../.." && pwd)"
mkdir -p "$out"
# The shim is built once for the three runs, from this STAGE's sources (a warm machine may hold one built from older ones).
export SERVE_AB_WORK=${SERVE_AB_WORK:-/tmp/serve-onetoken-work}
[ "${REBUILD_SHIM:-1}" = 0 ] || rm -f "$SERVE_AB_WORK/native/liboml_torch.so"   # REBUILD_SHIM=0: a later call on the same machine
if [ "${SHAPES:-1}" != 0 ]; then
  timeout 120 python3 "$repo/bench/gpu/sdpa_shapes.py" --shapes 12 > "$out/sdpa-shapes.txt" 2>&1
  cat "$out/sdpa-shapes.txt"
fi
run() {  # NAME ENV...
  local name=$1; shift
  rm -rf "/tmp/serve-onetoken-$name"   # serve-ab.sh appends to its log
  env "$@" VERIFY_ARGS_A="${ARGS_A---max-new-tokens 3}" VERIFY_ARGS_B="${ARGS_B-}" COUNTS="A B" "$here/serve-ab.sh" "/tmp/serve-onetoken-$name" "$stage" "$packA" "$packB" "$rounds" > /dev/null 2>&1
  cp "/tmp/serve-onetoken-$name/serve-ab.log" "$out/$name.log"
  echo "== $name ($*)"; grep "whole client\|counts" "$out/$name.log"
}
for r in ${RUNS:-default onepass onepass-cudnn}; do
  case $r in
    default) run default OML_ONE_TOKEN_PASS= ;;
    onepass) run onepass OML_ONE_TOKEN_PASS=1 ;;
    onepass-cudnn) run onepass-cudnn OML_ONE_TOKEN_PASS=1 OML_SDPA_CUDNN=1 ;;
    default-cudnn) run default-cudnn OML_ONE_TOKEN_PASS= OML_SDPA_CUDNN=1 ;;
    *) echo "serve-onetoken: unknown run '$r'" >&2 ;;
  esac
done
