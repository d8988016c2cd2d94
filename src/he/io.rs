//! Writing and loading circuit files (deterministic JSON, optional
//! safetensors sidecar verified by sha256).

use super::circuit::{self, Circuit, CircuitError, LoadedCircuit, TensorData, TensorStore};
use super::validate;
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

/// The sidecar path for a circuit path: `x.circuit.json` ->
/// `x.circuit.tensors.safetensors`. The `.tensors` part keeps it apart from
/// checkpoints (`-o runs/x/best.json` must not replace `best.safetensors`).
pub fn sidecar_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".json").unwrap_or(&name);
    path.with_file_name(format!("{stem}.tensors.safetensors"))
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
/// Returns the sidecar path when one was written. Both files are written to
/// temporary files first and renamed into place only when both are complete,
/// so a failure leaves neither a half-written circuit nor an orphan sidecar.
pub fn write(
    path: &Path,
    circuit: &Circuit,
    tensors: &BTreeMap<String, TensorData>,
    inline_limit: usize,
) -> Result<Option<PathBuf>, CircuitError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CircuitError::Write { path, source }
    };
    if path.is_dir() {
        return Err(write_err(path)(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a folder, the circuit needs a file name (e.g. model.circuit.json)",
        )));
    }
    let total: usize = tensors.values().map(TensorData::len).sum();
    let mut c = circuit.clone();
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    if total <= inline_limit {
        c.tensors = TensorStore::Inline {
            tensors: tensors.clone(),
        };
    } else {
        let sp = sidecar_path(path);
        let bytes = sidecar_bytes(tensors)
            .map_err(|m| write_err(&sp)(std::io::Error::new(std::io::ErrorKind::InvalidData, m)))?;
        c.tensors = TensorStore::Sidecar {
            file: sp
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: hex(&Sha256::digest(&bytes)),
        };
        files.push((sp, bytes));
    }
    let json = to_json(&c)
        .map_err(|m| write_err(path)(std::io::Error::new(std::io::ErrorKind::InvalidData, m)))?;
    files.push((path.to_path_buf(), json.into_bytes()));
    let mut staged = Vec::new();
    for (target, bytes) in &files {
        match stage(target, bytes) {
            Ok(tmp) => staged.push((tmp, target.clone())),
            Err(e) => {
                staged.iter().for_each(|(tmp, _)| remove(tmp));
                return Err(write_err(target)(e));
            }
        }
    }
    for (i, (tmp, target)) in staged.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, target) {
            staged[i..].iter().for_each(|(tmp, _)| remove(tmp));
            staged[..i].iter().for_each(|(_, done)| remove(done));
            return Err(write_err(target)(e));
        }
    }
    Ok((files.len() == 2).then(|| files.swap_remove(0).0))
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// Write `bytes` to a temporary file next to `target`; returns its path.
fn stage(target: &Path, bytes: &[u8]) -> Result<PathBuf, std::io::Error> {
    use std::io::Write;
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "circuit".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            remove(&tmp);
            Err(e)
        }
    }
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
