//! The adapter and device: options, the features and limits in force, and the error slot that
//! turns wgpu's uncaptured errors into the `Result` of the op that caused them.

use crate::pool::DEFAULT_POOL_BUDGET;
use joyrt_core::{Error, Result};
use std::sync::{Arc, Mutex};

/// Options of [`WgpuBackend::with_options`](crate::WgpuBackend::with_options);
/// [`WgpuOptions::from_env`] gives `new()`'s.
#[derive(Clone, Debug)]
pub struct WgpuOptions {
    /// Use optional adapter features where the adapter offers them: today subgroup reductions
    /// (`Features::SUBGROUP`) in the row norms. `false` runs the portable kernels everywhere.
    /// Env: `JOYRT_WGPU_FAST_PATHS=0` turns them off.
    pub fast_paths: bool,
    /// Treat the storage binding limit as at most this many bytes (tests of the split paths on a
    /// device whose real limit is large).
    pub binding_limit: Option<u64>,
    /// Bytes of free buffers the pool may keep; beyond it the least recently freed are released.
    /// Env: `JOYRT_WGPU_POOL_MB`.
    pub pool_budget: u64,
}

impl Default for WgpuOptions {
    fn default() -> Self {
        WgpuOptions { fast_paths: true, binding_limit: None, pool_budget: DEFAULT_POOL_BUDGET }
    }
}

impl WgpuOptions {
    /// The defaults, changed by `JOYRT_WGPU_FAST_PATHS=0` and `JOYRT_WGPU_POOL_MB=<n>`.
    pub fn from_env() -> WgpuOptions {
        let mut o = WgpuOptions::default();
        if let Ok(v) = std::env::var("JOYRT_WGPU_FAST_PATHS") {
            o.fast_paths = !matches!(v.trim(), "0" | "false" | "off" | "no");
        }
        if let Some(mb) = std::env::var("JOYRT_WGPU_POOL_MB").ok().and_then(|v| v.trim().parse::<u64>().ok())
        {
            o.pool_budget = mb << 20;
        }
        o
    }
}

/// What the adapter is and the limits that decide what fits on it.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    pub name: String,
    pub vendor: u32,
    pub device_type: String,
    pub backend: String,
    pub driver: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub shader_f16: bool,
    pub subgroups: bool,
}

/// An open device with what the backend needs to know about it.
pub(crate) struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    /// `wgpu:<adapter> (<backend>)`, the backend's name in messages.
    pub(crate) name: String,
    /// A CPU implementation (lavapipe, SwiftShader).
    pub(crate) software: bool,
    /// `Features::SUBGROUP` requested (offered by the adapter and fast paths on).
    pub(crate) subgroups: bool,
    /// `Features::SHADER_F16` requested. No kernel needs it: 16-bit storage is packed in u32 and
    /// widened by bit operations, which every adapter runs; this records that native f16 is there.
    pub(crate) shader_f16: bool,
    /// The storage binding limit in force (the adapter's, or lower by [`WgpuOptions::binding_limit`]),
    /// rounded down to a multiple of `offset_alignment` so binding-sized windows stay aligned.
    pub(crate) max_binding: u64,
    /// `min_storage_buffer_offset_alignment`: where a window of a buffer may start.
    pub(crate) offset_alignment: u64,
    /// The adapter's own `max_storage_buffer_binding_size`, for messages.
    adapter_binding: u64,
    pub(crate) max_buffer: u64,
    max_groups: u32,
    pub(crate) report: AdapterReport,
    /// The last error wgpu reported outside a Result (validation, out of memory): wgpu's default
    /// handler would panic, so it is recorded here and returned by the op that caused it.
    error: Arc<Mutex<Option<String>>>,
}

fn unavailable(why: impl Into<String>) -> Error {
    Error::BackendUnavailable { backend: "wgpu".into(), why: why.into() }
}

