//! Sends real messages to `tests/smtp_server.py` (aiosmtpd) on loopback and checks what
//! the server saved, and how each failure is classified.
//!
//! The server defers (451) recipients whose local part starts with `defer`, rejects
//! (550) those starting with `reject`, and drops the connection for `drop`.

mod support;

use std::time::{Duration, Instant};

use mail_parser::MessageParser;

use consign_notifier::{Mailer, OutgoingEmail, SendOutcome, SmtpConfig};

use support::{
    FROM_ADDRESS, SmtpServer, composer, consignment_header_names, consignment_notice,
    parsed_header_names, receipt_header_names, receipt_notice, unused_port,
};

fn mailer(url: &str) -> Mailer {
    let config: SmtpConfig = url.parse().unwrap();
    Mailer::smtp(&config).unwrap()
}

/// Returns the reason and e-mail of a transient outcome, or panics with the outcome.
fn expect_transient(outcome: SendOutcome) -> (String, OutgoingEmail) {
    match outcome {
        SendOutcome::Transient { reason, email } => (reason, email),
        other => panic!("expected a transient failure, got {other:?}"),
    }
}

#[tokio::test]
async fn consignment_delivered_unchanged() {
    let server = SmtpServer::start();
    let notice = consignment_notice("anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();
    let sent_bytes = email.formatted().to_vec();

    let outcome = mailer(&server.url("")).send(email).await;

    let SendOutcome::Sent { server_reply } = outcome else {
        panic!("expected Sent, got {outcome:?}");
    };
    assert_eq!(server_reply, "250 2.0.0 Message accepted as 0001");

    let saved = server.saved_messages();
    assert_eq!(saved.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&saved[0].bytes),
        String::from_utf8_lossy(&sent_bytes)
    );
    assert_eq!(saved[0].envelope["mail_from"], FROM_ADDRESS);
    assert_eq!(
        saved[0].envelope["rcpt_tos"],
        serde_json::json!(["anna@recipient.test"])
    );
}

