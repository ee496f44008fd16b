//! ViTGAN on a hand-written wgpu/WGSL compute engine. See README.md and shared/DESIGN.md.

pub mod autodiff;
pub mod error;
pub mod gpu;

pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions};
pub mod ops;
pub mod tensor;

pub use autodiff::{ParamStore, Parameter, Tape, Var};
pub use tensor::Tensor;
