//! joyrt-wgpu: the WGSL backend on wgpu.
//!
//! Storage: f32 tensors are `array<f32>` words; bf16 and f16 tensors are packed two per `u32`
//! (little-endian, element `2k` in the low half), widened in the shaders (bf16 by a 16-bit shift,
//! f16 by `unpack2x16float`), so no `shader-f16` feature is needed. Every kernel computes in f32 into
//! an f32 buffer; a pack pass then stores 16-bit outputs (round to nearest even for bf16).
//!
//! Shaders live in `shaders/*.wgsl`, one file per op family. Each is specialised at pipeline
//! creation by prepending the bindings and one load function per input dtype; pipelines are cached
//! by their source. All six bindings (params, output, four inputs) are always bound, unused ones to
//! a 4-byte dummy, under one explicit layout.

use joyrt_core::backend::*;
use joyrt_core::{Backend, DType, Error, Result, Tensor};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A device buffer holding one tensor.
pub struct WgpuBuffer {
    buf: wgpu::Buffer,
    len: usize,
    dtype: DType,
}

struct Inner {
    /// The last error wgpu reported outside a Result (validation, out of memory): wgpu's default
    /// handler would panic, so it is recorded here and returned by the op that caused it.
    error: Arc<Mutex<Option<String>>>,
    software: bool,
    device: wgpu::Device,
    queue: wgpu::Queue,
    name: String,
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    dummy: wgpu::Buffer,
    max_binding: u64,
    max_groups: u32,
}

/// The wgpu backend. Cloning shares the device.
#[derive(Clone)]
pub struct WgpuBackend {
    inner: Arc<Inner>,
}

const ELEMENTWISE: &str = include_str!("../../../shaders/elementwise.wgsl");
const LAYOUT: &str = include_str!("../../../shaders/layout.wgsl");
const GEMM: &str = include_str!("../../../shaders/gemm.wgsl");
const NORM: &str = include_str!("../../../shaders/norm.wgsl");
const MISC: &str = include_str!("../../../shaders/misc.wgsl");
const ATTENTION: &str = include_str!("../../../shaders/attention.wgsl");
const CONV: &str = include_str!("../../../shaders/conv.wgsl");
const PACK: &str = include_str!("../../../shaders/pack.wgsl");

fn unavailable(why: impl Into<String>) -> Error {
    Error::BackendUnavailable { backend: "wgpu".into(), why: why.into() }
}

/// WGSL load function for input `name` (binding array `arr`) stored as `dtype`.
fn loader(name: &str, arr: &str, dtype: DType) -> String {
    match dtype {
        DType::F32 => format!("fn ld_{name}(i: u32) -> f32 {{ return bitcast<f32>({arr}[i]); }}\n"),
        DType::BF16 => format!(
            "fn ld_{name}(i: u32) -> f32 {{ let w = {arr}[i >> 1u]; return bitcast<f32>(((w >> ((i & 1u) * 16u)) & 0xffffu) << 16u); }}\n"
        ),
        DType::F16 => format!("fn ld_{name}(i: u32) -> f32 {{ return unpack2x16float({arr}[i >> 1u])[i & 1u]; }}\n"),
    }
}

/// An input of a dispatch: a buffer and the dtype its loader decodes.
type Input<'a> = (&'a wgpu::Buffer, DType);

