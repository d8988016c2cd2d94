//! From the lowered graph to a [`Circuit`]: levels, ranges, packing,
//! rotations, CKKS parameters and the bootstrapping plan.

use super::HeError;
use super::affine::AffineMap;
use super::bootstrap::{self, Placement, node_cost};
use super::circuit::{
    BootstrapPlan, Circuit, CircuitOp, CkksParams, FORMAT, InputSpec, OpKind as COp, Packing,
    TensorData, TensorStore, VERSION,
};
use super::layout::{self, SlotLayout};
use super::lower::{Lowered, Node, NodeKind, lower};
use super::params::SecretKey;
use super::reference::{CheckpointParams, normalization_map};
use super::{params, poly};
use crate::ir::{Checkpoint, Model};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// Bounds of every raw input value (before normalisation).
    pub input_range: [f64; 2],
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            input_range: [0.0, 1.0],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Compiled {
    pub circuit: Circuit,
    pub tensors: BTreeMap<String, TensorData>,
    pub lowered: Lowered,
    /// Depth of the IR by `ir::levels` (what `pnnc info` reports).
    pub ir_depth: u32,
    pub warnings: Vec<String>,
}

/// Depth of the IR by the shared level rules (`check::depth`, which applies
/// `ir::levels`), from the ops' kinds and batchnorm flags rather than the
/// levels a model file states.
pub fn ir_depth(model: &Model) -> u32 {
    crate::check::depth::assign_levels(&mut model.net.clone(), 0)
}

/// Baby step g and rotation steps for the signed diagonals `diags`
/// (k = col - row, docs/circuit-format.md): k = giant + baby with
/// baby = k mod g in [0, g), over every g in 1..=dim (a convolution's best g
/// is often its grid's area, not a power of two); g minimises the number of
/// distinct rotations, smallest on ties.
pub fn bsgs(diags: &[i64], dim: u64) -> (u64, Vec<i64>) {
    let (Some(&lo), Some(&hi)) = (diags.iter().min(), diags.iter().max()) else {
        return (1, Vec::new());
    };
    // Beyond the diagonals' span every k has its own baby step: no better.
    let span = (hi - lo) as u64 + 1;
    // Distinct nonzero baby and giant steps for g, counted with stamps
    // (O(#diagonals) per g; all g up to the span are tried).
    let mut baby_seen = vec![0u64; span.min(dim).max(1) as usize];
    let mut giant_seen = vec![0u64; span as usize + 2];
    let mut count = |g: i64, stamp: u64| {
        let mut n = 0;
        for &k in diags {
            let b = k.rem_euclid(g);
            let gi = k - b;
            if b != 0 && baby_seen[b as usize] != stamp {
                baby_seen[b as usize] = stamp;
                n += 1;
            }
            let slot = (gi.div_euclid(g) - lo.div_euclid(g)) as usize;
            if gi != 0 && giant_seen[slot] != stamp {
                giant_seen[slot] = stamp;
                n += 1;
            }
        }
        n
    };
    let mut best = (usize::MAX, 1u64);
    for g in 1..=dim.min(span).max(1) {
        let cost = count(g as i64, g);
        if cost < best.0 {
            best = (cost, g);
        }
    }
    let g = best.1 as i64;
    let rotations: BTreeSet<i64> = diags
        .iter()
        .flat_map(|&k| {
            let b = k.rem_euclid(g);
            [b, k - b]
        })
        .filter(|&s| s != 0)
        .collect();
    (g as u64, rotations.into_iter().collect())
}

/// Signed generalized diagonals k = col - row of a sparse matrix, sorted.
pub fn signed_diagonals(entries: impl Iterator<Item = (i64, i64)>) -> Vec<i64> {
    let set: BTreeSet<i64> = entries.map(|(r, c)| c - r).collect();
    set.into_iter().collect()
}

pub fn compile(model: &Model, ck: &Checkpoint, opts: &CompileOptions) -> Result<Compiled, HeError> {
    compile_with(model, ck, opts, &Tuning::default())
}

