//! Evidence bundles, checkpoints and proofs through the API and the command line: a
//! bundle verifies offline, a change to any of its bytes fails a named check, and a
//! saved checkpoint keeps verifying the ledger it came from.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use consign_ledger::Clock;
use consign_ledger::evidence::{Bundle, verify_bundle};
use consign_ledger::merkle::{verify_consistency, verify_inclusion};
use consign_ledger::postmark::PostmarkKeys;
use consign_schemas::events::Role;
use consign_schemas::{EventHash, Hash32};
use reqwest::multipart::{Form, Part};
use support::{Server, open_account};

fn consign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_consign"))
        .args(args)
        .env("CONSIGN_LOG_FORMAT", "text")
        .output()
        .unwrap()
}

/// Runs `consign evidence export` of `delivery` in `data` to `out`.
fn export_evidence(data: &str, delivery: &str, out: &str) -> Output {
    consign(&[
        "evidence",
        "export",
        "--data-dir",
        data,
        "--delivery",
        delivery,
        "--out",
        out,
    ])
}

async fn submit_postmarked(server: &Server, token: &str) -> String {
    let metadata = serde_json::json!({
        "recipients": ["bob@recipients.test"],
        "subject": "Evidence",
        "postmark": true,
    });
    let form = Form::new()
        .part("metadata", Part::text(metadata.to_string()))
        .part(
            "document",
            Part::bytes(b"contract".to_vec()).file_name("contract.txt"),
        )
        .part(
            "document",
            Part::bytes(b"annex".to_vec()).file_name("annex.txt"),
        );
    let response = server
        .client
        .post(server.url("/api/deliveries"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    body["delivery"].as_str().unwrap().to_owned()
}

async fn get(server: &Server, token: &str, path: &str) -> reqwest::Response {
    server
        .client
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Names of the failed checks of `bytes`.
fn failed_checks(bytes: &[u8]) -> Vec<&'static str> {
    verify_bundle(bytes)
        .failures()
        .map(|check| check.name)
        .collect()
}

/// Returns `bundle` changed by `change` and written in canonical form.
fn changed(bundle: &Bundle, change: impl FnOnce(&mut Bundle)) -> Vec<u8> {
    let mut copy = bundle.clone();
    change(&mut copy);
    copy.to_bytes()
}

fn flip(hash: &Hash32) -> Hash32 {
    let mut bytes = *hash.as_bytes();
    bytes[31] ^= 1;
    Hash32::from_bytes(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_verifies_and_every_byte_matters() {
    let work = tempfile::tempdir().unwrap();
    open_account(work.path(), "ada", Role::Sender).await;
    open_account(work.path(), "cyd", Role::Sender).await;
    open_account(work.path(), "eve", Role::Auditor).await;
    let server = Server::start(
        work.path(),
        Clock::system(),
        &["--checkpoint-every-ms", "50"],
    )
    .await;
    let ada = server.login("ada").await;
    let cyd = server.login("cyd").await;
    let eve = server.login("eve").await;
    let delivery = submit_postmarked(&server, &ada).await;
    submit_postmarked(&server, &cyd).await;

    let path = format!("/api/audit/deliveries/{delivery}/evidence");
    let response = get(&server, &eve, &path).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("evidence-")
    );
    let bytes = response.bytes().await.unwrap().to_vec();
    let report = verify_bundle(&bytes);
    assert!(
        report.passed(),
        "{:?}",
        report.failures().collect::<Vec<_>>()
    );
    let bundle = Bundle::from_bytes(&bytes).unwrap();
    let kinds: Vec<&str> = bundle
        .events
        .iter()
        .map(|event| event.kind.as_str())
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| **kind == "DocumentUploaded")
            .count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"DeliverySubmitted"), "{kinds:?}");
    assert!(kinds.contains(&"PostmarkIssued"), "{kinds:?}");
    assert_eq!(bundle.postmarks.len(), 1);
    assert_eq!(
        get(&server, &ada, &path).await.status(),
        200,
        "the sender's own delivery"
    );
    assert_eq!(
        get(&server, &cyd, &path).await.status(),
        404,
        "another sender's delivery"
    );

    // Any single changed byte fails verification.
    for index in 0..bytes.len() {
        let mut altered = bytes.clone();
        altered[index] ^= 0x01;
        assert!(!verify_bundle(&altered).passed(), "byte {index} changed");
    }

    // Changes written in canonical form fail the check they concern.
    let stored = changed(&bundle, |copy| {
        let last = copy.events[0].stored.len() - 1;
        copy.events[0].stored[last] ^= 1;
    });
    assert!(failed_checks(&stored).contains(&"event-hash"));
    let proof = changed(&bundle, |copy| {
        let node = &mut copy.events[1].inclusion_proof[0];
        *node = flip(node);
    });
    assert_eq!(failed_checks(&proof), vec!["inclusion"]);
    let signature = changed(&bundle, |copy| copy.checkpoint.signature[0] ^= 1);
    assert!(failed_checks(&signature).contains(&"checkpoint-signature"));
    let postmark = changed(&bundle, |copy| copy.postmarks[0].signature[5] ^= 1);
    assert!(failed_checks(&postmark).contains(&"postmark-signature"));
    let key = changed(&bundle, |copy| {
        let first = copy.public_keys.values_mut().next().unwrap();
        first.0[0] ^= 1;
    });
    assert!(failed_checks(&key).contains(&"key-id"));
    let dropped = changed(&bundle, |copy| {
        copy.events
            .retain(|event| event.kind != "DeliverySubmitted");
    });
    assert!(failed_checks(&dropped).contains(&"submission"));

    // The checkpoint and proof routes agree with the bundle's checkpoint.
    let chain = bundle.chain.get();
    let saved: serde_json::Value = get(
        &server,
        &eve,
        &format!("/api/ledger/chains/{chain}/checkpoint"),
    )
    .await
    .json()
    .await
    .unwrap();
    let tree_size = saved["checkpoint"]["tree_size"].as_u64().unwrap();
    let root: Hash32 = serde_json::from_value(saved["checkpoint"]["root"].clone()).unwrap();
    let event = &bundle.events[0];
    let inclusion: serde_json::Value = get(
        &server,
        &eve,
        &format!(
            "/api/ledger/chains/{chain}/proofs/inclusion?position={}&tree_size={tree_size}",
            event.position
        ),
    )
    .await
    .json()
    .await
    .unwrap();
    let nodes: Vec<Hash32> = serde_json::from_value(inclusion["proof"].clone()).unwrap();
    let leaf: EventHash = serde_json::from_value(inclusion["leaf"].clone()).unwrap();
    assert_eq!(leaf, event.hash);
    assert!(verify_inclusion(
        &leaf,
        event.position.get(),
        tree_size,
        &nodes,
        &root
    ));
    let consistency: serde_json::Value = get(
        &server,
        &eve,
        &format!(
            "/api/ledger/chains/{chain}/proofs/consistency?old_size={}&new_size={tree_size}",
            bundle.checkpoint.tree_size
        ),
    )
    .await
    .json()
    .await
    .unwrap();
    let nodes: Vec<Hash32> = serde_json::from_value(consistency["proof"].clone()).unwrap();
    assert!(verify_consistency(
        bundle.checkpoint.tree_size,
        tree_size,
        &bundle.checkpoint.root,
        &root,
        &nodes
    ));
    let beyond = get(
        &server,
        &eve,
        &format!("/api/ledger/chains/{chain}/proofs/inclusion?position=0&tree_size=999999"),
    )
    .await;
    assert_eq!(beyond.status(), 422);
    let unparsed = get(
        &server,
        &eve,
        &format!("/api/ledger/chains/{chain}/proofs/inclusion?position=abc"),
    )
    .await;
    assert_eq!(unparsed.status(), 422);
    let error: serde_json::Value = unparsed.json().await.unwrap();
    assert_eq!(error["field"], "position", "{error}");
    let too_new = get(
        &server,
        &eve,
        &format!("/api/ledger/chains/{chain}/proofs/consistency?old_size=1&new_size=999999"),
    )
    .await;
    assert_eq!(too_new.status(), 422);
    let error: serde_json::Value = too_new.json().await.unwrap();
    assert_eq!(error["field"], "new_size", "{error}");
    assert_eq!(
        get(
            &server,
            &ada,
            &format!("/api/ledger/chains/{chain}/checkpoint")
        )
        .await
        .status(),
        403
    );
    server.stop().await;

    cli_checks(work.path(), &delivery, &saved);
}

