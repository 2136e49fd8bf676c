// The demo page. One page, two modes, decided by how it is served (the `joyrt-mode` meta tag):
//  - "wasm" (web/dist from any static server): the model runs on the visitor's GPU, in a worker
//    (engine.js) holding the wasm module and the WebGPU device;
//  - "server" (`joyrt serve` answers GET / with the mode set): no wasm; each edit is posted to the
//    server's /v1/images/edits with stream=true, and its server-sent events move the progress bar.
// Both engines answer the same calls: start, edit(request, onProgress) → PNG bytes, cancel.

const $ = (id) => document.getElementById(id);
const meta = document.querySelector('meta[name="joyrt-mode"]');
const MODE = meta?.content === 'server' ? 'server' : 'wasm';
const state = { engine: null, modelReady: false, image: null, imageName: '', running: false };

function say(text, kind = 'info') {
  $('message').textContent = text;
  $('message').className = kind;
  document.body.dataset.message = kind;
}

function gib(b) { return (b / 2 ** 30).toFixed(2) + ' GiB'; }

function setBusy(busy) {
  state.running = busy;
  $('run').disabled = busy || !state.modelReady || !state.image;
  $('cancel').disabled = !busy;
  for (const id of ['load-builtin', 'folder', 'model-url', 'load-url']) $(id).disabled = busy || MODE !== 'wasm';
}

// Stage rows: one per stage, its time when it ends.
function onProgress(kind, stage, index, total, ms) {
  if (kind === 'step') {
    $('step-bar').max = total;
    $('step-bar').value = index + 1;
    $('step-text').textContent = `step ${index + 1}/${total}` + (ms > 0 ? `, ${ms.toFixed(0)} ms` : '');
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

// ---- wasm mode: the engine in a worker ----------------------------------------------------------

function workerEngine() {
  const worker = new Worker(new URL('engine.js', import.meta.url), { type: 'module' });
  const calls = new Map();
  let next = 0;
  worker.onmessage = ({ data: m }) => {
    const call = calls.get(m.id);
    if (!call) return;
    if (m.progress) return call.onProgress?.(...m.progress);
    if (m.loaded !== undefined) {
      if (m.loaded === null) $('load-bar').removeAttribute('value');
      else $('load-bar').value = m.loaded;
      $('load-text').textContent = m.what;
      return;
    }
    calls.delete(m.id);
    m.ok ? call.ok(m.value) : call.fail(new Error(m.error));
  };
  worker.onerror = (e) => say(`The engine stopped: ${e.message}`, 'error');
  const call = (op, args = {}, onProgress = null) => new Promise((ok, fail) => {
    const id = next++;
    calls.set(id, { ok, fail, onProgress });
    worker.postMessage({ id, op, ...args }, args.image ? [args.image] : []);
  });
  const deviceMemory = () => (navigator.deviceMemory ? navigator.deviceMemory * 2 ** 30 : 0);
  return {
    async start() {
      if (!navigator.gpu) {
        throw new Error('This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome or Edge, or a ' +
          'browser with WebGPU turned on; the page runs everything on your GPU through it.');
      }
      const a = await call('adapter').catch((e) => { throw new Error(`WebGPU is here but no adapter could be opened: ${e.message}`); });
      return `${a.name || '(unnamed)'} · ${a.device_type} · ${a.backend}${a.driver ? ' · ' + a.driver : ''}\n` +
        `max_buffer_size ${gib(a.max_buffer_size)} · max_storage_buffer_binding_size ${gib(a.max_storage_buffer_binding_size)}\n` +
        `workgroup storage ${a.max_compute_workgroup_storage_size} B · invocations/workgroup ${a.max_compute_invocations_per_workgroup}` +
        ` · shader-f16 ${a.shader_f16} · memory reported ${navigator.deviceMemory ? navigator.deviceMemory + ' GB' : 'unknown'}`;
    },
    builtin: () => call('builtin', {}, onProgress),
    // A picked folder: each file's path inside the folder and the File itself (a Blob; the worker
    // reads ranges of it, never the whole file).
    folder(fileList) {
      const list = [...fileList];
      const root = list[0]?.webkitRelativePath.split('/')[0] ?? '';
      const files = list
        .map((f) => ({ path: f.webkitRelativePath.slice(root.length + 1), blob: f }))
        .filter((f) => /\.(json|safetensors)$/.test(f.path));
      return call('files', { files, dtype: $('dtype').value, deviceMemory: deviceMemory() }, onProgress);
    },
    url: (url) => call('url', { url, dtype: $('dtype').value, deviceMemory: deviceMemory() }, onProgress),
    edit: async (req, progress) => call('edit', req, progress),
    cancel: () => worker.postMessage({ op: 'cancel' }),
  };
}

// ---- server mode: the edits go to the joyrt serve API --------------------------------------------

function serverEngine() {
  let aborter = null;
  const headers = () => {
    const key = $('api-key').value.trim();
    return key ? { authorization: `Bearer ${key}` } : {};
  };
  const apiError = async (r) => {
    const body = await r.json().catch(() => null);
    return new Error(body?.error?.message ?? `HTTP ${r.status}`);
  };
  return {
    async start() {
      if (meta.dataset.apiKey === 'required') $('api-key-row').hidden = false;
      const r = await fetch('/health/ready');
      const body = await r.json().catch(() => ({}));
      return `joyrt serve at ${location.origin} · model ${body.status ?? r.status}` +
        (meta.dataset.apiKey === 'required' ? ' · an API key is needed' : '');
    },
    async edit(req, progress) {
      const form = new FormData();
      form.append('image', new Blob([req.image]), req.name);
      form.append('prompt', req.prompt);
      form.append('negative_prompt', req.negative);
      form.append('num_inference_steps', String(req.steps));
      form.append('guidance_scale', String(req.guidance));
      form.append('seed', String(req.seed));
      form.append('response_format', 'b64_json');
      form.append('stream', 'true');
      aborter = new AbortController();
      let r;
      try {
        r = await fetch('/v1/images/edits', { method: 'POST', body: form, headers: headers(), signal: aborter.signal });
        if (!r.ok) throw await apiError(r);
        progress('start', 'denoise', 0, 0, 0);
        const t0 = performance.now();
        let last = t0;
        for await (const [event, data] of serverEvents(r.body)) {
          const m = JSON.parse(data);
          if (event === 'joyrt.progress') {
            const now = performance.now();
            progress('step', 'denoise', m.step - 1, m.total, now - last);
            last = now;
          } else if (event === 'image_edit.completed') {
            progress('end', 'denoise', 0, 0, performance.now() - t0);
            return Uint8Array.from(atob(m.b64_json), (c) => c.charCodeAt(0));
          } else if (event === 'error') {
            throw new Error(m.error?.message ?? 'the server reported an error');
          }
        }
        throw new Error('the server closed the stream before the image');
      } catch (e) {
        if (e.name === 'AbortError') throw new Error('cancelled');
        throw e;
      } finally {
        aborter = null;
      }
    },
    // Closing the stream is the cancel: the server stops the edit at its next step.
    cancel: () => aborter?.abort(),
  };
}

// The events of a text/event-stream body as [event, data] pairs.
async function* serverEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trim();
      }
      if (data) yield [event, data];
    }
  }
}

