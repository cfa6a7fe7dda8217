#!/usr/bin/env bash
# Leak tracing on real fingerprinted copies (issue 13, item 3), end to end through the product's own commands:
#   1. a protocol ledger; the owner registers the base model and generates its fingerprint pool (M Perinucleus keys);
#   2. N hosts license it and `oml owner deliver --allocation tardos:CUTOFF --base BASE --out ...` fingerprints each
#      host's copy with the keys its Tardos codeword allocates (the owner's delivery path, OmlizationDefaults);
#   3. the first K copies are attacked: SFT on instruction data, a linear merge with the base, int4 quantization
#      (`oml attack sft|merge|quantize`), and top-1 first-token suppression as the serving responder;
#   4. `oml prover trace --copy DIR --responder SPEC` asks every copy (attacked or not), and coalitions of 2-4 copies
#      answering by majority, minority, interleaving or refusal on disagreement, all M pool keys, and accuses with the
#      protocol's LeakTracer / TardosAccuser;
#   5. scripts/lab/trace-real-copies.py measures each attack's per-key survival and false hits on the real copies and
#      feeds them into `oml trace simulate` at 1,000 hosts (Tardos and the random baseline at the paper's p = 0.243).
# Every step is skipped when its output exists, so a killed run resumes; delete a file to redo its step.
#
#   scripts/lab/trace-real-copies.sh [--out DIR] [--base DIR] [--sft-data FILE] [--pool M] [--copies N] [--attacked K]
#       [--device cpu|cuda] [--sft-samples S] [--sft-lr LR] [--coalitions PER_SIZE] [--trials T] [--keys perinucleus|random-word]
#       [--sft-strong SAMPLES@LR]   (a second, stronger SFT attack, "sft-strong", on the attacked copies)
#       [--sft-extra "OPTIONS"]   (more `oml attack sft` options for the SFT attack, e.g. "--epochs 2 --batch-size 32")
#       [--coalition-copies "none sft merge int4"]   (which versions of the copies form coalitions; default "none sft")
#       [--attacks "sft merge int4"]   (which attacks the first K copies get; default all three: a run about merged
#                        copies alone need not pay for K SFT runs)
#       [--jobs J]       (attacks and traces J at a time, beside the deliveries: they neither write the ledger nor share
#                        outputs; deliveries, which sign the owner's transactions in turn, stay one at a time)
#       [--no-analysis]  (stop after the traces; run scripts/lab/trace-real-copies.py on the folder later, e.g. elsewhere)
#
# Defaults are the CPU scale: a small base trained here (below), Perinucleus keys, M = 128, N = 16, K = 16. On a
# shared CPU, OMP_NUM_THREADS=1 (set below for --device cpu unless given) was 30x faster than libtorch's default.
# The GPU scale (the lab's 102.7M base):
#   scripts/lab/trace-real-copies.sh --out artifacts/lab/results/tracing-real-100m --base artifacts/lab/models/base-100m \
#       --sft-data artifacts/lab/instructions/instructions-train.json --pool 1024 --copies 16 --device cuda
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD

out=artifacts/lab/results/tracing-real
base=""
sft_data=""
pool_size=128
copies=16
attacked=""
device=cpu
sft_samples=1000
sft_lr=1e-4
per_size=2
keys=""
sft_strong=""
trials=100
sft_extra=""
coalition_copies="none sft"
attacks="sft merge int4"
jobs=1
analysis=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --sft-data) sft_data=$2; shift 2 ;;
    --pool) pool_size=$2; shift 2 ;;
    --copies) copies=$2; shift 2 ;;
    --attacked) attacked=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --sft-samples) sft_samples=$2; shift 2 ;;
    --sft-lr) sft_lr=$2; shift 2 ;;
    --coalitions) per_size=$2; shift 2 ;;
    --trials) trials=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --sft-strong) sft_strong=$2; shift 2 ;;
    --sft-extra) sft_extra=$2; shift 2 ;;
    --coalition-copies) coalition_copies=$2; shift 2 ;;
    --attacks) attacks=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --no-analysis) analysis=0; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "trace-real-copies: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
attacked=${attacked:-$copies}
for a in $attacks; do
  case "$a" in sft|merge|int4) ;; *) echo "trace-real-copies: --attacks: unknown attack '$a' (sft, merge, int4)" >&2; exit 2 ;; esac
