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

#[derive(Clone)]
struct Value {
    node: usize,
    /// Map from the node's output to this value (None: identity).
    pending: Option<AffineMap>,
    shape: Vec<usize>,
    /// IR ops folded into `pending`, credited to whichever node absorbs it.
    sources: Vec<String>,
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
    let input = Value {
        node: 0,
        pending: normalization.map(|(s, b)| AffineMap::diagonal(&s, &b)),
        shape,
        sources: vec!["normalization".into()],
    };
    let out = l.seq(&model.net, input)?;
    let output = l.materialize(out, 1.0)?;
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
                let x = self.materialize(v, 1.0 / act.range)?;
                let node = self.push(
                    NodeKind::Poly {
                        coeffs: cheb,
                        range: act.range,
                    },
                    vec![x],
                    out_shape.clone(),
                    vec![op.name.clone()],
                );
                Ok(Value {
                    node,
                    pending: None,
                    shape: out_shape,
                    sources: vec![],
                })
            }
            OpKind::Residual { body, shortcut } => {
                let v = self.settle(v);
                self.nodes[v.node].shared = true;
                let a = self.seq(body, v.clone())?;
                let b = self.seq(shortcut, v.clone())?;
                // Every reader of the block input is known now.
                self.nodes[v.node].shared = false;
                if a.shape.iter().product::<usize>() != b.shape.iter().product::<usize>() {
                    return Err(HeError::Model(format!(
                        "{}: residual branches give shapes {:?} and {:?}",
                        op.name, a.shape, b.shape
                    )));
                }
                let ia = self.materialize(a, 1.0)?;
                let ib = self.materialize(b, 1.0)?;
                let node = self.push(
                    NodeKind::Add,
                    vec![ia, ib],
                    out_shape.clone(),
                    vec![op.name.clone()],
                );
                Ok(Value {
                    node,
                    pending: None,
                    shape: out_shape,
                    sources: vec![],
                })
            }
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
                let map = match &v.pending {
                    Some(p) => map.compose(p),
                    None => map,
                };
                let mut sources = v.sources;
                sources.push(op.name.clone());
                if matches!(op.kind, OpKind::Dense { .. } | OpKind::Conv { .. }) {
                    let node = self.push(
                        NodeKind::Linear(map),
                        vec![v.node],
                        out_shape.clone(),
                        sources,
                    );
                    Ok(Value {
                        node,
                        pending: None,
                        shape: out_shape,
                        sources: vec![],
                    })
                } else {
                    Ok(Value {
                        node: v.node,
                        pending: Some(map),
                        shape: out_shape,
                        sources,
                    })
                }
            }
        }
    }

    /// Fold a pending map backward if that is free; keep it pending otherwise.
    fn settle(&mut self, v: Value) -> Value {
        match &v.pending {
            Some(p) if self.can_fold(v.node, p, None) => {
                let p = p.clone();
                self.fold(v.node, &p, &v.sources, None);
                Value {
                    pending: None,
                    sources: vec![],
                    ..v
                }
            }
            _ => v,
        }
    }

    /// A node holding exactly `scale * v` (its pending map applied).
    fn materialize(&mut self, v: Value, scale: f64) -> Result<usize, HeError> {
        let len: usize = v.shape.iter().product();
        let p = match v.pending {
            None if scale == 1.0 => return Ok(v.node),
            None => AffineMap::identity(len).scaled(scale),
            Some(p) => p.scaled(scale),
        };
        if p.is_identity() {
            return Ok(v.node);
        }
        if self.can_fold(v.node, &p, None) {
            self.fold(v.node, &p, &v.sources, None);
            return Ok(v.node);
        }
        let kind = match p.as_diagonal() {
            Some((scale, shift)) => NodeKind::Affine { scale, shift },
            None => NodeKind::Linear(p),
        };
        Ok(self.push(kind, vec![v.node], v.shape, v.sources))
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

    fn fold(&mut self, n: usize, p: &AffineMap, sources: &[String], reader: Option<usize>) {
        let inputs = self.nodes[n].inputs.clone();
        let others = self.other_readers(n, reader);
        let diag = p.as_diagonal();
        let node = &mut self.nodes[n];
        node.source.extend(sources.iter().cloned());
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
                self.fold(inputs[0], p, &[], Some(n));
                self.fold(inputs[1], &p.linear_part(), &[], Some(n));
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
