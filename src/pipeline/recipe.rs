//! Training recipes: the model's own `train { }` section, with the command
//! line's overrides or one of the sweep's methods applied, as the
//! [`RunConfig`] the trainer runs.

use crate::ir::{BoundaryKind, BoundaryLoss, Clip, ClipExcept, Model, OpKind, Reduce};
use crate::train::run::{Progress, RunConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A named recipe of the sweep (and of `--compare relu`).
#[derive(
    clap::ValueEnum,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Boundary loss + selective clipping (the paper's framework).
    Framework,
    /// Selective clipping only.
    NoBoundary,
    /// Boundary loss + clipping of every tensor, BatchNorm included.
    ClipAll,
    /// Boundary loss only.
    NoClip,
    /// Neither boundary loss nor clipping.
    Plain,
    /// The ReLU network (not HE-compatible), with the model's clipping.
    Relu,
}

/// Gradient clipping as the command line chooses it.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClipMode {
    /// Global norm over everything but BatchNorm (the paper).
    Selective,
    /// Global norm over every tensor.
    All,
    Off,
}

/// A comparison network that is not HE-compatible.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    Relu,
}

/// Where the boundary loss comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundaryChoice {
    /// The model's `boundary:` setting (none if it has none).
    Model,
    /// The model's, or the paper's exp loss (weight 10) when it has none.
    ModelOrPaper,
    Off,
}

/// What a run changes of the model's recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    pub boundary: BoundaryChoice,
    /// None: the model's `clip:` setting.
    pub clip: Option<ClipMode>,
    /// Train the ReLU network instead of the polynomial one.
    pub relu: bool,
    /// The sweep method this recipe came from, recorded in the checkpoint.
    pub method: Option<Method>,
}

impl Recipe {
    /// The model's own recipe.
    pub const MODEL: Recipe = Recipe {
        boundary: BoundaryChoice::Model,
        clip: None,
        relu: false,
        method: None,
    };
}

impl ClipMode {
    pub fn name(self) -> &'static str {
        match self {
            ClipMode::Selective => "selective",
            ClipMode::All => "all",
            ClipMode::Off => "off",
        }
    }
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Framework => "framework",
            Method::NoBoundary => "no-boundary",
            Method::ClipAll => "clip-all",
            Method::NoClip => "no-clip",
            Method::Plain => "plain",
            Method::Relu => "relu",
        }
    }

    pub fn recipe(self) -> Recipe {
        let boundary = match self {
            Method::Framework | Method::ClipAll | Method::NoClip => BoundaryChoice::ModelOrPaper,
            Method::NoBoundary | Method::Plain | Method::Relu => BoundaryChoice::Off,
        };
        let clip = match self {
            Method::Framework | Method::NoBoundary => Some(ClipMode::Selective),
            Method::ClipAll => Some(ClipMode::All),
            Method::NoClip | Method::Plain => Some(ClipMode::Off),
            Method::Relu => None,
        };
        Recipe {
            boundary,
            clip,
            relu: self == Method::Relu,
            method: Some(self),
        }
    }
}

/// Settings a run may override; None keeps the model's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overrides {
    pub epochs: Option<u32>,
    pub batch: Option<usize>,
    pub seed: Option<u64>,
    pub recipe: Recipe,
}

impl Default for Overrides {
    fn default() -> Self {
        Overrides {
            epochs: None,
            batch: None,
            seed: None,
            recipe: Recipe::MODEL,
        }
    }
}

/// The paper's boundary loss, used by methods that need one when the model has none.
pub fn paper_boundary() -> BoundaryLoss {
    BoundaryLoss {
        kind: BoundaryKind::Exp,
        penalty: None,
        weight: 10.0,
        reduce: Reduce::Sum,
    }
}

/// The trainer's configuration: the model's `train { }` with `o` applied.
pub fn run_config(model: &Model, o: &Overrides) -> RunConfig {
    let t = &model.train;
    let r = &o.recipe;
    let boundary = match r.boundary {
        // A ReLU network has nothing to keep in range.
        _ if r.relu => None,
        BoundaryChoice::Model => t.boundary.clone(),
        BoundaryChoice::ModelOrPaper => Some(t.boundary.clone().unwrap_or_else(paper_boundary)),
        BoundaryChoice::Off => None,
    };
    let max_norm = t.clip.as_ref().map_or(1.0, |c| c.max_norm);
    let clip = match r.clip {
        None => t.clip.clone(),
        Some(ClipMode::Off) => None,
        Some(ClipMode::Selective) => Some(Clip {
            max_norm,
            except: ClipExcept::BatchNorm,
        }),
        Some(ClipMode::All) => Some(Clip {
            max_norm,
            except: ClipExcept::None,
        }),
    };
    let mut metadata = run_metadata(r.relu);
    if let Some(m) = r.method {
        metadata.insert("method".into(), m.name().into());
    }
    RunConfig {
        epochs: o.epochs.unwrap_or(t.epochs),
        batch: o.batch.unwrap_or(t.batch),
        seed: o.seed.unwrap_or(t.seed),
        optimizer: t.optimizer.clone(),
        poly_lr_scale: t.poly_lr_scale,
        schedule: t.schedule.clone(),
        boundary,
        clip,
        site_ranges: poly_site_ranges(model),
        model_name: model.name.clone(),
        model_hash: model.source_hash.clone(),
        metadata,
        progress: Progress::Quiet,
    }
}

