//! Composition of the two e-mails the notifier sends: the consignment e-mail that brings
//! a recipient the private link, and the receipt e-mail that informs a sender of a
//! download.
//!
//! [`Composer`] owns the configured From mailbox and the public base URL of the links.
//! It turns a [`ConsignmentNotice`] or [`ReceiptNotice`] into an [`OutgoingEmail`]: the
//! SMTP envelope and the exact message bytes that every attempt sends, so a retry
//! sends the same Date and Message-ID.
//!
//! Headers are written by lettre, which encodes non-ASCII text as RFC 2047 encoded
//! words and quotes display names. User-given text is first reduced to one line by
//! [`crate::text::single_line`], so a CR or LF in it cannot start a new header.

use std::fmt;

use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox as LettreMailbox, SinglePart};

use consign_schemas::events::{Mailbox, NotificationKind, ZonedTime};
use consign_schemas::{ContentHash, DeliveryId, NotificationId, Timestamp};

use crate::body::{ConsignmentText, ReceiptText, consignment_body, receipt_body};
use crate::mailbox::{mailbox_label, to_lettre_mailbox};
use crate::message_id::validate_message_id;
use crate::text::single_line;

/// Errors of composition: invalid configuration, addresses, ids or tokens.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("invalid {role} address {address:?}: {reason}")]
    InvalidAddress {
        /// Role of the mailbox in the e-mail: `sender`, `recipient` or `from`.
        role: &'static str,
        address: String,
        reason: String,
    },

    #[error(
        "invalid Message-ID {message_id:?}: expected <left@right> in printable ASCII \
         without spaces, at most 250 bytes"
    )]
    InvalidMessageId { message_id: String },

    #[error("invalid Message-ID domain {domain:?}: expected a host name such as mail.example.com")]
    InvalidMessageIdDomain { domain: String },

    #[error(
        "invalid public base URL {url:?}: {reason}; expected an http or https URL such as \
         https://consign.example.com"
    )]
    InvalidBaseUrl { url: String, reason: &'static str },

    /// The token itself stays out of the message because it opens the delivery.
    #[error(
        "invalid access token of {length} bytes: expected {min} to {max} characters \
         from A-Z, a-z, 0-9, '-' and '_'",
        min = AccessToken::MIN_LEN,
        max = AccessToken::MAX_LEN
    )]
    InvalidAccessToken { length: usize },

    #[error("failed to build the message: {0}")]
    Build(#[from] lettre::error::Error),

    /// lettre wrote 8-bit bytes although every part should be encoded to 7-bit ASCII.
    /// Sending such a message needs the 8BITMIME extension, which relays may lack.
    #[error("the composed message contains non-ASCII bytes; this is a bug in the notifier")]
    NotAscii,
}

/// Settings of the [`Composer`], fixed for the life of the process.
#[derive(Clone, Debug)]
pub struct ComposerConfig {
    /// Address in the From header of every e-mail, such as `notify@consign.example.com`.
    pub from_address: String,
    /// Display name in the From header, in any script.
    pub from_name: Option<String>,
    /// Base of the recipients' private links, which have the form
    /// `{public_base_url}/d/{token}`.
    pub public_base_url: String,
}

/// The secret token of a recipient's private link.
///
/// Only its hash enters the ledger. `Debug` prints no character of it, and no error or
/// log line of this crate contains it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub const MIN_LEN: usize = 16;
    pub const MAX_LEN: usize = 256;

    /// Checks and wraps a token.
    ///
    /// # Errors
    ///
    /// [`ComposeError::InvalidAccessToken`] unless the token has [`Self::MIN_LEN`] to
    /// [`Self::MAX_LEN`] characters of the URL-safe base64 alphabet, which need no
    /// escaping in a URL path.
    pub fn new(token: impl Into<String>) -> Result<Self, ComposeError> {
        let token = token.into();
        let alphabet_valid = token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&token.len()) || !alphabet_valid {
            return Err(ComposeError::InvalidAccessToken {
                length: token.len(),
            });
        }
        Ok(Self(token))
    }

    /// The token text, for building the link and for looking up its hash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// One document as an e-mail lists it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DocumentEntry {
    /// The client's file name, in any script.
    pub name: String,
    /// Size of the plaintext in bytes.
    pub size: u64,
    /// BLAKE3 of the plaintext, shown in hex so the recipient can check the download.
    pub content_hash: ContentHash,
}