impl Gpu {
    /// Opens the first adapter wgpu finds (`WGPU_BACKEND` selects vulkan/gl/...).
    pub(crate) async fn open(opts: &WgpuOptions) -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("no GPU adapter: {e}")))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Optional features are requested only where the adapter offers them, so the device request
        // never fails for their sake; the portable kernels stay the fallback.
        // Not in the browser: WebGPU requires `enable subgroups;` in the WGSL, which naga (native)
        // rejects, and the subgroup shader has not been run there.
        let wanted = if opts.fast_paths && info.backend != wgpu::Backend::BrowserWebGpu {
            adapter.features() & (wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16)
        } else {
            wgpu::Features::empty()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("joyrt"),
                required_features: wanted,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("{}: {e}", info.name)))?;
        let error = Arc::new(Mutex::new(None));
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.get_or_insert_with(|| e.to_string());
        }));
        let adapter_binding = limits.max_storage_buffer_binding_size as u64;
        let max_buffer = limits.max_buffer_size;
        let offset_alignment = (limits.min_storage_buffer_offset_alignment as u64).max(4);
        let max_binding = opts.binding_limit.unwrap_or(u64::MAX).min(adapter_binding).min(max_buffer);
        let max_binding = (max_binding / offset_alignment * offset_alignment).max(offset_alignment);
        let report = AdapterReport {
            name: info.name.clone(),
            vendor: info.vendor,
            device_type: format!("{:?}", info.device_type),
            backend: format!("{:?}", info.backend),
            driver: info.driver.clone(),
            max_buffer_size: max_buffer,
            max_storage_buffer_binding_size: adapter_binding,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            shader_f16: wanted.contains(wgpu::Features::SHADER_F16),
            subgroups: wanted.contains(wgpu::Features::SUBGROUP),
        };
        Ok(Gpu {
            report,
            device,
            queue,
            name: format!("wgpu:{} ({:?})", info.name, info.backend),
            software: info.device_type == wgpu::DeviceType::Cpu,
            subgroups: wanted.contains(wgpu::Features::SUBGROUP),
            shader_f16: wanted.contains(wgpu::Features::SHADER_F16),
            max_binding,
            offset_alignment,
            adapter_binding,
            max_buffer,
            max_groups: limits.max_compute_workgroups_per_dimension,
            error,
        })
    }

    fn fail(&self, why: String) -> Error {
        Error::backend(self.name.clone(), why)
    }

    /// The error wgpu reported since the last check, if any.
    pub(crate) fn check(&self, what: &str) -> Result<()> {
        let taken = self.error.lock().unwrap_or_else(|p| p.into_inner()).take();
        match taken {
            None => Ok(()),
            Some(e) if e.to_lowercase().contains("out of memory") => {
                Err(Error::OutOfMemory { backend: self.name.clone(), bytes: 0, what: format!("{what}: {e}") })
            }
            Some(e) => Err(self.fail(format!("{what}: {e}"))),
        }
    }

    /// Refuses, before wgpu sees it, a buffer the device cannot create.
    pub(crate) fn check_buffer(&self, size: u64, what: &str) -> Result<()> {
        if size > self.max_buffer {
            return Err(self.fail(format!(
                "{what}: {size} bytes exceed this adapter's max_buffer_size of {} bytes",
                self.max_buffer
            )));
        }
        Ok(())
    }

    /// Refuses, before wgpu sees it, a binding of `size` bytes past the binding limit.
    pub(crate) fn check_binding(&self, size: u64, what: &str) -> Result<()> {
        if size > self.max_binding {
            return Err(self.fail(format!(
                "{what}: {size} bytes exceed the max_storage_buffer_binding_size of {} bytes{}",
                self.max_binding,
                self.lowered()
            )));
        }
        Ok(())
    }

    /// Says so when the binding limit in force is below the adapter's.
    pub(crate) fn lowered(&self) -> String {
        if self.max_binding < self.adapter_binding {
            format!(" (lowered by options from the adapter's {} bytes)", self.adapter_binding)
        } else {
            String::new()
        }
    }

    /// The `(x, y)` grid of `groups` workgroups: past the per-dimension limit, a second dimension
    /// (kernels flatten it back with `group_index` in shaders/prelude.wgsl).
    pub(crate) fn grid(&self, groups: u64) -> Result<(u32, u32)> {
        let maxg = self.max_groups as u64;
        let (gx, gy) = if groups <= maxg { (groups.max(1), 1) } else { (maxg, groups.div_ceil(maxg)) };
        if gy > maxg {
            return Err(self.fail(format!("{groups} workgroups exceed the adapter's {maxg}² grid")));
        }
        Ok((gx as u32, gy as u32))
    }

    /// Blocks until the queue is idle.
    pub(crate) fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| self.fail(format!("poll: {e}")))
    }
}
