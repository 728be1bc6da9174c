//! The replayed state of a delivery and its text and JSON forms.

use std::collections::HashMap;
use std::io::Write;

use consign_ledger::StoredEvent;
use consign_projections::tracking::{self, DeliveryTracking, RecipientTracking};
use consign_schemas::events::{DeliveryWithdrawn, DocumentUploaded, PostmarkIssued};
use consign_schemas::{ChainId, DeliveryId, DocumentId, Event, Timestamp};
use serde_json::{Value, json};

use super::Cutoff;

/// A delivery's state rebuilt from the events up to the cut-off.
pub(super) struct Replayed<'a> {
    delivery: DeliveryId,
    chain: ChainId,
    cutoff: Cutoff,
    counted: usize,
    last: &'a StoredEvent,
    tracking: DeliveryTracking,
    /// Uploads of the delivery's documents, in the delivery's order.
    documents: Vec<&'a DocumentUploaded>,
    postmark: Option<(&'a PostmarkIssued, &'a StoredEvent)>,
    withdrawal: Option<&'a DeliveryWithdrawn>,
}

impl<'a> Replayed<'a> {
    pub(super) fn new(
        delivery: DeliveryId,
        chain: ChainId,
        cutoff: Cutoff,
        counted: &[&'a StoredEvent],
        tracking: DeliveryTracking,
    ) -> Self {
        let mut uploads = HashMap::new();
        let mut postmark = None;
        let mut withdrawal = None;
        for event in counted {
            match &event.envelope.event {
                Event::DocumentUploaded(uploaded) => {
                    uploads.insert(uploaded.document, uploaded);
                }
                Event::PostmarkIssued(issued) if postmark.is_none() => {
                    postmark = Some((issued, *event));
                }
                Event::DeliveryWithdrawn(withdrawn) if withdrawal.is_none() => {
                    withdrawal = Some(withdrawn);
                }
                _ => {}
            }
        }
        let documents = tracking
            .summary
            .documents
            .iter()
            .filter_map(|document| uploads.get(document).copied())
            .collect();
        Self {
            delivery,
            chain,
            cutoff,
            counted: counted.len(),
            last: counted.last().expect("the submission is counted"),
            tracking,
            documents,
            postmark,
            withdrawal,
        }
    }

    fn document_name(&self, document: DocumentId) -> String {
        self.documents
            .iter()
            .find(|uploaded| uploaded.document == document)
            .map_or_else(
                || document.to_string(),
                |uploaded| uploaded.file_name.clone(),
            )
    }

    pub(super) fn to_json(&self) -> Value {
        let summary = &self.tracking.summary;
        let documents: Vec<Value> = self
            .documents
            .iter()
            .map(|uploaded| {
                json!({
                    "document": uploaded.document,
                    "file_name": uploaded.file_name,
                    "media_type": uploaded.media_type,
                    "size": uploaded.size,
                    "blake3": uploaded.content_hash,
                })
            })
            .collect();
        let recipients: Vec<Value> = self
            .tracking
            .recipients
            .iter()
            .zip(&summary.recipients)
            .map(|(record, listed)| recipient_json(record, &listed.status))
            .collect();
        let postmark = self.postmark.map(|(issued, event)| {
            json!({
                "position": event.position(),
                "time": rfc3339(event.envelope.time),
                "key_id": issued.key_id,
                "signature": hex::encode(&issued.signature),
                "submission_position": issued.submission_position,
                "submission_hash": issued.submission_hash,
                "submission_time": rfc3339(issued.time),
            })
        });
        let withdrawn = summary.withdrawn_at.map(|at| {
            json!({
                "at": rfc3339(at),
                "by": self.withdrawal.map(|withdrawn| withdrawn.by),
                "reason": self.withdrawal.map(|withdrawn| withdrawn.reason.as_str()),
            })
        });
        json!({
            "delivery": self.delivery,
            "chain": self.chain,
            "as_of": self.cutoff.to_json(),
            "events_counted": self.counted,
            "last_event": {
                "position": self.last.position(),
                "hash": self.last.hash,
                "time": rfc3339(self.last.envelope.time),
                "type": self.last.envelope.event.kind().name(),
            },
            "sender": summary.sender,
            "subject": summary.subject,
            "billing_code": summary.billing_code,
            "submitted_at": rfc3339(summary.submitted_at),
            "deliver_at": summary.deliver_at.map(rfc3339),
            "released_at": summary.released_at.map(rfc3339),
            "expires_at": summary.expires_at.map(rfc3339),
            "expired_at": summary.expired_at.map(rfc3339),
            "withdrawn": withdrawn,
            "purged_at": summary.purged_at.map(rfc3339),
            "postmark": postmark,
            "documents": documents,
            "recipients": recipients,
        })
    }

    pub(super) fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        let summary = &self.tracking.summary;
        let last = self.last;
        writeln!(
            out,
            "delivery {} as of {} (chain {})",
            self.delivery,
            self.cutoff.describe(),
            self.chain
        )?;
        writeln!(
            out,
            "last event counted: position {}, {}, {}, hash {} ({} events counted)",
            last.position(),
            last.envelope.event.kind().name(),
            rfc3339(last.envelope.time),
            last.hash,
            self.counted
        )?;
        writeln!(out)?;
        writeln!(out, "subject:    {}", summary.subject)?;
        writeln!(out, "sender:     {}", summary.sender)?;
        if let Some(code) = &summary.billing_code {
            writeln!(out, "billing:    {code}")?;
        }
        writeln!(out, "submitted:  {}", rfc3339(summary.submitted_at))?;
        if let Some(deliver_at) = summary.deliver_at {
            writeln!(out, "deliver at: {}", rfc3339(deliver_at))?;
        }
        writeln!(out, "released:   {}", or_dash(summary.released_at))?;
        match summary.expires_at {
            Some(expires_at) => writeln!(
                out,
                "expires:    {} (expired: {})",
                rfc3339(expires_at),
                summary.expired_at.map_or_else(|| "no".to_owned(), rfc3339)
            )?,
            None => writeln!(out, "expires:    never")?,
        }
        match (summary.withdrawn_at, self.withdrawal) {
            (Some(at), Some(withdrawn)) => writeln!(
                out,
                "withdrawn:  {} by {}: {}",
                rfc3339(at),
                withdrawn.by,
                withdrawn.reason
            )?,
            (at, _) => writeln!(out, "withdrawn:  {}", or_dash(at))?,
        }
        writeln!(out, "purged:     {}", or_dash(summary.purged_at))?;
        match self.postmark {
            Some((issued, event)) => writeln!(
                out,
                "postmark:   issued at position {}, {}, key {}, signature {}",
                event.position(),
                rfc3339(event.envelope.time),
                issued.key_id,
                hex::encode(&issued.signature)
            )?,
            None => writeln!(out, "postmark:   -")?,
        }

        writeln!(out)?;
        writeln!(out, "documents:")?;
        for uploaded in &self.documents {
            writeln!(
                out,
                "  {}  {}  {} bytes  blake3 {}",
                uploaded.file_name, uploaded.media_type, uploaded.size, uploaded.content_hash
            )?;
        }

        writeln!(out)?;
        writeln!(out, "recipients:")?;
        for (record, listed) in self.tracking.recipients.iter().zip(&summary.recipients) {
            self.print_recipient(out, record, &listed.status)?;
        }
        Ok(())
    }

