//! Range calibration over data: per activation, the largest |input| seen and
//! how often inputs leave [-B, B] (`pnnc calibrate`, and `pnnc run`'s report).
//!
//! An input outside [-B, B] makes the circuit extrapolate the polynomial, so
//! these *escape* rates say how often an encrypted result can be wrong.
//! `pnnc calibrate -o FILE` writes them as a [`Calibration`] file that
//! `pnnc compile --calibration FILE` reads to warn with the measured figures.

use super::HeError;
use super::reference::Reference;
use crate::ir::{Checkpoint, Model, OpKind};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What the inputs of one activation did over the calibration samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRange {
    /// The activation's declared range B.
    pub range: f64,
    pub max_abs: f64,
    /// Input values with |x| > B, of `values` seen.
    pub outside: u64,
    pub values: u64,
    /// Samples with at least one input outside [-B, B].
    pub samples_outside: u64,
}

impl SiteRange {
    pub fn outside_fraction(&self) -> f64 {
        self.outside as f64 / self.values.max(1) as f64
    }

    fn merge(&mut self, other: &SiteRange) {
        self.max_abs = self.max_abs.max(other.max_abs);
        self.outside += other.outside;
        self.values += other.values;
        self.samples_outside += other.samples_outside;
    }
}

pub type Sites = BTreeMap<String, SiteRange>;

/// Runs the trained network (unfolded, f64) on every sample and collects
/// the input range of each activation, keyed by activation name. Samples run
/// in parallel (rayon); a non-finite activation input is an error naming it.
pub fn calibrate<'s>(
    model: &Model,
    ck: &Checkpoint,
    samples: impl IntoIterator<Item = &'s [f64]>,
) -> Result<Sites, HeError> {
    let reference = Reference::new(model, ck)?;
    let empty: Sites = model
        .ops()
        .iter()
        .filter_map(|o| match &o.kind {
            OpKind::Poly(a) => Some((
                o.name.clone(),
                SiteRange {
                    range: a.range,
                    ..SiteRange::default()
                },
            )),
            _ => None,
        })
        .collect();
    let samples: Vec<&[f64]> = samples.into_iter().collect();
    samples
        .par_iter()
        .enumerate()
        .map(|(i, x)| {
            let mut sites = empty.clone();
            observe_sample(&reference, x, &mut sites)
                .map_err(|e| HeError::Data(format!("sample {i}: {e}")))?;
            Ok(sites)
        })
        .try_reduce(
            || empty.clone(),
            |mut a, b| {
                for (name, site) in &mut a {
                    if let Some(other) = b.get(name) {
                        site.merge(other);
                    }
                }
                Ok(a)
            },
        )
}

fn observe_sample(reference: &Reference, x: &[f64], sites: &mut Sites) -> Result<(), HeError> {
    let mut non_finite = None;
    reference.run(x, &mut |name, v| {
        if let Some(site) = sites.get_mut(name) {
            if non_finite.is_none() && v.iter().any(|x| !x.is_finite()) {
                non_finite = Some(name.to_string());
            }
            let outside = v.iter().filter(|x| x.abs() > site.range).count() as u64;
            site.max_abs = v.iter().fold(site.max_abs, |m, x| m.max(x.abs()));
            site.outside += outside;
            site.values += v.len() as u64;
            site.samples_outside += u64::from(outside > 0);
        }
    })?;
    match non_finite {
        Some(op) => Err(HeError::NonFinite { op, index: 0 }),
        None => Ok(()),
    }
}

/// Value of [`Calibration::format`].
pub const CALIBRATION_FORMAT: &str = "pnnc-calibration";

/// Escape rates of a trained model on data, as `pnnc calibrate -o` writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Always [`CALIBRATION_FORMAT`].
    pub format: String,
    pub version: u32,
    pub model: String,
    /// The model's source hash and the sha256 of the weights file: compile
    /// refuses a calibration of other weights.
    pub model_hash: String,
    pub weights_sha256: String,
    /// Where the samples came from (e.g. "test split of cifar10 (10000 samples)").
    pub data: String,
    pub samples: u64,
    pub sites: Sites,
}

impl Calibration {
    pub fn samples_fraction(&self, site: &SiteRange) -> f64 {
        site.samples_outside as f64 / self.samples.max(1) as f64
    }
}

pub fn sha256_file(path: &Path) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Read a calibration file and check that it belongs to `model` and the
/// weights file `weights`.
pub fn load_calibration(path: &Path, model: &Model, weights: &Path) -> Result<Calibration, String> {
    let at = |m: String| format!("{}: {m}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
    let c: Calibration = serde_json::from_str(&text).map_err(|e| {
        at(format!(
            "not a calibration file: {e}\n  help: write one with `pnnc calibrate MODEL --weights W --data -o FILE`"
        ))
    })?;
    if c.format != CALIBRATION_FORMAT || c.version != 1 {
        return Err(at(format!(
            "format `{}` version {} is not {CALIBRATION_FORMAT} version 1",
            c.format, c.version
        )));
    }
    if c.model_hash != model.source_hash {
        return Err(at(format!(
            "was measured on another model (`{}`, hash {}; this model's hash is {})\n  help: run `pnnc calibrate` again for this model",
            c.model, c.model_hash, model.source_hash
        )));
    }
    if c.weights_sha256 != sha256_file(weights)? {
        return Err(at(format!(
            "was measured with other weights than {} (sha256 differs)\n  help: run `pnnc calibrate` again with these weights",
            weights.display()
        )));
    }
    Ok(c)
}

/// One warning per activation whose inputs left [-B, B] on the calibration data.
pub fn escape_warnings(c: &Calibration, file: &Path) -> Vec<String> {
    c.sites
        .iter()
        .filter(|(_, s)| s.outside > 0)
        .map(|(name, s)| {
            format!(
                "activation `{name}`: {:.4} % of its inputs ({:.2} % of samples) left [-B, B] = [-{b}, {b}] on {} samples (max |x| {:.3}; {}, {}): encrypted results may be wrong for those samples",
                100.0 * s.outside_fraction(),
                100.0 * c.samples_fraction(s),
                c.samples,
                s.max_abs,
                c.data,
                file.display(),
                b = s.range,
            )
        })
        .collect()
}
