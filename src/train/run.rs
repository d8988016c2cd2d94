//! The training loop: epochs of seeded shuffled batches, augmentation, one
//! network step, clipping, the optimizer update, validation, metrics,
//! checkpoints (best by validation accuracy, last) and an exact resume state.
//!
//! The loop talks to the network through [`Trainee`] so that it can be tested
//! with a tiny model of its own and does not depend on the tensor backend.
//!
//! Determinism: every random choice is a pure function of the run seed and
//! the epoch or the global step, so a resumed run needs no RNG state beyond
//! the epoch it continues from.

use super::clip;
use super::metrics::{self, EpochMetrics};
use super::optim::{Optim, ParamState};
use super::schedule::LrSchedule;
use crate::ir::{
    BoundaryKind, BoundaryLoss, Checkpoint, Clip, Normalization, Optimizer, Schedule, Tensor,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How the optimizer treats one parameter tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamRole {
    Plain,
    /// BatchNorm gamma / beta: left out of selective clipping.
    BatchNormAffine,
    /// Polynomial coefficients: trained at `poly_lr_scale` x the base rate.
    PolyCoeffs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamMeta {
    pub name: String,
    pub role: ParamRole,
    pub len: usize,
}

/// What one training step reports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepStats {
    pub loss: f64,
    pub ce_loss: f64,
    pub boundary_loss: f64,
    pub correct: usize,
    /// Max |input| per polynomial site in this batch.
    pub act_max_abs: Vec<(String, f32)>,
    /// The first site whose finite inputs gave a non-finite output.
    pub overflow_site: Option<String>,
}

/// The network as the loop sees it.
/// Callback of [`Trainee::visit`]: (index, values, last gradients).
pub type TensorVisitor<'a> = dyn FnMut(usize, &mut [f32], &[f32]) + 'a;

pub trait Trainee {
    /// Trainable tensors, in the fixed order `visit` uses.
    fn param_meta(&self) -> Vec<ParamMeta>;
    /// Forward + backward on one batch in training mode.
    fn step(
        &mut self,
        x: &[f32],
        y: &[u32],
        batch: usize,
        boundary: Option<&BoundaryLoss>,
        step_seed: u64,
    ) -> Result<StepStats, String>;
    /// Visit (index, values, last gradients) of each trainable tensor.
    fn visit(&mut self, f: &mut TensorVisitor<'_>);
    /// Eval-mode logits, `batch x classes`.
    fn predict(&mut self, x: &[f32], batch: usize) -> Result<Vec<f32>, String>;
    /// Eval-mode logits and the batch's weighted boundary term
    /// (weight * reduce(per-site terms), 0 without polynomial sites).
    fn predict_with_boundary(
        &mut self,
        x: &[f32],
        batch: usize,
        boundary: &BoundaryLoss,
    ) -> Result<(Vec<f32>, f64), String>;
    /// Every tensor a checkpoint holds (including BatchNorm running statistics).
    fn tensors(&self) -> BTreeMap<String, Tensor>;
    fn load(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<(), String>;
}

/// A labelled split: `y.len()` samples of `sample_len` values each.
#[derive(Debug, Clone, Copy)]
pub struct Split<'a> {
    pub x: &'a [f32],
    pub y: &'a [u32],
    pub sample_len: usize,
}

impl Split<'_> {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Augments a batch in place: (values, batch size, seed).
pub type Augment<'a> = &'a dyn Fn(&mut [f32], usize, u64);

pub struct RunData<'a> {
    pub train: Split<'a>,
    pub val: Option<Split<'a>>,
    pub test: Option<Split<'a>>,
    pub classes: usize,
    pub normalization: Normalization,
    pub augment: Option<Augment<'a>>,
    /// When set (by Ctrl-C), training stops after the current batch with
    /// [`RunError::Interrupted`]; completed epochs stay saved for `--resume`.
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Progress {
    /// indicatif bars on stderr.
    Bars,
    Quiet,
    /// One JSON object per line on stdout (epochs, then the summary).
    Json,
}

/// The effective training configuration of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub epochs: u32,
    pub batch: usize,
    pub seed: u64,
    pub optimizer: Optimizer,
    pub poly_lr_scale: f64,
    pub schedule: Schedule,
    pub boundary: Option<BoundaryLoss>,
    pub clip: Option<Clip>,
    /// Fit range B of each polynomial site, to name escaped activations.
    pub site_ranges: BTreeMap<String, f64>,
    pub model_name: String,
    pub model_hash: String,
    /// Extra checkpoint metadata (e.g. `he_compatible`).
    pub metadata: BTreeMap<String, String>,
    pub progress: Progress,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "training diverged at step {step} (epoch {epoch}, batch {batch}): {what}\n  help: {help}"
    )]
    Diverged {
        step: u64,
        epoch: u32,
        batch: usize,
        what: String,
        help: String,
        /// The activation site furthest outside its range in the failing
        /// batch, with its largest |input|.
        site: Option<(String, f32)>,
    },
    #[error("{0}")]
    Network(String),
    #[error("interrupted during epoch {epoch}; {epochs_done} completed epoch(s) are saved")]
    Interrupted { epoch: u32, epochs_done: u32 },
    #[error(transparent)]
    Io(#[from] crate::ir::WeightsError),
    #[error(
        "{path}: cannot resume: {message}\n  help: start a fresh run without --resume, or pick another --out"
    )]
    Resume { path: PathBuf, message: String },
}

/// The outcome of a finished run (also written to `summary.json` by the CLI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub epochs: u32,
    pub steps: u64,
    pub best_epoch: Option<u32>,
    pub best_val_acc: Option<f64>,
    pub final_val_acc: Option<f64>,
    /// Accuracy of the final weights on the test split.
    pub test_acc: Option<f64>,
    pub test_loss: Option<f64>,
    /// Accuracy of `best.safetensors` (the epoch with the best validation
    /// accuracy, `best_epoch`) on the test split: what the official code
    /// reports as test accuracy. Absent in summaries written before it was.
    #[serde(default)]
    pub best_test_acc: Option<f64>,
    #[serde(default)]
    pub best_test_loss: Option<f64>,
    pub seconds: f64,
}

/// Loop state saved after every epoch for `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ResumeState {
    epochs_done: u32,
    steps: u64,
    schedule: LrSchedule,
    best_val_acc: Option<f64>,
    best_epoch: Option<u32>,
    steps_per_param: Vec<u64>,
    seconds: f64,
}

pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
pub const RESUME: &str = "resume.safetensors";
const RESUME_META: &str = "resume_state";
const MODEL_PREFIX: &str = "model/";
const FIRST_PREFIX: &str = "optim.first/";
const SECOND_PREFIX: &str = "optim.second/";

