//! Softmax cross-entropy over logits `[batch, classes]`, mean over the batch.

use super::real::Real;

pub struct CrossEntropy<T> {
    pub loss: f64,
    pub correct: usize,
    pub dlogits: Vec<T>,
}

/// Labels must be `< classes` (checked by the caller).
pub fn cross_entropy<T: Real>(logits: &[T], labels: &[u32], classes: usize) -> CrossEntropy<T> {
    let batch = labels.len();
    let mut dlogits = vec![T::ZERO; logits.len()];
    let mut loss = 0.0;
    let mut correct = 0;
    for (b, &label) in labels.iter().enumerate() {
        let row = &logits[b * classes..(b + 1) * classes];
        let mut arg = 0;
        for (i, v) in row.iter().enumerate() {
            if *v > row[arg] {
                arg = i;
            }
        }
        if arg == label as usize {
            correct += 1;
        }
        let max = row[arg].to_f64();
        let exps: Vec<f64> = row.iter().map(|v| (v.to_f64() - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        loss += total.ln() - (row[label as usize].to_f64() - max);
        for (i, e) in exps.iter().enumerate() {
            let onehot = if i == label as usize { 1.0 } else { 0.0 };
            dlogits[b * classes + i] = T::from_f64((e / total - onehot) / batch as f64);
        }
    }
    CrossEntropy {
        loss: loss / batch as f64,
        correct,
        dlogits,
    }
}
