//! The page's API (wasm32 only): open the adapter, load a model (built-in, or files the page
//! picked or fetched), edit, cancel. Errors reach the page as one-line strings.

use crate::demo::{self, EditRequest, BUILTIN_BASE_SIZE};
use joyrt_core::model_folder::{MemoryFolder, ModelFolder};
use joyrt_core::pipeline::{Progress, Session};
use joyrt_core::weights::{checked_range, ByteSource};
use joyrt_core::{Backend, DType};
use joyrt_wgpu::{WgpuBackend, WgpuOptions};
use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;

thread_local! {
    /// The page's one device, opened at the first call and kept for the page's life: a session
    /// borrows it for as long as its model is loaded.
    static GPU: OnceCell<&'static WgpuBackend> = const { OnceCell::new() };
}

fn fail(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

async fn gpu() -> Result<&'static WgpuBackend, JsValue> {
    if let Some(g) = GPU.with(|g| g.get().copied()) {
        return Ok(g);
    }
    let opened = WgpuBackend::with_options_async(WgpuOptions::default()).await.map_err(fail)?;
    let opened: &'static WgpuBackend = Box::leak(Box::new(opened));
    Ok(GPU.with(|g| *g.get_or_init(|| opened)))
}

/// The adapter and its limits as JSON, for the page to show (opens the device).
#[wasm_bindgen]
pub async fn adapter() -> Result<String, JsValue> {
    let r = gpu().await?.adapter_report();
    Ok(format!(
        r#"{{"name":{:?},"vendor":{},"device_type":{:?},"backend":{:?},"driver":{:?},"max_buffer_size":{},"max_storage_buffer_binding_size":{},"max_compute_workgroup_storage_size":{},"max_compute_invocations_per_workgroup":{},"shader_f16":{},"subgroups":{}}}"#,
        r.name,
        r.vendor,
        r.device_type,
        r.backend,
        r.driver,
        r.max_buffer_size,
        r.max_storage_buffer_binding_size,
        r.max_compute_workgroup_storage_size,
        r.max_compute_invocations_per_workgroup,
        r.shader_f16,
        r.subgroups
    ))
}

/// A file of a model folder the page holds (picked from disk, or fetched and kept in Cache
/// Storage) as a `Blob`, read by range through the page's `read(file, offset, len)`, which
/// answers a `Uint8Array` synchronously (a worker's `FileReaderSync`). Only the range asked for
/// enters wasm memory: one tensor while it is uploaded, or one small file.
struct JsFile {
    index: u32,
    size: u64,
    read: js_sys::Function,
}

impl ByteSource for JsFile {
    fn size(&self) -> u64 {
        self.size
    }
    fn read(&self, offset: u64, len: usize) -> joyrt_core::Result<Cow<'_, [u8]>> {
        checked_range(self.size, offset, len)?;
        let got = self
            .read
            .call3(&JsValue::NULL, &self.index.into(), &(offset as f64).into(), &(len as f64).into())
            .map_err(|e| joyrt_core::Error::Input(format!("reading a model file failed: {}", js_text(&e))))?;
        let bytes = js_sys::Uint8Array::new(&got).to_vec();
        if bytes.len() != len {
            return Err(joyrt_core::Error::Input(format!(
                "reading {len} bytes of a model file gave {} bytes",
                bytes.len()
            )));
        }
        Ok(Cow::Owned(bytes))
    }
}

