//! The autodiff tape: every op on [`Var`]s runs its forward kernel at once and, when a gradient is
//! needed, records a closure holding what its backward needs. [`Tape::backward`] replays those
//! closures in reverse order (their kernels run on the GPU), accumulating gradients of values used
//! more than once. [`Tape::clear`] drops everything, returning the buffers to the pool.

pub mod attention;
pub mod inr;
pub mod layer_norm;
mod ops;
mod params;
pub mod patches;
pub mod spectral_norm;

pub use params::{ParamStore, Parameter};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::elementwise;
use crate::tensor::Tensor;
use std::cell::{Cell, RefCell};

/// Handle to a value on a tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(usize);

impl Var {
    /// Position on the tape.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Backward of one op: gradient of the output → gradients of the inputs (`None` where not needed).
type BackwardFn = Box<dyn Fn(&Tensor) -> Result<Vec<Option<Tensor>>>>;

struct Node {
    value: Tensor,
    requires_grad: bool,
    inputs: Vec<Var>,
    backward: Option<BackwardFn>,
    name: Option<String>,
}

/// The recording of one forward pass.
pub struct Tape {
    gpu: Gpu,
    nodes: RefCell<Vec<Node>>,
    grads: RefCell<Vec<Option<Tensor>>>,
    no_grad_depth: Cell<u32>,
    frozen: RefCell<Vec<String>>,
    power_iterations: Cell<u32>,
}

impl Tape {
    /// An empty tape on `gpu`.
    pub fn new(gpu: &Gpu) -> Tape {
        Tape {
            gpu: gpu.clone(),
            nodes: RefCell::default(),
            grads: RefCell::default(),
            no_grad_depth: Cell::new(0),
            frozen: RefCell::default(),
            power_iterations: Cell::new(1),
        }
    }

    /// The GPU.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Number of values recorded.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop all values and gradients (their buffers return to the pool).
    pub fn clear(&self) {
        self.nodes.borrow_mut().clear();
        self.grads.borrow_mut().clear();
    }

    /// A leaf value. Gradients are kept for leaves that require them.
    pub fn leaf(&self, value: Tensor, requires_grad: bool) -> Var {
        self.push(Node {
            value,
            requires_grad,
            inputs: vec![],
            backward: None,
            name: None,
        })
    }

    /// A constant (no gradient).
    pub fn constant(&self, value: Tensor) -> Var {
        self.leaf(value, false)
    }

    /// Treat parameters whose names start with `prefix` as constants (e.g. D's weights during G's step),
    /// so no gradient is computed for them.
    pub fn freeze(&self, prefix: &str) {
        self.frozen.borrow_mut().push(prefix.to_string());
    }

    /// Undo all [`Tape::freeze`] calls.
    pub fn unfreeze_all(&self) {
        self.frozen.borrow_mut().clear();
    }

    /// Power iterations that spectrally normalised layers run per forward (1 by default; 0 reuses `u`).
    pub fn power_iterations(&self) -> u32 {
        self.power_iterations.get()
    }

    /// Set the power iterations per spectrally normalised forward.
    pub fn set_power_iterations(&self, n: u32) {
        self.power_iterations.set(n);
    }

    /// A named parameter as a leaf that requires a gradient (unless frozen).
    pub fn param(&self, p: &Parameter) -> Var {
        let frozen = self
            .frozen
            .borrow()
            .iter()
            .any(|f| p.name.starts_with(f.as_str()));
        self.push(Node {
            value: p.value.clone(),
            requires_grad: !frozen,
            inputs: vec![],
            backward: None,
            name: Some(p.name.clone()),
        })
    }

    /// A new leaf with the same value and no gradient path to `v`.
    pub fn detach(&self, v: Var) -> Var {
        self.constant(self.value(v))
    }

    /// Run `f` without recording backward closures (values computed inside require no gradient).
    pub fn no_grad<T>(&self, f: impl FnOnce() -> T) -> T {
        self.no_grad_depth.set(self.no_grad_depth.get() + 1);
        let out = f();
        self.no_grad_depth.set(self.no_grad_depth.get() - 1);
        out
    }

