#!/usr/bin/env bash
# Packs what a lab run on the GPU machine needs into artifacts/gpu/ (see scripts/gpu/lab.sh):
#   oml-lab.tar.xz   a self-contained linux-x64 `oml`, trimmed (framework assemblies only: TrimMode=partial), ~9 MB;
#   oml-bench.tar.xz with --bench (after --app-only): bench/Oml.Bench likewise, for the model-I/O comparison;
#   lab-data.tar.xz  the lab corpus (train/held-out), instruction data and tokenizer (scripts/lab/build-corpus.sh,
#                    `oml data instructions`, `oml tokenizer train`).
# A device call carries at most 64 MiB in; the untrimmed publish alone is 26 MB compressed, which would leave no
# room for the reference model's 44 MB of bf16 weights. Trimming warnings are suppressed for this publish only:
# TrimMode=partial leaves our own assemblies (reflection over YAML configs, JSON) untouched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=artifacts/gpu
rm -rf "$out/lab-app" && mkdir -p "$out/lab-app"
# ReadyToRun: the assemblies precompiled, so a command starts without JIT-compiling its path first. Trimming rewrites
# the framework's assemblies and drops their own precompiled code, so without it (OML_PACK_R2R=0) the framework is
# JIT-compiled too: `oml verify --endpoint` of 64 keys took 0.83-0.89 s against 0.39-0.40 s on the CPU machine
# (docs/benchmarks.md, "The verify client's fixed cost"). OML_PACK_R2R=composite compiles the framework and oml as
# one version bubble, which also precompiles their generic instantiations across assemblies (0.25-0.27 s, with the
# connection opened while the set is read). Packed sizes (xz -6): about 16 MiB without, 31 MiB with, 36 MiB composite.
r2r=(-p:PublishReadyToRun=true)
case "${OML_PACK_R2R:-1}" in
  0) r2r=(-p:PublishReadyToRun=false) ;;
  composite) r2r=(-p:PublishReadyToRun=true -p:PublishReadyToRunComposite=true) ;;
  1) ;;
  *) echo "pack-lab: OML_PACK_R2R must be 1, 0 or composite, not '${OML_PACK_R2R}'" >&2; exit 2 ;;
esac
dotnet publish src/Oml.Cli -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -p:TrimMode=partial "${r2r[@]}" \
  -p:SuppressTrimAnalysisWarnings=true -p:TreatWarningsAsErrors=false -p:JsonSerializerIsReflectionEnabledByDefault=true -o "$out/lab-app" -nologo -v quiet -clp:ErrorsOnly
rm -f "$out/lab-app/liboml_torch.so" "$out/lab-app"/*.pdb "$out/lab-app/createdump"
tar -C "$out" -cf - lab-app | xz -T0 -6 > "$out/oml-lab.tar.xz.tmp" && mv -f "$out/oml-lab.tar.xz.tmp" "$out/oml-lab.tar.xz"
# --bench: also bench/Oml.Bench (the model-I/O comparison, --model-io), self-contained in its own folder (its trimmed
# assemblies differ from oml's): oml-bench.tar.xz.
if [ "${1:-}" = "--bench" ] || [ "${2:-}" = "--bench" ]; then
  rm -rf "$out/bench-app" && mkdir -p "$out/bench-app"
  dotnet publish bench/Oml.Bench -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -p:TrimMode=partial \
    -p:SuppressTrimAnalysisWarnings=true -p:TreatWarningsAsErrors=false -p:JsonSerializerIsReflectionEnabledByDefault=true -o "$out/bench-app" -nologo -v quiet -clp:ErrorsOnly
  rm -f "$out/bench-app/liboml_torch.so" "$out/bench-app"/*.pdb "$out/bench-app/createdump"
  tar -C "$out" -cf - bench-app | xz -T0 -6 > "$out/oml-bench.tar.xz.tmp" && mv -f "$out/oml-bench.tar.xz.tmp" "$out/oml-bench.tar.xz"
fi
if [ "${1:-}" != "--app-only" ] && [ "${1:-}" != "--fp" ] && [ "${1:-}" != "--bench" ]; then
  lab=artifacts/lab
  for f in "$lab/corpus/train.txt" "$lab/corpus/heldout.txt" "$lab/tokenizer/tokenizer.json" "$lab/instructions/instructions-train.json"; do
    [ -f "$f" ] || { echo "pack-lab: $f is missing (scripts/lab/build-corpus.sh, oml data instructions, oml tokenizer train)" >&2; exit 1; }
  done
  tar -C . -cf - "$lab/corpus/train.txt" "$lab/corpus/heldout.txt" "$lab/corpus/manifest.json" "$lab/tokenizer" "$lab/instructions" \
    | xz -T0 -6 > "$out/lab-data.tar.xz.tmp" && mv -f "$out/lab-data.tar.xz.tmp" "$out/lab-data.tar.xz"
fi
du -h "$out"/oml-lab.tar.xz "$out"/lab-data.tar.xz "$out"/oml-bench.tar.xz 2>/dev/null || true   # the packs this run made (some may not exist)
# The false-positive call carries the base model, so the unrelated models (lab/recipes/unrelated-*.yaml) train on the
# corpus's first 16 MB, cut at a document boundary: lab-fp.tar.xz = base model + that head + held-out + tokenizer.
if [ "${1:-}" = "--fp" ]; then
  python3 - <<'PY'
d = open('artifacts/lab/corpus/train.txt', 'rb').read(16_500_000)
i = d.rfind(b'\n\n', 0, 16_000_000)
open('artifacts/lab/corpus/train-head.txt', 'wb').write(d[:i + 2])
PY
  tar -C . -cf - artifacts/lab/corpus/train-head.txt artifacts/lab/corpus/heldout.txt artifacts/lab/tokenizer artifacts/lab/models/base \
    | xz -T0 -6 > artifacts/gpu/lab-fp.tar.xz.tmp && mv -f artifacts/gpu/lab-fp.tar.xz.tmp artifacts/gpu/lab-fp.tar.xz
  du -h artifacts/gpu/lab-fp.tar.xz
fi
