//! Every check a reader must make (docs/circuit-format.md, "Errors"), so that
//! a hand-edited circuit is a message, never a panic or a silent wrong result.

use super::build::{bsgs, signed_diagonals, sum_rotations};
use super::circuit::{Circuit, CircuitOp, CkksParams, LoadedCircuit, OpKind, TensorData};
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
    check_params(&c.params)?;
    check_packing(c)?;
    if c.input.shape != c.model.input_shape {
        return Err("input.shape differs from model.input_shape".into());
    }
    let numel: usize = c.input.shape.iter().product();
    for t in [&c.input.scale, &c.input.shift].into_iter().flatten() {
        f64s(lc, t, numel, "input")?;
    }
    let mut values = Values {
        lens: vec![numel],
        numels: vec![numel],
        layouts: vec![SlotLayout::dense(&c.input.shape)],
        level: vec![0],
        rotations: BTreeSet::new(),
    };
    for (i, op) in c.ops.iter().enumerate() {
        values.check_op(lc, i, op)?;
    }
    check_output(c, &values)
}

fn check_params(p: &CkksParams) -> Result<(), String> {
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
    // Security 0: toy parameters for tests (OpenFHE HEStd_NotSet), no bound.
    if p.security != 0
        && p.log_qp > max_log_qp(p.ring_dim, p.security).map_err(|e| e.to_string())?
    {
        return Err(format!(
            "params: log(Q*P) = {} exceeds the {}-bit security bound for N = {}",
            p.log_qp, p.security, p.ring_dim
        ));
    }
    Ok(())
}

fn check_packing(c: &Circuit) -> Result<(), String> {
    if c.packing.layout != "blocked" {
        return Err(format!("packing.layout `{}` is unknown", c.packing.layout));
    }
    let (dim, slots) = (c.packing.dim, c.params.slots);
    if !dim.is_power_of_two() || dim > slots {
        return Err(format!(
            "packing.dim {dim} must be a power of two <= slots {slots}"
        ));
    }
    if c.packing.samples_per_ciphertext != slots / dim {
        return Err(format!(
            "packing.samples_per_ciphertext must be slots / dim = {}",
            slots / dim
        ));
    }
    Ok(())
}

/// What is known of every value produced so far (index = value id).
struct Values {
    lens: Vec<usize>,
    numels: Vec<usize>,
    layouts: Vec<Option<SlotLayout>>,
    level: Vec<u32>,
    rotations: BTreeSet<i64>,
}

/// An op's input and output lengths and the levels it consumes, as its kind states them.
struct KindShape {
    len_in: usize,
    len_out: usize,
    cost: u32,
}

