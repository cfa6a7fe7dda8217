#!/usr/bin/env bash
# Issue 14: the fused kernels (native/oml_kernels.cu) against an earlier build of them, then the fingerprint benchmark
# with whichever passed, in one device call from the repository root:
#
#   here:  OML_PACK_R2R=0 scripts/gpu/pack-lab.sh --app-only && scripts/gpu/bench-fingerprints.sh .gpu/s2
#          git show REV:native/oml_kernels.cu > .gpu/s2/oml_kernels.before.cu
#   there: bash scripts/gpu/kernels-8b.sh .gpu/s2 PART CASES      (e.g. 8b 1, or 8b-16l 0 on an 80 GB card;
#          PART auto: 8b with CASES on a card of more than 100 GB, else 8b-16l 0)
#
# 1. bench/gpu/kernels.sh: both builds of the kernels checked against the composite ops and timed (OUT/kernels);
# 2. if the current kernels failed any check, the staged folder's kernels are replaced by the earlier ones, so the
#    benchmark still measures the rest of the program (and says so in OUT/kernels-used.txt);
# 3. the staged run.sh PART with --only CASES (OUT/bench), the shim built at -O0 without process groups.
# Work folders under /tmp/ob stay on a warm machine, so a second call reuses the unpacked program and the models.
set -uo pipefail
S="${1:?usage: kernels-8b.sh STAGED PART CASES}"; part="${2:?PART}"; cases="${3:?CASES}"
out="${OUT:?}"
if [ "$part" = auto ]; then
  mib="$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1 | tr -d ' ')"
  if [ "${mib:-0}" -gt 102400 ]; then part=8b; else part=8b-16l; cases=0; fi
  echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), ${mib} MiB: part $part, cases $cases"
fi
mkdir -p "$out/kernels" "$out/bench"
# The check's verdict is kept per version of the kernels' source (a warm machine may have checked an earlier one).
marker="/tmp/ob/kernels-checked-$(sha256sum native/oml_kernels.cu | cut -c1-12)"
if [ ! -f "$marker" ]; then
  base=()
  [ -f "$S/oml_kernels.before.cu" ] && base=("$S/oml_kernels.before.cu")
  timeout 300 bash bench/gpu/kernels.sh native/oml_kernels.cu "${base[@]}" "$out/kernels" > "$out/kernels/log.txt" 2>&1
  krc=$?
  tail -40 "$out/kernels/log.txt"
  rm -rf "$out/kernels/build"
  mkdir -p /tmp/ob
  if [ $krc -eq 0 ]; then
    cp -f native/oml_kernels.cu "$S/native/oml_kernels.cu"
    echo "current kernels (checks passed)" | tee "$marker"
  elif [ ${#base[@]} -gt 0 ]; then
    cp -f "${base[0]}" "$S/native/oml_kernels.cu"
    echo "earlier kernels (the current ones failed: kernels.sh exit $krc)" | tee "$marker"
  else
    echo "current kernels, unchecked (kernels.sh exit $krc, no earlier build staged)" | tee "$marker"
  fi
fi
cp -f "$marker" "$out/kernels-used.txt"
OML_NATIVE_OPT=-O0 OML_NATIVE_NO_DIST=1 OML_BENCH_WORK=/tmp/ob bash "$S/run.sh" "$part" "$out/bench" --only "$cases" > "$out/bench/log.txt" 2>&1
echo "run.sh exit $?"
grep -v "^  keys " "$out/bench/log.txt" | tail -30
cat "$out/bench/results.md" 2>/dev/null | tail -15
