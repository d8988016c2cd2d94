//! `pnnc compile MODEL --weights CKPT -o OUT.circuit.json`

use super::common::{fail, load_model, load_weights};
use crate::he::{CompileOptions, compile, io};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct CompileArgs {
    /// The checked model.
    pub model: PathBuf,
    /// Trained weights (safetensors checkpoint from `pnnc train`).
    #[arg(long)]
    pub weights: PathBuf,
    /// Output circuit (default: MODEL with `.circuit.json`).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Bounds of raw input values for interval analysis, `LO,HI`.
    #[arg(long, default_value = "0,1")]
    pub input_range: String,
}

pub fn run(args: &CompileArgs) -> ExitCode {
    let model = match load_model(&args.model) {
        Ok(m) => m,
        Err(e) => return fail(e, "check the model path"),
    };
    let ck = match load_weights(&model, &args.weights) {
        Ok(c) => c,
        Err(e) => return fail(e, "pass the weights `pnnc train` wrote for this model"),
    };
    let range: Vec<f64> = args
        .input_range
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let [lo, hi] = range[..] else {
        return fail(
            format!("--input-range `{}` is not LO,HI", args.input_range),
            "e.g. --input-range 0,1",
        );
    };
    let compiled = match compile(
        &model,
        &ck,
        &CompileOptions {
            input_range: [lo, hi],
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: {e}", args.model.display());
            return ExitCode::from(1);
        }
    };
    for w in &compiled.warnings {
        eprintln!("warning: {}: {w}", args.model.display());
    }
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| args.model.with_extension("circuit.json"));
    match io::write(&out, &compiled.circuit, &compiled.tensors, io::INLINE_LIMIT) {
        Ok(side) => {
            let c = &compiled.circuit;
            let p = &c.params;
            println!(
                "wrote {}{}",
                out.display(),
                side.map(|s| format!(" (+ {})", s.display()))
                    .unwrap_or_default()
            );
            println!(
                "depth {} (model {}), N = {}, slots {}, q0 {} bits, scale 2^{}, levels {}, log Q {}, log QP {} with {} key-switching digits (max {} at {}-bit security)",
                c.depth,
                compiled.ir_depth,
                p.ring_dim,
                p.slots,
                p.first_mod_bits,
                p.scale_bits,
                p.mult_depth,
                p.log_q,
                p.log_qp,
                p.key_switch_digits,
                p.max_log_q,
                p.security
            );
            println!(
                "packing dim {} ({} samples per ciphertext), {} ops, {} rotation keys",
                c.packing.dim,
                c.packing.samples_per_ciphertext,
                c.ops.len(),
                c.rotations.len()
            );
            if let Some(plan) = &p.bootstrapping {
                println!(
                    "bootstrapping: after values {:?} ({} levels per segment, {} per bootstrap)",
                    plan.after_values, plan.levels_per_segment, plan.bootstrap_levels
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e, "check that the output folder is writable"),
    }
}
