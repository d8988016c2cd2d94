//! After expansion: activation placement, batchnorm folding, and the levels
//! of every op (by the rules in `crate::ir::levels`, never restated here).

use super::config::Placement;
use crate::ir::{Op, OpKind, levels};

/// Reorder adjacent poly/batchnorm pairs as `placement` asks, in every sequence.
pub fn apply_placement(ops: &mut [Op], placement: Placement) {
    if placement == Placement::AsWritten {
        return;
    }
    let mut i = 0;
    while i + 1 < ops.len() {
        let swap = match (&ops[i].kind, &ops[i + 1].kind) {
            (OpKind::Poly(_), OpKind::BatchNorm { .. }) => placement == Placement::AfterBn,
            (OpKind::BatchNorm { .. }, OpKind::Poly(_)) => placement == Placement::BeforeBn,
            _ => false,
        };
        if swap {
            ops.swap(i, i + 1);
            i += 2;
        } else {
            i += 1;
        }
    }
    for op in ops.iter_mut() {
        for seq in op.kind.nested_mut() {
            apply_placement(seq, placement);
        }
    }
}

fn is_linear(op: &Op) -> bool {
    matches!(op.kind, OpKind::Dense { .. } | OpKind::Conv { .. })
}

/// Ops a per-channel affine map passes through unchanged in kind.
fn is_transparent(op: &Op) -> bool {
    matches!(
        op.kind,
        OpKind::AvgPool { .. }
            | OpKind::GlobalAvgPool
            | OpKind::Flatten
            | OpKind::Dropout { .. }
            | OpKind::Scale { .. }
    )
}

/// Mark each batchnorm foldable when its affine map can be merged into a
/// neighbour: the linear layer right before it, the polynomial right before
/// it (a*p(x)+b is again a polynomial, per channel), the linear layers that
/// end every branch of a concat before it (each branch's channels fold into
/// its own layer; pooling/flatten/dropout/scale may come between), or the
/// next linear layer reached through pooling/flatten/dropout/scale only.
pub fn mark_foldable(ops: &mut [Op]) {
    for i in 0..ops.len() {
        let nested = ops[i].kind.nested_mut();
        if !nested.is_empty() {
            for seq in nested {
                mark_foldable(seq);
            }
            continue;
        }
        if !matches!(ops[i].kind, OpKind::BatchNorm { .. }) {
            continue;
        }
        let after_concat = ops[..i]
            .iter()
            .rev()
            .find(|o| !is_transparent(o))
            .is_some_and(|o| matches!(o.kind, OpKind::Concat { .. }) && ends_linear(o));
        let backward = i > 0
            && (is_linear(&ops[i - 1])
                || matches!(ops[i - 1].kind, OpKind::Poly(_))
                || after_concat);
        let forward = ops[i + 1..]
            .iter()
            .find(|o| !is_transparent(o))
            .is_some_and(is_linear);
        if let OpKind::BatchNorm { foldable, .. } = &mut ops[i].kind {
            *foldable = backward || forward;
        }
    }
}

/// Whether `op`'s output is the output of dense/conv layers with at most
/// foldable batchnorms and pooling/flatten/dropout/scale after them: a
/// linear map of it then folds into those layers (HE: no level). A concat
/// is when all its branches are, a residual when both its paths are.
pub fn ends_linear(op: &Op) -> bool {
    match &op.kind {
        OpKind::Dense { .. } | OpKind::Conv { .. } => true,
        OpKind::Concat { branches } => branches.iter().all(|b| seq_ends_linear(b)),
        OpKind::Residual { body, shortcut } => seq_ends_linear(body) && seq_ends_linear(shortcut),
        _ => false,
    }
}

/// [`ends_linear`] of a sequence's last op that is not foldable on its own
/// (false for an empty sequence: its output is its input, read elsewhere too).
fn seq_ends_linear(ops: &[Op]) -> bool {
    ops.iter()
        .rev()
        .find(|o| !is_transparent(o) && !matches!(o.kind, OpKind::BatchNorm { foldable: true, .. }))
        .is_some_and(ends_linear)
}

