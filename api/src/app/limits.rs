//! Configurable limits on submissions, and the transport security a delivery may
//! require.

/// Limits a submission must stay within. Exceeding one gives 413 (a document
/// too large) or 422 (too many documents or recipients, a text too long), naming the
/// limit, and nothing is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of one document in bytes.
    pub max_document_bytes: u64,
    /// Maximum number of documents in one delivery.
    pub max_documents: usize,
    /// Maximum number of recipients in one delivery, after expanding mailing lists.
    pub max_recipients: usize,
    /// Maximum length of the subject in characters.
    pub max_subject_chars: usize,
    /// Maximum length of the message in characters.
    pub max_message_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_document_bytes: 2 * 1024 * 1024 * 1024,
            max_documents: 20,
            max_recipients: 100,
            max_subject_chars: 200,
            max_message_chars: 20_000,
        }
    }
}

/// How e-mails and links reach recipients, for the `require_tls` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    pub mail: MailTransport,
    /// True when links are https URLs: the server serves TLS itself, or its public URL
    /// is https (TLS ends at a proxy in front of it).
    pub links_https: bool,
}

/// The e-mail path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailTransport {
    /// SMTP without TLS.
    Plain,
    /// SMTP with STARTTLS required or implicit TLS.
    Tls,
    /// `.eml` files in a local folder: nothing crosses a network.
    Outbox,
}
