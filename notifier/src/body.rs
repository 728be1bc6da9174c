//! Plain-text bodies of the consignment and receipt e-mails.
//!
//! The functions here only lay out text. Every user-given string arrives already
//! cleaned by [`crate::text`], and the layout keeps the sender's own words in a quoted
//! block, apart from the link and the document list.

use std::fmt::Write as _;

use consign_schemas::Timestamp;
use consign_schemas::events::ZonedTime;

use crate::compose::DocumentEntry;
use crate::text::{format_size, format_utc, format_zoned, quoted_block, single_line};

/// Everything the consignment body shows, with single-line fields already cleaned.
pub(crate) struct ConsignmentText<'a> {
    pub recipient_name: Option<&'a str>,
    /// The sender as `Name <address>` or the bare address.
    pub sender_label: &'a str,
    pub subject: &'a str,
    /// The sender's message as typed, possibly over several lines.
    pub message: &'a str,
    pub link: &'a str,
    pub documents: &'a [DocumentEntry],
    pub expires_at: Option<&'a ZonedTime>,
    pub password_required: bool,
}

/// Everything the receipt body shows, with single-line fields already cleaned.
pub(crate) struct ReceiptText<'a> {
    pub recipient_label: &'a str,
    pub delivery_subject: &'a str,
    pub delivery: &'a str,
    pub document: &'a DocumentEntry,
    pub downloaded_at: Timestamp,
}

/// Lays out the e-mail that brings a recipient the private link.
pub(crate) fn consignment_body(text: &ConsignmentText<'_>) -> String {
    let mut body = String::new();

    match text.recipient_name {
        Some(name) => writeln!(body, "Hello {name},").unwrap(),
        None => writeln!(body, "Hello,").unwrap(),
    }
    writeln!(body).unwrap();
    let count = text.documents.len();
    let noun = if count == 1 { "document" } else { "documents" };
    writeln!(
        body,
        "{} sent you {count} {noun} by certified delivery.",
        text.sender_label
    )
    .unwrap();
    writeln!(body).unwrap();
    writeln!(body, "Subject: {}", text.subject).unwrap();

    if !text.message.trim().is_empty() {
        writeln!(body).unwrap();
        writeln!(body, "Message from the sender:").unwrap();
        body.push_str(&quoted_block(text.message));
    }

    writeln!(body).unwrap();
    writeln!(body, "Open the delivery with this private link:").unwrap();
    writeln!(body, "{}", text.link).unwrap();
    if text.password_required {
        writeln!(body).unwrap();
        writeln!(
            body,
            "The sender protected this delivery with a password. The sender gives it to \
             you by another route. It is never sent by e-mail."
        )
        .unwrap();
    }

    writeln!(body).unwrap();
    writeln!(body, "Documents:").unwrap();
    write_document_list(&mut body, text.documents);

    if let Some(expires_at) = text.expires_at {
        writeln!(body).unwrap();
        writeln!(
            body,
            "The delivery expires at {}.",
            format_zoned(expires_at)
        )
        .unwrap();
    }

    writeln!(body).unwrap();
    writeln!(
        body,
        "The link is for you alone: anyone who has it can open the delivery{}. Every \
         opening and download is recorded as evidence.",
        if text.password_required {
            " with the password"
        } else {
            ""
        }
    )
    .unwrap();
    body
}

/// Lays out the receipt e-mail, which informs a sender that a recipient downloaded a
/// document.
pub(crate) fn receipt_body(text: &ReceiptText<'_>) -> String {
    let mut body = String::new();

    writeln!(body, "Hello,").unwrap();
    writeln!(body).unwrap();
    writeln!(
        body,
        "{} downloaded a document of your delivery.",
        text.recipient_label
    )
    .unwrap();
    writeln!(body).unwrap();
    writeln!(body, "Delivery: {}", text.delivery_subject).unwrap();
    writeln!(body, "Delivery id: {}", text.delivery).unwrap();
    writeln!(body, "Downloaded at: {}", format_utc(text.downloaded_at)).unwrap();
    writeln!(body).unwrap();
    writeln!(body, "Document:").unwrap();
    write_document_list(&mut body, std::slice::from_ref(text.document));
    body
}

/// Writes one numbered entry per document: its cleaned name, size and BLAKE3 hash.
fn write_document_list(body: &mut String, documents: &[DocumentEntry]) {
    if documents.is_empty() {
        writeln!(body, "  (none)").unwrap();
    }
    for (document_idx, document) in documents.iter().enumerate() {
        let name = single_line(&document.name);
        let name = if name.is_empty() { "(unnamed)" } else { &name };

        writeln!(body, "  {}. {name}", document_idx + 1).unwrap();
        writeln!(body, "     Size: {}", format_size(document.size)).unwrap();
        writeln!(body, "     BLAKE3: {}", document.content_hash.to_hex()).unwrap();
    }
}