impl WgpuBackend {
    /// Opens the first adapter wgpu finds (`WGPU_BACKEND` selects vulkan/gl/...).
    pub fn new() -> Result<WgpuBackend> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| unavailable(format!("no GPU adapter: {e}")))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("joyrt"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| unavailable(format!("{}: {e}", info.name)))?;
        let error = Arc::new(Mutex::new(None));
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.get_or_insert_with(|| e.to_string());
        }));
        let entry = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("joyrt"),
            entries: &[
                entry(0, true),
                entry(1, false),
                entry(2, true),
                entry(3, true),
                entry(4, true),
                entry(5, true),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("joyrt"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(WgpuBackend {
            inner: Arc::new(Inner {
                error,
                software: info.device_type == wgpu::DeviceType::Cpu,
                name: format!("wgpu:{} ({:?})", info.name, info.backend),
                max_binding: limits.max_storage_buffer_binding_size as u64,
                max_groups: limits.max_compute_workgroups_per_dimension,
                device,
                queue,
                layout,
                pipeline_layout,
                pipelines: Mutex::new(HashMap::new()),
                dummy,
            }),
        })
    }

    /// Whether the adapter is a CPU implementation (lavapipe, SwiftShader): correct, but slower
    /// than the CPU backend, so `--backend auto` does not pick it.
    pub fn is_software(&self) -> bool {
        self.inner.software
    }

    /// The error wgpu reported since the last check, if any.
    fn check(&self, what: &str) -> Result<()> {
        let taken = self.inner.error.lock().unwrap_or_else(|p| p.into_inner()).take();
        match taken {
            None => Ok(()),
            Some(e) if e.to_lowercase().contains("out of memory") => {
                Err(Error::OutOfMemory { backend: self.name(), bytes: 0, what: format!("{what}: {e}") })
            }
            Some(e) => Err(Error::backend(self.name(), format!("{what}: {e}"))),
        }
    }

    fn storage(&self, bytes: u64, what: &str) -> Result<wgpu::Buffer> {
        let size = bytes.max(4).div_ceil(4) * 4;
        if size > self.inner.max_binding {
            return Err(Error::backend(
                self.name(),
                format!(
                    "{what}: {size} bytes exceed this adapter's max_storage_buffer_binding_size of {} bytes",
                    self.inner.max_binding
                ),
            ));
        }
        let buf = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.check(what)?;
        Ok(buf)
    }

    fn pipeline(&self, src: String) -> Arc<wgpu::ComputePipeline> {
        let mut cache = self.inner.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&src) {
            return p.clone();
        }
        let module = self.inner.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(src.clone().into()),
        });
        let p = Arc::new(self.inner.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: Some(&self.inner.pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        }));
        cache.insert(src, p.clone());
        p
    }

    /// Runs `shader` (specialised for the inputs' dtypes) over `groups` workgroups, writing `out`.
    fn dispatch(
        &self,
        shader: &str,
        params: &[u32],
        inputs: &[Input],
        out: &wgpu::Buffer,
        groups: u64,
    ) -> Result<()> {
        let mut src = String::from(
            "@group(0) @binding(0) var<storage, read> P: array<u32>;\n@group(0) @binding(1) var<storage, read_write> OUT: array<f32>;\n",
        );
        for (k, (name, arr)) in [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")].iter().enumerate() {
            src += &format!("@group(0) @binding({}) var<storage, read> {arr}: array<u32>;\n", k + 2);
            src += &loader(name, arr, inputs.get(k).map_or(DType::F32, |i| i.1));
        }
        src += shader;
        self.run(src, params, inputs.iter().map(|i| i.0).collect(), out, groups)
    }

    fn run(
        &self,
        src: String,
        params: &[u32],
        inputs: Vec<&wgpu::Buffer>,
        out: &wgpu::Buffer,
        groups: u64,
    ) -> Result<()> {
        let pipeline = self.pipeline(src);
        let pbuf = self.storage(4 * params.len() as u64, "params")?;
        self.inner.queue.write_buffer(&pbuf, 0, bytemuck::cast_slice(params));
        let mut bufs = vec![&pbuf, out];
        bufs.extend(inputs);
        while bufs.len() < 6 {
            bufs.push(&self.inner.dummy);
        }
        let entries: Vec<wgpu::BindGroupEntry> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        let bind = self.inner.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.inner.layout,
            entries: &entries,
        });
        // Grids beyond the per-dimension limit fold into a second dimension.
        let maxg = self.inner.max_groups as u64;
        let (gx, gy) = if groups <= maxg { (groups.max(1), 1) } else { (maxg, groups.div_ceil(maxg)) };
        if gy > maxg {
            return Err(Error::backend(
                self.name(),
                format!("{groups} workgroups exceed the adapter's {maxg}² grid"),
            ));
        }
        let mut enc = self.inner.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(gx as u32, gy as u32, 1);
        }
        self.inner.queue.submit([enc.finish()]);
        self.check("dispatch")
    }

    /// An f32 work buffer of `n` elements.
    fn f32_buf(&self, n: usize) -> Result<wgpu::Buffer> {
        self.storage(4 * n as u64, "f32 work buffer")
    }

    /// Stores an f32 work buffer of `n` elements as `dtype`.
    fn finish(&self, f: wgpu::Buffer, n: usize, dtype: DType) -> Result<WgpuBuffer> {
        if dtype == DType::F32 {
            return Ok(WgpuBuffer { buf: f, len: n, dtype });
        }
        let words = n.div_ceil(2);
        let out = self.storage(4 * words as u64, "packed output")?;
        let mode = if dtype == DType::BF16 { 0 } else { 1 };
        self.run(
            PACK.to_string(),
            &[words as u32, n as u32, mode],
            vec![&f],
            &out,
            (words as u64).div_ceil(256),
        )?;
        Ok(WgpuBuffer { buf: out, len: n, dtype })
    }

    /// One thread per element of an `n`-element f32 result, then stored as `dtype`.
    fn elementwise(
        &self,
        shader: &str,
        params: &[u32],
        inputs: &[Input],
        n: usize,
        dtype: DType,
    ) -> Result<WgpuBuffer> {
        let out = self.f32_buf(n)?;
        self.dispatch(shader, params, inputs, &out, (n as u64).div_ceil(256))?;
        self.finish(out, n, dtype)
    }

    fn u32_buf(&self, v: &[u32]) -> Result<wgpu::Buffer> {
        let b = self.storage(4 * v.len() as u64, "index buffer")?;
        if !v.is_empty() {
            self.inner.queue.write_buffer(&b, 0, bytemuck::cast_slice(v));
        }
        Ok(b)
    }
}

