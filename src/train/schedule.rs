//! Learning-rate schedules, stepped once per epoch after validation, with
//! PyTorch's semantics. Each parameter group (plain parameters, polynomial
//! coefficients) keeps its own rate, as PyTorch's param groups do, so that
//! `min_lr` clamps each group separately.

use crate::ir::Schedule;
use serde::{Deserialize, Serialize};

/// PyTorch skips reductions smaller than this.
const PLATEAU_EPS: f64 = 1e-8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub schedule: Schedule,
    /// Rates at epoch 0, one per group.
    pub initial: Vec<f64>,
    /// Rates for the coming epoch, one per group.
    pub current: Vec<f64>,
    /// Total epochs (cosine's T_max).
    pub epochs: u32,
    /// Epochs completed.
    pub epoch: u32,
    /// Plateau: best validation loss so far.
    pub best: Option<f64>,
    /// Plateau: epochs since the last improvement.
    pub bad_epochs: u32,
}

impl LrSchedule {
    pub fn new(schedule: &Schedule, initial: Vec<f64>, epochs: u32) -> LrSchedule {
        LrSchedule {
            schedule: schedule.clone(),
            current: initial.clone(),
            initial,
            epochs,
            epoch: 0,
            best: None,
            bad_epochs: 0,
        }
    }

    /// The rate of `group` for the coming epoch.
    pub fn lr(&self, group: usize) -> f64 {
        self.current[group]
    }

    /// Advance one epoch; `val_loss` feeds the plateau schedule.
    pub fn step(&mut self, val_loss: f64) {
        self.epoch += 1;
        match self.schedule.clone() {
            Schedule::Constant => {}
            Schedule::Plateau {
                factor,
                patience,
                min_lr,
                threshold,
            } => {
                // Mode min, threshold mode rel (PyTorch's default).
                let improved = match self.best {
                    None => val_loss.is_finite(),
                    Some(best) => val_loss < best * (1.0 - threshold),
                };
                if improved {
                    self.best = Some(val_loss);
                    self.bad_epochs = 0;
                } else {
                    self.bad_epochs += 1;
                }
                if self.bad_epochs > patience {
                    for lr in &mut self.current {
                        let reduced = (*lr * factor).max(min_lr);
                        if *lr - reduced > PLATEAU_EPS {
                            *lr = reduced;
                        }
                    }
                    self.bad_epochs = 0;
                }
            }
            Schedule::Cosine { .. } | Schedule::MultiStep { .. } => self.recompute(),
        }
    }
}

impl LrSchedule {
    /// Change the run length (a resumed run with a new `--epochs`); the
    /// closed-form schedules are recomputed for the current epoch.
    pub fn set_total_epochs(&mut self, epochs: u32) {
        self.epochs = epochs;
        if matches!(
            self.schedule,
            Schedule::Cosine { .. } | Schedule::MultiStep { .. }
        ) {
            self.recompute();
        }
    }