/// SplitMix64 finaliser: derives independent seeds from (seed, counter).
pub fn mix_seed(seed: u64, stream: u64, counter: u64) -> u64 {
    let mut z = seed
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(counter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const STREAM_SHUFFLE: u64 = 1;
const STREAM_AUGMENT: u64 = 2;
const STREAM_STEP: u64 = 3;

/// The sample order of one epoch.
pub fn epoch_order(n: usize, seed: u64, epoch: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix_seed(seed, STREAM_SHUFFLE, epoch.into()));
    order.shuffle(&mut rng);
    order
}

/// Mean cross-entropy and correct count of `logits` against `y`.
pub fn score(logits: &[f32], y: &[u32], classes: usize) -> (f64, usize) {
    let mut loss = 0.0;
    let mut correct = 0;
    for (row, &label) in logits.chunks_exact(classes).zip(y) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
        loss += sum.ln() - f64::from(row[label as usize] - max);
        if argmax(row) == label as usize {
            correct += 1;
        }
    }
    (loss / y.len().max(1) as f64, correct)
}

pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Logits of a whole split, predicted in chunks.
pub fn predict_split(net: &mut dyn Trainee, split: &Split) -> Result<Vec<f32>, String> {
    const CHUNK: usize = 1000;
    let mut out = Vec::new();
    for start in (0..split.len()).step_by(CHUNK) {
        let end = (start + CHUNK).min(split.len());
        let x = &split.x[start * split.sample_len..end * split.sample_len];
        out.extend(net.predict(x, end - start)?);
    }
    Ok(out)
}

fn evaluate(net: &mut dyn Trainee, split: &Split, classes: usize) -> Result<(f64, f64), RunError> {
    let logits = predict_split(net, split).map_err(RunError::Network)?;
    let (loss, correct) = score(&logits, split.y, classes);
    Ok((loss, correct as f64 / split.len().max(1) as f64))
}

/// What validation reports: cross-entropy, accuracy, and (with a boundary
/// loss) its weighted term on the validation inputs.
struct Validation {
    loss: f64,
    acc: f64,
    boundary: Option<f64>,
}

/// Validation as the official code runs it: in batches of twice the
/// training batch, the boundary term of each batch weighted by its size
/// (eval mode: BatchNorm running statistics).
fn validate(
    net: &mut dyn Trainee,
    split: &Split,
    classes: usize,
    boundary: Option<&BoundaryLoss>,
    batch: usize,
) -> Result<Validation, RunError> {
    let Some(bl) = boundary else {
        let (loss, acc) = evaluate(net, split, classes)?;
        return Ok(Validation {
            loss,
            acc,
            boundary: None,
        });
    };
    let chunk = 2 * batch.max(1);
    let mut logits = Vec::with_capacity(split.len() * classes);
    let mut weighted = 0.0;
    for start in (0..split.len()).step_by(chunk) {
        let end = (start + chunk).min(split.len());
        let x = &split.x[start * split.sample_len..end * split.sample_len];
        let (l, b) = net
            .predict_with_boundary(x, end - start, bl)
            .map_err(RunError::Network)?;
        logits.extend(l);
        weighted += b * (end - start) as f64;
    }
    let (loss, correct) = score(&logits, split.y, classes);
    let n = split.len().max(1) as f64;
    Ok(Validation {
        loss,
        acc: correct as f64 / n,
        boundary: Some(weighted / n),
    })
}

/// The loss the plateau schedule watches, as the official code's
/// `val_loss_epoch`: validation cross-entropy plus the weighted boundary
/// term (the training loss when there is no validation split).
fn monitored_loss(row: &EpochMetrics) -> f64 {
    match row.val_loss {
        Some(v) => v + row.val_boundary_loss.unwrap_or(0.0),
        None => row.train_loss,
    }
}

/// Run (or resume) training into `out`; returns the summary.
pub fn train(
    net: &mut dyn Trainee,
    cfg: &RunConfig,
    data: &RunData,
    out: &Path,
    resume: bool,
) -> Result<RunSummary, RunError> {
    let meta = net.param_meta();
    let lens: Vec<usize> = meta.iter().map(|m| m.len).collect();
    let base_lr = cfg.optimizer.lr();
    let mut optim = Optim::new(&cfg.optimizer, &lens);
    let mut state = ResumeState {
        epochs_done: 0,
        steps: 0,
        schedule: LrSchedule::new(
            &cfg.schedule,
            vec![base_lr, base_lr * cfg.poly_lr_scale],
            cfg.epochs,
        ),
        best_val_acc: None,
        best_epoch: None,
        steps_per_param: vec![0; lens.len()],
        seconds: 0.0,
    };
    let mut rows = Vec::new();
    if resume {
        state = load_resume(out, net, &mut optim, &meta, cfg)?;
        rows = metrics::read(out).map_err(|message| RunError::Resume {
            path: out.join("metrics.jsonl"),
            message,
        })?;
        rows.retain(|r| r.epoch <= state.epochs_done);
        state.schedule.set_total_epochs(cfg.epochs);
    }
    let mut bars = Bars::new(cfg.progress, cfg.epochs, state.epochs_done);
    let mut last_val_acc = rows.last().and_then(|r| r.val_acc);
    for epoch in state.epochs_done..cfg.epochs {
        let row = run_epoch(
            net, cfg, data, &meta, &mut optim, &mut state, epoch, &mut bars,
        )?;
        last_val_acc = row.val_acc;
        state.schedule.step(monitored_loss(&row));
        state.epochs_done = epoch + 1;
        state.seconds += row.seconds;
        let epoch_score = row.val_acc.unwrap_or(row.train_acc);
        let ck = checkpoint(net, cfg, data, epoch + 1);
        if state.best_val_acc.is_none_or(|b| epoch_score > b) {
            state.best_val_acc = Some(epoch_score);
            state.best_epoch = Some(epoch + 1);
            ck.save(&out.join(BEST))?;
        }
        ck.save(&out.join(LAST))?;
        bars.epoch_done(&row);
        rows.push(row);
        // Metrics before the resume state: a kill between the two redoes the
        // epoch on resume (rows past the resume state are dropped), instead
        // of losing its row.
        metrics::write(out, &rows)?;
        save_resume(out, net, &optim, &meta, &state, cfg, data)?;
    }
    bars.finish();
    let (test, best_test) = match &data.test {
        Some(split) => {
            let test = evaluate(net, split, data.classes)?;
            let best = evaluate_best(net, split, data.classes, out, &state, test)?;
            (Some(test), best)
        }
        None => (None, None),
    };
    Ok(RunSummary {
        epochs: state.epochs_done,
        steps: state.steps,
        best_epoch: state.best_epoch,
        best_val_acc: state.best_val_acc,
        final_val_acc: last_val_acc,
        test_loss: test.map(|t| t.0),
        test_acc: test.map(|t| t.1),
        best_test_loss: best_test.map(|t| t.0),
        best_test_acc: best_test.map(|t| t.1),
        seconds: state.seconds,
    })
}

