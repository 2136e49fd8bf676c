//! Kernel dispatch: a shader family's WGSL specialised into a compute pipeline (built once per
//! key, then cached), the bind group and submission of one dispatch, and the pack pass that stores
//! 16-bit outputs.
//!
//! A pipeline is keyed by (family, entry point, [`Spec`], the dtypes of the four inputs). Only on
//! a miss is its source assembled, from the top:
//! 1. the op codes of `kernel_abi::wgsl_constants()` and `ELEMENT_GROUP`;
//! 2. the family's parameter struct (`KernelParams::wgsl()`), bound as `P` at binding 0;
//! 3. `OUT` (binding 1; f32, or u32 words for the pack pass) and the inputs `A`..`D` (bindings 2-5,
//!    `array<u32>`), each with a loader `ld_a`..`ld_d` that widens its dtype to f32;
//! 4. shaders/prelude.wgsl (`Grid`, `group_index`, `element_index`);
//! 5. the specialisation's text ([`Spec`]);
//! 6. the family's shaders/<family>.wgsl.

use crate::buffer::{Bind, Input, Span};
use crate::pool::Block;
use crate::split::Split;
use crate::{WgpuBackend, WgpuBuffer};
use joyrt_core::kernel_abi::{self, KernelParams};
use joyrt_core::{DType, Result};
use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

/// Invocations per workgroup of the kernels that run one invocation per element (or position,
/// or head vector); WGSL sees it as `ELEMENT_GROUP`.
pub(crate) const ELEMENT_GROUP: u32 = 256;

/// Workgroups for `n` invocations of an `ELEMENT_GROUP` kernel.
pub(crate) fn element_groups(n: usize) -> u64 {
    (n as u64).div_ceil(ELEMENT_GROUP as u64)
}

/// Sizes as kernel parameters take them.
pub(crate) fn u32s<const N: usize>(v: [usize; N]) -> [u32; N] {
    v.map(|x| x as u32)
}

/// Inputs a kernel may bind (`A`..`D`); unused ones are bound to a dummy buffer.
const INPUTS: usize = 4;

/// Each input's loader suffix and binding array.
const INPUT_NAMES: [(char, char); INPUTS] = [('a', 'A'), ('b', 'B'), ('c', 'C'), ('d', 'D')];

const PRELUDE: &str = include_str!("../../../shaders/prelude.wgsl");
const ROW_REDUCE: &str = include_str!("../../../shaders/norm_reduce.wgsl");
const ROW_REDUCE_SUBGROUP: &str = include_str!("../../../shaders/norm_reduce_subgroup.wgsl");
static PACK: Shader<PackArgs> = Shader::writing_words("pack", include_str!("../../../shaders/pack.wgsl"));

/// A shader family: the text of shaders/<name>.wgsl, whose kernels all take parameters `A`.
pub(crate) struct Shader<A> {
    name: &'static str,
    source: &'static str,
    /// The element type of `OUT`.
    out: &'static str,
    args: PhantomData<fn(&A)>,
}

impl<A: KernelParams> Shader<A> {
    /// A family whose kernels write f32 results.
    pub(crate) const fn new(name: &'static str, source: &'static str) -> Shader<A> {
        Shader { name, source, out: "f32", args: PhantomData }
    }

    /// A family whose kernels write raw u32 words (the pack pass).
    const fn writing_words(name: &'static str, source: &'static str) -> Shader<A> {
        Shader { name, source, out: "u32", args: PhantomData }
    }

    /// The kernel of entry point `entry` (a function of the family's source), unspecialised.
    pub(crate) fn entry(&'static self, entry: &'static str) -> Kernel<A> {
        Kernel { shader: self, entry, spec: Spec::Plain }
    }
}

/// One kernel: a family's entry point under a specialisation.
#[derive(Clone, Copy)]
pub(crate) struct Kernel<A: 'static> {
    shader: &'static Shader<A>,
    entry: &'static str,
    spec: Spec,
}

impl<A> Kernel<A> {
    pub(crate) fn spec(self, spec: Spec) -> Kernel<A> {
        Kernel { spec, ..self }
    }
}

/// A compile-time variant of a family's source, beyond its entry point and input dtypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Spec {
    /// The source as written.
    Plain,
    /// `const MAX_D: u32 = d;`: the length of attention's per-invocation arrays (query row and
    /// accumulator), a bound on the head dim.
    MaxHeadDim(u32),
    /// The row reduction `rsum(lane, v)` and its `Lane` builtins that the row norms call:
    /// `subgroupAdd` (needs `Features::SUBGROUP`) or a workgroup-memory tree.
    RowReduce { subgroups: bool },
}

