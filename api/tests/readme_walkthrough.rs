//! Runs the README's walkthrough exactly as written, with bash, against the `consign`
//! binary of this build. It listens on 127.0.0.1:8181 as the README shows, so that
//! port must be free while the test runs.

use std::process::Command;

/// Returns the first ```sh block after the walkthrough heading.
fn walkthrough() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("## Walkthrough: send a document")
        .nth(1)
        .expect("the README has the walkthrough section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .expect("the section has a sh block");
    block.split("\n```").next().unwrap().to_owned()
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

    let target = tempfile::tempdir().unwrap();
    let release = target.path().join("release");
    std::fs::create_dir(&release).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_consign"), release.join("consign")).unwrap();

    let script = format!("set -euo pipefail\n{}", walkthrough());
    // The walkthrough waits in loops for the server and the e-mail; a broken step
    // must fail the test rather than hang it.
    let output = Command::new("timeout")
        .args(["120", "bash", "-c"])
        .arg(&script)
        .env("CARGO_TARGET_DIR", target.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("\"status\":\"released\""), "{stdout}");
    assert!(stdout.contains("303\n"), "{stdout}");
    assert!(stdout.contains("The signed contract.\n"), "{stdout}");
    assert!(stdout.contains("DocumentDownloaded"), "{stdout}");
    assert!(stdout.contains("ReceiptSent"), "{stdout}");
    assert!(stdout.contains("passed all"), "{stdout}");
}
