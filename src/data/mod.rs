//! Data sets: strict loaders for image, audio and inertial data.
//!
//! [`load`] turns an [`ir::DataSpec`](crate::ir::DataSpec) into normalised
//! train / validation / test [`Dataset`]s. Every loader first produces raw
//! (unnormalised) train and test sets ([`RawData`]); splitting, limiting and
//! normalisation are shared ([`split`]). Every decoded set is cached on disk
//! ([`cache`]).

pub mod audio;
pub mod augment;
pub mod cache;
pub mod cifar;
pub mod csv;
pub mod fetch;
pub mod hapt;
pub mod idx;
pub mod locate;
pub mod png;
pub mod spec;
pub mod split;
pub mod ts;

use crate::ir::{DataSource, DataSpec, Normalization};
use std::path::{Path, PathBuf};

pub use augment::augment_batch;
pub use locate::{cache_root, locate};
pub use spec::parse_spec;

/// Samples as f32 tensors of one shape, with integer labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    pub sample_shape: Vec<usize>,
    /// n * prod(sample_shape) values, row-major, sample after sample.
    pub x: Vec<f32>,
    pub y: Vec<u32>,
    pub class_names: Vec<String>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }
    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.x[i * n..(i + 1) * n]
    }
    /// Number of samples of each class.
    pub fn class_histogram(&self) -> Vec<usize> {
        let mut h = vec![0; self.class_names.len()];
        for &y in &self.y {
            if let Some(slot) = h.get_mut(y as usize) {
                *slot += 1;
            }
        }
        h
    }
    /// The samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let n = self.sample_len();
        let mut x = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            x.extend_from_slice(self.sample(i));
        }
        Dataset {
            sample_shape: self.sample_shape.clone(),
            x,
            y: indices.iter().map(|&i| self.y[i]).collect(),
            class_names: self.class_names.clone(),
        }
    }
}

/// What a loader produces before splitting and normalisation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawData {
    pub train: Dataset,
    pub test: Dataset,
    /// Group (subject, speaker) id of each training sample; empty when the
    /// source has no groups.
    pub train_groups: Vec<u32>,
}

/// Normalised splits plus the statistics used (computed on `train` unless given).
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    pub train: Dataset,
    pub val: Dataset,
    pub test: Dataset,
    pub normalization: Normalization,
}

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--data DIR` on the command line.
    pub data_dir: Option<PathBuf>,
    /// Folder of the model file: relative paths in the `.pnn` are resolved against it.
    pub model_dir: Option<PathBuf>,
    /// Reuse stored statistics (eval, calibration, HE); None: compute on the train split.
    pub normalization: Option<Normalization>,
    /// Seed of the validation split.
    pub seed: u64,
    /// Read and write the decoded-data cache.
    pub use_cache: bool,
    /// Overrides the spec's `limit_train`.
    pub limit_train: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Malformed content; `place` names the member, line, item or byte.
    #[error("{}: {place}: {message}", file.display())]
    Format {
        file: PathBuf,
        place: String,
        message: String,
    },
    #[error(
        "data set `{name}` not found; looked in:\n{}\n  help: {help}",
        list_paths(searched)
    )]
    NotFound {
        name: String,
        searched: Vec<PathBuf>,
        help: String,
    },
    #[error("{0}")]
    Invalid(String),
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| format!("    {}", p.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn format(file: &Path, place: impl Into<String>, message: impl Into<String>) -> DataError {
        DataError::Format {
            file: file.to_path_buf(),
            place: place.into(),
            message: message.into(),
        }
    }
}

/// Locate, decode (or read from cache), split and normalise a data set.
pub fn load(spec: &DataSpec, opts: &LoadOptions) -> Result<Splits, DataError> {
    let raw = load_raw(spec, opts)?;
    split::make_splits(spec, raw, opts)
}

/// Locate and decode a data set without splitting or normalising it.
pub fn load_raw(spec: &DataSpec, opts: &LoadOptions) -> Result<RawData, DataError> {
    let path = locate(spec, opts)?;
    if opts.use_cache {
        cache::load_or_decode(spec, &path, || decode(spec, &path))
    } else {
        decode(spec, &path)
    }
}

/// Decode a located data set (`path` as returned by [`locate`]).
pub fn decode(spec: &DataSpec, path: &Path) -> Result<RawData, DataError> {
    match &spec.source {
        DataSource::Mnist => idx::load_dir(path, &Default::default(), idx::digit_names(10)),
        DataSource::FashionMnist => idx::load_dir(path, &Default::default(), idx::fashion_names()),
        DataSource::Idx(files) => idx::load_dir(path, files, idx::digit_names(files.classes)),
        DataSource::Cifar10 { format } => cifar::load(path, *format),
        DataSource::Fsdd(a) | DataSource::Audio(a) => audio::load(path, a),
        DataSource::Hapt { window, stride } => hapt::load_dir(path, *window, *stride),
        DataSource::BasicMotions => ts::load_pair(
            &path.join("BasicMotions_TRAIN.ts"),
            &path.join("BasicMotions_TEST.ts"),
        ),
        DataSource::Ts { train, test } => ts::load_pair(&path.join(train), &path.join(test)),
        DataSource::Csv {
            train,
            test,
            label,
            classes,
        } => csv::load_pair(
            &path.join(train),
            test.as_ref().map(|t| path.join(t)).as_deref(),
            label,
            *classes,
        ),
    }
}

/// Read a whole file, decompressing gzip when the file starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    gunzip_if_needed(bytes, path)
}

pub(crate) fn gunzip_if_needed(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    // The gzip trailer holds the uncompressed size (mod 2^32): a capacity hint, capped by
    // deflate's maximum ratio so that a corrupt trailer cannot ask for a huge allocation.
    let trailer = bytes.len().checked_sub(4).map_or(0, |at| {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
    });
    let mut out = Vec::with_capacity(trailer.clamp(bytes.len(), bytes.len() * 1032) + 1);
    // `bufread` reads straight from the slice (no intermediate buffer).
    flate2::bufread::MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| {
            DataError::format(
                path,
                "gzip stream",
                format!("truncated or corrupt gzip data ({e}); re-download the file"),
            )
        })?;
    Ok(out)
}

/// `name` itself, or `name.gz` / `name` without `.gz` when only that exists.
pub fn existing_variant(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    let s = path.to_string_lossy();
    let alt = match s.strip_suffix(".gz") {
        Some(raw) => PathBuf::from(raw),
        None => PathBuf::from(format!("{s}.gz")),
    };
    alt.is_file().then_some(alt)
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::io::Write;
    use std::path::Path;

    pub fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// `$PNN_DATA/<sub>` or `../shared/data/<sub>`. Tests that call it are
    /// `#[ignore]`d by build.rs's `pnnc_data_*` cfgs when the folder is absent.
    pub fn real_data(sub: &str) -> std::path::PathBuf {
        let mut roots = Vec::new();
        if let Some(p) = std::env::var_os("PNN_DATA") {
            roots.push(std::path::PathBuf::from(p));
        }
        roots.push(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
        for r in &roots {
            if r.join(sub).is_dir() {
                return r.join(sub);
            }
        }
        panic!(
            "real data `{sub}` was found at build time but is gone: rebuild (`cargo test` reruns build.rs)"
        )
    }
}
