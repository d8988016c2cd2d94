//! The HE circuit: what `pnnc compile` writes and the CKKS runners execute.
//!
//! Plain serde data; the normative description is `docs/circuit-format.md`
//! (schema: `docs/circuit.schema.json`). A ciphertext holds up to
//! `samples_per_ciphertext` samples, sample s in slots `[s * dim, (s + 1) * dim)`,
//! each value in its op's slot layout (`super::layout`).

use super::layout::SlotLayout;
pub use super::params::SecretKey;
use crate::ir::{DataSpec, Normalization};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Value of the `format` field.
pub const FORMAT: &str = "pnnc-circuit";
/// Version of this format; readers reject any other.
pub const VERSION: u32 = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Circuit {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    pub model: ModelInfo,
    pub params: CkksParams,
    pub packing: Packing,
    pub input: InputSpec,
    /// In evaluation order; op `i` produces value `i + 1` (value 0 is the input).
    pub ops: Vec<CircuitOp>,
    /// The value holding the logits (first `model.classes` slots).
    pub output: usize,
    /// Levels consumed at the output = max `level_out`; equals `pnnc info`'s depth.
    pub depth: u32,
    /// Every rotation step any op needs (sorted, unique, nonzero, |s| <= dim;
    /// negative = right rotation).
    pub rotations: Vec<i64>,
    /// Numeric arrays referenced by name from ops.
    pub tensors: TensorStore,
}

/// Where the model came from, and what a runner needs to load its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub name: String,
    pub source_hash: String,
    /// Input shape without batch, e.g. `[1, 28, 28]`.
    pub input_shape: Vec<usize>,
    pub classes: usize,
    pub class_names: Vec<String>,
    /// The model's `train { data: ... }`, so `simulate` can load data itself.
    pub data: Option<DataSpec>,
    /// The normalisation the network was trained with. Informational: it is
    /// already folded into the circuit (runners feed raw samples).
    pub normalization: Normalization,
}

/// CKKS parameters chosen for the model's depth and security level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CkksParams {
    /// Always `"ckks"`.
    pub scheme: String,
    /// Classical security in bits: 128, 192 or 256 (HE standard table).
    pub security: u32,
    /// Ring dimension N (power of two).
    pub ring_dim: u64,
    /// N / 2.
    pub slots: u64,
    /// Bits of the first (base) modulus q0.
    pub first_mod_bits: u32,
    /// Bits of each scaling modulus = log2 of the encoding scale.
    pub scale_bits: u32,
    /// Multiplicative depth the key material supports (levels L).
    pub mult_depth: u32,
    /// Digits of OpenFHE's HYBRID key switching (sizes the special primes P).
    pub key_switch_digits: u32,
    /// first_mod_bits + mult_depth * scale_bits (+ special primes excluded).
    pub log_q: u32,
    /// log2(Q * P) with the special primes OpenFHE adds for `key_switch_digits`.
    pub log_qp: u32,
    /// The HE-standard maximum log2(Q*P) for `ring_dim` at `security`.
    pub max_log_q: u32,
    /// Secret key distribution (sparse only for bootstrapped circuits).
    pub secret_key: SecretKey,
    /// Present when the circuit bootstraps (explicit `bootstrap` ops); then
    /// `mult_depth` = `bootstrap_levels` + the levels left between bootstraps.
    pub bootstrapping: Option<BootstrapPlan>,
}

/// How the circuit's `bootstrap` ops run (OpenFHE `EvalBootstrapSetup`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapPlan {
    /// Levels a bootstrap leaves consumed (OpenFHE `GetBootstrapDepth` for
    /// the budget and secret): a bootstrap's output is at this level.
    pub bootstrap_levels: u32,
    /// Levels of CoeffsToSlots and SlotsToCoeffs.
    pub level_budget: [u32; 2],
    /// Slots bootstrapped (= `slots`: every block).
    pub slots: u64,
    /// Number of `bootstrap` ops.
    pub bootstraps: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packing {
    /// Always `"blocked"`.
    pub layout: String,
    /// Power of two >= every vector length in the circuit, <= slots: the
    /// stride between samples in a ciphertext.
    pub dim: u64,
    /// slots / dim: samples one ciphertext carries (OpenFHE: batch size =
    /// slots, rotations over all slots).
    pub samples_per_ciphertext: u64,
}

