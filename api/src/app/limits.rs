//! Configurable limits on submissions.

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
