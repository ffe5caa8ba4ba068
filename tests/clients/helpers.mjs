// helpers.mjs: start a real `sdserve serve` (the tiny test model and its ControlNet) on a
// free loopback port for one test file, and small HTTP helpers. The binary, data and
// artifact paths come from the environment set by tests/clients/run.sh (meson).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const SDSERVE = process.env.SDSERVE;
export const DATA = process.env.SD_TEST_DATA;
export const ARTIFACTS = process.env.SD_ARTIFACTS || '.';
export const MODEL = path.join(DATA, 'models', 'tiny-sd');
export const CONTROLNET = path.join(MODEL, 'controlnet');

async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = srv.address().port;
  srv.close();
  await once(srv, 'close');
  return port;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Starts the server; resolves to {base, port, stop(), log()} once /readyz answers 200.
export async function startServer(extra = []) {
  const port = await freePort();
  const logPath = path.join(ARTIFACTS, `server-${port}.log`);
  const out = fs.openSync(logPath, 'w');
  const child = spawn(SDSERVE, ['serve', '--model', MODEL, '--controlnet', CONTROLNET,
    '--host', '127.0.0.1', '--port', String(port), ...extra], { stdio: ['ignore', out, out] });
  const base = `http://127.0.0.1:${port}`;
  const log = () => fs.readFileSync(logPath, 'utf8');
  let exited = null;
  child.on('exit', (code, sig) => { exited = { code, sig }; });
  for (let i = 0; i < 300 && !exited; i++) {
    try {
      const r = await fetch(base + '/readyz');
      if (r.status === 200) break;
    } catch (e) { /* not listening yet */ }
    await sleep(100);
  }
  if (exited) throw new Error('sdserve exited at start:\n' + log());
  const stop = async () => {
    if (exited) return exited;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    if (!exited) await once(child, 'exit');
    clearTimeout(timer);
    return exited;
  };
  return { base, port, stop, log };
}

export async function postJson(url, body, headers = {}) {
  const r = await fetch(url, { method: 'POST', body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json', ...headers } });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

export async function getJson(url, headers = {}) {
  const r = await fetch(url, { headers });
  return { status: r.status, json: await r.json() };
}

// PNG checks on raw bytes: signature, IHDR size, and the `parameters` tEXt chunk.
export function pngInfo(buf) {
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (!buf.subarray(0, 8).equals(sig)) throw new Error('not a PNG');
  const info = { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20), text: {} };
  for (let off = 8; off + 8 <= buf.length;) {
    const len = buf.readUInt32BE(off), type = buf.toString('latin1', off + 4, off + 8);
    if (type === 'tEXt') {
      const body = buf.subarray(off + 8, off + 8 + len), z = body.indexOf(0);
      info.text[body.toString('latin1', 0, z)] = body.toString('latin1', z + 1);
    }
    off += 12 + len;
  }
  return info;
}

export function fixture(name) {
  return JSON.parse(fs.readFileSync(new URL('./fixtures/' + name, import.meta.url), 'utf8'));
}

export function b64png(file) {
  return fs.readFileSync(file).toString('base64');
}
