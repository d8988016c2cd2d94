//! The typed data-set reference of a model's `train { data: ... }` entry.
//!
//! The checker turns `data: name(key: value, ...)` into a [`DataSpec`] through
//! [`DataSpec::from_call`]; errors come back per argument so the checker can
//! point at the exact key. The `data` stage reads nothing but this type.

use super::value::Value;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub source: DataSource,
    /// A path written in the model file (searched before `$PNN_DATA`).
    pub path: Option<String>,
    /// Fraction of the training split held out for validation.
    pub val_fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DataSource {
    Mnist,
    FashionMnist,
}

/// One problem with one argument of a data call (`arg` None: the call itself).
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub arg: Option<String>,
    pub message: String,
    pub help: Option<String>,
}

impl DataSpec {
    /// Names accepted in `data: NAME(...)`.
    pub const KNOWN: &'static [&'static str] = &["mnist", "fashion_mnist"];

    /// Build a spec from a call as written in the model file.
    pub fn from_call(name: &str, args: &[(String, Value)]) -> Result<DataSpec, Vec<SpecError>> {
        let source = match name {
            "mnist" => DataSource::Mnist,
            "fashion_mnist" => DataSource::FashionMnist,
            other => {
                return Err(vec![SpecError {
                    arg: None,
                    message: format!("unknown data set `{other}`"),
                    help: Some(format!("known data sets: {}", Self::KNOWN.join(", "))),
                }]);
            }
        };
        let mut spec = DataSpec {
            source,
            path: None,
            val_fraction: 0.1,
        };
        let mut errors = Vec::new();
        for (key, value) in args {
            match (key.as_str(), value) {
                ("path", Value::Str(s)) => spec.path = Some(s.clone()),
                ("val_fraction", v) if v.as_f64().is_some_and(|f| (0.0..1.0).contains(&f)) => {
                    spec.val_fraction = v.as_f64().unwrap_or(0.1)
                }
                ("path", v) | ("val_fraction", v) => errors.push(SpecError {
                    arg: Some(key.clone()),
                    message: format!("invalid value `{v}` for `{key}`"),
                    help: Some(match key.as_str() {
                        "path" => "write the path as a string: path: \"data/fmnist\"".into(),
                        _ => "use a fraction in [0, 1), e.g. val_fraction: 0.1".into(),
                    }),
                }),
                _ => errors.push(SpecError {
                    arg: Some(key.clone()),
                    message: format!("`{name}` has no option `{key}`"),
                    help: Some("options: path, val_fraction".into()),
                }),
            }
        }
        if errors.is_empty() {
            Ok(spec)
        } else {
            Err(errors)
        }
    }
}
