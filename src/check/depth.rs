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
        if let OpKind::Residual { body, shortcut } = &mut op.kind {
            apply_placement(body, placement);
            apply_placement(shortcut, placement);
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
/// it (a*p(x)+b is again a polynomial, per channel), or the next linear layer
/// reached through pooling/flatten/dropout/scale only.
pub fn mark_foldable(ops: &mut [Op]) {
    for i in 0..ops.len() {
        if let OpKind::Residual { body, shortcut } = &mut ops[i].kind {
            mark_foldable(body);
            mark_foldable(shortcut);
            continue;
        }
        if !matches!(ops[i].kind, OpKind::BatchNorm { .. }) {
            continue;
        }
        let backward =
            i > 0 && (is_linear(&ops[i - 1]) || matches!(ops[i - 1].kind, OpKind::Poly(_)));
        let forward = ops[i + 1..]
            .iter()
            .find(|o| !is_transparent(o))
            .is_some_and(is_linear);
        if let OpKind::BatchNorm { foldable, .. } = &mut ops[i].kind {
            *foldable = backward || forward;
        }
    }
}

/// Levels consumed by one op that is not a residual.
fn own_levels(op: &Op) -> u32 {
    match &op.kind {
        OpKind::Dense { .. } | OpKind::Conv { .. } => levels::LINEAR,
        OpKind::Poly(act) => levels::poly(act.degree),
        OpKind::BatchNorm {
            foldable: false, ..
        } => levels::UNFOLDED_BATCHNORM,
        _ => levels::FREE,
    }
}

/// Fill `levels` and the cumulative `level` of every op, starting at
/// `start`; returns the level after the last op.
pub fn assign_levels(ops: &mut [Op], start: u32) -> u32 {
    let mut level = start;
    for op in ops.iter_mut() {
        let after = match &mut op.kind {
            OpKind::Residual { body, shortcut } => {
                let b = assign_levels(body, level);
                let s = assign_levels(shortcut, level);
                b.max(s)
            }
            _ => level.saturating_add(own_levels(op)),
        };
        op.levels = after - level;
        op.level = after;
        level = after;
    }
    level
}
