//! Finds what the optional tests need (real data sets, the OpenFHE runner, a
//! Python with PyTorch)
//! and tells the compiler as `cfg`s, so that a test whose
//! resource is missing is marked `#[ignore = "why"]`: `cargo test` then counts
//! it as ignored and prints the reason, instead of passing a test that did
//! nothing. With `PNNC_REQUIRE_ALL=1` (set by `.ci/run`) a missing resource
//! fails the build instead: in CI a skip is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Data sets the tests read, as (folder under the data root, cfg name).
const DATA_SETS: [(&str, &str); 6] = [
    ("mnist", "pnnc_data_mnist"),
    ("fashion-mnist", "pnnc_data_fashion_mnist"),
    ("cifar10", "pnnc_data_cifar10"),
    ("fsdd", "pnnc_data_fsdd"),
    ("hapt", "pnnc_data_hapt"),
    ("basicmotions", "pnnc_data_basicmotions"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo::rerun-if-changed=build.rs");
    for var in [
        "PNN_DATA",
        "PNNC_VENV",
        "PNNC_TORCH_PYTHON",
        "PNNC_REQUIRE_ALL",
        "PATH",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let mut missing = Vec::new();

    let data_roots = data_roots(&manifest);
    for (folder, cfg) in DATA_SETS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        match data_roots
            .iter()
            .map(|r| r.join(folder))
            .find(|p| p.is_dir())
        {
            Some(_) => println!("cargo::rustc-cfg={cfg}"),
            None => missing.push(format!(
                "data set `{folder}` (../shared/data/{folder} or $PNN_DATA/{folder})"
            )),
        }
    }
    for root in &data_roots {
        // Appears when the data is installed later.
        println!("cargo::rerun-if-changed={}", root.display());
    }

    let venv = std::env::var_os("PNNC_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("runners/openfhe/.venv"));
    let runner = venv.join("bin/python");
    println!("cargo::rerun-if-changed={}", runner.display());
    check_tool(
        "pnnc_openfhe",
        &runner,
        &["-c", "import openfhe, numpy"],
        "the OpenFHE runner (runners/openfhe/setup.sh)",
        &mut missing,
    );

    // The PyTorch export tests (tests/torch_export.rs): the Python that
    // `pnnc::export::torch::find_python` picks.
    let torch_python = std::env::var_os("PNNC_TORCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    check_tool(
        "pnnc_torch",
        &torch_python,
        &["-c", "import torch, numpy, safetensors"],
        "a Python with torch, numpy and safetensors ($PNNC_TORCH_PYTHON, else python3)",
        &mut missing,
    );

    // Neovim, for the real-editor check of `pnnc lsp` (tests/nvim.rs).
    let nvim = find_on_path("nvim");
    println!(
        "cargo::rerun-if-changed={}",
        nvim.as_deref()
            .unwrap_or(Path::new("/usr/bin/nvim"))
            .display()
    );
    check_tool(
        "pnnc_nvim",
        nvim.as_deref().unwrap_or(Path::new("nvim")),
        &["--version"],
        "Neovim, for the editor check of `pnnc lsp` (apt-get install neovim)",
        &mut missing,
    );

    let require_all = std::env::var("PNNC_REQUIRE_ALL").is_ok_and(|v| v == "1");
    if require_all && !missing.is_empty() {
        panic!(
            "PNNC_REQUIRE_ALL=1 but these test resources are missing, so their tests would be skipped:\n  {}",
            missing.join("\n  ")
        );
    }
}

/// `$PNN_DATA`, then `../shared/data` beside the project.
fn data_roots(manifest: &Path) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(p) = std::env::var_os("PNN_DATA").filter(|p| !p.is_empty()) {
        roots.push(PathBuf::from(p));
    }
    roots.push(manifest.join("../shared/data"));
    roots
}

/// The first `name` in a folder of `$PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Sets `cfg` when `program args` runs and exits 0.
fn check_tool(cfg: &str, program: &Path, args: &[&str], what: &str, missing: &mut Vec<String>) {
    println!("cargo::rustc-check-cfg=cfg({cfg})");
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        println!("cargo::rustc-cfg={cfg}");
    } else {
        missing.push(what.to_string());
    }
}
