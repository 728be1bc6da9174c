//! Composition checked on the produced bytes: the exact header set, RFC 2047 encoding
//! of text in any script, and that no CR or LF in user-given text creates a header.
//!
//! Each message is read twice, by mail-parser and by a plain line split of the header
//! block, so a quirk of one parser cannot hide an injected header.

mod support;

use mail_parser::MessageParser;

use consign_notifier::{AccessToken, ComposeError, ConsignmentNotice, ReceiptNotice};

use support::{
    FROM_ADDRESS, PUBLIC_BASE_URL, TOKEN, composer, consignment_header_names, consignment_notice,
    parsed_header_names, raw_header_names, receipt_header_names, receipt_notice,
};

/// Line-break forms an attacker might put into a single-line field.
const BREAKS: [&str; 5] = ["\r\n", "\n", "\r", "\r\n\r\n", "\u{2028}"];

fn parse(bytes: &[u8]) -> mail_parser::Message<'_> {
    MessageParser::default()
        .parse(bytes)
        .expect("mail-parser reads the message")
}

/// Returns the decoded text body with LF line endings.
fn body_text(message: &mail_parser::Message<'_>) -> String {
    message
        .body_text(0)
        .expect("message has a text body")
        .replace("\r\n", "\n")
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

#[test]
fn consignment_headers_are_exactly_expected() {
    let notice = consignment_notice("anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();
    let message = parse(email.formatted());

    assert_eq!(parsed_header_names(&message), consignment_header_names());
    assert_eq!(
        sorted(raw_header_names(email.formatted())),
        consignment_header_names()
    );
    assert_eq!(
        message.message_id(),
        Some(notice.message_id.trim_matches(['<', '>']))
    );
    assert_eq!(email.message_id(), notice.message_id);
    assert_eq!(email.notification(), notice.notification);
    assert_eq!(
        message.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
}

#[test]
fn consignment_encodes_any_script() {
    let notice = consignment_notice("anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();
    let message = parse(email.formatted());

    assert!(email.formatted().is_ascii(), "message is not 7-bit clean");
    assert!(
        String::from_utf8_lossy(email.formatted()).contains("Subject: Contrat =?utf-8?b?"),
        "subject is not an encoded word"
    );
    assert_eq!(message.subject(), Some("Contrat signé – 契約書 – عقد"));

    let to = message.to().unwrap().first().unwrap();
    assert_eq!(to.name(), Some("Zoë Ωμέγα 山田 (محمد)"));
    assert_eq!(to.address(), Some("anna@recipient.test"));

    let reply_to = message.reply_to().unwrap().first().unwrap();
    assert_eq!(reply_to.name(), Some("Jürgen Groß, Notar"));
    assert_eq!(reply_to.address(), Some("juergen@sender.test"));

    let from = message.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Consign Notifications"));
    assert_eq!(from.address(), Some(FROM_ADDRESS));
}

#[test]
fn consignment_body_lists_link_documents_expiry() {
    let notice = consignment_notice("anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();
    let message = parse(email.formatted());
    let body = body_text(&message);

    assert!(body.contains("Hello Zoë Ωμέγα 山田 (محمد),"), "{body}");
    assert!(
        body.contains("Jürgen Groß, Notar <juergen@sender.test> sent you 3 documents"),
        "{body}"
    );
    assert!(
        body.contains(&format!("{PUBLIC_BASE_URL}/d/{TOKEN}\n")),
        "{body}"
    );
    assert!(body.contains("> voici les documents signés.\n"), "{body}");
    assert!(body.contains("1. Übersicht 2026.pdf\n"), "{body}");
    assert!(body.contains("Size: 1536 bytes (1.5 KiB)"), "{body}");
    assert!(
        body.contains(&format!("BLAKE3: {}", "ab".repeat(32))),
        "{body}"
    );
    assert!(body.contains("2. 報告書.docx\n"), "{body}");
    assert!(body.contains("Size: 5242880 bytes (5.0 MiB)"), "{body}");
    assert!(body.contains("3. عقد الإيجار.txt\n"), "{body}");
    assert!(
        body.contains(&format!("BLAKE3: {}", "5c".repeat(32))),
        "{body}"
    );
    assert!(
        body.contains("expires at 2026-05-01 18:00 CEST (Europe/Paris), 2026-05-01T16:00:00Z"),
        "{body}"
    );
    assert!(!body.contains("password"), "{body}");
}

#[test]
fn consignment_says_password_is_separate() {
    let mut notice = consignment_notice("anna@recipient.test");
    notice.password_required = true;
    notice.expires_at = None;

    let email = composer().consignment(&notice).unwrap();
    let message = parse(email.formatted());
    let body = body_text(&message);

    assert!(
        body.contains("protected this delivery with a password"),
        "{body}"
    );
    assert!(body.contains("never sent by e-mail"), "{body}");
    assert!(!body.contains("expires"), "{body}");
}

#[test]
fn consignment_blank_subject_names_sender() {
    let mut notice = consignment_notice("anna@recipient.test");
    notice.subject = " \r\n ".to_owned();

    let email = composer().consignment(&notice).unwrap();

    assert_eq!(
        parse(email.formatted()).subject(),
        Some("Documents from Jürgen Groß, Notar <juergen@sender.test>")
    );
}

#[test]
fn consignment_envelope_has_one_recipient() {
    let notice = consignment_notice("anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();

    let recipients: Vec<String> = email
        .envelope()
        .to()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(recipients, ["anna@recipient.test"]);
    assert_eq!(
        email.envelope().from().map(ToString::to_string).as_deref(),
        Some(FROM_ADDRESS)
    );
}

#[test]
fn receipt_headers_and_body() {
    let notice = receipt_notice("juergen@sender.test");
    let email = composer().receipt(&notice).unwrap();
    let message = parse(email.formatted());
    let body = body_text(&message);

    assert!(email.formatted().is_ascii());
    assert_eq!(parsed_header_names(&message), receipt_header_names());
    assert_eq!(
        sorted(raw_header_names(email.formatted())),
        receipt_header_names()
    );
    assert_eq!(
        message.subject(),
        Some("Receipt: Zoë Ωμέγα <anna@recipient.test> downloaded 報告書.docx")
    );
    assert_eq!(
        message.to().unwrap().first().unwrap().address(),
        Some("juergen@sender.test")
    );
    assert!(
        body.contains("Zoë Ωμέγα <anna@recipient.test> downloaded a document"),
        "{body}"
    );
    assert!(
        body.contains("Delivery: Contrat signé – 契約書\n"),
        "{body}"
    );
    assert!(
        body.contains("Delivery id: 09090909-0909-0909-0909-090909090909"),
        "{body}"
    );
    assert!(
        body.contains("Downloaded at: 2026-05-01T16:00:00Z"),
        "{body}"
    );
    assert!(
        body.contains(&format!("BLAKE3: {}", "01".repeat(32))),
        "{body}"
    );
}

/// Puts `injection` into every user-given field of a consignment notice.
fn inject_consignment(notice: &mut ConsignmentNotice, injection: &str) {
    notice.subject = format!("Invoice{injection}");
    notice.recipient.display_name = Some(format!("Zoë{injection}"));
    notice.sender.display_name = Some(format!("Jürgen{injection}"));
    notice.message = format!("Hello{injection}");
    for document in &mut notice.documents {
        document.name = format!("{}{injection}", document.name);
    }
}

/// Puts `injection` into every user-given field of a receipt notice.
fn inject_receipt(notice: &mut ReceiptNotice, injection: &str) {
    notice.delivery_subject = format!("Invoice{injection}");
    notice.sender.display_name = Some(format!("Jürgen{injection}"));
    notice.recipient.display_name = Some(format!("Zoë{injection}"));
    notice.document.name = format!("contract.pdf{injection}");
}

/// Checks that none of the injected header names made it into the message.
fn assert_no_injected_headers(bytes: &[u8], expected: &[String], case: &str) {
    let message = parse(bytes);

    assert_eq!(
        parsed_header_names(&message),
        expected,
        "mail-parser, {case}"
    );
    assert_eq!(
        sorted(raw_header_names(bytes)),
        expected,
        "raw split, {case}"
    );
    assert!(message.header_raw("Bcc").is_none(), "{case}");
    assert!(message.header_raw("X-Injected").is_none(), "{case}");
    assert_eq!(message.to().unwrap().iter().count(), 1, "{case}");
}

#[test]
fn line_breaks_add_no_header() {
    for line_break in BREAKS {
        let injection = format!("{line_break}Bcc: evil@attacker.test{line_break}X-Injected: yes");

        let mut consignment = consignment_notice("anna@recipient.test");
        inject_consignment(&mut consignment, &injection);
        let email = composer().consignment(&consignment).unwrap();
        let case = format!("consignment with {line_break:?}");
        assert_no_injected_headers(email.formatted(), &consignment_header_names(), &case);
        let recipients: Vec<String> = email
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(recipients, ["anna@recipient.test"], "{case}");

        let mut receipt = receipt_notice("juergen@sender.test");
        inject_receipt(&mut receipt, &injection);
        let email = composer().receipt(&receipt).unwrap();
        let case = format!("receipt with {line_break:?}");
        assert_no_injected_headers(email.formatted(), &receipt_header_names(), &case);
    }
}

#[test]
fn line_breaks_add_no_body_line() {
    for line_break in BREAKS {
        let injection = format!("{line_break}BLAKE3: forged{line_break}X-Injected: yes");

        let mut notice = consignment_notice("anna@recipient.test");
        inject_consignment(&mut notice, &injection);
        let email = composer().consignment(&notice).unwrap();
        let message = parse(email.formatted());
        let body = body_text(&message);

        for line in body.lines() {
            let unquoted = line.trim_start();
            assert!(
                !unquoted.starts_with("BLAKE3: forged") && !unquoted.starts_with("X-Injected"),
                "{line_break:?} made the body line {line:?}"
            );
        }
        assert!(
            body.contains("\n> BLAKE3: forged\n"),
            "{line_break:?} lost the quoted line: {body}"
        );
    }
}

#[test]
fn line_breaks_become_spaces() {
    let mut notice = consignment_notice("anna@recipient.test");
    inject_consignment(&mut notice, "\r\nBcc: evil@attacker.test");

    let email = composer().consignment(&notice).unwrap();
    let message = parse(email.formatted());

    assert_eq!(message.subject(), Some("Invoice  Bcc: evil@attacker.test"));
    assert_eq!(
        message.to().unwrap().first().unwrap().name(),
        Some("Zoë  Bcc: evil@attacker.test")
    );
}

#[test]
fn invalid_recipient_address_is_named() {
    let notice = consignment_notice("anna@recipient.test\r\nBcc: evil@attacker.test");

    let error = composer().consignment(&notice).unwrap_err();

    assert!(
        matches!(&error, ComposeError::InvalidAddress { role: "recipient", address, .. }
            if address == "anna@recipient.test\r\nBcc: evil@attacker.test"),
        "{error:?}"
    );
}

#[test]
fn invalid_message_id_is_rejected() {
    let mut notice = consignment_notice("anna@recipient.test");
    notice.message_id = "<id@consign.test>\r\nBcc: evil@attacker.test".to_owned();

    let error = composer().consignment(&notice).unwrap_err();

    assert!(
        matches!(&error, ComposeError::InvalidMessageId { message_id } if *message_id == notice.message_id),
        "{error:?}"
    );
}

#[test]
fn debug_output_hides_the_link() {
    let notice = consignment_notice("anna@recipient.test");
    let email = composer().consignment(&notice).unwrap();

    assert!(!format!("{notice:?}").contains(TOKEN));
    assert!(!format!("{email:?}").contains(TOKEN));
    assert!(!format!("{:?}", AccessToken::new(TOKEN).unwrap()).contains(TOKEN));
}
