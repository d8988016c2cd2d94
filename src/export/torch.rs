//! `pnnc export torch`: a self-contained folder that trains a checked model with
//! PyTorch, DistributedDataParallel included, and writes pnnc's run folder.
//!
//! The folder holds a small Python package (`pnnc_torch`, its sources embedded
//! in this binary from `export/torch/`) that *interprets* the checked model
//! (`model.json`, this crate's [`Model`] as serde writes it) and the effective
//! training configuration (`config.json`: [`RunConfig`] plus each site's
//! initial coefficients), instead of code generated per model: each layer,
//! basis and recipe rule is then written once in Python and tested once against
//! pnnc (`tests/torch_export.rs`), so the two trainers cannot drift apart model
//! by model. `docs/scale-out.md` has the commands and what is identical.

use crate::ir::{Basis, Model, Op, OpKind};
use crate::train::fit::{self, FitError};
use crate::train::run::{RunConfig, RunSummary};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Format tag of `config.json`, checked by the package.
pub const FORMAT: &str = "pnnc-torch-1";

/// The package and the entry script, as committed under `export/torch/`.
const FILES: &[(&str, &str)] = &[
    (
        "pnnc_torch/__init__.py",
        include_str!("../../export/torch/pnnc_torch/__init__.py"),
    ),
    (
        "pnnc_torch/ir.py",
        include_str!("../../export/torch/pnnc_torch/ir.py"),
    ),
    (
        "pnnc_torch/rng.py",
        include_str!("../../export/torch/pnnc_torch/rng.py"),
    ),
    (
        "pnnc_torch/poly.py",
        include_str!("../../export/torch/pnnc_torch/poly.py"),
    ),
    (
        "pnnc_torch/net.py",
        include_str!("../../export/torch/pnnc_torch/net.py"),
    ),
    (
        "pnnc_torch/recipe.py",
        include_str!("../../export/torch/pnnc_torch/recipe.py"),
    ),
    (
        "pnnc_torch/ckpt.py",
        include_str!("../../export/torch/pnnc_torch/ckpt.py"),
    ),
    (
        "pnnc_torch/data.py",
        include_str!("../../export/torch/pnnc_torch/data.py"),
    ),
    (
        "pnnc_torch/trainer.py",
        include_str!("../../export/torch/pnnc_torch/trainer.py"),
    ),
    (
        "pnnc_torch/dump.py",
        include_str!("../../export/torch/pnnc_torch/dump.py"),
    ),
    (
        "pnnc_torch/bench.py",
        include_str!("../../export/torch/pnnc_torch/bench.py"),
    ),
    ("train.py", include_str!("../../export/torch/train.py")),
];

/// The data file the README and the launch helpers name by default.
pub const DATA_FILE: &str = "data.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: already exists\n  help: pass --overwrite to replace it, or choose another -o", path.display())]
    Exists { path: PathBuf },
    #[error(
        "layer `{layer}` ({loc}): {what} cannot be expressed by the PyTorch exporter\n  help: replace the layer, or train this model with `pnnc train`"
    )]
    Unsupported {
        layer: String,
        loc: String,
        what: String,
    },
    #[error("layer `{layer}`: cannot fit the initial polynomial: {source}")]
    Fit { layer: String, source: FitError },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{python}: {detail}\n  help: install PyTorch for it (`{python} -m pip install torch numpy safetensors`), or point PNNC_TORCH_PYTHON at a Python that has it"
    )]
    NoTorch { python: String, detail: String },
    #[error("{}: the PyTorch trainer failed ({status}){tail}", run.display())]
    Training {
        run: PathBuf,
        status: String,
        tail: String,
    },
    #[error("{}: {message}", path.display())]
    Summary { path: PathBuf, message: String },
    #[error("{}: the PyTorch trainer was interrupted; its completed epochs are saved", run.display())]
    Interrupted { run: PathBuf },
}

/// How to export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// ReLU in place of every polynomial (the comparison baseline; not HE-compatible).
    pub baseline_relu: bool,
    /// Replace an existing folder.
    pub overwrite: bool,
    /// The model file as given (recorded in run folders, for `pnnc train --resume`).
    pub model_file: String,
}

