//! Plaintext f64 evaluation of a circuit (not of the IR), optionally with a
//! CKKS noise model to predict the encrypted error (docs/he.md, "Noise").

use super::circuit::{LoadedCircuit, OpKind};
use super::poly::eval_chebyshev;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Gaussian per-slot errors at the circuit's scale 2^scale_bits:
/// fresh encryption ~ 3.2 * N * sqrt(4/3) / scale (RLWE error of std 3.2 times
/// ternary secret and ephemeral key, through the canonical embedding), and each
/// rescale ~ N * sqrt(2/36) / scale (rounding uniform in [-1/2, 1/2] on c0 + c1 s).
pub struct NoiseModel {
    rng: StdRng,
    pub fresh_std: f64,
    pub rescale_std: f64,
    /// A bootstrap's error: about 2^-(scale_bits - 41) on values in [-1, 1]
    /// (OpenFHE 1.6, sparse secret, budget [3, 3], q0 = 2^60, measured).
    pub bootstrap_std: f64,
}

impl NoiseModel {
    pub fn for_circuit(lc: &LoadedCircuit, seed: u64) -> Self {
        let n = lc.circuit.params.ring_dim as f64;
        let scale = 2f64.powi(lc.circuit.params.scale_bits as i32);
        NoiseModel {
            rng: StdRng::seed_from_u64(seed),
            fresh_std: 3.2 * n * (4.0f64 / 3.0).sqrt() / scale,
            rescale_std: n * (2.0f64 / 36.0).sqrt() / scale,
            bootstrap_std: 2f64.powi(41 - lc.circuit.params.scale_bits as i32),
        }
    }

    fn gauss(&mut self, std: f64) -> f64 {
        // Box-Muller.
        let u1: f64 = self.rng.r#gen::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = self.rng.r#gen::<f64>();
        std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn perturb(&mut self, v: &mut [f64], std: f64) {
        for x in v {
            *x += self.gauss(std);
        }
    }
}

/// A value that stopped being a finite number, and the op that produced it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("op {op} ({source_ops}) produced a non-finite value at slot {slot}")]
pub struct NonFinite {
    /// Value id (0: the input after the client-side transform).
    pub op: usize,
    pub source_ops: String,
    pub slot: usize,
}

/// Every value of the circuit for one raw sample; the logits are
/// `values[output][..classes]`. Values may be non-finite (see [`run_checked`]).
pub fn run(lc: &LoadedCircuit, x: &[f64], noise: Option<&mut NoiseModel>) -> Vec<Vec<f64>> {
    evaluate(lc, x, noise, false).unwrap_or_default()
}

/// Like [`run`], but the first non-finite value is an error naming its op.
pub fn run_checked(
    lc: &LoadedCircuit,
    x: &[f64],
    noise: Option<&mut NoiseModel>,
) -> Result<Vec<Vec<f64>>, NonFinite> {
    evaluate(lc, x, noise, true)
}

fn evaluate(
    lc: &LoadedCircuit,
    x: &[f64],
    mut noise: Option<&mut NoiseModel>,
    check: bool,
) -> Result<Vec<Vec<f64>>, NonFinite> {
    let c = &lc.circuit;
    let mut input = x.to_vec();
    if let (Some(s), Some(b)) = (&c.input.scale, &c.input.shift) {
        let (s, b) = (lc.f64s(s), lc.f64s(b));
        for ((v, s), b) in input.iter_mut().zip(s).zip(b) {
            *v = *v * s + b;
        }
    }
    if let Some(n) = noise.as_deref_mut() {
        let std = n.fresh_std;
        n.perturb(&mut input, std);
    }
    if check {
        finite(&input, 0, "input")?;
    }
    let mut values = vec![input];
    for op in &c.ops {
        let mut y = eval_op(lc, &op.kind, &op.inputs, &values);
        if let Some(n) = noise.as_deref_mut() {
            let std = match op.kind {
                OpKind::Bootstrap { .. } => n.bootstrap_std,
                _ => n.rescale_std * f64::from(op.level_out.saturating_sub(op.level_in)).sqrt(),
            };
            n.perturb(&mut y, std);
        }
        if check {
            finite(&y, op.id, &op.source.join(", "))?;
        }
        values.push(y);
    }
    Ok(values)
}

fn finite(v: &[f64], op: usize, source: &str) -> Result<(), NonFinite> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(slot) => Err(NonFinite {
            op,
            source_ops: source.to_string(),
            slot,
        }),
    }
}

