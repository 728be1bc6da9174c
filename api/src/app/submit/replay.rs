//! Idempotent retries of a submission: the `Idempotency-Key` header, the check that a
//! retry repeats the submission its key first recorded, and the response body that
//! describes that submission again.

use axum::http::HeaderMap;
use consign_schemas::events::{DeliveryOptions, DocumentUploaded};
use consign_schemas::{Event, IdempotencyKey};
use serde_json::json;

use super::super::auth::Caller;
use super::super::core::Core;
use super::super::error::ApiError;
use super::super::passwords;

/// Reads the optional `Idempotency-Key` header into a ledger key scoped to the caller.
pub(super) fn idempotency_key(
    headers: &HeaderMap,
    caller: &Caller,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let keys = headers.get_all("idempotency-key").iter().count();
    if keys > 1 {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            format!(
                "the request has {keys} Idempotency-Key headers, and the server would use only \
                 one of them; send the header once"
            ),
        ));
    }
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .ok()
        .filter(|text| !text.is_empty() && text.len() <= 100)
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 100 visible ASCII characters",
            )
        })?;
    IdempotencyKey::new(format!("submit/{}/{text}", caller.account.id))
        .map(Some)
        .map_err(|error| ApiError::invalid("Idempotency-Key", error.to_string()))
}

/// The parts of a submission that a retry must repeat for its idempotency key to replay
/// the first: the subject, message, recipients, documents and options. The password
/// is compared separately, because each submission salts its hash.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Fingerprint {
    subject: String,
    message: String,
    /// The recipients named directly, as lowercase address and display name, sorted.
    named: Vec<(String, Option<String>)>,
    /// The mailing lists the other recipients came from, sorted. A retry that names
    /// the same lists replays although their members changed since.
    lists: Vec<String>,
    /// Each document's content hash, file name and media type, in order.
    documents: Vec<DocumentPrint>,
    /// The options with the password hash left out.
    options: Option<DeliveryOptions>,
    password: bool,
}

/// A document's content hash, file name and media type.
pub(super) type DocumentPrint = (consign_schemas::ContentHash, String, String);

impl Fingerprint {
    /// Takes the fingerprint of a `DeliverySubmitted` event and its documents.
    pub(super) fn new(submitted: &Event, documents: impl Iterator<Item = DocumentPrint>) -> Self {
        let mut fingerprint = Self {
            subject: String::new(),
            message: String::new(),
            named: Vec::new(),
            lists: Vec::new(),
            documents: documents.collect(),
            options: None,
            password: false,
        };
        if let Event::DeliverySubmitted(submitted) = submitted {
            fingerprint.subject.clone_from(&submitted.subject);
            fingerprint.message.clone_from(&submitted.message);
            for entry in &submitted.recipients {
                match &entry.via_list {
                    Some(list) => fingerprint.lists.push(list.clone()),
                    None => fingerprint.named.push((
                        entry.mailbox.address.to_lowercase(),
                        entry.mailbox.display_name.clone(),
                    )),
                }
            }
            fingerprint.named.sort();
            fingerprint.lists.sort();
            fingerprint.lists.dedup();
            fingerprint.password = submitted.options.access_password_hash.is_some();
            fingerprint.options = Some(DeliveryOptions {
                access_password_hash: None,
                ..submitted.options.clone()
            });
        }
        fingerprint
    }

    /// Names the parts in which `retry` differs from this fingerprint.
    fn differences(&self, retry: &Self) -> Vec<&'static str> {
        let mut differ = Vec::new();
        if self.subject != retry.subject {
            differ.push("subject");
        }
        if self.message != retry.message {
            differ.push("message");
        }
        if self.named != retry.named || self.lists != retry.lists {
            differ.push("recipients");
        }
        if self.documents != retry.documents {
            differ.push("documents");
        }
        if self.password != retry.password {
            differ.push("password");
        }
        if let (Some(original), Some(repeated)) = (&self.options, &retry.options) {
            let fields = [
                ("priority", original.priority != repeated.priority),
                (
                    "encrypt",
                    original.encrypt_at_rest != repeated.encrypt_at_rest,
                ),
                (
                    "receipt",
                    original.receipt_requested != repeated.receipt_requested,
                ),
                ("expires_at", original.expires_at != repeated.expires_at),
                ("deliver_at", original.deliver_at != repeated.deliver_at),
                (
                    "billing_code",
                    original.billing_code != repeated.billing_code,
                ),
                ("require_tls", original.require_tls != repeated.require_tls),
                ("postmark", original.postmark != repeated.postmark),
            ];
            differ.extend(
                fields
                    .into_iter()
                    .filter(|(_, differs)| *differs)
                    .map(|(name, _)| name),
            );
        }
        differ
    }
}

