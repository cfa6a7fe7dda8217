#!/usr/bin/env node
// Encodes and decodes texts with the Hugging Face `tokenizers` library (npm tokenizers@0.23.2, the official Rust
// implementation's Node binding), for parity tests against Oml's tokenizer.
//   node tests/tools/hf_encode.js REQUEST.json
// REQUEST: {"tokenizer": "path/to/tokenizer.json", "texts": ["..."], "add_special_tokens": false,
//           "decode": [[ids...], ...]}   ("decode" optional)
// Prints {"ids": [[...], ...], "decoded": ["...", ...]} as JSON on stdout: "ids" encode "texts", "decoded" decodes
// "decode" (special tokens kept).
'use strict';
const fs = require('fs');
const path = require('path');

function loadTokenizers() {
  const candidates = [
    process.env.OML_HF_TOKENIZERS,
    path.join(__dirname, '..', '..', 'artifacts', 'node', 'node_modules', 'tokenizers'),
    'tokenizers',
  ].filter(Boolean);
  for (const c of candidates) {
    try { return require(c); } catch (e) { /* try the next */ }
  }
  process.stderr.write('hf_encode: the npm package tokenizers@0.23.2 is not installed; run scripts/fetch-tokenizers.sh ' +
                       '(or: mkdir -p artifacts/node && cd artifacts/node && npm install tokenizers@0.23.2)\n');
  process.exit(3);
}

async function main() {
  if (process.argv.length !== 3) {
    process.stderr.write('usage: node hf_encode.js REQUEST.json\n');
    process.exit(2);
  }
  const req = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const { Tokenizer } = loadTokenizers();
  const tok = Tokenizer.fromFile(req.tokenizer);
  const add = !!req.add_special_tokens;
  const ids = [];
  for (const t of req.texts || []) {
    const enc = await tok.encode(t, null, { addSpecialTokens: add });
    ids.push(Array.from(enc.getIds()));
  }
  const decoded = [];
  for (const d of req.decode || []) decoded.push(await tok.decode(d, false));
  process.stdout.write(JSON.stringify({ ids, decoded }));
}

main().catch(e => { process.stderr.write('hf_encode: ' + (e && e.stack || e) + '\n'); process.exit(1); });
