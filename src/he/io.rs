//! Writing and loading circuit files (deterministic JSON, optional
//! safetensors sidecar verified by sha256).

use super::circuit::{self, Circuit, CircuitError, LoadedCircuit, TensorData, TensorStore};
use super::validate;
use crate::ir::weights::write_atomic;
use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Tensors with at most this many numbers in total are written inline.
pub const INLINE_LIMIT: usize = 200_000;

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> CircuitError + '_ {
    move |source| CircuitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn to_json(circuit: &Circuit) -> Result<String, String> {
    let mut s = serde_json::to_string_pretty(circuit).map_err(|e| e.to_string())?;
    s.push('\n');
    Ok(s)
}

/// The sidecar path for a circuit path: `x.circuit.json` -> `x.circuit.safetensors`.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".json").unwrap_or(&name);
    path.with_file_name(format!("{stem}.safetensors"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serialise tensors to safetensors bytes (names sorted).
pub fn sidecar_bytes(tensors: &BTreeMap<String, TensorData>) -> Result<Vec<u8>, String> {
    let raw: Vec<(String, Dtype, Vec<u8>, usize)> = tensors
        .iter()
        .map(|(name, t)| match t {
            TensorData::F64 { data } => (
                name.clone(),
                Dtype::F64,
                data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                data.len(),
            ),
            TensorData::I64 { data } => (
                name.clone(),
                Dtype::I64,
                data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                data.len(),
            ),
        })
        .collect();
    let views = raw
        .iter()
        .map(|(name, dtype, bytes, len)| {
            TensorView::new(*dtype, vec![*len], bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| format!("tensor `{name}`: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

/// Write `circuit` with `tensors` to `path` (sidecar next to it when large).
/// Returns the sidecar path when one was written.
pub fn write(
    path: &Path,
    circuit: &Circuit,
    tensors: &BTreeMap<String, TensorData>,
    inline_limit: usize,
) -> Result<Option<PathBuf>, CircuitError> {
    let total: usize = tensors.values().map(TensorData::len).sum();
    let mut c = circuit.clone();
    let invalid = |message: String| CircuitError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let mut side = None;
    if total <= inline_limit {
        c.tensors = TensorStore::Inline {
            tensors: tensors.clone(),
        };
    } else {
        let sp = sidecar_path(path);
        let bytes = sidecar_bytes(tensors).map_err(invalid)?;
        c.tensors = TensorStore::Sidecar {
            file: sp
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: hex(&Sha256::digest(&bytes)),
        };
        write_atomic(&sp, &bytes).map_err(|e| invalid(e.to_string()))?;
        side = Some(sp);
    }
    let json = to_json(&c).map_err(invalid)?;
    write_atomic(path, json.as_bytes()).map_err(|e| invalid(e.to_string()))?;
    Ok(side)
}

/// Load, resolve the tensors, and validate everything (never panics on bad files).
pub fn load(path: &Path) -> Result<LoadedCircuit, CircuitError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let circuit = circuit::parse(&text, path)?;
    let tensors = match &circuit.tensors {
        TensorStore::Inline { tensors } => tensors.clone(),
        TensorStore::Sidecar { file, sha256 } => {
            let side = |message: String| CircuitError::Sidecar {
                path: path.to_path_buf(),
                file: file.clone(),
                message,
            };
            let sp = path.parent().unwrap_or(Path::new(".")).join(file);
            let bytes = std::fs::read(&sp).map_err(|e| side(e.to_string()))?;
            let found = hex(&Sha256::digest(&bytes));
            if &found != sha256 {
                return Err(side(format!(
                    "sha256 is {found}, the circuit expects {sha256} (weights do not belong to this circuit; recompile)"
                )));
            }
            read_sidecar(&bytes).map_err(side)?
        }
    };
    let loaded = LoadedCircuit { circuit, tensors };
    validate::validate(&loaded).map_err(|message| CircuitError::Invalid {
        path: path.to_path_buf(),
        message,
    })?;
    Ok(loaded)
}

fn read_sidecar(bytes: &[u8]) -> Result<BTreeMap<String, TensorData>, String> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let chunks = view.data().chunks_exact(8).map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            b
        });
        let t = match view.dtype() {
            Dtype::F64 => TensorData::F64 {
                data: chunks.map(f64::from_le_bytes).collect(),
            },
            Dtype::I64 => TensorData::I64 {
                data: chunks.map(i64::from_le_bytes).collect(),
            },
            d => {
                return Err(format!(
                    "tensor `{name}` has dtype {d:?}, expected F64 or I64"
                ));
            }
        };
        out.insert(name, t);
    }
    Ok(out)
}