/// Content of the consignment e-mail to one recipient.
///
/// There is deliberately no access password here: the sender passes it to the
/// recipient by another route, and the e-mail only mentions whether one is needed.
#[derive(Clone, Debug)]
pub struct ConsignmentNotice {
    pub notification: NotificationId,
    /// Fixed when the attempt was recorded; see [`crate::new_message_id`].
    pub message_id: String,
    pub recipient: Mailbox,
    /// The sending account's mailbox: named in the text and used as Reply-To.
    pub sender: Mailbox,
    pub subject: String,
    pub message: String,
    pub access_token: AccessToken,
    pub documents: Vec<DocumentEntry>,
    pub expires_at: Option<ZonedTime>,
    pub password_required: bool,
}

/// Content of the receipt e-mail to a sender: `recipient` downloaded `document` at
/// `downloaded_at`.
#[derive(Clone, Debug)]
pub struct ReceiptNotice {
    pub notification: NotificationId,
    /// Fixed when the attempt was recorded; see [`crate::new_message_id`].
    pub message_id: String,
    pub delivery: DeliveryId,
    pub delivery_subject: String,
    /// The sending account's mailbox, which receives the receipt.
    pub sender: Mailbox,
    pub recipient: Mailbox,
    pub document: DocumentEntry,
    pub downloaded_at: Timestamp,
}

/// A composed e-mail, ready to be sent or written to the outbox.
///
/// The bytes are fixed at composition. [`crate::Mailer::send`] hands the value back
/// when a send fails, so a retry sends the identical message.
#[derive(Clone)]
pub struct OutgoingEmail {
    notification: NotificationId,
    kind: NotificationKind,
    message_id: String,
    envelope: Envelope,
    /// RFC 5322 message with CRLF line endings. 7-bit ASCII, checked at composition.
    formatted: Vec<u8>,
}

impl OutgoingEmail {
    pub fn notification(&self) -> NotificationId {
        self.notification
    }

    pub fn kind(&self) -> NotificationKind {
        self.kind
    }

    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// Returns the SMTP envelope: MAIL FROM is the From address, RCPT TO the one
    /// recipient.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Returns the message bytes as sent in SMTP DATA and written to the outbox.
    pub fn formatted(&self) -> &[u8] {
        &self.formatted
    }
}

impl fmt::Debug for OutgoingEmail {
    /// Leaves out the message bytes, which hold the recipient's private link.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingEmail")
            .field("notification", &self.notification)
            .field("kind", &self.kind)
            .field("message_id", &self.message_id)
            .field("envelope", &self.envelope)
            .field("formatted_len", &self.formatted.len())
            .finish()
    }
}

/// Composes consignment and receipt e-mails from one configuration.
#[derive(Clone, Debug)]
pub struct Composer {
    from: LettreMailbox,
    /// http or https URL without query, fragment or trailing slash.
    public_base_url: String,
}

impl Composer {
    /// Checks the configuration and builds a composer.
    ///
    /// # Errors
    ///
    /// [`ComposeError::InvalidAddress`] for an unusable From address, and
    /// [`ComposeError::InvalidBaseUrl`] unless the base URL is an absolute http or https
    /// URL with a host and without credentials, query or fragment.
    pub fn new(config: ComposerConfig) -> Result<Self, ComposeError> {
        let from = to_lettre_mailbox(
            "from",
            &Mailbox {
                address: config.from_address,
                display_name: config.from_name,
            },
        )?;
        let public_base_url = validate_base_url(&config.public_base_url)?;
        Ok(Self {
            from,
            public_base_url,
        })
    }

    /// Composes the e-mail that brings one recipient the private link.
    ///
    /// The subject is the delivery's subject on one line, or `Documents from {sender}`
    /// when that is blank. The body greets the recipient, quotes the sender's message,
    /// and gives the link, whether a password is needed, each document's name, size and
    /// BLAKE3 hash, and the expiry if there is one.
    ///
    /// # Errors
    ///
    /// [`ComposeError::InvalidMessageId`] for a malformed Message-ID,
    /// [`ComposeError::InvalidAddress`] for an unusable recipient or sender address, and
    /// [`ComposeError::Build`] or [`ComposeError::NotAscii`] if lettre fails.
    pub fn consignment(&self, notice: &ConsignmentNotice) -> Result<OutgoingEmail, ComposeError> {
        validate_message_id(&notice.message_id)?;
        let to = to_lettre_mailbox("recipient", &notice.recipient)?;
        let reply_to = to_lettre_mailbox("sender", &notice.sender)?;

        let sender_label = mailbox_label(&reply_to);
        let subject = match single_line(&notice.subject) {
            subject if subject.is_empty() => format!("Documents from {sender_label}"),
            subject => subject,
        };
        let link = format!("{}/d/{}", self.public_base_url, notice.access_token.0);
        let body = consignment_body(&ConsignmentText {
            recipient_name: to.name.as_deref(),
            sender_label: &sender_label,
            subject: &subject,
            message: &notice.message,
            link: &link,
            documents: &notice.documents,
            expires_at: notice.expires_at.as_ref(),
            password_required: notice.password_required,
        });

        let message = Message::builder()
            .from(self.from.clone())
            .reply_to(reply_to)
            .to(to)
            .subject(subject)
            .message_id(Some(notice.message_id.clone()))
            .header(AutoSubmitted)
            .singlepart(SinglePart::plain(body))?;
        finish(
            notice.notification,
            NotificationKind::Consignment,
            &notice.message_id,
            message,
        )
    }

