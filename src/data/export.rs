//! `pnnc data export`: the exact normalised splits pnnc's trainer sees, in one
//! safetensors file, for other engines (the PyTorch trainer of `pnnc export
//! torch` reads it, so that preprocessing is never written twice).
//!
//! Tensors: `train.x` `[n, *sample_shape]` F32 and `train.y` `[n]` I64, the
//! same for `val` and `test` when they hold samples. Metadata: `pnnc.format`,
//! `pnnc.sample_shape`, `pnnc.class_names`, `pnnc.normalization` (as
//! checkpoints carry it), `pnnc.data_spec` (with the augmentation settings),
//! `pnnc.seed` (the seed that chose the validation samples) and
//! `pnnc.limit_train`.

use super::{DataError, Dataset, Splits};
use crate::ir::DataSpec;
use safetensors::tensor::{Dtype, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

pub const FORMAT: &str = "pnnc-data-1";

/// What was written, for the command's report.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportInfo {
    /// (split, samples) of every split written.
    pub splits: Vec<(&'static str, usize)>,
    pub bytes: u64,
}

/// A tensor whose little-endian bytes are made only when the writer asks, so
/// that a split is never held twice in memory for long.
enum Column<'a> {
    F32 { shape: Vec<usize>, data: &'a [f32] },
    I64 { data: Vec<i64>, shape: [usize; 1] },
}

impl View for &Column<'_> {
    fn dtype(&self) -> Dtype {
        match self {
            Column::F32 { .. } => Dtype::F32,
            Column::I64 { .. } => Dtype::I64,
        }
    }
    fn shape(&self) -> &[usize] {
        match self {
            Column::F32 { shape, .. } => shape,
            Column::I64 { shape, .. } => shape,
        }
    }
    fn data(&self) -> Cow<'_, [u8]> {
        match self {
            Column::F32 { data, .. } => {
                Cow::Owned(data.iter().flat_map(|v| v.to_le_bytes()).collect())
            }
            Column::I64 { data, .. } => {
                Cow::Owned(data.iter().flat_map(|v| v.to_le_bytes()).collect())
            }
        }
    }
    fn data_len(&self) -> usize {
        match self {
            Column::F32 { data, .. } => data.len() * 4,
            Column::I64 { data, .. } => data.len() * 8,
        }
    }
}

fn columns<'a>(name: &str, d: &'a Dataset, out: &mut Vec<(String, Column<'a>)>) {
    let mut shape = vec![d.len()];
    shape.extend(&d.sample_shape);
    out.push((format!("{name}.x"), Column::F32 { shape, data: &d.x }));
    out.push((
        format!("{name}.y"),
        Column::I64 {
            data: d.y.iter().map(|&v| i64::from(v)).collect(),
            shape: [d.len()],
        },
    ));
}

/// Write `splits` to `path` (atomically: a temporary sibling, then a rename).
/// `seed` is the seed the validation split was drawn with.
pub fn write(
    splits: &Splits,
    spec: &DataSpec,
    seed: u64,
    limit_train: Option<usize>,
    path: &Path,
) -> Result<ExportInfo, DataError> {
    let json = |v: &dyn erased::Json| v.to_json();
    let mut info = HashMap::new();
    info.insert("pnnc.format".to_string(), FORMAT.to_string());
    info.insert("pnnc.sample_shape".into(), json(&splits.train.sample_shape));
    info.insert("pnnc.class_names".into(), json(&splits.train.class_names));
    info.insert("pnnc.normalization".into(), json(&splits.normalization));
    info.insert("pnnc.data_spec".into(), json(spec));
    info.insert("pnnc.seed".into(), seed.to_string());
    info.insert("pnnc.limit_train".into(), json(&limit_train));
    let mut cols = Vec::new();
    let mut written = Vec::new();
    for (name, d) in [
        ("train", &splits.train),
        ("val", &splits.val),
        ("test", &splits.test),
    ] {
        if !d.is_empty() {
            columns(name, d, &mut cols);
            written.push((name, d.len()));
        }
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data.safetensors".into());
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let views = cols.iter().map(|(n, c)| (n.clone(), c));
    // safetensors writes through its own private (0600) temporary file: give
    // the result the permissions any new file of the user gets.
    let result = File::create(&tmp)
        .and_then(|f| f.metadata())
        .map_err(|e| DataError::io(&tmp, e))
        .and_then(|probe| {
            safetensors::serialize_to_file(views, Some(info), &tmp)
                .map_err(|e| DataError::format(path, "safetensors", e.to_string()))?;
            std::fs::set_permissions(&tmp, probe.permissions())
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| DataError::io(path, e))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    let bytes = std::fs::metadata(path)
        .map_err(|e| DataError::io(path, e))?
        .len();
    Ok(ExportInfo {
        splits: written,
        bytes,
    })
}

/// Serialising the plain data types above to JSON cannot fail.
mod erased {
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Normalization, Value};

    fn dataset(n: usize, offset: f32) -> Dataset {
        Dataset {
            sample_shape: vec![1, 2, 2],
            x: (0..n * 4).map(|i| i as f32 * 0.5 + offset).collect(),
            y: (0..n as u32).map(|i| i % 3).collect(),
            class_names: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    #[test]
    fn splits_round_trip_with_metadata_and_no_empty_split() {
        let splits = Splits {
            train: dataset(5, 0.0),
            val: Dataset::default(),
            test: dataset(2, -1.0),
            normalization: Normalization {
                mean: vec![0.25],
                std: vec![2.0],
            },
        };
        let spec = DataSpec::from_call("cifar10", &[("crop".into(), Value::Int(4))]).unwrap();
        let dir = std::env::temp_dir().join(format!("pnnc-data-export-{}", std::process::id()));
        let path = dir.join("d.safetensors");
        let info = write(&splits, &spec, 7, Some(5), &path).unwrap();
        assert_eq!(info.splits, vec![("train", 5), ("test", 2)]);
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let x = st.tensor("train.x").unwrap();
        assert_eq!(x.shape(), &[5, 1, 2, 2]);
        assert_eq!(x.dtype(), Dtype::F32);
        assert_eq!(&x.data()[4..8], &0.5f32.to_le_bytes());
        let y = st.tensor("test.y").unwrap();
        assert_eq!((y.dtype(), y.shape()), (Dtype::I64, &[2usize][..]));
        assert_eq!(&y.data()[8..16], &1i64.to_le_bytes());
        assert!(st.tensor("val.x").is_err());
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap();
        assert_eq!(meta["pnnc.seed"], "7");
        assert_eq!(meta["pnnc.normalization"], r#"{"mean":[0.25],"std":[2.0]}"#);
        let back: DataSpec = serde_json::from_str(&meta["pnnc.data_spec"]).unwrap();
        assert_eq!(back.augment.crop_padding, 4);
        // Only the file itself is left in the folder.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