    /// Rates of the closed-form schedules (cosine, multistep) at `self.epoch`.
    fn recompute(&mut self) {
        let e = self.epoch;
        match &self.schedule {
            Schedule::Cosine { min_lr } => {
                let t = f64::from(e.min(self.epochs)) / f64::from(self.epochs.max(1));
                let c = (1.0 + (std::f64::consts::PI * t).cos()) / 2.0;
                for (lr, base) in self.current.iter_mut().zip(&self.initial) {
                    *lr = min_lr + (base - min_lr) * c;
                }
            }
            Schedule::MultiStep { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| m <= e).count() as i32;
                for (lr, base) in self.current.iter_mut().zip(&self.initial) {
                    *lr = base * gamma.powi(passed);
                }
            }
            Schedule::Constant | Schedule::Plateau { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(schedule: Schedule, epochs: u32, losses: &[f64]) -> Vec<Vec<f64>> {
        let mut s = LrSchedule::new(&schedule, vec![1e-3, 1e-4], epochs);
        let mut out = vec![s.current.clone()];
        for &l in losses {
            s.step(l);
            out.push(s.current.clone());
        }
        out
    }

    #[test]
    fn constant_never_changes() {
        let r = rates(Schedule::Constant, 3, &[1.0, 2.0, 3.0]);
        assert!(r.iter().all(|g| g == &vec![1e-3, 1e-4]));
    }

    #[test]
    fn plateau_reduces_after_patience_bad_epochs_and_clamps_per_group() {
        let sched = Schedule::Plateau {
            factor: 0.1,
            patience: 1,
            min_lr: 5e-6,
            threshold: 1e-4,
        };
        // Epoch losses: improve, improve, flat (bad 1), flat (bad 2 > 1: reduce),
        // flat (bad 1), flat (bad 2: reduce again, poly group clamped).
        let r = rates(sched, 10, &[1.0, 0.5, 0.5, 0.49999, 0.6, 0.7]);
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-15);
        assert!(close(&r[3], &[1e-3, 1e-4]), "{r:?}");
        assert!(close(&r[4], &[1e-4, 1e-5]), "{r:?}");
        assert!(close(&r[5], &[1e-4, 1e-5]), "{r:?}");
        assert!(close(&r[6], &[1e-5, 5e-6]), "{r:?}");
    }

    /// The official threshold 0.1 (relative): a 5 % improvement is a bad
    /// epoch, a 12 % one is not; with 1e-4 the same 5 % counts.
    #[test]
    fn plateau_threshold_is_relative_to_the_best_loss() {
        let plateau = |threshold| Schedule::Plateau {
            factor: 0.1,
            patience: 1,
            min_lr: 0.0,
            threshold,
        };
        // 1.0 (best), 0.95 (-5 %), 0.9 (-10 % of 1.0 is not < 0.9 * 1.0: bad).
        let losses = [1.0, 0.95, 0.9];
        let r = rates(plateau(0.1), 10, &losses);
        assert_eq!(r[3][0], 1e-4, "two bad epochs > patience 1: reduced {r:?}");
        let r = rates(plateau(1e-4), 10, &losses);
        assert_eq!(r[3][0], 1e-3, "{r:?}");
        // 1.0, 0.88 (-12 %: improvement), 0.85 (-3.4 % of 0.88: bad), no reduction yet.
        let r = rates(plateau(0.1), 10, &[1.0, 0.88, 0.85]);
        assert_eq!(r[3][0], 1e-3, "{r:?}");
    }

    /// A schedule saved before `threshold` existed (resume files) reads as
    /// PyTorch's default 1e-4, which those runs used.
    #[test]
    fn plateau_without_threshold_reads_as_the_old_default() {
        let json = r#"{"Plateau":{"factor":0.1,"patience":5,"min_lr":0.0}}"#;
        let s: Schedule = serde_json::from_str(json).unwrap();
        assert_eq!(
            s,
            Schedule::Plateau {
                factor: 0.1,
                patience: 5,
                min_lr: 0.0,
                threshold: 1e-4
            }
        );
    }

    #[test]
    fn cosine_goes_from_base_to_min_over_all_epochs() {
        let r = rates(Schedule::Cosine { min_lr: 0.0 }, 4, &[0.0; 4]);
        let want = [1.0, 0.853553390593, 0.5, 0.146446609407, 0.0];
        for (g, w) in r.iter().zip(want) {
            assert!((g[0] - 1e-3 * w).abs() < 1e-12, "{r:?}");
            assert!((g[1] - 1e-4 * w).abs() < 1e-12, "{r:?}");
        }
    }

    #[test]
    fn multistep_multiplies_at_each_milestone() {
        let sched = Schedule::MultiStep {
            milestones: vec![2, 4],
            gamma: 0.5,
        };
        let r = rates(sched, 5, &[0.0; 5]);
        let first: Vec<f64> = r.iter().map(|g| g[0]).collect();
        assert_eq!(first, vec![1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4]);
    }

    #[test]
    fn cosine_follows_a_new_run_length() {
        let mut s = LrSchedule::new(&Schedule::Cosine { min_lr: 0.0 }, vec![1.0], 1);
        s.step(0.0);
        assert_eq!(s.lr(0), 0.0);
        s.set_total_epochs(2);
        assert!((s.lr(0) - 0.5).abs() < 1e-15);
    }
}
