//! Command-line interface (clap derive). Minimal wiring on the `data` branch;
//! the `lang` branch owns the full command set.

pub mod data;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
    /// List, inspect, fetch, verify and benchmark data sets.
    Data(data::DataArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Data(args) => data::run(args),
    }
}
