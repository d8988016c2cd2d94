//! A grid of training runs: (degree, method, seed) cells, each trained into
//! its own run folder, resumable (a cell is finished when its `cell.json`
//! exists), summarised as a CSV and a markdown table. `pnnc sweep` adds the
//! command line and the plots.
//!
//! A cell trains with pnnc's own trainer ([`Engine::Native`]) or with PyTorch
//! ([`Engine::Torch`]): then the cell's model is exported (`pnnc export
//! torch`) into `torch/<cell>/` of the sweep folder, the data once per seed
//! into `torch/`, and the exported trainer (one process, or
//! `torch.distributed.run` with several) writes the same run folder.

use super::Failure;
use super::folder::Start;
use super::ranges::Domain;
use super::recipe::{Method, Overrides, run_config};
use super::train::{CellResult, TrainJob, largest_input, load_splits, train};
use super::transform::{with_basis, with_boundary_weight, with_degree};
use crate::export::torch::{self as torch_export, Launch, Outcome};
use crate::ir::weights::write_atomic;
use crate::ir::{Basis, Model};
use crate::train::run::RunConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// The file that marks a finished cell.
pub const CELL_FILE: &str = "cell.json";

/// One grid point. A ReLU cell has no polynomial, so it has no degree
/// (`RELU_DEGREE`): it is trained once per seed and stands for every degree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cell {
    pub degree: u32,
    /// How the activations are evaluated (cells written before bases were a
    /// sweep dimension are Chebyshev).
    #[serde(default = "chebyshev")]
    pub basis: Basis,
    pub method: Method,
    pub seed: u64,
}

fn chebyshev() -> Basis {
    Basis::Chebyshev
}

/// The degree of a ReLU cell: none.
pub const RELU_DEGREE: u32 = 0;

impl Cell {
    /// Folder name inside the sweep folder.
    pub fn dir_name(&self) -> String {
        match (self.method, self.basis) {
            (Method::Relu, _) => format!("relu-s{}", self.seed),
            (m, Basis::Chebyshev) => format!("d{}-{}-s{}", self.degree, m.name(), self.seed),
            (m, b) => format!("d{}-{}-{}-s{}", self.degree, b.name(), m.name(), self.seed),
        }
    }

    /// Whether this cell is a row of (`method`, `basis`) in the tables.
    fn is_row(&self, method: Method, basis: Basis) -> bool {
        self.method == method && (method == Method::Relu || self.basis == basis)
    }

    /// Whether this cell's result belongs in the column of `degree`.
    fn stands_for(&self, degree: u32) -> bool {
        self.method == Method::Relu || self.degree == degree
    }
}

/// `cell.json`: what a finished cell measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    pub cell: Cell,
    #[serde(flatten)]
    pub result: CellResult,
}

/// Every cell of the grid, in a fixed order (degree, basis, method, seed);
/// the degree- and basis-independent ReLU cells come last, one per seed.
pub fn grid(degrees: &[u32], bases: &[Basis], methods: &[Method], seeds: &[u64]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for &degree in degrees {
        for &basis in bases {
            for &method in methods.iter().filter(|m| **m != Method::Relu) {
                for &seed in seeds {
                    cells.push(Cell {
                        degree,
                        basis,
                        method,
                        seed,
                    });
                }
            }
        }
    }
    if methods.contains(&Method::Relu) {
        cells.extend(seeds.iter().map(|&seed| Cell {
            degree: RELU_DEGREE,
            basis: Basis::Chebyshev,
            method: Method::Relu,
            seed,
        }));
    }
    cells
}

/// The table rows: (method, basis) pairs, ReLU once.
pub fn table_rows(bases: &[Basis], methods: &[Method]) -> Vec<(Method, Basis)> {
    let mut rows = Vec::new();
    for &m in methods {
        if m == Method::Relu {
            rows.push((m, Basis::Chebyshev));
        } else {
            rows.extend(bases.iter().map(|&b| (m, b)));
        }
    }
    rows
}

