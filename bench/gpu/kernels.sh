#!/usr/bin/env bash
# Builds native/oml_kernels.cu (and optionally an earlier copy of it) into stand-alone libraries with the nvcc of this
# machine's PyTorch wheels, then runs kernel_bench.py on them:
#   bench/gpu/kernels.sh NEW.cu [BASELINE.cu] OUT
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
new="${1:?usage: kernels.sh NEW.cu [BASELINE.cu] OUT}"
if [ $# -ge 3 ]; then base="$2"; out="$3"; else base=""; out="${2:?OUT}"; fi
python="${PYTHON:-python3}"
torch_lib="$("$python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
nvcc=""
for c in "${NVCC:-}" "$(command -v nvcc 2>/dev/null || true)" "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" \
         "$torch_lib"/../../nvidia/cu*/bin/nvcc "$torch_lib"/../../nvidia/cuda_nvcc/bin/nvcc; do
  [ -n "$c" ] && [ -x "$c" ] && { nvcc="$c"; break; }
done
cudart=""
for l in "$torch_lib"/../../nvidia/cuda_runtime/lib/libcudart.so.* "$torch_lib"/../../nvidia/cu*/lib/libcudart.so.* \
         "$torch_lib"/libcudart*.so* "${CUDA_HOME:-/usr/local/cuda}"/lib64/libcudart.so.*; do
  [ -e "$l" ] && { cudart="$(cd "$(dirname "$l")" && pwd)/$(basename "$l")"; break; }
done
[ -n "$nvcc" ] && [ -n "$cudart" ] || { echo "kernels.sh: no nvcc ('$nvcc') or libcudart ('$cudart')" >&2; exit 1; }
mkdir -p "$out/build"
build() {  # SRC NAME
  local o="$out/build/$2.o"
  "$nvcc" -arch=native -O3 -std=c++17 -Xcompiler -fPIC -c "$1" -o "$o" \
    || "$nvcc" -gencode=arch=compute_90,code=sm_90 -O3 -std=c++17 -Xcompiler -fPIC -c "$1" -o "$o"
  g++ -shared "$o" "$cudart" -Wl,-rpath,"$(dirname "$cudart")" -o "$out/build/lib$2.so"
}
build "$new" k_new
args=(--lib "$out/build/libk_new.so" --out "$out")
[ -n "$base" ] && { build "$base" k_base; args+=(--baseline "$out/build/libk_base.so"); }
LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$python" "$here/kernel_bench.py" "${args[@]}"