fn inp(t: &Tensor<WgpuBackend>) -> Input<'_> {
    (&t.buffer().buf, t.buffer().dtype)
}

fn fbits(v: f32) -> u32 {
    v.to_bits()
}

impl Backend for WgpuBackend {
    type Buffer = WgpuBuffer;

    fn name(&self) -> String {
        self.inner.name.clone()
    }

    fn zeros(&self, dtype: DType, len: usize) -> Result<WgpuBuffer> {
        // wgpu zero-initialises new buffers.
        Ok(WgpuBuffer { buf: self.storage((len * dtype.size()) as u64, "zeros")?, len, dtype })
    }

    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<WgpuBuffer> {
        if !bytes.len().is_multiple_of(dtype.size()) {
            return Err(Error::backend(
                self.name(),
                format!("upload: {} bytes is not a whole number of {dtype} elements", bytes.len()),
            ));
        }
        let buf = self.storage(bytes.len() as u64, "upload")?;
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().max(4).div_ceil(4) * 4, 0);
        self.inner.queue.write_buffer(&buf, 0, &padded);
        Ok(WgpuBuffer { buf, len: bytes.len() / dtype.size(), dtype })
    }

    fn download(&self, x: &Tensor<Self>) -> Result<Vec<u8>> {
        let b = x.buffer();
        let n = (b.len * b.dtype.size()) as u64;
        let size = b.buf.size();
        let staging = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.inner.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&b.buf, 0, &staging, 0, size);
        self.inner.queue.submit([enc.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::backend(self.name(), format!("poll: {e}")))?;
        rx.recv()
            .map_err(|e| Error::backend(self.name(), format!("download: {e}")))?
            .map_err(|e| Error::backend(self.name(), format!("download: {e}")))?;
        let view =
            slice.get_mapped_range().map_err(|e| Error::backend(self.name(), format!("download: {e}")))?;
        let out = view[..n as usize].to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    fn cast(&self, x: &Tensor<Self>, to: DType) -> Result<WgpuBuffer> {
        self.elementwise(ELEMENTWISE, &[x.numel() as u32, 9, 0, 1, 0], &[inp(x)], x.numel(), to)
    }

    fn synchronize(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::backend(self.name(), format!("poll: {e}")))
    }

    fn permute(&self, x: &Tensor<Self>, p: &PermuteParams) -> Result<WgpuBuffer> {
        let rank = p.dims.len();
        let strides = joyrt_core::Shape::new(p.dims.clone()).strides();
        let mut params = vec![x.numel() as u32, 0, rank as u32, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
        for (a, &src) in p.perm.iter().enumerate() {
            params[3 + a] = p.dims[src] as u32;
            params[9 + a] = strides[src] as u32;
        }
        self.elementwise(LAYOUT, &params, &[inp(x)], x.numel(), x.dtype())
    }

    fn slice(&self, x: &Tensor<Self>, p: &SliceParams) -> Result<WgpuBuffer> {
        let n = p.outer * p.len;
        let params = [n as u32, 1, p.len as u32, p.x_inner as u32, p.start as u32, p.len as u32, 0];
        self.elementwise(LAYOUT, &params, &[inp(x)], n, x.dtype())
    }

    fn concat(&self, xs: &[&Tensor<Self>], p: &ConcatParams) -> Result<WgpuBuffer> {
        let dtype = xs[0].dtype();
        let total: usize = p.inners.iter().sum();
        let out = self.f32_buf(p.outer * total)?;
        let mut off = 0;
        for (x, &inner) in xs.iter().zip(&p.inners) {
            if x.dtype() != dtype {
                return Err(Error::DType { op: "concat", dtype: x.dtype() });
            }
            let n = p.outer * inner;
            if n > 0 {
                let params = [n as u32, 1, inner as u32, inner as u32, 0, total as u32, off as u32];
                self.dispatch(LAYOUT, &params, &[inp(x)], &out, (n as u64).div_ceil(256))?;
            }
            off += inner;
        }
        self.finish(out, p.outer * total, dtype)
    }

    fn linear(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
        p: &LinearParams,
    ) -> Result<WgpuBuffer> {
        let out = self.f32_buf(p.m * p.n)?;
        let (tm, tn) = (p.m.div_ceil(64), p.n.div_ceil(64));
        let mut inputs = vec![inp(x), inp(w)];
        if let Some(b) = bias {
            inputs.push(inp(b));
        }
        // Chunks of K stay within software adapters' per-invocation loop limit.
        const KC: usize = 1024;
        let chunks = p.k.div_ceil(KC).max(1);
        for c in 0..chunks {
            let (k0, k1) = (c * KC, ((c + 1) * KC).min(p.k));
            let params = [
                p.m as u32,
                p.k as u32,
                p.n as u32,
                bias.is_some() as u32,
                tn as u32,
                k0 as u32,
                k1 as u32,
                (c == 0) as u32,
                (c == chunks - 1) as u32,
            ];
            self.dispatch(GEMM, &params, &inputs, &out, (tm * tn) as u64)?;
        }
        self.finish(out, p.m * p.n, x.dtype())
    }

    fn layer_norm(
        &self,
        x: &Tensor<Self>,
        w: Option<&Tensor<Self>>,
        b: Option<&Tensor<Self>>,
        p: &NormParams,
    ) -> Result<WgpuBuffer> {
        let d = &self.inner.dummy;
        let inputs = [inp(x), w.map_or((d, DType::F32), inp), b.map_or((d, DType::F32), inp)];
        self.norm(x, &inputs, p, 0, w.is_some(), b.is_some())
    }

    fn layer_norm_modulate(
        &self,
        x: &Tensor<Self>,
        shift: &Tensor<Self>,
        scale: &Tensor<Self>,
        p: &NormParams,
    ) -> Result<WgpuBuffer> {
        self.norm(x, &[inp(x), inp(shift), inp(scale)], p, 1, true, true)
    }

    fn rms_norm(&self, x: &Tensor<Self>, w: &Tensor<Self>, p: &NormParams) -> Result<WgpuBuffer> {
        self.norm(x, &[inp(x), inp(w)], p, 2, true, false)
    }

    fn channel_rms_norm(
        &self,
        x: &Tensor<Self>,
        gamma: &Tensor<Self>,
        p: &ChannelParams,
    ) -> Result<WgpuBuffer> {
        let out = self.f32_buf(x.numel())?;
        let params = [p.positions as u32, 0, p.channels as u32, p.positions as u32];
        self.dispatch(MISC, &params, &[inp(x), inp(gamma)], &out, (p.positions as u64).div_ceil(256))?;
        self.finish(out, x.numel(), x.dtype())
    }

    fn rope(&self, x: &Tensor<Self>, rope: &Rope<Self>, p: &HeadParams) -> Result<WgpuBuffer> {
        self.rope_impl(x, None, rope, p)
    }

    fn rms_norm_rope(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        rope: &Rope<Self>,
        p: &HeadParams,
    ) -> Result<WgpuBuffer> {
        self.rope_impl(x, Some(w), rope, p)
    }

    fn activation(&self, x: &Tensor<Self>, act: Activation) -> Result<WgpuBuffer> {
        let op = match act {
            Activation::Silu => 0,
            Activation::GeluTanh => 1,
            Activation::GeluErf => 2,
        };
        self.elementwise(ELEMENTWISE, &[x.numel() as u32, op, 0, 1, 0], &[inp(x)], x.numel(), x.dtype())
    }

    fn swiglu(&self, gate: &Tensor<Self>, up: &Tensor<Self>) -> Result<WgpuBuffer> {
        self.elementwise(
            ELEMENTWISE,
            &[gate.numel() as u32, 6, 0, 1, 0],
            &[inp(gate), inp(up)],
            gate.numel(),
            gate.dtype(),
        )
    }

    fn binary(&self, a: &Tensor<Self>, b: &Tensor<Self>, p: &BinaryParams) -> Result<WgpuBuffer> {
        let op = match p.op {
            BinaryOp::Add => 3,
            BinaryOp::Sub => 4,
            BinaryOp::Mul => 5,
        };
        let (mode, inner) = match p.broadcast {
            Broadcast::None => (0, 1),
            Broadcast::Row { inner } => (1, inner),
            Broadcast::Col { inner } => (2, inner),
        };
        self.elementwise(
            ELEMENTWISE,
            &[p.len as u32, op, mode, inner as u32, 0],
            &[inp(a), inp(b)],
            p.len,
            a.dtype(),
        )
    }

    fn scaled_add(&self, x: &Tensor<Self>, z: &Tensor<Self>, alpha: f32) -> Result<WgpuBuffer> {
        self.elementwise(
            ELEMENTWISE,
            &[x.numel() as u32, 7, 0, 1, fbits(alpha)],
            &[inp(x), inp(z)],
            x.numel(),
            x.dtype(),
        )
    }

    fn gated_residual(
        &self,
        x: &Tensor<Self>,
        z: &Tensor<Self>,
        gate: &Tensor<Self>,
        p: &RowsParams,
    ) -> Result<WgpuBuffer> {
        let n = p.rows * p.cols;
        self.elementwise(
            ELEMENTWISE,
            &[n as u32, 8, 0, p.cols as u32, 0],
            &[inp(x), inp(z), inp(gate)],
            n,
            x.dtype(),
        )
    }

    fn cfg_renorm(&self, cond: &Tensor<Self>, uncond: &Tensor<Self>, p: &CfgParams) -> Result<WgpuBuffer> {
        let out = self.f32_buf(cond.numel())?;
        let params = [p.positions as u32, 2, p.channels as u32, p.positions as u32, fbits(p.guidance)];
        self.dispatch(MISC, &params, &[inp(cond), inp(uncond)], &out, (p.positions as u64).div_ceil(256))?;
        self.finish(out, cond.numel(), cond.dtype())
    }

    fn attention(
        &self,
        q: &Tensor<Self>,
        k: &Tensor<Self>,
        v: &Tensor<Self>,
        p: &AttentionParams,
    ) -> Result<WgpuBuffer> {
        if p.head_dim > 128 {
            return Err(Error::backend(
                self.name(),
                format!("attention: head dim {} > 128 is not supported by this kernel", p.head_dim),
            ));
        }
        let threads = p.q_len * p.q_heads;
        let d = p.head_dim;
        // Running state per (query, head): acc[D], max, sum. Key chunks keep each invocation
        // within software adapters' loop limit.
        let state = self.f32_buf(threads * (d + 2))?;
        let kc = (48_000 / (2 * d + 1)).max(1);
        let chunks = p.kv_len.div_ceil(kc).max(1);
        for c in 0..chunks {
            let params = [
                threads as u32,
                0,
                p.q_len as u32,
                p.kv_len as u32,
                p.q_heads as u32,
                p.kv_heads as u32,
                d as u32,
                fbits(p.scale),
                p.causal as u32,
                (c * kc) as u32,
                ((c + 1) * kc).min(p.kv_len) as u32,
                (c == 0) as u32,
                (c == chunks - 1) as u32,
            ];
            self.dispatch(
                ATTENTION,
                &params,
                &[inp(q), inp(k), inp(v)],
                &state,
                (threads as u64).div_ceil(64),
            )?;
        }
        // Drop the two state columns: rows of D + 2 → rows of D.
        let n = threads * d;
        let out = self.f32_buf(n)?;
        let params = [n as u32, 1, d as u32, (d + 2) as u32, 0, d as u32, 0];
        self.dispatch(LAYOUT, &params, &[(&state, DType::F32)], &out, (n as u64).div_ceil(256))?;
        self.finish(out, n, q.dtype())
    }

    fn conv2d(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: Option<&Tensor<Self>>,
        p: &Conv2dParams,
    ) -> Result<WgpuBuffer> {
        let n = p.out_channels * p.out_height * p.out_width;
        let d = &self.inner.dummy;
        let inputs = [inp(x), inp(w), (d, DType::F32), bias.map_or((d, DType::F32), inp)];
        let params = [
            n as u32,
            0,
            p.in_channels as u32,
            p.height as u32,
            p.width as u32,
            p.kernel_h as u32,
            p.kernel_w as u32,
            p.stride as u32,
            p.pad.0 as u32,
            p.pad.2 as u32,
            p.out_height as u32,
            p.out_width as u32,
            bias.is_some() as u32,
        ];
        self.elementwise(CONV, &params, &inputs, n, x.dtype())
    }

    fn upsample_nearest2x(&self, x: &Tensor<Self>, p: &ImageParams) -> Result<WgpuBuffer> {
        let n = 4 * x.numel();
        let params = [n as u32, 2, p.channels as u32, p.height as u32, p.width as u32];
        self.elementwise(LAYOUT, &params, &[inp(x)], n, x.dtype())
    }

    fn gather_rows(
        &self,
        table: &Tensor<Self>,
        index: &[u32],
        weights: Option<&[f32]>,
        p: &GatherParams,
    ) -> Result<WgpuBuffer> {
        let idx = self.u32_buf(index)?;
        let w: Vec<u32> = weights.map(|w| w.iter().map(|v| v.to_bits()).collect()).unwrap_or_default();
        let wb = self.u32_buf(&w)?;
        let n = p.rows * p.cols;
        let params = [n as u32, 3, p.cols as u32, p.taps as u32, weights.is_some() as u32];
        self.elementwise(
            MISC,
            &params,
            &[inp(table), (&idx, DType::F32), (&wb, DType::F32)],
            n,
            table.dtype(),
        )
    }

    fn scatter_rows(
        &self,
        dst: &Tensor<Self>,
        rows: &[u32],
        src: &Tensor<Self>,
        p: &ScatterParams,
    ) -> Result<WgpuBuffer> {
        let total = p.dst_rows * p.cols;
        let out = self.f32_buf(total)?;
        self.dispatch(
            ELEMENTWISE,
            &[total as u32, 9, 0, 1, 0],
            &[inp(dst)],
            &out,
            (total as u64).div_ceil(256),
        )?;
        let rb = self.u32_buf(rows)?;
        let n = p.src_rows * p.cols;
        if n > 0 {
            let params = [n as u32, 4, p.cols as u32, (p.mode == ScatterMode::Add) as u32];
            self.dispatch(MISC, &params, &[inp(src), (&rb, DType::F32)], &out, (n as u64).div_ceil(256))?;
        }
        self.finish(out, total, dst.dtype())
    }
}