/// Exports and verifies with the command line, rotates the key, and checks the ledger
/// against the checkpoint saved while the server ran.
fn cli_checks(data_dir: &Path, delivery: &str, saved: &serde_json::Value) {
    let data = data_dir.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let bundle_path = out.path().join("bundle.json");
    let bundle_file = bundle_path.to_str().unwrap();

    let export = export_evidence(data, delivery, bundle_file);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let verified = consign(&["evidence", "verify", bundle_file]);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{stdout}");
    assert!(stdout.contains("passed all"), "{stdout}");
    assert!(stdout.contains("public key ed25519-"), "{stdout}");

    let missing = out.path().join("no-such-data");
    let stray = export_evidence(
        missing.to_str().unwrap(),
        delivery,
        out.path().join("stray.json").to_str().unwrap(),
    );
    assert_eq!(stray.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&stray.stderr).contains("no ledger in"));
    assert!(!missing.exists(), "a mistyped --data-dir is not created");

    // With `--out -` the bundle goes to standard output and verifies as the file does.
    let piped = export_evidence(data, delivery, "-");
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    assert!(!Path::new("-").exists(), "a file named - was written");
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(stderr.contains("to standard output"), "{stderr}");
    let piped_path = out.path().join("piped.json");
    std::fs::write(&piped_path, &piped.stdout).unwrap();
    let verified = consign(&["evidence", "verify", piped_path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{stdout}");
    assert!(stdout.contains("passed all"), "{stdout}");

    // `evidence verify -` reads the bundle from standard input.
    let mut reader = std::process::Command::new(env!("CARGO_BIN_EXE_consign"))
        .args(["evidence", "verify", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut reader.stdin.take().unwrap(), &piped.stdout).unwrap();
    let from_stdin = reader.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&from_stdin.stdout);
    assert!(from_stdin.status.success(), "{stdout}");
    assert!(stdout.contains("passed all"), "{stdout}");

    let mistyped = export_evidence(
        data,
        "ada",
        out.path().join("mistyped.json").to_str().unwrap(),
    );
    assert_eq!(mistyped.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&mistyped.stderr);
    assert!(stderr.contains("\"ada\" is not a delivery id"), "{stderr}");
    assert!(stderr.contains("give the UUID"), "{stderr}");

    let again = export_evidence(data, delivery, bundle_file);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing file is not overwritten"
    );

    let mut altered = std::fs::read(&bundle_path).unwrap();
    let middle = altered.len() / 2;
    altered[middle] ^= 0x01;
    let altered_path = out.path().join("altered.json");
    std::fs::write(&altered_path, altered).unwrap();
    let rejected = consign(&["evidence", "verify", altered_path.to_str().unwrap()]);
    assert_eq!(rejected.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&rejected.stdout).contains("FAIL"));

    // The independent check, with b3sum and Python's cryptography package only.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/verify_evidence.py");
    let independent = Command::new("python3")
        .arg(script)
        .arg(bundle_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&independent.stdout);
    assert!(
        independent.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&independent.stderr)
    );
    assert!(stdout.contains("ok   postmark-signature"), "{stdout}");
    let bundle = Bundle::from_bytes(&std::fs::read(&bundle_path).unwrap()).unwrap();
    let forged_path = out.path().join("forged.json");
    std::fs::write(
        &forged_path,
        changed(&bundle, |copy| copy.events[0].stored[40] ^= 1),
    )
    .unwrap();
    let forged = Command::new("python3")
        .arg(script)
        .arg(&forged_path)
        .output()
        .unwrap();
    assert_eq!(forged.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&forged.stdout).contains("FAIL event-hash"));

    // A rotated-out key stays published, so its postmark and checkpoints still verify.
    PostmarkKeys::generate(&data_dir.join("keys").join("postmark")).unwrap();
    let rotated_path = out.path().join("rotated.json");
    let rotated = export_evidence(data, delivery, rotated_path.to_str().unwrap());
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let rotated_bundle = std::fs::read(&rotated_path).unwrap();
    assert!(verify_bundle(&rotated_bundle).passed());
    assert_eq!(
        Bundle::from_bytes(&rotated_bundle)
            .unwrap()
            .public_keys
            .len(),
        2
    );
    let independent = Command::new("python3")
        .arg(script)
        .arg(&rotated_path)
        .output()
        .unwrap();
    assert!(
        independent.status.success(),
        "{}",
        String::from_utf8_lossy(&independent.stdout)
    );

    let saved_path = out.path().join("checkpoint.json");
    std::fs::write(&saved_path, saved.to_string()).unwrap();
    let verify = consign(&[
        "ledger",
        "verify",
        "--data-dir",
        data,
        "--checkpoint",
        saved_path.to_str().unwrap(),
    ]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(
        stdout.contains("the saved checkpoint at tree size"),
        "{stdout}"
    );
    let mut damaged = saved.clone();
    let root = damaged["checkpoint"]["root"].as_str().unwrap().to_owned();
    let flipped = if root.starts_with('0') { "1" } else { "0" };
    damaged["checkpoint"]["root"] = serde_json::Value::from(format!("{flipped}{}", &root[1..]));
    let damaged_path = out.path().join("damaged-checkpoint.json");
    std::fs::write(&damaged_path, damaged.to_string()).unwrap();
    let rejected = consign(&[
        "ledger",
        "verify",
        "--data-dir",
        data,
        "--checkpoint",
        damaged_path.to_str().unwrap(),
    ]);
    assert_eq!(rejected.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&rejected.stderr)
            .contains("damaged, not genuine, or signed with a key")
    );
    let other_chain = consign(&[
        "ledger",
        "verify",
        "--data-dir",
        data,
        "--chain",
        "1",
        "--checkpoint",
        saved_path.to_str().unwrap(),
    ]);
    assert_eq!(other_chain.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other_chain.stderr).contains("--chain 1 was given"));

    let chain = saved["chain"].to_string();
    let proof = consign(&[
        "ledger",
        "proof",
        "--data-dir",
        data,
        "--chain",
        &chain,
        "--position",
        "1",
    ]);
    assert!(
        proof.status.success(),
        "{}",
        String::from_utf8_lossy(&proof.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&proof.stdout).unwrap();
    assert_eq!(printed["verified"], true);
    let consistency = consign(&[
        "ledger",
        "consistency",
        "--data-dir",
        data,
        "--chain",
        &chain,
        "--old-size",
        "2",
    ]);
    assert!(
        consistency.status.success(),
        "{}",
        String::from_utf8_lossy(&consistency.stderr)
    );
    let bad = consign(&[
        "ledger",
        "proof",
        "--data-dir",
        data,
        "--chain",
        &chain,
        "--position",
        "99999999",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--position 99999999"));
}