impl Values {
    fn check_op(&mut self, lc: &LoadedCircuit, i: usize, op: &CircuitOp) -> Result<(), String> {
        let what = format!("op {} ({})", op.id, op.source.join(", "));
        self.check_wiring(i, op, &what)?;
        let in_len = self.lens[op.inputs[0]];
        let out_len = layout::footprint(&op.out_shape, op.layout.as_ref());
        let dim = lc.circuit.packing.dim;
        let shape = match &op.kind {
            OpKind::Linear { .. } => self.check_linear(lc, op, &what)?,
            OpKind::Affine { len, scale, shift } => {
                f64s(lc, scale, *len, &what)?;
                f64s(lc, shift, *len, &what)?;
                KindShape::elementwise(*len, levels::UNFOLDED_BATCHNORM)
            }
            OpKind::Poly { .. } => check_poly(&op.kind, &what)?,
            OpKind::Sum { .. } => self.check_sum(op, &what)?,
            OpKind::Bootstrap { len } => {
                if lc.circuit.params.bootstrapping.is_none() {
                    return Err(format!(
                        "{what}: a bootstrap op needs `params.bootstrapping`"
                    ));
                }
                KindShape::elementwise(*len, levels::FREE)
            }
            OpKind::Add { len } => {
                if self.lens[op.inputs[1]] != *len {
                    return Err(format!(
                        "{what}: addends have {} and {} values",
                        in_len, self.lens[op.inputs[1]]
                    ));
                }
                KindShape::elementwise(*len, levels::FREE)
            }
        };
        if shape.len_in != in_len || shape.len_out != out_len {
            return Err(format!(
                "{what}: lengths {} -> {} do not match shapes ({in_len} -> {out_len})",
                shape.len_in, shape.len_out
            ));
        }
        if out_len as u64 > dim {
            return Err(format!("{what}: {out_len} values exceed packing.dim {dim}"));
        }
        let level_in = op.inputs.iter().map(|&j| self.level[j]).max().unwrap_or(0);
        let p = &lc.circuit.params;
        // A bootstrap's output is at the level the bootstrap leaves consumed.
        let level_out = match (&op.kind, &p.bootstrapping) {
            (OpKind::Bootstrap { .. }, Some(plan)) => plan.bootstrap_levels,
            _ => level_in + shape.cost,
        };
        if let (OpKind::Bootstrap { .. }, true) = (&op.kind, level_in <= level_out) {
            // OpenFHE returns a ciphertext with at least as many levels left
            // as a bootstrap leaves unchanged: the plan would not hold.
            return Err(format!(
                "{what}: a bootstrap at level {level_in} does nothing (it leaves level {level_out}); bootstrap only values past that level"
            ));
        }
        if matches!(op.kind, OpKind::Bootstrap { .. }) && level_in >= p.mult_depth {
            return Err(format!(
                "{what}: a bootstrap needs one level left (OpenFHE rescales its input first), its input is at level {level_in} of {}",
                p.mult_depth
            ));
        }
        if level_out > p.mult_depth {
            return Err(format!(
                "{what}: reaches level {level_out}, beyond params.mult_depth {}",
                p.mult_depth
            ));
        }
        if op.level_in != level_in || op.level_out != level_out {
            return Err(format!(
                "{what}: levels {} -> {} but the rules give {level_in} -> {level_out}",
                op.level_in, op.level_out,
            ));
        }
        self.lens.push(out_len);
        self.numels.push(op.out_shape.iter().product());
        self.layouts.push(op.layout);
        self.level.push(level_out);
        Ok(())
    }

