#!/usr/bin/env bash
# Builds liboml_torch.so, the C ABI shim over libtorch.
#
#   native/build.sh OUT_DIR
#
# libtorch is looked for in this order:
#   1. $TORCH_DIR (a folder with include/ and lib/, e.g. an unpacked libtorch or a PyTorch package folder)
#   2. the PyTorch package of a Python interpreter ($PYTHON, python3, /usr/bin/python3) that ships headers
#   3. Debian's libtorch-dev (/usr/include/torch, /usr/lib/<triplet>/libtorch.so)
# When that libtorch has libtorch_cuda, the shim is built with CUDA support.
# Rebuilds only when the source, this script or the chosen libtorch changed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/build}"
mkdir -p "$out"
lib_out="$out/liboml_torch.so"

torch_inc=() torch_lib="" abi="" origin=""

probe_python() {
  local py="$1"
  command -v "$py" >/dev/null 2>&1 || return 1
  local info
  info="$("$py" - <<'EOF' 2>/dev/null
import os, torch
d = os.path.dirname(torch.__file__)
print(d)
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
EOF
)" || return 1
  local dir abi_flag
  dir="$(sed -n 1p <<<"$info")"
  abi_flag="$(sed -n 2p <<<"$info")"
  [ -d "$dir/include/torch" ] && [ -d "$dir/lib" ] || return 1
  TORCH_DIR_FOUND="$dir"
  abi="$abi_flag"
  return 0
}

if [ -n "${TORCH_DIR:-}" ]; then
  [ -d "$TORCH_DIR/include" ] && [ -d "$TORCH_DIR/lib" ] || {
    echo "native/build.sh: TORCH_DIR=$TORCH_DIR has no include/ and lib/ folders" >&2
    exit 1
  }
  torch_inc=("$TORCH_DIR/include" "$TORCH_DIR/include/torch/csrc/api/include")
  torch_lib="$TORCH_DIR/lib"
  origin="TORCH_DIR"
else
  TORCH_DIR_FOUND=""
  for py in "${PYTHON:-}" python3 /usr/bin/python3; do
    [ -n "$py" ] || continue
    if probe_python "$py"; then break; fi
  done
  if [ -n "$TORCH_DIR_FOUND" ]; then
    torch_inc=("$TORCH_DIR_FOUND/include" "$TORCH_DIR_FOUND/include/torch/csrc/api/include")
    torch_lib="$TORCH_DIR_FOUND/lib"
    origin="python"
  else
    triplet="$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)"
    if [ -f /usr/include/torch/csrc/api/include/torch/version.h ] && [ -e "/usr/lib/$triplet/libtorch.so" ]; then
      torch_inc=(/usr/include/torch/csrc/api/include)
      torch_lib="/usr/lib/$triplet"
      origin="debian"
    else
      echo "native/build.sh: libtorch not found. Set TORCH_DIR, install PyTorch, or run: apt-get install libtorch-dev libopenblas0-pthread" >&2
      exit 1
    fi
  fi
fi

cxx="${CXX:-g++}"
# OML_NATIVE_OPT overrides the optimisation level (-O0 compiles in a fraction of the time, for a one-off benchmark
# machine: the shim is a thin layer over libtorch); OML_NATIVE_NO_DIST=1 leaves process groups out (their headers are
# most of the compile time).
flags=(-std=c++17 "${OML_NATIVE_OPT:--O2}" -fPIC -shared -fvisibility=hidden -Wall -Wno-unused-parameter -Wno-deprecated-declarations)
[ -n "$abi" ] && flags+=("-D_GLIBCXX_USE_CXX11_ABI=$abi")
for d in "${torch_inc[@]}"; do flags+=(-isystem "$d"); done
libs=(-L"$torch_lib" -Wl,-rpath,"$torch_lib" -ltorch -ltorch_cpu -lc10)

if [ -e "$torch_lib/libtorch_cuda.so" ]; then
  flags+=(-DOML_WITH_CUDA)
  # CUDA runtime headers, needed only for allocator statistics: from $CUDA_HOME or the nvidia-* wheels.
  for d in "${CUDA_HOME:-/usr/local/cuda}/include" "$torch_lib"/../../nvidia/*/include "$torch_lib"/../../nvidia/cu*/include; do
    [ -f "$d/cuda_runtime_api.h" ] && flags+=(-isystem "$(cd "$d" && pwd)")
  done
  # libtorch_cuda registers the CUDA backend when loaded: keep it even though no symbol is used directly.
  libs+=(-Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed)
