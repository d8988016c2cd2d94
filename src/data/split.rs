//! Validation hold-out (by seed or by group), training limit, and per-channel
//! normalisation computed on the training split only.

use super::{DataError, Dataset, LoadOptions, RawData, Splits};
use crate::ir::{DataSpec, Normalization, SplitBy};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

/// Split `raw.train` into train/validation, limit, and normalise all three sets.
pub fn make_splits(spec: &DataSpec, raw: RawData, opts: &LoadOptions) -> Result<Splits, DataError> {
    let (train_idx, val_idx) = split_indices(spec, &raw, opts)?;
    let mut train = raw.train.select(&train_idx);
    let mut val = raw.train.select(&val_idx);
    let mut test = raw.test;
    let normalization = match &opts.normalization {
        Some(n) => {
            check_channels(n, &train.sample_shape)?;
            n.clone()
        }
        None => compute_normalization(&train),
    };
    for set in [&mut train, &mut val, &mut test] {
        apply_normalization(set, &normalization);
    }
    Ok(Splits {
        train,
        val,
        test,
        normalization,
    })
}

/// Sorted indices of the train and validation parts of `raw.train`.
pub fn split_indices(
    spec: &DataSpec,
    raw: &RawData,
    opts: &LoadOptions,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    let n = raw.train.len();
    let want_val = (n as f64 * spec.val_fraction).round() as usize;
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let (mut train, mut val): (Vec<usize>, Vec<usize>) = match spec.split {
        SplitBy::Random => {
            let mut perm: Vec<usize> = (0..n).collect();
            perm.shuffle(&mut rng);
            let val = perm[..want_val].to_vec();
            (perm[want_val..].to_vec(), val)
        }
        SplitBy::Group => {
            if raw.train_groups.len() != n {
                return Err(DataError::Invalid(format!(
                    "data set `{}` has no groups (subjects or speakers) to split by\n  help: use split: random",
                    spec.name()
                )));
            }
            let mut groups: Vec<u32> = raw.train_groups.clone();
            groups.sort_unstable();
            groups.dedup();
            groups.shuffle(&mut rng);
            // Take whole groups until the validation part is large enough.
            let mut chosen = std::collections::HashSet::new();
            let mut taken = 0;
            for g in groups {
                if taken >= want_val {
                    break;
                }
                taken += raw.train_groups.iter().filter(|&&x| x == g).count();
                chosen.insert(g);
            }
            let mut perm: Vec<usize> = (0..n).collect();
            perm.shuffle(&mut rng);
            perm.into_iter()
                .partition(|&i| !chosen.contains(&raw.train_groups[i]))
        }
    };
    if let Some(limit) = opts.limit_train.or(spec.limit_train) {
        train.truncate(limit);
    }
    train.sort_unstable();
    val.sort_unstable();
    Ok((train, val))
}

fn check_channels(n: &Normalization, shape: &[usize]) -> Result<(), DataError> {
    let c = shape.first().copied().unwrap_or(1);
    if n.mean.len() != c || n.std.len() != c {
        return Err(DataError::Invalid(format!(
            "stored normalisation has {} channels but the data has {c} (sample shape {shape:?})\n  help: the weights were trained on another data set; retrain or pass the matching data",
            n.mean.len()
        )));
    }
    Ok(())
}

/// Mean and (population) standard deviation per channel (dim 0 of the sample shape).
pub fn compute_normalization(set: &Dataset) -> Normalization {
    let channels = set.sample_shape.first().copied().unwrap_or(1).max(1);
    let per_channel = set.sample_len() / channels;
    let sums = set
        .x
        .par_chunks(set.sample_len().max(1))
        .fold(
            || vec![(0f64, 0f64); channels],
            |mut acc, sample| {
                for (c, slot) in acc.iter_mut().enumerate() {
                    for &v in &sample[c * per_channel..(c + 1) * per_channel] {
                        slot.0 += v as f64;
                        slot.1 += (v as f64) * (v as f64);
                    }
                }
                acc
            },
        )
        .reduce(
            || vec![(0f64, 0f64); channels],
            |a, b| {
                a.iter()
                    .zip(&b)
                    .map(|(x, y)| (x.0 + y.0, x.1 + y.1))
                    .collect()
            },
        );
    let count = (set.len() * per_channel).max(1) as f64;
    let mut mean = Vec::with_capacity(channels);
    let mut std = Vec::with_capacity(channels);
    for (s, s2) in sums {
        let m = s / count;
        let var = (s2 / count - m * m).max(0.0);
        mean.push(m as f32);
        // A constant channel keeps its scale instead of dividing by zero.
        std.push(if var.sqrt() > 1e-8 {
            var.sqrt() as f32
        } else {
            1.0
        });
    }
    Normalization { mean, std }
}