fn eval_op(lc: &LoadedCircuit, kind: &OpKind, inputs: &[usize], values: &[Vec<f64>]) -> Vec<f64> {
    let x = &values[inputs[0]];
    match kind {
        OpKind::Linear {
            rows,
            cols,
            values: vals,
            bias,
            ..
        } => {
            let mut y = lc.f64s(bias).to_vec();
            for ((&r, &col), &v) in lc.i64s(rows).iter().zip(lc.i64s(cols)).zip(lc.f64s(vals)) {
                y[r as usize] += v * x[col as usize];
            }
            y
        }
        OpKind::Affine { scale, shift, .. } => x
            .iter()
            .zip(lc.f64s(scale))
            .zip(lc.f64s(shift))
            .map(|((x, s), b)| x * s + b)
            .collect(),
        OpKind::Poly { coeffs, .. } => x.iter().map(|&t| eval_chebyshev(coeffs, t)).collect(),
        OpKind::Add { .. } => x
            .iter()
            .zip(&values[inputs[1]])
            .map(|(a, b)| a + b)
            .collect(),
        OpKind::Bootstrap { .. } => x.clone(),
        OpKind::Sum {
            out_len,
            stride,
            count,
            ..
        } => (0..*out_len)
            .map(|s| {
                (0..*count as usize)
                    .map(|q| x.get(s + q * *stride as usize).copied().unwrap_or(0.0))
                    .sum()
            })
            .collect(),
    }
}

/// The logits of one raw sample (may be non-finite: see [`checked_logits`]).
pub fn logits(lc: &LoadedCircuit, x: &[f64], noise: Option<&mut NoiseModel>) -> Vec<f64> {
    let mut values = run(lc, x, noise);
    let mut out = values.swap_remove(lc.circuit.output);
    out.truncate(lc.circuit.model.classes);
    out
}

/// The logits of one raw sample; a non-finite value anywhere is an error naming its op.
pub fn checked_logits(
    lc: &LoadedCircuit,
    x: &[f64],
    noise: Option<&mut NoiseModel>,
) -> Result<Vec<f64>, NonFinite> {
    let mut values = run_checked(lc, x, noise)?;
    let mut out = values.swap_remove(lc.circuit.output);
    out.truncate(lc.circuit.model.classes);
    Ok(out)
}

/// [`checked_logits`] without noise, the error as text (`pnnc run`'s check).
pub fn finite_logits(lc: &LoadedCircuit, x: &[f64]) -> Result<Vec<f64>, String> {
    checked_logits(lc, x, None).map_err(|e| e.to_string())
}

/// An activation whose (1/B-scaled) input left [-1, 1] for one sample: the
/// circuit then extrapolates the polynomial.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Escape {
    /// The poly op's id and source.
    pub op: usize,
    pub source: Vec<String>,
    /// Elements of the input with |x| > B, of `values`.
    pub outside: usize,
    pub values: usize,
    /// Largest |x| / B.
    pub max_ratio: f64,
}

/// Every activation of `values` (from [`run`] on one sample) whose input
/// elements left [-B, B]; only slots that hold elements are read.
pub fn escapes(lc: &LoadedCircuit, values: &[Vec<f64>]) -> Vec<Escape> {
    lc.circuit
        .ops
        .iter()
        .filter(|op| matches!(op.kind, OpKind::Poly { .. }))
        .filter_map(|op| {
            let input = values.get(op.inputs[0])?;
            let slots = super::layout::slot_map(&op.in_shape, op.layout.as_ref());
            let (mut outside, mut max_ratio) = (0, 0.0f64);
            for &s in &slots {
                let r = input.get(s).map_or(0.0, |x| x.abs());
                outside += usize::from(r > 1.0);
                max_ratio = max_ratio.max(r);
            }
            (outside > 0).then(|| Escape {
                op: op.id,
                source: op.source.clone(),
                outside,
                values: slots.len(),
                max_ratio,
            })
        })
        .collect()
}
