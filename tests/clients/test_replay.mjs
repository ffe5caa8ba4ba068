// test_replay.mjs: request bodies and call sequences recorded from Open WebUI and SillyTavern
// sources (tests/clients/fixtures/*.json say which file and commit) replayed against a real
// sdserve: /sdapi/v1/options (GET, and POST of the whole dict back), sd-models, samplers,
// schedulers, progress, txt2img, interrupt, img2img; the answers carry what those clients
// parse (images as base64 PNGs with the `parameters` infotext, info as a JSON string).
// A second server with --api-auth checks HTTP Basic as A1111's --api-auth does.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { DATA, fixture, getJson, pngInfo, postJson, startServer } from './helpers.mjs';

let srv;
before(async () => { srv = await startServer(['--workers', '1']); });
after(async () => assert.equal((await srv.stop()).code, 0));

const decode = (b64) => Buffer.from(b64, 'base64');

test('Open WebUI: options round trip, sd-models, txt2img with batch_size 2', async () => {
  const fx = fixture('openwebui.json');
  const auth = { authorization: '' }; // what it sends without API auth
  // get_image_model: options['sd_model_checkpoint']
  const opt = await getJson(srv.base + '/sdapi/v1/options', auth);
  assert.equal(opt.status, 200);
  assert.equal(opt.json.sd_model_checkpoint, 'tiny-sd');
  // set_image_model with another model: the whole dict goes back
  const back = { ...opt.json, sd_model_checkpoint: 'other-model' };
  const post = await postJson(srv.base + '/sdapi/v1/options', back, auth);
  assert.equal(post.status, 200);
  // get_models: title and model_name
  const models = await getJson(srv.base + '/sdapi/v1/sd-models', auth);
  assert.deepEqual(models.json.map((m) => [m.title, m.model_name]), [['tiny-sd', 'tiny-sd']]);
  // the checkpoint stays the loaded one; other posted options are kept
  const opt2 = await getJson(srv.base + '/sdapi/v1/options', auth);
  assert.equal(opt2.json.sd_model_checkpoint, 'tiny-sd');
  assert.equal(opt2.json.samples_format, 'png');

  const res = await postJson(srv.base + '/sdapi/v1/txt2img', fx.txt2img, auth);
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.images.length, 2);
  const info = JSON.parse(res.json.info); // Open WebUI stores res['info'] as it is
  assert.equal(info.all_seeds.length, 2);
  assert.equal(info.all_seeds[1], info.all_seeds[0] + 1);
  assert.equal(info.sampler_name, 'DPM++ 2M Karras');
  res.json.images.forEach((b64, i) => {
    const p = pngInfo(decode(b64));
    assert.deepEqual([p.width, p.height], [64, 64]);
    assert.equal(p.text.parameters, info.infotexts[i]);
    assert.match(p.text.parameters, /^a lighthouse on a cliff at dusk, oil painting\nNegative prompt: blurry, text\nSteps: 6, Sampler: DPM\+\+ 2M Karras, CFG scale: 6\.5, Seed: \d+, Size: 64x64, Model: tiny-sd$/);
  });
  assert.notEqual(res.json.images[0], res.json.images[1]);
  assert.equal(res.json.parameters.batch_size, 2);
  assert.equal(res.json.parameters.n_iter, 1, 'parameters carry A1111 defaults');
});

test('SillyTavern: ping, lists, set-model then progress, get-model, generate', async () => {
  const fx = fixture('sillytavern.json');
  const h = {}; // getBasicAuthHeader('') is not sent as a credential here
  assert.equal((await fetch(srv.base + '/sdapi/v1/options', { headers: h })).status, 200);
  const samplers = (await getJson(srv.base + '/sdapi/v1/samplers')).json.map((x) => x.name);
  for (const s of ['DDIM', 'Euler a', 'Euler', 'DPM++ 2M', 'PLMS']) assert.ok(samplers.includes(s), s);
  const schedulers = (await getJson(srv.base + '/sdapi/v1/schedulers')).json.map((x) => x.name);
  assert.ok(schedulers.includes('normal') && schedulers.includes('karras'));
  const titles = (await getJson(srv.base + '/sdapi/v1/sd-models')).json.map((x) => x.title);
  const set = await postJson(srv.base + '/sdapi/v1/options', { sd_model_checkpoint: titles[0] });
  assert.equal(set.status, 200);
  const prog = (await getJson(srv.base + '/sdapi/v1/progress')).json;
  assert.ok(prog.progress === 0.0 && prog.state.job_count === 0, 'idle: progress 0, job_count 0');
  assert.equal((await getJson(srv.base + '/sdapi/v1/options')).json.sd_model_checkpoint, titles[0]);

  const res = await postJson(srv.base + '/sdapi/v1/txt2img', fx.txt2img);
  assert.equal(res.status, 200, res.text);
  const p = pngInfo(decode(res.json.images[0])); // data.images[0], format png
  assert.deepEqual([p.width, p.height], [64, 64]);
  assert.match(p.text.parameters, /\nSteps: 8, Sampler: DDIM, CFG scale: 7, Seed: \d+, Size: 64x64, Model: tiny-sd$/);

  const res2 = await postJson(srv.base + '/sdapi/v1/txt2img', fx.txt2img_newer);
  assert.equal(res2.status, 200, res2.text);
  const info = JSON.parse(res2.json.info);
  assert.equal(info.seed, 77);
  assert.equal(info.sampler_name, 'Euler a');
  const p2 = pngInfo(decode(res2.json.images[0]));
  assert.deepEqual([p2.width, p2.height], [64, 48]);
  assert.match(p2.text.parameters, /Seed: 77, Size: 64x48/);
  // a fixed seed gives the same image again
  const res3 = await postJson(srv.base + '/sdapi/v1/txt2img', fx.txt2img_newer);
  assert.equal(res3.json.images[0], res2.json.images[0]);
});

