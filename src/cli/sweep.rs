//! `pnnc sweep model.pnn --degrees .. --methods .. --seeds ..`: train a grid of
//! (degree, method, seed) cells, each in its own run folder, then write
//! `results.csv`, `results.md` and plots. A cell is finished when its
//! `cell.json` exists; finished cells are kept on a rerun (resumable).

use super::failure::{Failure, report};
use super::plots::{self, Chart, Series};
use super::run::{CellResult, Method, TrainRequest, train_request};
use crate::ir::weights::write_atomic;
use crate::ir::{Model, OpKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// (degree, B, P) for image models, from the paper.
pub const IMAGE_RANGES: [(u32, f64, f64); 5] = [
    (2, 12.0, 12.0),
    (4, 20.0, 15.0),
    (8, 35.0, 17.5),
    (16, 40.0, 20.0),
    (22, 47.0, 23.5),
];

/// The file that marks a finished cell.
pub const CELL_FILE: &str = "cell.json";

#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// The model file (.pnn); its activation degree and range are overridden per cell.
    pub model: PathBuf,
    /// Activation degrees (each uses the paper's (B, P) for images).
    #[arg(long, value_delimiter = ',', default_value = "2,4,8,16,22")]
    pub degrees: Vec<u32>,
    /// Methods: framework, no-boundary, clip-all, no-clip, plain, relu.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "framework,plain,relu"
    )]
    pub methods: Vec<Method>,
    /// Seeds.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub seeds: Vec<u64>,
    #[arg(long)]
    pub epochs: Option<u32>,
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Folder holding the data set.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Sweep folder (default: runs/sweep-<model>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// One grid point. A ReLU cell has no polynomial, so it has no degree
/// (`RELU_DEGREE`): it is trained once per seed and stands for every degree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cell {
    pub degree: u32,
    pub method: Method,
    pub seed: u64,
}

/// The degree of a ReLU cell: none.
pub const RELU_DEGREE: u32 = 0;

