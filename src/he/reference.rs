//! Plain f64 evaluation of the *unfolded* IR with a checkpoint, in eval mode
//! (BatchNorm with running statistics, dropout off): the ground truth that
//! folding, the circuit simulator and calibration are checked against.

use super::HeError;
use super::affine::{self, AffineMap, ParamSource};
use super::poly;
use crate::ir::{Checkpoint, Model, Op, OpKind};
use std::collections::HashMap;

/// Per-element (scale, shift).
pub type Elementwise = (Vec<f64>, Vec<f64>);

/// A checkpoint seen as f64 parameters.
pub struct CheckpointParams<'a>(pub &'a Checkpoint);

impl ParamSource for CheckpointParams<'_> {
    fn param(&self, op: &Op, suffix: &str) -> Result<Vec<f64>, String> {
        let name = format!("{}.{suffix}", op.name);
        let t = self
            .0
            .tensors
            .get(&name)
            .ok_or_else(|| format!("missing tensor `{name}`"))?;
        let expected = op
            .param_shapes()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s);
        if let Some(shape) = expected
            && shape != t.shape
        {
            return Err(format!(
                "tensor `{name}` has shape {:?}, the model needs {shape:?}",
                t.shape
            ));
        }
        if t.data.iter().any(|x| !x.is_finite()) {
            return Err(format!("tensor `{name}` contains NaN or infinite values"));
        }
        Ok(t.data.iter().map(|&x| f64::from(x)).collect())
    }
}

/// Evaluates the IR sample by sample; `observe` sees every activation input.
pub struct Reference<'a> {
    model: &'a Model,
    /// Input normalisation as (scale, shift) per element of the input.
    norm: Option<Elementwise>,
    /// Each linear op's affine map and each activation's coefficients, built
    /// once (a conv's map is the costly part of a sample).
    maps: HashMap<String, AffineMap>,
    coeffs: HashMap<String, Vec<f64>>,
}

impl<'a> Reference<'a> {
    pub fn new(model: &'a Model, ck: &'a Checkpoint) -> Result<Self, HeError> {
        let norm = normalization_map(model, ck)?;
        let params = CheckpointParams(ck);
        let (mut maps, mut coeffs) = (HashMap::new(), HashMap::new());
        for op in model.ops() {
            let weights = |m: String| HeError::Weights {
                op: op.name.clone(),
                message: m,
            };
            match &op.kind {
                OpKind::Poly(_) => {
                    coeffs.insert(
                        op.name.clone(),
                        params.param(op, "coeffs").map_err(weights)?,
                    );
                }
                OpKind::Residual { .. } | OpKind::Concat { .. } => {}
                _ => {
                    let map = affine::op_map(op, &params)
                        .map_err(weights)?
                        .ok_or_else(|| HeError::Model(format!("{}: not a linear op", op.name)))?;
                    maps.insert(op.name.clone(), map);
                }
            }
        }
        Ok(Reference {
            model,
            norm,
            maps,
            coeffs,
        })
    }

    /// Logits of one raw (unnormalised) sample.
    pub fn logits(&self, x: &[f64]) -> Result<Vec<f64>, HeError> {
        self.run(x, &mut |_, _| {})
    }

    /// Like [`Self::logits`], calling `observe(op name, activation input)` at each poly.
    pub fn run(
        &self,
        x: &[f64],
        observe: &mut dyn FnMut(&str, &[f64]),
    ) -> Result<Vec<f64>, HeError> {
        let expected = self.model.input.numel() as usize;
        if x.len() != expected {
            return Err(HeError::Data(format!(
                "sample has {} values, the model input {} needs {expected}",
                x.len(),
                self.model.input
            )));
        }
        let v = match &self.norm {
            Some((s, b)) => x
                .iter()
                .zip(s)
                .zip(b)
                .map(|((x, s), b)| x * s + b)
                .collect(),
            None => x.to_vec(),
        };
        self.seq(&self.model.net, v, observe)
    }

    fn seq(
        &self,
        ops: &[Op],
        mut v: Vec<f64>,
        observe: &mut dyn FnMut(&str, &[f64]),
    ) -> Result<Vec<f64>, HeError> {
        for op in ops {
            v = self.op(op, v, observe)?;
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(HeError::NonFinite {
                    op: op.name.clone(),
                    index: i,
                });
            }
        }
        Ok(v)
    }

    fn op(
        &self,
        op: &Op,
        v: Vec<f64>,
        observe: &mut dyn FnMut(&str, &[f64]),
    ) -> Result<Vec<f64>, HeError> {
        let missing = || HeError::Model(format!("{}: not prepared", op.name));
        match &op.kind {
            OpKind::Poly(act) => {
                observe(&op.name, &v);
                let coeffs = self.coeffs.get(&op.name).ok_or_else(missing)?;
                Ok(v.iter()
                    .map(|&x| poly::eval_activation(act.basis, coeffs, act.range, x))
                    .collect())
            }
            OpKind::Residual { body, shortcut } => {
                let a = self.seq(body, v.clone(), observe)?;
                let b = self.seq(shortcut, v, observe)?;
                if a.len() != b.len() {
                    return Err(HeError::Model(format!(
                        "{}: residual branches give {} and {} values",
                        op.name,
                        a.len(),
                        b.len()
                    )));
                }
                Ok(a.iter().zip(&b).map(|(x, y)| x + y).collect())
            }
            OpKind::Concat { branches } => {
                // One sample: its branches' values one after another.
                let mut out = Vec::with_capacity(op.output.numel() as usize);
                for branch in branches {
                    out.extend(self.seq(branch, v.clone(), observe)?);
                }
                if out.len() as u64 != op.output.numel() {
                    return Err(HeError::Model(format!(
                        "{}: branches give {} values, the concat {} holds {}",
                        op.name,
                        out.len(),
                        op.output,
                        op.output.numel()
                    )));
                }
                Ok(out)
            }
            _ => {
                let map = self.maps.get(&op.name).ok_or_else(missing)?;
                if map.in_len != v.len() {
                    return Err(HeError::Model(format!(
                        "{}: expects {} values, got {}",
                        op.name,
                        map.in_len,
                        v.len()
                    )));
                }
                Ok(map.apply(&v))
            }
        }
    }
}

/// The checkpoint's per-channel normalisation as per-element (scale, shift);
/// None when it is empty (the network was trained on raw inputs).
pub fn normalization_map(model: &Model, ck: &Checkpoint) -> Result<Option<Elementwise>, HeError> {
    let n = &ck.normalization;
    if n.mean.is_empty() && n.std.is_empty() {
        return Ok(None);
    }
    let channels = model.input.dims().first().copied().unwrap_or(1);
    if n.mean.len() != channels || n.std.len() != channels {
        return Err(HeError::Weights {
            op: "normalization".into(),
            message: format!(
                "has {} means and {} stds, the input {} has {channels} channels",
                n.mean.len(),
                n.std.len(),
                model.input
            ),
        });
    }
    if n.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || n.mean.iter().any(|m| !m.is_finite()) {
        return Err(HeError::Weights {
            op: "normalization".into(),
            message: "std must be finite and positive, mean finite".into(),
        });
    }
    let scale: Vec<f64> = n.std.iter().map(|&s| 1.0 / f64::from(s)).collect();
    let shift: Vec<f64> = n
        .mean
        .iter()
        .zip(&n.std)
        .map(|(&m, &s)| -f64::from(m) / f64::from(s))
        .collect();
    let map = affine::per_channel(model.input.dims(), &scale, &shift);
    Ok(map.as_diagonal())
}
