#!/usr/bin/env bash
# Issue 12 item 2: the lab's 102.7M Llama base (lab/recipes/base-100m.yaml) pretrained with `oml train` on up to TOKENS
# tokens (500M by default) of the larger corpus, within one device lease (about 26 minutes after this driver starts).
#  1. setup: the trimmed oml, the tokenizer and the previous corpus's held-out file (heldout-v1.txt: the eval rows of
#     the earlier 52.4M-token bases, so the perplexities compare), the shim built here with the fused CUDA kernels;
#  2. probe: 50 steps of the recipe with the fused kernels off and on (OML_FUSED_KERNELS=0/1): tokens/s of each and
#     their losses (the same seed and data: the two must agree within bf16 rounding, else the composite ops train);
#  3. the corpus: its parts (byte pieces of one xz stream) arrive with the calls (.gpu/g*/train.part*.txt.xz, copied
#     to $W/parts by call.sh), joined in order, decompressed and checked against the staged SHA-256;
#  4. train: the step count from the probe's rate and the time left (at most TOKENS / 65,536 steps, the cosine schedule
#     over exactly those), checkpoints every 1,000 steps, held-out loss every 500 on heldout-v1. With RUN1_S, in two
#     processes: the first stops itself after RUN1_S seconds (`--time-limit`: a checkpoint of its last step), and the
#     second, started when a later device call touches $W/go-2 (call.sh GO=2), resumes from that checkpoint;
#  5. perplexity of the result on the whole heldout-v1 (`oml perplexity`, window 256);
#  6. with RETURN=1, the model folder packed for the way back (ret.sh): one tar, split into byte planes (the bfloat16
#     weights' high bytes compress, the low bytes hardly), each xz-compressed, cut into 15 MiB pieces.
# PROBES=0 skips step 2 and takes RATE (tokens/s) and the fused kernels as measured in the eleventh session.
# Results (small files only) in $W/results and $W/logs; call.sh snapshots them.
set -uo pipefail
W="${W:-/tmp/w12g}"; REPO="${REPO:?}"; G="${G:-.gpu/g}"
DEV="${DEV:-cuda}"; TOKENS="${TOKENS:-500000000}"; LEASE_S="${LEASE_S:-1560}"; PROBE_STEPS="${PROBE_STEPS:-50}"
BASE_ARGS="${BASE_ARGS:-}"; ROWS_TOKENS="${ROWS_TOKENS:-65536}"
. "$W/bin/lib.sh"
SLOTS=1; session_start
session_setup "$REPO/$G" "$REPO/$G/prebuilt" "$REPO/$G/native" "$REPO/$G/recipes"
session_env
grep -h "fused CUDA kernels\|without the fused\|warning" "$L/shim.log" 2>/dev/null | tee "$R/shim.txt"
oml info > "$R/info.txt" 2>&1
B=base-500m
deadline=$(( T0 + LEASE_S ))

probe() {  # 0|1 -> results/probe-N.json
  local f=$1
  rm -rf /tmp/probe-ck-$f /tmp/probe-$f "$L/probe-$f.jsonl"   # a fresh run each time (a checkpoint would resume it)
  OML_FUSED_KERNELS=$f oml train --config lab/recipes/base-100m.yaml --data artifacts/lab/corpus/heldout-v1.txt --eval-data artifacts/lab/corpus/heldout-v1.txt \
    --device "$DEV" --steps "$PROBE_STEPS" --warmup 2 --log-every 10 --eval-every 0 --checkpoint-every 1000000 \
    --checkpoint-dir /tmp/probe-ck-$f --out /tmp/probe-$f --force --log "$L/probe-$f.jsonl" $BASE_ARGS || return 1
  python3 - "$L/probe-$f.jsonl" "$R/probe-$f.json" "$f" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if "tokens_per_second" in r]
