#!/usr/bin/env bash
# The simulations behind docs/protocol.md "Scores against erased keys": worst-strategy P(catch >= 1) of the three Tardos
# scores (symmetric, asymmetric, combined) for clean copies, copies after SFT and copies merged with the base (the noise
# measured on real copies at 100M: delta/epsilon 0.03/0.002 after SFT, 0.328/0.002 merged; docs/results.md), at 1,000
# hosts and at 8 hosts (the real-copy runs' size). Writes one JSON per (group, score) into OUT, then the table:
#   scripts/lab/trace-scores.sh [OUT] [OML]         (default OUT docs/results/trace-scores-erased; ~30 min on 2 cores)
set -euo pipefail
out="${1:-docs/results/trace-scores-erased}"
oml="${2:-oml}"
mkdir -p "$out"
common=(--scheme tardos --seed oml-13 --trials 200 --strategies majority,minority,interleaving,unanimity --force)
run() {  # NAME SCORE ARGS...
  local name="$1" score="$2"; shift 2
  [ -s "$out/$name-$score.json" ] && return 0   # resumable: a finished cell is kept
  echo "== $name $score" >&2
  "$oml" trace simulate "${common[@]}" --score "$score" --json-out "$out/$name-$score.json" "$@" > "$out/$name-$score.txt"
}
for score in symmetric asymmetric combined; do
  run h1000-l1024 "$score" --hosts 1000 --lengths 1024 --coalition 2,3,4 --noise-loss 0,0.03,0.328 --noise-false-hit 0,0.002,0.002
  run h1000-l2048-merged "$score" --hosts 1000 --lengths 2048 --coalition 3,4 --noise-loss 0.328 --noise-false-hit 0.002
  run h1000-l4096-merged "$score" --hosts 1000 --lengths 4096 --coalition 4 --noise-loss 0.328 --noise-false-hit 0.002 --cutoff 0.000833333333
  run h8-l256 "$score" --hosts 8 --lengths 256 --coalition 2,3,4 --noise-loss 0,0.328 --noise-false-hit 0,0.002
  run h8-l1024-merged "$score" --hosts 8 --lengths 1024 --coalition 3,4 --noise-loss 0.328 --noise-false-hit 0.002
done
python3 "$(dirname "$0")/trace-scores-summary.py" "$out" | tee "$out/summary.md"
