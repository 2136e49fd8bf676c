// The browser test of the demo page: a static server on 127.0.0.1, headless Chromium (WebGPU on
// its SwiftShader adapter) driven over CDP by playwright-core, and the page's own UI:
//  1. the built-in tiny model loads; an edit of INPUT runs and its PNG is compared with
//     REFERENCE (`joyrt edit --backend cpu`, same model, prompt, steps, seed): PSNR >= 40 dB;
//     a screenshot of the finished page is saved;
//  2. a file that is not an image gets the clear message;
//  3. cancel stops a long run before its last step.
//  4. a model folder picked from disk (FOLDER) is refused when the browser reports too little
//     memory (with the numbers) and loads otherwise.
// Usage: node browser.mjs DIST INPUT REFERENCE OUTDIR STEPS SEED FOLDER. Bounded: it exits by itself.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { tmpdir } from 'node:os';

const [dist, input, reference, outDir, steps, seed, folder] = process.argv.slice(2);
const PROMPT = 'Make it blue';
const LIMIT_S = Number(process.env.JOYRT_WEB_TEST_LIMIT_S || 900);
mkdirSync(outDir, { recursive: true });

let chrome, server, userDir;
async function cleanup() {
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

const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };
server = createServer((req, res) => {
  let path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
  if (path.endsWith('/')) path += 'index.html';
  try {
    const body = readFileSync(join(dist, path));
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

let code = 0;
try {
  const browser = await chromium.connectOverCDP(ws);
  const page = await browser.contexts()[0].newPage();
  page.on('console', (m) => ['error', 'warning'].includes(m.type()) && console.log(`[page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`[page error] ${e}`));
  await page.setViewportSize({ width: 1100, height: 1000 });
  await page.goto(url);
  const state = (key) => page.evaluate((k) => document.body.dataset[k], key);
  await page.waitForFunction(() => document.body.dataset.model === 'ready' || document.body.dataset.message === 'error',
    null, { timeout: 300_000 });
  check((await state('model')) === 'ready', `built-in model loaded (${await page.textContent('#message')})`);
  console.log(`adapter: ${(await page.textContent('#adapter')).replace(/\n/g, ' | ')}`);

  // 1. The tiny edit against the native CPU output.
  await page.setInputFiles('#image', input);
  await page.fill('#prompt', PROMPT);
  await page.fill('#steps', steps);
  await page.fill('#seed', seed);
  await page.waitForFunction(() => !document.getElementById('run').disabled);
  await page.click('#run');
  await page.waitForFunction(() => ['done', 'error', 'cancelled'].includes(document.body.dataset.result),
    null, { timeout: 600_000 });
  check((await state('result')) === 'done', `edit finished: ${await page.textContent('#message')}`);
  const seconds = Number(await state('seconds'));
  const ref = readFileSync(reference).toString('base64');
  const { psnr, png, size } = await page.evaluate(async (refB64) => {
    const out = await (await fetch(document.getElementById('output').src)).arrayBuffer();
    const refBytes = Uint8Array.from(atob(refB64), (c) => c.charCodeAt(0));
    const pixels = async (bytes) => {
      const bmp = await createImageBitmap(new Blob([bytes], { type: 'image/png' }),
        { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
      const c = new OffscreenCanvas(bmp.width, bmp.height).getContext('2d', { willReadFrequently: true });
      c.drawImage(bmp, 0, 0);
      return { w: bmp.width, h: bmp.height, d: c.getImageData(0, 0, bmp.width, bmp.height).data };
    };
    const a = await pixels(new Uint8Array(out)), b = await pixels(refBytes);
    if (a.w !== b.w || a.h !== b.h) return { psnr: -1, size: `${a.w}x${a.h} vs ${b.w}x${b.h}` };
    let se = 0, n = 0;
    for (let i = 0; i < a.d.length; i += 4) for (let k = 0; k < 3; k++) { se += (a.d[i + k] - b.d[i + k]) ** 2; n++; }
    const mse = se / n;
    let s = '';
    new Uint8Array(out).forEach((x) => { s += String.fromCharCode(x); });
    return { psnr: mse === 0 ? Infinity : 10 * Math.log10(255 ** 2 / mse), png: btoa(s), size: `${a.w}x${a.h}` };
  }, ref);
  if (png) writeFileSync(join(outDir, 'browser.png'), Buffer.from(png, 'base64'));
  await page.screenshot({ path: join(outDir, 'screenshot.png'), fullPage: true });
  console.log(`browser edit: ${size}, ${steps} steps in ${seconds} s; PSNR against native CPU ${psnr.toFixed?.(2) ?? psnr} dB`);
  writeFileSync(join(outDir, 'result.json'), JSON.stringify({ size, steps: Number(steps), seconds, psnr: String(psnr) }) + '\n');
  check(psnr >= 40, `PSNR ${psnr} dB >= 40 dB`);

  // 2. Not an image.
  await page.setInputFiles('#image', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image') });
  await page.waitForFunction(() => !document.getElementById('run').disabled);
  await page.click('#run');
  await page.waitForFunction(() => ['done', 'error', 'cancelled'].includes(document.body.dataset.result) &&
    document.body.dataset.result !== 'running', null, { timeout: 60_000 });
  const msg = await page.textContent('#message');
  check((await state('result')) === 'error' && msg.includes('notes.txt is not a PNG or JPEG image'), `non-image refused: ${msg}`);

  // 3. Cancel a long run after its first step.
  const long = 40;
  await page.setInputFiles('#image', input);
  await page.fill('#steps', String(long));
  await page.waitForFunction(() => !document.getElementById('run').disabled);
  await page.click('#run');
  await page.waitForFunction(() => document.getElementById('step-bar').value >= 1, null, { timeout: 300_000 });
  await page.click('#cancel');
  await page.waitForFunction(() => document.body.dataset.result !== 'running', null, { timeout: 120_000 });
  const ran = await page.evaluate(() => document.getElementById('step-bar').value);
  check((await state('result')) === 'cancelled' && ran < long, `cancel stopped the run after ${ran} of ${long} steps`);

  // 4. A model folder picked from disk (the CLI's built-in model, sharded with index files): refused
  //    with the numbers when the browser reports too little memory, loaded otherwise.
  const fakeMemory = (gb) => page.evaluate((g) => Object.defineProperty(Navigator.prototype, 'deviceMemory',
    { get: () => g, configurable: true }), gb);
  const pickFolder = async () => {
    await page.evaluate(() => { delete document.body.dataset.model; delete document.body.dataset.message; });
    await page.setInputFiles('#folder', folder);
    await page.waitForFunction(() => document.body.dataset.model === 'ready' || document.body.dataset.message === 'error',
      null, { timeout: 120_000 });
    return page.textContent('#message');
  };
  await fakeMemory(0.001);
  const refused = await pickFolder();
  check(refused.includes('this machine reports 1.0 MiB') && refused.includes('MiB on the device'), `too little memory refused: ${refused}`);
  await fakeMemory(8);
  const loaded = await pickFolder();
  check((await state('model')) === 'ready', `picked folder loaded: ${loaded}`);
  await browser.close().catch(() => {});
} catch (e) {
  console.error(`FAIL: ${e.message}`);
  code = 1;
} finally {
  clearTimeout(watchdog);
  await cleanup();
}
process.exit(code);