impl Spec {
    fn wgsl(self) -> Cow<'static, str> {
        match self {
            Spec::Plain => Cow::Borrowed(""),
            Spec::MaxHeadDim(d) => Cow::Owned(format!("const MAX_D: u32 = {d}u;\n")),
            Spec::RowReduce { subgroups: true } => Cow::Borrowed(ROW_REDUCE_SUBGROUP),
            Spec::RowReduce { subgroups: false } => Cow::Borrowed(ROW_REDUCE),
        }
    }
}

/// What makes two pipelines different.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    family: &'static str,
    entry: &'static str,
    spec: Spec,
    dtypes: [DType; INPUTS],
}

/// WGSL load function `ld_<name>` for input array `arr` stored as `dtype`.
fn loader(name: char, arr: char, dtype: DType) -> String {
    match dtype {
        DType::F32 => format!("fn ld_{name}(i: u32) -> f32 {{ return bitcast<f32>({arr}[i]); }}\n"),
        DType::BF16 => format!(
            "fn ld_{name}(i: u32) -> f32 {{ let w = {arr}[i >> 1u]; return bitcast<f32>(((w >> ((i & 1u) * 16u)) & 0xffffu) << 16u); }}\n"
        ),
        DType::F16 => format!("fn ld_{name}(i: u32) -> f32 {{ return unpack2x16float({arr}[i >> 1u])[i & 1u]; }}\n"),
    }
}

/// The full WGSL of a kernel (see the module docs for the order).
fn source<A: KernelParams>(k: &Kernel<A>, dtypes: &[DType; INPUTS]) -> String {
    let mut s = kernel_abi::wgsl_constants();
    s += &format!("const ELEMENT_GROUP: u32 = {ELEMENT_GROUP}u;\n");
    s += &A::wgsl();
    s += &format!("@group(0) @binding(0) var<storage, read> P: {};\n", A::NAME);
    s += &format!("@group(0) @binding(1) var<storage, read_write> OUT: array<{}>;\n", k.shader.out);
    for (j, (&dtype, (name, arr))) in dtypes.iter().zip(INPUT_NAMES).enumerate() {
        s += &format!("@group(0) @binding({}) var<storage, read> {arr}: array<u32>;\n", j + 2);
        s += &loader(name, arr, dtype);
    }
    s += PRELUDE;
    s += &k.spec.wgsl();
    s += k.shader.source;
    s
}

/// The bind group layout every kernel shares, the pipeline cache, and the dummy buffer bound to
/// unused inputs.
pub(crate) struct Pipelines {
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    cache: Mutex<HashMap<Key, Arc<wgpu::ComputePipeline>>>,
    dummy: wgpu::Buffer,
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        // Params, output, then the inputs; each binding covers exactly the bytes in use.
        let entry = |binding: u32| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: binding != 1 },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let entries: Vec<_> = (0..2 + INPUTS as u32).map(entry).collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("joyrt"),
            entries: &entries,
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
        Pipelines { layout, pipeline_layout, cache: Mutex::new(HashMap::new()), dummy }
    }

    /// The pipeline of `key`, compiled from `source()` the first time it is asked for.
    fn get(
        &self,
        device: &wgpu::Device,
        key: Key,
        source: impl FnOnce() -> String,
    ) -> Arc<wgpu::ComputePipeline> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(key.family),
                    source: wgpu::ShaderSource::Wgsl(source().into()),
                });
                Arc::new(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(key.entry),
                    layout: Some(&self.pipeline_layout),
                    module: &module,
                    entry_point: Some(key.entry),
                    compilation_options: Default::default(),
                    cache: None,
                }))
            })
            .clone()
    }
}

joyrt_core::kernel_params! {
    /// Parameters of the pack pass (shaders/pack.wgsl), one invocation per output word.
    struct PackArgs {
        words: u32,
        /// Elements (the last word holds one when odd).
        len: u32,
    }
}