/// Parameter limits for tests and experiments; the default is the real thing
/// (the model's security, rings up to 2^16).
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// Overrides the model's security; 0 = toy parameters, NOT secure (tests).
    pub security: Option<u32>,
    /// Largest ring dimension (the bootstrapping ring).
    pub max_ring_dim: Option<u64>,
    /// Most levels a chain may have (forces bootstrapping on small models).
    pub max_levels: Option<u32>,
}

pub fn compile_with(
    model: &Model,
    ck: &Checkpoint,
    opts: &CompileOptions,
    tuning: &Tuning,
) -> Result<Compiled, HeError> {
    let [lo, hi] = opts.input_range;
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(HeError::Data(format!(
            "input range [{lo}, {hi}] is not an interval"
        )));
    }
    let source = CheckpointParams(ck);
    let lowered = lower(model, &source, normalization_map(model, ck)?)?;
    let plain_depth = node_levels(&lowered.nodes)[lowered.output];
    let ir_depth = ir_depth(model);
    let mut warnings = Vec::new();
    if plain_depth != ir_depth {
        warnings.push(format!(
            "circuit depth {plain_depth} differs from the model's depth {ir_depth} by the level rules (a BatchNorm or pooling could not fold)"
        ));
    }
    let bounds = interval_bounds(&lowered, (lo, hi))?;
    let packed = Packed::new(&lowered.nodes);
    let dim = packed.dim;
    let (params, placement) = choose_params(model.he.security, plain_depth, dim, &lowered, tuning)?;
    let mut emitter = Emitter::new(&packed);
    let input = emitter.input_spec(model, &lowered, [lo, hi]);
    for (id, n) in lowered.nodes.iter().enumerate().skip(1) {
        if placement.refresh.contains(&id) {
            emitter.bootstrap(n.inputs[0], &lowered.nodes, &placement, &params);
        }
        emitter.node(id, n, &lowered.nodes, &placement, bounds[id])?;
    }
    let Emitter {
        tensors,
        rotations,
        ops,
        value_of,
        ..
    } = emitter;
    check_finite(&tensors)?;
    let depth = placement.level_out[lowered.output];
    let samples_per_ciphertext = params.slots / dim;
    let circuit = Circuit {
        format: FORMAT.into(),
        version: VERSION,
        model: super::circuit::ModelInfo {
            name: model.name.clone(),
            source_hash: model.source_hash.clone(),
            input_shape: model.input.dims().to_vec(),
            classes: model.classes,
            class_names: model.class_names.clone(),
            data: model.train.data.clone(),
            normalization: ck.normalization.clone(),
        },
        params,
        packing: Packing {
            layout: "blocked".into(),
            dim,
            samples_per_ciphertext,
        },
        input,
        ops,
        output: value_of[lowered.output],
        depth,
        rotations: rotations.into_iter().collect(),
        tensors: TensorStore::Inline {
            tensors: BTreeMap::new(),
        },
    };
    Ok(Compiled {
        circuit,
        tensors,
        lowered,
        ir_depth,
        warnings,
    })
}

/// Levels consumed after each node without bootstrapping (the input is fresh: 0).
fn node_levels(nodes: &[Node]) -> Vec<u32> {
    let mut level = vec![0u32; nodes.len()];
    for (i, n) in nodes.iter().enumerate().skip(1) {
        let level_in = n.inputs.iter().map(|&j| level[j]).max().unwrap_or(0);
        level[i] = level_in + node_cost(&n.kind);
    }
    level
}

type Interval = (f64, f64);