done
has_attack() { case " $attacks " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
for v in $coalition_copies; do
  case "$v" in
    none) ;;
    sft|merge|int4) has_attack "$v" || { echo "trace-real-copies: --coalition-copies has '$v', which --attacks leaves out" >&2; exit 2; } ;;
    *) echo "trace-real-copies: --coalition-copies: unknown version '$v' (none, sft, merge, int4)" >&2; exit 2 ;;
  esac
done
[ "$device" = cpu ] && export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ "$copies" -ge 4 ] || { echo "trace-real-copies: --copies must be at least 4 (coalitions of up to 4)" >&2; exit 2; }
[ "$attacked" -le "$copies" ] || { echo "trace-real-copies: --attacked must be at most --copies" >&2; exit 2; }
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "trace-real-copies: --jobs must be a positive integer, not '$jobs'" >&2; exit 2; }

# OML_BIN=path/to/oml skips the (incremental) build.
oml=(dotnet run --project src/Oml.Cli -c Release --)
if [ -n "${OML_BIN:-}" ]; then
  oml=("$OML_BIN")
elif [ -x src/Oml.Cli/bin/Release/net10.0/oml ]; then
  if ! build=$(dotnet build src/Oml.Cli -c Release -nologo -v q 2>&1); then
    echo "$build" | tail -20 >&2; echo "trace-real-copies: the build failed" >&2; exit 1
  fi
  oml=("$root/src/Oml.Cli/bin/Release/net10.0/oml")
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
log="$out/run.log"
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$log" >&2; }
# Runs a command whose JSON goes to FILE, unless FILE exists (atomically: written under a temporary name first).
step() {
  local file=$1; shift
  [ -s "$file" ] && return 0
  "$@" > "$file.tmp" 2>> "$log" || { echo "trace-real-copies: failed: $* (see $log)" >&2; rm -f "$file.tmp"; exit 1; }
  mv "$file.tmp" "$file"
}

# With --jobs J > 1, `par CMD...` runs CMD in the background, at most J at a time, and `drain` waits for all of them and
# stops the run if any failed (a failed step has already said what failed; its output file was not written).
failed="$out/.parallel-failed"
rm -f "$failed"
par() {
  if [ "$jobs" -le 1 ]; then "$@"; return; fi
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  ( "$@" ) || touch "$failed" &
}
drain() {
  wait
  [ ! -e "$failed" ] || { rm -f "$failed"; echo "trace-real-copies: a parallel step failed (see $log)" >&2; exit 1; }
}
# However the run ends (a failed step exits at once), its background steps end with it: left running, they raced a
# rerun's same steps for the same files (2026-12-07: a retry's steps found their temporary files moved away).
stop_jobs() {
  local p
  # (|| true: under set -e a job already gone, which pkill and kill report, must not turn a finished run into a failure)
  for p in $(jobs -p); do pkill -TERM -P "$p" 2>/dev/null || true; kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null
  return 0
}
trap stop_jobs EXIT

say "settings: out=$out pool=$pool_size copies=$copies attacked=$attacked device=$device sft=$sft_samples@$sft_lr${sft_extra:+ ($sft_extra)} sft-strong=${sft_strong:-none} jobs=$jobs"

# 1. The SFT data and the base model. Without --sft-data: a 2 MiB lab corpus (`oml data corpus`, from the Debian
# packages scripts/lab/build-corpus.sh installs) and 4,000 instructions made from it. Without --base: a small lab base
# trained on that corpus (a 1,024-token BPE, Llama 64 wide, 2 layers, 600 steps of 16 x 64 tokens; about 4 minutes on
# one CPU core). --base fixture: the llama-tiny test fixture (random init) with the tests' byte-level tokenizer and
# random-word keys.
if [ -z "$sft_data" ]; then
  sft_data="$out/data/instructions/instructions-train.json"
  if [ ! -s "$sft_data" ]; then
    say "building a 2 MiB corpus and instruction data (oml data corpus, oml data instructions) ..."
    [ -s "$out/data/corpus/train.txt" ] || "${oml[@]}" data corpus --out "$out/data/corpus" --max-mb 2 --force >> "$log" 2>&1
    "${oml[@]}" data instructions --corpus "$out/data/corpus" --out "$out/data/instructions" --count 4000 --force >> "$log" 2>&1
  fi
fi
if [ "$base" = fixture ]; then
  base="$out/base-fixture"
  keys=${keys:-random-word}
  if [ ! -f "$base/tokenizer.json" ]; then
    mkdir -p "$base"
    cp tests/Oml.Models.Tests/fixtures/models/llama-tiny/{config.json,generation_config.json,model.safetensors} "$base/"
    cp scripts/fixtures/tiny-tokenizer.json "$base/tokenizer.json"
  fi
