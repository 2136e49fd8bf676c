//! The buffer pool: free lists of device buffers by size class, so a denoising loop reaches a
//! steady state with no device allocation per op.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The smallest size class: params and index buffers all share it.
const MIN_CLASS: u64 = 256;

/// Pool budget when neither [`WgpuOptions::pool_budget`](crate::WgpuOptions::pool_budget) nor `JOYRT_WGPU_POOL_MB` says otherwise.
pub const DEFAULT_POOL_BUDGET: u64 = 1 << 30;

/// The size class of a request of `bytes`: powers of two with three steps of a quarter between
/// them (256, 320, 384, 448, 512, 640, ...), so a pooled buffer wastes less than 25%.
fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(MIN_CLASS);
    let p = b.next_power_of_two();
    if p == b {
        return p;
    }
    let step = p / 8;
    b.div_ceil(step) * step
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(crate) enum Kind {
    /// Tensors, work buffers, params, index lists.
    Storage,
    /// Staging buffers of `download`.
    Readback,
}

impl Kind {
    fn usage(self) -> wgpu::BufferUsages {
        match self {
            Kind::Storage => {
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
            }
            Kind::Readback => wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        }
    }
}

/// Counters of the buffer pool (see [`WgpuBackend::pool_stats`](crate::WgpuBackend::pool_stats)). Bytes are size-class bytes,
/// i.e. device memory, not tensor bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes of device buffers held now by tensors and in-flight temporaries.
    pub live_bytes: u64,
    /// The most `live_bytes` has been since the backend was made.
    pub peak_bytes: u64,
    /// Bytes of free buffers kept for reuse (not counted in `live_bytes`).
    pub pooled_bytes: u64,
    /// `device.create_buffer` calls made for the pool.
    pub allocations: u64,
    /// Requests served from the free lists.
    pub reuses: u64,
    /// Free buffers handed back to the device because the pool exceeded its budget.
    pub releases: u64,
}

struct PoolState {
    /// Free buffers by (kind, size class), each stamped with the tick it was returned at.
    free: HashMap<(Kind, u64), Vec<(u64, wgpu::Buffer)>>,
    tick: u64,
    budget: u64,
    stats: PoolStats,
}

impl PoolState {
    /// Releases the least recently returned free buffers until at most `budget` bytes are pooled.
    fn evict_to(&mut self, budget: u64) {
        while self.stats.pooled_bytes > budget {
            let oldest = self.free.iter().filter_map(|(k, v)| v.first().map(|(t, _)| (*t, *k))).min();
            let Some((_, key)) = oldest else { break };
            let list = self.free.get_mut(&key).expect("key just found");
            let (_, buf) = list.remove(0);
            if list.is_empty() {
                self.free.remove(&key);
            }
            self.stats.pooled_bytes -= key.1;
            self.stats.releases += 1;
            // Dropping is safe with work in flight: wgpu frees the memory once the queue is done with it.
            drop(buf);
        }
    }
}

/// Free lists of device buffers by size class, so a denoising loop reaches a steady state where
/// no op allocates. Buffers come back through [`Block`]'s `Drop`.
///
/// Reuse is safe without waiting for the GPU: every op is submitted to the one queue in order, so a
/// buffer's next user runs after its previous one, and `queue.write_buffer` lands before the next
/// submission's commands, after every earlier submission. Recycled buffers are not zeroed:
/// `zeros` clears explicitly and every kernel writes all of its output.
pub(crate) struct Pool {
    device: wgpu::Device,
    max_buffer: u64,
    state: Mutex<PoolState>,
}

impl Pool {
    /// An empty pool for buffers of at most `max_buffer` bytes, keeping `budget` bytes free.
    pub(crate) fn new(device: wgpu::Device, max_buffer: u64, budget: u64) -> Arc<Pool> {
        Arc::new(Pool {
            device,
            max_buffer,
            state: Mutex::new(PoolState {
                free: HashMap::new(),
                tick: 0,
                budget,
                stats: PoolStats::default(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.lock().stats
    }

    /// Sets the budget and releases the free buffers beyond it now.
    pub(crate) fn set_budget(&self, bytes: u64) {
        let mut s = self.lock();
        s.budget = bytes;
        s.evict_to(bytes);
    }

    /// Releases every free buffer, keeping the budget.
    pub(crate) fn trim(&self) {
        self.lock().evict_to(0);
    }

    /// A buffer of at least `size` bytes (a multiple of 4, already checked against the limits).
    pub(crate) fn take(self: &Arc<Self>, kind: Kind, size: u64) -> Block {
        let mut class = size_class(size);
        if class > self.max_buffer {
            class = size;
        }
        let mut s = self.lock();
        let buf = match s.free.get_mut(&(kind, class)).and_then(|v| v.pop()) {
            Some((_, b)) => {
                s.stats.reuses += 1;
                s.stats.pooled_bytes -= class;
                b
            }
            None => {
                s.stats.allocations += 1;
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size: class,
                    usage: kind.usage(),
                    mapped_at_creation: false,
                })
            }
        };
        s.stats.live_bytes += class;
        s.stats.peak_bytes = s.stats.peak_bytes.max(s.stats.live_bytes);
        Block { buf: Some(buf), kind, class, size, pool: self.clone() }
    }

    fn put(&self, kind: Kind, class: u64, buf: wgpu::Buffer) {
        let mut s = self.lock();
        s.stats.live_bytes -= class;
        s.tick += 1;
        let tick = s.tick;
        s.free.entry((kind, class)).or_default().push((tick, buf));
        s.stats.pooled_bytes += class;
        let budget = s.budget;
        s.evict_to(budget);
    }
}

/// A pooled device buffer; `size` bytes of it are in use (and bound). Goes back to the pool on drop.
pub(crate) struct Block {
    buf: Option<wgpu::Buffer>,
    kind: Kind,
    class: u64,
    size: u64,
    pool: Arc<Pool>,
}

impl Block {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("a live block holds its buffer")
    }

    /// The bytes in use (and bound), at most the size class.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Drops the buffer without returning it to the pool (its creation may have failed).
    pub(crate) fn discard(mut self) {
        if self.buf.take().is_some() {
            self.pool.lock().stats.live_bytes -= self.class;
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.put(self.kind, self.class, b);
        }
    }
}