/// The encrypted input: raw samples (not normalised), optionally transformed
/// elementwise by the client before encryption: x' = x * scale + shift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub shape: Vec<usize>,
    /// Elementwise pre-scaling (tensor of length numel), when not folded away.
    pub scale: Option<String>,
    pub shift: Option<String>,
    /// Bounds of the raw input values assumed by range analysis.
    pub range: [f64; 2],
}

/// One homomorphic operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitOp {
    /// Value this op produces (= its index + 1).
    pub id: usize,
    /// Values it reads (earlier ids).
    pub inputs: Vec<usize>,
    /// The IR ops this op implements (dotted names), for messages.
    pub source: Vec<String>,
    /// Logical tensor shapes (e.g. `[16, 14, 14]`); vectors are their flat form.
    pub in_shape: Vec<usize>,
    pub out_shape: Vec<usize>,
    /// Where the output's elements sit in the sample's block (`[C, H, W]`
    /// values only; vectors are flat). Inputs are read in the layout their
    /// producer gave them; the circuit input is dense.
    pub layout: Option<SlotLayout>,
    /// Levels consumed before / after this op (fresh input: 0).
    pub level_in: u32,
    pub level_out: u32,
    pub kind: OpKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum OpKind {
    /// y = M x + b. `M` is sparse COO (`rows`, `cols`, `values` tensors, sorted
    /// by (row, col), unique), `out_len` x `in_len`; `bias` has `out_len` values.
    Linear {
        in_len: usize,
        out_len: usize,
        rows: String,
        cols: String,
        values: String,
        bias: String,
        /// Signed generalized diagonals k = col - row with a nonzero entry, sorted.
        diagonals: Vec<i64>,
        /// Baby-step size g of the BSGS evaluation (power of two).
        baby_step: u64,
        /// Rotation steps this op uses (baby steps, then giant steps), sorted.
        rotations: Vec<i64>,
    },
    /// y = scale * x + shift elementwise (a BatchNorm that could not fold).
    Affine {
        len: usize,
        scale: String,
        shift: String,
    },
    /// y = sum_k coeffs[k] T_k(x), elementwise; inputs are in [-1, 1].
    Poly {
        len: usize,
        degree: u32,
        /// Chebyshev coefficients on [-1, 1] (scalings already folded).
        coeffs: Vec<f64>,
        /// The activation's declared range B (input was divided by B upstream).
        declared_range: f64,
        /// Interval bound of |x / B| from range analysis (<= 1 is safe);
        /// None when interval arithmetic gives no finite bound.
        interval_bound: Option<f64>,
    },
    /// y = a + b (residual join); the runner aligns levels (max).
    Add { len: usize },
    /// A CKKS bootstrap (elementwise identity) that resets the level to
    /// `params.bootstrapping.bootstrap_levels`; only activation inputs
    /// (values in [-1, 1]) are bootstrapped.
    Bootstrap { len: usize },
    /// y[s] = sum_{q < count} x[s + q * stride] for s < out_len, by rotations
    /// (the second half of a folded linear op; no level).
    Sum {
        in_len: usize,
        out_len: usize,
        stride: u64,
        count: u64,
        /// Rotation steps it uses (doublings, then offsets), sorted.
        rotations: Vec<i64>,
    },
}

