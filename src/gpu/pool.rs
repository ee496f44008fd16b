//! Buffer pool: storage buffers are reused by power-of-two size class, so a training step allocates
//! nothing once the first step has warmed the pool.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Usage every pooled storage buffer gets.
pub const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Smallest size class in bytes.
const MIN_CLASS: u64 = 256;

/// Size class (bytes) a request of `bytes` is served from.
pub fn size_class(bytes: u64) -> u64 {
    bytes.max(MIN_CLASS).next_power_of_two()
}

/// Pool statistics, for the no-growth test and for users watching memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes currently handed out.
    pub in_use_bytes: u64,
    /// Bytes ever allocated from the device (in use + free in the pool).
    pub allocated_bytes: u64,
    /// Highest `in_use_bytes` seen.
    pub high_water_bytes: u64,
    /// Number of device allocations made.
    pub allocations: u64,
}

#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    pub(crate) stats: PoolStats,
}

/// A buffer borrowed from the pool; it returns there when the last reference drops.
pub struct PooledBuffer {
    pub(crate) buffer: Option<wgpu::Buffer>,
    class: u64,
    pool: Rc<RefCell<Pool>>,
}

impl PooledBuffer {
    /// The wgpu buffer.
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer
            .as_ref()
            .expect("pooled buffer present until drop")
    }
    /// Its capacity in bytes (the size class).
    pub fn capacity(&self) -> u64 {
        self.class
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buffer.take() {
            let mut pool = self.pool.borrow_mut();
            pool.stats.in_use_bytes -= self.class;
            pool.free.entry(self.class).or_default().push(buf);
        }
    }
}

pub(crate) fn acquire(pool: &Rc<RefCell<Pool>>, device: &wgpu::Device, bytes: u64) -> PooledBuffer {
    let class = size_class(bytes);
    let mut p = pool.borrow_mut();
    let buffer = match p.free.get_mut(&class).and_then(|v| v.pop()) {
        Some(b) => b,
        None => {
            p.stats.allocated_bytes += class;
            p.stats.allocations += 1;
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("pooled"),
                size: class,
                usage: STORAGE_USAGE,
                mapped_at_creation: false,
            })
        }
    };
    p.stats.in_use_bytes += class;
    p.stats.high_water_bytes = p.stats.high_water_bytes.max(p.stats.in_use_bytes);
    drop(p);
    PooledBuffer {
        buffer: Some(buffer),
        class,
        pool: pool.clone(),
    }
}

pub(crate) fn trim(pool: &Rc<RefCell<Pool>>) {
    let mut p = pool.borrow_mut();
    let freed: u64 = p.free.iter().map(|(c, v)| c * v.len() as u64).sum();
    p.free.clear();
    p.stats.allocated_bytes -= freed;
}
