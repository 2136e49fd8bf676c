// The demo page: opens WebGPU through the wasm module, loads a model, runs edits with progress.
import init, { adapter, Model } from './pkg/joyrt_web.js';

const $ = (id) => document.getElementById(id);
const state = { model: null, image: null, imageName: '', running: false };

function say(text, kind = 'info') {
  $('message').textContent = text;
  $('message').className = kind;
  document.body.dataset.message = kind;
}

function gib(b) { return (b / 2 ** 30).toFixed(2) + ' GiB'; }

function setBusy(busy) {
  state.running = busy;
  $('run').disabled = busy || !state.model || !state.image;
  $('cancel').disabled = !busy;
  for (const id of ['load-builtin', 'folder', 'model-url', 'load-url']) $(id).disabled = busy;
}

// Stage rows: one per stage, its time when it ends.
function onProgress(kind, stage, index, total, ms) {
  if (kind === 'step') {
    $('step-bar').max = total;
    $('step-bar').value = index + 1;
    $('step-text').textContent = `step ${index + 1}/${total}, ${ms.toFixed(0)} ms`;
    return;
  }
  let row = document.querySelector(`#stages tr[data-stage="${stage}"]`);
  if (!row) {
    row = $('stages').insertRow();
    row.dataset.stage = stage;
    row.insertCell().textContent = stage;
    row.insertCell();
  }
  row.cells[1].textContent = kind === 'start' ? 'running…' : `${ms.toFixed(0)} ms`;
}

function resetProgress() {
  $('stages').replaceChildren();
  $('step-bar').value = 0;
  $('step-text').textContent = '';
}

async function loadWith(what, make) {
  setBusy(true);
  resetProgress();
  say(`Loading ${what}…`);
  const t0 = performance.now();
  try {
    state.model?.free();
    state.model = null;
    state.model = await make();
    const mb = (state.model.weight_bytes() / 2 ** 20).toFixed(1);
    $('model-status').textContent = `${what} (${mb} MiB of weights on the GPU)`;
    say(`${what} loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s. Pick an image and press Edit.`);
    document.body.dataset.model = 'ready';
  } catch (e) {
    $('model-status').textContent = 'none loaded';
    say(`Cannot load ${what}: ${e}`, 'error');
  } finally {
    $('load-bar').value = 0;
    setBusy(false);
  }
}

const deviceMemory = () => (navigator.deviceMemory ? navigator.deviceMemory * 2 ** 30 : 0);

// A picked folder: every file with its path inside the folder; the weights stay in JS memory and
// reach wasm one tensor at a time.
async function loadFolder(files) {
  const list = [...files];
  const root = list[0]?.webkitRelativePath.split('/')[0] ?? '';
  const paths = [], bytes = [];
  let done = 0;
  for (const f of list) {
    const rel = f.webkitRelativePath.slice(root.length + 1);
    if (!/\.(json|safetensors)$/.test(rel)) continue;
    paths.push(rel);
    bytes.push(new Uint8Array(await f.arrayBuffer()));
    $('load-bar').value = ++done / list.length;
  }
  return Model.from_files(paths, bytes, $('dtype').value, deviceMemory(), onProgress);
}

// A model folder at a URL, in the diffusers layout; each file is kept in Cache Storage so a reload
// does not download it again.
async function fetchCached(url) {
  const cache = 'caches' in self ? await caches.open('joyrt-models') : null;
  let r = cache && (await cache.match(url));
  if (!r) {
    r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    if (cache) await cache.put(url, r.clone());
  }
  return new Uint8Array(await r.arrayBuffer());
}

