//! The ViTGAN networks, composed from `nn` layers.

pub mod config;
pub mod discriminator;
pub mod generator;

pub use config::{ModelConfig, NetConfig, PatchDecoder, StyleInjection};
pub use discriminator::Discriminator;
pub use generator::Generator;