// ---- the page -----------------------------------------------------------------------------------

async function loadWith(what, make) {
  setBusy(true);
  resetProgress();
  say(`Loading ${what}…`);
  const t0 = performance.now();
  try {
    state.modelReady = false;
    const { weightBytes } = await make();
    state.modelReady = true;
    $('model-status').textContent = `${what} (${(weightBytes / 2 ** 20).toFixed(1)} MiB of weights on the GPU)`;
    say(`${what} loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s. Pick an image and press Edit.`);
    document.body.dataset.model = 'ready';
  } catch (e) {
    $('model-status').textContent = 'none loaded';
    say(`Cannot load ${what}: ${e.message}`, 'error');
  } finally {
    $('load-bar').value = 0;
    $('load-text').textContent = '';
    setBusy(false);
  }
}

function pickImage(file) {
  if (!file) return;
  // Until the bytes are read, Edit must not run the previous image.
  state.image = null;
  setBusy(false);
  state.imageName = file.name;
  file.arrayBuffer().then((b) => {
    state.image = b;
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
    const req = {
      image: state.image.slice(0), name: state.imageName, prompt: $('prompt').value, negative: $('negative').value,
      steps: Number($('steps').value), guidance: Number($('guidance').value), seed: Number($('seed').value),
    };
    const png = await state.engine.edit(req, onProgress);
    const url = URL.createObjectURL(new Blob([png], { type: 'image/png' }));
    $('output').src = url;
    $('download').href = url;
    $('download').hidden = false;
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    say(`Done in ${s} s.`);
    document.body.dataset.seconds = s;
    document.body.dataset.result = 'done';
  } catch (e) {
    const cancelled = e.message === 'cancelled';
    say(cancelled ? 'Cancelled.' : `The edit failed: ${e.message}`, cancelled ? 'info' : 'error');
    document.body.dataset.result = cancelled ? 'cancelled' : 'error';
  } finally {
    setBusy(false);
  }
}

async function main() {
  document.body.dataset.mode = MODE;
  state.engine = MODE === 'server' ? serverEngine() : workerEngine();
  for (const el of document.querySelectorAll(`[data-only]:not([data-only="${MODE}"])`)) el.hidden = true;
  try {
    $('adapter').textContent = await state.engine.start();
  } catch (e) {
    say(e.message, 'error');
    return;
  }
  $('image').onchange = (ev) => pickImage(ev.target.files[0]);
  const drop = $('drop');
  drop.ondragover = (ev) => { ev.preventDefault(); drop.classList.add('over'); };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (ev) => { ev.preventDefault(); drop.classList.remove('over'); pickImage(ev.dataTransfer.files[0]); };
  $('run').onclick = runEdit;
  $('cancel').onclick = () => state.engine.cancel();
  if (MODE === 'server') {
    state.modelReady = true;
    setBusy(false);
    say('The server holds the model. Pick an image and press Edit.');
    document.body.dataset.model = 'ready';
    return;
  }
  const e = state.engine;
  $('load-builtin').onclick = () => loadWith('the built-in tiny model', () => e.builtin());
  $('folder').onchange = (ev) => loadWith('the picked folder', () => e.folder(ev.target.files));
  $('load-url').onclick = () => loadWith($('model-url').value, () => e.url($('model-url').value));
  setBusy(false);
  // The built-in model is generated in the page (a few MB), so it is ready without a download.
  await loadWith('the built-in tiny model', () => e.builtin());
}

main();