/// Fill `levels` and the cumulative `level` of every op of a network,
/// starting at `start`; returns the level after the last op.
pub fn assign_levels(ops: &mut [Op], start: u32) -> u32 {
    level_of(&assign_seq(ops, vec![(start, false)], true))
}

/// The parts a value is made of, as HE evaluates it: after a `concat`, one
/// per branch (its level, and whether it ends linear: a dense/conv output
/// that a later map folds into); one part otherwise.
///
/// A concat costs no level of its own: under HE its branches stay separate
/// values. Elementwise and per-channel layers after it work on each part,
/// a dense or conv on all of them at once (a sum of one product per part,
/// at the deepest part's level plus its own). A per-channel map that must be
/// applied to the parts themselves (an unfoldable batchnorm), and placing
/// the parts into one vector where the joined value is needed (the network's
/// output, a residual path before its join), cost a level only on the parts
/// that do not end linear: on the others the map folds into their dense/conv.
type Parts = Vec<(u32, bool)>;

/// The level of a value: its deepest part.
fn level_of(parts: &Parts) -> u32 {
    parts.iter().map(|p| p.0).max().unwrap_or(0)
}

/// Levels of a sequence from a value of `start` parts. `joined`: its output
/// is used whole, so a value of several parts is placed into one vector by
/// its last op (or, for an empty sequence, by the join itself).
fn assign_seq(ops: &mut [Op], start: Parts, joined: bool) -> Parts {
    let mut parts = start;
    let last = ops.len().checked_sub(1);
    for (i, op) in ops.iter_mut().enumerate() {
        let before = level_of(&parts);
        parts = match &mut op.kind {
            OpKind::Residual { body, shortcut } => {
                let shared = unshared(&parts);
                let b = assign_seq(body, shared.clone(), true);
                let s = assign_seq(shortcut, shared, true);
                vec![(level_of(&b).max(level_of(&s)), false)]
            }
            OpKind::Concat { branches } => {
                let shared = unshared(&parts);
                branches
                    .iter_mut()
                    .flat_map(|b| assign_seq(b, shared.clone(), false))
                    .collect()
            }
            OpKind::Dense { .. } | OpKind::Conv { .. } => {
                vec![(before.saturating_add(levels::LINEAR), true)]
            }
            OpKind::Poly(act) => parts
                .iter()
                .map(|&(l, _)| (l.saturating_add(levels::poly(act.degree)), false))
                .collect(),
            OpKind::BatchNorm {
                foldable: false, ..
            } => {
                if parts.len() == 1 {
                    vec![(before.saturating_add(levels::UNFOLDED_BATCHNORM), false)]
                } else {
                    placed(&parts)
                }
            }
            _ => parts,
        };
        if let OpKind::Residual { .. } = op.kind {
            // A residual ends linear when both its paths do (its sum folds into both).
            parts[0].1 = ends_linear(op);
        }
        if joined && Some(i) == last && parts.len() > 1 {
            parts = vec![(level_of(&placed(&parts)), false)];
        }
        op.level = level_of(&parts);
        op.levels = op.level.saturating_sub(before);
    }
    if joined && parts.len() > 1 {
        parts = vec![(level_of(&placed(&parts)), false)];
    }
    parts
}

/// The parts after a map applied to each: one level more on a part that does
/// not end linear (the map folds into the others).
fn placed(parts: &Parts) -> Parts {
    parts
        .iter()
        .map(|&(l, linear)| {
            let cost = if linear { 0 } else { levels::LINEAR };
            (l.saturating_add(cost), linear)
        })
        .collect()
}

/// A value's parts as the branches of a residual or concat see them: read
/// by every branch, so nothing folds into them any more.
fn unshared(parts: &Parts) -> Parts {
    parts.iter().map(|&(l, _)| (l, false)).collect()
}
