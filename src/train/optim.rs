//! Optimizers with PyTorch's exact update rules (AdamW with decoupled weight
//! decay, SGD with momentum / Nesterov / L2 weight decay), one state slot per
//! parameter tensor, and a serialisable state so that `--resume` continues
//! bit for bit.
//!
//! Gradients arrive read-only from the network; gradient clipping is applied
//! as a per-tensor `grad_scale` (PyTorch multiplies the gradient in place by
//! the same factor before the step, in f32, which is what we do here).

use crate::ir::Optimizer;
use serde::{Deserialize, Serialize};

/// Per-tensor optimizer state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParamState {
    /// AdamW: first moment; SGD: momentum buffer (empty until the first step).
    pub first: Vec<f32>,
    /// AdamW: second moment (empty for SGD).
    pub second: Vec<f32>,
    /// Steps taken on this tensor (PyTorch's per-parameter `step`).
    pub steps: u64,
}

/// An optimizer over a fixed list of parameter tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Optim {
    pub config: Optimizer,
    pub states: Vec<ParamState>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OptimError {
    #[error("optimizer state holds {found} tensors, the network has {expected}")]
    TensorCount { found: usize, expected: usize },
    #[error("optimizer state of tensor {index} has {found} values, the parameter has {expected}")]
    TensorLen {
        index: usize,
        found: usize,
        expected: usize,
    },
}

impl Optim {
    /// A fresh optimizer for parameter tensors of the given lengths.
    pub fn new(config: &Optimizer, lens: &[usize]) -> Optim {
        let states = lens
            .iter()
            .map(|&len| match config {
                Optimizer::AdamW { .. } => ParamState {
                    first: vec![0.0; len],
                    second: vec![0.0; len],
                    steps: 0,
                },
                Optimizer::Sgd { .. } => ParamState::default(),
            })
            .collect();
        Optim {
            config: config.clone(),
            states,
        }
    }

    /// Replace the state by a saved one after checking that it fits `lens`.
    pub fn restore(&mut self, states: Vec<ParamState>, lens: &[usize]) -> Result<(), OptimError> {
        if states.len() != lens.len() {
            return Err(OptimError::TensorCount {
                found: states.len(),
                expected: lens.len(),
            });
        }
        for (index, (s, &len)) in states.iter().zip(lens).enumerate() {
            for buf in [&s.first, &s.second] {
                if !buf.is_empty() && buf.len() != len {
                    return Err(OptimError::TensorLen {
                        index,
                        found: buf.len(),
                        expected: len,
                    });
                }
            }
        }
        self.states = states;
        Ok(())
    }

    /// One update of tensor `index` at learning rate `lr`, with the gradient
    /// multiplied by `grad_scale` first (1.0 when not clipped).
    pub fn step(
        &mut self,
        index: usize,
        lr: f64,
        values: &mut [f32],
        grads: &[f32],
        grad_scale: f32,
    ) {
        debug_assert_eq!(values.len(), grads.len());
        let state = &mut self.states[index];
        state.steps += 1;
        match self.config {
            Optimizer::AdamW {
                weight_decay,
                beta1,
                beta2,
                eps,
                ..
            } => adamw_step(
                state,
                lr,
                AdamParams {
                    weight_decay,
                    beta1,
                    beta2,
                    eps,
                },
                values,
                grads,
                grad_scale,
            ),
            Optimizer::Sgd {
                momentum,
                weight_decay,
                nesterov,
                ..
            } => sgd_step(
                state,
                lr,
                SgdParams {
                    momentum,
                    weight_decay,
                    nesterov,
                },
                values,
                grads,
                grad_scale,
            ),
        }
    }
}

