//! The backend [`Network`] as the training loop's [`Trainee`].

use super::run::{ParamMeta, ParamRole, StepStats, Trainee};
use super::{Network, ParamGroup};
use crate::ir::{BoundaryLoss, Tensor};
use std::collections::BTreeMap;

impl Trainee for Network {
    fn param_meta(&self) -> Vec<ParamMeta> {
        self.params()
            .into_iter()
            .map(|p| ParamMeta {
                role: match p.group {
                    ParamGroup::BatchNormAffine => ParamRole::BatchNormAffine,
                    ParamGroup::PolyCoeffs => ParamRole::PolyCoeffs,
                    ParamGroup::Weight | ParamGroup::Bias => ParamRole::Plain,
                },
                name: p.name,
                len: p.len,
            })
            .collect()
    }

    fn step(
        &mut self,
        x: &[f32],
        y: &[u32],
        batch: usize,
        boundary: Option<&BoundaryLoss>,
        step_seed: u64,
    ) -> Result<StepStats, String> {
        let out = self
            .train_step(x, y, batch, boundary, step_seed)
            .map_err(|e| e.to_string())?;
        Ok(StepStats {
            loss: out.loss,
            ce_loss: out.ce_loss,
            boundary_loss: out.boundary_loss,
            correct: out.correct,
            act_max_abs: out.act_max_abs,
            overflow_site: out.overflow_site,
        })
    }

    fn visit(&mut self, f: &mut super::run::TensorVisitor<'_>) {
        self.visit_params_mut(&mut |i, _, values, grads| f(i, values, grads));
    }

    fn predict(&mut self, x: &[f32], batch: usize) -> Result<Vec<f32>, String> {
        Network::predict(self, x, batch).map_err(|e| e.to_string())
    }

    fn predict_with_boundary(
        &mut self,
        x: &[f32],
        batch: usize,
        boundary: &BoundaryLoss,
    ) -> Result<(Vec<f32>, f64), String> {
        Network::predict_with_boundary(self, x, batch, boundary).map_err(|e| e.to_string())
    }

    fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.to_tensors()
    }

    fn load(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<(), String> {
        self.load_tensors(tensors).map_err(|e| e.to_string())
    }
}
