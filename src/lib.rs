//! ViTGAN on a hand-written wgpu/WGSL compute engine. See README.md and shared/DESIGN.md.

pub mod autodiff;
pub mod data;
pub mod error;
pub mod gpu;
pub mod io;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod train;

pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions};
pub mod ops;
pub mod tensor;

pub use autodiff::{ParamStore, Parameter, Tape, Var};
pub use tensor::Tensor;
