#!/usr/bin/env bash
# The partial rule's per-key null (Oml.Bench --partial-null) on a GPU machine with PyTorch but no .NET, two builds in one
# run: run from the repository root on the device, with artifacts/gpu/benches.tar.xz carried (made here by
#   OLD=/path/to/old/checkout bench/gpu/partial-null.sh --pack
# : trimmed self-contained Oml.Bench publishes of this checkout, bench-new, and of OLD, only the files that differ).
# On the device: builds the shim against that machine's libtorch, writes a random-init Llama of the 102.7M base's
# shape (bench/make_model.py: 768/14/12/4/2304, vocabulary 8192; untied head, 108.9M parameters, bfloat16) and times
# 64 random 16-token keys with 4-token responses, m = 3 (D = 1) and m = 2 (D = 2), default prefix budget, the old build
# then the new one (the old one capped at OML_OLD_TIMEOUT seconds, 180 by default), then the new one on 256 keys.
set -euo pipefail
root="$(pwd)"
if [ "${1:-}" = "--pack" ]; then
  old="${OLD:?OLD=the old checkout (with bench/Oml.Bench)}"
  out=artifacts/gpu; mkdir -p "$out"
  pub() {
    rm -rf "$2" && dotnet publish "$1/bench/Oml.Bench" -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -p:TrimMode=partial \
      -p:SuppressTrimAnalysisWarnings=true -p:TreatWarningsAsErrors=false -p:JsonSerializerIsReflectionEnabledByDefault=true -o "$2" -nologo -v quiet -clp:ErrorsOnly
    rm -f "$2/liboml_torch.so" "$2"/*.pdb "$2/createdump"
  }
  pub "$root" "$out/bench-new"; pub "$old" "$out/bench-old"
  rm -rf "$out/old-diff" && mkdir -p "$out/old-diff"
  for f in $(diff -rq "$out/bench-new" "$out/bench-old" | awk '{print $4}'); do cp "$f" "$out/old-diff/"; done
  tar -C "$out" -cf - bench-new old-diff | xz -T1 -6 > "$out/benches.tar.xz"
  du -h "$out/benches.tar.xz"; exit 0
fi
w=/tmp/partial-null; rm -rf "$w"; mkdir -p "$w"
tar -C "$w" -xJf artifacts/gpu/benches.tar.xz
cp -r "$w/bench-new" "$w/bench-old"; cp "$w/old-diff"/* "$w/bench-old/"
OML_NATIVE_OPT=-O0 OML_NATIVE_NO_DIST=1 native/build.sh "$w/native" >&2
cp "$w/native/liboml_torch.so" "$w/bench-new/"; cp "$w/native/liboml_torch.so" "$w/bench-old/"
export LD_LIBRARY_PATH="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__)'
python3 bench/make_model.py "$w/model" --hidden 768 --layers 14 --heads 12 --kv-heads 4 --intermediate 2304 --vocab 8192 --dtype bfloat16
run() { "$w/bench-$1/Oml.Bench" --partial-null "$w/model" --device cuda --key-length 16 --response-length 4 "${@:2}"; }
for m in 3 2; do
  echo "== old, m = $m"; timeout "${OML_OLD_TIMEOUT:-180}" "$w/bench-old/Oml.Bench" --partial-null "$w/model" --device cuda --key-length 16 \
    --response-length 4 --keys 64 --min-tokens "$m" || echo "old, m = $m: stopped after ${OML_OLD_TIMEOUT:-180} s (or failed)"
  for round in 1 2; do echo "== new, m = $m, round $round"; run new --keys 64 --min-tokens "$m"; done
done
echo "== new, 256 keys, m = 2"; run new --keys 256 --min-tokens 2