/// (loss, accuracy) of `best.safetensors` on `split`; the network keeps its
/// final weights. When the last epoch was the best, those are the same
/// weights and `final_scores` is the answer.
fn evaluate_best(
    net: &mut dyn Trainee,
    split: &Split,
    classes: usize,
    out: &Path,
    state: &ResumeState,
    final_scores: (f64, f64),
) -> Result<Option<(f64, f64)>, RunError> {
    match state.best_epoch {
        None => Ok(None),
        Some(e) if e == state.epochs_done => Ok(Some(final_scores)),
        Some(_) => {
            let best = Checkpoint::load(&out.join(BEST))?;
            let final_weights = net.tensors();
            net.load(&best.tensors).map_err(RunError::Network)?;
            let scores = evaluate(net, split, classes);
            net.load(&final_weights).map_err(RunError::Network)?;
            scores.map(Some)
        }
    }
}

fn checkpoint(net: &dyn Trainee, cfg: &RunConfig, data: &RunData, epoch: u32) -> Checkpoint {
    let mut metadata = cfg.metadata.clone();
    metadata.insert("epoch".into(), epoch.to_string());
    metadata.insert(
        "trainer".into(),
        format!("pnnc {}", env!("CARGO_PKG_VERSION")),
    );
    Checkpoint {
        model_name: cfg.model_name.clone(),
        model_hash: cfg.model_hash.clone(),
        normalization: data.normalization.clone(),
        tensors: net.tensors(),
        metadata,
    }
}

/// Running sums over one epoch's batches.
#[derive(Default)]
struct EpochSums {
    loss: f64,
    ce: f64,
    boundary: f64,
    correct: usize,
    seen: usize,
    batches: usize,
    grad_norm: f64,
    grad_norm_max: f64,
    act_max_abs: BTreeMap<String, f32>,
}

#[allow(clippy::too_many_arguments)]
fn run_epoch(
    net: &mut dyn Trainee,
    cfg: &RunConfig,
    data: &RunData,
    meta: &[ParamMeta],
    optim: &mut Optim,
    state: &mut ResumeState,
    epoch: u32,
    bars: &mut Bars,
) -> Result<EpochMetrics, RunError> {
    let started = Instant::now();
    let train = &data.train;
    let order = epoch_order(train.len(), cfg.seed, epoch);
    let n_batches = order.len().div_ceil(cfg.batch.max(1));
    bars.start_epoch(epoch, n_batches);
    let lrs = [state.schedule.lr(0), state.schedule.lr(1)];
    let mut sums = EpochSums::default();
    let mut x = Vec::with_capacity(cfg.batch * train.sample_len);
    let mut y = Vec::with_capacity(cfg.batch);
    for (batch_index, idx) in order.chunks(cfg.batch.max(1)).enumerate() {
        if data
            .stop
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(RunError::Interrupted {
                epoch: epoch + 1,
                epochs_done: state.epochs_done,
            });
        }
        x.clear();
        y.clear();
        for &i in idx {
            x.extend_from_slice(&train.x[i * train.sample_len..(i + 1) * train.sample_len]);
            y.push(train.y[i]);
        }
        let step = state.steps;
        if let Some(augment) = data.augment {
            augment(&mut x, idx.len(), mix_seed(cfg.seed, STREAM_AUGMENT, step));
        }
        let seed = mix_seed(cfg.seed, STREAM_STEP, step);
        let stats = net
            .step(&x, &y, idx.len(), cfg.boundary.as_ref(), seed)
            .map_err(RunError::Network)?;
        let overflow = overflowed_site(&stats, &cfg.site_ranges);
        let diverged = |what: String| RunError::Diverged {
            step,
            epoch: epoch + 1,
            batch: batch_index,
            what: format!(
                "{what}{}",
                match overflow {
                    Some(site) => overflow_note(site),
                    None => escaped_site(&stats.act_max_abs, &cfg.site_ranges),
                }
            ),
            help: divergence_help(
                step,
                overflow.or_else(|| worst_site(&stats.act_max_abs, &cfg.site_ranges)),
                overflow.is_some(),
                cfg.boundary.as_ref(),
            ),
            // The site the message names: where a polynomial overflowed, else the
            // one furthest outside its range (a downstream NaN is not the cause).
            site: overflow
                .or_else(|| worst_site(&stats.act_max_abs, &cfg.site_ranges))
                .map(|(name, v, _)| (name.to_string(), v)),
        };
        if !stats.loss.is_finite() {
            return Err(diverged(format!("the loss is {}", stats.loss)));
        }
        let plan = update(net, meta, optim, cfg.clip.as_ref(), lrs)
            .map_err(|i| diverged(format!("the gradient of `{}` is not finite", meta[i].name)))?;
        state.steps += 1;
        sums.add(&stats, idx.len(), plan.norm);
        bars.batch_done(&sums);
    }
    for (i, s) in optim.states.iter().enumerate() {
        state.steps_per_param[i] = s.steps;
    }
    let val = match &data.val {
        Some(split) => Some(validate(
            net,
            split,
            data.classes,
            cfg.boundary.as_ref(),
            cfg.batch,
        )?),
        None => None,
    };
    let b = sums.batches.max(1) as f64;
    Ok(EpochMetrics {
        epoch: epoch + 1,
        train_loss: sums.loss / b,
        train_ce_loss: sums.ce / b,
        train_acc: sums.correct as f64 / sums.seen.max(1) as f64,
        boundary_loss: sums.boundary / b,
        val_loss: val.as_ref().map(|v| v.loss),
        val_acc: val.as_ref().map(|v| v.acc),
        val_boundary_loss: val.as_ref().and_then(|v| v.boundary),
        grad_norm: sums.grad_norm / b,
        grad_norm_max: sums.grad_norm_max,
        lr: lrs[0],
        poly_lr: lrs[1],
        act_max_abs: sums.act_max_abs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl EpochSums {
    fn add(&mut self, s: &StepStats, batch: usize, grad_norm: f64) {
        self.loss += s.loss;
        self.ce += s.ce_loss;
        self.boundary += s.boundary_loss;
        self.correct += s.correct;
        self.seen += batch;
        self.batches += 1;
        self.grad_norm += grad_norm;
        self.grad_norm_max = self.grad_norm_max.max(grad_norm);
        for (site, v) in &s.act_max_abs {
            let e = self.act_max_abs.entry(site.clone()).or_insert(0.0);
            *e = e.max(*v);
        }
    }
}

/// Clip the last gradients and apply one optimizer update at rates
/// `lrs` = [plain, poly]. Err(index) names a tensor with a non-finite
/// gradient; nothing is updated then.
pub fn update(
    net: &mut dyn Trainee,
    meta: &[ParamMeta],
    optim: &mut Optim,
    clip: Option<&Clip>,
    lrs: [f64; 2],
) -> Result<clip::ClipPlan, usize> {
    let mut sq = vec![0.0f64; meta.len()];
    let mut bad_grad = None;
    net.visit(&mut |i, _, g| {
        let s: f64 = g.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        if !s.is_finite() && bad_grad.is_none() {
            bad_grad = Some(i);
        }
        sq[i] = s;
    });
    if let Some(i) = bad_grad {
        return Err(i);
    }
    let plan = clip_plan(clip, meta, &sq);
    net.visit(&mut |i, values, grads| {
        let role = meta[i].role;
        let lr = if role == ParamRole::PolyCoeffs {
            lrs[1]
        } else {
            lrs[0]
        };
        let scale = plan.scale_for(role == ParamRole::BatchNormAffine);
        optim.step(i, lr, values, grads, scale);
    });
    Ok(plan)
}

/// The clipping decision from per-tensor squared gradient norms.
fn clip_plan(clip: Option<&Clip>, meta: &[ParamMeta], sq: &[f64]) -> clip::ClipPlan {
    clip::plan_from_squares(
        clip,
        meta.iter()
            .zip(sq)
            .map(|(m, &s)| (m.role == ParamRole::BatchNormAffine, s)),
    )
}

/// " ; activations escaped at `site` (max |x| = v, fit range B = b)" for the
/// site whose input is non-finite or furthest outside its range.
/// The activation site furthest outside its fit range: (name, max |x|, B).
fn worst_site<'a>(
    acts: &'a [(String, f32)],
    ranges: &BTreeMap<String, f64>,
) -> Option<(&'a str, f32, Option<f64>)> {
    let ratio = |(name, v): &(String, f32)| {
        if !v.is_finite() {
            return f64::INFINITY;
        }
        f64::from(*v) / ranges.get(name).copied().unwrap_or(1.0)
    };
    acts.iter()
        .max_by(|a, b| {
            ratio(a)
                .partial_cmp(&ratio(b))
                .unwrap_or(std::cmp::Ordering::Greater)
        })
        .map(|(name, v)| (name.as_str(), *v, ranges.get(name).copied()))
}

/// The site whose polynomial overflowed first, as (name, max |x|, B).
fn overflowed_site<'a>(
    stats: &'a StepStats,
    ranges: &BTreeMap<String, f64>,
) -> Option<(&'a str, f32, Option<f64>)> {
    let name = stats.overflow_site.as_deref()?;
    let max = stats
        .act_max_abs
        .iter()
        .find(|(n, _)| n == name)
        .map_or(f32::NAN, |(_, v)| *v);
    Some((name, max, ranges.get(name).copied()))
}

