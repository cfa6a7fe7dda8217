#!/usr/bin/env bash
# Calibrates the verification null against strong negatives, on CPU in a few minutes (docs/verification.md, "Calibration"),
# for the exact rule and for the partial rule (--match partial --min-tokens 2 with --base: the keys the base's own greedy
# answer hits left out, as a verdict leaves them out).
# Takes the llama-tiny test fixture (vocab 512) as the base, two 4,096-key Perinucleus sets from it (A: 1-token responses,
# P: 3-token responses, which the partial rule needs), and negatives that never saw their keys: the base, fine-tunes of it
# (oml train on the Debian licence texts), other seeds, other architectures (the Llama 3 RoPE, Qwen2, Qwen3 and Mistral
# fixtures), siblings fingerprinted with other keys (B, C: 1-token responses; B3, C3: 3-token) and those siblings after
# attacks (int4, 30 % pruning, an even merge with a fine-tune, fine-tuning). Then `oml verify --calibrate` reports each
# negative's hit rate with Clopper-Pearson bounds and the floor from the worst one, per rule, and positive controls: a
# sibling verified on its own keys with that floor, a fine-tune on the same keys.
# Every random choice is fixed (the sets' owner secrets below, `oml train --seed`), so a rerun gives the same numbers.
# Everything lands in ${OML_CALIBRATION_DIR:-./oml-null-calibration}; the tables in calibration-*.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
# One libtorch thread unless told otherwise: on the shared 2-core machine these tiny models ran 5-20x slower with
# libtorch's default of one thread per core (its parallel regions wait for a thread that is not scheduled):
# docs/benchmarks.md, "Null calibration".
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
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
# Test-only costs, passphrases and owner secrets: these sets guard nothing.
low=(--kdf-iterations 1000 --insecure-kdf --allow-weak-passphrase)
set_of() {   # NAME COUNT RESPONSE_TOKENS: a Perinucleus set from the base, its owner secret fixed by its name
  printf 'calibration passphrase %s\n' "$1" >"pass$1"
  printf 'calibration owner secret %s (test only)\n' "$1" >"secret$1"
  oml fingerprints generate --model base --count "$2" --random-word-keys --response-length "$3" --secret-file "secret$1" \
    --out "$1.omlfp" --passphrase-file "pass$1" "${low[@]}" >/dev/null 2>&1
}

step "corpora: the Debian licence texts (the same on every Debian 12 system and at every commit)"
lic=/usr/share/common-licenses
[ -f "$lic/GPL-3" ] || { echo "calibrate-null: $lic/GPL-3 is missing (Debian's base-files ships it)" >&2; exit 1; }
cat "$lic/GPL-3" >finetune.txt
find "$lic" -maxdepth 1 -type f | LC_ALL=C sort | xargs cat >corpus.txt
fx="$root/tests/Oml.Models.Tests/fixtures/models"
fixture() { mkdir -p "$2"; cp "$fx/$1"/{config.json,generation_config.json,model.safetensors} "$2/"; cp "$root/scripts/fixtures/tiny-tokenizer.json" "$2/tokenizer.json"; }
ft=(--context 64 --batch-size 8 --log-every 1000)

step "base: the llama-tiny fixture (Llama, hidden 64, 2 layers, vocab 512, random init) with a 512-token byte-level BPE"
fixture llama-tiny base

step "sets A ($keys keys, 1-token responses) and P ($keys keys, 3-token responses), the ones calibrated; B, C, B3, C3 (64 keys each, other owners)"
set_of A "$keys" 1
set_of P "$keys" 3
set_of B 64 1
set_of C 64 1
set_of B3 64 3
set_of C3 64 3

step "fine-tunes of the base that never saw the keys (GPL-3 / all licences, 40 steps; two seeds and learning rates)"
oml train --init base --data finetune.txt "${ft[@]}" --steps 40 --lr 1e-3 --seed 1 --out ft-1 >/dev/null
oml train --init base --data corpus.txt "${ft[@]}" --steps 40 --lr 3e-3 --seed 2 --out ft-2 >/dev/null