/// A JavaScript exception as text.
fn js_text(e: &JsValue) -> String {
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// Calls the page's progress callback: `(kind, stage, index, total, milliseconds)` with kind
/// `start`, `end` or `step`.
fn report(callback: &js_sys::Function, p: Progress) {
    let (kind, stage, index, total, ms) = match p {
        Progress::StageStart(s) => ("start", s.name(), 0, 0, 0.0),
        Progress::StageEnd(s, d) => ("end", s.name(), 0, 0, d.as_secs_f64() * 1e3),
        Progress::Step { index, total, elapsed } => {
            ("step", "denoise", index, total, elapsed.as_secs_f64() * 1e3)
        }
    };
    let args = js_sys::Array::of5(
        &kind.into(),
        &stage.into(),
        &(index as u32).into(),
        &(total as u32).into(),
        &ms.into(),
    );
    let _ = callback.apply(&JsValue::NULL, &args);
}

/// A model loaded on the page's device.
#[wasm_bindgen]
pub struct Model {
    session: Session<'static, WgpuBackend>,
    base_size: Option<usize>,
    cancel: Rc<Cell<bool>>,
}

#[wasm_bindgen]
impl Model {
    /// The built-in tiny model (the CLI's), generated in the page; no download.
    pub async fn builtin(progress: js_sys::Function) -> Result<Model, JsValue> {
        let model = demo::builtin_model().map_err(fail)?;
        Self::load(model, DType::F32, Some(BUILTIN_BASE_SIZE), None, &progress).await
    }

    /// A model folder from files the page holds: `paths[i]` (relative to the folder, e.g.
    /// `vae/config.json`) is `sizes[i]` bytes, read by range with `read(i, offset, len)` (a
    /// `Uint8Array`, synchronously). `dtype` is `f32`, `bf16` or `f16`; `device_memory` the bytes
    /// the browser reports (0: unknown). Refused with the numbers when it cannot fit. A
    /// `joyrt.json` in the folder gives the bucket base, as for `joyrt edit`.
    pub async fn from_files(
        paths: Vec<String>,
        sizes: Vec<f64>,
        read: js_sys::Function,
        dtype: String,
        device_memory: f64,
        progress: js_sys::Function,
    ) -> Result<Model, JsValue> {
        let dtype = DType::parse(&dtype)
            .ok_or_else(|| fail(format!("unknown dtype {dtype:?}: use f32, bf16 or f16")))?;
        if paths.len() != sizes.len() {
            return Err(fail("from_files needs one size per path"));
        }
        let mut folder = MemoryFolder::new();
        let mut base_size = None;
        for (i, (path, &size)) in paths.iter().zip(&sizes).enumerate() {
            let file = JsFile { index: i as u32, size: size as u64, read: read.clone() };
            if path == "joyrt.json" {
                base_size =
                    demo::folder_base_size(&file.read(0, file.size as usize).map_err(fail)?).map_err(fail)?;
            }
            folder.add(path, Box::new(file)).map_err(fail)?;
        }
        let model = ModelFolder::from_memory("<picked model folder>", folder).map_err(fail)?;
        let memory = (device_memory > 0.0).then_some(device_memory as u64);
        Self::load(model, dtype, base_size, memory, &progress).await
    }

    async fn load(
        model: ModelFolder,
        dtype: DType,
        base_size: Option<usize>,
        device_memory: Option<u64>,
        progress: &js_sys::Function,
    ) -> Result<Model, JsValue> {
        let gpu = gpu().await?;
        let need = demo::footprint(&model, dtype).map_err(fail)?;
        demo::check_fits(&need, gpu.adapter_report().max_buffer_size, device_memory).map_err(fail)?;
        let session = Session::load(gpu, model, dtype, &mut |p| {
            report(progress, p);
            true
        })
        .map_err(|e| fail(demo::message(&e)))?;
        Ok(Model { session, base_size, cancel: Rc::new(Cell::new(false)) })
    }

    /// Bytes the weights take on the device.
    pub fn weight_bytes(&self) -> Result<f64, JsValue> {
        let f = demo::footprint(self.session.model(), self.session.dtype()).map_err(fail)?;
        Ok(f.weight_bytes as f64)
    }

    /// Edits `image` (PNG or JPEG bytes) and returns the result as PNG bytes. `progress` gets each
    /// stage and step; [`Model::cancel`] stops the run at the next step ("cancelled").
    #[allow(clippy::too_many_arguments)]
    pub async fn edit(
        &self,
        image: Vec<u8>,
        image_name: String,
        prompt: String,
        negative_prompt: String,
        steps: u32,
        guidance: f32,
        seed: u32,
        progress: js_sys::Function,
    ) -> Result<Vec<u8>, JsValue> {
        self.cancel.set(false);
        let cancel = self.cancel.clone();
        let req = EditRequest {
            image: &image,
            image_name: &image_name,
            prompt,
            negative_prompt,
            steps: steps as usize,
            guidance,
            seed: seed.into(),
            base_size: self.base_size,
        };
        let png = demo::edit_png(&self.session, req, &mut |p| {
            report(&progress, p);
            !cancel.get()
        })
        .await
        .map_err(|e| fail(demo::message(&e)))?;
        // WebGPU reports a failed dispatch later, through the device's error event: an error
        // seen by now belongs to this edit, whose result cannot be trusted then.
        match gpu().await?.take_late_error() {
            Some(e) => Err(fail(format!("the GPU reported an error during the edit: {e}"))),
            None => Ok(png),
        }
    }

    /// Asks the running edit to stop after its current step.
    pub fn cancel(&self) {
        self.cancel.set(true);
    }
}