struct AdamParams {
    weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

/// torch.optim.AdamW (amsgrad off, maximize off), single-tensor path:
/// p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
/// p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps).
fn adamw_step(
    state: &mut ParamState,
    lr: f64,
    h: AdamParams,
    values: &mut [f32],
    grads: &[f32],
    grad_scale: f32,
) {
    let t = state.steps as i32;
    let decay = (1.0 - lr * h.weight_decay) as f32;
    let bias1 = 1.0 - h.beta1.powi(t);
    let bias2_sqrt = (1.0 - h.beta2.powi(t)).sqrt();
    let step_size = (lr / bias1) as f32;
    let (b1, b2) = (h.beta1 as f32, h.beta2 as f32);
    let (eps, bias2_sqrt) = (h.eps as f32, bias2_sqrt as f32);
    for (((p, &g), m), v) in values
        .iter_mut()
        .zip(grads)
        .zip(state.first.iter_mut())
        .zip(state.second.iter_mut())
    {
        let g = g * grad_scale;
        *p *= decay;
        *m += (g - *m) * (1.0 - b1);
        *v = *v * b2 + (1.0 - b2) * g * g;
        let denom = v.sqrt() / bias2_sqrt + eps;
        *p -= step_size * *m / denom;
    }
}

struct SgdParams {
    momentum: f64,
    weight_decay: f64,
    nesterov: bool,
}

/// torch.optim.SGD (dampening 0): g += wd p; buf = g on the first step, else
/// buf = mu buf + g; then p -= lr (g + mu buf) (Nesterov) or p -= lr buf.
fn sgd_step(
    state: &mut ParamState,
    lr: f64,
    h: SgdParams,
    values: &mut [f32],
    grads: &[f32],
    grad_scale: f32,
) {
    let (lr, wd, mu) = (lr as f32, h.weight_decay as f32, h.momentum as f32);
    let first_step = state.first.is_empty();
    if h.momentum != 0.0 && first_step {
        state.first = vec![0.0; values.len()];
    }
    for (i, (p, &g)) in values.iter_mut().zip(grads).enumerate() {
        let g = g * grad_scale + wd * *p;
        let d = if h.momentum == 0.0 {
            g
        } else {
            let b = if first_step {
                g
            } else {
                mu * state.first[i] + g
            };
            state.first[i] = b;
            if h.nesterov { g + mu * b } else { b }
        };
        *p -= lr * d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRADS: [[f32; 2]; 2] = [[0.5, -1.0], [0.25, 2.0]];

    fn run(config: Optimizer, grad_scale: f32) -> Vec<[f32; 2]> {
        let mut opt = Optim::new(&config, &[2]);
        let mut p = [1.0f32, -2.0];
        let mut out = Vec::new();
        for g in GRADS {
            // Pre-scaled gradient so that `grad_scale` reproduces `g`.
            let g = [g[0] / grad_scale, g[1] / grad_scale];
            opt.step(0, config.lr(), &mut p, &g, grad_scale);
            out.push(p);
        }
        out
    }

    fn assert_close(got: &[[f32; 2]], want: &[[f64; 2]]) {
        for (g, w) in got.iter().zip(want) {
            for (a, b) in g.iter().zip(w) {
                assert!((*a as f64 - b).abs() < 2e-6, "got {got:?}, want {want:?}");
            }
        }
    }

    // Expected values: PyTorch's update formulas evaluated step by step in f64.
    #[test]
    fn adamw_matches_pytorch_two_steps() {
        let cfg = Optimizer::AdamW {
            lr: 0.01,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        };
        let want = [
            [0.9890000002, -1.9880000001],
            [0.978689204047, -1.989673035347],
        ];
        assert_close(&run(cfg.clone(), 1.0), &want);
        // A clipping scale applied to the gradient gives the same result.
        assert_close(&run(cfg, 0.5), &want);
    }

    #[test]
    fn sgd_momentum_matches_pytorch() {
        let cfg = |nesterov| Optimizer::Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
            nesterov,
        };
        assert_close(
            &run(cfg(false), 1.0),
            &[[0.949, -1.898], [0.877151, -2.004302]],
        );
        assert_close(
            &run(cfg(true), 1.0),
            &[[0.9031, -1.8062], [0.81257411, -2.10014822]],
        );
    }

    #[test]
    fn plain_sgd_is_p_minus_lr_g() {
        let cfg = Optimizer::Sgd {
            lr: 0.5,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        };
        assert_close(&run(cfg, 1.0), &[[0.75, -1.5], [0.625, -2.5]]);
    }

    #[test]
    fn restore_rejects_state_of_another_network() {
        let cfg = Optimizer::AdamW {
            lr: 1e-3,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        };
        let mut opt = Optim::new(&cfg, &[3, 4]);
        let saved = Optim::new(&cfg, &[3, 5]).states;
        assert_eq!(
            opt.restore(saved, &[3, 4]),
            Err(OptimError::TensorLen {
                index: 1,
                found: 5,
                expected: 4
            })
        );
        let saved = Optim::new(&cfg, &[3]).states;
        assert!(matches!(
            opt.restore(saved, &[3, 4]),
            Err(OptimError::TensorCount { .. })
        ));
    }
}
