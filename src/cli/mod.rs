//! The `pnnc` command line: the top-level [`Command`] enum and dispatch.
//! Other stages add their subcommands as `src/cli/<name>.rs`.

pub mod bench;
pub mod calibrate;
mod check;
pub mod common;
pub mod compile;
pub mod data;
pub mod eval;
pub mod export;
pub mod failure;
pub mod he_run;
pub mod lsp;
pub mod plot;
pub mod plots;
pub mod run;
pub mod simulate;
pub mod sweep;
pub mod train;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

/// pnnc: a compiler for polynomial neural networks under CKKS homomorphic encryption.
#[derive(Debug, Parser)]
#[command(name = "pnnc", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check model files: syntax, names, shapes, HE compatibility and depth.
    Check(check::CheckArgs),
    /// Print the per-layer table of a model: shapes, parameters, levels.
    Info(check::InfoArgs),
    /// Format model files in place (or only report with --check).
    Fmt(check::FmtArgs),
    /// Explain a diagnostic code or a topic, e.g. `pnnc explain E0100`, `pnnc explain raw_power`.
    Explain(check::ExplainArgs),
    /// Language server for editors, over stdin/stdout (docs/editors.md).
    Lsp(lsp::LspArgs),
    /// The whole pipeline: check, train, calibrate, compile, simulate, summary.
    Run(run::RunArgs),
    /// Train a grid of degrees x methods x seeds; results table and plots.
    Sweep(sweep::SweepArgs),
    /// Draw the training curves of a run folder (SVG and PNG).
    Plot(plot::PlotArgs),
    /// Data sets: list, inspect, get, verify.
    Data(data::DataArgs),
    /// Train a model with Boundary Loss and Selective Gradient Clipping.
    Train(train::TrainArgs),
    /// Evaluate trained weights on the test split: accuracy and confusion matrix.
    Eval(eval::EvalArgs),
    /// Export a model to another engine: `pnnc export torch MODEL -o DIR` (PyTorch, torchrun).
    Export(export::ExportArgs),
    /// Time training steps of a benchmark network on random data.
    Bench(bench::BenchArgs),
    /// Compile a trained model to a CKKS circuit (JSON).
    Compile(compile::CompileArgs),
    /// Evaluate a circuit in plaintext, optionally with a CKKS noise model.
    Simulate(simulate::SimulateArgs),
    /// Measure activation input ranges of a trained model on data.
    Calibrate(calibrate::CalibrateArgs),
    /// Run a compiled circuit on encrypted inputs (OpenFHE) and check it.
    HeRun(he_run::HeRunArgs),
    /// Time the checker on model files (median of repeated runs).
    #[command(hide = true)]
    BenchCheck(check::BenchArgs),
    /// Time the language server's re-check after a keystroke (median).
    #[command(hide = true)]
    BenchLsp(lsp::BenchArgs),
}

/// Output format of `check` and `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// When to colour text output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// Parse the command line and run it; the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            // Printing clap's message can only fail if stdout/stderr is closed.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    run(&cli.command)
}

pub fn run(command: &Command) -> ExitCode {
    match command {
        Command::Check(a) => check::check(a),
        Command::Info(a) => check::info(a),
        Command::Fmt(a) => check::fmt(a),
        Command::Explain(a) => check::explain(a),
        Command::Lsp(a) => lsp::run(a),
        Command::Data(a) => data::run(a),
        Command::Run(a) => run::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Export(a) => export::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Compile(a) => compile::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::HeRun(a) => he_run::run(a),
        Command::BenchCheck(a) => check::bench(a),
        Command::BenchLsp(a) => lsp::bench(a),
    }
}
