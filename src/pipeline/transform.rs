//! Model transforms: a checked model changed in memory (a sweep's degree),
//! with its levels, depth and hash kept true, so that checkpoints of the
//! transformed model never pass for the original's.

use super::recipe::paper_boundary;
use crate::ir::{Basis, Model, Op, OpKind};
use sha2::{Digest, Sha256};

/// Set every activation of `model` to `degree` with fit range B = `range`
/// and the boundary threshold P = `penalty` (on the model's boundary loss,
/// or on the paper's when the model has none: the sweep's methods that use a
/// boundary loss take it from here). Levels and depth are recomputed; the
/// parameter count leaves coefficients out, so it is unchanged.
pub fn with_degree(model: &mut Model, degree: u32, range: f64, penalty: f64) {
    fn walk(ops: &mut [Op], degree: u32, range: f64) {
        for op in ops {
            match &mut op.kind {
                OpKind::Poly(p) => {
                    p.degree = degree;
                    p.range = range;
                    // A given polynomial has its own degree: the sweep fits instead.
                    p.coeffs = None;
                }
                other => {
                    for seq in other.nested_mut() {
                        walk(seq, degree, range);
                    }
                }
            }
        }
    }
    walk(&mut model.net, degree, range);
    model.depth = crate::check::depth::assign_levels(&mut model.net, 0);
    model
        .train
        .boundary
        .get_or_insert_with(paper_boundary)
        .penalty = Some(penalty);
    rehash(
        model,
        &format!("degree={degree};range={range};penalty={penalty}"),
    );
}

/// Weight the boundary loss by `weight` (the paper's lambda for the sweep's
/// table); a model without a boundary loss gets the paper's.
pub fn with_boundary_weight(model: &mut Model, weight: f64) {
    let boundary = model.train.boundary.get_or_insert_with(paper_boundary);
    if boundary.weight == weight {
        return;
    }
    boundary.weight = weight;
    rehash(model, &format!("boundary_weight={weight}"));
}

/// Evaluate every activation of `model` in `basis` (same fit, same range),
/// e.g. the paper's raw power series instead of pnnc's Chebyshev series.
pub fn with_basis(model: &mut Model, basis: Basis) {
    fn walk(ops: &mut [Op], basis: Basis) {
        for op in ops {
            match &mut op.kind {
                OpKind::Poly(p) => p.basis = basis,
                other => {
                    for seq in other.nested_mut() {
                        walk(seq, basis);
                    }
                }
            }
        }
    }
    walk(&mut model.net, basis);
    model.depth = crate::check::depth::assign_levels(&mut model.net, 0);
    rehash(model, &format!("basis={}", basis.name()));
}

/// A new hash from the old one and a description of the change.
fn rehash(model: &mut Model, change: &str) {
    let mut h = Sha256::new();
    h.update(model.source_hash.as_bytes());
    h.update(change.as_bytes());
    model.source_hash = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Model {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.pnn");
        std::fs::write(&path, src).unwrap();
        crate::check::load_model(&path).unwrap()
    }

    fn first_poly(m: &Model) -> crate::ir::PolyAct {
        m.ops()
            .into_iter()
            .find_map(|o| match &o.kind {
                OpKind::Poly(p) => Some(p.clone()),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn boundary_weight_changes_the_hash_only_when_it_changes_the_weight() {
        let base = load(
            "model m\ninput [4]\nclasses 2\nact p = poly(degree: 2, fit: relu, range: 12)\nnet {\n  dense(8); p\n  dense(classes)\n}\ntrain {\n  epochs: 1  batch: 4  seed: 1\n  optimizer: adamw(lr: 1e-3)\n  boundary: exp(penalty: 12, weight: 10, reduce: sum)\n}\n",
        );
        let mut same = base.clone();
        with_boundary_weight(&mut same, 10.0);
        assert_eq!(same, base);
        let mut audio = base.clone();
        with_boundary_weight(&mut audio, 100.0);
        assert_eq!(audio.train.boundary.as_ref().unwrap().weight, 100.0);
        assert_ne!(audio.source_hash, base.source_hash);
    }

    #[test]
    fn degree_override_changes_degree_range_penalty_depth_and_hash() {
        let base = load(
            "model m\ninput [4]\nclasses 2\nact p = poly(degree: 2, fit: relu, range: 12)\nnet {\n  dense(8); p\n  dense(classes)\n}\ntrain {\n  epochs: 1  batch: 4  seed: 1\n  optimizer: adamw(lr: 1e-3)\n  boundary: exp(penalty: 12, weight: 10, reduce: sum)\n}\n",
        );
        let mut m = base.clone();
        with_degree(&mut m, 22, 47.0, 23.5);
        let poly = first_poly(&m);
        assert_eq!((poly.degree, poly.range), (22, 47.0));
        assert_eq!(m.train.boundary.as_ref().unwrap().penalty, Some(23.5));
        // dense (1) + degree 22 (5) + dense (1) versus dense + degree 2 (2) + dense.
        assert_eq!(base.depth, 4);
        assert_eq!(m.depth, 7);
        assert_eq!(m.params, base.params);
        assert_ne!(m.source_hash, base.source_hash);
        let mut again = base.clone();
        with_degree(&mut again, 22, 47.0, 23.5);
        assert_eq!(again.source_hash, m.source_hash);
    }

    #[test]
    fn basis_override_changes_every_site_and_the_hash() {
        let base = load(
            "model m\ninput [4]\nclasses 2\nact p = poly(degree: 2, fit: relu, range: 12)\nnet {\n  dense(8); p\n  dense(classes)\n}\n",
        );
        let mut m = base.clone();
        with_basis(&mut m, Basis::Power);
        assert_eq!(first_poly(&m).basis, Basis::Power);
        assert_ne!(m.source_hash, base.source_hash);
        assert_eq!(m.depth, base.depth);
    }

    #[test]
    fn a_model_without_boundary_loss_gets_the_papers_with_the_tables_penalty() {
        let base = load(
            "model m\ninput [4]\nclasses 2\nact p = poly(degree: 2, fit: relu, range: 12)\nnet {\n  dense(8); p\n  dense(classes)\n}\n",
        );
        let mut m = base.clone();
        with_degree(&mut m, 8, 35.0, 17.5);
        let b = m.train.boundary.expect("a boundary loss");
        assert_eq!((b.penalty, b.weight), (Some(17.5), 10.0));
    }
}
