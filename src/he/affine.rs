//! Sparse affine maps y = M x + b on flat (row-major CHW) vectors: the common
//! form of every linear IR op, so that folding is map composition and stays
//! exact (a conv is its full matrix, so zero padding needs no special case).

use crate::ir::{Op, OpKind};

/// Rows of (column, value) pairs, each row sorted by column, no duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct AffineMap {
    pub in_len: usize,
    pub rows: Vec<Vec<(u32, f64)>>,
    pub bias: Vec<f64>,
}

impl AffineMap {
    pub fn identity(len: usize) -> Self {
        Self::diagonal(&vec![1.0; len], &vec![0.0; len])
    }

    pub fn diagonal(scale: &[f64], shift: &[f64]) -> Self {
        AffineMap {
            in_len: scale.len(),
            rows: scale
                .iter()
                .enumerate()
                .map(|(i, &s)| vec![(i as u32, s)])
                .collect(),
            bias: shift.to_vec(),
        }
    }

    pub fn out_len(&self) -> usize {
        self.rows.len()
    }

    pub fn nnz(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }

    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        self.rows
            .iter()
            .zip(&self.bias)
            .map(|(row, b)| b + row.iter().map(|&(c, v)| v * x[c as usize]).sum::<f64>())
            .collect()
    }

    /// `self ∘ inner`: x -> self(inner(x)).
    pub fn compose(&self, inner: &AffineMap) -> AffineMap {
        debug_assert_eq!(self.in_len, inner.out_len());
        let mut acc = vec![0.0; inner.in_len];
        let mut seen = vec![false; inner.in_len];
        let mut touched: Vec<u32> = Vec::new();
        let mut rows = Vec::with_capacity(self.rows.len());
        let mut bias = Vec::with_capacity(self.rows.len());
        for (row, b) in self.rows.iter().zip(&self.bias) {
            let mut out_bias = *b;
            for &(k, v) in row {
                let k = k as usize;
                out_bias += v * inner.bias[k];
                for &(c, w) in &inner.rows[k] {
                    if !seen[c as usize] {
                        seen[c as usize] = true;
                        touched.push(c);
                    }
                    acc[c as usize] += v * w;
                }
            }
            touched.sort_unstable();
            let mut new_row = Vec::with_capacity(touched.len());
            for &c in &touched {
                let value = acc[c as usize];
                if value != 0.0 {
                    new_row.push((c, value));
                }
                acc[c as usize] = 0.0;
                seen[c as usize] = false;
            }
            touched.clear();
            rows.push(new_row);
            bias.push(out_bias);
        }
        AffineMap {
            in_len: inner.in_len,
            rows,
            bias,
        }
    }

    /// Elementwise (scale, shift) when the map is diagonal (row i reads only x_i).
    pub fn as_diagonal(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        if self.in_len != self.out_len() {
            return None;
        }
        let mut scale = Vec::with_capacity(self.in_len);
        for (i, row) in self.rows.iter().enumerate() {
            match row.as_slice() {
                [] => scale.push(0.0),
                [(c, v)] if *c as usize == i => scale.push(*v),
                _ => return None,
            }
        }
        Some((scale, self.bias.clone()))
    }

    /// (a, b) when the map is x -> a x + b with the same a and b everywhere.
    pub fn as_uniform(&self) -> Option<(f64, f64)> {
        let (scale, shift) = self.as_diagonal()?;
        let (a, b) = (*scale.first()?, *shift.first()?);
        (scale.iter().all(|&s| s == a) && shift.iter().all(|&s| s == b)).then_some((a, b))
    }

    pub fn is_identity(&self) -> bool {
        self.as_uniform() == Some((1.0, 0.0))
    }

    pub fn scaled(&self, factor: f64) -> AffineMap {
        AffineMap {
            in_len: self.in_len,
            rows: self
                .rows
                .iter()
                .map(|r| r.iter().map(|&(c, v)| (c, v * factor)).collect())
                .collect(),
            bias: self.bias.iter().map(|b| b * factor).collect(),
        }
    }

    /// The same matrix with a zero bias.
    pub fn linear_part(&self) -> AffineMap {
        AffineMap {
            bias: vec![0.0; self.bias.len()],
            ..self.clone()
        }
    }

    /// The map restricted to input columns `[start, start + len)`, as a map
    /// on that slice of the input (the other columns' terms dropped); the
    /// bias kept only when `with_bias`. Summed over a partition of the
    /// columns (the bias in one part), these give back `self`.
    pub fn columns(&self, start: usize, len: usize, with_bias: bool) -> AffineMap {
        let inside = |c: u32| (start..start + len).contains(&(c as usize));
        AffineMap {
            in_len: len,
            rows: self
                .rows
                .iter()
                .map(|row| {
                    row.iter()
                        .filter(|(c, _)| inside(*c))
                        .map(|&(c, v)| (c - start as u32, v))
                        .collect()
                })
                .collect(),
            bias: if with_bias {
                self.bias.clone()
            } else {
                vec![0.0; self.bias.len()]
            },
        }
    }

    /// Rows `[r0, r0 + rows)` as a map on input columns `[c0, c0 + cols)`,
    /// or None when one of those rows reads a column outside them (the map
    /// is not block-diagonal there).
    pub fn block(&self, r0: usize, rows: usize, c0: usize, cols: usize) -> Option<AffineMap> {
        let range = c0..c0 + cols;
        let picked = self.rows.get(r0..r0 + rows)?;
        let mut out = Vec::with_capacity(rows);
        for row in picked {
            if row.iter().any(|(c, _)| !range.contains(&(*c as usize))) {
                return None;
            }
            out.push(row.iter().map(|&(c, v)| (c - c0 as u32, v)).collect());
        }
        Some(AffineMap {
            in_len: cols,
            rows: out,
            bias: self.bias[r0..r0 + rows].to_vec(),
        })
    }

    /// x (of length `len`) placed at `[offset, offset + len)` of a vector
    /// of `total` zeros.
    pub fn embedding(offset: usize, len: usize, total: usize) -> AffineMap {
        AffineMap {
            in_len: len,
            rows: (0..total)
                .map(|r| {
                    if (offset..offset + len).contains(&r) {
                        vec![((r - offset) as u32, 1.0)]
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
            bias: vec![0.0; total],
        }
    }
}

/// Parameters of one IR op as f64 slices, looked up by suffix (`weight`, ...).
pub trait ParamSource {
    fn param(&self, op: &Op, suffix: &str) -> Result<Vec<f64>, String>;
}

/// Per-channel (dim 0) scale/shift broadcast over a tensor of `shape`.
pub fn per_channel(shape: &[usize], scale: &[f64], shift: &[f64]) -> AffineMap {
    let channels = shape.first().copied().unwrap_or(1).max(1);
    let len: usize = shape.iter().product();
    let per = len / channels;
    let expand = |v: &[f64]| (0..len).map(|i| v[i / per.max(1)]).collect::<Vec<_>>();
    AffineMap::diagonal(&expand(scale), &expand(shift))
}

/// The affine map of a linear IR op (None for poly, residual and concat, which are
/// not one linear layer).
pub fn op_map(op: &Op, params: &dyn ParamSource) -> Result<Option<AffineMap>, String> {
    let in_shape = op.input.dims();
    let in_len: usize = in_shape.iter().product();
    let map = match &op.kind {
        OpKind::Dense {
            in_features,
            out_features,
            bias,
        } => {
            let w = params.param(op, "weight")?;
            let b = if *bias {
                params.param(op, "bias")?
            } else {
                vec![0.0; *out_features]
            };
            AffineMap {
                in_len: *in_features,
                rows: (0..*out_features)
                    .map(|r| {
                        (0..*in_features)
                            .filter_map(|c| {
                                let v = w[r * in_features + c];
                                (v != 0.0).then_some((c as u32, v))
                            })
                            .collect()
                    })
                    .collect(),
                bias: b,
            }
        }
        OpKind::Conv {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            bias,
            groups,
        } => {
            let w = params.param(op, "weight")?;
            let b = if *bias {
                params.param(op, "bias")?
            } else {
                vec![0.0; *out_channels]
            };
            conv_map(
                in_shape,
                op.output.dims(),
                *in_channels,
                *out_channels,
                *kernel,
                *stride,
                *padding,
                *groups,
                &w,
                &b,
            )?
        }
        OpKind::BatchNorm { channels, eps, .. } => {
            let gamma = params.param(op, "gamma")?;
            let beta = params.param(op, "beta")?;
            let mean = params.param(op, "running_mean")?;
            let var = params.param(op, "running_var")?;
            let scale: Vec<f64> = (0..*channels)
                .map(|c| gamma[c] / (var[c] + eps).sqrt())
                .collect();
            let shift: Vec<f64> = (0..*channels)
                .map(|c| beta[c] - mean[c] * scale[c])
                .collect();
            per_channel(in_shape, &scale, &shift)
        }
        OpKind::Scale { factor } => AffineMap::identity(in_len).scaled(*factor),
        OpKind::AvgPool { kernel, stride } => {
            pool_map(in_shape, op.output.dims(), *kernel, *stride)?
        }
        OpKind::GlobalAvgPool => {
            let (c, hw) = match in_shape {
                [c, rest @ ..] => (*c, rest.iter().product::<usize>().max(1)),
                [] => return Err("global_avgpool on a scalar".into()),
            };
            AffineMap {
                in_len,
                rows: (0..c)
                    .map(|ch| {
                        (0..hw)
                            .map(|p| ((ch * hw + p) as u32, 1.0 / hw as f64))
                            .collect()
                    })
                    .collect(),
                bias: vec![0.0; c],
            }
        }
        OpKind::Flatten | OpKind::Dropout { .. } => AffineMap::identity(in_len),
        OpKind::Poly(_) | OpKind::Residual { .. } | OpKind::Concat { .. } => return Ok(None),
    };
    Ok(Some(map))
}

/// (C, H, W) of an image, or of a sequence [C, T] as [C, 1, T] (1-D conv
/// and pooling are stored as 2-D ones over a height of 1).
fn spatial(shape: &[usize], what: &str) -> Result<(usize, usize, usize), String> {
    match shape {
        [c, h, w] => Ok((*c, *h, *w)),
        [c, t] => Ok((*c, 1, *t)),
        _ => Err(format!(
            "{what} needs a [C, H, W] or [C, T] tensor, got {shape:?}"
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_map(
    in_shape: &[usize],
    out_shape: &[usize],
    ci_n: usize,
    co_n: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    groups: usize,
    w: &[f64],
    b: &[f64],
) -> Result<AffineMap, String> {
    let (c, h, wd) = spatial(in_shape, "conv")?;
    let (oc, oh, ow) = spatial(out_shape, "conv output")?;
    if c != ci_n || oc != co_n {
        return Err(format!(
            "conv channels {ci_n}->{co_n} do not match shapes {in_shape:?} -> {out_shape:?}"
        ));
    }
    if groups == 0 || c % groups != 0 || oc % groups != 0 {
        return Err(format!(
            "conv groups {groups} do not divide channels {c}->{oc}"
        ));
    }
    // Output channel o reads the `cg` input channels of its group only.
    let (cg, og) = (c / groups, oc / groups);
    if w.len() != oc * cg * kernel[0] * kernel[1] {
        return Err(format!(
            "conv weight has {} values, expected {oc} x {cg} x {} x {}",
            w.len(),
            kernel[0],
            kernel[1]
        ));
    }
    let mut rows = Vec::with_capacity(oc * oh * ow);
    let mut bias = Vec::with_capacity(oc * oh * ow);
    for o in 0..oc {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut row = Vec::new();
                let first = (o / og) * cg;
                for i in 0..cg {
                    for ky in 0..kernel[0] {
                        let iy = (oy * stride[0] + ky) as isize - padding[0] as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..kernel[1] {
                            let ix = (ox * stride[1] + kx) as isize - padding[1] as isize;
                            if ix < 0 || ix >= wd as isize {
                                continue;
                            }
                            let v = w[((o * cg + i) * kernel[0] + ky) * kernel[1] + kx];
                            if v != 0.0 {
                                let col = ((first + i) * h + iy as usize) * wd + ix as usize;
                                row.push((col as u32, v));
                            }
                        }
                    }
                }
                row.sort_unstable_by_key(|e| e.0);
                rows.push(row);
                bias.push(b[o]);
            }
        }
    }
    Ok(AffineMap {
        in_len: c * h * wd,
        rows,
        bias,
    })
}

fn pool_map(
    in_shape: &[usize],
    out_shape: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> Result<AffineMap, String> {
    let (c, h, w) = spatial(in_shape, "avgpool")?;
    let (_, oh, ow) = spatial(out_shape, "avgpool output")?;
    let factor = 1.0 / (kernel[0] * kernel[1]) as f64;
    let mut rows = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut row = Vec::new();
                for ky in 0..kernel[0] {
                    for kx in 0..kernel[1] {
                        let (iy, ix) = (oy * stride[0] + ky, ox * stride[1] + kx);
                        if iy < h && ix < w {
                            row.push((((ch * h + iy) * w + ix) as u32, factor));
                        }
                    }
                }
                row.sort_unstable_by_key(|e| e.0);
                rows.push(row);
            }
        }
    }
    let n = rows.len();
    Ok(AffineMap {
        in_len: c * h * w,
        rows,
        bias: vec![0.0; n],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_matches_applying_twice() {
        let a = AffineMap {
            in_len: 3,
            rows: vec![vec![(0, 1.0), (2, -2.0)], vec![(1, 0.5)]],
            bias: vec![0.25, -1.0],
        };
        let b = AffineMap {
            in_len: 2,
            rows: vec![vec![(0, 3.0), (1, 1.0)], vec![], vec![(1, -1.0)]],
            bias: vec![1.0, 2.0, 3.0],
        };
        let x = [0.3, -0.7];
        let composed = a.compose(&b).apply(&x);
        let twice = a.apply(&b.apply(&x));
        for (u, v) in composed.iter().zip(&twice) {
            assert!((u - v).abs() < 1e-12, "{composed:?} vs {twice:?}");
        }
    }

    /// The pieces a concat's lowering cuts maps into: column slices sum to
    /// the map, a block is the rows of a block-diagonal map, an embedding
    /// places a vector at an offset.
    #[test]
    fn columns_blocks_and_embeddings_cut_maps_exactly() {
        let m = AffineMap {
            in_len: 5,
            rows: vec![
                vec![(0, 1.0), (3, 2.0)],
                vec![(1, -1.0), (4, 0.5)],
                vec![(2, 3.0)],
            ],
            bias: vec![0.5, -0.5, 1.0],
        };
        let x = [0.1, 0.2, -0.3, 0.4, 0.7];
        let (a, b) = (m.columns(0, 2, true), m.columns(2, 3, false));
        let sum: Vec<f64> = a
            .apply(&x[..2])
            .iter()
            .zip(b.apply(&x[2..]))
            .map(|(u, v)| u + v)
            .collect();
        for (u, v) in sum.iter().zip(m.apply(&x)) {
            assert!((u - v).abs() < 1e-12, "{sum:?}");
        }
        // Rows 0..2 read columns 0, 1, 3, 4: not a block on 0..2, one on 0..5.
        assert!(m.block(0, 2, 0, 2).is_none());
        let diag = AffineMap::diagonal(&[1.0, 2.0, 3.0, 4.0], &[0.0, 1.0, 2.0, 3.0]);
        let lower = diag.block(2, 2, 2, 2).unwrap();
        assert_eq!(lower.apply(&[1.0, 1.0]), [5.0, 7.0]);
        let e = AffineMap::embedding(1, 2, 4);
        assert_eq!(e.apply(&[3.0, 4.0]), [0.0, 3.0, 4.0, 0.0]);
    }
}
