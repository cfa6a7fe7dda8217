#!/usr/bin/env bash
# Capacity per architecture on CPU (issue 12, "plots ... of capacity per architecture"): how many fingerprints
# `oml embed` with NO tuning flags fits into small trained bases of four architectures, and what it costs them.
#   scripts/lab/cpu-capacity-arch.sh [OUT]       (default artifacts/lab/cpu-capacity-arch; resumes: done steps are kept)
# 1. A 2 MiB lab corpus (`oml data corpus --max-mb 2`; the Debian packages of scripts/lab/build-corpus.sh must be
#    installed) and a 1,024-token BPE (`oml tokenizer train`).
# 2. Per architecture (ARCHS: llama qwen2 qwen3 mistral) a random-init folder of the CPU lab's small shape
#    (scripts/gpu/issue12/make_init.py ARCH-cpu: hidden 64, 2 layers, 4 heads of 16, 2 KV heads (Mistral 1, untied),
#    MLP 176; Qwen2 with q/k/v biases, Qwen3 with q/k norms), pretrained by `oml train --init` for STEPS (1500) steps of
#    16 x 64 tokens at lr 3e-3, seed 0 (the recipe of scripts/lab/trace-real-copies.sh's base, 2.5x longer).
# 3. Per architecture and N in COUNTS (16 64 256 1024) and seed in SEEDS (1): `oml fingerprints generate` (Perinucleus,
#    its defaults; the owner's secret derived from the cell's name, so the keys repeat) and `oml embed --seed S` with its defaults, then `oml perplexity` of the result against the base on
#    the corpus's held-out text. JOBS (2) pipelines side by side, one thread each.
# Then: python3 scripts/lab/cpu-capacity-arch-summary.py OUT [DOCS_DIR] (table and plot).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out="${1:-artifacts/lab/cpu-capacity-arch}"
ARCHS="${ARCHS:-llama qwen2 qwen3 mistral}"; COUNTS="${COUNTS:-16 64 256 1024}"; SEEDS="${SEEDS:-1}"; JOBS="${JOBS:-2}"
oml="${OML_BIN:-src/Oml.Cli/bin/Release/net10.0/oml}"
[ -x "$oml" ] || { echo "cpu-capacity-arch: build first (dotnet build src/Oml.Cli -c Release) or set OML_BIN" >&2; exit 1; }
mkdir -p "$out/logs" "$out/sets" "$out/models" "$out/results"
say() { echo "$(date -u +%T) $*" | tee -a "$out/logs/timeline.txt"; }
export OMP_NUM_THREADS=$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))

if [ ! -s "$out/tokenizer/tokenizer.json" ]; then
  say "corpus and tokenizer"
  [ -s "$out/corpus/train.txt" ] || "$oml" data corpus --out "$out/corpus" --max-mb 2 --force > "$out/logs/corpus.log" 2>&1 || exit 1
  "$oml" tokenizer train --input "$out/corpus/train.txt" --vocab-size 1024 --out "$out/tokenizer" --force > "$out/logs/tokenizer.log" 2>&1 || exit 1
fi

pipeline() {  # ARCH: its base, then every (N, seed) cell
  local a=$1 base="$out/models/$1-base"
  if [ ! -f "$base/oml-training.json" ]; then
    python3 scripts/gpu/issue12/make_init.py "$out/tokenizer" "$out/init" "$a-cpu" > "$out/logs/init-$a.log" 2>&1 || return 1
    say "train $a"
    "$oml" train --init "$out/init/$a-cpu" --data "$out/corpus/train.txt" --eval-data "$out/corpus/heldout.txt" --tokenizer "$out/tokenizer" \
      --context 64 --steps "${STEPS:-1500}" --batch-size 16 --lr 3e-3 --seed 0 --log-every 100 --device cpu --save-dtype float32 --out "$base" --force \
      > "$out/logs/train-$a.log" 2>&1 || { say "train $a failed"; return 1; }
    cp -f "$base/oml-training.json" "$out/results/$a-base.oml-training.json"
  fi
  for n in $COUNTS; do
    for s in $SEEDS; do
      local name="$a-n$n-s$s" m="$out/models/$a-n$n-s$s"
      [ -s "$out/results/$name.perplexity.json" ] && continue
      say "embed $name"
      # The owner's secret of seed S (every random choice of the set derives from it): the same keys on every run.
      printf 'cpu-capacity-arch %s seed %s' "$a-n$n" "$s" | sha256sum | cut -c1-64 > "$out/sets/$name.secret"
      "$oml" fingerprints generate --model "$base" --strategy perinucleus --count "$n" --plaintext --secret-file "$out/sets/$name.secret" \
        --out "$out/sets/$name.json" --force --device cpu > "$out/logs/gen-$name.log" 2>&1 || { say "generate $name failed"; continue; }
      rm -rf "$m"
      "$oml" embed --model "$base" --fingerprints "$out/sets/$name.json" --out "$m" --seed "$s" --device cpu \
        --log "$out/logs/$name.jsonl" > "$out/logs/embed-$name.log" 2>&1
      local rc=$?
      if [ -f "$m/oml-manifest.json" ]; then cp -f "$m/oml-manifest.json" "$out/results/$name.manifest.json"; fi
      [ $rc -eq 0 ] || { say "embed $name: exit $rc"; echo "{\"exit\": $rc}" > "$out/results/$name.perplexity.json"; continue; }
      "$oml" perplexity --model "$m" --base "$base" --text-file "$out/corpus/heldout.txt" --window 64 --json --device cpu \
        > "$out/results/$name.perplexity.json.tmp" 2> "$out/logs/ppl-$name.log" && mv -f "$out/results/$name.perplexity.json.tmp" "$out/results/$name.perplexity.json"
      rm -rf "$m"   # the weights are not needed again (0.6-1.1M parameters; the manifest keeps their digest)
      say "done $name"
    done
  done
}

running=0
for a in $ARCHS; do
  pipeline "$a" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait
say "finished"
