//! Minimal command wiring for `he-run` (the `lang` stage owns the real
//! top-level `Command` enum; the lead merges).

pub mod he_run;

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
    /// Run a compiled circuit on encrypted inputs (OpenFHE) and check it.
    HeRun(he_run::HeRunArgs),
}

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::HeRun(a) => he_run::run(a),
    }
}
