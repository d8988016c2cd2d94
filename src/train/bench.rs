//! Timing of one training step on random data (the `pnnc bench` command).

use crate::ir::{BoundaryKind, BoundaryLoss, Model, Reduce};
use crate::train::{Network, NetworkOptions, TrainError};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    pub median_step_ms: f64,
    pub samples_per_s: f64,
    /// Peak resident memory of the whole process so far (Linux VmHWM), if known.
    pub peak_rss_mb: Option<f64>,
    pub final_loss: f64,
}

/// Peak resident set size of this process in MiB (Linux only).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Deterministic standard-normal-ish inputs and labels.
fn random_batch(len: usize, batch: usize, classes: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let x = (0..len * batch)
        .map(|_| {
            // Sum of 4 uniforms, rescaled: unit variance, roughly normal.
            let s: f64 = (0..4).map(|_| next()).sum::<f64>() - 2.0;
            (s * 3f64.sqrt()) as f32
        })
        .collect();
    let y = (0..batch)
        .map(|_| (next() * classes as f64) as u32 % classes as u32)
        .collect();
    (x, y)
}

/// Median wall time of `steps` training steps after `warmup` steps, on the
/// current rayon pool. Each step is forward + backward (with the paper's exp
/// boundary loss, lambda 10, reduced by sum) + a plain Adam update, like the
/// PyTorch reference.
pub fn time_train_step(
    model: &Model,
    batch: usize,
    penalty: f64,
    warmup: usize,
    steps: usize,
    opts: &NetworkOptions,
) -> Result<BenchResult, TrainError> {
    let mut net = Network::new(model, 0, opts)?;
    let (x, y) = random_batch(net.input_len(), batch, net.classes(), 1);
    let boundary = BoundaryLoss {
        kind: BoundaryKind::Exp,
        penalty: Some(penalty),
        weight: 10.0,
        reduce: Reduce::Sum,
    };
    let mut moments: Vec<(Vec<f32>, Vec<f32>)> = net
        .params()
        .iter()
        .map(|p| (vec![0.0; p.len], vec![0.0; p.len]))
        .collect();
    let mut times = Vec::with_capacity(steps);
    let mut final_loss = f64::NAN;
    for step in 0..warmup + steps {
        let start = Instant::now();
        let out = net.train_step(&x, &y, batch, Some(&boundary), step as u64)?;
        net.visit_params_mut(&mut |i, _, v, g| {
            let (m, s) = &mut moments[i];
            for (((v, g), m), s) in v.iter_mut().zip(g).zip(m.iter_mut()).zip(s.iter_mut()) {
                *m = 0.9 * *m + 0.1 * g;
                *s = 0.999 * *s + 0.001 * g * g;
                *v -= 1e-3 * *m / (s.sqrt() + 1e-8);
            }
        });
        if step >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
        final_loss = out.loss;
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    Ok(BenchResult {
        median_step_ms: median * 1e3,
        samples_per_s: batch as f64 / median,
        peak_rss_mb: peak_rss_mb(),
        final_loss,
    })
}