async function loadUrl(base) {
  base = base.endsWith('/') ? base : base + '/';
  const small = ['model_index.json', 'transformer/config.json', 'vae/config.json', 'text_encoder/config.json',
    'scheduler/scheduler_config.json', 'tokenizer/tokenizer.json', 'processor/preprocessor_config.json'];
  const weights = { transformer: 'diffusion_pytorch_model', vae: 'diffusion_pytorch_model', text_encoder: 'model' };
  const paths = [...small];
  for (const [dir, stem] of Object.entries(weights)) {
    try {
      const index = JSON.parse(new TextDecoder().decode(await fetchCached(`${base}${dir}/${stem}.safetensors.index.json`)));
      for (const shard of new Set(Object.values(index.weight_map))) paths.push(`${dir}/${shard}`);
    } catch {
      paths.push(`${dir}/${stem}.safetensors`);
    }
  }
  const bytes = [];
  for (const [i, p] of paths.entries()) {
    bytes.push(await fetchCached(base + p));
    $('load-bar').value = (i + 1) / paths.length;
  }
  return Model.from_files(paths, bytes, $('dtype').value, deviceMemory(), onProgress);
}

function pickImage(file) {
  if (!file) return;
  // Until the bytes are read, Edit must not run the previous image.
  state.image = null;
  setBusy(false);
  state.imageName = file.name;
  file.arrayBuffer().then((b) => {
    state.image = new Uint8Array(b);
    $('input-preview').src = URL.createObjectURL(file);
    setBusy(false);
  });
}

async function runEdit() {
  setBusy(true);
  resetProgress();
  document.body.dataset.result = 'running';
  say('Editing…');
  const t0 = performance.now();
  try {
    const png = await state.model.edit(state.image, state.imageName, $('prompt').value, $('negative').value,
      Number($('steps').value), Number($('guidance').value), Number($('seed').value), onProgress);
    const url = URL.createObjectURL(new Blob([png], { type: 'image/png' }));
    $('output').src = url;
    $('download').href = url;
    $('download').hidden = false;
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    say(`Done in ${s} s.`);
    document.body.dataset.seconds = s;
    document.body.dataset.result = 'done';
  } catch (e) {
    const cancelled = String(e) === 'cancelled';
    say(cancelled ? 'Cancelled.' : `The edit failed: ${e}`, cancelled ? 'info' : 'error');
    document.body.dataset.result = cancelled ? 'cancelled' : 'error';
  } finally {
    setBusy(false);
  }
}

async function main() {
  if (!navigator.gpu) {
    say('This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome or Edge, or a browser ' +
      'with WebGPU turned on; the page runs everything on your GPU through it.', 'error');
    return;
  }
  await init();
  try {
    const a = JSON.parse(await adapter());
    $('adapter').textContent = `${a.name || '(unnamed)'} · ${a.device_type} · ${a.backend}${a.driver ? ' · ' + a.driver : ''}\n` +
      `max_buffer_size ${gib(a.max_buffer_size)} · max_storage_buffer_binding_size ${gib(a.max_storage_buffer_binding_size)}\n` +
      `workgroup storage ${a.max_compute_workgroup_storage_size} B · invocations/workgroup ${a.max_compute_invocations_per_workgroup}` +
      ` · shader-f16 ${a.shader_f16} · memory reported ${navigator.deviceMemory ? navigator.deviceMemory + ' GB' : 'unknown'}`;
  } catch (e) {
    say(`WebGPU is here but no adapter could be opened: ${e}`, 'error');
    return;
  }
  $('load-builtin').onclick = () => loadWith('the built-in tiny model', () => Model.builtin(onProgress));
  $('folder').onchange = (ev) => loadWith('the picked folder', () => loadFolder(ev.target.files));
  $('load-url').onclick = () => loadWith($('model-url').value, () => loadUrl($('model-url').value));
  $('image').onchange = (ev) => pickImage(ev.target.files[0]);
  const drop = $('drop');
  drop.ondragover = (ev) => { ev.preventDefault(); drop.classList.add('over'); };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (ev) => { ev.preventDefault(); drop.classList.remove('over'); pickImage(ev.dataTransfer.files[0]); };
  $('run').onclick = runEdit;
  $('cancel').onclick = () => state.model?.cancel();
  setBusy(false);
  // The built-in model is generated in the page (a few MB), so it is ready without a download.
  await loadWith('the built-in tiny model', () => Model.builtin(onProgress));
}

main();