fn overflow_note((name, v, range): (&str, f32, Option<f64>)) -> String {
    let range = range
        .map(|b| format!(", fit range B = {b}"))
        .unwrap_or_default();
    format!(
        "; the polynomial at poly site `{name}` overflowed: finite inputs (max |x| = {v}{range}) gave a non-finite output"
    )
}

fn escaped_site(acts: &[(String, f32)], ranges: &BTreeMap<String, f64>) -> String {
    match worst_site(acts, ranges) {
        Some((name, v, range)) => {
            let range = range
                .map(|b| format!(", fit range B = {b}"))
                .unwrap_or_default();
            format!("; activations escaped at poly site `{name}` (max |x| = {v}{range})")
        }
        None => String::new(),
    }
}

/// ln(f32::MAX): beyond this exponent `exp` overflows in float32.
const EXP_OVERFLOW: f64 = 88.7;

/// What to change, given where training diverged: at the initial weights no
/// rate or clipping is to blame, an exp boundary loss overflows float32
/// once |x| - P passes ~88.7, and a polynomial whose own output overflowed
/// (`poly_overflowed`; `worst` is then that site) needs smaller inputs or
/// another basis.
fn divergence_help(
    step: u64,
    worst: Option<(&str, f32, Option<f64>)>,
    poly_overflowed: bool,
    boundary: Option<&BoundaryLoss>,
) -> String {
    let keep = "; the last good checkpoint is kept";
    let poly = worst.filter(|_| poly_overflowed).map(|(name, x, _)| {
        format!(
            "the polynomial at `{name}` overflows float32 at |x| = {x}: in `basis: raw_power` \
             x^degree overflows once |x| > f32::MAX^(1/degree) (56.4 at degree 22); use \
             `basis: chebyshev` (evaluated on x / B), keep the boundary loss on, or lower the degree \
             (`pnnc explain raw_power`)"
        )
    });
    let overflow = poly.or_else(|| match (worst, boundary) {
        (Some((name, x, range)), Some(b)) if b.kind == BoundaryKind::Exp => {
            let p = b.penalty.or(range).unwrap_or(0.0);
            (f64::from(x) - p > EXP_OVERFLOW).then(|| {
                format!(
                    "the exp boundary loss overflows float32 at `{name}`: exp(|x| - P) = exp({x} - {p}) \
                     exceeds exp({EXP_OVERFLOW}); use `boundary: exp(..., cap: 10)` (linear beyond an \
                     excess of 10: cannot overflow) or `boundary: l2(...)`, or a larger fit range B and penalty P"
                )
            })
        }
        _ => None,
    });
    match (step, overflow) {
        (0, Some(o)) => format!("at the initial weights, before any update: {o}{keep}"),
        (0, None) => format!(
            "at the initial weights, before any update: use a larger fit range B or a lower polynomial degree{keep}"
        ),
        (_, Some(o)) => format!("{o}; or lower the learning rate{keep}"),
        (_, None) => format!(
            "lower the learning rate, raise the boundary-loss weight or the fit range B, \
             or keep gradient clipping on{keep}"
        ),
    }
}

fn save_resume(
    out: &Path,
    net: &dyn Trainee,
    optim: &Optim,
    meta: &[ParamMeta],
    state: &ResumeState,
    cfg: &RunConfig,
    data: &RunData,
) -> Result<(), RunError> {
    let mut ck = checkpoint(net, cfg, data, state.epochs_done);
    ck.tensors = net
        .tensors()
        .into_iter()
        .map(|(k, v)| (format!("{MODEL_PREFIX}{k}"), v))
        .collect();
    for (m, s) in meta.iter().zip(&optim.states) {
        for (prefix, buf) in [(FIRST_PREFIX, &s.first), (SECOND_PREFIX, &s.second)] {
            if !buf.is_empty() {
                ck.tensors.insert(
                    format!("{prefix}{}", m.name),
                    Tensor::new(vec![buf.len()], buf.clone()),
                );
            }
        }
    }
    let json = serde_json::to_string(state).map_err(|e| RunError::Resume {
        path: out.join(RESUME),
        message: e.to_string(),
    })?;
    ck.metadata.insert(RESUME_META.into(), json);
    ck.save(&out.join(RESUME))?;
    Ok(())
}

