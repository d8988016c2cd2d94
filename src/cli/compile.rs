//! `pnnc compile MODEL --weights CKPT [-o OUT.circuit.json] [--calibration FILE]`

use super::common::{fail, load_model, load_weights};
use crate::he::calibrate::{escape_warnings, load_calibration};
use crate::he::{CompileOptions, Compiled, compile, io};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct CompileArgs {
    /// The checked model.
    pub model: PathBuf,
    /// Trained weights (safetensors checkpoint from `pnnc train`).
    #[arg(long)]
    pub weights: PathBuf,
    /// Output circuit (default: MODEL with `.circuit.json`); a large circuit's
    /// tensors go next to it in `<name>.tensors.safetensors`.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Bounds of raw input values for interval analysis, `LO,HI`.
    #[arg(long, default_value = "0,1")]
    pub input_range: String,
    /// Escape rates measured by `pnnc calibrate -o FILE` for these weights:
    /// compile warns with them for every activation whose inputs left [-B, B].
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
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
    let calibration = match &args.calibration {
        Some(file) => match load_calibration(file, &model, &args.weights) {
            Ok(c) => Some((c, file)),
            Err(e) => return fail(e, ""),
        },
        None => None,
    };
    let Some([lo, hi]) = parse_range(&args.input_range) else {
        return fail(
            format!("--input-range `{}` is not LO,HI", args.input_range),
            "e.g. --input-range 0,1",
        );
    };
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| args.model.with_extension("circuit.json"));
    let inputs: Vec<&Path> = [&args.model, &args.weights]
        .into_iter()
        .chain(args.calibration.as_ref())
        .map(PathBuf::as_path)
        .collect();
    if let Err(e) = refuse_overwriting_inputs(&out, &inputs) {
        return fail(e, "choose another -o FILE");
    }
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
    match &calibration {
        Some((c, file)) => {
            let warnings = escape_warnings(c, file);
            for w in &warnings {
                eprintln!("warning: {}: {w}", args.model.display());
            }
            if warnings.is_empty() {
                println!(
                    "calibration: no activation input left [-B, B] on {} samples ({})",
                    c.samples, c.data
                );
            }
        }
        None => eprintln!(
            "note: escapes not measured: `pnnc calibrate {} --weights {} --data -o FILE`, then --calibration FILE, warns with the fraction of inputs outside [-B, B]",
            args.model.display(),
            args.weights.display()
        ),
    }
    match io::write(&out, &compiled.circuit, &compiled.tensors, io::INLINE_LIMIT) {
        Ok(side) => {
            print_summary(&out, side.as_deref(), &compiled);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e, "check that the output folder exists and is writable"),
    }
}

fn parse_range(text: &str) -> Option<[f64; 2]> {
    let range: Vec<f64> = text
        .split(',')
        .map(|s| s.trim().parse().ok())
        .collect::<Option<_>>()?;
    range.try_into().ok()
}

/// The circuit and its sidecar must not replace the model, the weights or
/// the calibration they are compiled from.
fn refuse_overwriting_inputs(out: &Path, inputs: &[&Path]) -> Result<(), String> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    for target in [out.to_path_buf(), io::sidecar_path(out)] {
        if let Some(input) = inputs.iter().find(|i| same(&target, i)) {
            return Err(format!(
                "{}: writing the circuit there would replace the input {}",
                target.display(),
                input.display()
            ));
        }
    }
    Ok(())
}

fn print_summary(out: &Path, side: Option<&Path>, compiled: &Compiled) {
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
            "bootstrapping: {} bootstraps (level budget {:?}, {} secret), each leaves {} of the {} levels consumed: {} levels between bootstraps",
            plan.bootstraps,
            plan.level_budget,
            secret_name(p.secret_key),
            plan.bootstrap_levels,
            p.mult_depth,
            p.mult_depth - plan.bootstrap_levels
        );
    }
}

/// `pnnc info CIRCUIT.json`: the circuit's parameters and level table, with
/// the levels its bootstraps consume.
pub fn circuit_info(path: &Path, format: super::Format) -> ExitCode {
    let loaded = match io::load(path) {
        Ok(l) => l,
        Err(e) => return fail(e, "give a circuit written by `pnnc compile`"),
    };
    let c = &loaded.circuit;
    let account = c.level_account();
    let kind = |op: &crate::he::circuit::CircuitOp| {
        serde_json::to_value(&op.kind)
            .ok()
            .and_then(|v| v["op"].as_str().map(String::from))
            .unwrap_or_default()
    };
    if format == super::Format::Json {
        let ops: Vec<_> = c
            .ops
            .iter()
            .map(|op| {
                serde_json::json!({"id": op.id, "op": kind(op), "source": op.source,
                    "level_in": op.level_in, "level_out": op.level_out})
            })
            .collect();
        let doc = serde_json::json!({
            "schema": 1,
            "model": c.model.name,
            "params": c.params,
            "depth": c.depth,
            "levels": account,
            "ops": ops,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let p = &c.params;
    println!(
        "circuit {}  N = {}  levels {}  scale 2^{}  {} digits  security {}  {} ops\n",
        c.model.name,
        p.ring_dim,
        p.mult_depth,
        p.scale_bits,
        p.key_switch_digits,
        p.security,
        c.ops.len()
    );
    let src_w = c
        .ops
        .iter()
        .map(|o| o.source.join(", ").len())
        .max()
        .unwrap_or(6)
        .clamp(6, 48);
    println!(
        "{:>4}  {:<9}  {:<src_w$}  {:>5}  {:>5}",
        "op", "kind", "source", "in", "out"
    );
    for op in &c.ops {
        println!(
            "{:>4}  {:<9}  {:<src_w$}  {:>5}  {:>5}",
            op.id,
            kind(op),
            op.source.join(", "),
            op.level_in,
            op.level_out
        );
    }
    match &p.bootstrapping {
        Some(plan) => println!(
            "\nlevels: the ops consume {} on the longest path, {} bootstraps on it consume {} each ({} in all; level budget {:?}, {} secret): {} levels through a chain of {}, {} left after each bootstrap; {} bootstraps in the circuit",
            account.op_levels,
            account.bootstraps_on_path,
            account.bootstrap_levels,
            account.bootstraps_on_path * account.bootstrap_levels,
            plan.level_budget,
            secret_name(p.secret_key),
            account.total_levels,
            p.mult_depth,
            p.mult_depth - plan.bootstrap_levels,
            plan.bootstraps
        ),
        None => println!(
            "\nlevels: the ops consume {} of a chain of {}; no bootstrapping",
            account.op_levels, p.mult_depth
        ),
    }
    ExitCode::SUCCESS
}

fn secret_name(s: crate::he::circuit::SecretKey) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}