/// Interval analysis, per element, from the raw input range: returns for
/// every node the largest |x / B| its poly reads (0 for other nodes). An
/// activation whose whole interval lies outside [-1, 1] for some element is
/// an error (every input escapes).
fn interval_bounds(lowered: &Lowered, input: Interval) -> Result<Vec<f64>, HeError> {
    let nodes = &lowered.nodes;
    let mut ranges: Vec<Vec<Interval>> = Vec::with_capacity(nodes.len());
    let mut bounds = vec![0.0f64; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let x = || &ranges[n.inputs[0]];
        let r = match &n.kind {
            NodeKind::Input => input_intervals(lowered, input, n.len()),
            NodeKind::Linear(m) => linear_intervals(m, x()),
            NodeKind::Affine { scale, shift } => x()
                .iter()
                .zip(scale.iter().zip(shift))
                .map(|(&r, (&s, &b))| affine_iv(s, b, r))
                .collect(),
            NodeKind::Poly { coeffs, range } => {
                bounds[i] = poly_input_bound(n, *range, x(), input)?;
                x().iter()
                    .map(|&(l, h)| poly::chebyshev_interval(coeffs, l, h))
                    .collect()
            }
            NodeKind::Add => ranges[n.inputs[0]]
                .iter()
                .zip(&ranges[n.inputs[1]])
                .map(|(a, b)| (a.0 + b.0, a.1 + b.1))
                .collect(),
        };
        ranges.push(r);
    }
    Ok(bounds)
}

fn input_intervals(lowered: &Lowered, (lo, hi): Interval, len: usize) -> Vec<Interval> {
    match &lowered.input_transform {
        Some((s, b)) => s
            .iter()
            .zip(b)
            .map(|(s, b)| affine_iv(*s, *b, (lo, hi)))
            .collect(),
        None => vec![(lo, hi); len],
    }
}

/// Sign-split sums: each row's interval from its inputs'.
fn linear_intervals(m: &AffineMap, x: &[Interval]) -> Vec<Interval> {
    m.rows
        .iter()
        .zip(&m.bias)
        .map(|(row, b)| {
            row.iter().fold((*b, *b), |(l, h), &(c, v)| {
                let (xl, xh) = x[c as usize];
                if v >= 0.0 {
                    (l + v * xl, h + v * xh)
                } else {
                    (l + v * xh, h + v * xl)
                }
            })
        })
        .collect()
}

/// Largest |x| over the poly's (already 1/B-scaled) input intervals.
fn poly_input_bound(
    n: &Node,
    range: f64,
    x: &[Interval],
    (lo, hi): Interval,
) -> Result<f64, HeError> {
    let mut bound = 0.0f64;
    for &(l, h) in x {
        bound = bound.max(l.abs()).max(h.abs());
        if l > 1.0 || h < -1.0 {
            let name = n.source.first().cloned().unwrap_or_default();
            return Err(HeError::Range {
                op: name,
                message: format!(
                    "declared range B = {range} is impossible: for every input in [{lo}, {hi}] some activation input lies in [{}, {}], entirely outside [-B, B]\n  help: retrain with a boundary loss, or declare a range that covers it",
                    l * range,
                    h * range
                ),
            });
        }
    }
    Ok(bound)
}

/// Slot layout, slot map and footprint of every node, and the packing dim.
struct Packed {
    layouts: Vec<Option<SlotLayout>>,
    slots_of: Vec<Vec<usize>>,
    lens: Vec<usize>,
    dim: u64,
}

impl Packed {
    fn new(nodes: &[Node]) -> Packed {
        let layouts = node_layouts(nodes);
        let slots_of = nodes
            .iter()
            .zip(&layouts)
            .map(|(n, l)| layout::slot_map(&n.shape, l.as_ref()))
            .collect();
        let lens: Vec<usize> = nodes
            .iter()
            .zip(&layouts)
            .map(|(n, l)| layout::footprint(&n.shape, l.as_ref()))
            .collect();
        let max_len = lens.iter().copied().max().unwrap_or(1).max(1);
        Packed {
            layouts,
            slots_of,
            lens,
            dim: (max_len as u64).next_power_of_two(),
        }
    }
}

/// Emits circuit ops, collecting their tensors and rotations. A lowered node
/// becomes one op, or two for a linear node evaluated as a fold (a linear op
/// into a longer vector, then a `sum`): `value_of` maps nodes to values.
struct Emitter<'a> {
    packed: &'a Packed,
    tensors: BTreeMap<String, TensorData>,
    rotations: BTreeSet<i64>,
    ops: Vec<CircuitOp>,
    value_of: Vec<usize>,
}