fn load_resume(
    out: &Path,
    net: &mut dyn Trainee,
    optim: &mut Optim,
    meta: &[ParamMeta],
    cfg: &RunConfig,
) -> Result<ResumeState, RunError> {
    let path = out.join(RESUME);
    let err = |message: String| RunError::Resume {
        path: path.clone(),
        message,
    };
    let ck = Checkpoint::load(&path).map_err(|e| err(e.to_string()))?;
    if ck.model_hash != cfg.model_hash {
        return Err(err(format!(
            "the run was for model `{}` (hash {:.12}), not this model file (hash {:.12})",
            ck.model_name, ck.model_hash, cfg.model_hash
        )));
    }
    let json = ck
        .metadata
        .get(RESUME_META)
        .ok_or_else(|| err("no resume state in the file".into()))?;
    let state: ResumeState =
        serde_json::from_str(json).map_err(|e| err(format!("bad resume state: {e}")))?;
    let model: BTreeMap<String, Tensor> = ck
        .tensors
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(MODEL_PREFIX)
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    net.load(&model).map_err(err)?;
    let lens: Vec<usize> = meta.iter().map(|m| m.len).collect();
    let take = |prefix: &str, name: &str| {
        ck.tensors
            .get(&format!("{prefix}{name}"))
            .map(|t| t.data.clone())
            .unwrap_or_default()
    };
    let states = meta
        .iter()
        .zip(&state.steps_per_param)
        .map(|(m, &steps)| ParamState {
            first: take(FIRST_PREFIX, &m.name),
            second: take(SECOND_PREFIX, &m.name),
            steps,
        })
        .collect();
    optim
        .restore(states, &lens)
        .map_err(|e| err(e.to_string()))?;
    if state.epochs_done > cfg.epochs {
        return Err(err(format!(
            "the run already has {} epochs, more than --epochs {}",
            state.epochs_done, cfg.epochs
        )));
    }
    Ok(state)
}

/// Progress output: indicatif bars, nothing, or JSON lines.
struct Bars {
    mode: Progress,
    epochs: Option<indicatif::ProgressBar>,
    batches: Option<indicatif::ProgressBar>,
    multi: indicatif::MultiProgress,
}

impl Bars {
    fn new(mode: Progress, epochs: u32, done: u32) -> Bars {
        let multi = indicatif::MultiProgress::new();
        let epochs = (mode == Progress::Bars).then(|| {
            let bar = multi.add(indicatif::ProgressBar::new(epochs.into()));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "epoch {pos}/{len} {bar:30} {elapsed} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_position(done.into());
            bar
        });
        Bars {
            mode,
            epochs,
            batches: None,
            multi,
        }
    }

    fn start_epoch(&mut self, _epoch: u32, n_batches: usize) {
        if self.mode != Progress::Bars {
            return;
        }
        let bar = self
            .multi
            .add(indicatif::ProgressBar::new(n_batches as u64));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "  batch {pos}/{len} {bar:30} {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        self.batches = Some(bar);
    }

    fn batch_done(&mut self, sums: &EpochSums) {
        if let Some(bar) = &self.batches {
            bar.inc(1);
            let b = sums.batches.max(1) as f64;
            bar.set_message(format!(
                "loss {:.4} acc {:.2}% boundary {:.4}",
                sums.loss / b,
                100.0 * sums.correct as f64 / sums.seen.max(1) as f64,
                sums.boundary / b
            ));
        }
    }