    /// Id, inputs (produced before, right number), input shape and layout.
    fn check_wiring(&self, i: usize, op: &CircuitOp, what: &str) -> Result<(), String> {
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
        if op.in_shape.iter().product::<usize>() != self.numels[op.inputs[0]] {
            return Err(format!(
                "{what}: in_shape {:?} does not match its input ({} values)",
                op.in_shape, self.numels[op.inputs[0]]
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
        if !matches!(op.kind, OpKind::Linear { .. } | OpKind::Sum { .. })
            && op.inputs.iter().any(|&j| self.layouts[j] != op.layout)
        {
            return Err(format!(
                "{what}: an elementwise op must keep its input's layout"
            ));
        }
        Ok(())
    }

    /// COO matrix in range and sorted; diagonals and BSGS rotations recomputed.
    fn check_linear(
        &mut self,
        lc: &LoadedCircuit,
        op: &CircuitOp,
        what: &str,
    ) -> Result<KindShape, String> {
        let OpKind::Linear {
            in_len,
            out_len,
            rows,
            cols,
            values,
            bias,
            diagonals,
            baby_step,
            rotations,
        } = &op.kind
        else {
            return Err(format!("{what}: not a linear op"));
        };
        let r = i64s(lc, rows, what)?;
        let cl = i64s(lc, cols, what)?;
        let v = f64s(lc, values, r.len(), what)?;
        f64s(lc, bias, *out_len, what)?;
        if cl.len() != r.len() || v.len() != r.len() {
            return Err(format!("{what}: rows, cols and values differ in length"));
        }
        let mut prev: Option<(i64, i64)> = None;
        for (&row, &col) in r.iter().zip(cl) {
            if row < 0 || row as usize >= *out_len || col < 0 || col as usize >= *in_len {
                return Err(format!(
                    "{what}: matrix entry ({row}, {col}) outside {out_len} x {in_len}"
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
        let (g, rs) = bsgs(&diags, lc.circuit.packing.dim);
        if g != *baby_step || &rs != rotations {
            return Err(format!(
                "{what}: `baby_step`/`rotations` do not follow the BSGS rule"
            ));
        }
        self.rotations.extend(rs);
        Ok(KindShape {
            len_in: *in_len,
            len_out: *out_len,
            cost: levels::LINEAR,
        })
    }
}

impl Values {
    /// Every read of an output slot stays inside the input; rotations recomputed.
    fn check_sum(&mut self, op: &CircuitOp, what: &str) -> Result<KindShape, String> {
        let OpKind::Sum {
            in_len,
            out_len,
            stride,
            count,
            rotations,
        } = &op.kind
        else {
            return Err(format!("{what}: not a sum op"));
        };
        if *stride == 0 || *count == 0 || *out_len == 0 {
            return Err(format!(
                "{what}: stride, count and out_len must be positive"
            ));
        }
        let last = (*out_len as u64 - 1) + (*count - 1) * *stride;
        if last >= *in_len as u64 {
            return Err(format!(
                "{what}: reads slot {last}, beyond its input's {in_len} values"
            ));
        }
        if op.layout.is_some() {
            return Err(format!("{what}: a sum's output is a vector (no layout)"));
        }
        let rs = sum_rotations(*stride as i64, *count as usize);
        if &rs != rotations {
            return Err(format!("{what}: `rotations` do not follow the sum rule"));
        }
        self.rotations.extend(rs);
        Ok(KindShape {
            len_in: *in_len,
            len_out: *out_len,
            cost: levels::FREE,
        })
    }
}

impl KindShape {
    fn elementwise(len: usize, cost: u32) -> KindShape {
        KindShape {
            len_in: len,
            len_out: len,
            cost,
        }
    }
}

fn check_poly(kind: &OpKind, what: &str) -> Result<KindShape, String> {
    let OpKind::Poly {
        len,
        degree,
        coeffs,
        declared_range,
        ..
    } = kind
    else {
        return Err(format!("{what}: not a poly op"));
    };
    if *degree == 0 || coeffs.len() != *degree as usize + 1 {
        return Err(format!(
            "{what}: degree {degree} with {} coefficients",
            coeffs.len()
        ));
    }
    if coeffs.iter().any(|x| !x.is_finite()) || declared_range.is_nan() || *declared_range <= 0.0 {
        return Err(format!(
            "{what}: non-finite coefficient or non-positive range"
        ));
    }
    Ok(KindShape::elementwise(*len, levels::poly(*degree)))
}

/// The output value, depth, rotation union and modulus depth.
fn check_output(c: &Circuit, values: &Values) -> Result<(), String> {
    if c.model.classes == 0 {
        return Err("model.classes is 0: the output needs at least one class".into());
    }
    if c.output >= values.lens.len() {
        return Err(format!("output value {} does not exist", c.output));
    }
    if values.lens[c.output] < c.model.classes {
        return Err(format!(
            "output has {} values, fewer than {} classes",
            values.lens[c.output], c.model.classes
        ));
    }
    if c.depth != values.level[c.output] {
        return Err(format!(
            "depth {} but the output is at level {}",
            c.depth, values.level[c.output]
        ));
    }
    if c.rotations != values.rotations.iter().copied().collect::<Vec<_>>() {
        return Err("`rotations` is not the union of the ops' rotations".into());
    }
    if c.params.mult_depth < c.depth {
        return Err(format!(
            "params.mult_depth {} < depth {}",
            c.params.mult_depth, c.depth
        ));
    }
    let boots = c
        .ops
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Bootstrap { .. }))
        .count();
    if let Some(plan) = &c.params.bootstrapping {
        if plan.bootstraps as usize != boots {
            return Err(format!(
                "params.bootstrapping.bootstraps is {} but the circuit has {boots} bootstrap ops",
                plan.bootstraps
            ));
        }
        if plan.slots != c.params.slots || plan.bootstrap_levels >= c.params.mult_depth {
            return Err(
                "params.bootstrapping: slots must equal params.slots and bootstrap_levels be below mult_depth"
                    .into(),
            );
        }
    }
    Ok(())
}
