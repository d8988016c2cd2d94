//! Range calibration over data: per activation, the largest |input| seen and
//! how often inputs leave [-B, B] (`pnnc calibrate`, and `pnnc run`'s report).

use super::HeError;
use super::reference::Reference;
use crate::ir::{Checkpoint, Model, OpKind};
use std::collections::BTreeMap;

/// What the inputs of one activation did over the calibration samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
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
}

/// Runs the trained network (unfolded, f64) on every sample and collects
/// the input range of each activation, keyed by activation name.
pub fn calibrate<'s>(
    model: &Model,
    ck: &Checkpoint,
    samples: impl IntoIterator<Item = &'s [f64]>,
) -> Result<BTreeMap<String, SiteRange>, HeError> {
    let reference = Reference::new(model, ck)?;
    let mut sites: BTreeMap<String, SiteRange> = model
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
    for x in samples {
        reference.run(x, &mut |name, v| {
            if let Some(site) = sites.get_mut(name) {
                let outside = v.iter().filter(|x| x.abs() > site.range).count() as u64;
                site.max_abs = v.iter().fold(site.max_abs, |m, x| m.max(x.abs()));
                site.outside += outside;
                site.values += v.len() as u64;
                site.samples_outside += u64::from(outside > 0);
            }
        })?;
    }
    Ok(sites)
}
