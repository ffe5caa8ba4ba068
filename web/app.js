// sdserve's page: talks to POST /generate with "stream": true and reads its Server-Sent
// Events (queued, progress with a small preview, done, error) from the fetch body. The edge
// map is drawn on a canvas or derived from a photo by the Canny below (OpenCV's cv2.Canny)
// and sent as control.image (PNG) with preprocess "none". Plain browser JavaScript: no build
// step, no framework.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { controlnets: [], mode: 'draw', photo: null, busy: false, history: [] };

function headers(json) {
  const h = {};
  if (json) h['Content-Type'] = 'application/json';
  const key = $('apikey').value.trim();
  if (key) h.Authorization = 'Bearer ' + key;
  return h;
}

function setStatus(text, isError) {
  $('status').textContent = text;
  $('status').className = isError ? 'error' : 'muted';
}

// ---- server info: model, samplers, sizes, ControlNets ----------------------------------------

async function loadInfo() {
  try {
    const r = await fetch('/v1/models', { headers: headers(false) });
    if (!r.ok) throw new Error('GET /v1/models: ' + r.status);
    const m = (await r.json()).data[0];
    $('model').textContent = 'model ' + m.id + (m.controlnets.length ? ' · ControlNet ' +
      m.controlnets.join(', ') : '');
    state.controlnets = m.controlnets;
    fillSizes(m.native_width, m.native_height);
    let samplers = m.samplers.map((n) => ({ value: n, text: n }));
    const rs = await fetch('/sdapi/v1/samplers', { headers: headers(false) });
    if (rs.ok) samplers = (await rs.json()).map((s) => ({ value: s.aliases[0], text: s.name }));
    const sel = $('sampler');
    sel.innerHTML = '';
    for (const s of samplers) sel.add(new Option(s.text, s.value, false, s.value === 'euler_a'));
    $('use-control').disabled = !m.controlnets.length;
    if (!m.controlnets.length) $('use-control').parentElement.title = 'no ControlNet loaded';
  } catch (e) {
    $('model').textContent = 'server not reachable (' + e.message + ')';
  }
}

function fillSizes(nw, nh) {
  const sizes = new Set([nw, nh, 64, 128, 256, 384, 512, 640, 768]);
  for (const [id, def] of [['width', nw], ['height', nh]]) {
    const sel = $(id);
    sel.innerHTML = '';
    for (const v of [...sizes].sort((a, b) => a - b))
      sel.add(new Option(String(v), String(v), false, v === def));
  }
}

// ---- the edge-map canvas ---------------------------------------------------------------------

const canvas = $('edges');
const ctx = canvas.getContext('2d', { willReadFrequently: true });

function clearCanvas() {
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
}

let drawing = false;
let last = null;
function pos(ev) {
  const r = canvas.getBoundingClientRect();
  return [(ev.clientX - r.left) * canvas.width / r.width,
    (ev.clientY - r.top) * canvas.height / r.height];
}
canvas.addEventListener('pointerdown', (ev) => {
  if (state.mode !== 'draw') return;
  drawing = true;
  last = pos(ev);
  canvas.setPointerCapture(ev.pointerId);
  $('use-control').checked = !$('use-control').disabled;
});
canvas.addEventListener('pointermove', (ev) => {
  if (!drawing) return;
  const p = pos(ev);
  ctx.strokeStyle = '#fff';
  ctx.lineWidth = 3;
  ctx.lineCap = 'round';
  ctx.beginPath();
  ctx.moveTo(last[0], last[1]);
  ctx.lineTo(p[0], p[1]);
  ctx.stroke();
  last = p;
});
for (const t of ['pointerup', 'pointercancel', 'pointerleave']) canvas.addEventListener(t, () => {
  drawing = false;
});

function setMode(mode) {
  state.mode = mode;
  $('mode-draw').classList.toggle('active', mode === 'draw');
  $('mode-photo').classList.toggle('active', mode === 'photo');
  $('photo-tools').hidden = mode !== 'photo';
  if (mode === 'photo') runCanny();
}
$('mode-draw').onclick = () => { setMode('draw'); clearCanvas(); };
$('mode-photo').onclick = () => setMode('photo');
$('clear').onclick = () => { clearCanvas(); state.photo = null; };

