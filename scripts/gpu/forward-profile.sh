#!/usr/bin/env bash
# Where our no-grad forward pass spends its time on one GPU, against transformers in the same run on the same machine:
# `Oml.Bench --forward-profile` (bench/Oml.Bench/ForwardProfileBench.cs) on the random-init Llama-1b model
# (bench/gpu/fingerprint_bench.py --make-model 1b) in bfloat16: prefill (as verify --model, and as the serving engine
# does it), one engine decode step, SDPA's inputs (mask, RepeatInterleave) and, with the breakdown, each layer piece
# timed with a sync after it; then bench/gpu/forward_peer.py (transformers, sdpa) on the same shapes, for the table's
# peer column. The bench comes packed: scripts/gpu/pack-lab.sh --app-only --bench makes artifacts/gpu/oml-bench.tar.xz.
# From the repository root:
#   scripts/gpu/forward-profile.sh OUT STAGE BENCH_PACK [extra Oml.Bench options, e.g. --shapes 1024x16,160x16 --runs 20]
# (STAGE: a folder staged by bench-fingerprints.sh: native/, tokenizer/). Writes OUT/forward-profile.{md,json,log}.
# Defaults: --shapes 64x16,128x16,160x16,256x16,1024x16 --runs 10 --warmup 3 --breakdown --peer; later options win.
set -uo pipefail
out=$1 stage=$2 pack=$3; shift 3
W=${FORWARD_PROFILE_WORK:-/tmp/forward-profile}; repo=$(pwd)
mkdir -p "$W" "$out"
log() { echo "[$(date -u +%T)] $*" | tee -a "$out/forward-profile.log"; }
torch_dir="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" DOTNET_CLI_TELEMETRY_OPTOUT=1
[ -f "$W/native/liboml_torch.so" ] || "$stage/native/build.sh" "$W/native" >> "$out/forward-profile.log" 2>&1 || { log "shim build failed"; exit 1; }
d="$W/bench-$(sha256sum "$pack" | cut -c1-12)"
[ -x "$d/bench-app/Oml.Bench" ] || { mkdir -p "$d" && tar -C "$d" -xJf "$pack"; }
cp -f "$W/native/liboml_torch.so" "$d/bench-app/liboml_torch.so"
bench="$d/bench-app/Oml.Bench"
model=$(python3 "$repo/bench/gpu/fingerprint_bench.py" --tokenizer "$stage/tokenizer" --work "$W/data" --out "$W/data" --make-model 1b | tail -1)
log "bench $pack; model $model; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
"$bench" --forward-profile "$model" --device cuda --dtype bfloat16 --shapes 64x16,128x16,160x16,256x16,1024x16 --runs 10 --warmup 3 \
  --breakdown --peer --python python3 --peer-script "$repo/bench/gpu/forward_peer.py" "$@" \
  --json-out "$out/forward-profile.json" --markdown "$out/forward-profile.md" 2>> "$out/forward-profile.log" | tee -a "$out/forward-profile.log"
rc=${PIPESTATUS[0]}
log "done (rc $rc)"
exit "$rc"
