//! Fetching a data set onto this machine: Fashion-MNIST from Debian's
//! package `dataset-fashion-mnist` (no root needed: `apt-get download` and
//! `dpkg-deb -x`), verified by sha256, into the user cache.

use super::{DataError, cache_root};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// sha256 of Debian's four Fashion-MNIST files (byte copies of `/usr/share/datasets/fashion-mnist`).
const FASHION_SHA256: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    ),
];

const SYSTEM_COPY: &str = "/usr/share/datasets/fashion-mnist";

pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Fetch Fashion-MNIST into `<user cache>/data/fashion-mnist`; `note`
/// receives progress lines. Returns the folder.
pub fn fashion_mnist(note: &mut dyn FnMut(&str)) -> Result<PathBuf, DataError> {
    let root = cache_root().ok_or_else(|| {
        DataError::Invalid(
            "no user cache folder (HOME and XDG_CACHE_HOME unset)\n  help: set XDG_CACHE_HOME"
                .into(),
        )
    })?;
    let data = root.join("data");
    let dest = data.join("fashion-mnist");
    std::fs::create_dir_all(&data).map_err(|e| DataError::io(&data, e))?;
    let work = data.join(format!(".get-fashion-mnist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| DataError::io(&work, e))?;
    let result = fetch_into(&work, &dest, note);
    let _ = std::fs::remove_dir_all(&work);
    result.map(|()| dest)
}

fn fetch_into(work: &Path, dest: &Path, note: &mut dyn FnMut(&str)) -> Result<(), DataError> {
    let system = Path::new(SYSTEM_COPY);
    let src = if FASHION_SHA256.iter().all(|(f, _)| system.join(f).is_file()) {
        note(&format!("copying from {}", system.display()));
        system.to_path_buf()
    } else {
        note("running `apt-get download dataset-fashion-mnist` (about 31 MB)");
        run_tool(
            std::process::Command::new("apt-get")
                .args(["download", "dataset-fashion-mnist"])
                .current_dir(work),
            "apt-get download dataset-fashion-mnist",
        )?;
        let deb = std::fs::read_dir(work)
            .map_err(|e| DataError::io(work, e))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| {
                DataError::Invalid(
                    "apt-get download: no .deb file was downloaded\n  help: check `apt-get download dataset-fashion-mnist` by hand".into(),
                )
            })?;
        let x = work.join("x");
        run_tool(
            std::process::Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(&x),
            "dpkg-deb -x",
        )?;
        x.join(SYSTEM_COPY.trim_start_matches('/'))
    };
    // Verify into a staging folder, then rename it into place.
    let staging = work.join("staging");
    std::fs::create_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    for (file, sha) in FASHION_SHA256 {
        let from = src.join(file);
        let got = sha256_file(&from)?;
        if got != sha {
            return Err(DataError::Invalid(format!(
                "{}: sha256 {got}, expected {sha}\n  help: the package changed or the download is damaged; try again",
                from.display()
            )));
        }
        std::fs::copy(&from, staging.join(file)).map_err(|e| DataError::io(&from, e))?;
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&staging, dest).map_err(|e| DataError::io(dest, e))
}

fn run_tool(cmd: &mut std::process::Command, what: &str) -> Result<(), DataError> {
    let status = cmd.status().map_err(|e| {
        DataError::Invalid(format!(
            "{what}: cannot run: {e}\n  help: install Debian's apt and dpkg tools, or pass --data DIR with the four IDX files"
        ))
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(DataError::Invalid(format!(
            "{what}: failed ({status})\n  help: run `apt-get update` first if the package is not known, or pass --data DIR"
        )))
    }
}
