//! After training: activation ranges on data (calibration) and the compiled
//! circuit evaluated in plaintext against the trained network (simulation).
//! A non-finite value anywhere is an error that names where it arose.

use super::Failure;
use crate::data::{Dataset, Splits};
use crate::he::io as circuit_io;
use crate::he::reference::Reference;
use crate::ir::{Checkpoint, Model, Normalization};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// A checkpoint trained for `model`: its hash, names and shapes match, and
/// every value is finite.
pub fn load_checkpoint(model: &Model, path: &Path) -> Result<Checkpoint, Failure> {
    let ck = Checkpoint::load(path).map_err(|e| Failure::usage(e.to_string()))?;
    ck.check_matches(model, path)
        .map_err(|e| Failure::usage(e.to_string()))?;
    for (name, t) in &ck.tensors {
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(Failure::usage(format!(
                "{}: tensor `{name}` holds {} at index {i}: these weights are not usable\n  help: use another checkpoint of the run (best.safetensors or last.safetensors)",
                path.display(),
                t.data[i]
            )));
        }
    }
    Ok(ck)
}

/// Where the trained network (unfolded, f64) first leaves the finite
/// numbers on raw sample `x`: the first activation whose input is not
/// finite, else the layers after the last activation.
pub fn non_finite_site(model: &Model, ck: &Checkpoint, x: &[f64]) -> String {
    let Ok(reference) = Reference::new(model, ck) else {
        return "the network".into();
    };
    let mut first = None;
    let logits = reference.run(x, &mut |name, v| {
        if first.is_none() && v.iter().any(|v| !v.is_finite()) {
            first = Some(name.to_string());
        }
    });
    match (first, logits) {
        (Some(site), _) => format!("the input of activation `{site}`"),
        (None, Ok(l)) if l.iter().all(|v| v.is_finite()) => {
            "float32 arithmetic (the same weights stay finite in f64)".into()
        }
        _ => "the layers after the last activation".into(),
    }
}

/// The index of the largest value (the first on ties).
pub fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv { (i, x) } else { (bi, bv) }
        })
        .0
}

/// Raw (unnormalised) samples of `d`: the HE stages take inputs as the data
/// set stores them and apply the checkpoint's normalisation themselves.
pub fn raw_samples(d: &Dataset, norm: &Normalization, limit: usize) -> Vec<(Vec<f64>, usize)> {
    let len = d.sample_len();
    let channels = norm.mean.len().max(1);
    let per_channel = (len / channels).max(1);
    (0..d.len().min(limit))
        .map(|i| {
            let x = d
                .sample(i)
                .iter()
                .enumerate()
                .map(|(j, &v)| {
                    let c = (j / per_channel).min(channels - 1);
                    let (m, s) = (
                        norm.mean.get(c).copied().unwrap_or(0.0),
                        norm.std.get(c).copied().unwrap_or(1.0),
                    );
                    f64::from(v) * f64::from(s) + f64::from(m)
                })
                .collect();
            (x, d.y[i] as usize)
        })
        .collect()
}

/// Smallest and largest raw input value of the training split (the circuit's
/// input range).
pub fn raw_bounds(splits: &Splits) -> (f64, f64) {
    let raw = raw_samples(&splits.train, &splits.normalization, 2000);
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for (x, _) in &raw {
        for &v in x {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

/// Per activation site: (range B, max |x| seen, fraction of values outside [-B, B]).
pub type Calibration = BTreeMap<String, (f64, f64, f64)>;

/// Activation input ranges of the trained network on `samples`. Refuses an
/// empty sample set and names a site whose inputs were not finite.
pub fn calibrate(
    model: &Model,
    ck: &Checkpoint,
    samples: &[(Vec<f64>, usize)],
) -> Result<Calibration, Failure> {
    if samples.is_empty() {
        return Err(Failure::usage(
            "calibration needs at least one sample\n  help: give a data set with a validation or test split",
        ));
    }
    let sites =
        crate::he::calibrate::calibrate(model, ck, samples.iter().map(|(x, _)| x.as_slice()))
            .map_err(|e| Failure::job(e.to_string()))?;
    let mut out = Calibration::new();
    for (name, s) in sites {
        if !s.max_abs.is_finite() {
            return Err(Failure::job(format!(
                "activation `{name}`: its inputs reached {} on the calibration samples: the trained weights are not usable",
                s.max_abs
            )));
        }
        out.insert(name, (s.range, s.max_abs, s.outside_fraction()));
    }
    Ok(out)
}

/// Circuit evaluated in plaintext against the unfolded trained network.
#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    pub samples: usize,
    pub circuit_acc: f64,
    pub network_acc: f64,
    /// Samples where the circuit and the network predict the same class.
    pub agree: usize,
    pub max_logit_diff: f64,
}

pub fn simulate(
    circuit_path: &Path,
    model: &Model,
    ck: &Checkpoint,
    samples: &[(Vec<f64>, usize)],
) -> Result<Simulation, Failure> {
    let lc = circuit_io::load(circuit_path).map_err(|e| Failure::usage(e.to_string()))?;
    let reference = Reference::new(model, ck).map_err(|e| Failure::job(e.to_string()))?;
    let (mut c_ok, mut n_ok, mut agree, mut max_diff) = (0, 0, 0, 0.0f64);
    for (i, (x, label)) in samples.iter().enumerate() {
        let got = crate::he::simulate::finite_logits(&lc, x)
            .map_err(|e| Failure::job(format!("{}: sample {i}: {e}", circuit_path.display())))?;
        let want = reference
            .logits(x)
            .map_err(|e| Failure::job(e.to_string()))?;
        if want.iter().any(|v| !v.is_finite()) {
            return Err(Failure::job(format!(
                "sample {i}: the trained network's logits are not finite: {want:?}"
            )));
        }
        c_ok += usize::from(argmax(&got) == *label);
        n_ok += usize::from(argmax(&want) == *label);
        agree += usize::from(argmax(&got) == argmax(&want));
        max_diff = got
            .iter()
            .zip(&want)
            .fold(max_diff, |m, (a, b)| m.max((a - b).abs()));
    }
    let n = samples.len().max(1) as f64;
    Ok(Simulation {
        samples: samples.len(),
        circuit_acc: c_ok as f64 / n,
        network_acc: n_ok as f64 / n,
        agree,
        max_logit_diff: max_diff,
    })
}
