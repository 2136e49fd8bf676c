// The page's engine in "wasm" mode: a module worker that holds the wasm module, the WebGPU device
// and the loaded model. It runs in a worker because a model's weights are read synchronously by
// range while the networks load (FileReaderSync on the Blobs of picked files and of downloads kept
// in Cache Storage), so only one tensor at a time ever sits in wasm memory.
//
// Messages in: {id, op, ...args}; out: {id, progress: [kind, stage, index, total, ms]},
// {id, loaded: fraction or null (unknown), what}, then {id, ok: true, value} or {id, ok: false, error}.
import init, { adapter, Model } from './pkg/joyrt_web.js';

let model = null;
const ready = init();
const CACHE = 'joyrt-models';

// A model folder at a URL, in the diffusers layout: its small files, then each network's weight
// files (the shards an index names, or the single file).
const SMALL = ['model_index.json', 'transformer/config.json', 'vae/config.json', 'text_encoder/config.json',
  'scheduler/scheduler_config.json', 'tokenizer/tokenizer.json', 'processor/preprocessor_config.json'];
const OPTIONAL = ['joyrt.json'];
const WEIGHTS = { transformer: 'diffusion_pytorch_model', vae: 'diffusion_pytorch_model', text_encoder: 'model' };

// The file at `url` as a Blob, from Cache Storage when it holds it; otherwise downloaded straight
// into the cache (the body streams through, counted by `onBytes`) and read back from there.
// Returns null for a 404 when `optional`.
async function cachedBlob(cache, url, onBytes, optional = false) {
  let r = cache && (await cache.match(url));
  if (r) return r.blob();
  r = await fetch(url);
  if (r.status === 404 && optional) return null;
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  if (!cache) return r.blob();
  const counted = r.body.pipeThrough(new TransformStream({
    transform(chunk, out) { onBytes(chunk.byteLength); out.enqueue(chunk); },
  }));
  await cache.put(url, new Response(counted, { headers: r.headers }));
  return (await cache.match(url)).blob();
}

async function fetchFolder(id, base) {
  base = base.endsWith('/') ? base : base + '/';
  const cache = 'caches' in self ? await caches.open(CACHE) : null;
  let got = 0;
  // The total is not known before the index files are read: the bar runs indeterminate.
  const onBytes = (n) => { got += n; post({ id, loaded: null, what: `downloaded ${(got / 2 ** 20).toFixed(1)} MiB` }); };
  const files = [];
  for (const p of [...SMALL, ...OPTIONAL]) {
    const blob = await cachedBlob(cache, base + p, onBytes, OPTIONAL.includes(p));
    if (blob) files.push({ path: p, blob });
  }
  for (const [dir, stem] of Object.entries(WEIGHTS)) {
    const index = await cachedBlob(cache, `${base}${dir}/${stem}.safetensors.index.json`, onBytes, true);
    const names = index
      ? [...new Set(Object.values(JSON.parse(await index.text()).weight_map))]
      : [`${stem}.safetensors`];
    for (const name of names) {
      if (name.includes('/')) throw new Error(`${dir} index names a file outside its folder: ${name}`);
      files.push({ path: `${dir}/${name}`, blob: await cachedBlob(cache, `${base}${dir}/${name}`, onBytes) });
    }
  }
  return files;
}

// Loads a folder given as [{path, blob}]: wasm reads each range when it needs it; the load bar
// follows the bytes read against the files' size (a few ranges, the headers and a quantized
// weight's scales, are read twice: the bar stops at full).
function loadFiles(id, files, dtype, deviceMemory) {
  const total = files.reduce((s, f) => s + f.blob.size, 0) || 1;
  const reader = new FileReaderSync();
  let done = 0, shown = 0;
  const read = (i, offset, len) => {
    const bytes = new Uint8Array(reader.readAsArrayBuffer(files[i].blob.slice(offset, offset + len)));
    done += len;
    if (done - shown > total / 200 || done === total) {
      shown = done;
      post({ id, loaded: Math.min(1, done / total), what: `${(Math.min(done, total) / 2 ** 20).toFixed(1)} of ${(total / 2 ** 20).toFixed(1)} MiB read` });
    }
    return bytes;
  };
  return Model.from_files(files.map((f) => f.path), files.map((f) => f.blob.size), read, dtype, deviceMemory,
    progressOf(id));
}

function post(msg, transfer = []) {
  self.postMessage(msg, transfer);
}

const progressOf = (id) => (kind, stage, index, total, ms) => post({ id, progress: [kind, stage, index, total, ms] });

async function swapModel(make) {
  model?.free();
  model = null;
  model = await make();
  return { weightBytes: model.weight_bytes() };
}

const ops = {
  adapter: async () => JSON.parse(await adapter()),
  builtin: (id) => swapModel(() => Model.builtin(progressOf(id))),
  files: (id, m) => swapModel(() => loadFiles(id, m.files, m.dtype, m.deviceMemory)),
  url: (id, m) => swapModel(async () => loadFiles(id, await fetchFolder(id, m.url), m.dtype, m.deviceMemory)),
  edit: async (id, m) => {
    if (!model) throw new Error('no model is loaded');
    const png = await model.edit(new Uint8Array(m.image), m.name, m.prompt, m.negative, m.steps, m.guidance,
      m.seed, progressOf(id));
    return png;
  },
};

self.onmessage = async ({ data: m }) => {
  if (m.op === 'cancel') {
    model?.cancel();
    return;
  }
  try {
    await ready;
    const value = await ops[m.op](m.id, m);
    post({ id: m.id, ok: true, value }, value instanceof Uint8Array ? [value.buffer] : []);
  } catch (e) {
    post({ id: m.id, ok: false, error: String(e?.message ?? e) });
  }
};
