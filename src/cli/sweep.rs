//! `pnnc sweep model.pnn --degrees .. --methods .. --seeds ..`: a grid of
//! training runs ([`crate::pipeline::sweep`]), then `results.csv`,
//! `results.md` and plots.

use super::failure::{Failure, report, set_threads, stop_flag, with_resume_hint};
use super::plots::{self, Chart, Series};
use crate::ir::Basis;
use crate::pipeline::ranges::Domain;
use crate::pipeline::recipe::Method;
use crate::pipeline::sweep::{
    CellSummary, SweepPlan, accuracy_points, row_label, run_grid, table_rows, to_markdown,
    write_tables,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// The model file (.pnn); its activation degree and range are overridden per cell.
    pub model: PathBuf,
    /// Activation degrees (each with the paper's (B, P) from --table).
    #[arg(long, value_delimiter = ',', default_value = "2,4,8,16,22")]
    pub degrees: Vec<u32>,
    /// The paper's (B, P) table: image, har (inertial data) or audio. Default: by the model's data set.
    #[arg(long, value_enum)]
    pub table: Option<Domain>,
    /// How activations are evaluated: chebyshev (pnnc's default), power, raw_power
    /// (the paper's official form); each a separate set of cells, and chebyshev
    /// cells keep their folder names.
    #[arg(long, value_delimiter = ',', default_value = "chebyshev", value_parser = parse_basis)]
    pub bases: Vec<Basis>,
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
    /// Folder holding the data set (the only place searched when given).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Sweep folder (default: runs/sweep-<model>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker threads (default: all cores; at most the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_basis(text: &str) -> Result<Basis, String> {
    Basis::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = Basis::ALL.iter().map(|b| b.name()).collect();
        format!("unknown basis `{text}`; one of: {}", names.join(", "))
    })
}

/// Test accuracy (mean over seeds) against degree, one line per table row.
pub fn accuracy_chart(
    rows: &[CellSummary],
    degrees: &[u32],
    bases: &[Basis],
    methods: &[Method],
) -> Chart {
    let series = table_rows(bases, methods)
        .into_iter()
        .map(|(m, b)| Series {
            label: row_label(m, b, bases)
                .replace(" (no polynomial: same cells in every column)", ""),
            points: accuracy_points(rows, degrees, m, b),
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
    bases: &[Basis],
    methods: &[Method],
    header: &str,
) -> Result<Vec<PathBuf>, Failure> {
    let mut files = write_tables(root, rows, degrees, bases, methods, header)?;
    let chart = accuracy_chart(rows, degrees, bases, methods);
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
    let threads = set_threads(args.threads)?;
    let base = super::train::load_model(&args.model)?;
    let root = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/sweep-{}", base.name)));
    let plan = SweepPlan {
        model: &base,
        model_path: &args.model,
        domain: args.table.unwrap_or_else(|| Domain::of(&base)),
        degrees: &args.degrees,
        bases: &args.bases,
        methods: &args.methods,
        seeds: &args.seeds,
        epochs: args.epochs,
        limit_train: args.limit_train,
        data_dir: args.data.as_deref(),
        root: &root,
        threads,
        stop: Some(stop_flag()),
    };
    let rows = run_grid(&plan, &mut |line| eprintln!("{line}")).map_err(|f| {
        with_resume_hint(
            f,
            "run the same command again: finished cells are kept, the interrupted cell starts over",
        )
    })?;
    for row in &rows {
        let dir = root.join(row.cell.dir_name());
        // A cell that diverged in its first epoch has no metrics to plot.
        if !dir.join(crate::pipeline::folder::METRICS).is_file() {
            continue;
        }
        if let Err(e) = super::plot::plot_run(&dir) {
            eprintln!("warning: {}: {e}", dir.display());
        }
    }
    let header = format!(
        "Sweep of `{}` ({} table): test accuracy (%) of the final weights; command: `{}`",
        args.model.display(),
        plan.domain.name(),
        crate::pipeline::folder::command_line().join(" ")
    );
    let files = write_results(
        &root,
        &rows,
        &args.degrees,
        &args.bases,
        &args.methods,
        &header,
    )?;
    println!(
        "{}",
        to_markdown(&rows, &args.degrees, &args.bases, &args.methods)
    );
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
