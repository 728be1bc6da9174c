//! Running the `consign` binary from CLI tests, as a user would from a shell.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The binary under test, without a data directory from the environment and with
/// warnings only in its log.
pub fn consign() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_consign"));
    command
        .env_remove("CONSIGN_DATA_DIR")
        .env("RUST_LOG", "warn");
    command
}

/// Runs the binary with `args` and returns what it printed.
pub fn run(args: &[&str]) -> Output {
    consign().args(args).output().expect("consign runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Generates a ledger of `deliveries` deliveries in `dir`.
pub fn generate(dir: &Path, deliveries: u32) {
    let output = run(&[
        "ledger",
        "generate",
        "--data-dir",
        dir.to_str().unwrap(),
        "--deliveries",
        &deliveries.to_string(),
    ]);
    assert!(
        output.status.success(),
        "generate failed: {}",
        text(&output.stderr)
    );
}
