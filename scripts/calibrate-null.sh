#!/usr/bin/env bash
# Calibrates the verification null against strong negatives, on CPU in a few minutes (docs/verification.md, "Calibration").
# Takes the llama-tiny test fixture (vocab 512) as the base, a 4,096-key Perinucleus set A from it, and negatives that
# never saw A's keys: the base, fine-tunes of it (oml train on the repository's docs), siblings fingerprinted with
# other keys, other seeds, other architectures (the Qwen2/Qwen3/Mistral fixtures) and models after attacks. Then `oml verify --calibrate` reports each negative's hit rate with Clopper-Pearson bounds and
# the floor from the worst one, and a positive control: a sibling verified on its own keys with that floor.
# Everything lands in ${OML_CALIBRATION_DIR:-./oml-null-calibration}.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
if [ -n "${OML_BIN:-}" ]; then          # a published oml (e.g. on a machine without .NET)
  oml() { "$OML_BIN" "$@"; }
else
  dll="$root/src/Oml.Cli/bin/Release/net10.0/oml.dll"
  [ -f "$dll" ] || dotnet build src/Oml.Cli -c Release -nologo -v q >/dev/null
  oml() { dotnet "$dll" "$@"; }
fi
work="${OML_CALIBRATION_DIR:-$root/oml-null-calibration}"
keys="${OML_CALIBRATION_KEYS:-4096}"
rm -rf "$work"; mkdir -p "$work"; cd "$work"
step() { printf '\n== %s\n' "$*" >&2; }
# Test-only costs and passphrases: these sets guard nothing.
low=(--kdf-iterations 1000 --insecure-kdf --allow-weak-passphrase)
printf 'calibration passphrase A\n' >passA; printf 'calibration passphrase B\n' >passB; printf 'calibration passphrase C\n' >passC

step "corpora: the repository's docs (fine-tuning and pretraining text)"
cat "$root"/docs/*.md >corpus.txt
cat "$root"/README.md >finetune.txt
fx="$root/tests/Oml.Models.Tests/fixtures/models"
fixture() { mkdir -p "$2"; cp "$fx/$1"/{config.json,generation_config.json,model.safetensors} "$2/"; cp "$root/scripts/fixtures/tiny-tokenizer.json" "$2/tokenizer.json"; }
ft=(--context 64 --batch 8 --log-every 1000)

step "base: the llama-tiny fixture (Llama, hidden 64, 2 layers, vocab 512, random init) with a 512-token byte-level BPE"
fixture llama-tiny base

step "set A ($keys Perinucleus keys from the base, the one calibrated) and sets B, C (64 keys each, other owners)"
oml fingerprints generate --model base --count "$keys" --random-word-keys --out A.omlfp --passphrase-file passA "${low[@]}" >/dev/null
oml fingerprints generate --model base --count 64 --random-word-keys --out B.omlfp --passphrase-file passB "${low[@]}" >/dev/null
oml fingerprints generate --model base --count 64 --random-word-keys --out C.omlfp --passphrase-file passC "${low[@]}" >/dev/null

step "fine-tunes of the base that never saw the keys (README text, 40 steps; two seeds and learning rates)"
oml train --init base --data finetune.txt "${ft[@]}" --steps 40 --lr 1e-3 --seed 1 --out ft-1 >/dev/null
oml train --init base --data corpus.txt "${ft[@]}" --steps 40 --lr 3e-3 --seed 2 --out ft-2 >/dev/null

step "other seeds (the same Llama shape trained from new random weights, 40 steps) and other architectures (fixtures)"
for s in 1 2; do
  oml train --data corpus.txt --tokenizer base --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 176 "${ft[@]}" \
    --steps 40 --lr 3e-3 --seed "$s" --out "seed-$s" >/dev/null
done
for a in llama3-rope-tiny qwen2-tiny qwen3-tiny mistral-tiny; do fixture "$a" "$a"; done

step "siblings: the base fingerprinted with B and with C"
for x in B C; do
  oml embed --model base --fingerprints "$x.omlfp" --passphrase-file "pass$x" --out "sib-$x" --lr 5e-3 --epochs 300 \
    --averaging-lambda 0 --mix-fraction 0 >/dev/null 2>&1
done

step "attacks on negatives: int4 quantization, 30 % pruning, an even merge with a fine-tune, fine-tuning a sibling"
oml attack quantize --model sib-C --bits 4 --out sib-C-int4 >/dev/null
oml attack prune --model sib-B --fraction 0.3 --out sib-B-prune30 >/dev/null
oml attack merge --model sib-C --with ft-1 --weight 0.5 --out sib-C-merge-ft1 >/dev/null
oml train --init sib-B --data finetune.txt "${ft[@]}" --steps 40 --lr 1e-3 --seed 3 --out sib-B-ft >/dev/null

step "calibration of set A against the negatives"
oml verify --fingerprints A.omlfp --passphrase-file passA --calibration-out calibration.json \
  --calibrate base=base fine-tune=ft-1 fine-tune=ft-2 seed=seed-1 seed=seed-2 seed=llama3-rope-tiny \
              architecture=qwen2-tiny architecture=qwen3-tiny architecture=mistral-tiny \
              sibling=sib-B sibling=sib-C attacked=sib-C-int4 attacked=sib-B-prune30 attacked=sib-C-merge-ft1 attacked=sib-B-ft | tee calibration.txt

step "positive control: sibling B is owned on its own keys under the calibrated floor; a fine-tune is not"
oml verify --model sib-B --fingerprints B.omlfp --passphrase-file passB --calibration calibration.json | sed -n 1,6p
oml verify --model ft-1 --fingerprints B.omlfp --passphrase-file passB --calibration calibration.json | sed -n 1,6p