fn f64t(v: Vec<f64>) -> TensorData {
    TensorData::F64 { data: v }
}

/// A linear op's matrix in slot coordinates, (row, col, value) sorted by (row, col).
type SlotMatrix = Vec<(i64, i64, f64)>;

/// Relative cost of a rotation (key switch) against one diagonal (encode,
/// plaintext product, addition), measured on OpenFHE 1.6 at N = 2^15
/// (docs/performance.md, "Encrypted linear layers").
const ROTATION_COST: usize = 8;

impl Emitter<'_> {
    fn new(packed: &Packed) -> Emitter<'_> {
        Emitter {
            packed,
            tensors: BTreeMap::new(),
            rotations: BTreeSet::new(),
            ops: Vec::new(),
            value_of: vec![0],
        }
    }

    fn input_spec(&mut self, model: &Model, lowered: &Lowered, range: [f64; 2]) -> InputSpec {
        let transform = lowered.input_transform.as_ref();
        if let Some((s, b)) = transform {
            self.tensors.insert("input.scale".into(), f64t(s.clone()));
            self.tensors.insert("input.shift".into(), f64t(b.clone()));
        }
        InputSpec {
            shape: model.input.dims().to_vec(),
            scale: transform.map(|_| "input.scale".to_string()),
            shift: transform.map(|_| "input.shift".to_string()),
            range,
        }
    }

    fn next_id(&self) -> usize {
        self.ops.len() + 1
    }

    fn push(&mut self, op: CircuitOp) {
        self.ops.push(op);
    }

    /// The op (or ops) of node `node`.
    fn node(
        &mut self,
        node: usize,
        n: &Node,
        nodes: &[Node],
        placement: &Placement,
        bound: f64,
    ) -> Result<(), HeError> {
        let inputs: Vec<usize> = n.inputs.iter().map(|&j| self.value_of[j]).collect();
        let base = CircuitOp {
            id: self.next_id(),
            inputs,
            source: n.source.clone(),
            in_shape: nodes[n.inputs[0]].shape.clone(),
            out_shape: n.shape.clone(),
            layout: self.packed.layouts[node],
            level_in: placement.level_in[node],
            level_out: placement.level_out[node],
            kind: COp::Add { len: 0 },
        };
        let kind = match &n.kind {
            NodeKind::Input => return Err(HeError::Model("input node inside the network".into())),
            NodeKind::Linear(m) => {
                let matrix = self.slot_matrix(node, n.inputs[0], m);
                if let Some(fold) = self.fold_plan(node, n.inputs[0], &matrix) {
                    self.fold(base, node, n.inputs[0], m, &matrix, fold);
                    self.value_of.push(self.ops.len());
                    return Ok(());
                }
                self.linear(base.id, n.inputs[0], node, &m.bias, matrix)
            }
            NodeKind::Affine { scale, shift } => self.affine(base.id, node, scale, shift),
            NodeKind::Poly { coeffs, range } => COp::Poly {
                len: self.packed.lens[node],
                degree: coeffs.len().saturating_sub(1) as u32,
                coeffs: coeffs.clone(),
                declared_range: *range,
                interval_bound: Some(bound).filter(|b| b.is_finite()),
            },
            NodeKind::Add => self.add(node, n)?,
        };
        self.push(CircuitOp { kind, ..base });
        self.value_of.push(self.ops.len());
        Ok(())
    }

    /// A bootstrap of node `input`'s value; later readers read the refreshed one.
    fn bootstrap(
        &mut self,
        input: usize,
        nodes: &[Node],
        placement: &Placement,
        params: &CkksParams,
    ) {
        let boot_levels = params
            .bootstrapping
            .as_ref()
            .map_or(0, |b| b.bootstrap_levels);
        let value = self.value_of[input];
        let shape = nodes[input].shape.clone();
        self.push(CircuitOp {
            id: self.next_id(),
            inputs: vec![value],
            source: vec![format!("bootstrap({})", nodes[input].source.join(", "))],
            in_shape: shape.clone(),
            out_shape: shape,
            layout: self.packed.layouts[input],
            level_in: placement.level_before[input],
            level_out: boot_levels,
            kind: COp::Bootstrap {
                len: self.packed.lens[input],
            },
        });
        self.value_of[input] = self.ops.len();
    }

    fn slot_matrix(&self, node: usize, input: usize, m: &AffineMap) -> SlotMatrix {
        let p = self.packed;
        let (out_slots, in_slots) = (&p.slots_of[node], &p.slots_of[input]);
        let mut entries: SlotMatrix = Vec::with_capacity(m.nnz());
        for (r, row) in m.rows.iter().enumerate() {
            for &(c, v) in row {
                entries.push((out_slots[r] as i64, in_slots[c as usize] as i64, v));
            }
        }
        // Layouts permute rows and columns: restore (row, col) order.
        entries.sort_by_key(|&(r, c, _)| (r, c));
        entries
    }

    /// The matrix as COO tensors of value `id`, its diagonals and BSGS rotations.
    fn linear(
        &mut self,
        id: usize,
        input: usize,
        node: usize,
        bias: &[f64],
        entries: SlotMatrix,
    ) -> COp {
        let p = self.packed;
        let bias = scatter(bias, &p.slots_of[node], p.lens[node]);
        self.linear_op(id, p.lens[input], bias, entries)
    }

    fn linear_op(&mut self, id: usize, in_len: usize, bias: Vec<f64>, entries: SlotMatrix) -> COp {
        let rows: Vec<i64> = entries.iter().map(|e| e.0).collect();
        let cols: Vec<i64> = entries.iter().map(|e| e.1).collect();
        let vals: Vec<f64> = entries.iter().map(|e| e.2).collect();
        let diagonals = signed_diagonals(rows.iter().copied().zip(cols.iter().copied()));
        let (baby_step, rotations) = bsgs(&diagonals, self.packed.dim);
        self.rotations.extend(rotations.iter().copied());
        let t = |s: &str| format!("v{id}.{s}");
        let out_len = bias.len();
        self.tensors
            .insert(t("rows"), TensorData::I64 { data: rows });
        self.tensors
            .insert(t("cols"), TensorData::I64 { data: cols });
        self.tensors.insert(t("values"), f64t(vals));
        self.tensors.insert(t("bias"), f64t(bias));
        COp::Linear {
            in_len,
            out_len,
            rows: t("rows"),
            cols: t("cols"),
            values: t("values"),
            bias: t("bias"),
            diagonals,
            baby_step,
            rotations,
        }
    }

    /// Whether a vector-output linear op is cheaper as a fold: output j
    /// collects its entries in column c at row j + (c div m) m of a longer
    /// vector t (m = out_len), so every diagonal k = (c mod m) - j lies in
    /// (-m, m); then y[j] = sum_q t[j + q m] by rotations (a `sum` op).
    /// Returns the number of terms q.
    fn fold_plan(&self, node: usize, input: usize, matrix: &SlotMatrix) -> Option<usize> {
        let p = self.packed;
        let (m, in_len) = (p.lens[node], p.lens[input]);
        if p.layouts[node].is_some() || m == 0 || 2 * m > in_len {
            return None;
        }
        let count = in_len.div_ceil(m);
        if (count * m) as u64 > p.dim {
            return None;
        }
        let cost = |entries: &mut dyn Iterator<Item = (i64, i64)>, extra: usize| {
            let d = signed_diagonals(entries);
            d.len() + ROTATION_COST * (bsgs(&d, p.dim).1.len() + extra)
        };
        let plain = cost(&mut matrix.iter().map(|e| (e.0, e.1)), 0);
        let folded = cost(
            &mut matrix.iter().map(|&(r, c, _)| fold_entry(r, c, m as i64)),
            sum_rotations(m as i64, count).len(),
        );
        (folded < plain).then_some(count)
    }

    fn fold(
        &mut self,
        base: CircuitOp,
        node: usize,
        input: usize,
        m: &AffineMap,
        matrix: &SlotMatrix,
        count: usize,
    ) {
        let p = self.packed;
        let stride = p.lens[node];
        let long = count * stride;
        let mut entries: SlotMatrix = matrix
            .iter()
            .map(|&(r, c, v)| {
                let (row, col) = fold_entry(r, c, stride as i64);
                (row, col, v)
            })
            .collect();
        entries.sort_by_key(|&(r, c, _)| (r, c));
        let mut bias = scatter(&m.bias, &p.slots_of[node], stride);
        bias.resize(long, 0.0);
        let linear_id = base.id;
        let kind = self.linear_op(linear_id, p.lens[input], bias, entries);
        let (level_out, out_shape) = (base.level_out, base.out_shape.clone());
        self.push(CircuitOp {
            out_shape: vec![long],
            layout: None,
            kind,
            ..base.clone()
        });
        let rotations = sum_rotations(stride as i64, count);
        self.rotations.extend(rotations.iter().copied());
        self.push(CircuitOp {
            id: linear_id + 1,
            inputs: vec![linear_id],
            in_shape: vec![long],
            out_shape,
            level_in: level_out,
            level_out,
            kind: COp::Sum {
                in_len: long,
                out_len: stride,
                stride: stride as u64,
                count: count as u64,
                rotations,
            },
            ..base
        });
    }

    fn affine(&mut self, id: usize, node: usize, scale: &[f64], shift: &[f64]) -> COp {
        let (slots, len) = (&self.packed.slots_of[node], self.packed.lens[node]);
        let t = |s: &str| format!("v{id}.{s}");
        self.tensors
            .insert(t("scale"), f64t(scatter(scale, slots, len)));
        self.tensors
            .insert(t("shift"), f64t(scatter(shift, slots, len)));
        COp::Affine {
            len,
            scale: t("scale"),
            shift: t("shift"),
        }
    }

    fn add(&self, node: usize, n: &Node) -> Result<COp, HeError> {
        let layouts = &self.packed.layouts;
        if layouts[n.inputs[0]] != layouts[n.inputs[1]] {
            return Err(HeError::Model(format!(
                "the addends of `{}` are packed differently",
                n.source.join(", ")
            )));
        }
        Ok(COp::Add {
            len: self.packed.lens[node],
        })
    }
}

