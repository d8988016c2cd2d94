//! Bootstrapping: where to refresh ciphertexts, and the CKKS chain that holds
//! the plan (docs/he.md, "Bootstrapping").
//!
//! A bootstrap refreshes the input of an activation (`poly`): those values are
//! scaled to [-1, 1] by construction (the 1/B fold), which is what CKKS
//! bootstrapping needs; other values (a poly's output, a residual sum before
//! its scaling) may be large. A poly's input is refreshed when, from its
//! current level, the poly and the ops up to the next activation input would
//! run past the chain. On a chain of ops that "as late as possible" rule gives
//! the fewest bootstraps; every chain that fits is tried and the cheapest plan
//! (bootstraps x key size, a proxy for time and memory) wins.

use super::HeError;
use super::lower::{Node, NodeKind};
use super::params::{self, Chain, SecretKey};
use crate::ir::levels;
use std::collections::BTreeSet;

/// Levels an emitted node consumes (rules from `ir::levels` only).
pub fn node_cost(kind: &NodeKind) -> u32 {
    match kind {
        NodeKind::Input | NodeKind::Add => levels::FREE,
        NodeKind::Linear(_) => levels::LINEAR,
        NodeKind::Affine { .. } => levels::UNFOLDED_BATCHNORM,
        NodeKind::Poly { coeffs, .. } => levels::poly(coeffs.len().saturating_sub(1) as u32),
    }
}

/// Levels of every node with bootstraps placed.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Level of each node's inputs (max) and output.
    pub level_in: Vec<u32>,
    pub level_out: Vec<u32>,
    /// Poly nodes whose input is bootstrapped just before them.
    pub refresh: BTreeSet<usize>,
    /// Level of a node's value before it was refreshed (for the bootstrap op).
    pub level_before: Vec<u32>,
}

/// The bootstrapping setting: OpenFHE's level budget and the secret.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    pub level_budget: [u32; 2],
    pub secret: SecretKey,
}

/// Sparse secret, budget [3, 3]: 16 levels and about 49 rotation keys at
/// N = 2^16 (measured); a uniform secret needs 20 levels, which leaves too
/// few for a degree-8 network within 128-bit security at N = 2^16.
pub const DEFAULT_SETTING: Setting = Setting {
    level_budget: [3, 3],
    secret: SecretKey::SparseTernary,
};

/// Levels from each node's output along the longest path to the next
/// activation input (`to_act`, `None` when no path reaches one) and to the
/// network output without crossing an activation (`to_out`).
struct Tails {
    to_act: Vec<Option<u32>>,
    to_out: Vec<Option<u32>>,
}

fn tails(nodes: &[Node], output: usize) -> Tails {
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for &j in &n.inputs {
            consumers[j].push(i);
        }
    }
    let n = nodes.len();
    let mut t = Tails {
        to_act: vec![None; n],
        to_out: vec![None; n],
    };
    for i in (0..n).rev() {
        let mut act = None;
        let mut out = (i == output).then_some(0);
        for &c in &consumers[i] {
            if let NodeKind::Poly { .. } = nodes[c].kind {
                act = act.max(Some(0));
                continue;
            }
            let cost = node_cost(&nodes[c].kind);
            act = act.max(t.to_act[c].map(|l| l + cost));
            out = out.max(t.to_out[c].map(|l| l + cost));
        }
        t.to_act[i] = act;
        t.to_out[i] = out;
    }
    t
}

/// Whether a poly's output at `level` keeps the segment up to the next
/// activation input within the chain: an activation input is at most at
/// `mult_depth - 1` (a bootstrap needs one level left: OpenFHE's
/// FLEXIBLEAUTO rescales its input first), the output at most `mult_depth`.
fn segment_fits(level: u32, i: usize, t: &Tails, mult_depth: u32) -> bool {
    t.to_act[i].is_none_or(|l| level + l < mult_depth)
        && t.to_out[i].is_none_or(|l| level + l <= mult_depth)
}

