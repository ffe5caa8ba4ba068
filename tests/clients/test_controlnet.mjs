// test_controlnet.mjs: A1111 ControlNet units (alwayson_scripts.controlnet.args, as the
// ControlNet extension's API takes them) steer the image exactly like the native API's
// control fields: same seed and parameters give the same PNG bytes. Also: the script key in
// any case, enums as strings or ints, legacy aliases (input_image, guidance), disabled units
// and an empty args list, save_detected_map, the extension's model_list/module_list.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ARTIFACTS, DATA, getJson, pngInfo, postJson, startServer } from './helpers.mjs';

let srv;
before(async () => { srv = await startServer(['--workers', '1']); });
after(async () => assert.equal((await srv.stop()).code, 0));

const shapes = fs.readFileSync(path.join(DATA, 'canny', 'shapes_96x96.png')).toString('base64');
const base = { prompt: 'shapes', negative_prompt: 'noise', seed: 4242, steps: 5, cfg_scale: 6,
  width: 64, height: 64 };

async function native(control) {
  const r = await fetch(srv.base + '/generate', { method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ...base, sampler: 'euler_a', control }) });
  assert.equal(r.status, 200, await r.clone().text());
  return Buffer.from(await r.arrayBuffer());
}

async function a1111(extra) {
  const r = await postJson(srv.base + '/sdapi/v1/txt2img', { ...base, sampler_name: 'Euler a',
    ...extra });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

test('the extension\'s lists name the loaded net and the modules', async () => {
  assert.deepEqual((await getJson(srv.base + '/controlnet/model_list')).json,
    { model_list: ['controlnet'] });
  const mods = (await getJson(srv.base + '/controlnet/module_list')).json.module_list;
  assert.ok(mods.includes('canny') && mods.includes('none'));
});

test('a canny unit gives the same PNG as the native control fields', async () => {
  const want = await native({ image: shapes, preprocess: 'canny', low_threshold: 50,
    high_threshold: 150, scale: 0.8, start: 0.1, end: 0.9, model: 'controlnet' });
  const got = await a1111({ alwayson_scripts: { ControlNet: { args: [
    { enabled: true, input_image: 'data:image/png;base64,' + shapes, module: 'canny',
      model: 'controlnet [a1b2c3d4]', weight: 0.8, guidance_start: 0.1, guidance_end: 0.9,
      threshold_a: 50, threshold_b: 150, processor_res: 512, resize_mode: 'Just Resize',
      control_mode: 'Balanced', pixel_perfect: false, lowvram: false, save_detected_map: true },
    { enabled: false, image: 'not even base64', module: 'depth' },
  ] } } });
  assert.equal(got.images.length, 2, 'the image, then the detected map');
  const img = Buffer.from(got.images[0], 'base64');
  fs.writeFileSync(path.join(ARTIFACTS, 'controlnet_a1111.png'), img);
  fs.writeFileSync(path.join(ARTIFACTS, 'controlnet_native.png'), want);
  assert.ok(img.equals(want), 'A1111 unit and native control: identical PNG bytes');
  assert.match(pngInfo(img).text.parameters, /ControlNet 0: "Module: none, Model: controlnet, Weight: 0\.8, Guidance Start: 0\.1, Guidance End: 0\.9"/);
  const map = pngInfo(Buffer.from(got.images[1], 'base64'));
  assert.deepEqual([map.width, map.height], [96, 96], 'the Canny map at the input\'s size');
  // without the unit the image differs: the ControlNet did steer it
  const plain = Buffer.from((await a1111({})).images[0], 'base64');
  assert.ok(!plain.equals(img));
});

test('module none, image as {image, mask}, int enums, legacy guidance, key in lower case', async () => {
  const want = await native({ image: shapes, preprocess: 'none', scale: 1.2, end: 0.5 });
  const got = await a1111({ alwayson_scripts: { controlnet: { args: [
    { image: { image: shapes, mask: null }, module: 'none', model: 'controlnet', weight: 1.2,
      guidance: 0.5, resize_mode: 1, control_mode: 0 },
  ] } } });
  assert.equal(got.images.length, 1);
  assert.ok(Buffer.from(got.images[0], 'base64').equals(want));
});

test('an empty args list or only disabled units: the plain image', async () => {
  const plain = await native(undefined);
  for (const args of [[], [{ enabled: false, image: shapes, module: 'canny' }]]) {
    const got = await a1111({ alwayson_scripts: { controlnet: { args } } });
    assert.ok(Buffer.from(got.images[0], 'base64').equals(plain), JSON.stringify(args));
  }
});

test('unsupported modules, modes and unknown nets are 422, not silently ignored', async () => {
  const unit = { image: shapes, module: 'canny', model: 'controlnet' };
  for (const bad of [{ module: 'depth_midas' }, { control_mode: 'ControlNet is more important' },
    { model: 'control_sd15_openpose' }, { resize_mode: 'Stretch' }]) {
    const r = await postJson(srv.base + '/sdapi/v1/txt2img', { ...base,
      alwayson_scripts: { controlnet: { args: [{ ...unit, ...bad }] } } });
    assert.equal(r.status, 422, JSON.stringify(bad) + ' ' + r.text);
  }
});