# From the first report (after warm-up) to the one before the last, whose time includes the final evaluation.
a, b = rows[0], rows[-2] if len(rows) > 2 else rows[-1]
rate = (b["tokens"] - a["tokens"]) / max(1e-9, b["seconds"] - a["seconds"])
json.dump({"fused": sys.argv[3] == "1", "tokens_per_second": rate, "losses": {r["step"]: r["loss"] for r in rows}}, open(sys.argv[2], "w"), indent=1)
PY
}
if [ "${PROBES:-1}" = 0 ]; then
  # The eleventh session's probe on this recipe (docs/benchmarks.md); the kernels must have been built (shim.txt).
  mkdir -p "$R"; echo "{\"fused\": true, \"tokens_per_second\": ${RATE:-436784}, \"losses\": {}, \"measured\": false}" > "$R/probe-1.json"
  echo "{\"fused\": false, \"tokens_per_second\": 0, \"losses\": {}, \"measured\": false}" > "$R/probe-0.json"
else
  ok probe-0 || step probe-0 probe 0
  ok probe-1 || step probe-1 probe 1
fi
touch "$D/probes"
fused=$(python3 - "$R" <<'PY'
import json, sys, os
d = sys.argv[1]
try:
    a = json.load(open(os.path.join(d, "probe-0.json"))); b = json.load(open(os.path.join(d, "probe-1.json")))
except Exception:
    print(0); sys.exit()
la, lb = a["losses"], b["losses"]
agree = all(abs(la[k] - lb[k]) <= 0.05 + 0.01 * abs(la[k]) for k in la if k in lb)
print(1 if agree and b["tokens_per_second"] > a["tokens_per_second"] else 0)
PY
)
rate=$(python3 -c "import json; print(int(json.load(open('$R/probe-$fused.json'))['tokens_per_second']))" 2>/dev/null || echo 250000)
log "fused=$fused rate=$rate"

