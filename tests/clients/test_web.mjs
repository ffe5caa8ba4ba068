// test_web.mjs: the web page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core from npm): load it, type a prompt, draw an edge map with the mouse,
// generate, watch the progress bar move and the image appear (with its parameters, download
// link and history entry); the photo -> Canny path, and the page's JS Canny against OpenCV's
// output in tests/data/canny. Screenshots go to $SD_ARTIFACTS (under the meson build dir).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { ARTIFACTS, DATA, startServer } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
let srv, browser, page;
const requests = [];

before(async () => {
  srv = await startServer(['--workers', '1']);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on('request', (r) => { if (r.url().endsWith('/generate')) requests.push(r.postData()); });
  page.on('pageerror', (e) => { throw e; });
});
after(async () => {
  await browser?.close();
  assert.equal((await srv.stop()).code, 0);
});

const shot = (name) => page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });

test('load: model, samplers and sizes come from the server', async () => {
  await page.goto(srv.base + '/');
  await page.waitForFunction(() => document.getElementById('model').textContent.includes('tiny-sd'));
  // the sampler names come from a second request, answered after the model's
  await page.waitForFunction(() => [...document.querySelectorAll('#sampler option')]
    .some((o) => o.textContent === 'Euler a'));
  const samplers = await page.$$eval('#sampler option', (o) => o.map((x) => x.textContent));
  assert.ok(samplers.includes('Euler a') && samplers.includes('DDIM'), samplers.join());
  assert.equal(await page.inputValue('#sampler'), 'euler_a');
  assert.equal(await page.inputValue('#width'), '64');
  await shot('web_1_loaded.png');
});

test('draw an edge map, generate: the progress bar moves, the image appears', async () => {
  await page.fill('#prompt', 'a white ring on black');
  await page.fill('#seed', '31337');
  await page.fill('#steps', '16');
  await page.selectOption('#width', '256');
  await page.selectOption('#height', '256');
  // a closed stroke on the edge canvas
  const box = await page.locator('#edges').boundingBox();
  const cx = box.x + box.width / 2, cy = box.y + box.height / 2;
  await page.mouse.move(cx + 60, cy);
  await page.mouse.down();
  for (let a = 0; a <= 2 * Math.PI + 0.1; a += 0.2)
    await page.mouse.move(cx + 60 * Math.cos(a), cy + 60 * Math.sin(a), { steps: 2 });
  await page.mouse.up();
  assert.equal(await page.isChecked('#use-control'), true, 'drawing turns the edge map on');
  const white = await page.evaluate(() => {
    const d = document.getElementById('edges').getContext('2d').getImageData(0, 0, 256, 256).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) n += d[i] > 128;
    return n;
  });
  assert.ok(white > 500, `the stroke is on the canvas (${white} white pixels)`);
  // record the bar's widths as they change
  await page.evaluate(() => {
    window.widths = [];
    new MutationObserver(() => window.widths.push(parseFloat(document.getElementById('bar').style.width)))
      .observe(document.getElementById('bar'), { attributes: true });
  });
  await page.click('#generate');
  await page.waitForFunction(() => window.widths.some((w) => w > 0 && w < 100));
  await shot('web_2_progress.png');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('Done'),
    null, { timeout: 60000 });
  await shot('web_3_done.png');
  const widths = await page.evaluate(() => window.widths);
  const mid = [...new Set(widths.filter((w) => w > 0 && w < 100))];
  assert.ok(mid.length >= 3, `the bar moved through several steps: ${widths.join(' ')}`);
  assert.equal(widths[widths.length - 1], 100);
  const body = JSON.parse(requests[requests.length - 1]);
  assert.equal(body.stream, true);
  assert.match(body.control.image, /^data:image\/png;base64,/, 'the edge map goes as control.image');
  assert.equal(body.control.preprocess, 'none');
  assert.equal(await page.getAttribute('#image', 'hidden'), null);
  assert.match(await page.getAttribute('#image', 'src'), /^blob:/);
  const natural = await page.$eval('#image', (i) => [i.naturalWidth, i.naturalHeight]);
  assert.deepEqual(natural, [256, 256]);
  assert.match(await page.textContent('#params'), /seed: 31337/);
  assert.equal(await page.getAttribute('#download', 'download'), 'sdserve-31337.png');
  assert.equal(await page.locator('#history img').count(), 1);
  // the same request through the API gives the same image as the page showed
  const shown = await page.evaluate(async () => {
    const b = await (await fetch(document.getElementById('image').src)).arrayBuffer();
    return Array.from(new Uint8Array(b));
  });
  const r = await fetch(srv.base + '/generate', { method: 'POST',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...body, stream: false }) });
  assert.equal(r.status, 200);
  const api = Buffer.from(await r.arrayBuffer());
  assert.ok(api.equals(Buffer.from(shown)),
    'the page shows the PNG the API makes for the same request');
});

test('photo -> Canny: thresholds re-run the edge map; the dice picks a seed', async () => {
  await page.click('#mode-photo');
  await page.locator('#lo').fill('20');
  await page.locator('#hi').fill('60');
  await page.setInputFiles('#photo', path.join(DATA, 'canny', 'blurred_shapes_64x64.png'));
  const count = () => page.evaluate(() => {
    const d = document.getElementById('edges').getContext('2d').getImageData(0, 0, 256, 256).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) n += d[i] === 255;
    return n;
  });
  await page.waitForFunction(() => {
    const d = document.getElementById('edges').getContext('2d').getImageData(0, 0, 256, 256).data;
    return d.some((v, i) => i % 4 === 0 && v === 255);
  });
  const n1 = await count();
  await page.locator('#lo').fill('3');
  await page.locator('#hi').fill('9');
  assert.equal(await page.textContent('#lo-out'), '3');
  const n2 = await count();
  assert.ok(n1 > 50 && n2 > n1, `lower thresholds find more edges (${n1} -> ${n2})`);
  await shot('web_4_canny.png');
  await page.click('#dice');
  const seed = Number(await page.inputValue('#seed'));
  assert.ok(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32);
});

test('the page\'s Canny is OpenCV\'s on the golden inputs (every pixel)', async () => {
  // GOLDEN.md: tests/data/canny/*_canny_LO_HI.png are cv2.Canny(img, LO, HI) outputs.
  for (const [name, lo, hi] of [['shapes_96x96', 100, 200], ['stripes_80x48', 50, 150],
    ['blurred_shapes_64x64', 100, 200], ['noise_64x64', 50, 150], ['gradients_64x64', 100, 200],
    ['isoluminant_64x64', 50, 150]]) {
    const load = (f) => 'data:image/png;base64,' +
      fs.readFileSync(path.join(DATA, 'canny', f)).toString('base64');
    const res = await page.evaluate(async ([src, want, lo, hi]) => {
      const pixels = async (url) => {
        const img = new Image();
        img.src = url;
        await img.decode();
        const c = new OffscreenCanvas(img.naturalWidth, img.naturalHeight);
        const x = c.getContext('2d');
        x.drawImage(img, 0, 0);
        return [x.getImageData(0, 0, c.width, c.height).data, c.width, c.height];
      };
      const [rgba, w, h] = await pixels(src);
      const [ref] = await pixels(want);
      const e = canny(rgba, w, h, lo, hi);
      let diff = 0;
      for (let i = 0; i < w * h; i++) diff += (e[i] > 0) !== (ref[4 * i] > 0);
      return { diff, n: w * h };
    }, [load(name + '.png'), load(`${name}_canny_${lo}_${hi}.png`), lo, hi]);
    assert.equal(res.diff, 0, `${name}: ${res.diff} of ${res.n} pixels differ`);
  }
});
