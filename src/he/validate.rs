//! Every check a reader must make (docs/circuit-format.md, "Errors"), so that
//! a hand-edited circuit is a message, never a panic or a silent wrong result.

use super::build::{bsgs, signed_diagonals};
use super::circuit::{LoadedCircuit, OpKind, TensorData};
use super::layout::{self, SlotLayout};
use super::params::{Chain, max_log_qp};
use crate::ir::levels;
use std::collections::BTreeSet;

fn f64s<'a>(
    lc: &'a LoadedCircuit,
    name: &str,
    len: usize,
    what: &str,
) -> Result<&'a [f64], String> {
    match lc.tensors.get(name) {
        Some(TensorData::F64 { data }) if data.len() == len => {
            if data.iter().all(|x| x.is_finite()) {
                Ok(data)
            } else {
                Err(format!("{what}: tensor `{name}` has non-finite values"))
            }
        }
        Some(TensorData::F64 { data }) => Err(format!(
            "{what}: tensor `{name}` has {} values, expected {len}",
            data.len()
        )),
        Some(_) => Err(format!("{what}: tensor `{name}` is not f64")),
        None => Err(format!("{what}: tensor `{name}` is missing")),
    }
}

fn i64s<'a>(lc: &'a LoadedCircuit, name: &str, what: &str) -> Result<&'a [i64], String> {
    match lc.tensors.get(name) {
        Some(TensorData::I64 { data }) => Ok(data),
        Some(_) => Err(format!("{what}: tensor `{name}` is not i64")),
        None => Err(format!("{what}: tensor `{name}` is missing")),
    }
}

