// The browser test of the demo page: headless Chromium (WebGPU on its SwiftShader adapter) driven
// over CDP by playwright-core, through the page's own UI. Usage: node browser.mjs PLAN.json, where
// web/test.sh writes the plan (files, references, which cases). Bounded: it exits by itself.
//
// wasm mode, the page from a static server on 127.0.0.1 (which counts the weight files it sends):
//  builtin   the built-in tiny model edits INPUT; PSNR against `joyrt edit --backend cpu` >= 40 dB;
//            a screenshot of the finished page is saved;
//  nonimage  a file that is not an image gets the clear message;
//  cancel    cancel stops a long run before its last step;
//  memory    a quantized folder picked from disk is refused with the numbers when the browser
//            reports too little memory, and loads otherwise (full set: and edits as natively);
//  url       a quantized folder fetched from a URL streams in and edits as natively; after a reload
//            it loads again from Cache Storage with no weight file requested;
// server mode, the page from `joyrt serve` (GET /):
//  server    an edit through the page (with the API key field) matches the b64_json answer of the
//            same request, its progress bar at the last step; the server then stops on SIGTERM.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { tmpdir } from 'node:os';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const LIMIT_S = Number(process.env.JOYRT_WEB_TEST_LIMIT_S || 900);
const API_KEY = 'page-test-key';
mkdirSync(plan.outDir, { recursive: true });
const results = {};

let chrome, server, joyrt, userDir;
async function cleanup() {
  joyrt?.exitCode === null && joyrt.kill('SIGKILL');
  if (chrome && chrome.exitCode === null) {
    await new Promise((done) => {
      chrome.once('exit', done);
      chrome.kill('SIGKILL');
      setTimeout(done, 5000);
    });
  }
  server?.close();
  // Chromium's helper processes may still be writing the profile for a moment.
  try {
    if (userDir) rmSync(userDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  } catch (e) {
    console.log(`note: ${userDir} left behind (${e.code})`);
  }
}
const watchdog = setTimeout(async () => {
  console.error(`FAIL: the browser test ran past ${LIMIT_S} s`);
  await cleanup();
  process.exit(1);
}, LIMIT_S * 1000);
function check(ok, what) {
  if (!ok) throw new Error(what);
  console.log(`ok: ${what}`);
}

// The static server: web/dist at /, the quantized folders at /models/NAME/; counts weight files.
const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css',
  '.svg': 'image/svg+xml' };
