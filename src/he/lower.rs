//! Inference lowering: the IR becomes a graph of linear / affine / poly / add
//! nodes with every foldable scaling folded (docs/he.md, "Folding").
//!
//! Linear IR ops that cost no level (BatchNorm, scale, pooling, flatten) are
//! carried forward as a *pending* affine map on the value. A dense/conv absorbs
//! the pending map on its input (forward folding: poly -> BN -> dense). An
//! activation, a residual join or the network output *materialises* the
//! pending map, multiplied by the activation's 1/B: backward into the producing
//! node when that node has no other reader (dense/conv rows, a poly's
//! coefficients for a uniform map, the client-side input transform for an
//! elementwise map, both addends of a residual join), and otherwise as an
//! explicit affine/linear node that costs a level. Convs are full matrices, so
//! folding a shift through a zero-padded conv is exact (the bias becomes per
//! output position).

use super::HeError;
use super::affine::{AffineMap, ParamSource, op_map};
use super::poly;
use crate::ir::{Model, Op, OpKind};

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Input,
    Linear(AffineMap),
    Affine {
        scale: Vec<f64>,
        shift: Vec<f64>,
    },
    /// Chebyshev coefficients on [-1, 1]; `range` is the declared B.
    Poly {
        coeffs: Vec<f64>,
        range: f64,
    },
    Add,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub inputs: Vec<usize>,
    /// Logical shape of this node's output.
    pub shape: Vec<usize>,
    pub source: Vec<String>,
    /// Nodes reading this one.
    readers: Vec<usize>,
    /// Read by residual branches still being lowered: readers not all known yet.
    shared: bool,
}

impl Node {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The lowered network; node 0 is the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Lowered {
    /// Client-side elementwise transform x * scale + shift before encryption.
    pub input_transform: Option<(Vec<f64>, Vec<f64>)>,
    pub nodes: Vec<Node>,
    pub output: usize,
}

impl Lowered {
    /// Plain f64 evaluation of the lowered graph (what the circuit computes).
    pub fn eval(&self, x: &[f64]) -> Vec<f64> {
        let mut values: Vec<Vec<f64>> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let v = match &node.kind {
                NodeKind::Input => match &self.input_transform {
                    Some((s, b)) => x
                        .iter()
                        .zip(s)
                        .zip(b)
                        .map(|((x, s), b)| x * s + b)
                        .collect(),
                    None => x.to_vec(),
                },
                NodeKind::Linear(m) => m.apply(&values[node.inputs[0]]),
                NodeKind::Affine { scale, shift } => values[node.inputs[0]]
                    .iter()
                    .zip(scale)
                    .zip(shift)
                    .map(|((x, s), b)| x * s + b)
                    .collect(),
                NodeKind::Poly { coeffs, .. } => values[node.inputs[0]]
                    .iter()
                    .map(|&t| poly::eval_chebyshev(coeffs, t))
                    .collect(),
                NodeKind::Add => values[node.inputs[0]]
                    .iter()
                    .zip(&values[node.inputs[1]])
                    .map(|(a, b)| a + b)
                    .collect(),
            };
            values.push(v);
        }
        values.swap_remove(self.output)
    }
}

/// `pending` applied to `node`'s output: one part of a value.
#[derive(Clone)]
struct Part {
    node: usize,
    /// Map from the node's output to this part (None: identity).
    pending: Option<AffineMap>,
    /// Logical shape of this part.
    shape: Vec<usize>,
    /// IR ops folded into `pending`, credited to whichever node absorbs it.
    sources: Vec<String>,
}

impl Part {
    fn of(node: usize, shape: Vec<usize>) -> Part {
        Part {
            node,
            pending: None,
            shape,
            sources: vec![],
        }
    }

    fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A value being lowered: one part, or after a `concat` its branches'
/// parts joined along the first axis (in row-major order, the parts'
/// elements one after another). Layers after a concat work on each part:
/// elementwise and per-channel maps part by part, a dense/conv as a sum of
/// one product per part (no level beyond its own). Only a residual join and
/// the network output place the parts into one vector ([`Lowerer::join`]).
#[derive(Clone)]
struct Value {
    parts: Vec<Part>,
    shape: Vec<usize>,
    /// The concat that made a value of several parts, for messages.
    concat: String,
}

impl Value {
    fn single(part: Part) -> Value {
        Value {
            shape: part.shape.clone(),
            parts: vec![part],
            concat: String::new(),
        }
    }
}

struct Lowerer<'a> {
    params: &'a dyn ParamSource,
    nodes: Vec<Node>,
    input_transform: Option<(Vec<f64>, Vec<f64>)>,
}