# The corpus: every part staged, in order, then the whole file's digest.
nparts=$(cat "$REPO/$G/corpus.parts")
want=$(cat "$REPO/$G/corpus.sha256")
if ! ok corpus; then
  log "waiting for $nparts corpus parts"
  while [ "$(ls parts/train.part*.txt.xz 2>/dev/null | wc -l)" -lt "$nparts" ]; do sleep 3; done
  log "assembling the corpus"
  # The parts are byte pieces of one xz stream (stage.sh), in name order.
  cat $(ls parts/train.part*.txt.xz | sort) | xz -dc > artifacts/lab/corpus/train.tmp
  got=$(sha256sum artifacts/lab/corpus/train.tmp | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then log "corpus digest $got != $want"; touch "$D/corpus.failed"; exit 1; fi
  mv artifacts/lab/corpus/train.tmp artifacts/lab/corpus/train.txt; touch "$D/corpus"; log "corpus ok ($(du -m artifacts/lab/corpus/train.txt | cut -f1) MB)"
fi

if [ ! -f plan ]; then
  left=$(( deadline - $(date +%s) - 150 ))   # tokenizing the corpus, the final evaluation, saving, the perplexity pass
  steps=$(( rate * left * 96 / 100 / ROWS_TOKENS ))
  cap=$(( (TOKENS + ROWS_TOKENS - 1) / ROWS_TOKENS ))
  [ "$steps" -gt "$cap" ] && steps=$cap
  echo "$fused $steps" > plan
  log "plan: $steps steps ($(( steps * ROWS_TOKENS / 1000000 ))M tokens) at $rate tok/s, fused kernels $fused, ${left}s left"
fi
read fused steps < plan
touch "$D/train-start"
CK=artifacts/lab/checkpoints/$B
train() {  # [--time-limit S]: the same command every time, so a later one resumes from the checkpoint
  env OML_FUSED_KERNELS=$fused oml train --config lab/recipes/base-100m.yaml --eval-data artifacts/lab/corpus/heldout-v1.txt \
    --device "$DEV" --steps "$steps" --checkpoint-dir "$CK" --checkpoint-every 1000 --eval-every 500 --out "$M/$B" --log "$L/$B.jsonl" $BASE_ARGS "$@"
}
if [ -n "${RUN1_S:-}" ] && ! ok train-1; then
  # Exit 75 (stopped at the time limit, a checkpoint of its last step) is this run's success: the second run resumes
  # from it. Exit 0: it finished within the limit, and there is nothing left for a second run.
  train1() { train --time-limit "$RUN1_S"; local c=$?; [ $c = 0 ] && touch "$D/train"; [ $c = 0 ] || [ $c = 75 ]; }
  if step train-1 train1 && ! ok train; then
    log "first run: $(grep -o 'stopped at the time limit.*' $L/train-1.log | head -1)"
    log "waiting for a device call to start the second run (go-2)"
    while [ ! -f go-2 ]; do sleep 1; done
  fi
fi
step train train
cp -f "$M/$B/oml-training.json" "$R/$B.oml-training.json" 2>/dev/null
cp -f "$M/$B/config.json" "$R/$B.config.json" 2>/dev/null
cp -f artifacts/lab/corpus/manifest.json "$R/corpus-manifest.json" 2>/dev/null
step perplexity bash -c "oml perplexity --model $M/$B --text-file artifacts/lab/corpus/heldout-v1.txt --window 256 --device $DEV --json > $R/perplexity-heldout-v1.json"

# 6. Time permitting (the base first): issue 12's four targets on this base for one key set, as the 100M sections
# measure them (scripts/gpu/issue12e/drive.sh): 1,024 Perinucleus keys, `oml embed` defaults, then the lab's
# utility (perplexity and cloze on heldout-v1), SFT 2 epochs at 3e-5, even merges with the base and its fine-tune.
extras() {
  local left=$(( deadline - $(date +%s) ))
  [ "$left" -gt "${EXTRAS_S:-420}" ] || { log "no time for the fingerprint cells ($left s left)"; return 0; }
  SLOTS=3
  persistence_config i12g "Issue 12 on the 500M-token base (scripts/gpu/issue12g/drive.sh)" \
"    - { weight: \"merge(with=../../$M/$B, method=linear, weight=0.5)\" }
    - { weight: \"merge(with=../../$M/$B-sft, method=linear, weight=0.5)\" }
    - { weight: \"sft(data=../../$INSTR, epochs=2, lr=0.00003, batch=32)\" }" \
    "    - { name: s1, path: ../../$M/s1 }" "$B"
  sed -i 's#corpus/heldout.txt#corpus/heldout-v1.txt#' lab/experiments/i12g.yaml
  step sft-base oml attack sft --model $M/$B --data "$INSTR" --out $M/$B-sft --epochs 1 --lr 3e-5 --batch-size 32 --seed 5 --device "$DEV" --force &
  { step gen-s1 oml fingerprints generate --model $M/$B --count "${COUNT:-1024}" --plaintext --out sets/s1.json --force --device "$DEV" \
    && step embed-s1 bash -c "oml embed --model $M/$B --fingerprints sets/s1.json --out $M/s1 --seed 1 --device $DEV --memory-budget-gb 14 --log $L/s1.jsonl \
         && cp sets/s1.json $M/s1/fingerprints.json && cp $M/s1/oml-manifest.json $R/s1.manifest.json"; } &
  wait
  ok embed-s1 && ok sft-base && step lab-s1 oml lab run lab/experiments/i12g.yaml --quiet
}
[ "${EXTRAS:-1}" = 1 ] && extras
if [ "${RETURN:-0}" = 1 ] && ok train; then
  step pack-model python3 "$W/bin/planes.py" pack "$M/$B" "ret/$B" 15
  log "packed for return: $(ls ret/$B | wc -l) pieces, $(du -sm ret/$B | cut -f1) MiB"
fi
log "driver finished"
touch drive.finished
