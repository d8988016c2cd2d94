//! Minimal command wiring for the HE subcommands (the `lang` stage owns the
//! real top-level `Command` enum; the lead merges).

pub mod calibrate;
pub mod common;
pub mod compile;
pub mod simulate;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "pnnc",
    version,
    about = "Compiler for polynomial neural networks under CKKS"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compile a trained model to a CKKS circuit.
    Compile(compile::CompileArgs),
    /// Evaluate a circuit in plaintext (optionally with a CKKS noise model).
    Simulate(simulate::SimulateArgs),
    /// Measure activation input ranges on data.
    Calibrate(calibrate::CalibrateArgs),
}

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Compile(a) => compile::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Calibrate(a) => calibrate::run(a),
    }
}