/// Lower `model`; `normalization` is the per-element input (scale, shift).
pub fn lower(
    model: &Model,
    params: &dyn ParamSource,
    normalization: Option<(Vec<f64>, Vec<f64>)>,
) -> Result<Lowered, HeError> {
    let shape = model.input.dims().to_vec();
    let mut l = Lowerer {
        params,
        nodes: vec![Node {
            kind: NodeKind::Input,
            inputs: vec![],
            shape: shape.clone(),
            source: vec!["input".into()],
            readers: vec![],
            shared: false,
        }],
        input_transform: None,
    };
    let input = Value::single(Part {
        node: 0,
        pending: normalization.map(|(s, b)| AffineMap::diagonal(&s, &b)),
        shape,
        sources: vec!["normalization".into()],
    });
    let out = l.seq(&model.net, input)?;
    let output = l.join(out, 1.0)?;
    Ok(Lowered {
        input_transform: l.input_transform,
        nodes: l.nodes,
        output,
    })
}

impl Lowerer<'_> {
    fn seq(&mut self, ops: &[Op], mut v: Value) -> Result<Value, HeError> {
        for op in ops {
            v = self.op(op, v)?;
        }
        Ok(v)
    }

    fn push(
        &mut self,
        kind: NodeKind,
        inputs: Vec<usize>,
        shape: Vec<usize>,
        source: Vec<String>,
    ) -> usize {
        let id = self.nodes.len();
        for &i in &inputs {
            self.nodes[i].readers.push(id);
        }
        self.nodes.push(Node {
            kind,
            inputs,
            shape,
            source,
            readers: vec![],
            shared: false,
        });
        id
    }

    fn op(&mut self, op: &Op, v: Value) -> Result<Value, HeError> {
        let out_shape = op.output.dims().to_vec();
        let weights = |message: String| HeError::Weights {
            op: op.name.clone(),
            message,
        };
        match &op.kind {
            OpKind::Poly(act) => {
                if !(act.range.is_finite() && act.range > 0.0) {
                    return Err(HeError::Range {
                        op: op.name.clone(),
                        message: format!("declared range B = {} must be positive", act.range),
                    });
                }
                let coeffs = self.params.param(op, "coeffs").map_err(weights)?;
                let cheb = poly::to_chebyshev(act.basis, &coeffs, act.range);
                // Elementwise: each part of the value on its own.
                let mut parts = Vec::with_capacity(v.parts.len());
                for part in v.parts {
                    let shape = part.shape.clone();
                    let x = self.materialize(part, 1.0 / act.range)?;
                    let node = self.push(
                        NodeKind::Poly {
                            coeffs: cheb.clone(),
                            range: act.range,
                        },
                        vec![x],
                        shape.clone(),
                        vec![op.name.clone()],
                    );
                    parts.push(Part::of(node, shape));
                }
                Ok(Value {
                    parts,
                    shape: out_shape,
                    concat: v.concat,
                })
            }
            OpKind::Residual { body, shortcut } => {
                let v = self.settle(v);
                let saved = self.share(&v);
                let a = self.seq(body, v.clone())?;
                let b = self.seq(shortcut, v)?;
                if a.shape.iter().product::<usize>() != b.shape.iter().product::<usize>() {
                    return Err(HeError::Model(format!(
                        "{}: residual branches give shapes {:?} and {:?}",
                        op.name, a.shape, b.shape
                    )));
                }
                let ia = self.join(a, 1.0)?;
                let ib = self.join(b, 1.0)?;
                // Every reader of the block input is known now.
                self.restore(saved);
                let node = self.push(
                    NodeKind::Add,
                    vec![ia, ib],
                    out_shape.clone(),
                    vec![op.name.clone()],
                );
                Ok(Value::single(Part::of(node, out_shape)))
            }
            OpKind::Concat { branches } => self.concat(op, branches, v),
            _ => {
                let map = op_map(op, self.params)
                    .map_err(weights)?
                    .ok_or_else(|| HeError::Model(format!("{}: not a linear op", op.name)))?;
                let in_len: usize = v.shape.iter().product();
                if map.in_len != in_len {
                    return Err(HeError::Model(format!(
                        "{}: expects {} inputs, the previous op gives {in_len}",
                        op.name, map.in_len
                    )));
                }
                if matches!(op.kind, OpKind::Dense { .. } | OpKind::Conv { .. }) {
                    Ok(self.linear(op, map, v, out_shape))
                } else {
                    self.pending(op, map, v, out_shape)
                }
            }
        }
    }

    /// A concat: each branch lowered from the same input; its value is their
    /// parts, kept apart (no node, no level).
    fn concat(&mut self, op: &Op, branches: &[Vec<Op>], v: Value) -> Result<Value, HeError> {
        let v = self.settle(v);
        let saved = self.share(&v);
        let mut parts = Vec::new();
        for branch in branches {
            parts.extend(self.seq(branch, v.clone())?.parts);
        }
        self.restore(saved);
        // A node that two parts read (`concat {} {}`) stays shared: folding
        // a map into it for one part would change the other.
        let mut seen = std::collections::HashSet::new();
        for p in &parts {
            if !seen.insert(p.node) {
                self.nodes[p.node].shared = true;
            }
        }
        let len: usize = parts.iter().map(Part::len).sum();
        let shape = op.output.dims().to_vec();
        if len != shape.iter().product::<usize>() {
            return Err(HeError::Model(format!(
                "{}: branches give {len} values, the concat {:?} holds {}",
                op.name,
                shape,
                shape.iter().product::<usize>()
            )));
        }
        Ok(Value {
            parts,
            shape,
            concat: op.name.clone(),
        })
    }

    /// A dense/conv: one linear node per part, reading that part's columns
    /// of the map (the bias with the first), summed.
    fn linear(&mut self, op: &Op, map: AffineMap, v: Value, shape: Vec<usize>) -> Value {
        let mut parts = v.parts;
        let node = if parts.len() == 1
            && let Some(part) = parts.pop()
        {
            self.linear_node(op, map, part, &shape)
        } else {
            let mut terms = Vec::with_capacity(parts.len());
            let mut offset = 0;
            for (i, part) in parts.into_iter().enumerate() {
                let len = part.len();
                let columns = map.columns(offset, len, i == 0);
                offset += len;
                terms.push(self.linear_node(op, columns, part, &shape));
            }
            self.sum(terms, &shape, &op.name)
        };
        Value::single(Part::of(node, shape))
    }

    /// A linear node applying `m` to `part` (its pending map composed in).
    fn linear_node(&mut self, op: &Op, m: AffineMap, part: Part, shape: &[usize]) -> usize {
        let m = match &part.pending {
            Some(p) => m.compose(p),
            None => m,
        };
        let mut sources = part.sources;
        sources.push(op.name.clone());
        self.push(
            NodeKind::Linear(m),
            vec![part.node],
            shape.to_vec(),
            sources,
        )
    }

    /// A map that costs no level (batchnorm, scale, pooling, flatten,
    /// dropout) joins each part's pending map: per part, the rows of that
    /// part's channels (these maps act channel by channel).
    fn pending(
        &mut self,
        op: &Op,
        map: AffineMap,
        mut v: Value,
        shape: Vec<usize>,
    ) -> Result<Value, HeError> {
        if v.parts.len() == 1
            && let Some(part) = v.parts.pop()
        {
            return Ok(Value::single(Self::then(op, map, part, shape)));
        }
        let not_per_channel = || {
            HeError::Model(format!(
                "{}: mixes the channels of the branches of `{}`",
                op.name, v.concat
            ))
        };
        let channels = v.shape.first().copied().unwrap_or(1).max(1);
        let out_len: usize = shape.iter().product();
        let per_channel = out_len / channels;
        if per_channel * channels != out_len {
            return Err(not_per_channel());
        }
        let (mut row, mut col) = (0, 0);
        let mut parts = Vec::with_capacity(v.parts.len());
        for part in v.parts {
            let c = part.shape.first().copied().unwrap_or(1);
            let (rows, cols) = (c * per_channel, part.len());
            let block = map
                .block(row, rows, col, cols)
                .ok_or_else(not_per_channel)?;
            (row, col) = (row + rows, col + cols);
            let part_shape = if shape.len() == v.shape.len() {
                std::iter::once(c)
                    .chain(shape[1..].iter().copied())
                    .collect()
            } else {
                vec![rows]
            };
            parts.push(Self::then(op, block, part, part_shape));
        }
        Ok(Value {
            parts,
            shape,
            concat: v.concat,
        })
    }

    /// `part` followed by `m` (still pending), now of `shape`.
    fn then(op: &Op, m: AffineMap, part: Part, shape: Vec<usize>) -> Part {
        let pending = match &part.pending {
            Some(p) => m.compose(p),
            None => m,
        };
        let mut sources = part.sources;
        sources.push(op.name.clone());
        Part {
            node: part.node,
            pending: Some(pending),
            shape,
            sources,
        }
    }

    /// Nodes `terms` added up (the first alone when there is one).
    fn sum(&mut self, terms: Vec<usize>, shape: &[usize], source: &str) -> usize {
        let mut terms = terms.into_iter();
        let first = terms.next().unwrap_or(0);
        terms.fold(first, |acc, t| {
            self.push(
                NodeKind::Add,
                vec![acc, t],
                shape.to_vec(),
                vec![source.to_string()],
            )
        })
    }

    /// Mark the nodes of `v`'s parts shared (read by branches still being
    /// lowered); returns their previous flags for [`Self::restore`].
    fn share(&mut self, v: &Value) -> Vec<(usize, bool)> {
        v.parts
            .iter()
            .map(|p| {
                let before = self.nodes[p.node].shared;
                self.nodes[p.node].shared = true;
                (p.node, before)
            })
            .collect()
    }

    fn restore(&mut self, saved: Vec<(usize, bool)>) {
        for (node, shared) in saved.into_iter().rev() {
            self.nodes[node].shared = shared;
        }
    }

    /// Fold each part's pending map backward if that is free; keep it
    /// pending otherwise.
    fn settle(&mut self, v: Value) -> Value {
        let parts = v
            .parts
            .into_iter()
            .map(|part| match &part.pending {
                Some(p) if self.can_fold(part.node, p, None) => {
                    let p = p.clone();
                    self.fold(part.node, &p, &part.sources, None, &part.shape);
                    Part {
                        pending: None,
                        sources: vec![],
                        ..part
                    }
                }
                _ => part,
            })
            .collect();
        Value { parts, ..v }
    }

    /// A node holding exactly `scale * v`, its parts placed one after
    /// another: each part's placement (an embedding into the whole vector)
    /// folds into its node when that node is linear, else it is a linear
    /// node of its own (one level); the placed parts are added.
    fn join(&mut self, v: Value, scale: f64) -> Result<usize, HeError> {
        let total: usize = v.shape.iter().product();
        let mut parts = v.parts;
        if parts.len() <= 1 {
            return match parts.pop() {
                Some(part) => self.materialize(part, scale),
                None => Err(HeError::Model("a value without parts".into())),
            };
        }
        let mut terms = Vec::with_capacity(parts.len());
        let mut offset = 0;
        for part in parts {
            let len = part.len();
            let place = AffineMap::embedding(offset, len, total).scaled(scale);
            offset += len;
            let pending = match &part.pending {
                Some(p) => place.compose(p),
                None => place,
            };
            let placed = Part {
                pending: Some(pending),
                shape: v.shape.clone(),
                ..part
            };
            terms.push(self.materialize(placed, 1.0)?);
        }
        Ok(self.sum(terms, &v.shape, &v.concat))
    }

    /// A node holding exactly `scale * part` (its pending map applied).
    fn materialize(&mut self, part: Part, scale: f64) -> Result<usize, HeError> {
        let len = part.len();
        let p = match part.pending {
            None if scale == 1.0 => return Ok(part.node),
            None => AffineMap::identity(len).scaled(scale),
            Some(p) => p.scaled(scale),
        };
        if p.is_identity() {
            return Ok(part.node);
        }
        if self.can_fold(part.node, &p, None) {
            self.fold(part.node, &p, &part.sources, None, &part.shape);
            return Ok(part.node);
        }
        let kind = match p.as_diagonal() {
            Some((scale, shift)) => NodeKind::Affine { scale, shift },
            None => NodeKind::Linear(p),
        };
        Ok(self.push(kind, vec![part.node], part.shape, part.sources))
    }

    /// Readers of `n` other than `reader` (the node folding into it, if any).
    fn other_readers(&self, n: usize, reader: Option<usize>) -> Vec<usize> {
        self.nodes[n]
            .readers
            .iter()
            .copied()
            .filter(|&r| Some(r) != reader)
            .collect()
    }

    fn can_fold(&self, n: usize, p: &AffineMap, reader: Option<usize>) -> bool {
        let node = &self.nodes[n];
        if node.shared {
            return false;
        }
        let others = self.other_readers(n, reader);
        if let NodeKind::Poly { .. } = node.kind {
            // Scale the coefficients and undo it in every other reader, which
            // must be a linear node (its matrix absorbs the inverse).
            return p.as_uniform().is_some_and(|(a, _)| a != 0.0)
                && others
                    .iter()
                    .all(|&r| matches!(self.nodes[r].kind, NodeKind::Linear(_)));
        }
        if !others.is_empty() {
            return false;
        }
        match &node.kind {
            NodeKind::Input | NodeKind::Affine { .. } => p.as_diagonal().is_some(),
            NodeKind::Linear(_) | NodeKind::Poly { .. } => true,
            NodeKind::Add => {
                self.can_fold(node.inputs[0], p, Some(n))
                    && self.can_fold(node.inputs[1], &p.linear_part(), Some(n))
            }
        }
    }

    /// Fold `p` into node `n`, whose output then has `shape` (a map that
    /// changes the length, pooling or a concat's placement, can only fold
    /// into linear nodes and sums of them).
    fn fold(
        &mut self,
        n: usize,
        p: &AffineMap,
        sources: &[String],
        reader: Option<usize>,
        shape: &[usize],
    ) {
        let inputs = self.nodes[n].inputs.clone();
        let others = self.other_readers(n, reader);
        let diag = p.as_diagonal();
        let node = &mut self.nodes[n];
        node.source.extend(sources.iter().cloned());
        if matches!(node.kind, NodeKind::Linear(_) | NodeKind::Add) {
            node.shape = shape.to_vec();
        }
        match &mut node.kind {
            NodeKind::Input => {
                let (a, b) = diag.unwrap_or_default();
                self.input_transform = Some(match self.input_transform.take() {
                    None => (a, b),
                    Some((s, t)) => compose_diag(&a, &b, &s, &t),
                });
            }
            NodeKind::Affine { scale, shift } => {
                let (a, b) = diag.unwrap_or_default();
                let (s, t) = compose_diag(&a, &b, scale, shift);
                *scale = s;
                *shift = t;
            }
            NodeKind::Linear(m) => *m = p.compose(m),
            NodeKind::Poly { coeffs, .. } => {
                let (a, b) = p.as_uniform().unwrap_or((1.0, 0.0));
                coeffs.iter_mut().for_each(|c| *c *= a);
                coeffs[0] += b;
                let len = self.nodes[n].len();
                let undo = AffineMap::identity(len).scaled(1.0 / a);
                let undo = AffineMap {
                    bias: vec![-b / a; len],
                    ..undo
                };
                for r in others {
                    if let NodeKind::Linear(m) = &mut self.nodes[r].kind {
                        *m = m.compose(&undo);
                    }
                }
            }
            NodeKind::Add => {
                self.fold(inputs[0], p, &[], Some(n), shape);
                self.fold(inputs[1], &p.linear_part(), &[], Some(n), shape);
            }
        }
    }
}

/// (a, b) after (s, t): x -> a (s x + t) + b.
fn compose_diag(a: &[f64], b: &[f64], s: &[f64], t: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let scale = a.iter().zip(s).map(|(a, s)| a * s).collect();
    let shift = a
        .iter()
        .zip(t)
        .zip(b)
        .map(|((a, t), b)| a * t + b)
        .collect();
    (scale, shift)
}
