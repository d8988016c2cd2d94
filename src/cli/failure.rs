//! Exit codes and error printing shared by `train`, `eval` and `bench`.

use std::process::ExitCode;

/// A failure with its exit code (1: the job failed, 2: usage or I/O).
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
    pub fn job(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

/// Print a failure as `error: ...` and turn it into the exit code.
pub fn report(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Set the size of the global rayon pool (first call in a process wins).
pub fn set_threads(threads: Option<usize>) -> usize {
    if let Some(n) = threads {
        // Fails only when the pool already exists (a second command in one
        // process, e.g. tests); the existing pool is then used.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global();
    }
    rayon::current_num_threads()
}
