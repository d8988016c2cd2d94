//! Concatenation along the first axis of each sample (`concat`): sample s of
//! the output is branch 1's sample s, then branch 2's, ... (channel-major
//! layouts put a channel's values together, so joining channels joins
//! per-sample blocks). The backward pass splits the gradient the same way.

use super::real::Real;

/// y[s] = x_1[s] ++ x_2[s] ++ ...; `lens[i]` values per sample of `xs[i]`.
pub fn concat_forward<T: Copy>(xs: &[&[T]], lens: &[usize], batch: usize, y: &mut [T]) {
    let total: usize = lens.iter().sum();
    for s in 0..batch {
        let mut at = s * total;
        for (x, &n) in xs.iter().zip(lens) {
            y[at..at + n].copy_from_slice(&x[s * n..(s + 1) * n]);
            at += n;
        }
    }
}

/// Adds branch `branch`'s part of every sample of `dy` into its gradient `dx`.
pub fn concat_backward<T: Real>(
    dy: &[T],
    lens: &[usize],
    branch: usize,
    batch: usize,
    dx: &mut [T],
) {
    let total: usize = lens.iter().sum();
    let offset: usize = lens[..branch].iter().sum();
    let n = lens[branch];
    for s in 0..batch {
        let from = &dy[s * total + offset..s * total + offset + n];
        for (d, &g) in dx[s * n..(s + 1) * n].iter_mut().zip(from) {
            *d += g;
        }
    }
}
