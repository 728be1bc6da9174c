//! The outbox mailer: each e-mail lands whole as `{notification_id}.eml`, a retry
//! replaces it, and a write failure is transient and hands the e-mail back.

mod support;

use mail_parser::MessageParser;

use consign_notifier::{Mailer, MailerError, SendOutcome};

use support::{composer, consignment_header_names, consignment_notice, parsed_header_names};

/// Lists the names in `dir`, sorted.
fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn outbox_writes_named_eml() {
    let dir = tempfile::tempdir().unwrap();
    let mailer = Mailer::outbox(dir.path()).unwrap();
    let notice = consignment_notice("anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();
    let sent_bytes = email.formatted().to_vec();

    let outcome = mailer.send(email).await;

    let file_name = format!("{}.eml", notice.notification);
    let SendOutcome::Sent { server_reply } = outcome else {
        panic!("expected Sent, got {outcome:?}");
    };
    assert_eq!(server_reply, file_name);
    assert_eq!(file_names(dir.path()), std::slice::from_ref(&file_name));

    let saved = std::fs::read(dir.path().join(&file_name)).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&saved),
        String::from_utf8_lossy(&sent_bytes)
    );
    let message = MessageParser::default().parse(&saved).unwrap();
    assert_eq!(parsed_header_names(&message), consignment_header_names());
    assert_eq!(
        message.message_id(),
        Some(notice.message_id.trim_matches(['<', '>']))
    );
}

#[tokio::test]
async fn outbox_creates_missing_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("spool").join("outbox");

    let mailer = Mailer::outbox(&dir).unwrap();
    let email = composer()
        .consignment(&consignment_notice("anna@recipient.test"))
        .unwrap();
    let outcome = mailer.send(email).await;

    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    assert_eq!(file_names(&dir).len(), 1);
}

#[tokio::test]
async fn outbox_retry_replaces_file() {
    let dir = tempfile::tempdir().unwrap();
    let mailer = Mailer::outbox(dir.path()).unwrap();
    let notice = consignment_notice("anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();

    let first = mailer.send(email.clone()).await;
    let second = mailer.send(email).await;

    assert!(matches!(first, SendOutcome::Sent { .. }), "{first:?}");
    assert!(matches!(second, SendOutcome::Sent { .. }), "{second:?}");
    assert_eq!(
        file_names(dir.path()),
        [format!("{}.eml", notice.notification)]
    );
}

#[tokio::test]
async fn outbox_write_failure_is_transient() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("outbox");
    let mailer = Mailer::outbox(&dir).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    let notice = consignment_notice("anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();

    let outcome = mailer.send(email).await;

    let SendOutcome::Transient { reason, email } = outcome else {
        panic!("expected a transient failure, got {outcome:?}");
    };
    assert!(
        reason.contains(&format!("{}.eml", notice.notification)),
        "{reason}"
    );
    assert!(reason.contains("outbox"), "{reason}");
    assert_eq!(email.message_id(), notice.message_id);
}

#[test]
fn outbox_path_that_is_a_file() {
    let parent = tempfile::tempdir().unwrap();
    let path = parent.path().join("not-a-directory");
    std::fs::write(&path, b"x").unwrap();

    let error = Mailer::outbox(&path).unwrap_err();

    assert!(
        matches!(&error, MailerError::CreateOutbox { path: p, .. } if *p == path),
        "{error:?}"
    );
    assert!(error.to_string().contains("not-a-directory"), "{error}");
}