let weightRequests = 0;
server = createServer((req, res) => {
  let path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
  if (path.endsWith('/')) path += 'index.html';
  let file = join(plan.dist, path);
  const m = path.match(/^\/models\/([a-z0-9]+)\/(.*)$/);
  if (m) file = plan.folders[m[1]] && join(plan.folders[m[1]].dir, m[2]);
  if (path.endsWith('.safetensors')) weightRequests++;
  try {
    const body = readFileSync(file);
    res.writeHead(200, { 'content-type': types[extname(path)] || 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const url = `http://127.0.0.1:${server.address().port}/`;

userDir = mkdtempSync(join(tmpdir(), 'joyrt-web-chromium-'));
chrome = spawn(process.env.CHROMIUM || '/usr/bin/chromium', [
  '--headless=new', '--no-sandbox', '--disable-gpu-sandbox', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
  '--enable-unsafe-webgpu', `--user-data-dir=${userDir}`, '--remote-debugging-port=0',
  ...(process.env.CHROMIUM_FLAGS || '').split(' ').filter(Boolean), 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe'] });
const ws = await new Promise((ok, fail) => {
  let err = '';
  chrome.stderr.on('data', (d) => {
    err += d;
    const m = err.match(/DevTools listening on (ws:\/\/\S+)/);
    if (m) ok(m[1]);
  });
  chrome.on('exit', (c) => fail(new Error(`chromium exited (${c}) before DevTools listened:\n${err}`)));
});

// ---- helpers over the page's UI ------------------------------------------------------------------

const state = (page, key) => page.evaluate((k) => document.body.dataset[k], key);

async function waitModel(page, timeout = 300_000) {
  await page.waitForFunction(() => document.body.dataset.model === 'ready' || document.body.dataset.message === 'error',
    null, { timeout });
  return page.textContent('#message');
}

async function clearModel(page) {
  await page.evaluate(() => { delete document.body.dataset.model; delete document.body.dataset.message; });
}

// Runs an edit through the UI; resolves to the final result state.
async function edit(page, image, steps, timeout = 600_000) {
  await page.setInputFiles('#image', image);
  await page.fill('#prompt', plan.prompt);
  await page.fill('#steps', String(steps));
  await page.fill('#seed', String(plan.seed));
  await page.waitForFunction(() => !document.getElementById('run').disabled);
  await page.click('#run');
  await page.waitForFunction(() => ['done', 'error', 'cancelled'].includes(document.body.dataset.result),
    null, { timeout });
  return state(page, 'result');
}

// The PSNR (dB, over RGB) of the image the page shows as its result against the PNG `reference`
// (bytes), both decoded by the browser; with the shown size. Reads the <img>, not its blob URL,
// which the server mode's CSP does not let a fetch read.
async function psnrOfResult(page, reference) {
  return page.evaluate(async (refB64) => {
    const img = document.getElementById('output');
    await img.decode();
    const refBytes = Uint8Array.from(atob(refB64), (c) => c.charCodeAt(0));
    const pixels = async (source) => {
      const bmp = await createImageBitmap(source, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
      const c = new OffscreenCanvas(bmp.width, bmp.height).getContext('2d', { willReadFrequently: true });
      c.drawImage(bmp, 0, 0);
      return { w: bmp.width, h: bmp.height, d: c.getImageData(0, 0, bmp.width, bmp.height).data };
    };
    const a = await pixels(img), b = await pixels(new Blob([refBytes], { type: 'image/png' }));
    if (a.w !== b.w || a.h !== b.h) return { psnr: -1, size: `${a.w}x${a.h} vs ${b.w}x${b.h}` };
    let se = 0, n = 0;
    for (let i = 0; i < a.d.length; i += 4) for (let k = 0; k < 3; k++) { se += (a.d[i + k] - b.d[i + k]) ** 2; n++; }
    return { psnr: se === 0 ? 'identical' : 10 * Math.log10(255 ** 2 / (se / n)), size: `${a.w}x${a.h}` };
  }, reference.toString('base64'));
}

// The result's PNG bytes (wasm mode: no CSP on the static server), saved as an artifact.
async function saveResult(page, name) {
  const b64 = await page.evaluate(async () => {
    const out = new Uint8Array(await (await fetch(document.getElementById('output').src)).arrayBuffer());
    let s = '';
    out.forEach((x) => { s += String.fromCharCode(x); });
    return btoa(s);
  });
  writeFileSync(join(plan.outDir, name), Buffer.from(b64, 'base64'));
}

async function compare(page, what, reference) {
  const { psnr, size } = await psnrOfResult(page, readFileSync(reference));
  const seconds = Number(await state(page, 'seconds'));
  const shown = typeof psnr === 'number' ? psnr.toFixed(2) : psnr;
  console.log(`${what}: ${size}, ${plan.steps} steps in ${seconds} s; PSNR against native CPU ${shown} dB`);
  results[what] = { size, steps: plan.steps, seconds, psnr: shown };
  check(psnr === 'identical' || psnr >= 40, `${what}: PSNR ${shown} dB >= 40 dB`);
}

// Records what the load bar's text shows while a model loads (the worker's per-range reports).
const watchLoad = (page) => page.evaluate(() => {
  window.loadSeen = new Set();
  new MutationObserver(() => window.loadSeen.add(document.getElementById('load-text').textContent))
    .observe(document.getElementById('load-text'), { childList: true, characterData: true, subtree: true });
});
const loadSeen = (page) => page.evaluate(() => [...window.loadSeen].filter(Boolean));

const fakeMemory = (page, gb) => page.evaluate((g) => Object.defineProperty(Navigator.prototype, 'deviceMemory',
  { get: () => g, configurable: true }), gb);

// ---- the cases ------------------------------------------------------------------------------------

const cases = {
  async builtin(page) {
    check((await edit(page, plan.input, plan.steps)) === 'done', `built-in edit: ${await page.textContent('#message')}`);
    await saveResult(page, 'browser.png');
    await page.screenshot({ path: join(plan.outDir, 'screenshot.png'), fullPage: true });
    await compare(page, 'built-in model', plan.reference);
  },

  async nonimage(page) {
    const notImage = { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image') };
    check((await edit(page, notImage, plan.steps, 60_000)) === 'error', 'a non-image fails');
    const msg = await page.textContent('#message');
    check(msg.includes('notes.txt is not a PNG or JPEG image'), `non-image refused: ${msg}`);
  },

  async cancel(page) {
    const long = 40;
    await page.setInputFiles('#image', plan.input);
    await page.fill('#steps', String(long));
    await page.waitForFunction(() => !document.getElementById('run').disabled);
    await page.click('#run');
    await page.waitForFunction(() => document.getElementById('step-bar').value >= 1, null, { timeout: 300_000 });
    await page.click('#cancel');
    await page.waitForFunction(() => document.body.dataset.result !== 'running', null, { timeout: 120_000 });
    const ran = await page.evaluate(() => document.getElementById('step-bar').value);
    check((await state(page, 'result')) === 'cancelled' && ran < long, `cancel stopped the run after ${ran} of ${long} steps`);
  },

  // A quantized folder picked from disk: refused with the numbers under too little memory, then
  // loaded (read by range from the picked files) and, in the full set, edited.
  async memory(page) {
    const folder = plan.folders.int8;
    await page.selectOption('#dtype', 'f32');
    await fakeMemory(page, 0.001);
    await clearModel(page);
    await page.setInputFiles('#folder', folder.dir);
    const refused = await waitModel(page, 120_000);
    check(refused.includes('this machine reports 1.0 MiB') && refused.includes('MiB on the device'), `too little memory refused: ${refused}`);
    await fakeMemory(page, 8);
    await clearModel(page);
    await watchLoad(page);
    await page.setInputFiles('#folder', folder.dir);
    const loaded = await waitModel(page, 120_000);
    check((await state(page, 'model')) === 'ready', `picked int8 folder loaded: ${loaded} / ${await page.textContent('#model-status')}`);
    const seen = await loadSeen(page);
    check(seen.filter((t) => t.includes('MiB read')).length >= 3, `the load bar followed the ranges read (${seen.length} reports, last ${seen.at(-1)})`);
    if (plan.full) {
      check((await edit(page, plan.input, plan.steps)) === 'done', `int8 edit: ${await page.textContent('#message')}`);
      await compare(page, 'int8 folder picked from disk', folder.reference);
    }
  },

  // A quantized folder fetched from the static server, then again after a reload: from the cache.
  async url(page) {
    const folder = plan.folders.int4;
    const fetchModel = async () => {
      await page.selectOption('#dtype', 'f32');
      await clearModel(page);
      await page.fill('#model-url', `${url}models/int4/`);
      await page.click('#load-url');
      return waitModel(page, 300_000);
    };
    weightRequests = 0;
    await watchLoad(page);
    const loaded = await fetchModel();
    const seen = await loadSeen(page);
    check(seen.some((t) => t.startsWith('downloaded')) && seen.some((t) => t.includes('MiB read')),
      `the load bar followed the download then the ranges read (${seen.length} reports)`);
    check((await state(page, 'model')) === 'ready' && weightRequests > 0,
      `int4 folder fetched (${weightRequests} weight files requested): ${loaded}`);
    check((await edit(page, plan.input, plan.steps)) === 'done', `int4 edit: ${await page.textContent('#message')}`);
    await saveResult(page, 'browser-int4.png');
    await compare(page, 'int4 folder fetched from a URL', folder.reference);
    await page.reload();
    await waitModel(page);
    weightRequests = 0;
    const again = await fetchModel();
    check((await state(page, 'model')) === 'ready' && weightRequests === 0,
      `after a reload the int4 folder loads from Cache Storage, ${weightRequests} weight files requested: ${again}`);
  },

  async server(page) {
    joyrt = spawn(plan.joyrt, ['serve', '--backend', 'cpu', '--port', '0', '--api-key', API_KEY],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    const base = await new Promise((ok, fail) => {
      let err = '';
      joyrt.stderr.on('data', (d) => {
        err += d;
        const m = err.match(/joyrt serve: listening on (\S+)/);
        if (m) ok(m[1]);
      });
      joyrt.on('exit', (c) => fail(new Error(`joyrt serve exited (${c}):\n${err}`)));
    });
    // A refused or reset connection while the server starts counts as not ready yet.
    const ready = () => fetch(`${base}/health/ready`).then((r) => r.status === 200, () => false);
    for (let t = 0; !(await ready()); t++) {
      check(t < 600, 'joyrt serve got ready');
      await new Promise((ok) => setTimeout(ok, 100));
    }
    await page.goto(`${base}/`);
    await waitModel(page, 60_000);
    check((await state(page, 'mode')) === 'server' && (await page.isVisible('#api-key')), 'the page from joyrt serve is in server mode, with the key field');
    await page.fill('#api-key', API_KEY);
    check((await edit(page, plan.input, plan.steps, 120_000)) === 'done', `server-mode edit: ${await page.textContent('#message')}`);
    const bar = await page.evaluate(() => [document.getElementById('step-bar').value, document.getElementById('step-bar').max]);
    check(bar[0] === plan.steps && bar[1] === plan.steps, `the progress bar followed the streamed steps (${bar.join('/')})`);
    await page.screenshot({ path: join(plan.outDir, 'screenshot-server.png'), fullPage: true });
    // The same request as the page's, answered as b64_json.
    const form = new FormData();
    form.append('image', new Blob([readFileSync(plan.input)]), 'input.png');
    for (const [k, v] of Object.entries({ prompt: plan.prompt, negative_prompt: '', num_inference_steps: plan.steps,
      guidance_scale: 4, seed: plan.seed, response_format: 'b64_json' })) form.append(k, String(v));
    const r = await fetch(`${base}/v1/images/edits`, { method: 'POST', body: form, headers: { authorization: `Bearer ${API_KEY}` } });
    check(r.status === 200, `the API answered the same request (${r.status})`);
    const png = Buffer.from((await r.json()).data[0].b64_json, 'base64');
    writeFileSync(join(plan.outDir, 'server-api.png'), png);
    await compare(page, 'server mode', join(plan.outDir, 'server-api.png'));
    const exited = new Promise((ok) => joyrt.once('exit', (c) => ok(c)));
    joyrt.kill('SIGTERM');
    check((await exited) === 0, 'joyrt serve stopped on SIGTERM with status 0');
  },
};

let code = 0;
try {
  const browser = await chromium.connectOverCDP(ws);
  const page = await browser.contexts()[0].newPage();
  // Any console error (a missing file, a CSP refusal) or uncaught exception is a failure.
  const consoleErrors = [];
  page.on('console', (m) => {
    if (['error', 'warning'].includes(m.type())) console.log(`[page ${m.type()}] ${m.text()}`);
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => {
    console.log(`[page error] ${e}`);
    consoleErrors.push(String(e));
  });
  await page.setViewportSize({ width: 1100, height: 1000 });
  await page.goto(url);
  const first = await waitModel(page);
  check((await state(page, 'model')) === 'ready', `built-in model loaded (${first})`);
  console.log(`adapter: ${(await page.textContent('#adapter')).replace(/\n/g, ' | ')}`);
  for (const name of plan.cases) {
    const t0 = Date.now();
    await cases[name](page);
    console.log(`case ${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  check(consoleErrors.length === 0, `no console errors (${consoleErrors.length})`);
  writeFileSync(join(plan.outDir, 'result.json'), JSON.stringify(results, null, 1) + '\n');
  await browser.close().catch(() => {});
} catch (e) {
  // undici's "fetch failed" says why only in its cause.
  console.error(`FAIL: ${e.message}${e.cause ? ` (${e.cause.code ?? ''} ${e.cause.message ?? e.cause})` : ''}`);
  code = 1;
} finally {
  clearTimeout(watchdog);
  await cleanup();
}
process.exit(code);