/// Places bootstraps for a chain of `mult_depth` levels of which a bootstrap
/// leaves the first `boot_levels` consumed; `None` for `boot_levels` places
/// none (and fails when the levels run out). Rule: an activation's input is
/// bootstrapped when, from its current level, the activation and the ops up
/// to the next activation input would run past the chain (as late as
/// possible: on a chain of layers, the fewest bootstraps).
pub fn place(
    nodes: &[Node],
    output: usize,
    mult_depth: u32,
    boot_levels: Option<u32>,
) -> Result<Placement, HeError> {
    let tail = tails(nodes, output);
    let n = nodes.len();
    let mut p = Placement {
        level_in: vec![0; n],
        level_out: vec![0; n],
        refresh: BTreeSet::new(),
        level_before: vec![0; n],
    };
    let mut current = vec![0u32; n];
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let cost = node_cost(&node.kind);
        let name = || node.source.join(", ");
        if let (NodeKind::Poly { .. }, Some(boot)) = (&node.kind, boot_levels) {
            let u = node.inputs[0];
            if !segment_fits(current[u] + cost, i, &tail, mult_depth) {
                if !segment_fits(boot + cost, i, &tail, mult_depth) {
                    return Err(HeError::Params(format!(
                        "activation `{}` and the ops up to the next activation need more levels after a bootstrap than the chain leaves ({} of mult_depth {mult_depth}, less one for the next bootstrap)",
                        name(),
                        mult_depth.saturating_sub(boot)
                    )));
                }
                p.refresh.insert(i);
                p.level_before[u] = current[u];
                current[u] = boot;
            }
        }
        let level_in = node.inputs.iter().map(|&j| current[j]).max().unwrap_or(0);
        if level_in + cost > mult_depth {
            return Err(HeError::Params(format!(
                "op `{}` needs level {} but the chain has {mult_depth} levels{}",
                name(),
                level_in + cost,
                if boot_levels.is_some() {
                    " and its input cannot be bootstrapped (only activation inputs are in [-1, 1])"
                } else {
                    ""
                }
            )));
        }
        p.level_in[i] = level_in;
        current[i] = level_in + cost;
        p.level_out[i] = current[i];
    }
    Ok(p)
}

/// A bootstrapped chain with its placement.
#[derive(Debug, Clone, PartialEq)]
pub struct BootPlan {
    pub chain: Chain,
    pub boot_levels: u32,
    pub placement: Placement,
}

/// Key material of a chain in ring elements per key: digits x (towers + special towers).
pub fn key_units(chain: &Chain) -> u32 {
    chain.digits * (chain.levels + 1 + chain.log_p().unwrap_or(0) / 60)
}

/// The cheapest bootstrapped chain at `ring_dim`: fewest bootstraps weighed
/// by the key size (a bootstrap's time and the keys' memory grow with it),
/// then smaller keys, then the larger scale.
pub fn choose(
    nodes: &[Node],
    output: usize,
    ring_dim: u64,
    security: u32,
    max_levels: u32,
    setting: Setting,
) -> Result<BootPlan, HeError> {
    let boot = params::bootstrap_depth(setting.level_budget, setting.secret).ok_or_else(|| {
        HeError::Params(format!(
            "no bootstrapping depth known for level budget {:?}",
            setting.level_budget
        ))
    })?;
    let mut best: Option<(u64, BootPlan)> = None;
    let mut last_error = None;
    for chain in params::boot_chains(ring_dim, security, max_levels)? {
        if chain.levels <= boot {
            continue;
        }
        match place(nodes, output, chain.levels, Some(boot)) {
            Ok(placement) => {
                let cost = (placement.refresh.len() as u64 + 1) * u64::from(key_units(&chain));
                let better = best.as_ref().is_none_or(|(c, b)| {
                    cost < *c
                        || (cost == *c && key_units(&chain) < key_units(&b.chain))
                        || (cost == *c
                            && key_units(&chain) == key_units(&b.chain)
                            && chain.scale_bits > b.chain.scale_bits)
                });
                if better {
                    best = Some((
                        cost,
                        BootPlan {
                            chain,
                            boot_levels: boot,
                            placement,
                        },
                    ));
                }
            }
            Err(e) => last_error = Some(e),
        }
    }
    best.map(|(_, plan)| plan).ok_or_else(|| {
        last_error.unwrap_or_else(|| {
            HeError::Params(format!(
                "no chain at N = {ring_dim} holds a bootstrap ({boot} levels) and the largest op at {security}-bit security"
            ))
        })
    })
}