/// `config.json` of an export folder.
#[derive(Serialize)]
struct ExportConfig<'a> {
    format: &'static str,
    pnnc_version: &'static str,
    model_name: &'a str,
    model_hash: &'a str,
    model_file: &'a str,
    baseline_relu: bool,
    /// The effective training configuration (overrides applied).
    run: &'a RunConfig,
    /// pnnc's initial coefficients of every polynomial site (f64, as fitted).
    init_coeffs: BTreeMap<String, Vec<f64>>,
}

/// Whether the package can build `op`: an exhaustive match, so that a new
/// layer kind or basis must be decided here (and in `pnnc_torch/net.py`)
/// before it compiles.
fn check_op(op: &Op) -> Result<(), ExportError> {
    let unsupported = |what: &str| {
        Err(ExportError::Unsupported {
            layer: op.name.clone(),
            loc: op.loc.to_string(),
            what: what.to_string(),
        })
    };
    match &op.kind {
        OpKind::Poly(p) => match p.basis {
            Basis::Chebyshev | Basis::Power | Basis::RawPower => Ok(()),
        },
        OpKind::Residual { .. } | OpKind::Concat { .. } => op
            .kind
            .nested()
            .into_iter()
            .flatten()
            .try_for_each(check_op),
        OpKind::Conv { groups, .. } if *groups == 0 => unsupported("a convolution with 0 groups"),
        OpKind::Dropout { p } if !(0.0..1.0).contains(p) => {
            unsupported(&format!("dropout with probability {p}"))
        }
        OpKind::Dense { .. }
        | OpKind::Conv { .. }
        | OpKind::BatchNorm { .. }
        | OpKind::AvgPool { .. }
        | OpKind::GlobalAvgPool
        | OpKind::Flatten
        | OpKind::Dropout { .. }
        | OpKind::Scale { .. } => Ok(()),
    }
}

/// Every layer of `model` is one the package expresses; the first that is not is named.
pub fn check_expressible(model: &Model) -> Result<(), ExportError> {
    model.net.iter().try_for_each(check_op)
}

/// pnnc's initial coefficients of every polynomial site: the fit, or a
/// given polynomial converted to its basis (as `Network::new` starts them).
fn initial_coeffs(model: &Model) -> Result<BTreeMap<String, Vec<f64>>, ExportError> {
    let mut out = BTreeMap::new();
    for op in model.ops() {
        let OpKind::Poly(p) = &op.kind else {
            continue;
        };
        let coeffs = fit::initial_coeffs(p).map_err(|source| ExportError::Fit {
            layer: op.name.clone(),
            source,
        })?;
        out.insert(op.name.clone(), coeffs);
    }
    Ok(out)
}

/// The files of an export folder, by relative path.
pub fn files(
    model: &Model,
    cfg: &RunConfig,
    opts: &Options,
) -> Result<Vec<(String, String)>, ExportError> {
    check_expressible(model)?;
    let config = ExportConfig {
        format: FORMAT,
        pnnc_version: env!("CARGO_PKG_VERSION"),
        model_name: &model.name,
        model_hash: &model.source_hash,
        model_file: &opts.model_file,
        baseline_relu: opts.baseline_relu,
        run: cfg,
        init_coeffs: initial_coeffs(model)?,
    };
    // Serialising plain data cannot fail.
    let json = |v: &dyn erased::Json| v.to_json();
    let mut out: Vec<(String, String)> = FILES
        .iter()
        .map(|(p, text)| (p.to_string(), text.to_string()))
        .collect();
    out.push(("model.json".into(), json(model)));
    out.push(("config.json".into(), json(&config)));
    out.push(("README.md".into(), readme(model, cfg, opts)));
    Ok(out)
}

/// Write the export folder `out` (a temporary sibling, then a rename). An
/// existing folder is replaced only with `opts.overwrite`, and then only the
/// files the export writes: the user's own files there (a data file, runs)
/// are kept. `extra` writes more files into the temporary folder before the
/// rename (the data file of `--with-data`).
pub fn export(
    model: &Model,
    cfg: &RunConfig,
    opts: &Options,
    out: &Path,
    extra: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<Vec<String>, ExportError> {
    if out.exists() && !opts.overwrite {
        return Err(ExportError::Exists {
            path: out.to_path_buf(),
        });
    }
    let files = files(model, cfg, opts)?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io { path, source }
    };
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let leaf = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let tmp = parent.join(format!(".{leaf}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = (|| {
        for (rel, text) in &files {
            let path = tmp.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            std::fs::write(&path, text).map_err(io(&path))?;
        }
        extra(&tmp).map_err(|message| ExportError::Io {
            path: out.to_path_buf(),
            source: std::io::Error::other(message),
        })?;
        replace_dir(&tmp, out)
    })();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written?;
    Ok(files.into_iter().map(|(rel, _)| rel).collect())
}

