// test_openai.mjs: the `openai` npm package (from the npm registry) against a real sdserve:
// a minimal call (only a prompt), n: 2, b64_json and url, extra fields honoured (seed, steps,
// sampler...), streaming (image_generation.partial_image / .completed events), OpenAI-shaped
// errors, and a 503 + Retry-After from a full queue retried by the client until it succeeds.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import OpenAI from 'openai';

import { getJson, pngInfo, postJson, startServer } from './helpers.mjs';

let srv, client;
before(async () => {
  // one worker, a queue of one, Retry-After 1 s: the 503 test fills the queue
  srv = await startServer(['--workers', '1', '--queue', '1', '--retry-after-s', '1']);
  client = new OpenAI({ apiKey: 'unused', baseURL: srv.base + '/v1', maxRetries: 5 });
});
after(async () => {
  const st = await srv.stop();
  assert.equal(st.code, 0, 'sdserve exits 0 on SIGTERM');
});

const png = (b64) => pngInfo(Buffer.from(b64, 'base64'));

test('minimal call: only a prompt, b64_json by default, the model\'s native size', async () => {
  const res = await client.images.generate({ prompt: 'a red circle' });
  assert.equal(res.data.length, 1);
  assert.ok(res.created > 1.6e9, 'created is a unix time');
  const info = png(res.data[0].b64_json);
  assert.deepEqual([info.width, info.height], [64, 64]);
  assert.match(info.text.parameters, /^a red circle\nSteps: 20, Sampler: Euler a/);
});

test('n: 2 with extra fields: two distinct images, seeds seed and seed + 1', async () => {
  const res = await client.images.generate({ prompt: 'two', n: 2, size: '64x48',
    seed: 1234, steps: 3, cfg_scale: 5, sampler: 'ddim', negative_prompt: 'blur' });
  assert.equal(res.data.length, 2);
  assert.notEqual(res.data[0].b64_json, res.data[1].b64_json);
  const a = png(res.data[0].b64_json), b = png(res.data[1].b64_json);
  assert.deepEqual([a.width, a.height], [64, 48]);
  assert.match(a.text.parameters, /Negative prompt: blur\nSteps: 3, Sampler: DDIM, CFG scale: 5, Seed: 1234,/);
  assert.match(b.text.parameters, /Seed: 1235,/);
  // the same request again: the same bytes (seeded)
  const again = await client.images.generate({ prompt: 'two', n: 1, size: '64x48',
    seed: 1234, steps: 3, cfg_scale: 5, sampler: 'ddim', negative_prompt: 'blur' });
  assert.equal(again.data[0].b64_json, res.data[0].b64_json);
});

test('response_format url: a short-lived URL serving the same PNG', async () => {
  const b = await client.images.generate({ prompt: 'u', size: '64x64', seed: 7, steps: 2 });
  const u = await client.images.generate({ prompt: 'u', size: '64x64', seed: 7, steps: 2,
    response_format: 'url' });
  assert.match(u.data[0].url, /^http:\/\/127\.0\.0\.1:\d+\/v1\/images\/results\/[0-9a-f]{32}\.png$/);
  const r = await fetch(u.data[0].url);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'image/png');
  assert.equal(Buffer.from(await r.arrayBuffer()).toString('base64'), b.data[0].b64_json);
  const missing = await fetch(srv.base + '/v1/images/results/' + '0'.repeat(32) + '.png');
  assert.equal(missing.status, 404);
});

test('stream: partial images then one completed event with the final PNG', async () => {
  const stream = await client.images.generate({ prompt: 's', size: '64x64', seed: 9, steps: 6,
    stream: true, partial_images: 2 });
  const events = [];
  for await (const ev of stream) events.push(ev);
  assert.deepEqual(events.map((e) => e.type), ['image_generation.partial_image',
    'image_generation.partial_image', 'image_generation.completed']);
  assert.deepEqual(events.slice(0, 2).map((e) => e.partial_image_index), [0, 1]);
  for (const e of events) png(e.b64_json); // every one a PNG
  const plain = await client.images.generate({ prompt: 's', size: '64x64', seed: 9, steps: 6 });
  assert.equal(events[2].b64_json, plain.data[0].b64_json, 'the streamed image is the same');
  // without /v1, too
  const r = await postJson(srv.base + '/images/generations', { prompt: 's', size: '64x64',
    seed: 9, steps: 6 });
  assert.equal(r.status, 200);
  assert.equal(r.json.data[0].b64_json, plain.data[0].b64_json);
});

test('errors are OpenAI-shaped and raised by the client', async () => {
  await assert.rejects(client.images.generate({ prompt: 'x', size: 'big' }), (e) => {
    assert.equal(e.status, 422);
    assert.equal(e.error.type, 'invalid_request_error');
    assert.equal(e.param, 'size');
    assert.equal(e.code, 'invalid_value');
    return true;
  });
  const r = await postJson(srv.base + '/v1/images/generations', { n: 1 });
  assert.equal(r.status, 422);
  assert.deepEqual(Object.keys(r.json.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(r.json.error.param, 'prompt');
  const models = await getJson(srv.base + '/v1/models');
  assert.equal(models.json.data[0].id, 'tiny-sd');
});

test('503 + Retry-After from a full queue is retried by the client', async () => {
  const metric = async () => {
    const t = await (await fetch(srv.base + '/metrics')).text();
    const m = t.match(/sdserve_requests_total\{route="compat",outcome="503"\} (\d+)/);
    return m ? Number(m[1]) : 0;
  };
  const before503 = await metric();
  // a running job and a queued one fill the single worker and the queue of one; each runs
  // for about two seconds here (60 steps at 256x256), far longer than the 0.5 s set-up below
  const body = { prompt: 'blocker', width: 256, height: 256, steps: 60, seed: 1 };
  const running = postJson(srv.base + '/generate', body);
  await new Promise((r) => setTimeout(r, 300));
  const queued = postJson(srv.base + '/generate', body);
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  const res = await client.images.generate({ prompt: 'patient', size: '64x64', steps: 2 });
  const waited = Date.now() - t0;
  assert.equal(res.data.length, 1);
  assert.ok((await metric()) > before503, 'the server answered 503 at least once');
  assert.ok(waited >= 900, `the client waited Retry-After (1 s) before retrying (${waited} ms)`);
  assert.equal((await running).status, 200);
  assert.equal((await queued).status, 200);
});

test('--api-key: the client\'s Bearer key is checked (401 raised as AuthenticationError)', async () => {
  const k = await startServer(['--api-key', 'sk-test-123']);
  try {
    const good = new OpenAI({ apiKey: 'sk-test-123', baseURL: k.base + '/v1', maxRetries: 0 });
    const res = await good.images.generate({ prompt: 'k', size: '64x64', steps: 2 });
    assert.equal(res.data.length, 1);
    const bad = new OpenAI({ apiKey: 'sk-wrong', baseURL: k.base + '/v1', maxRetries: 0 });
    await assert.rejects(bad.images.generate({ prompt: 'k' }), (e) => {
      assert.equal(e.status, 401);
      assert.equal(e.constructor.name, 'AuthenticationError');
      assert.equal(e.error.type, 'invalid_request_error');
      return true;
    });
  } finally {
    assert.equal((await k.stop()).code, 0);
  }
});
