#!/usr/bin/env bash
# Device call 2 (and 3) of issue 12, on a warm machine after train.sh: from the repository root on the GPU machine,
#   bash .gpu/issue12/experiments.sh SECONDS
# Runs, side by side on the one GPU until SECONDS have passed (a rerun resumes from the saved cells):
#  - the unrelated fine-tune base-100m-sft (oml attack sft: 1 epoch of the lab instructions at 3e-5), needed by the
#    merge attacks; then lab/experiments/persistence-100m.yaml (harmless point, 3 seeds) with 4 workers;
#  - 1,024 fingerprints embedded by `oml embed` with no tuning flags (embed-cli-100m); then
#    lab/experiments/frontier-100m.yaml (frontier points, 1 seed) with 4 workers.
# Reports, cells and logs go to $OUT; the models stay on the device.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
budget="${1:-500}"
out="${OUT:?}"
cd "$W"
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) - 25 )); }
M=artifacts/lab/models
(
  if [ ! -f $M/base-100m-sft/config.json ]; then
    oml attack sft --model $M/base-100m --data artifacts/lab/instructions/instructions-train.json --out $M/base-100m-sft \
      --epochs 1 --lr 3e-5 --batch-size 32 --seed 5 --device cuda > "$out/base-100m-sft.txt" 2>&1
  fi
  oml lab run lab/experiments/persistence-100m.yaml --workers 4 --time-limit "$(left)" > "$out/persistence-100m.log" 2>&1
) &
a=$!
(
  if [ ! -f $M/embed-cli-100m/fingerprints.json ]; then
    oml fingerprints generate --model $M/base-100m --strategy perinucleus --count 1024 --plaintext --out /tmp/set-cli.json --force > "$out/generate-cli.txt" 2>&1
    rm -rf $M/embed-cli-100m   # `oml embed` has no --force (passing it failed the first session's call at once)
    oml embed --model $M/base-100m --fingerprints /tmp/set-cli.json --out $M/embed-cli-100m --log "$out/embed-cli.jsonl" --memory-budget-gb 24 > /tmp/embed-cli.txt 2>&1
    tr '\r' '\n' < /tmp/embed-cli.txt | grep -v '^\s*$' | tail -40 > "$out/embed-cli.txt"
    cp /tmp/set-cli.json $M/embed-cli-100m/fingerprints.json
    oml perplexity --model $M/embed-cli-100m --base $M/base-100m --text-file artifacts/lab/corpus/heldout.txt > "$out/perplexity-cli.txt" 2>&1 || true
  fi
  oml lab run lab/experiments/frontier-100m.yaml --workers 4 --time-limit "$(left)" > "$out/frontier-100m.log" 2>&1
) &
b=$!
wait $a $b || true
for e in persistence-100m frontier-100m; do
  d=artifacts/lab/results/$e
  [ -d $d ] || continue
  oml lab report $d > /dev/null 2>&1 || true
  tar -C artifacts/lab/results -cf "$out/$e.tar" --exclude=models $e
done
tail -3 "$out"/*.log
echo "experiments.sh done in $(( $(date +%s) - start )) s"