impl Cell {
    /// Folder name inside the sweep folder.
    pub fn dir_name(&self) -> String {
        if self.method == Method::Relu {
            format!("relu-s{}", self.seed)
        } else {
            format!("d{}-{}-s{}", self.degree, self.method.name(), self.seed)
        }
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

/// (B, P) of `degree` in the paper's image table.
pub fn image_range(degree: u32) -> Option<(f64, f64)> {
    IMAGE_RANGES
        .iter()
        .find(|(d, _, _)| *d == degree)
        .map(|&(_, b, p)| (b, p))
}

/// Set every activation of `model` to `degree` with range B and the
/// boundary penalty P; recompute levels and depth (the checker's parameter
/// count leaves coefficients out, so it is unchanged); give
/// the model a new hash so that its checkpoints differ from the original's.
pub fn override_degree(model: &mut Model, degree: u32, range: f64, penalty: f64) {
    fn walk(ops: &mut [crate::ir::Op], degree: u32, range: f64) {
        for op in ops {
            match &mut op.kind {
                OpKind::Poly(p) => {
                    p.degree = degree;
                    p.range = range;
                }
                OpKind::Residual { body, shortcut } => {
                    walk(body, degree, range);
                    walk(shortcut, degree, range);
                }
                _ => {}
            }
        }
    }
    walk(&mut model.net, degree, range);
    model.depth = crate::check::depth::assign_levels(&mut model.net, 0);
    if let Some(b) = model.train.boundary.as_mut() {
        b.penalty = Some(penalty);
    }
    let mut h = Sha256::new();
    h.update(model.source_hash.as_bytes());
    h.update(format!("degree={degree};range={range};penalty={penalty}").as_bytes());
    model.source_hash = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
}

/// Every cell of the grid, in a fixed order (degree, method, seed); the
/// degree-independent ReLU cells come last, one per seed.
pub fn grid(degrees: &[u32], methods: &[Method], seeds: &[u64]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for &degree in degrees {
        for &method in methods.iter().filter(|m| **m != Method::Relu) {
            for &seed in seeds {
                cells.push(Cell {
                    degree,
                    method,
                    seed,
                });
            }
        }
    }
    if methods.contains(&Method::Relu) {
        cells.extend(seeds.iter().map(|&seed| Cell {
            degree: RELU_DEGREE,
            method: Method::Relu,
            seed,
        }));
    }
    cells
}

/// The finished summary of `cell` in `root`, if any.
pub fn finished(root: &Path, cell: &Cell) -> Option<CellSummary> {
    let text = std::fs::read_to_string(root.join(cell.dir_name()).join(CELL_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// `results.csv`: one row per cell.
pub fn to_csv(rows: &[CellSummary]) -> String {
    let mut out = String::from(
        "degree,method,seed,status,test_acc,best_val_acc,diverged_step,epochs,steps,seconds\n",
    );
    let opt = |x: Option<f64>| x.map(|v| format!("{v:.6}")).unwrap_or_default();
    for r in rows {
        let res = &r.result;
        let degree = if r.cell.method == Method::Relu {
            String::new()
        } else {
            r.cell.degree.to_string()
        };
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{:.1}\n",
            degree,
            r.cell.method.name(),
            r.cell.seed,
            if res.diverged_step.is_some() {
                "diverged"
            } else {
                "ok"
            },
            opt(res.test_acc),
            opt(res.best_val_acc),
            res.diverged_step.map(|s| s.to_string()).unwrap_or_default(),
            res.epochs,
            res.steps,
            res.seconds
        ));
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

/// The markdown table: methods as rows, degrees as columns, test accuracy in %.
pub fn to_markdown(rows: &[CellSummary], degrees: &[u32], methods: &[Method]) -> String {
    let mut out = String::from("| method |");
    for d in degrees {
        out.push_str(&format!(" degree {d} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(degrees.len()));
    out.push('\n');
    for m in methods {
        if *m == Method::Relu {
            out.push_str("| relu (no polynomial: same cells in every column) |");
        } else {
            out.push_str(&format!("| {} |", m.name()));
        }
        for d in degrees {
            let cell: Vec<&CellSummary> = rows
                .iter()
                .filter(|r| r.cell.method == *m && r.cell.stands_for(*d))
                .collect();
            out.push_str(&format!(" {} |", entry(&cell)));
        }
        out.push('\n');
    }
    out
}

/// Test accuracy (mean over seeds) against degree, one line per method.
pub fn accuracy_chart(rows: &[CellSummary], degrees: &[u32], methods: &[Method]) -> Chart {
    let series = methods
        .iter()
        .map(|m| Series {
            label: m.name().into(),
            points: degrees
                .iter()
                .filter_map(|d| {
                    let accs: Vec<f64> = rows
                        .iter()
                        .filter(|r| r.cell.method == *m && r.cell.stands_for(*d))
                        .filter_map(|r| r.result.test_acc)
                        .collect();
                    (!accs.is_empty()).then(|| (f64::from(*d), 100.0 * mean_std(&accs).0))
                })
                .collect(),
        })
        .collect();
    Chart {
        title: "test accuracy by activation degree".into(),
        x_label: "polynomial degree".into(),
        y_label: "test accuracy (%)".into(),
        series,
        hlines: Vec::new(),
        markers: true,
    }
}

/// Write results.csv, results.md and the accuracy plot of the finished cells.
pub fn write_results(
    root: &Path,
    rows: &[CellSummary],
    degrees: &[u32],
    methods: &[Method],
    header: &str,
) -> Result<Vec<PathBuf>, Failure> {
    let io = |e: crate::ir::WeightsError| Failure::usage(e.to_string());
    let csv = root.join("results.csv");
    write_atomic(&csv, to_csv(rows).as_bytes()).map_err(io)?;
    let md = root.join("results.md");
    let text = format!("{header}\n\n{}", to_markdown(rows, degrees, methods));
    write_atomic(&md, text.as_bytes()).map_err(io)?;
    let mut files = vec![csv, md];
    let chart = accuracy_chart(rows, degrees, methods);
    match plots::draw(&chart, &root.join("accuracy_by_degree")) {
        Ok(p) => files.extend(p),
        Err(e) => eprintln!("warning: {e}"),
    }
    Ok(files)
}

pub fn run(args: &SweepArgs) -> ExitCode {
    report(sweep(args))
}

fn sweep(args: &SweepArgs) -> Result<(), Failure> {
    let threads = super::failure::set_threads(args.threads);
    let base = super::train::load_model(&args.model)?;
    for d in &args.degrees {
        if image_range(*d).is_none() {
            return Err(Failure::usage(format!(
                "--degrees: no (B, P) for degree {d}\n  help: use degrees from the paper's table: 2, 4, 8, 16, 22"
            )));
        }
    }
    let root = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/sweep-{}", base.name)));
    std::fs::create_dir_all(&root)
        .map_err(|e| Failure::usage(format!("{}: {e}", root.display())))?;
    let cells = grid(&args.degrees, &args.methods, &args.seeds);
    let mut rows = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        if let Some(done) = finished(&root, cell) {
            eprintln!(
                "[{}/{}] {}: finished, kept",
                i + 1,
                cells.len(),
                cell.dir_name()
            );
            rows.push(done);
            continue;
        }
        let dir = root.join(cell.dir_name());
        // A cell interrupted mid-training is started again from scratch.
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
        }
        let mut model = base.clone();
        let what = match image_range(cell.degree) {
            Some((b, p)) if cell.method != Method::Relu => {
                override_degree(&mut model, cell.degree, b, p);
                format!("B = {b}, P = {p}")
            }
            _ => "ReLU for every activation".to_string(),
        };
        eprintln!("[{}/{}] {} ({what})", i + 1, cells.len(), cell.dir_name());
        let req = TrainRequest {
            model: &model,
            model_path: &args.model,
            data_dir: args.data.as_deref(),
            out: &dir,
            method: Some(cell.method),
            epochs: args.epochs,
            seed: Some(cell.seed),
            limit_train: args.limit_train,
            threads,
            quiet: true,
        };
        let result = train_request(&req)?;
        let summary = CellSummary {
            cell: *cell,
            result,
        };
        let text =
            serde_json::to_string_pretty(&summary).map_err(|e| Failure::job(e.to_string()))?;
        write_atomic(&dir.join(CELL_FILE), text.as_bytes())
            .map_err(|e| Failure::usage(e.to_string()))?;
        eprintln!("    {}", entry(&[&summary]));
        if let Err(e) = super::plot::plot_run(&dir) {
            eprintln!("warning: {}: {e}", dir.display());
        }
        rows.push(summary);
    }
    let header = format!(
        "Sweep of `{}`: test accuracy (%) of the final weights; command: `{}`",
        args.model.display(),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    let files = write_results(&root, &rows, &args.degrees, &args.methods, &header)?;
    println!("{}", to_markdown(&rows, &args.degrees, &args.methods));
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
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
                method,
                seed,
            },
            result: CellResult {
                test_acc: acc,
                best_val_acc: acc,
                diverged_step: diverged,
                diverged: diverged.map(|s| format!("training diverged at step {s}")),
                epochs: 1,
                steps: 10,
                seconds: 2.0,
                train_samples: 100,
            },
        }
    }

    #[test]
    fn grid_is_degree_method_seed_ordered() {
        let g = grid(&[2, 8], &[Method::Framework, Method::Plain], &[1, 2]);
        assert_eq!(g.len(), 8);
        assert_eq!(g[0].dir_name(), "d2-framework-s1");
        assert_eq!(g[3].dir_name(), "d2-plain-s2");
        assert_eq!(g[7].dir_name(), "d8-plain-s2");
    }

    #[test]
    fn relu_cells_are_trained_once_per_seed_and_fill_every_degree() {
        let g = grid(&[2, 8], &[Method::Relu, Method::Framework], &[1, 2]);
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
        let md = to_markdown(&[relu1.clone(), relu2], &[2, 8], &[Method::Relu]);
        assert_eq!(
            md.lines().nth(2),
            Some(
                "| relu (no polynomial: same cells in every column) | 85.00 ± 7.07 (n=2) | 85.00 ± 7.07 (n=2) |"
            )
        );
        relu1.result.test_acc = Some(0.7);
        let chart = accuracy_chart(&[relu1.clone()], &[2, 8], &[Method::Relu]);
        assert_eq!(chart.series[0].points, [(2.0, 70.0), (8.0, 70.0)]);
        assert!(
            to_csv(&[relu1])
                .lines()
                .nth(1)
                .unwrap()
                .starts_with(",relu,1,ok,0.700000")
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
        let rows = vec![
            summary(2, Method::Framework, 1, Some(0.80), None),
            summary(2, Method::Framework, 2, Some(0.90), None),
            summary(2, Method::Plain, 1, None, Some(123)),
            summary(8, Method::Framework, 1, Some(0.5), None),
        ];
        let csv = to_csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("degree,method,seed,status,test_acc"));
        assert_eq!(lines[1], "2,framework,1,ok,0.800000,0.800000,,1,10,2.0");
        assert_eq!(lines[3], "2,plain,1,diverged,,,123,1,10,2.0");

        let md = to_markdown(&rows, &[2, 8], &[Method::Framework, Method::Plain]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| method | degree 2 | degree 8 |");
        assert_eq!(lines[2], "| framework | 85.00 ± 7.07 (n=2) | 50.00 |");
        assert_eq!(lines[3], "| plain | diverged at step 123 | not run |");
    }

    #[test]
    fn accuracy_chart_averages_seeds() {
        let rows = vec![
            summary(2, Method::Framework, 1, Some(0.80), None),
            summary(2, Method::Framework, 2, Some(0.90), None),
            summary(8, Method::Framework, 1, Some(0.5), None),
        ];
        let c = accuracy_chart(&rows, &[2, 8], &[Method::Framework]);
        let pts = &c.series[0].points;
        assert_eq!(pts.len(), 2);
        assert!((pts[0].1 - 85.0).abs() < 1e-9 && pts[1] == (8.0, 50.0));
    }

    #[test]
    fn degree_override_changes_degree_range_penalty_depth_and_hash() {
        let src = "model m\ninput [4]\nclasses 2\nact p = poly(degree: 2, fit: relu, range: 12)\nnet {\n  dense(8); p\n  dense(classes)\n}\ntrain {\n  epochs: 1  batch: 4  seed: 1\n  optimizer: adamw(lr: 1e-3)\n  boundary: exp(penalty: 12, weight: 10, reduce: sum)\n}\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.pnn");
        std::fs::write(&path, src).unwrap();
        let base = crate::check::load_model(&path).unwrap();
        let mut m = base.clone();
        override_degree(&mut m, 22, 47.0, 23.5);
        let poly = m
            .ops()
            .into_iter()
            .find_map(|o| match &o.kind {
                OpKind::Poly(p) => Some(p.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!((poly.degree, poly.range), (22, 47.0));
        assert_eq!(m.train.boundary.as_ref().unwrap().penalty, Some(23.5));
        // dense (1) + degree 22 (5) + dense (1) versus dense + degree 2 (2) + dense.
        assert_eq!(base.depth, 4);
        assert_eq!(m.depth, 7);
        assert_eq!(m.params, base.params);
        assert_ne!(m.source_hash, base.source_hash);
        let mut again = base.clone();
        override_degree(&mut again, 22, 47.0, 23.5);
        assert_eq!(again.source_hash, m.source_hash);
    }
}