    /// Composes the receipt e-mail, which informs the sender that a recipient downloaded
    /// a document.
    ///
    /// The subject names the recipient and the file. The body adds the delivery's
    /// subject and id, the UTC time of the download, and the document's size and BLAKE3
    /// hash.
    ///
    /// # Errors
    ///
    /// As [`Composer::consignment`].
    pub fn receipt(&self, notice: &ReceiptNotice) -> Result<OutgoingEmail, ComposeError> {
        validate_message_id(&notice.message_id)?;
        let to = to_lettre_mailbox("sender", &notice.sender)?;
        let downloader = to_lettre_mailbox("recipient", &notice.recipient)?;

        let recipient_label = mailbox_label(&downloader);
        let file_name = match single_line(&notice.document.name) {
            name if name.is_empty() => "a document".to_owned(),
            name => name,
        };
        let subject = format!("Receipt: {recipient_label} downloaded {file_name}");
        let body = receipt_body(&ReceiptText {
            recipient_label: &recipient_label,
            delivery_subject: &single_line(&notice.delivery_subject),
            delivery: &notice.delivery.to_string(),
            document: &notice.document,
            downloaded_at: notice.downloaded_at,
        });

        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(notice.message_id.clone()))
            .header(AutoSubmitted)
            .singlepart(SinglePart::plain(body))?;
        finish(
            notice.notification,
            NotificationKind::Receipt,
            &notice.message_id,
            message,
        )
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834), the header by which vacation responders
/// and other automatic senders recognize a message they must not reply to.
#[derive(Clone, Debug)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// Formats the message once and checks that it is 7-bit clean.
fn finish(
    notification: NotificationId,
    kind: NotificationKind,
    message_id: &str,
    message: Message,
) -> Result<OutgoingEmail, ComposeError> {
    let formatted = message.formatted();
    if !formatted.is_ascii() {
        return Err(ComposeError::NotAscii);
    }
    Ok(OutgoingEmail {
        notification,
        kind,
        message_id: message_id.to_owned(),
        envelope: message.envelope().clone(),
        formatted,
    })
}

/// Checks the public base URL and returns it without a trailing slash.
fn validate_base_url(text: &str) -> Result<String, ComposeError> {
    let invalid = |reason| ComposeError::InvalidBaseUrl {
        url: text.to_owned(),
        reason,
    };

    let url = url::Url::parse(text).map_err(|_| invalid("not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme is not http or https"));
    }
    if url.host_str().is_none() {
        return Err(invalid("the host is missing"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials are not allowed"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }

    // Url normalises the text (lowercase host, percent-encoded path), so the link in the
    // e-mail is the normalised form even if the configuration was written otherwise.
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_debug_hides_the_token() {
        let token = AccessToken::new("Secret-Token_0123456789").unwrap();
        assert_eq!(format!("{token:?}"), "AccessToken(<redacted>)");
    }

    #[test]
    fn access_token_rejects_bad_alphabet_and_length() {
        for token in [
            "short",
            "has space in the token",
            "slash/in/the/token/x",
            "ä_______________",
        ] {
            let error = AccessToken::new(token).unwrap_err();
            assert!(
                matches!(error, ComposeError::InvalidAccessToken { length } if length == token.len())
            );
            assert!(!error.to_string().contains(token));
        }
        assert!(AccessToken::new("a".repeat(AccessToken::MAX_LEN + 1)).is_err());
    }

    #[test]
    fn base_url_is_normalised() {
        assert_eq!(
            validate_base_url("https://Consign.Example.com/").unwrap(),
            "https://consign.example.com"
        );
        assert_eq!(
            validate_base_url("http://127.0.0.1:8080/consign/").unwrap(),
            "http://127.0.0.1:8080/consign"
        );
    }

    #[test]
    fn base_url_rejects_unusable_forms() {
        for url in [
            "consign.example.com",
            "ftp://consign.example.com",
            "https://user:pw@consign.example.com",
            "https://consign.example.com/?a=b",
            "https://consign.example.com/#top",
        ] {
            let error = validate_base_url(url).unwrap_err();
            assert!(matches!(&error, ComposeError::InvalidBaseUrl { url: u, .. } if u == url));
        }
    }
}