$('photo').addEventListener('change', () => {
  const f = $('photo').files[0];
  if (!f) return;
  const img = new Image();
  img.onload = () => {
    state.photo = img;
    $('use-control').checked = !$('use-control').disabled;
    runCanny();
  };
  img.src = URL.createObjectURL(f);
});
for (const id of ['lo', 'hi', 'scale']) $(id).addEventListener('input', () => {
  $(id + '-out').textContent = $(id).value;
  if (id !== 'scale') runCanny();
});

// Canny on the photo drawn into the canvas (fit, centred), thresholds from the sliders.
function runCanny() {
  if (!state.photo) return;
  const w = canvas.width, h = canvas.height, img = state.photo;
  const s = Math.min(w / img.naturalWidth, h / img.naturalHeight);
  const dw = img.naturalWidth * s, dh = img.naturalHeight * s;
  clearCanvas();
  ctx.drawImage(img, (w - dw) / 2, (h - dh) / 2, dw, dh);
  const px = ctx.getImageData(0, 0, w, h);
  const edges = canny(px.data, w, h, +$('lo').value, +$('hi').value);
  for (let i = 0; i < w * h; i++) {
    const v = edges[i];
    px.data[4 * i] = px.data[4 * i + 1] = px.data[4 * i + 2] = v;
    px.data[4 * i + 3] = 255;
  }
  ctx.putImageData(px, 0, 0);
}

// rgba: w*h*4 bytes. Returns w*h bytes, 255 on edges. OpenCV's cv2.Canny on the RGB image
// (aperture 3, L1 gradient): 3x3 Sobel per channel with replicated borders, each pixel
// keeps the channel of largest |dx| + |dy|; non-maximum suppression in 4 sectors (zero
// magnitude outside the image); hysteresis from the pixels above hi through those above lo.
function canny(rgba, w, h, lo, hi) {
  const mag = new Float32Array(w * h), dx = new Float32Array(w * h), dy = new Float32Array(w * h);
  const px = (x, y, c) => rgba[4 * (Math.min(h - 1, Math.max(0, y)) * w +
    Math.min(w - 1, Math.max(0, x))) + c];
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = y * w + x;
    for (let c = 0; c < 3; c++) {
      const gx = -px(x - 1, y - 1, c) - 2 * px(x - 1, y, c) - px(x - 1, y + 1, c) +
        px(x + 1, y - 1, c) + 2 * px(x + 1, y, c) + px(x + 1, y + 1, c);
      const gy = -px(x - 1, y - 1, c) - 2 * px(x, y - 1, c) - px(x + 1, y - 1, c) +
        px(x - 1, y + 1, c) + 2 * px(x, y + 1, c) + px(x + 1, y + 1, c);
      const m = Math.abs(gx) + Math.abs(gy);
      if (c === 0 || m > mag[i]) { mag[i] = m; dx[i] = gx; dy[i] = gy; }
    }
  }
  const M = (x, y) => (x < 0 || y < 0 || x >= w || y >= h ? 0 : mag[y * w + x]);
  const TAN22 = 0.4142135623730951;
  const cls = new Uint8Array(w * h); // 0 none, 1 weak, 2 strong
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = y * w + x, m = mag[i];
    if (m <= lo) continue;
    const ax = Math.abs(dx[i]), ay = Math.abs(dy[i]);
    let keep;
    if (ay < ax * TAN22) keep = m > M(x - 1, y) && m >= M(x + 1, y);
    else if (ay > ax * (TAN22 + 2)) keep = m > M(x, y - 1) && m >= M(x, y + 1);
    else {
      const s = (dx[i] < 0) !== (dy[i] < 0) ? -1 : 1;
      keep = m > M(x - s, y - 1) && m > M(x + s, y + 1);
    }
    if (keep) cls[i] = m > hi ? 2 : 1;
  }
  const out = new Uint8Array(w * h), stack = [];
  for (let i = 0; i < w * h; i++) if (cls[i] === 2) { out[i] = 255; stack.push(i); }
  while (stack.length) {
    const i = stack.pop(), x = i % w, y = (i - x) / w;
    for (let oy = -1; oy <= 1; oy++) for (let ox = -1; ox <= 1; ox++) {
      const nx = x + ox, ny = y + oy;
      if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
      const j = ny * w + nx;
      if (cls[j] === 1 && !out[j]) { out[j] = 255; stack.push(j); }
    }
  }
  return out;
}