/// The circuit's numeric arrays, inline or in a safetensors sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "storage", rename_all = "snake_case", deny_unknown_fields)]
pub enum TensorStore {
    Inline {
        tensors: BTreeMap<String, TensorData>,
    },
    /// `file` is relative to the circuit file; `sha256` is of its bytes.
    /// Tensors inside: F64 for values, I64 for indices.
    Sidecar { file: String, sha256: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dtype", rename_all = "snake_case", deny_unknown_fields)]
pub enum TensorData {
    F64 { data: Vec<f64> },
    I64 { data: Vec<i64> },
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F64 { data } => data.len(),
            TensorData::I64 { data } => data.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CircuitError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a pnnc circuit: {message}\n  help: produce one with `pnnc compile`")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{path}: circuit format version {found}, this pnnc reads version {VERSION}\n  help: recompile the model with this pnnc (`pnnc compile`)"
    )]
    Version { path: PathBuf, found: u64 },
    #[error(
        "{path}: invalid circuit: {message}\n  help: recompile with `pnnc compile`; do not edit circuits by hand"
    )]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: weights sidecar `{file}`: {message}")]
    Sidecar {
        path: PathBuf,
        file: String,
        message: String,
    },
}

/// A circuit with its tensors resolved (sidecar loaded and verified).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedCircuit {
    pub circuit: Circuit,
    pub tensors: BTreeMap<String, TensorData>,
}

impl LoadedCircuit {
    pub fn f64s(&self, name: &str) -> &[f64] {
        match self.tensors.get(name) {
            Some(TensorData::F64 { data }) => data,
            _ => &[],
        }
    }

    pub fn i64s(&self, name: &str) -> &[i64] {
        match self.tensors.get(name) {
            Some(TensorData::I64 { data }) => data,
            _ => &[],
        }
    }
}

/// Parse circuit JSON; checks format and version before anything else so
/// that an old or foreign file gets the version message, not a field error.
pub fn parse(text: &str, path: &Path) -> Result<Circuit, CircuitError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| CircuitError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(CircuitError::Parse {
            path: path.to_path_buf(),
            message: format!("field `format` is not \"{FORMAT}\""),
        });
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(found) => {
            return Err(CircuitError::Version {
                path: path.to_path_buf(),
                found,
            });
        }
        None => {
            return Err(CircuitError::Parse {
                path: path.to_path_buf(),
                message: "field `version` is missing or not an integer".into(),
            });
        }
    }
    serde_json::from_value(value).map_err(|e| CircuitError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Where a circuit's levels go: the ops' own levels and the bootstraps'.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelAccount {
    /// Levels the network's ops consume on the longest path to the output
    /// (bootstraps excluded: the model's depth when nothing else folded).
    pub op_levels: u32,
    /// Bootstraps on that path.
    pub bootstraps_on_path: u32,
    /// Levels each bootstrap consumes (0 without bootstrapping).
    pub bootstrap_levels: u32,
    /// `op_levels + bootstraps_on_path x bootstrap_levels`: the levels the
    /// circuit spends in all, through a chain of `params.mult_depth`.
    pub total_levels: u32,
}

impl Circuit {
    /// The level accounting with bootstraps (`pnnc info CIRCUIT`).
    pub fn level_account(&self) -> LevelAccount {
        // Per value: (ops' levels, bootstraps) along its longest path.
        let mut path = vec![(0u32, 0u32); self.ops.len() + 1];
        for (i, op) in self.ops.iter().enumerate() {
            let (levels, boots) = op
                .inputs
                .iter()
                .map(|&j| path.get(j).copied().unwrap_or_default())
                .max()
                .unwrap_or_default();
            path[i + 1] = match op.kind {
                OpKind::Bootstrap { .. } => (levels, boots + 1),
                _ => (levels + op.level_out.saturating_sub(op.level_in), boots),
            };
        }
        let (op_levels, bootstraps_on_path) = path.get(self.output).copied().unwrap_or_default();
        let bootstrap_levels = self
            .params
            .bootstrapping
            .as_ref()
            .map_or(0, |b| b.bootstrap_levels);
        LevelAccount {
            op_levels,
            bootstraps_on_path,
            bootstrap_levels,
            total_levels: op_levels + bootstraps_on_path * bootstrap_levels,
        }
    }
}