fi

# Process groups (native/oml_dist.inc): gloo where its headers are (Debian: libgloo-dev), NCCL with a CUDA libtorch
# whose c10d headers and nccl.h are there. A backend whose build fails is left out with a warning (see below).
dist_flags=() dist_libs=()
c10d_dir=""
for d in "${torch_inc[@]}" /usr/include; do
  [ -f "$d/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp" ] && { c10d_dir="$d"; break; }
done
[ "${OML_NATIVE_NO_DIST:-0}" = 1 ] && c10d_dir=""
if [ -n "$c10d_dir" ]; then
  for d in "${torch_inc[@]}" /usr/include; do
    if [ -f "$d/gloo/context.h" ]; then
      dist_flags+=(-DOML_WITH_GLOO)
      [ "$d" != /usr/include ] && dist_flags+=(-isystem "$d")
      for l in "$torch_lib/libgloo.so" /usr/lib/libgloo.so "/usr/lib/$(gcc -dumpmachine 2>/dev/null)/libgloo.so"; do
        [ -e "$l" ] && { dist_libs+=("$l"); break; }
      done
      break
    fi
  done
  if [ -e "$torch_lib/libtorch_cuda.so" ] && [ -f "$c10d_dir/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp" ]; then
    for d in "$torch_lib"/../../nvidia/nccl/include "${CUDA_HOME:-/usr/local/cuda}/include" /usr/include; do
      if [ -f "$d/nccl.h" ]; then
        dist_flags+=(-DOML_WITH_NCCL -isystem "$(cd "$d" && pwd)")
        for l in "$d/../lib/libnccl.so.2" "$d/../lib/libnccl.so"; do [ -e "$l" ] && { dist_libs+=("$(cd "$(dirname "$l")" && pwd)/$(basename "$l")"); break; }; done
        break
      fi
    done
  fi
fi

# Fused CUDA kernels (native/oml_kernels.cu) with a CUDA libtorch and an nvcc: $NVCC, on PATH, under $CUDA_HOME or
# /usr/local/cuda, or in the nvidia-* wheels beside that libtorch. OML_NATIVE_NO_KERNELS=1 leaves them out; the shim then
# computes RMSNorm, rotary embeddings and SwiGLU with composite libtorch ops (also what OML_FUSED_KERNELS=0 selects at
# run time). They link against the CUDA runtime PyTorch loads (its wheel's libcudart), so one runtime serves both.
nvcc="" cudart=""
if [ -e "$torch_lib/libtorch_cuda.so" ] && [ "${OML_NATIVE_NO_KERNELS:-0}" != 1 ]; then
  for c in "${NVCC:-}" "$(command -v nvcc 2>/dev/null || true)" "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" /usr/local/cuda/bin/nvcc \
           "$torch_lib"/../../nvidia/cu*/bin/nvcc "$torch_lib"/../../nvidia/cuda_nvcc/bin/nvcc; do
    [ -n "$c" ] && [ -x "$c" ] && { nvcc="$c"; break; }
  done
  for l in "$torch_lib"/../../nvidia/cuda_runtime/lib/libcudart.so.* "$torch_lib"/../../nvidia/cu*/lib/libcudart.so.* \
           "$torch_lib"/libcudart*.so* "${CUDA_HOME:-/usr/local/cuda}"/lib64/libcudart.so.* \
           "$(dirname "${nvcc:-/nonexistent}")"/../lib64/libcudart.so.* "$(dirname "${nvcc:-/nonexistent}")"/../targets/x86_64-linux/lib/libcudart.so.*; do
    [ -e "$l" ] && { cudart="$(cd "$(dirname "$l")" && pwd)/$(basename "$l")"; break; }
  done
  if [ -z "$nvcc" ] || [ -z "$cudart" ]; then
    echo "native/build.sh: no nvcc or CUDA runtime found (nvcc '${nvcc}', libcudart '${cudart}'): building without the fused kernels" >&2
    nvcc=""
  fi
