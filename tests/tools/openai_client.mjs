#!/usr/bin/env node
// Drives an OpenAI-compatible server with the official `openai` npm package (installed into artifacts/node by
// scripts/fetch-tokenizers.sh), as a user of vLLM would: models, chat, streaming with usage, completions with prompt
// batches, n, logprobs, echo and stop, and the SDK's error classes for bad requests. Exits non-zero on the first
// mismatch; prints "ok" at the end.
//   node tests/tools/openai_client.mjs BASE_URL [plain|host]
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import assert from 'node:assert/strict';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', '..', 'artifacts', 'node', 'package.json'));
const { default: OpenAI } = await import(pathToFileURL(require.resolve('openai')).href);

const [baseURL, mode = 'plain'] = process.argv.slice(2);
if (!baseURL) { console.error('usage: openai_client.mjs BASE_URL [plain|host]'); process.exit(2); }
const client = new OpenAI({ baseURL, apiKey: 'none', maxRetries: 0, timeout: 60_000 });
// The step under way, named on failure (a connection the server closes mid-script says where it happened).
let step = 'start';
process.on('exit', code => { if (code !== 0) console.error(`openai_client.mjs: failed during step '${step}' (${mode})`); });

// Models.
step = 'models';
const models = [];
for await (const m of client.models.list()) models.push(m.id);
assert.equal(models.length, 1);
const model = models[0];
assert.equal((await client.models.retrieve(model)).id, model);

// A multi-turn chat with a system message.
step = 'chat';
const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'hello there' },
  { role: 'assistant', content: 'hi' },
  { role: 'user', content: 'tell me more' },
];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
assert.equal(chat.object, 'chat.completion');
assert.equal(chat.choices.length, 1);
assert.equal(chat.choices[0].finish_reason, 'length');
assert.equal(chat.usage.completion_tokens, 8);
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + 8);
const text = chat.choices[0].message.content;

// The same chat streamed, with the usage chunk last.
step = 'chat stream';
const stream = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } });
let streamed = '', usage = null, finish = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  for (const c of chunk.choices) {
    streamed += c.delta?.content ?? '';
    finish = c.finish_reason ?? finish;
  }
  if (chunk.usage) usage = chunk.usage;
}
assert.equal(streamed, text);
assert.equal(finish, 'length');
assert.ok(chunks >= 2);
assert.equal(usage?.completion_tokens, 8);

if (mode === 'plain') {
  // Completions: a batch of prompts with n = 2, echo, logprobs, stop.
  step = 'completions';
  const batch = await client.completions.create({ model, prompt: ['the cat', 'a dog'], n: 2, max_tokens: 6, temperature: 0, logprobs: 2 });
  assert.deepEqual(batch.choices.map(c => c.index), [0, 1, 2, 3]);
  assert.equal(batch.choices[0].text, batch.choices[1].text);
  assert.equal(batch.choices[0].logprobs.tokens.length, 6);
  assert.equal(batch.usage.completion_tokens, 24);
  const echo = await client.completions.create({ model, prompt: 'the cat', max_tokens: 6, temperature: 0, echo: true });
  assert.equal(echo.choices[0].text, 'the cat' + batch.choices[0].text);
  const full = batch.choices[0].text;
  if (full.length >= 3) {
    const stop = full.slice(1, 3);
    const cut = await client.completions.create({ model, prompt: 'the cat', max_tokens: 6, temperature: 0, stop: [stop] });
    assert.equal(cut.choices[0].text, full.slice(0, full.indexOf(stop)));
    assert.equal(cut.choices[0].finish_reason, 'stop');
  }
  // A streamed completion.
  step = 'completion stream';
  let pieces = '';
  for await (const chunk of await client.completions.create({ model, prompt: 'the cat', max_tokens: 6, temperature: 0, stream: true }))
    pieces += chunk.choices[0]?.text ?? '';
  assert.equal(pieces, full);
}

// Errors come as the SDK's classes.
step = 'errors';
await assert.rejects(client.chat.completions.create({ model, messages, max_tokens: 100000 }), e => e instanceof OpenAI.BadRequestError && e.status === 400);
await assert.rejects(client.chat.completions.create({ model, messages: [{ role: 'wizard', content: 'x' }] }), e => e instanceof OpenAI.BadRequestError);
step = 'errors: 413';
await assert.rejects(client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x'.repeat(5_000_000) }] }),
  e => e instanceof OpenAI.APIError && e.status === 413);
step = 'errors: 404';
await assert.rejects(client.models.retrieve('nope'), e => e instanceof OpenAI.NotFoundError);
console.log('ok');