#[tokio::test]
async fn consignment_headers_survive_transport() {
    let server = SmtpServer::start();
    let notice = consignment_notice("anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();

    let outcome = mailer(&server.url("")).send(email).await;

    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    let saved = server.saved_messages();
    let message = MessageParser::default().parse(&saved[0].bytes).unwrap();
    assert_eq!(parsed_header_names(&message), consignment_header_names());
    assert_eq!(
        message.message_id(),
        Some(notice.message_id.trim_matches(['<', '>']))
    );
    assert_eq!(message.subject(), Some("Contrat signé – 契約書 – عقد"));
    assert_eq!(
        message.to().unwrap().first().unwrap().name(),
        Some("Zoë Ωμέγα 山田 (محمد)")
    );
    let body = message.body_text(0).unwrap();
    assert!(body.contains("報告書.docx"), "{body}");
    assert!(body.contains("عقد الإيجار.txt"), "{body}");
}

#[tokio::test]
async fn receipt_delivered_to_sender() {
    let server = SmtpServer::start();
    let notice = receipt_notice("juergen@sender.test");
    let email = composer().receipt(&notice).unwrap();

    let outcome = mailer(&server.url("")).send(email).await;

    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    let saved = server.saved_messages();
    assert_eq!(saved.len(), 1);
    assert_eq!(
        saved[0].envelope["rcpt_tos"],
        serde_json::json!(["juergen@sender.test"])
    );
    let message = MessageParser::default().parse(&saved[0].bytes).unwrap();
    assert_eq!(parsed_header_names(&message), receipt_header_names());
    assert_eq!(
        message.message_id(),
        Some(notice.message_id.trim_matches(['<', '>']))
    );
}

#[tokio::test]
async fn reply_451_is_transient() {
    let server = SmtpServer::start();
    let notice = consignment_notice("deferred.anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();

    let outcome = mailer(&server.url("")).send(email).await;

    let (reason, email) = expect_transient(outcome);
    assert!(reason.starts_with("451 4.2.0"), "{reason}");
    assert!(reason.contains("try again later"), "{reason}");
    assert_eq!(email.message_id(), notice.message_id);
    assert_eq!(email.notification(), notice.notification);
    assert!(server.saved_messages().is_empty());
}

#[tokio::test]
async fn reply_550_is_permanent() {
    let server = SmtpServer::start();
    let notice = consignment_notice("rejected.anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();

    let outcome = mailer(&server.url("")).send(email).await;

    let SendOutcome::Permanent { reason, email } = outcome else {
        panic!("expected a permanent failure, got {outcome:?}");
    };
    assert!(reason.starts_with("550 5.1.1"), "{reason}");
    assert!(reason.contains("does not exist"), "{reason}");
    assert_eq!(email.message_id(), notice.message_id);
    assert!(server.saved_messages().is_empty());
}

#[tokio::test]
async fn dropped_connection_is_transient() {
    let server = SmtpServer::start();
    let email = composer()
        .consignment(&consignment_notice("drop@recipient.test"))
        .unwrap();

    let outcome = mailer(&server.url("")).send(email).await;

    let (reason, _) = expect_transient(outcome);
    assert!(!reason.is_empty());
    assert!(server.saved_messages().is_empty());
}

#[tokio::test]
async fn refused_connection_is_transient() {
    let port = unused_port();
    let email = composer()
        .consignment(&consignment_notice("anna@recipient.test"))
        .unwrap();

    let outcome = mailer(&format!("smtp://127.0.0.1:{port}"))
        .send(email)
        .await;

    let (reason, _) = expect_transient(outcome);
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
}

/// lettre's tokio transport applies its timeout only to the TCP connect, so a server
/// that accepts and never greets must be cut off by the mailer's own limit.
#[tokio::test]
async fn silent_server_times_out_transient() {
    // The kernel completes the TCP handshake from the backlog; nothing ever replies.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let email = composer()
        .consignment(&consignment_notice("anna@recipient.test"))
        .unwrap();
    let started = Instant::now();

    let outcome = mailer(&format!("smtp://127.0.0.1:{port}?timeout=1"))
        .send(email)
        .await;

    let (reason, _) = expect_transient(outcome);
    assert!(reason.contains("timed out after 1 s"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(listener);
}

#[tokio::test]
async fn handed_back_email_retries_unchanged() {
    let notice = consignment_notice("anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();
    let first_bytes = email.formatted().to_vec();
    let down_port = unused_port();

    let outcome = mailer(&format!("smtp://127.0.0.1:{down_port}"))
        .send(email)
        .await;
    let (_, email) = expect_transient(outcome);

    let server = SmtpServer::start();
    let outcome = mailer(&server.url("")).send(email).await;

    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    let saved = server.saved_messages();
    assert_eq!(
        String::from_utf8_lossy(&saved[0].bytes),
        String::from_utf8_lossy(&first_bytes)
    );
    let message = MessageParser::default().parse(&saved[0].bytes).unwrap();
    assert_eq!(
        message.message_id(),
        Some(notice.message_id.trim_matches(['<', '>']))
    );
}

#[tokio::test]
async fn starttls_required_but_not_offered() {
    // aiosmtpd without a TLS context does not advertise STARTTLS.
    let server = SmtpServer::start();
    let email = composer()
        .consignment(&consignment_notice("anna@recipient.test"))
        .unwrap();

    let outcome = mailer(&server.url("&tls=starttls")).send(email).await;

    expect_transient(outcome);
    assert!(server.saved_messages().is_empty());
}

#[tokio::test]
async fn implicit_tls_against_plain_server() {
    let server = SmtpServer::start();
    let email = composer()
        .consignment(&consignment_notice("anna@recipient.test"))
        .unwrap();

    let outcome = mailer(&format!("smtps://127.0.0.1:{}?timeout=5", server.port()))
        .send(email)
        .await;

    expect_transient(outcome);
    assert!(server.saved_messages().is_empty());
}

#[tokio::test]
async fn percent_encoded_credentials_authenticate() {
    let server = SmtpServer::start_with_auth("user name", "p@ss:w/rd%");
    let url = format!(
        "smtp://user%20name:p%40ss%3Aw%2Frd%25@127.0.0.1:{}?timeout=20",
        server.port()
    );
    let email = composer()
        .consignment(&consignment_notice("anna@recipient.test"))
        .unwrap();

    let outcome = mailer(&url).send(email).await;

    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    let saved = server.saved_messages();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].envelope["auth_login"], "user name");
}

/// A wrong password (535) is the relay's configuration, not the recipient's fault,
/// so it must not fail the notification for good.
#[tokio::test]
async fn wrong_password_is_transient() {
    let server = SmtpServer::start_with_auth("relay", "right");
    let url = format!("smtp://relay:wrong@127.0.0.1:{}?timeout=20", server.port());
    let email = composer()
        .consignment(&consignment_notice("anna@recipient.test"))
        .unwrap();

    let outcome = mailer(&url).send(email).await;

    let (reason, _) = expect_transient(outcome);
    assert!(
        reason.starts_with("SMTP authentication failed: 535"),
        "{reason}"
    );
    assert!(!reason.contains("wrong"), "{reason}");
    assert!(server.saved_messages().is_empty());
}

#[tokio::test]
async fn missing_credentials_are_transient() {
    let server = SmtpServer::start_with_auth("relay", "right");
    let email = composer()
        .consignment(&consignment_notice("anna@recipient.test"))
        .unwrap();

    let outcome = mailer(&server.url("")).send(email).await;

    let (reason, _) = expect_transient(outcome);
    assert!(
        reason.starts_with("SMTP authentication failed: 530"),
        "{reason}"
    );
    assert!(server.saved_messages().is_empty());
}