/// Row and column of entry (r, c) of a matrix with `m` rows in its fold.
fn fold_entry(r: i64, c: i64, m: i64) -> (i64, i64) {
    (r + c.div_euclid(m) * m, c)
}

/// Rotation steps of a `sum` op (docs/circuit-format.md): with h = floor(log2
/// count), doublings by 2^i stride (i < h), then one rotation per lower set
/// bit of count by the offset reached so far (highest bits first).
pub fn sum_rotations(stride: i64, count: usize) -> Vec<i64> {
    let mut steps = BTreeSet::new();
    if count == 0 {
        return Vec::new();
    }
    let h = usize::BITS - 1 - count.leading_zeros();
    for i in 0..h {
        steps.insert((1i64 << i) * stride);
    }
    let mut offset = 1i64 << h;
    for i in (0..h).rev() {
        if count & (1 << i) != 0 {
            steps.insert(offset * stride);
            offset += 1 << i;
        }
    }
    steps.into_iter().collect()
}

/// Folding can divide by a zero variance: name the tensor it broke.
fn check_finite(tensors: &BTreeMap<String, TensorData>) -> Result<(), HeError> {
    for (name, t) in tensors {
        if let TensorData::F64 { data } = t
            && data.iter().any(|x| !x.is_finite())
        {
            return Err(HeError::Weights {
                op: name.clone(),
                message: "folding produced a non-finite value (a BatchNorm variance + eps of 0?)"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Layout of every node's value: the input dense, a linear op's output by
/// [`layout::after_linear`], elementwise ops and joins keep their input's.
/// The addends of a sum must share a layout: a linear addend that nothing
/// else reads (a concat's parts summed by the layer after it, a branch's last
/// conv) writes its rows in the other addend's layout, which costs nothing
/// (its matrix places them).
fn node_layouts(nodes: &[Node]) -> Vec<Option<SlotLayout>> {
    let mut readers = vec![0usize; nodes.len()];
    for n in nodes {
        for &i in &n.inputs {
            readers[i] += 1;
        }
    }
    let free = |i: usize| matches!(nodes[i].kind, NodeKind::Linear(_)) && readers[i] == 1;
    let mut out: Vec<Option<SlotLayout>> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let l = match (&n.kind, n.inputs.as_slice()) {
            (NodeKind::Linear(_), [i, ..]) => layout::after_linear(out[*i].as_ref(), &n.shape),
            (NodeKind::Add, &[a, b]) if out[a] != out[b] => {
                if free(b) {
                    out[b] = out[a];
                } else if free(a) {
                    out[a] = out[b];
                }
                out[a]
            }
            (NodeKind::Input, _) | (_, []) => SlotLayout::dense(&n.shape),
            (_, [i, ..]) => out[*i],
        };
        out.push(l);
    }
    out
}

/// Logical values placed at their slots; gaps are 0.
fn scatter(values: &[f64], slots: &[usize], len: usize) -> Vec<f64> {
    let mut out = vec![0.0; len];
    for (&v, &s) in values.iter().zip(slots) {
        out[s] = v;
    }
    out
}

fn affine_iv(s: f64, b: f64, (l, h): (f64, f64)) -> (f64, f64) {
    let (a, c) = (s * l + b, s * h + b);
    (a.min(c), a.max(c))
}

fn choose_params(
    security: u32,
    plain_depth: u32,
    dim: u64,
    lowered: &Lowered,
    tuning: &Tuning,
) -> Result<(CkksParams, Placement), HeError> {
    let security = tuning.security.unwrap_or(security);
    let max_ring = tuning.max_ring_dim.unwrap_or(params::MAX_RING_DIM);
    if dim > max_ring / 2 {
        return Err(HeError::Params(format!(
            "a tensor of {dim} values does not fit one ciphertext at N = {max_ring} (the flat packing needs a smaller model)"
        )));
    }
    let max_levels = tuning.max_levels.unwrap_or(u32::MAX);
    let plain = if plain_depth <= max_levels {
        params::ring_dim_for(plain_depth, dim, security)?.filter(|(n, _)| *n <= max_ring)
    } else {
        None
    };
    let (ring_dim, chain, placement, bootstrapping, secret) = match plain {
        Some((n, chain)) => {
            let placement = bootstrap::place(&lowered.nodes, lowered.output, chain.levels, None)?;
            (n, chain, placement, None, SecretKey::UniformTernary)
        }
        None => {
            let setting = bootstrap::DEFAULT_SETTING;
            let plan = bootstrap::choose(
                &lowered.nodes,
                lowered.output,
                max_ring,
                security,
                max_levels.min(BOOT_MAX_LEVELS),
                setting,
            )?;
            let boot = BootstrapPlan {
                bootstrap_levels: plan.boot_levels,
                level_budget: setting.level_budget,
                slots: max_ring / 2,
                bootstraps: plan.placement.refresh.len() as u32,
            };
            (
                max_ring,
                plan.chain,
                plan.placement,
                Some(boot),
                setting.secret,
            )
        }
    };
    let params = CkksParams {
        scheme: "ckks".into(),
        security,
        ring_dim,
        slots: ring_dim / 2,
        first_mod_bits: chain.first_mod_bits,
        scale_bits: chain.scale_bits,
        mult_depth: chain.levels,
        key_switch_digits: chain.digits,
        log_q: chain.log_q(),
        log_qp: chain.log_qp().unwrap_or(0),
        max_log_q: params::max_log_qp(ring_dim, security)?.min(MAX_LOG_Q_REPORTED),
        secret_key: secret,
        bootstrapping,
    };
    Ok((params, placement))
}

/// Chains longer than this are never tried for bootstrapping.
const BOOT_MAX_LEVELS: u32 = 64;
/// `max_log_q` of toy (security 0) circuits: no bound, written as this.
const MAX_LOG_Q_REPORTED: u32 = 1 << 20;
