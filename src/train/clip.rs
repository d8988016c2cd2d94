//! Gradient clipping by global L2 norm, with the paper's Selective Gradient
//! Clipping: BatchNorm gamma and beta are left out of both the norm and the
//! scaling. Same rule as `torch.nn.utils.clip_grad_norm_`: scale the clipped
//! gradients by min(1, max_norm / (norm + 1e-6)).

use crate::ir::{Clip, ClipExcept};

/// PyTorch's guard against division by zero in `clip_grad_norm_`.
const NORM_EPS: f64 = 1e-6;

/// What clipping decided for one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipPlan {
    /// Global L2 norm of the clipped set before clipping (of all gradients
    /// when clipping is off, for the metrics).
    pub norm: f64,
    /// Factor for gradients in the clipped set (1.0 when not clipped).
    pub scale: f32,
    /// Whether BatchNorm affine parameters are excluded.
    pub skip_batchnorm: bool,
}

impl ClipPlan {
    /// The factor for one tensor.
    pub fn scale_for(&self, is_batchnorm_affine: bool) -> f32 {
        if is_batchnorm_affine && self.skip_batchnorm {
            1.0
        } else {
            self.scale
        }
    }
}

/// Compute the norm and the scale from `(is_batchnorm_affine, gradient)` pairs.
pub fn plan<'a>(
    clip: Option<&Clip>,
    grads: impl IntoIterator<Item = (bool, &'a [f32])>,
) -> ClipPlan {
    plan_from_squares(
        clip,
        grads.into_iter().map(|(is_bn, g)| {
            let sq = g.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>();
            (is_bn, sq)
        }),
    )
}

/// Same as [`plan`], from each tensor's squared L2 norm.
pub fn plan_from_squares(
    clip: Option<&Clip>,
    squares: impl IntoIterator<Item = (bool, f64)>,
) -> ClipPlan {
    let skip_batchnorm = clip.is_some_and(|c| c.except == ClipExcept::BatchNorm);
    let norm = squares
        .into_iter()
        .filter(|(is_bn, _)| !(skip_batchnorm && *is_bn))
        .map(|(_, sq)| sq)
        .sum::<f64>()
        .sqrt();
    let scale = match clip {
        Some(c) => (c.max_norm / (norm + NORM_EPS)).min(1.0) as f32,
        None => 1.0,
    };
    ClipPlan {
        norm,
        scale,
        skip_batchnorm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(gs: &[&[f32]]) -> f64 {
        gs.iter()
            .flat_map(|g| g.iter())
            .map(|&x| f64::from(x).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    fn clipped(plan: &ClipPlan, is_bn: bool, g: &[f32]) -> Vec<f32> {
        g.iter().map(|x| x * plan.scale_for(is_bn)).collect()
    }

    #[test]
    fn selective_clipping_leaves_batchnorm_untouched_and_scales_the_rest() {
        let weight = [3.0f32, 4.0]; // norm 5
        let bn = [100.0f32, -100.0];
        let bias = [0.0f32, 12.0]; // total without BN: 13
        let clip = Clip {
            max_norm: 1.0,
            except: ClipExcept::BatchNorm,
        };
        let p = plan(
            Some(&clip),
            [(false, &weight[..]), (true, &bn[..]), (false, &bias[..])],
        );
        assert!((p.norm - 13.0).abs() < 1e-12);
        assert_eq!(clipped(&p, true, &bn), bn.to_vec());
        let (w, b) = (clipped(&p, false, &weight), clipped(&p, false, &bias));
        assert!((norm(&[&w, &b]) - 1.0).abs() < 1e-5, "{w:?} {b:?}");
        // Direction preserved.
        assert!((w[1] / w[0] - 4.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn clip_all_includes_batchnorm() {
        let weight = [3.0f32, 4.0];
        let bn = [0.0f32, 12.0];
        let clip = Clip {
            max_norm: 2.0,
            except: ClipExcept::None,
        };
        let p = plan(Some(&clip), [(false, &weight[..]), (true, &bn[..])]);
        assert!((p.norm - 13.0).abs() < 1e-12);
        let (w, b) = (clipped(&p, false, &weight), clipped(&p, true, &bn));
        assert!((norm(&[&w, &b]) - 2.0).abs() < 1e-5);
    }

    #[test]
    fn small_gradients_and_no_clip_are_unchanged() {
        let g = [0.1f32, 0.2];
        let clip = Clip {
            max_norm: 1.0,
            except: ClipExcept::BatchNorm,
        };
        assert_eq!(plan(Some(&clip), [(false, &g[..])]).scale, 1.0);
        let off = plan(None, [(false, &g[..]), (true, &[50.0f32][..])]);
        assert_eq!(off.scale_for(false), 1.0);
        assert_eq!(off.scale_for(true), 1.0);
        assert!((off.norm - (0.05f64 + 2500.0).sqrt()).abs() < 1e-6);
    }
}