    fn print_recipient(
        &self,
        out: &mut impl Write,
        record: &RecipientTracking,
        status: &tracking::TrackingStatus,
    ) -> std::io::Result<()> {
        let via = record
            .via_list
            .as_ref()
            .map(|list| format!(" (list {list})"))
            .unwrap_or_default();
        writeln!(
            out,
            "  {}{via}: {}",
            record.mailbox.address,
            status_name(status)
        )?;
        writeln!(
            out,
            "    link e-mail:  first attempt {}, {} attempt(s), sent {}",
            or_dash(record.first_attempt_at),
            record.attempts,
            or_dash(record.notified_at)
        )?;
        if let Some(deferral) = &record.deferral {
            writeln!(
                out,
                "    deferred:     {} (attempt {}): {}; retry at {}",
                rfc3339(deferral.at),
                deferral.attempt,
                deferral.reason,
                rfc3339(deferral.retry_at)
            )?;
        }
        if let Some(failure) = &record.failure {
            writeln!(
                out,
                "    failed:       {} (attempt {}): {}",
                rfc3339(failure.at),
                failure.attempt,
                failure.reason
            )?;
        }
        writeln!(
            out,
            "    opened:       {} ({} time(s)); refused visits: {}",
            or_dash(record.opened_at),
            record.opens,
            record.denials
        )?;
        if record.downloads.is_empty() {
            writeln!(out, "    downloaded:   -")?;
        }
        for download in &record.downloads {
            writeln!(
                out,
                "    downloaded:   {} at {}",
                self.document_name(download.document),
                rfc3339(download.at)
            )?;
        }
        writeln!(out, "    receipt sent: {}", or_dash(record.receipt_sent_at))
    }
}

fn recipient_json(record: &RecipientTracking, status: &tracking::TrackingStatus) -> Value {
    json!({
        "recipient": record.recipient,
        "address": record.mailbox.address,
        "display_name": record.mailbox.display_name,
        "via_list": record.via_list,
        "status": status,
        "notification": record.notification,
        "attempts": record.attempts,
        "first_attempt_at": record.first_attempt_at.map(rfc3339),
        "notified_at": record.notified_at.map(rfc3339),
        "deferral": record.deferral.as_ref().map(|deferral| json!({
            "at": rfc3339(deferral.at),
            "attempt": deferral.attempt,
            "reason": deferral.reason,
            "retry_at": rfc3339(deferral.retry_at),
        })),
        "failure": record.failure.as_ref().map(|failure| json!({
            "at": rfc3339(failure.at),
            "attempt": failure.attempt,
            "reason": failure.reason,
        })),
        "opened_at": record.opened_at.map(rfc3339),
        "opens": record.opens,
        "denials": record.denials,
        "downloads": record.downloads.iter().map(|download| json!({
            "document": download.document,
            "at": rfc3339(download.at),
        })).collect::<Vec<_>>(),
        "receipt_sent_at": record.receipt_sent_at.map(rfc3339),
    })
}

/// Returns the status as the tracking API spells it, such as `downloaded`.
fn status_name(status: &tracking::TrackingStatus) -> String {
    match serde_json::to_value(status) {
        Ok(Value::String(name)) => name,
        _ => format!("{status:?}"),
    }
}

/// Formats a sequencer time as RFC 3339 in UTC with its exact microseconds.
pub(super) fn rfc3339(time: Timestamp) -> String {
    match jiff::Timestamp::from_microsecond(time.as_micros()) {
        Ok(instant) => instant.to_string(),
        Err(_) => format!("{} microseconds since 1970-01-01 UTC", time.as_micros()),
    }
}

fn or_dash(time: Option<Timestamp>) -> String {
    time.map_or_else(|| "-".to_owned(), rfc3339)
}