    /// The value of `v` (a cheap handle to its buffer).
    pub fn value(&self, v: Var) -> Tensor {
        self.nodes.borrow()[v.0].value.clone()
    }

    /// Shape of `v`.
    pub fn shape(&self, v: Var) -> Vec<usize> {
        self.nodes.borrow()[v.0].value.shape().to_vec()
    }

    /// Whether a gradient flows to `v`.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.nodes.borrow()[v.0].requires_grad
    }

    /// Name given to a parameter leaf.
    pub fn name(&self, v: Var) -> Option<String> {
        self.nodes.borrow()[v.0].name.clone()
    }

    /// Gradient of the last `backward` with respect to `v` (leaves only).
    pub fn grad(&self, v: Var) -> Option<Tensor> {
        self.grads.borrow().get(v.0).cloned().flatten()
    }

    /// Gradients of all named parameter leaves, as (name, gradient); a parameter used twice on the tape
    /// gets the sum of both leaves' gradients.
    pub fn param_grads(&self) -> Result<Vec<(String, Tensor)>> {
        let nodes = self.nodes.borrow();
        let grads = self.grads.borrow();
        let mut out: Vec<(String, Tensor)> = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            if let (Some(name), Some(Some(g))) = (&n.name, grads.get(i)) {
                if let Some(slot) = out.iter_mut().find(|(k, _)| k == name) {
                    slot.1 = elementwise::add(&slot.1, g)?;
                } else {
                    out.push((name.clone(), g.clone()));
                }
            }
        }
        Ok(out)
    }

    fn push(&self, node: Node) -> Var {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(node);
        Var(nodes.len() - 1)
    }

    /// Record an op's output. `backward` is kept only if some input requires a gradient and no no-grad
    /// scope is active.
    pub fn record(
        &self,
        value: Tensor,
        inputs: &[Var],
        backward: impl Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + 'static,
    ) -> Var {
        let requires_grad =
            self.no_grad_depth.get() == 0 && inputs.iter().any(|&v| self.requires_grad(v));
        self.push(Node {
            value,
            requires_grad,
            inputs: inputs.to_vec(),
            backward: if requires_grad {
                Some(Box::new(backward))
            } else {
                None
            },
            name: None,
        })
    }

    /// Backpropagate from the scalar `loss` (one element), seeding dloss = 1.
    pub fn backward(&self, loss: Var) -> Result<()> {
        let value = self.value(loss);
        if value.numel() != 1 {
            return Err(Error::shape(
                "backward",
                format!("the loss must have one element, got {:?}", value.shape()),
            ));
        }
        let seed = Tensor::full(&self.gpu, value.shape(), 1.0)?;
        self.backward_with(loss, seed)
    }

    /// Backpropagate from `out` with the given output gradient.
    pub fn backward_with(&self, out: Var, grad: Tensor) -> Result<()> {
        if grad.shape() != self.shape(out).as_slice() {
            return Err(Error::shape(
                "backward",
                format!(
                    "gradient {:?} does not match the value {:?}",
                    grad.shape(),
                    self.shape(out)
                ),
            ));
        }
        let nodes = self.nodes.borrow();
        let mut grads: Vec<Option<Tensor>> = vec![None; nodes.len()];
        grads[out.0] = Some(grad);
        for id in (0..=out.0).rev() {
            let node = &nodes[id];
            let Some(backward) = &node.backward else {
                continue;
            };
            let Some(g) = grads[id].take() else { continue };
            let input_grads = backward(&g)?;
            for (input, ig) in node.inputs.iter().zip(input_grads) {
                let Some(ig) = ig else { continue };
                if !nodes[input.0].requires_grad {
                    continue;
                }
                let expected = nodes[input.0].value.shape();
                if ig.shape() != expected {
                    return Err(Error::shape(
                        "backward",
                        format!(
                            "op at {id} produced a gradient {:?} for an input of shape {expected:?}",
                            ig.shape()
                        ),
                    ));
                }
                grads[input.0] = Some(match grads[input.0].take() {
                    Some(acc) => elementwise::add(&acc, &ig)?,
                    None => ig,
                });
            }
        }
        *self.grads.borrow_mut() = grads;
        Ok(())
    }
}