/// Move `tmp` to `out`. A folder already there is replaced, but the entries the
/// export does not write (a data file, run folders) move over into the new one;
/// the old folder is kept aside until the move succeeded.
fn replace_dir(tmp: &Path, out: &Path) -> Result<(), ExportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io { path, source }
    };
    if !out.exists() {
        return std::fs::rename(tmp, out).map_err(io(out));
    }
    if out.is_dir() {
        for entry in std::fs::read_dir(out).map_err(io(out))? {
            let entry = entry.map_err(io(out))?;
            let target = tmp.join(entry.file_name());
            if !target.exists() {
                std::fs::rename(entry.path(), &target).map_err(io(&entry.path()))?;
            }
        }
    }
    let mut aside = out.as_os_str().to_owned();
    aside.push(format!(".old{}", std::process::id()));
    let aside = PathBuf::from(aside);
    std::fs::rename(out, &aside).map_err(io(out))?;
    if let Err(e) = std::fs::rename(tmp, out) {
        let _ = std::fs::rename(&aside, out);
        return Err(io(out)(e));
    }
    if aside.is_dir() {
        std::fs::remove_dir_all(&aside).map_err(io(&aside))
    } else {
        std::fs::remove_file(&aside).map_err(io(&aside))
    }
}

fn readme(model: &Model, cfg: &RunConfig, opts: &Options) -> String {
    let baseline = if opts.baseline_relu {
        "\nThis export is the **ReLU baseline** (not HE-compatible).\n"
    } else {
        ""
    };
    format!(
        r#"# {name}: PyTorch trainer written by `pnnc export torch`

Model hash `{hash}`; {epochs} epochs, global batch {batch}, seed {seed}.{baseline}
Needs only `torch`, `numpy` and `safetensors` (`pip install torch numpy safetensors`).
The data come from pnnc, as the exact normalised tensors its own trainer sees:

    pnnc data export MODEL.pnn -o {data}          # or: pnnc export torch MODEL.pnn -o DIR --with-data

Train (the run folder has pnnc's layout: metrics.jsonl, best/last/resume.safetensors):

    python train.py --data {data} --out runs/{name}                        # one process (GPU if any)
    torchrun --nproc_per_node 4 train.py --data {data} --out runs/{name}   # 4 GPUs (or CPU processes)
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d \
        --rdzv_endpoint HOST:29500 train.py --data {data} --out runs/{name}  # 2 nodes

`--batch` is the global batch: it is split among the processes, and BatchNorm statistics,
the loss and the boundary terms are those of the whole batch, as in `pnnc train`.
`python train.py --help` lists the options (resume, threads, mixed precision, time budget).

Back in pnnc, the checkpoints are used unchanged:

    pnnc eval MODEL.pnn --weights runs/{name}/best.safetensors
    pnnc compile MODEL.pnn --weights runs/{name}/best.safetensors -o {name}.circuit.json

`model.json` is the checked model, `config.json` the training configuration, and
`pnnc_torch/` the interpreter of both; see pnnc's docs/scale-out.md.
"#,
        name = model.name,
        hash = model.source_hash,
        epochs = cfg.epochs,
        batch = cfg.batch,
        seed = cfg.seed,
        data = DATA_FILE,
    )
}

/// How to launch the exported trainer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// A Python with torch, numpy and safetensors (see [`find_python`]).
    pub python: PathBuf,
    /// Processes on this machine (1: plain `python`, more: `torch.distributed.run`).
    pub processes: usize,
    /// `--threads` per process.
    pub threads: Option<usize>,
    /// Further trainer arguments (`--epochs 3`, `--device cpu`, ...).
    pub args: Vec<String>,
}

