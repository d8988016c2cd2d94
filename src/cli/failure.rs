//! Exit codes, error printing, worker threads and Ctrl-C, shared by the
//! commands. The error type itself is the pipeline's.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::pipeline::Failure;

/// Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

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

/// Size the global rayon pool: `threads`, or every core when None; more
/// threads than cores are refused (first call in a process wins).
pub fn set_threads(threads: Option<usize>) -> Result<usize, Failure> {
    let n = crate::pipeline::limits::threads(threads)?;
    // Fails only when the pool already exists (a second command in one
    // process, e.g. tests); the existing pool is then used.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    Ok(rayon::current_num_threads())
}

static STOP: AtomicBool = AtomicBool::new(false);

/// A flag that Ctrl-C sets: training stops after the current batch, keeps
/// its completed epochs and says how to resume. A second Ctrl-C exits at once.
pub fn stop_flag() -> &'static AtomicBool {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            if STOP.swap(true, Ordering::SeqCst) {
                std::process::exit(i32::from(INTERRUPTED));
            }
            eprintln!("\ninterrupt: stopping after this batch (Ctrl-C again to quit now)");
        });
        if let Err(e) = installed {
            eprintln!("warning: Ctrl-C will end the run without saving the epoch in progress: {e}");
        }
    });
    &STOP
}

/// `f` with a line on how to resume, when it is an interruption.
pub fn with_resume_hint(mut f: Failure, hint: &str) -> Failure {
    if f.code == INTERRUPTED {
        f.message = format!("{}\n  help: {hint}", f.message);
    }
    f
}
