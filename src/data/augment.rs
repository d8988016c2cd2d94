//! Seeded train-time augmentation of a batch of normalised samples.
//!
//! Images `[C, H, W]`: random crop after zero padding, horizontal flip.
//! Spectrograms `[1, mels, frames]`: one random time mask (SpecAugment).
//! Zero is the training mean after normalisation, so padding and masks use 0.

use crate::ir::DataSpec;
use rand::{Rng, SeedableRng};

/// Augment every sample of `batch` (n * prod(sample_shape) values) in place.
/// The same seed gives the same result; no-op when the spec configures none.
pub fn augment_batch(spec: &DataSpec, sample_shape: &[usize], batch: &mut [f32], seed: u64) {
    let a = spec.augment;
    let len: usize = sample_shape.iter().product();
    if a.is_none() || len == 0 {
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut scratch = vec![0f32; len];
    for sample in batch.chunks_exact_mut(len) {
        if let [c, h, w] = *sample_shape
            && (a.crop_padding > 0 || a.hflip)
        {
            let p = a.crop_padding as isize;
            let dy = rng.gen_range(-p..=p);
            let dx = rng.gen_range(-p..=p);
            let flip = a.hflip && rng.gen_bool(0.5);
            shift_flip(sample, &mut scratch, [c, h, w], dy, dx, flip);
        }
        if a.time_mask > 0 && sample_shape.len() >= 2 {
            let frames = sample_shape[sample_shape.len() - 1];
            let width = rng.gen_range(0..=a.time_mask.min(frames));
            let start = rng.gen_range(0..=frames - width);
            for row in sample.chunks_exact_mut(frames) {
                row[start..start + width].fill(0.0);
            }
        }
    }
}

/// out[y][x] = in[y + dy][x' + dx] (zero outside), x' mirrored when `flip`.
fn shift_flip(
    sample: &mut [f32],
    scratch: &mut [f32],
    [c, h, w]: [usize; 3],
    dy: isize,
    dx: isize,
    flip: bool,
) {
    if dy == 0 && dx == 0 && !flip {
        return;
    }
    scratch.copy_from_slice(sample);
    for ch in 0..c {
        let plane = &scratch[ch * h * w..(ch + 1) * h * w];
        let out = &mut sample[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let sy = y as isize + dy;
            for x in 0..w {
                let xx = if flip { w - 1 - x } else { x };
                let sx = xx as isize + dx;
                out[y * w + x] = if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                    plane[sy as usize * w + sx as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Value;

    fn spec(name: &str, args: &[(&str, Value)]) -> DataSpec {
        let args: Vec<_> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        DataSpec::from_call(name, &args).unwrap()
    }

    #[test]
    fn no_augmentation_is_a_no_op() {
        let s = spec("cifar10", &[]);
        let mut b: Vec<f32> = (0..2 * 3 * 4 * 4).map(|i| i as f32).collect();
        let before = b.clone();
        augment_batch(&s, &[3, 4, 4], &mut b, 1);
        assert_eq!(b, before);
    }

    #[test]
    fn crop_and_flip_are_seeded_and_preserve_content() {
        let s = spec(
            "cifar10",
            &[("crop", Value::Int(1)), ("hflip", Value::Bool(true))],
        );
        let orig: Vec<f32> = (1..=8 * 3 * 4 * 4).map(|i| i as f32).collect();
        let (mut a, mut b) = (orig.clone(), orig.clone());
        augment_batch(&s, &[3, 4, 4], &mut a, 42);
        augment_batch(&s, &[3, 4, 4], &mut b, 42);
        assert_eq!(a, b);
        assert_ne!(a, orig);
        // Every non-padding value comes from the same channel of the same sample.
        for (i, v) in a.iter().enumerate() {
            if *v != 0.0 {
                assert_eq!((*v as usize - 1) / 16, i / 16, "value {v} at {i}");
            }
        }
    }

    #[test]
    fn flip_only_mirrors_rows() {
        let s = spec("cifar10", &[("hflip", Value::Bool(true))]);
        let orig: Vec<f32> = (0..64 * 3).map(|i| (i % 3) as f32).collect();
        let mut b = orig.clone();
        augment_batch(&s, &[1, 1, 3], &mut b, 3);
        let flipped = (0..64)
            .filter(|i| b[i * 3..i * 3 + 3] == [2.0, 1.0, 0.0])
            .count();
        let kept = (0..64)
            .filter(|i| b[i * 3..i * 3 + 3] == [0.0, 1.0, 2.0])
            .count();
        assert_eq!(flipped + kept, 64);
        assert!(flipped > 10 && kept > 10);
    }

    #[test]
    fn time_mask_zeroes_one_span_in_every_band() {
        let s = spec("fsdd", &[("time_mask", Value::Int(3))]);
        let mut b = vec![1.0f32; 20 * 4 * 10];
        augment_batch(&s, &[1, 4, 10], &mut b, 9);
        for sample in b.chunks(40) {
            let zeros: Vec<usize> = sample[..10].iter().map(|&v| (v == 0.0) as usize).collect();
            assert!(zeros.iter().sum::<usize>() <= 3);
            for band in sample.chunks(10) {
                let z: Vec<usize> = band.iter().map(|&v| (v == 0.0) as usize).collect();
                assert_eq!(z, zeros);
            }
        }
        assert!(b.contains(&0.0));
    }
}
