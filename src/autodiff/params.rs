//! Named parameters: persistent tensors that live across steps, entered on a tape as leaves.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A trainable tensor with the stable name checkpoints use (`generator.blocks.0.attn.qkv.weight`).
#[derive(Clone, Debug)]
pub struct Parameter {
    pub name: String,
    pub value: Tensor,
}

/// An ordered set of named parameters.
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    params: Vec<Parameter>,
    states: Vec<Parameter>,
}

impl ParamStore {
    /// Empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a parameter; names must be unique.
    pub fn add(&mut self, name: impl Into<String>, value: Tensor) -> Result<Parameter> {
        let name = name.into();
        if self.get(&name).is_some() {
            return Err(Error::Other(format!("parameter `{name}` is defined twice")));
        }
        let p = Parameter { name, value };
        self.params.push(p.clone());
        Ok(p)
    }

    /// Add a persistent non-trainable tensor (power-iteration vectors, σ(W_init)); checkpoints keep it.
    pub fn add_state(&mut self, name: impl Into<String>, value: Tensor) -> Result<Parameter> {
        let name = name.into();
        if self.get(&name).is_some() || self.states.iter().any(|p| p.name == name) {
            return Err(Error::Other(format!("tensor `{name}` is defined twice")));
        }
        let p = Parameter { name, value };
        self.states.push(p.clone());
        Ok(p)
    }

    /// Persistent non-trainable tensors in insertion order.
    pub fn states(&self) -> impl Iterator<Item = &Parameter> {
        self.states.iter()
    }

    /// Look a parameter up by name.
    pub fn get(&self, name: &str) -> Option<&Parameter> {
        self.params.iter().find(|p| p.name == name)
    }

    /// All parameters in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &Parameter> {
        self.params.iter()
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Total number of scalar values.
    pub fn numel(&self) -> usize {
        self.params.iter().map(|p| p.value.numel()).sum()
    }
}
