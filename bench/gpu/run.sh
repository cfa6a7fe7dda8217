#!/usr/bin/env bash
# Runs on the GPU machine from a folder staged by scripts/gpu/bench-fingerprints.sh:  run.sh 1b|8b|8b-16l|all OUT
# Unpacks oml, builds the shim against this machine's PyTorch (both kept under $OML_BENCH_WORK between runs), then
# runs bench/fingerprint_bench.py, which writes results.json and results.md into OUT after every case.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
part="${1:-all}"
out="${2:?usage: run.sh 1b|8b|8b-16l|all OUT [fingerprint_bench.py options: --only 0 --model-io]}"
shift 2
work="${OML_BENCH_WORK:-/tmp/oml-bench}"
mkdir -p "$work" "$out"
[ -x "$work/lab-app/oml" ] || tar -C "$work" -xJf "$here/oml-lab.tar.xz"
extra=()
for arg in "$@"; do
  if [ "$arg" = --model-io ]; then
    # The model-I/O comparison needs the published Oml.Bench (scripts/gpu/pack-lab.sh --app-only --bench).
    [ -x "$work/bench-app/Oml.Bench" ] || tar -C "$work" -xJf "$here/oml-bench.tar.xz"
    extra+=(--model-io "$work/bench-app/Oml.Bench")
  else
    extra+=("$arg")
  fi
done
python="${PYTHON:-python3}"
torch_dir="$("$python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
PYTHON="$python" "$here/native/build.sh" "$work/native" >&2
cp -f "$work/native/liboml_torch.so" "$work/lab-app/liboml_torch.so"
[ -d "$work/bench-app" ] && cp -f "$work/native/liboml_torch.so" "$work/bench-app/liboml_torch.so"
[ -n "${OML_BENCH_KEEP_SHIM:-}" ] && cp -f "$work/native/liboml_torch.so" "$OML_BENCH_KEEP_SHIM"
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 PYTHONUNBUFFERED=1
"$work/lab-app/oml" info >&2 || true
exec "$python" "$here/bench/fingerprint_bench.py" --oml "$work/lab-app/oml" --tokenizer "$here/tokenizer" \
  --work "$work/data" --out "$out" --part "$part" "${extra[@]}"