/// Describes the earlier submission that an idempotency key replayed, after checking
/// that the retry repeats it.
pub(super) async fn replayed_body(
    core: &Core,
    appended: &consign_ledger::Appended,
    retry: &Fingerprint,
    password: Option<String>,
) -> Result<serde_json::Value, ApiError> {
    let chain = appended.chain;
    let first = appended.events[0].position;
    let originals = core.ledger.read(chain, first, appended.events.len())?;
    let documents: Vec<&DocumentUploaded> = originals
        .iter()
        .filter_map(|stored| match &stored.envelope.event {
            Event::DocumentUploaded(uploaded) => Some(uploaded),
            _ => None,
        })
        .collect();
    let Some(submitted) = originals
        .iter()
        .find(|stored| matches!(stored.envelope.event, Event::DeliverySubmitted(_)))
    else {
        return Err(ApiError::Conflict {
            message:
                "the Idempotency-Key was used for a request that is not a submission; use a new key"
                    .to_owned(),
        });
    };
    let original = Fingerprint::new(
        &submitted.envelope.event,
        documents.iter().map(|document| {
            (
                document.content_hash,
                document.file_name.clone(),
                document.media_type.clone(),
            )
        }),
    );
    let Event::DeliverySubmitted(event) = &submitted.envelope.event else {
        unreachable!("found as a DeliverySubmitted event above");
    };
    let mut differ = original.differences(retry);
    if differ.is_empty()
        && let Some(password) = password
        && !passwords::verify(password, event.options.access_password_hash.clone()).await
    {
        differ.push("password");
    }
    if !differ.is_empty() {
        return Err(ApiError::Conflict {
            message: format!(
                "the Idempotency-Key was used for a different submission (other {}); use a \
                 new key for a new submission",
                differ.join(", ")
            ),
        });
    }
    let released = originals
        .iter()
        .any(|stored| matches!(stored.envelope.event, Event::DeliveryReleased(_)));
    Ok(json!({
        "delivery": event.delivery,
        "chain": chain,
        "position": submitted.position(),
        "hash": submitted.hash,
        "status": if released { "released" } else { "scheduled" },
        "replayed": true,
        "documents": documents.iter().map(|document| json!({
            "document": document.document,
            "file_name": document.file_name,
            "media_type": document.media_type,
            "size": document.size,
            "blake3": document.content_hash,
        })).collect::<Vec<_>>(),
        "recipients": event.recipients.iter().map(|entry| json!({
            "recipient": entry.recipient,
            "address": entry.mailbox.address,
        })).collect::<Vec<_>>(),
    }))
}

/// Rewrites the advice of an unconfirmed submission for a client that sent no
/// `Idempotency-Key`: it has no key to retry with.
pub(super) fn advice_without_key(message: &str) -> String {
    let advice = "list your deliveries (GET /api/deliveries) before you submit it again, and \
                  send an Idempotency-Key header so that a retry cannot record it twice";
    match message.find("retry with the same idempotency key") {
        Some(start) => format!("{}{advice}", &message[..start]),
        None => format!("{message}; it may still be recorded, so {advice}"),
    }
}

#[cfg(test)]
mod tests {
    use super::advice_without_key;

    #[test]
    fn advice_without_key_replaces_retry() {
        let message = "the ledger cannot confirm this now: chain 1 cannot take appends in this \
                       process now: Kafka did not confirm the events (timed out); they may or \
                       may not be recorded, so retry with the same idempotency key; retry shortly";

        let advice = advice_without_key(message);

        assert!(
            advice.starts_with("the ledger cannot confirm this now: chain 1"),
            "{advice}"
        );
        assert!(!advice.contains("same idempotency key"), "{advice}");
        assert!(advice.contains("GET /api/deliveries"), "{advice}");
        assert!(advice.contains("Idempotency-Key header"), "{advice}");
    }

    #[test]
    fn advice_without_key_extends_other_reasons() {
        let advice =
            advice_without_key("the ledger cannot confirm this now: the sequencer is starting");

        assert!(advice.starts_with("the ledger cannot confirm this now: the sequencer is starting; it may still be recorded"), "{advice}");
        assert!(advice.contains("GET /api/deliveries"), "{advice}");
    }
}
