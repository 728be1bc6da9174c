//! Runs the README's walkthrough and its ledger tour as written, with bash, against the
//! `consign` binary of this build. The walkthrough listens on 127.0.0.1:8181 as the
//! README shows, so that port must be free while the test runs.

use std::process::Command;

/// Returns the ```sh blocks of the README section under `heading`, up to the next
/// section.
fn sh_blocks(heading: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("the README has the section {heading:?}"));
    let section = section.split("\n## ").next().unwrap();
    section
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("\n```").next().unwrap().to_owned())
        .collect()
}

/// Runs `script` with bash under `set -euo pipefail`, with `CARGO_TARGET_DIR` pointing
/// at a folder whose `release/consign` is the binary of this build, for at most
/// `seconds`. Returns stdout, after failing the test with both outputs if it failed.
fn run_with_release_binary(script: &str, seconds: u32) -> String {
    let target = tempfile::tempdir().unwrap();
    let release = target.path().join("release");
    std::fs::create_dir(&release).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_consign"), release.join("consign")).unwrap();

    // The scripts wait in loops for servers and e-mails; a broken step must fail the
    // test rather than hang it.
    let output = Command::new("timeout")
        .arg(seconds.to_string())
        .args(["bash", "-c"])
        .arg(format!("set -euo pipefail\n{script}"))
        .env("CARGO_TARGET_DIR", target.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

#[test]
fn readme_walkthrough_runs_as_written() {
    // Another server on the port would receive the walkthrough's requests instead.
    let probe = std::net::TcpListener::bind("127.0.0.1:8181");
    assert!(
        probe.is_ok(),
        "127.0.0.1:8181 is in use; stop what listens there: {probe:?}"
    );
    drop(probe);

    let walkthrough = &sh_blocks("Walkthrough: send a document")[0];
    let stdout = run_with_release_binary(walkthrough, 120);
    assert!(stdout.contains("\"status\":\"released\""), "{stdout}");
    assert!(stdout.contains("303\n"), "{stdout}");
    assert!(stdout.contains("The signed contract.\n"), "{stdout}");
    assert!(stdout.contains("DocumentDownloaded"), "{stdout}");
    assert!(stdout.contains("ReceiptSent"), "{stdout}");
    assert!(stdout.contains("passed all"), "{stdout}");
}

/// The ledger tour: "Try the ledger", then every block of "Views" (rebuild the views,
/// replay a delivery at a position and at a time), in a temporary folder instead of
/// `/tmp/demo`.
#[test]
fn readme_ledger_tour_runs_as_written() {
    let demo = tempfile::tempdir().unwrap();
    let demo = demo.path().join("demo");
    let mut script = sh_blocks("Try the ledger").remove(0);
    for block in sh_blocks("Views") {
        script.push('\n');
        script.push_str(&block);
    }
    let script = script.replace("/tmp/demo", demo.to_str().unwrap());

    let stdout = run_with_release_binary(&script, 300);

    assert!(stdout.contains("generated 2000 deliveries"), "{stdout}");
    assert!(stdout.contains("is intact"), "{stdout}");
    assert!(stdout.contains("\"position\":10,"), "{stdout}");
    assert!(stdout.contains("as of position 42 (chain 0)"), "{stdout}");
    assert!(
        stdout.contains(r#""as_of":{"time":"2026-03-02T10:00:00Z"}"#),
        "{stdout}"
    );
}