pub fn validate(lc: &LoadedCircuit) -> Result<(), String> {
    let c = &lc.circuit;
    let p = &c.params;
    if p.scheme != "ckks" {
        return Err(format!(
            "params.scheme is `{}`, only `ckks` exists",
            p.scheme
        ));
    }
    if !p.ring_dim.is_power_of_two() || p.slots != p.ring_dim / 2 {
        return Err(format!(
            "params: ring_dim {} / slots {} inconsistent",
            p.ring_dim, p.slots
        ));
    }
    let chain = Chain {
        first_mod_bits: p.first_mod_bits,
        scale_bits: p.scale_bits,
        levels: p.mult_depth,
        digits: p.key_switch_digits,
    };
    if p.log_q != chain.log_q() || Some(p.log_qp) != chain.log_qp() {
        return Err(format!(
            "params: log_q {} / log_qp {} do not follow from the chain (expected {} / {:?})",
            p.log_q,
            p.log_qp,
            chain.log_q(),
            chain.log_qp()
        ));
    }
    if p.bootstrapping.is_none()
        && p.log_qp > max_log_qp(p.ring_dim, p.security).map_err(|e| e.to_string())?
    {
        return Err(format!(
            "params: log(Q*P) = {} exceeds the {}-bit security bound for N = {}",
            p.log_qp, p.security, p.ring_dim
        ));
    }
    if c.packing.layout != "blocked" {
        return Err(format!("packing.layout `{}` is unknown", c.packing.layout));
    }
    let dim = c.packing.dim;
    if !dim.is_power_of_two() || dim > p.slots {
        return Err(format!(
            "packing.dim {dim} must be a power of two <= slots {}",
            p.slots
        ));
    }
    if c.packing.samples_per_ciphertext != p.slots / dim {
        return Err(format!(
            "packing.samples_per_ciphertext must be slots / dim = {}",
            p.slots / dim
        ));
    }
    if c.input.shape != c.model.input_shape {
        return Err("input.shape differs from model.input_shape".into());
    }
    let numel: usize = c.input.shape.iter().product();
    for t in [&c.input.scale, &c.input.shift].into_iter().flatten() {
        f64s(lc, t, numel, "input")?;
    }
    let mut lens = vec![numel];
    let mut numels = vec![numel];
    let mut layouts = vec![SlotLayout::dense(&c.input.shape)];
    let mut level = vec![0u32];
    let mut rotations = BTreeSet::new();
    for (i, op) in c.ops.iter().enumerate() {
        let what = format!("op {} ({})", op.id, op.source.join(", "));
        if op.id != i + 1 {
            return Err(format!("{what}: id must be {}", i + 1));
        }
        if op.inputs.iter().any(|&j| j >= op.id) {
            return Err(format!("{what}: reads a value not yet produced"));
        }
        let arity = if matches!(op.kind, OpKind::Add { .. }) {
            2
        } else {
            1
        };
        if op.inputs.len() != arity {
            return Err(format!(
                "{what}: needs {arity} inputs, has {}",
                op.inputs.len()
            ));
        }
        let in_len = lens[op.inputs[0]];
        if op.in_shape.iter().product::<usize>() != numels[op.inputs[0]] {
            return Err(format!(
                "{what}: in_shape {:?} does not match its input ({} values)",
                op.in_shape, numels[op.inputs[0]]
            ));
        }
        match (&op.layout, op.out_shape.len()) {
            (Some(l), 3) if l.holds(&op.out_shape) => {}
            (None, n) if n != 3 => {}
            (Some(l), _) => {
                return Err(format!(
                    "{what}: layout {l:?} cannot hold out_shape {:?}",
                    op.out_shape
                ));
            }
            (None, _) => {
                return Err(format!("{what}: a [C, H, W] output needs a `layout`"));
            }
        }
        if !matches!(op.kind, OpKind::Linear { .. })
            && op.inputs.iter().any(|&j| layouts[j] != op.layout)
        {
            return Err(format!(
                "{what}: an elementwise op must keep its input's layout"
            ));
        }
        let out_len = layout::footprint(&op.out_shape, op.layout.as_ref());
        let (len_in, len_out, cost) = match &op.kind {
            OpKind::Linear {
                in_len: li,
                out_len: lo,
                rows,
                cols,
                values,
                bias,
                diagonals,
                baby_step,
                rotations: rots,
            } => {
                let r = i64s(lc, rows, &what)?;
                let cl = i64s(lc, cols, &what)?;
                let v = f64s(lc, values, r.len(), &what)?;
                f64s(lc, bias, *lo, &what)?;
                if cl.len() != r.len() || v.len() != r.len() {
                    return Err(format!("{what}: rows, cols and values differ in length"));
                }
                let mut prev: Option<(i64, i64)> = None;
                for (&row, &col) in r.iter().zip(cl) {
                    if row < 0 || row as usize >= *lo || col < 0 || col as usize >= *li {
                        return Err(format!(
                            "{what}: matrix entry ({row}, {col}) outside {lo} x {li}"
                        ));
                    }
                    if prev.is_some_and(|p| p >= (row, col)) {
                        return Err(format!(
                            "{what}: matrix entries not sorted by (row, col) or duplicated"
                        ));
                    }
                    prev = Some((row, col));
                }
                let diags = signed_diagonals(r.iter().copied().zip(cl.iter().copied()));
                if &diags != diagonals {
                    return Err(format!("{what}: `diagonals` do not match the matrix"));
                }
                let (g, rs) = bsgs(&diags, dim);
                if g != *baby_step || &rs != rots {
                    return Err(format!(
                        "{what}: `baby_step`/`rotations` do not follow the BSGS rule"
                    ));
                }
                rotations.extend(rs);
                (*li, *lo, levels::LINEAR)
            }
            OpKind::Affine { len, scale, shift } => {
                f64s(lc, scale, *len, &what)?;
                f64s(lc, shift, *len, &what)?;
                (*len, *len, levels::UNFOLDED_BATCHNORM)
            }
            OpKind::Poly {
                len,
                degree,
                coeffs,
                declared_range,
                ..
            } => {
                if *degree == 0 || coeffs.len() != *degree as usize + 1 {
                    return Err(format!(
                        "{what}: degree {degree} with {} coefficients",
                        coeffs.len()
                    ));
                }
                if coeffs.iter().any(|x| !x.is_finite())
                    || declared_range.is_nan()
                    || *declared_range <= 0.0
                {
                    return Err(format!(
                        "{what}: non-finite coefficient or non-positive range"
                    ));
                }
                (*len, *len, levels::poly(*degree))
            }
            OpKind::Add { len } => {
                if lens[op.inputs[1]] != *len {
                    return Err(format!(
                        "{what}: addends have {} and {} values",
                        in_len, lens[op.inputs[1]]
                    ));
                }
                (*len, *len, levels::FREE)
            }
        };
        if len_in != in_len || len_out != out_len {
            return Err(format!(
                "{what}: lengths {len_in} -> {len_out} do not match shapes ({in_len} -> {out_len})"
            ));
        }
        if out_len as u64 > dim {
            return Err(format!("{what}: {out_len} values exceed packing.dim {dim}"));
        }
        let level_in = op.inputs.iter().map(|&j| level[j]).max().unwrap_or(0);
        if op.level_in != level_in || op.level_out != level_in + cost {
            return Err(format!(
                "{what}: levels {} -> {} but the rules give {level_in} -> {}",
                op.level_in,
                op.level_out,
                level_in + cost
            ));
        }
        lens.push(out_len);
        numels.push(op.out_shape.iter().product());
        layouts.push(op.layout);
        level.push(level_in + cost);
    }
    if c.output >= lens.len() {
        return Err(format!("output value {} does not exist", c.output));
    }
    if lens[c.output] < c.model.classes {
        return Err(format!(
            "output has {} values, fewer than {} classes",
            lens[c.output], c.model.classes
        ));
    }
    if c.depth != level[c.output] {
        return Err(format!(
            "depth {} but the output is at level {}",
            c.depth, level[c.output]
        ));
    }
    if c.rotations != rotations.into_iter().collect::<Vec<_>>() {
        return Err("`rotations` is not the union of the ops' rotations".into());
    }
    if c.params.bootstrapping.is_none() && c.params.mult_depth < c.depth {
        return Err(format!(
            "params.mult_depth {} < depth {} without bootstrapping",
            c.params.mult_depth, c.depth
        ));
    }
    Ok(())
}