elif [ -z "$base" ]; then
  base="$out/base"
  if [ ! -f "$base/tokenizer.json" ]; then
    [ -s "$out/data/corpus/train.txt" ] || "${oml[@]}" data corpus --out "$out/data/corpus" --max-mb 2 --force >> "$log" 2>&1
    say "training the small base (oml tokenizer train, oml train) ..."
    "${oml[@]}" tokenizer train --input "$out/data/corpus/train.txt" --vocab-size 1024 --out "$out/tokenizer" --force >> "$log" 2>&1
    "${oml[@]}" train --data "$out/data/corpus/train.txt" --eval-data "$out/data/corpus/heldout.txt" --tokenizer "$out/tokenizer" \
      --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 176 --context 64 --steps 600 --batch-size 16 --lr 3e-3 --seed 0 \
      --log-every 100 --device "$device" --out "$base" --force >> "$log" 2>&1
  fi
fi
keys=${keys:-perinucleus}
[ -f "$base/tokenizer.json" ] || { echo "trace-real-copies: $base has no tokenizer.json" >&2; exit 1; }

# 2. Ledger, accounts, the model and its pool.
pass="$out/pass.txt"
[ -s "$pass" ] || echo "trace-real-copies passphrase (lab only)" > "$pass"
ledger="$out/ledger.db"
ks() { echo "$out/keys/$1.json"; }
mkdir -p "$out/keys" "$out/json/deliver" "$out/json/trace"
addr() { cat "$out/keys/$1.addr"; }
account() {
  [ -s "$out/keys/$1.addr" ] && return 0
  "${oml[@]}" account new --keystore "$(ks "$1")" --passphrase-file "$pass" --kdf-iterations 1000 --force | tr 'A-F' 'a-f' | tr -d '[:space:]' > "$out/keys/$1.addr"
}
act() { local who=$1; shift; "${oml[@]}" "$@" --ledger "$ledger" --keystore "$(ks "$who")" --passphrase-file "$pass" --json; }
model_id=tracing
cutoff=0.000833   # Tardos' 1/(300c) for coalitions of up to c = 4, as `oml trace simulate` uses
if [ ! -s "$out/json/setup.json" ]; then
  say "ledger, owner and $copies host accounts ..."
  rm -f "$ledger" "$out"/keys/*
  account treasury; account owner
  act treasury protocol init > /dev/null
  act treasury owner mint --to "$(addr owner)" --amount 10000 > /dev/null
  act owner owner register --model-id $model_id --model "$base" --price 10 --min-collateral 1000 > /dev/null
  for ((j = 0; j < copies; j++)); do
    account "h$j"
    act treasury owner mint --to "$(addr "h$j")" --amount 10000 > /dev/null
    act "h$j" host apply --model-id $model_id --collateral 2000 --endpoint "http://127.0.0.1/h$j" > /dev/null
  done
  echo '{"model":"'$model_id'","hosts":'"$copies"'}' > "$out/json/setup.json"
fi
pool="$out/pool.omlfp"
key_options=(--strategy perinucleus)
[ "$keys" = random-word ] && key_options=(--strategy random-word --random-word-keys)
step "$out/json/pool.json" "${oml[@]}" fingerprints generate --model "$base" --count "$pool_size" --out "$pool" --passphrase-file "$pass" \
  --kdf-iterations 1000 --insecure-kdf --force --device "$device" "${key_options[@]}" --json

# 3-5. Each host's copy, fingerprinted with its allocated keys through the owner's delivery (one at a time); then, with
# --jobs J > 1 in the background while the next copies are delivered: the attacks on it (the first K copies: SFT, a
# merge with the base, int4) and its traces (the copy as delivered, under suppression, and each attacked version).
# The bound per host is 1e-3 / N, so that the chance of accusing any innocent host at all is at most 1e-3 (union bound).
bound=$(python3 -c "print(1e-3 / $copies)")
# Traces sign nothing (no --keystore: `prover trace` then files no accusation). With the owner's keystore each accused
# host was an owner-signed ledger action, and under --jobs those raced the next delivery for the owner's request nonce
# (BadNonce on the GPU, 2026-12-07); the accusations are not what the run measures.
trace() {   # NAME COPY RESPONDER
  step "$out/json/trace/$1.json" "${oml[@]}" prover trace --ledger "$ledger" --passphrase-file "$pass" --json --model-id $model_id --pool "$pool" \
    --copy "$2" --responder "$3" --device "$device" --bound "$bound"
}
mkdir -p "$out/copies" "$out/attacked/sft" "$out/attacked/merge" "$out/attacked/int4"
copy_work() {  # J: the attacks on copy J and its traces
  local j=$1 c="$out/copies/h$1"
  trace "none-h$j" "$c" greedy
  [ "$j" -lt "$attacked" ] || return 0
  local a
  for a in $attacks; do [ -s "$out/json/attack-$a-h$j.json" ] || { say "attacking h$j: $attacks ..."; break; }; done
  local extra=()
  read -r -a extra <<< "$sft_extra"
  if has_attack sft; then
    step "$out/json/attack-sft-h$j.json" "${oml[@]}" attack sft --model "$c" --data "$sft_data" --samples "$sft_samples" --lr "$sft_lr" "${extra[@]}" \
      --out "$out/attacked/sft/h$j" --force --device "$device" --json
  fi
  if has_attack merge; then
    step "$out/json/attack-merge-h$j.json" "${oml[@]}" attack merge --model "$c" --with "$base" --weight 0.5 \
      --out "$out/attacked/merge/h$j" --force --device "$device" --json
  fi
  if has_attack int4; then
    step "$out/json/attack-int4-h$j.json" "${oml[@]}" attack quantize --model "$c" --bits 4 --group-size 64 \
      --out "$out/attacked/int4/h$j" --force --device "$device" --json
  fi
  if [ -n "$sft_strong" ]; then
    step "$out/json/attack-sft-strong-h$j.json" "${oml[@]}" attack sft --model "$c" --data "$sft_data" --samples "${sft_strong%@*}" \
      --lr "${sft_strong#*@}" --out "$out/attacked/sft-strong/h$j" --force --device "$device" --json
  fi
  trace "suppress-h$j" "$c" "suppress:k=1,m=1"
  for a in $attacks; do trace "$a-h$j" "$out/attacked/$a/h$j" greedy; done
  [ -z "$sft_strong" ] || trace "sft-strong-h$j" "$out/attacked/sft-strong/h$j" greedy
  if has_attack sft; then trace "sft+suppress-h$j" "$out/attacked/sft/h$j" "suppress:k=1,m=1"; fi
}
for ((j = 0; j < copies; j++)); do
  if [ ! -s "$out/json/deliver/h$j.json" ]; then
    say "delivering copy h$j ..."
    rm -rf "$out/copies/h$j"
    step "$out/json/deliver/h$j.json" act owner owner deliver --model-id $model_id --host "$(addr "h$j")" --pool "$pool" \
      --allocation "tardos:$cutoff" --base "$base" --out "$out/copies/h$j" --device "$device"
  fi
  par copy_work "$j"
done
drain

# Coalitions: PER_SIZE disjoint groups of each size c = 2, 3, 4 taken in turn from the copies (wrapping around), of the
# plain copies and of their attacked versions (--coalition-copies: sft, merge, int4; where attacked), under each strategy.
say "coalitions ..."
next=0
declare -A scheduled   # a group met again (few copies wrap around to the same members) is traced once
for c in 2 3 4; do
  for ((g = 0; g < per_size; g++)); do
    members=()
    for ((k = 0; k < c; k++)); do members+=("$(( (next + k) % copies ))"); done
    next=$(( (next + c) % copies ))
    for variant in $coalition_copies; do
      dirs=()
      ok=1
      for m in "${members[@]}"; do
        if [ $variant = none ]; then dirs+=("$out/copies/h$m"); else
          [ "$m" -lt "$attacked" ] || ok=0
          dirs+=("$out/attacked/$variant/h$m")
        fi
      done
      [ $ok = 1 ] || continue
      list=$(IFS=,; echo "${dirs[*]}")
      name="h$(IFS=-; echo "${members[*]}")"
      [ -z "${scheduled[$variant-$name]:-}" ] || continue
      scheduled[$variant-$name]=1
      for rule in majority minority interleave refuse; do
        par trace "coalition-$variant-$rule-$name" "${dirs[0]}" "coalition:$rule:$list"
      done
    done
  done
done

drain

# 6. Survival, accusations, and the simulation at 1,000 hosts fed with the measured survival.
[ "$analysis" = 1 ] || { say "traces done (--no-analysis: run scripts/lab/trace-real-copies.py --out $out --oml OML later)"; exit 0; }
say "analysis ..."
python3 scripts/lab/trace-real-copies.py --out "$out" --oml "${oml[*]}" --trials "$trials" | tee -a "$log"
say "done: $out/summary.md"
