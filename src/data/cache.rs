//! On-disk cache of decoded (unnormalised) data sets.
//!
//! Keyed by the SHA-256 of the source files and the preprocessing settings
//! (the spec's source, serialised), plus [`VERSION`]. Files are written to a
//! temporary name and renamed, so a crash never leaves a file a later run
//! would trust; a file of the wrong size or magic is ignored and rewritten.
//! Values that are all exact multiples of 1/255 (decoded images) are stored
//! as bytes, which keeps the CIFAR-10 cache at 184 MB instead of 737 MB.

use super::{DataError, Dataset, RawData, cache_root};
use crate::ir::{DataSource, DataSpec};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bump when the decoders or this layout change.
pub const VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"PNNCDATA";

/// Only sources whose decoding takes seconds are cached.
pub fn worth_caching(spec: &DataSpec) -> bool {
    matches!(
        spec.source,
        DataSource::Cifar10 { .. } | DataSource::Fsdd(_) | DataSource::Audio(_)
    )
}

/// Source files of a located data set, in a fixed order.
fn source_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Cache key: version, settings and the content hash of every source file.
pub fn key(spec: &DataSpec, path: &Path) -> Result<String, DataError> {
    let mut h = Sha256::new();
    h.update(VERSION.to_le_bytes());
    h.update(
        serde_json::to_string(&spec.source)
            .unwrap_or_default()
            .as_bytes(),
    );
    for f in source_files(path) {
        let bytes = std::fs::read(&f).map_err(|e| DataError::io(&f, e))?;
        h.update(
            f.strip_prefix(path)
                .unwrap_or(&f)
                .to_string_lossy()
                .as_bytes(),
        );
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

pub fn cache_file(spec: &DataSpec, key: &str) -> Option<PathBuf> {
    cache_root().map(|r| {
        r.join("decoded")
            .join(format!("{}-{}.bin", spec.name(), &key[..16]))
    })
}

/// Read from the cache, or decode and write the cache (errors writing it are ignored:
/// the cache is an optimisation).
pub fn load_or_decode(
    spec: &DataSpec,
    path: &Path,
    decode: impl FnOnce() -> Result<RawData, DataError>,
) -> Result<RawData, DataError> {
    let key = key(spec, path)?;
    let Some(file) = cache_file(spec, &key) else {
        return decode();
    };
    if let Some(raw) = std::fs::read(&file).ok().and_then(|b| from_bytes(&b, &key)) {
        return Ok(raw);
    }
    let raw = decode()?;
    if let Err(e) = crate::ir::weights::write_atomic(&file, &to_bytes(&raw, &key)) {
        eprintln!("note: could not write the data cache: {e}");
    }
    Ok(raw)
}

#[derive(Serialize, Deserialize)]
struct SetHeader {
    shape: Vec<usize>,
    n: usize,
    class_names: Vec<String>,
    /// Values stored as u8 (v * 255) instead of f32.
    bytes: bool,
}

#[derive(Serialize, Deserialize)]
struct Header {
    key: String,
    train: SetHeader,
    test: SetHeader,
    groups: usize,
}

fn all_byte_valued(x: &[f32]) -> bool {
    x.par_iter().all(|&v| {
        let s = v * 255.0;
        (0.0..=255.0).contains(&s) && (s.round() / 255.0) == v
    })
}

fn set_header(d: &Dataset) -> SetHeader {
    SetHeader {
        shape: d.sample_shape.clone(),
        n: d.len(),
        class_names: d.class_names.clone(),
        bytes: all_byte_valued(&d.x),
    }
}

pub fn to_bytes(raw: &RawData, key: &str) -> Vec<u8> {
    let header = Header {
        key: key.to_string(),
        train: set_header(&raw.train),
        test: set_header(&raw.test),
        groups: raw.train_groups.len(),
    };
    let json = serde_json::to_vec(&header).unwrap_or_default();
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (set, h) in [(&raw.train, &header.train), (&raw.test, &header.test)] {
        if h.bytes {
            out.extend(set.x.iter().map(|&v| (v * 255.0).round() as u8));
        } else {
            out.extend(set.x.iter().flat_map(|v| v.to_le_bytes()));
        }
        out.extend(set.y.iter().flat_map(|v| v.to_le_bytes()));
    }
    out.extend(raw.train_groups.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// None for anything that is not a complete cache file for `key`.
pub fn from_bytes(b: &[u8], key: &str) -> Option<RawData> {
    if b.len() < 20 || &b[..8] != MAGIC || b[8..12] != VERSION.to_le_bytes() {
        return None;
    }
    let json_len = u64::from_le_bytes(b[12..20].try_into().ok()?) as usize;
    let header: Header = serde_json::from_slice(b.get(20..20usize.checked_add(json_len)?)?).ok()?;
    if header.key != key {
        return None;
    }
    let mut pos = 20 + json_len;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = b.get(pos..pos.checked_add(n)?)?;
        pos += n;
        Some(s)
    };
    let mut sets = Vec::new();
    for h in [&header.train, &header.test] {
        let values = h.n.checked_mul(h.shape.iter().product())?;
        let x: Vec<f32> = if h.bytes {
            take(values)?
                .par_iter()
                .map(|&p| p as f32 / 255.0)
                .collect()
        } else {
            take(values.checked_mul(4)?)?
                .par_chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let y = take(h.n.checked_mul(4)?)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        sets.push(Dataset {
            sample_shape: h.shape.clone(),
            x,
            y,
            class_names: h.class_names.clone(),
        });
    }
    let train_groups = take(header.groups.checked_mul(4)?)?
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if pos != b.len() {
        return None;
    }
    let test = sets.pop()?;
    let train = sets.pop()?;
    Some(RawData {
        train,
        test,
        train_groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RawData {
        RawData {
            train: Dataset {
                sample_shape: vec![1, 2],
                x: vec![0.0, 1.0, 128.0 / 255.0, 3.0 / 255.0],
                y: vec![0, 1],
                class_names: vec!["a".into(), "b".into()],
            },
            test: Dataset {
                sample_shape: vec![1, 2],
                x: vec![-1.5, 0.25],
                y: vec![1],
                class_names: vec!["a".into(), "b".into()],
            },
            train_groups: vec![4, 5],
        }
    }

    #[test]
    fn round_trip_exact_in_both_encodings() {
        let raw = sample();
        let b = to_bytes(&raw, "k");
        assert_eq!(from_bytes(&b, "k"), Some(raw));
    }

    #[test]
    fn truncated_or_foreign_files_are_not_trusted() {
        let b = to_bytes(&sample(), "k");
        for cut in [0, 10, 25, b.len() - 1] {
            assert_eq!(from_bytes(&b[..cut], "k"), None, "cut at {cut}");
        }
        assert_eq!(from_bytes(&b, "other"), None);
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(from_bytes(&longer, "k"), None);
    }

    #[test]
    fn key_changes_with_content_and_settings() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("fsdd.tar.gz");
        std::fs::write(&f, b"one").unwrap();
        let spec = DataSpec::named("fsdd").unwrap();
        let k1 = key(&spec, d.path()).unwrap();
        assert_eq!(k1, key(&spec, d.path()).unwrap());
        std::fs::write(&f, b"two").unwrap();
        let k2 = key(&spec, d.path()).unwrap();
        assert_ne!(k1, k2);
        let args = vec![("n_mels".to_string(), crate::ir::Value::Int(20))];
        let other = DataSpec::from_call("fsdd", &args).unwrap();
        assert_ne!(k2, key(&other, d.path()).unwrap());
    }
}
