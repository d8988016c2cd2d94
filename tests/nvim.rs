//! A real editor client: headless Neovim's built-in LSP client opens
//! std-models/resnet20.pnn and a broken file through `pnnc lsp`, and checks
//! that diagnostics arrive and hover and definition answer
//! (editors/nvim/check.lua). Ignored, with the reason, where Neovim is not
//! installed (build.rs's `pnnc_nvim` cfg); CI installs it and fails instead.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest the whole editor session may take (it needs a second or two).
const LIMIT: Duration = Duration::from_secs(300);

#[test]
#[cfg_attr(
    not(pnnc_nvim),
    ignore = "needs Neovim for the editor check of `pnnc lsp`: apt-get install neovim"
)]
fn neovim_gets_diagnostics_hover_and_definition() {
    let mut child = Command::new("nvim")
        .args([
            "--headless",
            "-u",
            "NONE",
            "-c",
            "luafile editors/nvim/check.lua",
        ])
        .env("PNNC", env!("CARGO_BIN_EXE_pnnc"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nvim");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for nvim") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("nvim did not finish in {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("nvim output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.success() && stdout.contains("nvim check: all passed"),
        "nvim check failed ({status}):\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout.matches("ok: ").count(), 10, "{stdout}");
}
