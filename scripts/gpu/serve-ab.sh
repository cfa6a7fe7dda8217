#!/usr/bin/env bash
# A/B of `oml serve` answering `oml verify --endpoint` on one GPU, in one run on one machine: two packed programs
# (oml-lab.tar.xz of scripts/gpu/pack-lab.sh, e.g. main before and after a serving change), one random-init Llama-1b
# model (bench/gpu/fingerprint_bench.py --make-model 1b) and 1,024 random-word keys of 16 tokens (1-token responses).
# For each ROUND, each program in turn: `oml serve --device cuda --dtype bfloat16 --max-num-seqs 256`, a warm-up
# verify of 64 keys, then `oml verify --endpoint --count 1024` at 64 and 256 in flight, wall seconds of the whole client
# process; with a program whose server has engine counters, also bench/serve-counts.sh's line (prefills, decode steps,
# rebuilds, host syncs, the decoder's busy time) for program COUNTS (default B). From the repository root:
#   scripts/gpu/serve-ab.sh OUT STAGE PACK_A PACK_B [ROUNDS]   (STAGE: a folder staged by bench-fingerprints.sh: native/,
#   tokenizer/; ROUNDS 0 only prepares: the shim, the programs, the model and the set, kept in SERVE_AB_WORK)
# VERIFY_ARGS_A / VERIFY_ARGS_B: extra `oml verify` arguments for that side (e.g. one pack against itself with
# VERIFY_ARGS_A="--max-new-tokens 3", the tokens the client asked before it asked greedy answers for exactly the
# response's); COUNTS="A B" counts both sides (each with its own arguments).
set -uo pipefail
out=$1 stage=$2 packA=$3 packB=$4 rounds=${5:-2}
W=${SERVE_AB_WORK:-/tmp/serve-ab}; repo=$(pwd)
mkdir -p "$W" "$out"
log() { echo "[$(date -u +%T)] $*" | tee -a "$out/serve-ab.log"; }
torch_dir="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" DOTNET_CLI_TELEMETRY_OPTOUT=1 OML_PASSPHRASE="benchmark passphrase"
[ -f "$W/native/liboml_torch.so" ] || "$stage/native/build.sh" "$W/native" >> "$out/serve-ab.log" 2>&1 || { log "shim build failed"; exit 1; }
declare -A app
for x in A B; do
  pack=$packA; [ $x = B ] && pack=$packB
  d="$W/app-$(sha256sum "$pack" | cut -c1-12)"   # one folder per pack: a later call may bring another B
  [ -x "$d/lab-app/oml" ] || { mkdir -p "$d" && tar -C "$d" -xJf "$pack"; }
  cp -f "$W/native/liboml_torch.so" "$d/lab-app/liboml_torch.so"
  app[$x]="$d/lab-app/oml"
  log "$x: $pack, $("${app[$x]}" --version 2>&1 | head -1)"
done
model=$(python3 "$repo/bench/gpu/fingerprint_bench.py" --tokenizer "$stage/tokenizer" --work "$W/data" --out "$W/data" --make-model 1b | tail -1)
set_path="$W/data/set-1b-1024.json"
[ -f "$set_path" ] || "${app[A]}" fingerprints generate --model "$model" --count 1024 --strategy random-word --random-word-keys \
  --key-length 16 --response-length 1 --plaintext --out "$set_path" --dtype bfloat16 >> "$out/serve-ab.log" 2>&1 || { log "generate failed"; exit 1; }
serve_args=(--device cuda --dtype bfloat16 --max-num-seqs 256)
for r in $(seq "$rounds"); do
  for x in A B; do
    oml="${app[$x]}"
    rm -f "$W/url"; "$oml" serve "$model" --port 0 --url-file "$W/url" "${serve_args[@]}" > "$out/serve-$x-$r.log" 2>&1 &
    srv=$!
    for _ in $(seq 1800); do [ -s "$W/url" ] && break; sleep 0.1; done
    url=$(cat "$W/url" 2>/dev/null) || { log "$x: oml serve did not come up"; kill $srv; continue; }
    vargs_name="VERIFY_ARGS_$x"; read -r -a vargs <<< "${!vargs_name:-}"
    "$oml" verify --endpoint "$url" --fingerprints "$set_path" --count 64 --concurrency 64 "${vargs[@]}" > /dev/null 2>&1
    for conc in 64 256; do
      s=$(date +%s.%N)
      OML_TIMINGS=1 "$oml" verify --endpoint "$url" --fingerprints "$set_path" --count 1024 --concurrency $conc --json "${vargs[@]}" > "$W/v.json" 2> "$W/v.err"
      rc=$?; e=$(date +%s.%N)
      q=$(grep -o '"endpoint queries": [0-9.]*' "$W/v.err" | awk '{print $3}')
      log "$x round $r: 1024 keys, $conc in flight: $(awk -v a="$s" -v b="$e" 'BEGIN{printf "%.2f", b - a}') s whole client (rc $rc, endpoint queries ${q:-?} s)"
    done
    kill $srv; wait $srv 2>/dev/null
    if [[ " ${COUNTS:-B} " == *" $x "* ]]; then   # programs whose servers export the engine's counters (GET /metrics oml_engine_*)
      VERIFY_ARGS="${!vargs_name:-}" bash "$repo/bench/serve-counts.sh" "$oml" "$model" "$set_path" 1 1024 64 256 -- "${serve_args[@]}" 2>&1 | sed "s/^/$x round $r counts: /" | tee -a "$out/serve-ab.log"
    fi
  done
done
log "done"
