# Sourced on the GPU machine from the repository root (the device's copy of the repository, with .gpu/ carried):
# unpacks the trimmed oml (.gpu/oml-lab.tar.xz, from scripts/gpu/pack-lab.sh --app-only) and the lab data
# (.gpu/lab-data.tar.xz: corpus, tokenizer, instructions) into the work dir W (default /tmp/w, kept while the machine
# stays warm), builds the native shim against this machine's libtorch once, and puts oml on PATH. Idempotent.
set -euo pipefail
REPO="$(pwd)"
W="${W:-/tmp/w}"
mkdir -p "$W"
[ -x "$W/lab-app/oml" ] || tar -C "$W" -xJf "$REPO/.gpu/oml-lab.tar.xz"
[ -f "$W/artifacts/lab/.unpacked" ] || { tar -C "$W" -xJf "$REPO/.gpu/lab-data.tar.xz" && touch "$W/artifacts/lab/.unpacked"; }
torch_dir="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
[ -f "$W/native/liboml_torch.so" ] || PYTHON=python3 "$REPO/native/build.sh" "$W/native" >&2
cp -f "$W/native/liboml_torch.so" "$W/lab-app/liboml_torch.so"
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$W/lab-app:$PATH"
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
mkdir -p "$W/lab/recipes" "$W/lab/experiments"
cp -f "$REPO/.gpu/issue12/recipes/"*.yaml "$W/lab/recipes/"
cp -f "$REPO/.gpu/issue12/experiments/"*.yaml "$W/lab/experiments/"
