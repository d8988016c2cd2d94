//! Resource bounds of a run, checked before anything is allocated: worker
//! threads by the cores, the batch by the training set and by memory, and
//! settings that would make a run do nothing.

use super::Failure;
use crate::ir::Model;

/// Worker threads: `requested`, or every core when None. Refuses 0 and more
/// threads than cores (they only add switching: `--threads 1000` ran 80
/// times slower than the default, and 100,000 stalled the machine).
pub fn threads(requested: Option<usize>) -> Result<usize, Failure> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match requested {
        None => Ok(cores),
        Some(0) => Err(Failure::usage(
            "--threads 0: at least one worker thread is needed\n  help: omit --threads to use every core",
        )),
        Some(n) if n > cores => Err(Failure::usage(format!(
            "--threads {n}: this machine has {cores} core(s); more threads than cores only slow training down\n  help: pass --threads {cores} or fewer, or omit it to use every core"
        ))),
        Some(n) => Ok(n),
    }
}

/// Refuses settings that make a run train nothing.
pub fn check_settings(
    epochs: u32,
    batch: usize,
    limit_train: Option<usize>,
) -> Result<(), Failure> {
    if epochs == 0 {
        return Err(Failure::usage(
            "--epochs 0: a run trains at least one epoch\n  help: pass --epochs 1 or more",
        ));
    }
    if batch == 0 {
        return Err(Failure::usage(
            "batch size 0: a batch holds at least one sample\n  help: pass --batch 1 or more, or set `batch:` in the model's train section",
        ));
    }
    if limit_train == Some(0) {
        return Err(Failure::usage(
            "--limit-train 0: no training samples would be used\n  help: pass --limit-train 1 or more, or omit it to use the whole training split",
        ));
    }
    Ok(())
}

/// Bytes of activations and their gradients one training sample needs
/// (every op's output, f32, twice): a lower bound of a step's memory.
pub fn activation_bytes_per_sample(model: &Model) -> u64 {
    let values: u64 = model
        .ops()
        .iter()
        .map(|op| op.output.numel())
        .fold(model.input.numel(), u64::saturating_add);
    values.saturating_mul(2 * 4)
}

/// Memory the kernel says is available, in bytes (Linux `MemAvailable`).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Refuses a batch larger than the training split, or one whose activations
/// alone would not fit in `available` bytes.
pub fn check_batch(
    model: &Model,
    batch: usize,
    train_samples: usize,
    available: Option<u64>,
) -> Result<(), Failure> {
    if train_samples == 0 {
        return Err(Failure::usage(
            "the training split is empty: nothing to train on\n  help: check the data folder, or raise --limit-train",
        ));
    }
    if batch > train_samples {
        return Err(Failure::usage(format!(
            "batch size {batch} is larger than the training split ({train_samples} samples)\n  help: pass --batch {train_samples} or less"
        )));
    }
    let need = activation_bytes_per_sample(model).saturating_mul(batch as u64);
    if let Some(have) = available.filter(|&have| need > have) {
        let per = activation_bytes_per_sample(model).max(1);
        return Err(Failure::usage(format!(
            "batch size {batch} needs at least {} of memory for activations, and {} is available\n  help: pass --batch {} or less",
            gib(need),
            gib(have),
            (have / per).max(1)
        )));
    }
    Ok(())
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mnist_cnn() -> Model {
        let act = crate::train::models::relu_poly(2, 12.0, crate::ir::Basis::Chebyshev);
        crate::train::models::bench_model("mnist_cnn", &act).unwrap()
    }

    #[test]
    fn threads_are_bounded_by_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(threads(None), Ok(cores));
        assert_eq!(threads(Some(1)), Ok(1));
        let e = threads(Some(100_000)).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains(&format!("{cores} core")), "{e}");
        assert!(
            threads(Some(0))
                .unwrap_err()
                .message
                .contains("--threads 0")
        );
    }

    #[test]
    fn settings_that_train_nothing_are_refused() {
        assert!(check_settings(1, 1, None).is_ok());
        for (e, b, l, what) in [
            (0, 8, None, "--epochs 0"),
            (1, 0, None, "batch size 0"),
            (1, 8, Some(0), "--limit-train 0"),
        ] {
            let f = check_settings(e, b, l).unwrap_err();
            assert!(f.message.contains(what), "{}", f.message);
            assert_eq!(f.code, 2);
        }
    }

    #[test]
    fn a_huge_batch_is_refused_before_allocating() {
        let m = mnist_cnn();
        let e = check_batch(&m, 4_000_000_000, 256, None).unwrap_err();
        assert!(
            e.message.contains("larger than the training split (256"),
            "{e}"
        );
        assert!(check_batch(&m, 128, 256, Some(1 << 34)).is_ok());
        let e = check_batch(&m, 60_000, 60_000, Some(1 << 30)).unwrap_err();
        assert!(e.message.contains("GiB of memory"), "{e}");
        assert!(
            check_batch(&m, 1, 0, None)
                .unwrap_err()
                .message
                .contains("empty")
        );
    }
}