    fn epoch_done(&mut self, row: &EpochMetrics) {
        match self.mode {
            Progress::Json => println!(
                "{}",
                serde_json::to_string(&serde_json::json!({"event": "epoch", "metrics": row}))
                    .unwrap_or_default()
            ),
            Progress::Bars => {
                if let Some(bar) = self.batches.take() {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                if let Some(bar) = &self.epochs {
                    bar.inc(1);
                    let val = row
                        .val_acc
                        .map(|a| format!(" val acc {:.2}%", 100.0 * a))
                        .unwrap_or_default();
                    bar.set_message(format!("train loss {:.4}{val}", row.train_loss));
                    let _ = self.multi.println(format!(
                        "epoch {}: train loss {:.4} acc {:.2}%{val} boundary {:.4} ({:.1}s)",
                        row.epoch,
                        row.train_loss,
                        100.0 * row.train_acc,
                        row.boundary_loss,
                        row.seconds
                    ));
                }
            }
            Progress::Quiet => {}
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = &self.epochs {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ClipExcept;

    /// Softmax regression with a per-class BatchNorm-like gain:
    /// logits_c = gamma_c * (W x + b)_c. Gradients by hand.
    struct Softmax {
        d: usize,
        k: usize,
        w: Vec<f32>,
        b: Vec<f32>,
        gamma: Vec<f32>,
        grads: [Vec<f32>; 3],
        /// Make the loss NaN from this step on (divergence test).
        nan_from_step: Option<u64>,
        steps: u64,
        /// The boundary term `predict_with_boundary` reports: this times
        /// the number of validation calls so far (a term that grows).
        val_boundary_step: f64,
        val_calls: u64,
    }

    impl Softmax {
        fn new(d: usize, k: usize) -> Softmax {
            let w = (0..d * k)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.01)
                .collect();
            Softmax {
                d,
                k,
                w,
                b: vec![0.0; k],
                gamma: vec![1.0; k],
                grads: [vec![0.0; d * k], vec![0.0; k], vec![0.0; k]],
                nan_from_step: None,
                steps: 0,
                val_boundary_step: 0.0,
                val_calls: 0,
            }
        }

        fn pre(&self, x: &[f32]) -> Vec<f32> {
            (0..self.k)
                .map(|c| {
                    let row = &self.w[c * self.d..(c + 1) * self.d];
                    row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + self.b[c]
                })
                .collect()
        }
    }

    impl Trainee for Softmax {
        fn param_meta(&self) -> Vec<ParamMeta> {
            let m = |name: &str, role, len| ParamMeta {
                name: name.into(),
                role,
                len,
            };
            vec![
                m("fc.weight", ParamRole::Plain, self.d * self.k),
                m("fc.bias", ParamRole::Plain, self.k),
                m("bn.gamma", ParamRole::BatchNormAffine, self.k),
            ]
        }

        fn step(
            &mut self,
            x: &[f32],
            y: &[u32],
            batch: usize,
            _: Option<&BoundaryLoss>,
            _: u64,
        ) -> Result<StepStats, String> {
            for g in &mut self.grads {
                g.iter_mut().for_each(|v| *v = 0.0);
            }
            let mut logits = Vec::new();
            for (xi, &yi) in x.chunks_exact(self.d).zip(y) {
                let pre = self.pre(xi);
                let l: Vec<f32> = pre.iter().zip(&self.gamma).map(|(p, g)| p * g).collect();
                let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = l.iter().map(|v| (v - max).exp()).collect();
                let s: f32 = e.iter().sum();
                for c in 0..self.k {
                    let dl = (e[c] / s - if c == yi as usize { 1.0 } else { 0.0 }) / batch as f32;
                    self.grads[2][c] += dl * pre[c];
                    let dpre = dl * self.gamma[c];
                    self.grads[1][c] += dpre;
                    let row = &mut self.grads[0][c * self.d..(c + 1) * self.d];
                    for (g, &xv) in row.iter_mut().zip(xi) {
                        *g += dpre * xv;
                    }
                }
                logits.extend(l);
            }
            let (loss, correct) = score(&logits, y, self.k);
            self.steps += 1;
            let nan = self.nan_from_step.is_some_and(|s| self.steps > s);
            let act = if nan { f32::INFINITY } else { 1.0 };
            Ok(StepStats {
                loss: if nan { f64::NAN } else { loss },
                ce_loss: loss,
                boundary_loss: 0.0,
                correct,
                act_max_abs: vec![("act1".into(), 2.0), ("act2".into(), act)],
                overflow_site: None,
            })
        }

        fn visit(&mut self, f: &mut TensorVisitor<'_>) {
            f(0, &mut self.w, &self.grads[0]);
            f(1, &mut self.b, &self.grads[1]);
            f(2, &mut self.gamma, &self.grads[2]);
        }

        fn predict(&mut self, x: &[f32], _: usize) -> Result<Vec<f32>, String> {
            Ok(x.chunks_exact(self.d)
                .flat_map(|xi| {
                    let pre = self.pre(xi);
                    pre.into_iter()
                        .zip(&self.gamma)
                        .map(|(p, g)| p * g)
                        .collect::<Vec<_>>()
                })
                .collect())
        }

        fn predict_with_boundary(
            &mut self,
            x: &[f32],
            batch: usize,
            _: &BoundaryLoss,
        ) -> Result<(Vec<f32>, f64), String> {
            self.val_calls += 1;
            let b = self.val_boundary_step * self.val_calls as f64;
            Ok((self.predict(x, batch)?, b))
        }

        fn tensors(&self) -> BTreeMap<String, Tensor> {
            [
                ("fc.weight", vec![self.k, self.d], &self.w),
                ("fc.bias", vec![self.k], &self.b),
                ("bn.gamma", vec![self.k], &self.gamma),
            ]
            .into_iter()
            .map(|(n, s, v)| (n.to_string(), Tensor::new(s, v.clone())))
            .collect()
        }

        fn load(&mut self, t: &BTreeMap<String, Tensor>) -> Result<(), String> {
            let get = |n: &str| t.get(n).map(|t| t.data.clone()).ok_or(format!("no {n}"));
            self.w = get("fc.weight")?;
            self.b = get("fc.bias")?;
            self.gamma = get("bn.gamma")?;
            Ok(())
        }
    }

    /// Three Gaussian blobs in 4-D, deterministic.
    fn blobs(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
        use rand::Rng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let c = (i % 3) as u32;
            for j in 0..4 {
                let centre = if j == c as usize { 2.0 } else { 0.0 };
                x.push(centre + rng.gen_range(-1.0f32..1.0));
            }
            y.push(c);
        }
        (x, y)
    }

    fn config(epochs: u32) -> RunConfig {
        RunConfig {
            epochs,
            batch: 16,
            seed: 7,
            optimizer: Optimizer::AdamW {
                lr: 0.05,
                weight_decay: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            poly_lr_scale: 0.1,
            schedule: Schedule::Cosine { min_lr: 0.0 },
            boundary: None,
            clip: Some(Clip {
                max_norm: 1.0,
                except: ClipExcept::BatchNorm,
            }),
            site_ranges: [("act2".to_string(), 12.0)].into_iter().collect(),
            model_name: "blobs".into(),
            model_hash: "hash-blobs".into(),
            metadata: BTreeMap::new(),
            progress: Progress::Quiet,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pnnc-run-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    struct Fixture {
        train: (Vec<f32>, Vec<u32>),
        val: (Vec<f32>, Vec<u32>),
        test: (Vec<f32>, Vec<u32>),
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                train: blobs(240, 1),
                val: blobs(60, 2),
                test: blobs(90, 3),
            }
        }
        fn data(&self) -> RunData<'_> {
            fn split(d: &(Vec<f32>, Vec<u32>)) -> Split<'_> {
                Split {
                    x: &d.0,
                    y: &d.1,
                    sample_len: 4,
                }
            }
            RunData {
                train: split(&self.train),
                val: Some(split(&self.val)),
                test: Some(split(&self.test)),
                classes: 3,
                normalization: Normalization {
                    mean: vec![0.5],
                    std: vec![2.0],
                },
                augment: None,
                stop: None,
            }
        }
    }

    #[test]
    fn training_lowers_the_loss_and_writes_the_run_folder() {
        let fx = Fixture::new();
        let dir = temp_dir("falls");
        let mut net = Softmax::new(4, 3);
        let summary = train(&mut net, &config(4), &fx.data(), &dir, false).unwrap();
        let rows = metrics::read(&dir).unwrap();
        assert_eq!(rows.len(), 4);
        assert!(rows[3].train_loss < 0.7 * rows[0].train_loss, "{rows:?}");
        assert!(summary.test_acc.unwrap() > 0.8, "{summary:?}");
        // The best epoch's test accuracy is reported too (here the last epoch or another).
        assert!(summary.best_test_acc.unwrap() > 0.5, "{summary:?}");
        if summary.best_epoch == Some(4) {
            assert_eq!(summary.best_test_acc, summary.test_acc);
        }
        assert_eq!(summary.steps, 4 * 15);
        // Cosine schedule: epoch 3's rate is half the base, poly group 0.1x.
        assert!((rows[2].lr - 0.025).abs() < 1e-12 && (rows[2].poly_lr - 0.0025).abs() < 1e-12);
        assert_eq!(rows[0].act_max_abs.get("act1"), Some(&2.0));
        for f in [LAST, BEST, RESUME, "metrics.csv"] {
            assert!(dir.join(f).is_file(), "{f} missing");
        }
        let last = Checkpoint::load(&dir.join(LAST)).unwrap();
        assert_eq!(last.model_hash, "hash-blobs");
        assert_eq!(last.normalization.std, vec![2.0]);
        assert_eq!(last.metadata.get("epoch").map(String::as_str), Some("4"));
        assert_eq!(last.tensors, net.tensors());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The best checkpoint is scored on the test split while the network
    /// keeps its final weights.
    #[test]
    fn best_checkpoint_is_scored_and_the_final_weights_kept() {
        let fx = Fixture::new();
        let data = fx.data();
        let test = data.test.unwrap();
        let dir = temp_dir("best");
        std::fs::create_dir_all(&dir).unwrap();
        let mut net = Softmax::new(4, 3);
        train(&mut net, &config(1), &fx.data(), &dir, false).unwrap();
        let best_scores = evaluate(&mut net, &test, 3).unwrap();
        // Later weights, as after more epochs: worse and different.
        net.w.iter_mut().for_each(|v| *v = -*v);
        let final_weights = net.tensors();
        let final_scores = evaluate(&mut net, &test, 3).unwrap();
        assert_ne!(final_scores, best_scores);
        let mut state = ResumeState {
            epochs_done: 2,
            steps: 30,
            schedule: LrSchedule::new(&Schedule::Constant, vec![0.05], 2),
            best_val_acc: Some(0.9),
            best_epoch: Some(1),
            steps_per_param: vec![30; 3],
            seconds: 0.0,
        };
        let got = evaluate_best(&mut net, &test, 3, &dir, &state, final_scores).unwrap();
        assert_eq!(got, Some(best_scores));
        assert_eq!(net.tensors(), final_weights);
        // Best = last epoch: the final scores, no reload.
        state.epochs_done = 1;
        let got = evaluate_best(&mut net, &test, 3, &dir, &state, final_scores).unwrap();
        assert_eq!(got, Some(final_scores));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// With a boundary loss, validation reports its weighted term and the
    /// plateau schedule watches cross-entropy + that term (the official
    /// `val_loss_epoch`): a term that grows every epoch makes every epoch
    /// bad, and the rate falls; without it the falling cross-entropy keeps
    /// the rate.
    #[test]
    fn plateau_watches_the_validation_boundary_term() {
        let fx = Fixture::new();
        let mut cfg = config(3);
        cfg.schedule = Schedule::Plateau {
            factor: 0.5,
            patience: 0,
            min_lr: 0.0,
            threshold: 1e-4,
        };
        let run = |boundary: Option<BoundaryLoss>| {
            let dir = temp_dir("val-boundary");
            let mut net = Softmax::new(4, 3);
            net.val_boundary_step = 5.0;
            let mut cfg = cfg.clone();
            cfg.boundary = boundary;
            train(&mut net, &cfg, &fx.data(), &dir, false).unwrap();
            let rows = metrics::read(&dir).unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            rows
        };
        let rows = run(None);
        assert!(rows.iter().all(|r| r.val_boundary_loss.is_none()));
        assert!(rows[2].val_loss < rows[0].val_loss, "{rows:?}");
        assert_eq!(rows[2].lr, 0.05, "{rows:?}");
        let exp = BoundaryLoss {
            kind: BoundaryKind::Exp,
            penalty: None,
            weight: 10.0,
            reduce: crate::ir::Reduce::Sum,
        };
        let rows = run(Some(exp));
        // One validation call per chunk of 2 x 16 samples: 60 samples, 2 calls
        // per epoch, weighted by size: epoch 1 (5 * 32 + 10 * 28) / 60.
        let want = (5.0 * 32.0 + 10.0 * 28.0) / 60.0;
        assert!(
            (rows[0].val_boundary_loss.unwrap() - want).abs() < 1e-12,
            "{rows:?}"
        );
        assert_eq!(rows[1].lr, 0.05);
        assert_eq!(rows[2].lr, 0.025, "{rows:?}");
    }

    #[test]
    fn resume_continues_exactly() {
        let fx = Fixture::new();
        let straight = temp_dir("straight");
        let mut a = Softmax::new(4, 3);
        let mut cfg = config(2);
        cfg.schedule = Schedule::Plateau {
            factor: 0.5,
            patience: 0,
            min_lr: 0.0,
            threshold: 0.1,
        };
        let sa = train(&mut a, &cfg, &fx.data(), &straight, false).unwrap();

        let split = temp_dir("split");
        let mut b = Softmax::new(4, 3);
        let mut cfg1 = cfg.clone();
        cfg1.epochs = 1;
        train(&mut b, &cfg1, &fx.data(), &split, false).unwrap();
        // A fresh process: a new network, everything from the run folder.
        let mut c = Softmax::new(4, 3);
        c.w.iter_mut().for_each(|v| *v = 9.0);
        let sc = train(&mut c, &cfg, &fx.data(), &split, true).unwrap();
        assert_eq!(a.tensors(), c.tensors());
        assert_eq!(sa.test_acc, sc.test_acc);
        assert_eq!(sa.steps, sc.steps);
        let strip = |dir: &Path| {
            let mut rows = metrics::read(dir).unwrap();
            rows.iter_mut().for_each(|r| r.seconds = 0.0);
            rows
        };
        assert_eq!(strip(&straight), strip(&split));
        std::fs::remove_dir_all(&straight).unwrap();
        std::fs::remove_dir_all(&split).unwrap();
    }

    #[test]
    fn a_stop_request_ends_the_epoch_early_and_resume_finishes_the_run() {
        let fx = Fixture::new();
        let straight = temp_dir("stop-straight");
        let mut a = Softmax::new(4, 3);
        train(&mut a, &config(2), &fx.data(), &straight, false).unwrap();
        let dir = temp_dir("stop");
        let mut cfg1 = config(2);
        cfg1.epochs = 1;
        train(&mut Softmax::new(4, 3), &cfg1, &fx.data(), &dir, false).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(true);
        let data = RunData {
            stop: Some(&stop),
            ..fx.data()
        };
        let err = train(&mut Softmax::new(4, 3), &config(2), &data, &dir, true).unwrap_err();
        assert!(
            matches!(
                err,
                RunError::Interrupted {
                    epoch: 2,
                    epochs_done: 1
                }
            ),
            "{err}"
        );
        let mut c = Softmax::new(4, 3);
        train(&mut c, &config(2), &fx.data(), &dir, true).unwrap();
        assert_eq!(a.tensors(), c.tensors());
        assert_eq!(metrics::read(&dir).unwrap().len(), 2);
        std::fs::remove_dir_all(&straight).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_metrics_write_leaves_the_epoch_to_redo_not_a_lost_row() {
        let fx = Fixture::new();
        let dir = temp_dir("metrics-kill");
        let mut cfg1 = config(2);
        cfg1.epochs = 1;
        train(&mut Softmax::new(4, 3), &cfg1, &fx.data(), &dir, false).unwrap();
        // The metrics write of epoch 2 fails (as a kill there would stop it).
        let blocker = dir.join(format!(".metrics.jsonl.tmp{}", std::process::id()));
        std::fs::create_dir_all(&blocker).unwrap();
        let err = train(&mut Softmax::new(4, 3), &config(2), &fx.data(), &dir, true);
        assert!(matches!(err, Err(RunError::Io(_))), "{err:?}");
        std::fs::remove_dir_all(&blocker).unwrap();
        // The resume state still says one epoch: epoch 2 is redone and its row written.
        train(&mut Softmax::new(4, 3), &config(2), &fx.data(), &dir, true).unwrap();
        let rows = metrics::read(&dir).unwrap();
        assert_eq!(rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nan_loss_stops_naming_the_step_and_site_and_keeps_the_last_checkpoint() {
        let fx = Fixture::new();
        let dir = temp_dir("nan");
        let mut net = Softmax::new(4, 3);
        // 15 batches per epoch: epoch 1 completes, step 20 (epoch 2, batch 5) fails.
        net.nan_from_step = Some(20);
        let err = train(&mut net, &config(3), &fx.data(), &dir, false).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("step 20 (epoch 2, batch 5)"), "{msg}");
        assert!(msg.contains("poly site `act2`"), "{msg}");
        assert!(msg.contains("fit range B = 12"), "{msg}");
        let last = Checkpoint::load(&dir.join(LAST)).unwrap();
        assert_eq!(last.metadata.get("epoch").map(String::as_str), Some("1"));
        assert!(
            last.tensors
                .values()
                .all(|t| t.data.iter().all(|v| v.is_finite()))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The paper's raw power form at degree 22 fed inputs past 56.4 (here
    /// up to 25 x 3): float32 x^22 overflows, the loss is not finite, and
    /// the run stops at step 0 naming the site whose polynomial overflowed.
    /// The Chebyshev form of the same fit trains on the same data.
    #[test]
    fn raw_power_overflow_stops_the_run_naming_the_site() {
        use crate::ir::Basis;
        use crate::train::backend::network::{Network, NetworkOptions};
        use crate::train::models::{SeqBuilder, model_from_ops, relu_poly};
        let mut fx = Fixture::new();
        fx.train.0.iter_mut().for_each(|v| *v *= 25.0);
        let mut cfg = config(1);
        cfg.site_ranges = [("poly0".to_string(), 47.0), ("poly2".to_string(), 47.0)]
            .into_iter()
            .collect();
        // With `downstream`, a second site sees the first one's inf/NaN: the
        // cause reported is still the first.
        let net = |basis, downstream: bool| {
            let mut s = SeqBuilder::new("", vec![4]);
            s.poly(&relu_poly(22, 47.0, basis));
            if downstream {
                s.dense(4, true).poly(&relu_poly(22, 47.0, basis));
            }
            s.dense(3, true);
            let model = model_from_ops("raw", vec![4], 3, s.ops);
            Network::new(&model, 1, &NetworkOptions::default()).unwrap()
        };
        let dir = temp_dir("raw-overflow");
        let err = train(
            &mut net(Basis::RawPower, true),
            &cfg,
            &fx.data(),
            &dir,
            false,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, RunError::Diverged { site: Some((name, x)), .. } if name == "poly0" && x.is_finite()),
            "{err:?}"
        );
        assert!(
            msg.contains("diverged at step 0 (epoch 1, batch 0)"),
            "{msg}"
        );
        assert!(msg.contains("the loss is"), "{msg}");
        assert!(
            msg.contains("the polynomial at poly site `poly0` overflowed: finite inputs"),
            "{msg}"
        );
        assert!(msg.contains("fit range B = 47"), "{msg}");
        assert!(
            msg.contains("basis: chebyshev") && msg.contains("56.4"),
            "{msg}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let summary = train(
            &mut net(Basis::Chebyshev, false),
            &cfg,
            &fx.data(),
            &dir,
            false,
        )
        .unwrap();
        assert_eq!(summary.steps, 15);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_refuses_a_run_of_another_model() {
        let fx = Fixture::new();
        let dir = temp_dir("other");
        train(&mut Softmax::new(4, 3), &config(1), &fx.data(), &dir, false).unwrap();
        let mut cfg = config(2);
        cfg.model_hash = "different".into();
        let err = train(&mut Softmax::new(4, 3), &cfg, &fx.data(), &dir, true).unwrap_err();
        assert!(err.to_string().contains("cannot resume"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(100, 5, 0);
        assert_eq!(a, epoch_order(100, 5, 0));
        assert_ne!(a, epoch_order(100, 5, 1));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn divergence_help_names_the_cause() {
        let exp = BoundaryLoss {
            kind: BoundaryKind::Exp,
            penalty: Some(12.0),
            weight: 10.0,
            reduce: crate::ir::Reduce::Sum,
        };
        let far = Some(("stage3.poly1", 113.7f32, Some(12.0)));
        let near = Some(("stage3.poly1", 30.0f32, Some(12.0)));
        // ResNet-20 at degree 2: |x| = 113.7 at the initial weights.
        let h = divergence_help(0, far, false, Some(&exp));
        assert!(
            h.starts_with("at the initial weights, before any update"),
            "{h}"
        );
        assert!(h.contains("exp(113.7 - 12)") && h.contains("l2"), "{h}");
        assert!(h.contains("cap: 10"), "{h}");
        assert!(!h.contains("learning rate"), "{h}");
        let h = divergence_help(5, far, false, Some(&exp));
        assert!(
            h.contains("overflows float32") && h.contains("learning rate"),
            "{h}"
        );
        // No overflow: the usual advice; l2 never overflows at these values.
        let h = divergence_help(5, near, false, Some(&exp));
        assert!(h.starts_with("lower the learning rate"), "{h}");
        let l2 = BoundaryLoss {
            kind: BoundaryKind::L2,
            ..exp.clone()
        };
        assert!(!divergence_help(5, far, false, Some(&l2)).contains("overflows"));
        let capped = BoundaryLoss {
            kind: BoundaryKind::ExpCapped { cap: 10.0 },
            ..exp.clone()
        };
        assert!(!divergence_help(5, far, false, Some(&capped)).contains("overflows"));
        let h = divergence_help(0, near, false, None);
        assert!(h.contains("larger fit range B"), "{h}");
        // P defaults to the site's own range when the loss names none.
        let own = BoundaryLoss {
            penalty: None,
            ..exp
        };
        assert!(divergence_help(0, far, false, Some(&own)).contains("exp(113.7 - 12)"));
    }
}