step "other seeds (the same Llama shape trained from new random weights, 40 steps) and other architectures (fixtures)"
for s in 1 2; do
  oml train --data corpus.txt --tokenizer base --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 176 "${ft[@]}" \
    --steps 40 --lr 3e-3 --seed "$s" --out "seed-$s" >/dev/null
done
for a in llama3-rope-tiny qwen2-tiny qwen3-tiny mistral-tiny; do fixture "$a" "$a"; done

step "siblings: the base fingerprinted with B, C, B3 and C3"
for x in B C B3 C3; do
  oml embed --model base --fingerprints "$x.omlfp" --passphrase-file "pass$x" --out "sib-$x" --lr 5e-3 --epochs 300 \
    --averaging-lambda 0 --mix-fraction 0 >/dev/null 2>&1
done

step "attacks on siblings: int4 quantization, 30 % pruning, an even merge with a fine-tune, fine-tuning"
for x in "" 3; do
  oml attack quantize --model "sib-C$x" --bits 4 --out "sib-C$x-int4" >/dev/null
  oml attack prune --model "sib-B$x" --fraction 0.3 --out "sib-B$x-prune30" >/dev/null
  oml attack merge --model "sib-C$x" --with ft-1 --weight 0.5 --out "sib-C$x-merge-ft1" >/dev/null
  oml train --init "sib-B$x" --data finetune.txt "${ft[@]}" --steps 40 --lr 1e-3 --seed 3 --out "sib-B$x-ft" >/dev/null
done

negatives=(base=base fine-tune=ft-1 fine-tune=ft-2 seed=seed-1 seed=seed-2 seed=llama3-rope-tiny
           architecture=qwen2-tiny architecture=qwen3-tiny architecture=mistral-tiny
           sibling=sib-B sibling=sib-C sibling=sib-B3 sibling=sib-C3
           attacked=sib-C-int4 attacked=sib-B-prune30 attacked=sib-C-merge-ft1 attacked=sib-B-ft
           attacked=sib-C3-int4 attacked=sib-B3-prune30 attacked=sib-C3-merge-ft1 attacked=sib-B3-ft)
partial=(--match partial --min-tokens 2 --base base)

step "calibration of set A (exact rule) against the negatives"
oml verify --fingerprints A.omlfp --passphrase-file passA --calibration-out calibration-exact.json \
  --calibrate "${negatives[@]}" | tee calibration-exact.txt
step "calibration of set P (exact rule, 3-token responses) against the negatives"
oml verify --fingerprints P.omlfp --passphrase-file passP --calibration-out calibration-exact-3.json \
  --calibrate "${negatives[@]}" | tee calibration-exact-3.txt
step "calibration of set P (partial rule, m = 2 of 3, keys the base hits left out) against the negatives"
oml verify --fingerprints P.omlfp --passphrase-file passP "${partial[@]}" --calibration-out calibration-partial.json \
  --calibrate "${negatives[@]}" | tee calibration-partial.txt

step "positive controls: each sibling owned on its own keys under its rule's calibrated floor; a fine-tune is not"
oml verify --model sib-B --fingerprints B.omlfp --passphrase-file passB --calibration calibration-exact.json | sed -n 1,3p
oml verify --model ft-1 --fingerprints B.omlfp --passphrase-file passB --calibration calibration-exact.json | sed -n 1,3p
oml verify --model sib-B3 --fingerprints B3.omlfp --passphrase-file passB3 "${partial[@]}" --calibration calibration-partial.json | sed -n 1,4p
oml verify --model ft-1 --fingerprints B3.omlfp --passphrase-file passB3 "${partial[@]}" --calibration calibration-partial.json | sed -n 1,4p

step "a calibration is refused for another rule (one-line error, exit code 1)"
if oml verify --model sib-B3 --fingerprints B3.omlfp --passphrase-file passB3 "${partial[@]}" --calibration calibration-exact-3.json; then
  echo "calibrate-null: a calibration of the exact rule was accepted for the partial rule" >&2; exit 1
fi