/// The Python to run the trainer with: `$PNNC_TORCH_PYTHON`, else `python3`;
/// an error with an install hint when it lacks torch, numpy or safetensors.
pub fn find_python() -> Result<PathBuf, ExportError> {
    let python = std::env::var_os("PNNC_TORCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    check_python(&python)?;
    Ok(python)
}

/// Whether `python` imports torch, numpy and safetensors.
pub fn check_python(python: &Path) -> Result<(), ExportError> {
    let shown = python.display().to_string();
    let out = Command::new(python)
        .args(["-c", "import torch, numpy, safetensors"])
        .output()
        .map_err(|e| ExportError::NoTorch {
            python: shown.clone(),
            detail: format!("cannot run it ({e})"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let detail = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("import failed")
        .to_string();
    Err(ExportError::NoTorch {
        python: shown,
        detail,
    })
}

/// The command that trains `export_dir` on `data` into `run_dir`.
pub fn train_command(export_dir: &Path, data: &Path, run_dir: &Path, launch: &Launch) -> Command {
    let mut cmd = Command::new(&launch.python);
    if launch.processes > 1 {
        cmd.args(["-m", "torch.distributed.run", "--standalone"])
            .arg(format!("--nproc_per_node={}", launch.processes));
    }
    cmd.arg(export_dir.join("train.py"))
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(run_dir)
        .arg("--quiet");
    if let Some(t) = launch.threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    cmd.args(&launch.args);
    cmd
}

/// `diverged.json`: what the exported trainer writes into the run folder
/// when training diverges (the fields of pnnc's `RunError::Diverged`).
pub const DIVERGED_FILE: &str = "diverged.json";

/// A divergence of the exported trainer, as `diverged.json` records it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Divergence {
    /// Global step.
    pub step: u64,
    /// 1-based epoch.
    pub epoch: u32,
    pub batch: usize,
    /// What became non-finite and where (pnnc's wording).
    pub what: String,
    pub help: String,
    /// The site furthest outside its range, or the one whose polynomial overflowed.
    pub site: Option<String>,
    /// Its max |x| as Rust prints a float (`inf` and `NaN` included).
    pub site_max_abs: Option<String>,
    /// Samples in the training split.
    #[serde(default)]
    pub train_samples: usize,
}

impl Divergence {
    /// (site, max |x|), as pnnc's `RunError::Diverged::site`.
    pub fn site(&self) -> Option<(String, f32)> {
        let value = self.site_max_abs.as_deref()?.parse().ok()?;
        Some((self.site.clone()?, value))
    }
}

/// How a run of the exported trainer ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished(RunSummary),
    Diverged(Divergence),
}

/// Train with the exported trainer: the run's summary, or its divergence
/// (what `pnnc sweep --engine torch` needs per cell: the run folder then
/// holds pnnc's metrics and checkpoints). Any other failure is an error with
/// the end of the trainer's output.
pub fn train(
    export_dir: &Path,
    data: &Path,
    run_dir: &Path,
    launch: &Launch,
) -> Result<Outcome, ExportError> {
    let out = train_command(export_dir, data, run_dir, launch)
        .stdout(std::process::Stdio::null())
        .output()
        .map_err(|source| ExportError::Io {
            path: launch.python.clone(),
            source,
        })?;
    if !out.status.success() {
        if out.status.code() == Some(1)
            && let Some(d) = read_divergence(run_dir)?
        {
            return Ok(Outcome::Diverged(d));
        }
        // Ctrl-C reaches the trainer too (same process group): its exit 130.
        if out.status.code() == Some(130) {
            return Err(ExportError::Interrupted {
                run: run_dir.to_path_buf(),
            });
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(12)..].join("\n  ");
        return Err(ExportError::Training {
            run: run_dir.to_path_buf(),
            status: out.status.to_string(),
            tail: if tail.is_empty() {
                String::new()
            } else {
                format!(":\n  {tail}")
            },
        });
    }
    read_summary(run_dir).map(Outcome::Finished)
}

/// `diverged.json` of a run folder, if there is one.
pub fn read_divergence(run_dir: &Path) -> Result<Option<Divergence>, ExportError> {
    let path = run_dir.join(DIVERGED_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ExportError::Io { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ExportError::Summary {
            path,
            message: e.to_string(),
        })
}

/// `summary.json` of a finished run folder (either engine).
pub fn read_summary(run_dir: &Path) -> Result<RunSummary, ExportError> {
    let path = run_dir.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|source| ExportError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ExportError::Summary {
        path,
        message: e.to_string(),
    })
}

mod erased {
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string_pretty(self).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::models::{bench_model, relu_poly};

    fn model() -> Model {
        bench_model("mnist_cnn", &relu_poly(4, 20.0, Basis::Chebyshev)).unwrap()
    }

    fn config(m: &Model) -> RunConfig {
        crate::pipeline::recipe::run_config(m, &Default::default())
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pnnc-export-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Grouped, depthwise and 1-D convs, 1-D pooling, concat and given
    /// polynomials are all expressed (tests/torch_export.rs compares them
    /// with pnnc); a given polynomial starts from its own coefficients in
    /// its basis, not from a fit: x^2 on B = 6 is 18 T_0 + 18 T_2.
    #[test]
    fn issue_14_layers_are_expressed_and_given_polynomials_start_as_given() {
        let cases = [
            (
                "input [4, 8, 8]",
                "conv(8, 3, groups: 4); conv(8, 3, groups: 8)",
            ),
            ("input [4, 16]", "conv(8, 3, groups: 2); avgpool(2)"),
            ("input [4, 8, 8]", "concat {} { conv(2, 1) }"),
            ("input [4]", "dense(8); q"),
        ];
        for (input, layer) in cases {
            let src = format!(
                "model m\n{input}\nclasses 2\nact q = poly(coeffs: [0, 0, 1], range: 6)\nnet {{\n  {layer}\n  flatten\n  dense(classes)\n}}\n"
            );
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.pnn");
            std::fs::write(&path, &src).unwrap();
            let m = crate::check::load_model(&path).unwrap_or_else(|e| panic!("{src}: {e:?}"));
            check_expressible(&m).unwrap_or_else(|e| panic!("{layer}: {e}"));
            if layer.ends_with('q') {
                let coeffs = initial_coeffs(&m).unwrap();
                let c = &coeffs["poly1"];
                assert!(
                    c.len() == 3 && (c[0] - 18.0).abs() < 1e-12 && c[1].abs() < 1e-12,
                    "{c:?}"
                );
                assert!((c[2] - 18.0).abs() < 1e-12, "{c:?}");
            }
        }
    }

    #[test]
    fn export_writes_the_package_model_and_config_and_refuses_to_overwrite() {
        let m = model();
        let dir = temp("write");
        let out = dir.join("mnist");
        let written = export(&m, &config(&m), &Options::default(), &out, |_| Ok(())).unwrap();
        for f in [
            "train.py",
            "pnnc_torch/net.py",
            "model.json",
            "config.json",
            "README.md",
        ] {
            assert!(out.join(f).is_file(), "{f} missing");
            assert!(written.iter().any(|w| w == f));
        }
        let back: Model =
            serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap())
                .unwrap();
        assert_eq!(back, m);
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["format"], FORMAT);
        assert_eq!(cfg["init_coeffs"].as_object().unwrap().len(), 3);
        let err = export(&m, &config(&m), &Options::default(), &out, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("--overwrite"), "{err}");
        // With --overwrite the export's own files are replaced and the user's kept;
        // no temporary folder is left.
        std::fs::write(out.join("pnnc_torch/stale.py"), "x").unwrap();
        std::fs::write(out.join("data.safetensors"), "user data").unwrap();
        let opts = Options {
            overwrite: true,
            ..Options::default()
        };
        export(&m, &config(&m), &opts, &out, |_| Ok(())).unwrap();
        assert!(!out.join("pnnc_torch/stale.py").exists());
        assert_eq!(
            std::fs::read_to_string(out.join("data.safetensors")).unwrap(),
            "user data"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // A failing extra step leaves the old folder and nothing else.
        let err = export(&m, &config(&m), &opts, &out, |_| Err("no data".into())).unwrap_err();
        assert!(err.to_string().contains("no data"), "{err}");
        assert!(out.join("model.json").is_file());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_layer_the_package_cannot_build_is_named() {
        let mut m = model();
        let op = m
            .net
            .iter_mut()
            .find(|o| matches!(o.kind, OpKind::BatchNorm { .. }))
            .unwrap();
        let name = op.name.clone();
        op.kind = OpKind::Dropout { p: 1.5 };
        let err = check_expressible(&m).unwrap_err().to_string();
        assert!(err.contains(&format!("layer `{name}`")), "{err}");
        assert!(err.contains("dropout with probability 1.5"), "{err}");
    }

    #[test]
    fn a_python_without_torch_gets_an_install_hint() {
        let err = check_python(Path::new("/nonexistent/python3")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("pip install torch numpy safetensors"), "{msg}");
        assert!(msg.contains("PNNC_TORCH_PYTHON"), "{msg}");
    }
}
