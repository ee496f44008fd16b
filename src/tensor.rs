//! f32 tensors on the GPU: a pooled buffer plus a row-major shape. Reshapes are views (no copy).

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PooledBuffer};
use std::rc::Rc;

/// A contiguous row-major f32 tensor living in a pooled GPU buffer.
#[derive(Clone)]
pub struct Tensor {
    gpu: Gpu,
    buf: Rc<PooledBuffer>,
    shape: Vec<usize>,
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// Uninitialised tensor (contents are whatever the pool held); kernels that fully overwrite use this.
    pub fn empty(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
        let n = numel(shape);
        let bytes = (n.max(1) * 4) as u64;
        let buf = gpu.alloc(bytes, &format!("a tensor of shape {shape:?}"))?;
        Ok(Tensor {
            gpu: gpu.clone(),
            buf: Rc::new(buf),
            shape: shape.to_vec(),
        })
    }

    /// Tensor of zeros.
    pub fn zeros(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
        let t = Tensor::empty(gpu, shape)?;
        gpu.clear(t.buffer(), (t.numel() * 4) as u64);
        Ok(t)
    }

    /// Tensor filled with `value`.
    pub fn full(gpu: &Gpu, shape: &[usize], value: f32) -> Result<Tensor> {
        let t = Tensor::empty(gpu, shape)?;
        crate::ops::elementwise::fill(&t, value)?;
        Ok(t)
    }

    /// Upload host data.
    pub fn from_slice(gpu: &Gpu, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::shape(
                "Tensor::from_slice",
                format!(
                    "{} values given for shape {shape:?} ({} elements)",
                    data.len(),
                    numel(shape)
                ),
            ));
        }
        let t = Tensor::empty(gpu, shape)?;
        if !data.is_empty() {
            gpu.write(t.buffer(), 0, bytemuck::cast_slice(data))?;
        }
        Ok(t)
    }

    /// Overwrite the contents with host data of the same length.
    pub fn write(&self, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::shape(
                "Tensor::write",
                format!("{} values given for shape {:?}", data.len(), self.shape),
            ));
        }
        self.gpu.write(self.buffer(), 0, bytemuck::cast_slice(data))
    }

    /// Download to the host (blocks until the GPU has finished the work that produces it).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        if self.numel() == 0 {
            return Ok(Vec::new());
        }
        let bytes = self.gpu.read(self.buffer(), 0, (self.numel() * 4) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Start a download that does not block; call `wait()` on the result later.
    pub fn read_async(&self) -> Result<crate::gpu::Readback> {
        self.gpu
            .read_async(self.buffer(), 0, (self.numel().max(1) * 4) as u64)
    }

    /// A view with another shape of the same element count (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot view {:?} ({} elements) as {shape:?}",
                    self.shape,
                    self.numel()
                ),
            ));
        }
        Ok(Tensor {
            gpu: self.gpu.clone(),
            buf: self.buf.clone(),
            shape: shape.to_vec(),
        })
    }

    /// A fresh copy with its own buffer.
    pub fn deep_clone(&self) -> Result<Tensor> {
        let t = Tensor::empty(&self.gpu, &self.shape)?;
        self.gpu
            .copy(self.buffer(), 0, t.buffer(), 0, (self.numel() * 4) as u64);
        Ok(t)
    }

    /// Copy `src`'s contents into this tensor (same element count).
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        if src.numel() != self.numel() {
            return Err(Error::shape(
                "copy_from",
                format!("{:?} into {:?}", src.shape, self.shape),
            ));
        }
        self.gpu
            .copy(src.buffer(), 0, self.buffer(), 0, (self.numel() * 4) as u64);
        Ok(())
    }

    /// Shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
    /// Rank.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// The GPU this tensor lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
    /// The underlying wgpu buffer (may be larger than the tensor).
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.raw()
    }
    /// Whether two tensors share storage.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Rc::ptr_eq(&self.buf, &other.buf)
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}