test('A1111 defaults (Euler a, cfg 7), n_iter, sizes rounded down to multiples of 8', async () => {
  const r = await postJson(srv.base + '/sdapi/v1/txt2img', { steps: 2, n_iter: 2, seed: 5,
    width: 70, height: 50, unknown_field: { any: 'thing' } });
  assert.equal(r.status, 200, r.text);
  const info = JSON.parse(r.json.info);
  assert.deepEqual(info.all_seeds, [5, 6]);
  assert.equal(r.json.images.length, 2);
  const p = pngInfo(decode(r.json.images[0]));
  assert.deepEqual([p.width, p.height], [64, 48], 'sizes round down to multiples of 8');
  assert.match(p.text.parameters, /^Steps: 2, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x48,/);
  const bad = await postJson(srv.base + '/sdapi/v1/txt2img', { sampler_name: 'Nonexistent' });
  assert.equal(bad.status, 422);
  assert.match(bad.json.detail, /sampler 'Nonexistent' is not available/);
});

test('progress while running, then interrupt: the request answers early', async () => {
  const long = postJson(srv.base + '/sdapi/v1/txt2img', { prompt: 'long', steps: 150,
    width: 256, height: 256, seed: 3 });
  let prog;
  for (let i = 0; i < 100; i++) {
    prog = (await getJson(srv.base + '/sdapi/v1/progress')).json;
    if (prog.state.sampling_step > 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(prog.state.job_count, 1);
  assert.equal(prog.state.sampling_steps, 150);
  assert.ok(prog.progress > 0 && prog.progress < 1, String(prog.progress));
  const t0 = Date.now();
  const intr = await fetch(srv.base + '/sdapi/v1/interrupt', { method: 'POST' });
  assert.equal(intr.status, 200);
  const res = await long;
  assert.equal(res.status, 200);
  assert.deepEqual(res.json.images, []);
  assert.ok(Date.now() - t0 < 5000, 'stopped within a few steps');
  const idle = (await getJson(srv.base + '/sdapi/v1/progress')).json;
  assert.equal(idle.state.job_count, 0);
});

test('img2img: init image as a data: URL of another size is resized (Lanczos)', async () => {
  const png = fs.readFileSync(path.join(DATA, 'canny', 'stripes_80x48.png')).toString('base64');
  const body = { init_images: ['data:image/png;base64,' + png], prompt: 'stripes', steps: 4,
    width: 64, height: 48, seed: 11, denoising_strength: 0.5, sampler_name: 'DDIM' };
  const r = await postJson(srv.base + '/sdapi/v1/img2img', body);
  assert.equal(r.status, 200, r.text);
  const p = pngInfo(decode(r.json.images[0]));
  assert.deepEqual([p.width, p.height], [64, 48]);
  assert.match(p.text.parameters, /Denoising strength: 0\.5/);
  assert.equal(JSON.parse(r.json.info).infotexts[0], p.text.parameters);
  assert.equal(r.json.parameters.init_images, null);
  const again = await postJson(srv.base + '/sdapi/v1/img2img', body);
  assert.equal(again.json.images[0], r.json.images[0]);
  const none = await postJson(srv.base + '/sdapi/v1/img2img', { prompt: 'x' });
  assert.equal(none.status, 422);
});

test('--api-auth: HTTP Basic as A1111 (Open WebUI and SillyTavern headers)', async () => {
  const a = await startServer(['--api-auth', 'owui:s3cret,tavern:pw']);
  try {
    const basic = (s) => ({ authorization: 'Basic ' + Buffer.from(s).toString('base64') });
    assert.equal((await fetch(a.base + '/sdapi/v1/options', { headers: { authorization: '' } })).status, 401);
    const no = await fetch(a.base + '/sdapi/v1/options');
    assert.equal(no.status, 401);
    assert.match(no.headers.get('www-authenticate'), /^Basic/);
    assert.equal((await fetch(a.base + '/sdapi/v1/options', { headers: basic('owui:wrong') })).status, 401);
    assert.equal((await fetch(a.base + '/sdapi/v1/options', { headers: basic('owui:s3cret') })).status, 200);
    const r = await postJson(a.base + '/sdapi/v1/txt2img', { prompt: 'x', steps: 2, width: 64,
      height: 64 }, basic('tavern:pw'));
    assert.equal(r.status, 200);
    assert.equal((await fetch(a.base + '/', {})).status, 200, 'the page itself is public');
    assert.equal((await fetch(a.base + '/healthz')).status, 200);
  } finally {
    assert.equal((await a.stop()).code, 0);
  }
});