pub fn apply_normalization(set: &mut Dataset, n: &Normalization) {
    let len = set.sample_len().max(1);
    let channels = n.mean.len().max(1);
    let per_channel = len / channels;
    set.x.par_chunks_mut(len).for_each(|sample| {
        for c in 0..channels {
            let (m, inv) = (n.mean[c], 1.0 / n.std[c]);
            for v in &mut sample[c * per_channel..(c + 1) * per_channel] {
                *v = (*v - m) * inv;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Value;

    fn raw(n: usize) -> RawData {
        let train = Dataset {
            sample_shape: vec![2, 3],
            x: (0..n * 6)
                .map(|i| (i % 11) as f32 + if i % 6 < 3 { 0.0 } else { 100.0 })
                .collect(),
            y: (0..n as u32).map(|i| i % 3).collect(),
            class_names: vec!["a".into(), "b".into(), "c".into()],
        };
        RawData {
            test: train.select(&[0, 1]),
            train_groups: (0..n as u32).map(|i| i % 5).collect(),
            train,
        }
    }

    fn spec(args: &[(&str, Value)]) -> DataSpec {
        let args: Vec<_> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        DataSpec::from_call("hapt", &args).unwrap()
    }

    #[test]
    fn random_split_is_deterministic_and_disjoint() {
        let s = spec(&[("val_fraction", Value::Float(0.2))]);
        let opts = LoadOptions {
            seed: 7,
            ..Default::default()
        };
        let (t1, v1) = split_indices(&s, &raw(100), &opts).unwrap();
        let (t2, v2) = split_indices(&s, &raw(100), &opts).unwrap();
        assert_eq!((&t1, &v1), (&t2, &v2));
        assert_eq!((t1.len(), v1.len()), (80, 20));
        assert!(v1.iter().all(|i| !t1.contains(i)));
        let other = LoadOptions {
            seed: 8,
            ..Default::default()
        };
        assert_ne!(split_indices(&s, &raw(100), &other).unwrap().1, v1);
    }

    #[test]
    fn group_split_keeps_groups_whole_and_limit_applies() {
        let s = spec(&[
            ("val_fraction", Value::Float(0.3)),
            ("split", Value::Ident("subject".into())),
            ("limit_train", Value::Int(10)),
        ]);
        let r = raw(100);
        let (t, v) = split_indices(&s, &r, &LoadOptions::default()).unwrap();
        let vg: std::collections::HashSet<_> = v.iter().map(|&i| r.train_groups[i]).collect();
        assert!(t.iter().all(|&i| !vg.contains(&r.train_groups[i])));
        assert!(v.len() >= 30 && t.len() == 10, "{} {}", v.len(), t.len());
    }

    #[test]
    fn normalisation_uses_train_only_and_is_per_channel() {
        let s = spec(&[("val_fraction", Value::Float(0.5))]);
        let splits = make_splits(&s, raw(50), &LoadOptions::default()).unwrap();
        let n = &splits.normalization;
        assert_eq!(n.mean.len(), 2);
        assert!(n.mean[1] - n.mean[0] > 99.0, "{n:?}");
        // Train: mean 0, std 1 per channel.
        let tr = &splits.train;
        for c in 0..2 {
            let vals: Vec<f64> = (0..tr.len())
                .flat_map(|i| tr.sample(i)[c * 3..c * 3 + 3].to_vec())
                .map(|v| v as f64)
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / vals.len() as f64;
            assert!(m.abs() < 1e-4 && (var - 1.0).abs() < 1e-3, "{m} {var}");
        }
        // Stored statistics are reused verbatim and checked against the shape.
        let opts = LoadOptions {
            normalization: Some(n.clone()),
            ..Default::default()
        };
        let again = make_splits(&s, raw(50), &opts).unwrap();
        assert_eq!(again, splits);
        let bad = LoadOptions {
            normalization: Some(Normalization {
                mean: vec![0.0],
                std: vec![1.0],
            }),
            ..Default::default()
        };
        assert!(
            make_splits(&s, raw(50), &bad)
                .unwrap_err()
                .to_string()
                .contains("channels")
        );
    }
}