fi

stamp="$out/liboml_torch.stamp"
gpu_arch=""
[ -n "$nvcc" ] && gpu_arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | sort -u | tr '\n' ' ' || true)"
want="$(printf '%s\n' "$cxx" "${flags[@]}" "${libs[@]}" "${dist_flags[@]}" "${dist_libs[@]}" "$nvcc" "$cudart" "${OML_CUDA_ARCH:-}" "$gpu_arch" | sha256sum | cut -c1-16) $(cat "$here/oml_torch.cpp" "$here/oml_dist.inc" "$here/oml_kernels.cu" "$here/build.sh" | sha256sum | cut -c1-16)"
if [ -f "$lib_out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "native/build.sh: building liboml_torch.so against libtorch from $origin ($torch_lib)"
tmp="$lib_out.tmp.$$"
kobj=""
if [ -n "$nvcc" ]; then
  # The GPU this machine has (-arch=native), else Ampere and Hopper machine code with PTX for newer chips.
  kobj="$out/oml_kernels.o"
  archs=(${OML_CUDA_ARCH:--arch=native})
  kflags=(-O3 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden -c "$here/oml_kernels.cu" -o "$kobj")
  if "$nvcc" "${archs[@]}" "${kflags[@]}" \
     || "$nvcc" -gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90,code=[sm_90,compute_90] "${kflags[@]}"; then
    echo "native/build.sh: fused CUDA kernels built with $nvcc"
  else
    echo "native/build.sh: warning: nvcc could not build native/oml_kernels.cu; building without the fused kernels" >&2
    kobj=""
  fi
fi
# A library with a symbol no loaded library defines would not load at all: check with ldd -r (undefined symbols of the
# shim itself), and fall back: without the fused kernels, then without the process groups, then without both.
kernel_flags=() kernel_libs=()
[ -n "$kobj" ] && kernel_flags=(-DOML_WITH_KERNELS) && kernel_libs=("$kobj" "$cudart" -Wl,-rpath,"$(dirname "$cudart")")
builds() {  # KERNELS DIST (1 = with)
  local kf=() kl=() df=() dl=() o
  [ "$1" = 1 ] && { kf=("${kernel_flags[@]}"); kl=("${kernel_libs[@]}"); }
  [ "$2" = 1 ] && { df=("${dist_flags[@]}"); dl=("${dist_libs[@]}"); }
  "$cxx" "${flags[@]}" "${kf[@]}" "${df[@]}" "$here/oml_torch.cpp" -o "$tmp" "${libs[@]}" "${kl[@]}" "${dl[@]}" || return 1
  o="$(ldd -r "$tmp" 2>&1 || true)"
  ! grep -q "undefined symbol" <<<"$o"
}
# In order of preference: everything, then the process groups kept (multi-GPU training needs them), then the kernels.
combos=()
for d in 1 0; do
  for k in 1 0; do
    { [ "$k" = 1 ] && [ -z "$kobj" ]; } || { [ "$d" = 1 ] && [ ${#dist_flags[@]} -eq 0 ]; } || combos+=("$k $d")
  done
done
built=""
for kd in "${combos[@]}"; do
  set -- $kd
  if builds "$1" "$2"; then built="$kd"; break; fi
done
if [ -z "$built" ]; then
  # Last resort: without libtorch's profiler (OML_PROFILE then reports that it cannot start).
  flags+=(-DOML_NO_PROFILER)
  for kd in "${combos[@]}"; do
    set -- $kd
    if builds "$1" "$2"; then built="$kd"; break; fi
  done
  [ -n "$built" ] && echo "native/build.sh: warning: the shim did not build with libtorch's profiler; built without it (OML_PROFILE will not record)" >&2
fi
[ -n "$built" ] || exit 1
set -- $built
[ -n "$kobj" ] && [ "$1" = 0 ] && echo "native/build.sh: warning: the shim did not build or link with the fused kernels; built without them" >&2
[ ${#dist_flags[@]} -gt 0 ] && [ "$2" = 0 ] && echo "native/build.sh: warning: the build with process groups (${dist_flags[*]}) failed or left undefined symbols; built without them" >&2
mv -f "$tmp" "$lib_out"
printf '%s' "$want" >"$stamp"