impl WgpuBackend {
    /// An unused input's binding.
    pub(crate) fn dummy(&self) -> Input<'_> {
        (Bind { buf: &self.inner.pipelines.dummy, offset: 0, size: 16 }, DType::F32)
    }

    /// Runs kernel `k` over `groups` workgroups with parameters `args`, writing `out`.
    pub(crate) fn run<A: KernelParams>(
        &self,
        k: Kernel<A>,
        args: &A,
        inputs: &[Input],
        out: Bind,
        groups: u64,
    ) -> Result<()> {
        let gpu = self.gpu();
        let mut dtypes = [DType::F32; INPUTS];
        for (d, i) in dtypes.iter_mut().zip(inputs) {
            *d = i.1;
        }
        let key = Key { family: k.shader.name, entry: k.entry, spec: k.spec, dtypes };
        let pipeline = self.inner.pipelines.get(&gpu.device, key, || source(&k, &dtypes));
        // Params come from the pool too: one small buffer per dispatch, back in the free list as
        // soon as the dispatch is submitted (see `Pool` on why that is safe).
        let pbuf = self.storage(args.bytes().len() as u64, "params")?;
        gpu.queue.write_buffer(pbuf.buffer(), 0, args.bytes());
        let dummy = self.dummy().0;
        let mut bufs = [dummy; 2 + INPUTS];
        bufs[0] = pbuf.bind();
        bufs[1] = out;
        for (b, i) in bufs[2..].iter_mut().zip(inputs) {
            *b = i.0;
        }
        // The ops split their work so that no binding is past the limit (split.rs); this is the
        // last line of defence, before wgpu would raise a validation error.
        for b in &bufs {
            gpu.check_binding(b.size, &format!("{} {}: a binding", k.shader.name, k.entry))?;
        }
        let entries: Vec<wgpu::BindGroupEntry> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buf,
                    offset: b.offset,
                    size: NonZeroU64::new(b.size),
                }),
            })
            .collect();
        let bind = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.inner.pipelines.layout,
            entries: &entries,
        });
        let (gx, gy) = gpu.grid(groups)?;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        gpu.queue.submit([enc.finish()]);
        gpu.check("dispatch")
    }

    /// One invocation per element of an `n`-element f32 result, then stored as `dtype`: for ops
    /// whose inputs are all bound whole (so is the output).
    pub(crate) fn per_element<A: KernelParams>(
        &self,
        k: Kernel<A>,
        op: &'static str,
        args: &A,
        inputs: &[Input],
        n: usize,
        dtype: DType,
    ) -> Result<WgpuBuffer> {
        let out = self.f32_buf(n)?;
        let split = inputs.iter().fold(Split::new(op, 1).out(Span::f32(&out, n), n), |s, &i| s.whole(i));
        split.run(self, k, |_| *args, |_| element_groups(n))?;
        self.finish(out, n, dtype)
    }

    /// Stores an f32 work buffer of `n` elements as `dtype`: as it is for f32, else through the
    /// pack pass (two 16-bit values per word), split by words past the binding limit.
    pub(crate) fn finish(&self, f: Block, n: usize, dtype: DType) -> Result<WgpuBuffer> {
        let entry = match dtype {
            DType::F32 => return Ok(self.wrap(f, n, dtype)),
            DType::BF16 => "pack_bf16",
            DType::F16 => "pack_f16",
        };
        let words = n.div_ceil(2);
        let out = self.storage(4 * words as u64, "packed output")?;
        Split::new("pack", words)
            .out(Span::f32(&out, words), 1)
            .split("f32 values", Span::f32(&f, n), 2)
            .run(
                self,
                PACK.entry(entry),
                |w| PackArgs { words: w.len() as u32, len: (n - 2 * w.start).min(2 * w.len()) as u32 },
                element_groups,
            )?;
        Ok(self.wrap(out, n, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use joyrt_core::Tensor;

    fn compiled(b: &WgpuBackend) -> usize {
        b.inner.pipelines.cache.lock().unwrap().len()
    }

    #[test]
    fn a_pipeline_is_built_once_per_family_entry_spec_and_dtypes() {
        let b = match WgpuBackend::new() {
            Ok(b) => b,
            Err(e) => {
                println!("SKIPPED: joyrt-wgpu pipeline cache: no wgpu adapter: {e}");
                return;
            }
        };
        let x = Tensor::from_f32(&b, [5], &[1.0, -2.0, 3.0, 0.5, 4.0], DType::F32).unwrap();
        let start = compiled(&b);
        x.add(&x).unwrap();
        assert_eq!(compiled(&b), start + 1, "the first add builds binary for f32 inputs");
        for _ in 0..3 {
            x.add(&x).unwrap().mul(&x).unwrap().sub(&x).unwrap();
        }
        assert_eq!(compiled(&b), start + 1, "other binary ops and repeats reuse it: the op is a parameter");
        let h = x.cast(DType::BF16).unwrap();
        assert_eq!(compiled(&b), start + 3, "cast builds copy and pack_bf16");
        let y = h.add(&h).unwrap();
        assert_eq!(compiled(&b), start + 4, "bf16 inputs are another specialisation of binary");
        assert_eq!(y.to_f32_vec().unwrap(), [2.0, -4.0, 6.0, 1.0, 8.0]);
    }
}
