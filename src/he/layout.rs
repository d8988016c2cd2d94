//! Slot layouts: where each element of a value sits inside its sample's block.
//!
//! A `[C, H, W]` value is laid out on a `grid` of `rows x cols` slots per
//! channel group, with its pixels `gap` slots apart; the `gap²` positions
//! around each pixel hold `gap²` different channels (multiplexed packing, as
//! in Lee et al., "Low-complexity deep convolutional neural networks on fully
//! homomorphic encryption using multiplexed parallel convolutions", 2022).
//!
//! Why: a stride-2 convolution from a dense layout to a dense layout reads
//! input slot `2·i` for output slot `i`, so its matrix has a different
//! diagonal for almost every output position (the MNIST CNN's stride-2 convs
//! had 18,412 and 9,305). Keeping the output on the input's grid, `gap`
//! times sparser, makes the offset from output to input slot independent of
//! the position, so a convolution needs about (channel groups in + out) x
//! kernel taps x gap² diagonals, whatever the image size.
//!
//! Dense row-major CHW is `gap = 1`, `grid = [H, W]`. Vectors (rank != 3)
//! have no layout: element `i` is slot `i`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotLayout {
    /// Distance in slots (rows and columns of the grid) between neighbouring pixels.
    pub gap: usize,
    /// Rows and columns of one channel group's grid.
    pub grid: [usize; 2],
}

impl SlotLayout {
    /// Row-major CHW.
    pub fn dense(shape: &[usize]) -> Option<Self> {
        match shape {
            [_, h, w] => Some(SlotLayout {
                gap: 1,
                grid: [*h, *w],
            }),
            _ => None,
        }
    }

    fn group(&self) -> usize {
        self.gap * self.gap
    }

    /// Slot of element (c, h, w).
    pub fn slot(&self, c: usize, h: usize, w: usize) -> usize {
        let (group, within) = (c / self.group(), c % self.group());
        let (dr, dc) = (within / self.gap, within % self.gap);
        group * self.grid[0] * self.grid[1] + (self.gap * h + dr) * self.grid[1] + self.gap * w + dc
    }

    /// Slots a `[C, H, W]` value occupies (gaps included).
    pub fn slots(&self, channels: usize) -> usize {
        channels.div_ceil(self.group()) * self.grid[0] * self.grid[1]
    }

    /// Whether a `[C, H, W]` value can use this layout without two elements
    /// sharing a slot.
    pub fn holds(&self, shape: &[usize]) -> bool {
        match shape {
            [_, h, w] => {
                self.gap >= 1
                    && self.grid[0] >= 1
                    && self.grid[1] >= 1
                    && self.gap * h <= self.grid[0]
                    && self.gap * w <= self.grid[1]
            }
            _ => false,
        }
    }
}

/// Slots a value of `shape` occupies in `layout` (flat when `None`).
pub fn footprint(shape: &[usize], layout: Option<&SlotLayout>) -> usize {
    match (layout, shape) {
        (Some(l), [c, _, _]) => l.slots(*c),
        _ => shape.iter().product(),
    }
}

/// Slot of every element of a value, in logical (row-major) order.
pub fn slot_map(shape: &[usize], layout: Option<&SlotLayout>) -> Vec<usize> {
    match (layout, shape) {
        (Some(l), &[c, h, w]) => {
            let mut out = Vec::with_capacity(c * h * w);
            for ci in 0..c {
                for hi in 0..h {
                    for wi in 0..w {
                        out.push(l.slot(ci, hi, wi));
                    }
                }
            }
            out
        }
        _ => (0..shape.iter().product()).collect(),
    }
}

/// Layout of a linear op's output: on its input's grid when the output's
/// image divides it evenly (a strided conv or pooling then costs no extra
/// diagonals per position) and the gaps waste at most half the slots;
/// dense otherwise.
pub fn after_linear(input: Option<&SlotLayout>, out_shape: &[usize]) -> Option<SlotLayout> {
    let &[c, h, w] = out_shape else {
        return None;
    };
    let dense = SlotLayout::dense(out_shape);
    let Some(l) = input else {
        return dense;
    };
    let [rows, cols] = l.grid;
    if h == 0 || w == 0 || rows % h != 0 || cols % w != 0 || rows / h != cols / w {
        return dense;
    }
    let candidate = SlotLayout {
        gap: rows / h,
        grid: l.grid,
    };
    if candidate.gap < l.gap || candidate.slots(c) > 2 * c * h * w {
        return dense;
    }
    Some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_layout_is_row_major_chw() {
        let shape = [3, 4, 5];
        let l = SlotLayout::dense(&shape);
        assert_eq!(slot_map(&shape, l.as_ref()), (0..60).collect::<Vec<_>>());
        assert_eq!(footprint(&shape, l.as_ref()), 60);
        assert_eq!(footprint(&[10], None), 10);
    }

    #[test]
    fn multiplexed_layout_is_a_bijection_into_its_footprint() {
        let l = SlotLayout {
            gap: 2,
            grid: [28, 28],
        };
        let shape = [32, 14, 14];
        let slots = slot_map(&shape, Some(&l));
        let mut seen = vec![false; footprint(&shape, Some(&l))];
        for s in slots {
            assert!(!seen[s], "slot {s} used twice");
            seen[s] = true;
        }
        // 32 channels of 14x14 fill 8 groups of 28x28 exactly.
        assert!(seen.iter().all(|&x| x));
        // Channel 3 sits at row 1, column 1 of each 2x2 cell of group 0.
        assert_eq!(l.slot(3, 0, 0), 28 + 1);
        assert_eq!(l.slot(4, 0, 0), 784);
        assert_eq!(l.slot(0, 1, 2), 2 * 28 + 4);
    }

    #[test]
    fn strided_outputs_stay_on_the_input_grid() {
        let dense = SlotLayout::dense(&[16, 28, 28]);
        let l2 = after_linear(dense.as_ref(), &[32, 14, 14]);
        assert_eq!(
            l2,
            Some(SlotLayout {
                gap: 2,
                grid: [28, 28]
            })
        );
        let l4 = after_linear(l2.as_ref(), &[64, 7, 7]);
        assert_eq!(l4.map(|l| l.gap), Some(4));
        // Same image size: same layout (a stride-1 conv after a strided one).
        assert_eq!(after_linear(l4.as_ref(), &[64, 7, 7]), l4);
        // Vectors are flat; images that do not divide the grid are dense.
        assert_eq!(after_linear(l4.as_ref(), &[10]), None);
        assert_eq!(
            after_linear(dense.as_ref(), &[8, 9, 9]),
            SlotLayout::dense(&[8, 9, 9])
        );
        // Too few channels to fill the gaps: dense.
        assert_eq!(
            after_linear(dense.as_ref(), &[1, 7, 7]),
            SlotLayout::dense(&[1, 7, 7])
        );
    }
}
