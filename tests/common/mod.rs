//! Helpers shared by the command-line integration tests.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh folder `pnnc-<prefix>-<name>-<pid>` under the system's temp dir.
pub fn temp(prefix: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pnnc-{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `bytes` gzip-compressed into `path`.
pub fn gz(path: &Path, bytes: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap();
}

/// Runs pnnc in `dir` with every data and cache location pointed at
/// `dir/empty`, so that only what a test gives is found.
pub fn pnnc<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pnnc"))
        .args(args)
        .current_dir(dir)
        .env("PNN_DATA", dir.join("empty"))
        .env("HOME", dir.join("empty"))
        .env("XDG_CACHE_HOME", dir.join("empty"))
        .output()
        .unwrap()
}

/// stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