impl WgpuBackend {
    fn norm(
        &self,
        x: &Tensor<Self>,
        inputs: &[Input],
        p: &NormParams,
        mode: u32,
        has_w: bool,
        has_b: bool,
    ) -> Result<WgpuBuffer> {
        let out = self.f32_buf(x.numel())?;
        let params = [p.rows as u32, p.cols as u32, fbits(p.eps), mode, has_w as u32, has_b as u32];
        self.dispatch(NORM, &params, inputs, &out, p.rows as u64)?;
        self.finish(out, x.numel(), x.dtype())
    }

    fn rope_impl(
        &self,
        x: &Tensor<Self>,
        w: Option<&Tensor<Self>>,
        rope: &Rope<Self>,
        p: &HeadParams,
    ) -> Result<WgpuBuffer> {
        let threads = p.tokens * p.heads;
        let out = self.f32_buf(x.numel())?;
        let pairing = match rope.pairing {
            RopePairing::Interleaved => 0,
            RopePairing::HalfSplit => 1,
        };
        let d = &self.inner.dummy;
        let inputs = [inp(x), inp(&rope.cos), inp(&rope.sin), w.map_or((d, DType::F32), inp)];
        let params =
            [threads as u32, 1, p.heads as u32, p.head_dim as u32, pairing, w.is_some() as u32, fbits(p.eps)];
        self.dispatch(MISC, &params, &inputs, &out, (threads as u64).div_ceil(256))?;
        self.finish(out, x.numel(), x.dtype())
    }
}
