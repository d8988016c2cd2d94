//! Where a data set lives: `--data`, the model's `path:`, `$PNN_DATA`, the user
//! cache, then `shared/data` next to the current folder or the model folder.

use super::{DataError, LoadOptions, existing_variant};
use crate::ir::{CifarFormat, DataSource, DataSpec, IdxFiles};
use std::path::{Path, PathBuf};

/// The folder name a data set has under a data root (`$PNN_DATA/<name>`).
pub fn dir_name(spec: &DataSpec) -> Option<&'static str> {
    match &spec.source {
        DataSource::Mnist => Some("mnist"),
        DataSource::FashionMnist => Some("fashion-mnist"),
        DataSource::Cifar10 { .. } => Some("cifar10"),
        DataSource::Fsdd(_) => Some("fsdd"),
        DataSource::Hapt { .. } => Some("hapt"),
        DataSource::BasicMotions => Some("basicmotions"),
        DataSource::Idx(_)
        | DataSource::Audio(_)
        | DataSource::Ts { .. }
        | DataSource::Csv { .. } => None,
    }
}

/// Files that must be present in a data set's folder.
pub fn required_files(spec: &DataSpec) -> Vec<String> {
    let idx = |f: &IdxFiles| {
        vec![
            f.train_images.clone(),
            f.train_labels.clone(),
            f.test_images.clone(),
            f.test_labels.clone(),
        ]
    };
    match &spec.source {
        DataSource::Mnist | DataSource::FashionMnist => idx(&IdxFiles::default()),
        DataSource::Idx(f) => idx(f),
        DataSource::Cifar10 {
            format: CifarFormat::JpegTar,
        } => vec!["cifar10-jpeg.tar.gz".into()],
        DataSource::Cifar10 {
            format: CifarFormat::Binary,
        } => vec!["data_batch_1.bin".into(), "test_batch.bin".into()],
        DataSource::Fsdd(_) => vec!["fsdd.tar.gz".into()],
        DataSource::Audio(_) => vec![],
        DataSource::Hapt { .. } => {
            vec!["hapt_raw_f32.bin.gz".into(), "hapt_meta_i16.bin.gz".into()]
        }
        DataSource::BasicMotions => vec![
            "BasicMotions_TRAIN.ts".into(),
            "BasicMotions_TEST.ts".into(),
        ],
        DataSource::Ts { train, test } => vec![train.clone(), test.clone()],
        DataSource::Csv { train, test, .. } => {
            let mut v = vec![train.clone()];
            v.extend(test.clone());
            v
        }
    }
}

/// Whether `dir` holds the data set.
fn holds(spec: &DataSpec, dir: &Path) -> bool {
    match &spec.source {
        // A folder of recordings, or a tar(.gz) of them, given directly.
        DataSource::Audio(_) => dir.exists(),
        DataSource::Fsdd(_) => {
            dir.join("fsdd.tar.gz").is_file()
                || dir.join("recordings").is_dir()
                || (dir.is_file() && dir.to_string_lossy().contains(".tar"))
        }
        _ => {
            dir.is_dir()
                && required_files(spec)
                    .iter()
                    .all(|f| existing_variant(&dir.join(f)).is_some())
        }
    }
}

/// `$XDG_CACHE_HOME/pnnc` or `~/.cache/pnnc`.
pub fn cache_root() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("pnnc"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("pnnc"))
}

