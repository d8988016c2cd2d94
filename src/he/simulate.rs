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
}

impl NoiseModel {
    pub fn for_circuit(lc: &LoadedCircuit, seed: u64) -> Self {
        let n = lc.circuit.params.ring_dim as f64;
        let scale = 2f64.powi(lc.circuit.params.scale_bits as i32);
        NoiseModel {
            rng: StdRng::seed_from_u64(seed),
            fresh_std: 3.2 * n * (4.0f64 / 3.0).sqrt() / scale,
            rescale_std: n * (2.0f64 / 36.0).sqrt() / scale,
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

/// Every value of the circuit for one raw sample; the logits are
/// `values[output][..classes]`.
pub fn run(lc: &LoadedCircuit, x: &[f64], mut noise: Option<&mut NoiseModel>) -> Vec<Vec<f64>> {
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
    let mut values = vec![input];
    for op in &c.ops {
        let x = &values[op.inputs[0]];
        let mut y: Vec<f64> = match &op.kind {
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
                .zip(&values[op.inputs[1]])
                .map(|(a, b)| a + b)
                .collect(),
        };
        if let Some(n) = noise.as_deref_mut() {
            let std = n.rescale_std * f64::from(op.level_out - op.level_in).sqrt();
            n.perturb(&mut y, std);
        }
        values.push(y);
    }
    values
}

/// The logits of one raw sample.
pub fn logits(lc: &LoadedCircuit, x: &[f64], noise: Option<&mut NoiseModel>) -> Vec<f64> {
    let mut values = run(lc, x, noise);
    let mut out = values.swap_remove(lc.circuit.output);
    out.truncate(lc.circuit.model.classes);
    out
}

/// The logits of one raw sample, or the first op whose output is not finite
/// (named by the IR ops it implements): a NaN or Inf is never a result.
pub fn finite_logits(lc: &LoadedCircuit, x: &[f64]) -> Result<Vec<f64>, String> {
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(format!("input value {i} is {}", x[i]));
    }
    let mut values = run(lc, x, None);
    for op in &lc.circuit.ops {
        if let Some(v) = values[op.id].iter().find(|v| !v.is_finite()) {
            return Err(format!(
                "op {} ({}) produced {v}",
                op.id,
                op.source.join(", ")
            ));
        }
    }
    let mut out = values.swap_remove(lc.circuit.output);
    out.truncate(lc.circuit.model.classes);
    Ok(out)
}