/// (site name, fit range B) of every polynomial activation, for the loop's
/// range report and NaN messages.
pub fn poly_site_ranges(model: &Model) -> BTreeMap<String, f64> {
    model
        .ops()
        .into_iter()
        .filter_map(|op| match &op.kind {
            OpKind::Poly(p) => Some((op.name.clone(), p.range)),
            _ => None,
        })
        .collect()
}

/// Checkpoint metadata every run carries: whether it can run under HE.
pub fn run_metadata(relu: bool) -> BTreeMap<String, String> {
    let mut metadata = BTreeMap::new();
    metadata.insert("he_compatible".into(), (!relu).to_string());
    if relu {
        metadata.insert("baseline".into(), "relu".into());
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        let act = crate::train::models::relu_poly(2, 12.0, crate::ir::Basis::Chebyshev);
        let mut m = crate::train::models::bench_model("mnist_cnn", &act).unwrap();
        m.train.boundary = Some(BoundaryLoss {
            kind: BoundaryKind::Exp,
            penalty: Some(12.0),
            weight: 10.0,
            reduce: Reduce::Sum,
        });
        m.train.clip = Some(Clip {
            max_norm: 0.5,
            except: ClipExcept::BatchNorm,
        });
        m
    }

    fn with(recipe: Recipe, epochs: Option<u32>) -> Overrides {
        Overrides {
            epochs,
            recipe,
            ..Overrides::default()
        }
    }

    #[test]
    fn the_models_recipe_and_command_line_overrides() {
        let m = model();
        let cfg = run_config(&m, &Overrides::default());
        assert_eq!(cfg.clip, m.train.clip);
        assert!(cfg.boundary.is_some());
        assert_eq!(cfg.site_ranges.len(), 3);
        assert_eq!(
            cfg.metadata.get("he_compatible").map(String::as_str),
            Some("true")
        );
        let all = Recipe {
            clip: Some(ClipMode::All),
            ..Recipe::MODEL
        };
        let cfg = run_config(&m, &with(all, Some(5)));
        assert_eq!(
            cfg.clip,
            Some(Clip {
                max_norm: 0.5,
                except: ClipExcept::None
            })
        );
        assert_eq!(cfg.epochs, 5);
        let off = Recipe {
            clip: Some(ClipMode::Off),
            boundary: BoundaryChoice::Off,
            ..Recipe::MODEL
        };
        let cfg = run_config(&m, &with(off, None));
        assert_eq!((cfg.clip, cfg.boundary), (None, None));
        let relu = run_config(
            &m,
            &with(
                Recipe {
                    relu: true,
                    ..Recipe::MODEL
                },
                None,
            ),
        );
        assert_eq!(relu.boundary, None);
        assert_eq!(
            relu.metadata.get("he_compatible").map(String::as_str),
            Some("false")
        );
        assert_eq!(
            relu.metadata.get("baseline").map(String::as_str),
            Some("relu")
        );
    }

    #[test]
    fn methods_map_to_boundary_and_clipping() {
        let mut m = model();
        m.train.boundary = None;
        let cfg = |x: Method| run_config(&m, &with(x.recipe(), None));
        let except = |c: &RunConfig| c.clip.as_ref().map(|c| c.except);
        assert_eq!(cfg(Method::Framework).boundary, Some(paper_boundary()));
        assert_eq!(except(&cfg(Method::Framework)), Some(ClipExcept::BatchNorm));
        assert!(cfg(Method::NoBoundary).boundary.is_none());
        assert_eq!(
            except(&cfg(Method::NoBoundary)),
            Some(ClipExcept::BatchNorm)
        );
        assert_eq!(except(&cfg(Method::ClipAll)), Some(ClipExcept::None));
        assert!(cfg(Method::NoClip).boundary.is_some() && cfg(Method::NoClip).clip.is_none());
        assert!(cfg(Method::Plain).boundary.is_none() && cfg(Method::Plain).clip.is_none());
        let relu = cfg(Method::Relu);
        assert_eq!(relu.clip, m.train.clip);
        assert_eq!(
            relu.metadata.get("method").map(String::as_str),
            Some("relu")
        );
    }
}