/// Every candidate folder, in search order.
pub fn candidates(spec: &DataSpec, opts: &LoadOptions) -> Vec<PathBuf> {
    let name = dir_name(spec);
    let mut out = Vec::new();
    let root = |p: PathBuf, out: &mut Vec<PathBuf>| {
        if let Some(n) = name {
            out.push(p.join(n));
        }
        out.push(p);
    };
    if let Some(d) = &opts.data_dir {
        // `--data DIR` is the only place searched: a wrong folder is an
        // error, never a silent fall-back to another copy.
        root(d.clone(), &mut out);
        return out;
    }
    if let Some(p) = &spec.path {
        let p = PathBuf::from(p);
        let p = match (&opts.model_dir, p.is_relative()) {
            (Some(m), true) => m.join(p),
            _ => p,
        };
        root(p, &mut out);
    }
    if let Some(p) = std::env::var_os("PNN_DATA").filter(|p| !p.is_empty()) {
        root(PathBuf::from(p), &mut out);
    }
    if let Some(n) = name {
        if let Some(c) = cache_root() {
            out.push(c.join("data").join(n));
        }
        let mut bases = Vec::new();
        if let Ok(cwd) = std::env::current_dir() {
            bases.push(cwd);
        }
        if let Some(m) = &opts.model_dir {
            bases.push(std::path::absolute(m).unwrap_or_else(|_| m.clone()));
        }
        for base in bases {
            for anc in base.ancestors().take(6) {
                let p = anc.join("shared").join("data").join(n);
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        if matches!(spec.source, DataSource::FashionMnist) {
            out.push(PathBuf::from("/usr/share/datasets/fashion-mnist"));
        }
    }
    out
}

/// The folder (or, for audio, file) holding the data set.
pub fn locate(spec: &DataSpec, opts: &LoadOptions) -> Result<PathBuf, DataError> {
    let searched = candidates(spec, opts);
    if let Some(found) = searched.iter().find(|p| holds(spec, p)) {
        return Ok(found.clone());
    }
    let files = required_files(spec);
    let incomplete: Vec<String> = searched
        .iter()
        .filter(|p| p.is_dir() && !files.is_empty())
        .filter_map(|p| {
            let missing: Vec<&str> = files
                .iter()
                .filter(|f| existing_variant(&p.join(f)).is_none())
                .map(String::as_str)
                .collect();
            (missing.len() < files.len())
                .then(|| format!("{} lacks {}", p.display(), missing.join(", ")))
        })
        .collect();
    let what = if files.is_empty() {
        "a folder or tar(.gz) of .wav files".to_string()
    } else {
        files.join(", ")
    };
    let help = match &spec.source {
        DataSource::FashionMnist => {
            format!("run `pnnc data get fashion-mnist`, or pass --data DIR with {what}")
        }
        _ if dir_name(spec).is_none() => format!(
            "pass --data DIR or write `path: \"DIR\"` in the model's data call; DIR must hold {what}"
        ),
        _ => format!(
            "put {what} in one of these folders, set $PNN_DATA to a folder containing `{}/`, or pass --data DIR",
            dir_name(spec).unwrap_or_default()
        ),
    };
    let help = if incomplete.is_empty() {
        help
    } else {
        format!("{}; {help}", incomplete.join("; "))
    };
    Err(DataError::NotFound {
        name: spec.name().to_string(),
        searched,
        help,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_wins_and_every_place_is_searched() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = DataSpec::named("hapt").unwrap();
        let opts = LoadOptions {
            data_dir: Some(tmp.path().to_path_buf()),
            model_dir: Some(tmp.path().join("models")),
            ..Default::default()
        };
        // `--data` is the only place searched when given.
        let places = candidates(&spec, &opts);
        assert_eq!(places, [tmp.path().join("hapt"), tmp.path().to_path_buf()]);
        let everywhere = candidates(
            &spec,
            &LoadOptions {
                model_dir: Some(tmp.path().join("models")),
                ..Default::default()
            },
        );
        assert!(everywhere.iter().any(|p| p.ends_with("shared/data/hapt")));
        assert!(everywhere.iter().any(|p| p.ends_with("pnnc/data/hapt")));

        let d = tmp.path().join("hapt");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("hapt_raw_f32.bin.gz"), b"x").unwrap();
        // Uncompressed variant of the second file is accepted too.
        std::fs::write(d.join("hapt_meta_i16.bin"), b"x").unwrap();
        assert_eq!(locate(&spec, &opts).unwrap(), d);
    }

    #[test]
    fn not_found_lists_places_and_help() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = DataSpec::named("csv").unwrap();
        let opts = LoadOptions {
            data_dir: Some(tmp.path().to_path_buf()),
            ..Default::default()
        };
        let err = locate(&spec, &opts).unwrap_err().to_string();
        assert!(err.contains(&tmp.path().display().to_string()), "{err}");
        assert!(err.contains("help:") && err.contains("train.csv"), "{err}");
    }

    #[test]
    fn an_incomplete_data_folder_names_the_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = DataSpec::named("hapt").unwrap();
        std::fs::write(tmp.path().join("hapt_raw_f32.bin.gz"), b"x").unwrap();
        let opts = LoadOptions {
            data_dir: Some(tmp.path().to_path_buf()),
            ..Default::default()
        };
        let err = locate(&spec, &opts).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "{} lacks hapt_meta_i16.bin.gz",
                tmp.path().display()
            )),
            "{err}"
        );
        assert!(
            !err.contains("shared/data"),
            "searched beyond --data: {err}"
        );
    }

    #[test]
    fn relative_model_path_resolves_against_model_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let args = vec![("path".to_string(), crate::ir::Value::Str("sets/bm".into()))];
        let spec = DataSpec::from_call("basicmotions", &args).unwrap();
        let d = tmp.path().join("sets/bm");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("BasicMotions_TRAIN.ts"), b"").unwrap();
        std::fs::write(d.join("BasicMotions_TEST.ts"), b"").unwrap();
        let opts = LoadOptions {
            model_dir: Some(tmp.path().to_path_buf()),
            ..Default::default()
        };
        assert_eq!(locate(&spec, &opts).unwrap(), d);
    }
}