/// A row's label: the method, with the basis when the sweep has several.
pub fn row_label(method: Method, basis: Basis, bases: &[Basis]) -> String {
    if method == Method::Relu {
        "relu (no polynomial: same cells in every column)".into()
    } else if bases.len() > 1 {
        format!("{} ({})", method.name(), basis.name())
    } else {
        method.name().into()
    }
}

/// The finished summary of `cell` in `root`, if any.
pub fn finished(root: &Path, cell: &Cell) -> Option<CellSummary> {
    let text = std::fs::read_to_string(root.join(cell.dir_name()).join(CELL_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Where the activation's float32 evaluation overflows: |x| beyond which
/// the largest basis term passes f32::MAX. Raw power series: x^d itself
/// (56.4 at degree 22); power series of t = x/B: B times that; Chebyshev:
/// T_d(t) grows like (2|t|)^d / 2, so B/2 times (2 f32::MAX)^(1/d).
pub fn overflow_edge(basis: Basis, degree: u32, range: f64) -> f64 {
    let d = f64::from(degree.max(1));
    let max = f64::from(f32::MAX);
    match basis {
        Basis::RawPower => max.powf(1.0 / d),
        Basis::Power => range * max.powf(1.0 / d),
        Basis::Chebyshev => range / 2.0 * (2.0 * max).powf(1.0 / d),
    }
}

/// `results.csv`: one row per cell, with where its activation inputs went.
pub fn to_csv(rows: &[CellSummary]) -> String {
    let mut out = String::from(
        "degree,basis,method,seed,status,test_acc,best_val_acc,diverged_step,diverged_site,\
         max_abs_input,max_abs_site,fit_range,overflow_edge,epochs,steps,seconds\n",
    );
    let opt = |x: Option<f64>| x.map(|v| format!("{v:.6}")).unwrap_or_default();
    for r in rows {
        let (res, cell) = (&r.result, &r.cell);
        let relu = cell.method == Method::Relu;
        let (degree, basis, edge) = if relu {
            (String::new(), String::new(), String::new())
        } else {
            let edge = res
                .max_abs_range
                .map(|b| format!("{:.1}", overflow_edge(cell.basis, cell.degree, b)));
            (
                cell.degree.to_string(),
                cell.basis.name().to_string(),
                edge.unwrap_or_default(),
            )
        };
        let fields = [
            degree,
            basis,
            cell.method.name().into(),
            cell.seed.to_string(),
            if res.diverged_step.is_some() {
                "diverged"
            } else {
                "ok"
            }
            .into(),
            opt(res.test_acc),
            opt(res.best_val_acc),
            res.diverged_step.map(|s| s.to_string()).unwrap_or_default(),
            res.diverged_site.clone().unwrap_or_default(),
            res.max_abs_input
                .map(|x| format!("{x:.4}"))
                .unwrap_or_default(),
            res.max_abs_site.clone().unwrap_or_default(),
            res.max_abs_range.map(|b| b.to_string()).unwrap_or_default(),
            edge,
            res.epochs.to_string(),
            res.steps.to_string(),
            format!("{:.1}", res.seconds),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// Mean and (sample) standard deviation.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// One table entry: test accuracy mean ± std over the seeds (n seeds), or
/// the divergences.
fn entry(rows: &[&CellSummary]) -> String {
    if rows.is_empty() {
        return "not run".into();
    }
    let accs: Vec<f64> = rows.iter().filter_map(|r| r.result.test_acc).collect();
    let diverged: Vec<String> = rows
        .iter()
        .filter_map(|r| r.result.diverged_step.map(|s| s.to_string()))
        .collect();
    let mut parts = Vec::new();
    if !accs.is_empty() {
        let (m, s) = mean_std(&accs);
        parts.push(if accs.len() > 1 {
            format!("{:.2} ± {:.2} (n={})", 100.0 * m, 100.0 * s, accs.len())
        } else {
            format!("{:.2}", 100.0 * m)
        });
    }
    if !diverged.is_empty() {
        parts.push(format!("diverged at step {}", diverged.join(", ")));
    }
    parts.join("; ")
}

/// The markdown table: (method, basis) rows, degrees as columns, test accuracy in %.
pub fn to_markdown(
    rows: &[CellSummary],
    degrees: &[u32],
    bases: &[Basis],
    methods: &[Method],
) -> String {
    let mut out = String::from("| method |");
    for d in degrees {
        out.push_str(&format!(" degree {d} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(degrees.len()));
    out.push('\n');
    for (m, b) in table_rows(bases, methods) {
        out.push_str(&format!("| {} |", row_label(m, b, bases)));
        for d in degrees {
            let cell: Vec<&CellSummary> = rows
                .iter()
                .filter(|r| r.cell.is_row(m, b) && r.cell.stands_for(*d))
                .collect();
            out.push_str(&format!(" {} |", entry(&cell)));
        }
        out.push('\n');
    }
    out
}

/// Mean test accuracy (%) over the seeds of one table row at each degree that has one.
pub fn accuracy_points(
    rows: &[CellSummary],
    degrees: &[u32],
    method: Method,
    basis: Basis,
) -> Vec<(f64, f64)> {
    degrees
        .iter()
        .filter_map(|d| {
            let accs: Vec<f64> = rows
                .iter()
                .filter(|r| r.cell.is_row(method, basis) && r.cell.stands_for(*d))
                .filter_map(|r| r.result.test_acc)
                .collect();
            (!accs.is_empty()).then(|| (f64::from(*d), 100.0 * mean_std(&accs).0))
        })
        .collect()
}

/// Which trainer runs the cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// pnnc's own trainer, in this process.
    Native,
    /// The exported PyTorch trainer (docs/scale-out.md), launched per cell.
    Torch(Launch),
}

/// `--engine`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Native,
    Torch,
}

/// `--device` of the exported trainer.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchDevice {
    /// CUDA when PyTorch sees a GPU, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

/// The sweep folder's subfolder of exported models and data files.
pub const TORCH_DIR: &str = "torch";

/// The engine `--engine`, `--nproc-per-node` and `--device` ask for:
/// `threads` are shared among the processes of a torch cell; the Python is
/// [`torch_export::find_python`]'s (an install hint when it lacks torch).
pub fn engine(
    kind: EngineKind,
    processes: Option<usize>,
    device: Option<TorchDevice>,
    threads: usize,
) -> Result<Engine, Failure> {
    if kind == EngineKind::Native {
        if processes.is_some() || device.is_some() {
            return Err(Failure::usage(
                "--nproc-per-node and --device choose how PyTorch runs a cell\n  help: add `--engine torch`, or drop them",
            ));
        }
        return Ok(Engine::Native);
    }
    let processes = processes.unwrap_or(1);
    if processes == 0 || processes > 1024 {
        return Err(Failure::usage(format!(
            "--nproc-per-node {processes}: must be between 1 and 1024"
        )));
    }
    let python = torch_export::find_python().map_err(|e| Failure::usage(e.to_string()))?;
    let device = match device.unwrap_or(TorchDevice::Auto) {
        TorchDevice::Auto => "auto",
        TorchDevice::Cpu => "cpu",
        TorchDevice::Cuda => "cuda",
    };
    Ok(Engine::Torch(Launch {
        python,
        processes,
        threads: Some((threads / processes).max(1)),
        args: vec!["--device".into(), device.into()],
    }))
}

/// What a sweep runs.
pub struct SweepPlan<'a> {
    pub model: &'a Model,
    pub model_path: &'a Path,
    pub domain: Domain,
    pub degrees: &'a [u32],
    pub bases: &'a [Basis],
    pub methods: &'a [Method],
    pub seeds: &'a [u64],
    pub epochs: Option<u32>,
    pub limit_train: Option<usize>,
    pub data_dir: Option<&'a Path>,
    pub root: &'a Path,
    pub threads: usize,
    pub stop: Option<&'a AtomicBool>,
    pub engine: &'a Engine,
}

/// Refuses degrees the chosen (B, P) table does not have.
pub fn check_plan(plan: &SweepPlan) -> Result<(), Failure> {
    for &d in plan.degrees {
        super::ranges::lookup(plan.domain, d)
            .map_err(|e| Failure::usage(format!("--degrees: {e}")))?;
    }
    Ok(())
}

/// Train every unfinished cell of the plan; `note` receives a line per cell.
/// Returns the summaries of all cells, finished before or now.
pub fn run_grid(
    plan: &SweepPlan,
    note: &mut dyn FnMut(String),
) -> Result<Vec<CellSummary>, Failure> {
    check_plan(plan)?;
    std::fs::create_dir_all(plan.root)
        .map_err(|e| Failure::usage(format!("{}: {e}", plan.root.display())))?;
    let cells = grid(plan.degrees, plan.bases, plan.methods, plan.seeds);
    let mut rows = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        let at = format!("[{}/{}] {}", i + 1, cells.len(), cell.dir_name());
        if let Some(done) = finished(plan.root, cell) {
            note(format!("{at}: finished, kept"));
            rows.push(done);
            continue;
        }
        let summary = run_cell(plan, cell, &mut |what| note(format!("{at} ({what})")))?;
        note(format!("    {}", entry(&[&summary])));
        rows.push(summary);
    }
    Ok(rows)
}

/// Train one cell from scratch into its folder and write its `cell.json`.
pub fn run_cell(
    plan: &SweepPlan,
    cell: &Cell,
    note: &mut dyn FnMut(String),
) -> Result<CellSummary, Failure> {
    let dir = plan.root.join(cell.dir_name());
    let model = cell_model(plan, cell, note)?;
    let overrides = Overrides {
        epochs: plan.epochs,
        seed: Some(cell.seed),
        recipe: cell.method.recipe(),
        ..Overrides::default()
    };
    let config = run_config(&model, &overrides);
    let result = match plan.engine {
        // A cell interrupted mid-training starts again from scratch.
        Engine::Native => {
            let job = TrainJob {
                model: &model,
                model_path: plan.model_path,
                data_dir: plan.data_dir,
                out: &dir,
                config,
                limit_train: plan.limit_train,
                threads: plan.threads,
                start: Start::Overwrite,
                stop: plan.stop,
            };
            train(&job)?.cell
        }
        Engine::Torch(launch) => torch_cell(plan, cell, &model, &config, launch, note)?,
    };
    let summary = CellSummary {
        cell: *cell,
        result,
    };
    let text = serde_json::to_string_pretty(&summary).map_err(|e| Failure::job(e.to_string()))?;
    write_atomic(&dir.join(CELL_FILE), text.as_bytes())
        .map_err(|e| Failure::usage(e.to_string()))?;
    Ok(summary)
}

/// The sweep's model with the cell's degree, (B, P) and basis.
fn cell_model(
    plan: &SweepPlan,
    cell: &Cell,
    note: &mut dyn FnMut(String),
) -> Result<Model, Failure> {
    let mut model = plan.model.clone();
    if cell.method == Method::Relu {
        note("ReLU for every activation".into());
    } else {
        let (b, p) = super::ranges::lookup(plan.domain, cell.degree).map_err(Failure::usage)?;
        let weight = plan.domain.boundary_weight();
        with_degree(&mut model, cell.degree, b, p);
        with_boundary_weight(&mut model, weight);
        if cell.basis != Basis::Chebyshev {
            with_basis(&mut model, cell.basis);
        }
        note(format!(
            "B = {b}, P = {p}, lambda = {weight}, {} basis",
            cell.basis.name()
        ));
    }
    Ok(model)
}

/// Train one cell with the exported PyTorch trainer: the cell's model
/// exported into `torch/<cell>/`, the data of its seed exported once into
/// `torch/`, the run folder written by the trainer (`--overwrite`: a cell
/// interrupted mid-training starts again from scratch).
fn torch_cell(
    plan: &SweepPlan,
    cell: &Cell,
    model: &Model,
    config: &RunConfig,
    launch: &Launch,
    note: &mut dyn FnMut(String),
) -> Result<CellResult, Failure> {
    let data = torch_data(plan, model, config.seed, note)?;
    let export_dir = plan.root.join(TORCH_DIR).join(cell.dir_name());
    let opts = torch_export::Options {
        baseline_relu: cell.method == Method::Relu,
        overwrite: true,
        model_file: plan.model_path.display().to_string(),
    };
    torch_export::export(model, config, &opts, &export_dir, |_| Ok(()))
        .map_err(|e| Failure::job(format!("{}: {e}", plan.model_path.display())))?;
    let mut launch = launch.clone();
    launch.args.push("--overwrite".into());
    note(format!(
        "PyTorch, {} process{}",
        launch.processes,
        if launch.processes == 1 { "" } else { "es" }
    ));
    let dir = plan.root.join(cell.dir_name());
    let started = std::time::Instant::now();
    let outcome = torch_export::train(&export_dir, &data, &dir, &launch).map_err(|e| match e {
        torch_export::ExportError::Interrupted { .. } => Failure {
            code: 130,
            message: e.to_string(),
        },
        e => Failure::job(format!("{}: {e}", plan.model_path.display())),
    })?;
    Ok(torch_result(
        &dir,
        config,
        outcome,
        started.elapsed().as_secs_f64(),
    ))
}

/// The cell's result from the exported trainer's outcome, as the native
/// trainer's (`pipeline::train::train_on`) would record it.
fn torch_result(dir: &Path, config: &RunConfig, outcome: Outcome, seconds: f64) -> CellResult {
    let mut cell = CellResult {
        seconds,
        ..CellResult::default()
    };
    let failing = match &outcome {
        Outcome::Diverged(d) => d.site(),
        Outcome::Finished(_) => None,
    };
    if let Some((site, x)) = largest_input(dir, failing) {
        cell.max_abs_range = config.site_ranges.get(&site).copied();
        cell.max_abs_input = Some(f64::from(x));
        cell.max_abs_site = Some(site);
    }
    match outcome {
        Outcome::Finished(s) => {
            cell.test_acc = s.test_acc;
            cell.best_val_acc = s.best_val_acc;
            cell.epochs = s.epochs;
            cell.steps = s.steps;
            cell.seconds = s.seconds;
            cell.train_samples = train_samples(dir).unwrap_or(0);
        }
        Outcome::Diverged(d) => {
            cell.diverged_site = d.site.clone();
            cell.diverged_step = Some(d.step);
            cell.diverged = Some(format!(
                "training diverged at step {} (epoch {}, batch {}): {}",
                d.step, d.epoch, d.batch, d.what
            ));
            cell.diverged_help = Some(d.help);
            cell.epochs = d.epoch;
            cell.steps = d.step;
            cell.train_samples = d.train_samples;
        }
    }
    cell
}

/// `train_samples` of a finished run's `summary.json`.
fn train_samples(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join(super::folder::SUMMARY)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("train_samples")?.as_u64().map(|n| n as usize)
}

/// The data file of `seed` for the torch cells (`pnnc data export` of the
/// model's data with that validation seed and the sweep's `--limit-train`),
/// written once and shared by every cell of that seed.
fn torch_data(
    plan: &SweepPlan,
    model: &Model,
    seed: u64,
    note: &mut dyn FnMut(String),
) -> Result<PathBuf, Failure> {
    let limit = plan
        .limit_train
        .map_or_else(|| "all".to_string(), |n| format!("l{n}"));
    let path = plan
        .root
        .join(TORCH_DIR)
        .join(format!("data-s{seed}-{limit}.safetensors"));
    if path.is_file() {
        return Ok(path);
    }
    let spec = model.train.data.clone().ok_or_else(|| {
        Failure::usage(format!(
            "{}: the model names no data set\n  help: add `data: ...` to its `train {{ }}` section",
            plan.model_path.display()
        ))
    })?;
    let (splits, _) = load_splits(
        model,
        plan.model_path,
        plan.data_dir,
        None,
        seed,
        plan.limit_train,
    )?;
    let dir = plan.root.join(TORCH_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
    let limit = plan.limit_train.or(spec.limit_train);
    crate::data::export::write(&splits, &spec, seed, limit, &path)
        .map_err(|e| Failure::usage(e.to_string()))?;
    note(format!("data for seed {seed}: {}", path.display()));
    Ok(path)
}

/// results.csv and results.md of the finished cells.
pub fn write_tables(
    root: &Path,
    rows: &[CellSummary],
    degrees: &[u32],
    bases: &[Basis],
    methods: &[Method],
    header: &str,
) -> Result<Vec<PathBuf>, Failure> {
    let io = |e: crate::ir::WeightsError| Failure::usage(e.to_string());
    let csv = root.join("results.csv");
    write_atomic(&csv, to_csv(rows).as_bytes()).map_err(io)?;
    let md = root.join("results.md");
    let text = format!("{header}\n\n{}", to_markdown(rows, degrees, bases, methods));
    write_atomic(&md, text.as_bytes()).map_err(io)?;
    Ok(vec![csv, md])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(
        degree: u32,
        method: Method,
        seed: u64,
        acc: Option<f64>,
        diverged: Option<u64>,
    ) -> CellSummary {
        CellSummary {
            cell: Cell {
                degree,
                basis: Basis::Chebyshev,
                method,
                seed,
            },
            result: CellResult {
                test_acc: acc,
                best_val_acc: acc,
                diverged_step: diverged,
                diverged: diverged.map(|s| format!("training diverged at step {s}")),
                diverged_help: None,
                max_abs_input: None,
                max_abs_site: None,
                max_abs_range: None,
                diverged_site: None,
                epochs: 1,
                steps: 10,
                seconds: 2.0,
                train_samples: 100,
            },
        }
    }

    #[test]
    fn grid_is_degree_method_seed_ordered() {
        let cheb = [Basis::Chebyshev];
        let g = grid(&[2, 8], &cheb, &[Method::Framework, Method::Plain], &[1, 2]);
        assert_eq!(g.len(), 8);
        assert_eq!(g[0].dir_name(), "d2-framework-s1");
        assert_eq!(g[3].dir_name(), "d2-plain-s2");
        assert_eq!(g[7].dir_name(), "d8-plain-s2");
        // A second basis doubles the polynomial cells; Chebyshev keeps its old names.
        let both = [Basis::Chebyshev, Basis::Power];
        let g = grid(&[8], &both, &[Method::Framework, Method::Relu], &[1]);
        let names: Vec<String> = g.iter().map(Cell::dir_name).collect();
        assert_eq!(
            names,
            ["d8-framework-s1", "d8-power-framework-s1", "relu-s1"]
        );
    }

    #[test]
    fn relu_cells_are_trained_once_per_seed_and_fill_every_degree() {
        let g = grid(
            &[2, 8],
            &[Basis::Chebyshev],
            &[Method::Relu, Method::Framework],
            &[1, 2],
        );
        let names: Vec<String> = g.iter().map(Cell::dir_name).collect();
        assert_eq!(
            names,
            [
                "d2-framework-s1",
                "d2-framework-s2",
                "d8-framework-s1",
                "d8-framework-s2",
                "relu-s1",
                "relu-s2"
            ]
        );
        let mut relu1 = summary(RELU_DEGREE, Method::Relu, 1, Some(0.9), None);
        let relu2 = summary(RELU_DEGREE, Method::Relu, 2, Some(0.8), None);
        let md = to_markdown(
            &[relu1.clone(), relu2],
            &[2, 8],
            &[Basis::Chebyshev, Basis::Power],
            &[Method::Relu],
        );
        assert_eq!(
            md.lines().nth(2),
            Some(
                "| relu (no polynomial: same cells in every column) | 85.00 ± 7.07 (n=2) | 85.00 ± 7.07 (n=2) |"
            )
        );
        relu1.result.test_acc = Some(0.7);
        let points = accuracy_points(&[relu1.clone()], &[2, 8], Method::Relu, Basis::Power);
        assert_eq!(points, [(2.0, 70.0), (8.0, 70.0)]);
        assert!(
            to_csv(&[relu1])
                .lines()
                .nth(1)
                .unwrap()
                .starts_with(",,relu,1,ok,0.700000")
        );
    }

    #[test]
    fn a_finished_cell_is_detected_and_an_unfinished_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let done = summary(2, Method::Framework, 1, Some(0.8), None);
        let cell_dir = dir.path().join(done.cell.dir_name());
        std::fs::create_dir_all(&cell_dir).unwrap();
        std::fs::write(
            cell_dir.join(CELL_FILE),
            serde_json::to_string(&done).unwrap(),
        )
        .unwrap();
        assert_eq!(finished(dir.path(), &done.cell), Some(done.clone()));
        // A cell folder without cell.json (interrupted) is not finished.
        let other = Cell {
            degree: 8,
            ..done.cell
        };
        std::fs::create_dir_all(dir.path().join(other.dir_name())).unwrap();
        assert_eq!(finished(dir.path(), &other), None);
        // A corrupt cell.json is not finished either (the cell reruns).
        std::fs::write(cell_dir.join(CELL_FILE), "{").unwrap();
        assert_eq!(finished(dir.path(), &done.cell), None);
    }

    #[test]
    fn csv_and_markdown_from_fixture_summaries() {
        let mut rows = vec![
            summary(2, Method::Framework, 1, Some(0.80), None),
            summary(2, Method::Framework, 2, Some(0.90), None),
            summary(2, Method::Plain, 1, None, Some(123)),
            summary(8, Method::Framework, 1, Some(0.5), None),
        ];
        rows[2].result.diverged_site = Some("poly2".into());
        rows[2].result.max_abs_input = Some(f64::INFINITY);
        rows[2].result.max_abs_site = Some("poly2".into());
        rows[2].result.max_abs_range = Some(12.0);
        rows[2].cell.basis = Basis::Power;
        let csv = to_csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("degree,basis,method,seed,status,test_acc"));
        assert_eq!(
            lines[1],
            "2,chebyshev,framework,1,ok,0.800000,0.800000,,,,,,,1,10,2.0"
        );
        let edge = overflow_edge(Basis::Power, 2, 12.0);
        assert_eq!(
            lines[3],
            format!("2,power,plain,1,diverged,,,123,poly2,inf,poly2,12,{edge:.1},1,10,2.0")
        );

        let both = [Basis::Chebyshev, Basis::Power];
        let md = to_markdown(&rows, &[2, 8], &both, &[Method::Framework, Method::Plain]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| method | degree 2 | degree 8 |");
        assert_eq!(
            lines[2],
            "| framework (chebyshev) | 85.00 ± 7.07 (n=2) | 50.00 |"
        );
        assert_eq!(lines[3], "| framework (power) | not run | not run |");
        assert_eq!(
            lines[5],
            "| plain (power) | diverged at step 123 | not run |"
        );
    }

    #[test]
    fn overflow_edges_match_float32() {
        // x^22 overflows float32 past |x| = 56.4 (the paper's form).
        let raw = f64::from(f32::MAX).powf(1.0 / 22.0);
        assert!((raw - 56.4).abs() < 0.1, "{raw}");
        assert!((overflow_edge(Basis::Power, 22, 1.0) - raw).abs() < 1e-9);
        // Chebyshev on x / 47 at degree 22 overflows only far beyond.
        assert!(overflow_edge(Basis::Chebyshev, 22, 47.0) > 1000.0);
    }

    #[test]
    fn accuracy_chart_averages_seeds() {
        let rows = vec![
            summary(2, Method::Framework, 1, Some(0.80), None),
            summary(2, Method::Framework, 2, Some(0.90), None),
            summary(8, Method::Framework, 1, Some(0.5), None),
        ];
        let pts = accuracy_points(&rows, &[2, 8], Method::Framework, Basis::Chebyshev);
        assert_eq!(pts.len(), 2);
        assert!((pts[0].1 - 85.0).abs() < 1e-9 && pts[1] == (8.0, 50.0));
    }
}