// ---- generation ------------------------------------------------------------------------------

$('dice').onclick = () => { $('seed').value = Math.floor(Math.random() * 4294967296); };

function request() {
  const body = {
    prompt: $('prompt').value,
    negative_prompt: $('negative').value,
    seed: Number($('seed').value),
    steps: Number($('steps').value),
    cfg_scale: Number($('cfg').value),
    sampler: $('sampler').value || 'euler_a',
    width: Number($('width').value),
    height: Number($('height').value),
    stream: true,
  };
  if ($('use-control').checked && state.controlnets.length)
    body.control = { image: canvas.toDataURL('image/png'), preprocess: 'none',
      scale: Number($('scale').value) };
  return body;
}

// Yields {event, data} from an SSE response body.
async function* events(body) {
  const reader = body.getReader(), dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, k);
      buf = buf.slice(k + 2);
      let event = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      yield { event, data: data ? JSON.parse(data) : null };
    }
  }
}

function showResult(b64, params, seed) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([bytes], { type: 'image/png' }));
  const img = $('image');
  $('placeholder').hidden = true;
  img.classList.remove('preview');
  img.src = url;
  img.hidden = false;
  const p = Object.assign({}, params, { seed: seed });
  delete p.seed_str;
  $('params').textContent = Object.entries(p)
    .filter(([, v]) => typeof v !== 'object')
    .map(([k, v]) => k + ': ' + v).join('\n');
  const a = $('download');
  a.href = url;
  a.download = 'sdserve-' + seed + '.png';
  a.hidden = false;
  const thumb = new Image();
  thumb.src = url;
  thumb.title = (params.prompt || '') + ' (seed ' + seed + ')';
  thumb.onclick = () => showResult(b64, params, seed);
  state.history.unshift(seed);
  $('history').prepend(thumb);
}

async function generate(ev) {
  ev.preventDefault();
  if (state.busy) return;
  state.busy = true;
  $('generate').disabled = true;
  $('bar').style.width = '0%';
  $('params').textContent = '';
  $('download').hidden = true;
  setStatus('Sending…');
  localStorage.setItem('sdserve.apikey', $('apikey').value);
  try {
    const r = await fetch('/generate', { method: 'POST', headers: headers(true),
      body: JSON.stringify(request()) });
    if (!r.ok) {
      let msg = r.status + ' ' + r.statusText;
      try { msg = (await r.json()).error.message; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    for await (const { event, data } of events(r.body)) {
      if (event === 'queued') {
        setStatus('Queued (position ' + data.position + ')…');
      } else if (event === 'progress') {
        $('bar').style.width = (100 * data.step / data.total).toFixed(1) + '%';
        setStatus('Step ' + data.step + ' / ' + data.total);
        if (data.preview) {
          const img = $('image');
          $('placeholder').hidden = true;
          img.classList.add('preview');
          img.src = 'data:image/png;base64,' + data.preview;
          img.hidden = false;
        }
      } else if (event === 'done') {
        $('bar').style.width = '100%';
        showResult(data.image, data.parameters || {}, data.seed_str || data.seed);
        setStatus('Done: seed ' + (data.seed_str || data.seed) + '.');
      } else if (event === 'error') {
        throw new Error(data.error ? data.error.message : 'generation failed');
      }
    }
  } catch (e) {
    setStatus('Error: ' + e.message, true);
  } finally {
    state.busy = false;
    $('generate').disabled = false;
  }
}

$('form').addEventListener('submit', generate);
$('apikey').value = localStorage.getItem('sdserve.apikey') || '';
$('apikey').addEventListener('change', () => {
  localStorage.setItem('sdserve.apikey', $('apikey').value);
  loadInfo();
});
clearCanvas();
loadInfo();
