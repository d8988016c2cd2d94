//! Trained weights as plain data, and their on-disk form (safetensors).
//!
//! Written by `train`, read by `he` and `eval`. A checkpoint carries the hash
//! of the model source it was trained for, and the input normalisation the
//! data stage computed on the training split, so that every later stage
//! feeds the network exactly what it was trained on.

use super::model::Model;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A dense f32 tensor, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }
}

/// Per-channel input normalisation: x' = (x - mean[c]) / std[c].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checkpoint {
    pub model_name: String,
    /// [`Model::source_hash`] of the model these weights belong to.
    pub model_hash: String,
    pub normalization: Normalization,
    /// Parameter tensors named `<op name>.<param>` (see `Op::param_shapes`).
    pub tensors: BTreeMap<String, Tensor>,
    /// Free-form string metadata (epoch, metrics, trainer version, ...).
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors checkpoint: {message}")]
    Format { path: PathBuf, message: String },
    #[error(
        "{path}: these weights were trained for model `{found_name}` (hash {found_hash:.12}), not for `{expected_name}` (hash {expected_hash:.12}); the hash covers the whole model file, `train` section and imports included, so any edit since training changes it\n  help: pass the model file these weights came from (a run folder keeps a copy as model.pnn), or retrain with `pnnc train`"
    )]
    WrongModel {
        path: PathBuf,
        found_name: String,
        found_hash: String,
        expected_name: String,
        expected_hash: String,
    },
    #[error("{path}: missing tensor `{name}` (expected shape {shape:?})")]
    Missing {
        path: PathBuf,
        name: String,
        shape: Vec<usize>,
    },
    #[error("{path}: tensor `{name}` has shape {found:?}, the model needs {expected:?}")]
    Shape {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: tensor `{name}` contains NaN or infinite values")]
    NonFinite { path: PathBuf, name: String },
}

/// A safetensors parse error in plain words, with the library's own text after it.
fn explain(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    let what = match e {
        E::HeaderTooSmall | E::HeaderTooLarge | E::InvalidHeaderLength => {
            "the 8-byte header length at the start of the file is wrong (a truncated file, or not a safetensors file)"
        }
        E::InvalidHeader(_) | E::InvalidHeaderDeserialization(_) => {
            "the JSON header that lists the tensors is damaged"
        }
        E::MetadataIncompleteBuffer | E::InvalidOffset(_) | E::ValidationOverflow => {
            "the tensors the header lists do not fit the bytes after it (a truncated or damaged file)"
        }
        _ => "the file does not follow the safetensors format",
    };
    format!(
        "{what} (safetensors: {e})\n  help: use a checkpoint that `pnnc train` wrote (best.safetensors or last.safetensors of a run)"
    )
}

const META_MODEL_NAME: &str = "pnnc.model_name";
const META_MODEL_HASH: &str = "pnnc.model_hash";
const META_NORM: &str = "pnnc.normalization";
const META_USER_PREFIX: &str = "meta.";

impl Checkpoint {
    /// Serialise to safetensors bytes (tensors sorted by name: deterministic).
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut info: HashMap<String, String> = HashMap::new();
        info.insert(META_MODEL_NAME.into(), self.model_name.clone());
        info.insert(META_MODEL_HASH.into(), self.model_hash.clone());
        info.insert(
            META_NORM.into(),
            serde_json::to_string(&self.normalization).map_err(|e| e.to_string())?,
        );
        for (k, v) in &self.metadata {
            info.insert(format!("{META_USER_PREFIX}{k}"), v.clone());
        }
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let raw = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
                (name.clone(), raw, t.shape.clone())
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, raw, shape)| {
                TensorView::new(Dtype::F32, shape.clone(), raw)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| format!("tensor `{name}`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        safetensors::serialize(views, Some(info)).map_err(|e| e.to_string())
    }

    /// Parse safetensors bytes; `path` only names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint, WeightsError> {
        let format = |message: String| WeightsError::Format {
            path: path.to_path_buf(),
            message,
        };
        let (_, header) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| format(explain(&e)))?;
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format(explain(&e)))?;
        let info = header.metadata().clone().unwrap_or_default();
        let get = |key: &str| {
            info.get(key)
                .cloned()
                .ok_or_else(|| format(format!("metadata has no `{key}` (not written by pnnc?)")))
        };
        let normalization: Normalization = serde_json::from_str(&get(META_NORM)?)
            .map_err(|e| format(format!("bad `{META_NORM}`: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(format(format!(
                    "tensor `{name}` has dtype {:?}, expected F32",
                    view.dtype()
                )));
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.insert(name, Tensor::new(view.shape().to_vec(), data));
        }
        let metadata = info
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(META_USER_PREFIX)
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        Ok(Checkpoint {
            model_name: get(META_MODEL_NAME)?,
            model_hash: get(META_MODEL_HASH)?,
            normalization,
            tensors,
            metadata,
        })
    }

    /// Write atomically: a temporary file in the same folder, then rename, so
    /// a crash never leaves a half-written checkpoint under `path`.
    pub fn save(&self, path: &Path) -> Result<(), WeightsError> {
        let bytes = self.to_bytes().map_err(|message| WeightsError::Format {
            path: path.to_path_buf(),
            message,
        })?;
        write_atomic(path, &bytes)
    }

    pub fn load(path: &Path) -> Result<Checkpoint, WeightsError> {
        let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Checkpoint::from_bytes(&bytes, path)
    }

    /// Check that these weights belong to `model`: same source hash, every
    /// parameter present with the right shape, all values finite.
    pub fn check_matches(&self, model: &Model, path: &Path) -> Result<(), WeightsError> {
        if self.model_hash != model.source_hash {
            return Err(WeightsError::WrongModel {
                path: path.to_path_buf(),
                found_name: self.model_name.clone(),
                found_hash: self.model_hash.clone(),
                expected_name: model.name.clone(),
                expected_hash: model.source_hash.clone(),
            });
        }
        for op in model.ops() {
            for (name, shape) in op.param_shapes() {
                let t = self
                    .tensors
                    .get(&name)
                    .ok_or_else(|| WeightsError::Missing {
                        path: path.to_path_buf(),
                        name: name.clone(),
                        shape: shape.clone(),
                    })?;
                if t.shape != shape {
                    return Err(WeightsError::Shape {
                        path: path.to_path_buf(),
                        name,
                        found: t.shape.clone(),
                        expected: shape,
                    });
                }
                if t.data.iter().any(|x| !x.is_finite()) {
                    return Err(WeightsError::NonFinite {
                        path: path.to_path_buf(),
                        name,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Write `bytes` to `path` through a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WeightsError> {
    use std::io::Write;
    let io = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_tensors_metadata_and_normalization() {
        let mut ck = Checkpoint {
            model_name: "m".into(),
            model_hash: "abc".into(),
            normalization: Normalization {
                mean: vec![0.5],
                std: vec![0.25],
            },
            ..Default::default()
        };
        ck.tensors.insert(
            "fc.weight".into(),
            Tensor::new(vec![2, 3], vec![1., 2., 3., 4., 5., -6.5]),
        );
        ck.metadata.insert("epoch".into(), "3".into());
        let dir = std::env::temp_dir().join(format!("pnnc-weights-{}", std::process::id()));
        let path = dir.join("ck.safetensors");
        ck.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back, ck);
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_a_format_error_naming_the_file() {
        let err =
            Checkpoint::from_bytes(b"not a checkpoint", Path::new("x.safetensors")).unwrap_err();
        assert!(matches!(err, WeightsError::Format { .. }));
        assert!(err.to_string().starts_with("x.safetensors:"), "{err}");
    }
}
