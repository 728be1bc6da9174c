//! Offline verification of a bundle: every check is reported, passed or failed.

use std::collections::HashMap;

use consign_schemas::events::{DeliverySubmitted, PostmarkIssued};
use consign_schemas::{
    ChainId, ContentHash, DocumentId, Envelope, Event, Position, hash_stored_event,
};
use ed25519_dalek::VerifyingKey;

use super::{BUNDLE_FORMAT, Bundle, BundleCheckpoint, BundlePostmark};
use crate::checkpoint::{CheckpointFields, PublicKeys, verify_checkpoint, verify_signature};
use crate::merkle::verify_inclusion;
use crate::postmark::{PostmarkFields, key_id, postmark_message};

/// One check of a bundle and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The check's name, such as `inclusion` or `checkpoint-signature`.
    pub name: &'static str,
    /// The checked item, such as `event 17`.
    pub subject: String,
    pub passed: bool,
    pub detail: String,
}

/// Every check made on a bundle, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub checks: Vec<Check>,
}

impl VerifyReport {
    /// Returns whether every check passed; a report without checks did not pass.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|check| check.passed)
    }

    /// Returns the checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| !check.passed)
    }

    fn record(
        &mut self,
        name: &'static str,
        subject: impl Into<String>,
        outcome: Result<String, String>,
    ) {
        let (passed, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        self.checks.push(Check {
            name,
            subject: subject.into(),
            passed,
            detail,
        });
    }
}

/// Checks bundle bytes with nothing but the bundle: no server, no data directory.
pub fn verify_bundle(bytes: &[u8]) -> VerifyReport {
    let mut report = VerifyReport::default();
    let bundle = match Bundle::from_bytes(bytes) {
        Ok(bundle) => bundle,
        Err(error) => {
            report.record("format", "bundle", Err(format!("not a bundle: {error}")));
            return report;
        }
    };
    let format = if bundle.format != BUNDLE_FORMAT {
        Err(format!(
            "format is {:?}, expected {BUNDLE_FORMAT:?}",
            bundle.format
        ))
    } else if bundle.to_bytes() != bytes {
        Err(
            "the bytes are not in canonical form (spacing, order or letter case changed)"
                .to_owned(),
        )
    } else {
        Ok(BUNDLE_FORMAT.to_owned())
    };
    report.record("format", "bundle", format);

    let keys: PublicKeys = bundle
        .public_keys
        .iter()
        .map(|(id, key)| (id.clone(), key.0))
        .collect();
    for (id, key) in &keys {
        let outcome = match VerifyingKey::from_bytes(key) {
            Ok(public) if key_id(&public) == *id => Ok("matches the key".to_owned()),
            Ok(public) => Err(format!("the key's id is {}", key_id(&public))),
            Err(_) => Err("not a valid Ed25519 public key".to_owned()),
        };
        report.record("key-id", id.clone(), outcome);
    }

    check_checkpoint(bundle.chain, &bundle.checkpoint, Some(&keys), &mut report);
    let decoded = check_events(&bundle, &mut report);
    check_postmarks(&bundle, &keys, &decoded, &mut report);
    report
}

/// Checks a checkpoint saved from the checkpoint API before a ledger is compared with
/// it: its stored event states its values, and with `keys` its signature verifies.
/// Returns the failed checks' details.
///
/// # Errors
///
/// The details of each failed check.
pub fn check_saved_checkpoint(
    chain: ChainId,
    checkpoint: &BundleCheckpoint,
    keys: Option<&PublicKeys>,
) -> Result<(), Vec<String>> {
    let mut report = VerifyReport::default();
    check_checkpoint(chain, checkpoint, keys, &mut report);
    let failures: Vec<String> = report
        .failures()
        .map(|check| format!("{}: {}", check.name, check.detail))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

fn check_checkpoint(
    chain: ChainId,
    checkpoint: &BundleCheckpoint,
    keys: Option<&PublicKeys>,
    report: &mut VerifyReport,
) {
    let subject = format!("checkpoint {}", checkpoint.position);
    let event = (|| {
        if hash_stored_event(&checkpoint.stored) != checkpoint.hash {
            return Err("its stored bytes do not hash to its hash".to_owned());
        }
        let envelope = Envelope::decode(&checkpoint.stored).map_err(|error| error.to_string())?;
        let Event::CheckpointSigned(signed) = &envelope.event else {
            return Err(format!(
                "the stored event is a {}",
                envelope.event.kind().name()
            ));
        };
        let matches = envelope.chain == chain
            && signed.chain == chain
            && envelope.position == checkpoint.position
            && envelope.time == checkpoint.time
            && signed.tree_size == checkpoint.tree_size
            && signed.root_hash == checkpoint.root
            && signed.key_id == checkpoint.key_id
            && signed.signature == checkpoint.signature;
        if !matches {
            return Err("the stored event states other values than the bundle".to_owned());
        }
        if checkpoint.tree_size != checkpoint.position.get() {
            return Err(format!(
                "tree size {} is not the checkpoint's position",
                checkpoint.tree_size
            ));
        }
        Ok(format!(
            "tree of {} events, root {}",
            checkpoint.tree_size, checkpoint.root
        ))
    })();
    report.record("checkpoint-event", subject.clone(), event);

    let Some(keys) = keys else {
        return;
    };
    let fields = CheckpointFields {
        chain,
        tree_size: checkpoint.tree_size,
        root: checkpoint.root,
        time: checkpoint.time,
    };
    let signature = verify_checkpoint(keys, &fields, &checkpoint.key_id, &checkpoint.signature)
        .map(|()| format!("signed with {}", checkpoint.key_id))
        .map_err(|error| error.to_string());
    report.record("checkpoint-signature", subject, signature);
}

/// Checks each event and returns the envelopes that decoded, by position.
fn check_events(bundle: &Bundle, report: &mut VerifyReport) -> HashMap<Position, Envelope> {
    let mut decoded = HashMap::new();
    let ordered = bundle
        .events
        .windows(2)
        .all(|pair| pair[0].position < pair[1].position);
    let events = if bundle.events.is_empty() {
        Err("the bundle has no events".to_owned())
    } else if !ordered {
        Err(
            "the events are not in strictly increasing position order: one is repeated or moved"
                .to_owned(),
        )
    } else {
        Ok(format!("{} events in position order", bundle.events.len()))
    };
    report.record("events", "bundle", events);
    for event in &bundle.events {
        let subject = format!("event {}", event.position);
        let computed = hash_stored_event(&event.stored);
        let hash = if computed == event.hash {
            Ok(computed.to_string())
        } else {
            Err(format!("the stored bytes hash to {computed}"))
        };
        report.record("event-hash", subject.clone(), hash);

        let place = match Envelope::decode(&event.stored) {
            Err(error) => Err(format!("the stored bytes do not decode: {error}")),
            Ok(envelope)
                if envelope.chain != bundle.chain || envelope.position != event.position =>
            {
                Err(format!(
                    "the bytes say chain {} position {}",
                    envelope.chain, envelope.position
                ))
            }
            Ok(envelope) if envelope.event.kind().name() != event.kind => Err(format!(
                "the bytes contain a {}",
                envelope.event.kind().name()
            )),
            Ok(envelope) => {
                let detail = format!("{} at {}", event.kind, utc(envelope.time));
                decoded.insert(event.position, envelope);
                Ok(detail)
            }
        };
        report.record("event-place", subject.clone(), place);

        let checkpoint = &bundle.checkpoint;
        let included = verify_inclusion(
            &event.hash,
            event.position.get(),
            checkpoint.tree_size,
            &event.inclusion_proof,
            &checkpoint.root,
        );
        let inclusion = if included {
            Ok(format!("in the tree of checkpoint {}", checkpoint.position))
        } else {
            Err(format!(
                "the proof does not lead to the root of checkpoint {}",
                checkpoint.position
            ))
        };
        report.record("inclusion", subject, inclusion);
    }

    check_membership(bundle, &decoded, report);
    decoded
}

/// Checks that each event belongs to the delivery: it names the delivery, or it is
/// the upload of a document that the delivery's submission lists.
fn check_membership(
    bundle: &Bundle,
    decoded: &HashMap<Position, Envelope>,
    report: &mut VerifyReport,
) {
    let submissions: Vec<&DeliverySubmitted> = decoded
        .values()
        .filter_map(|envelope| match &envelope.event {
            Event::DeliverySubmitted(submitted) if submitted.delivery == bundle.delivery => {
                Some(submitted)
            }
            _ => None,
        })
        .collect();
    let submission = match submissions.as_slice() {
        [one] => {
            report.record(
                "submission",
                "bundle",
                Ok(format!("{} documents", one.documents.len())),
            );
            Some(*one)
        }
        [] => {
            report.record(
                "submission",
                "bundle",
                Err("no DeliverySubmitted event of the delivery".to_owned()),
            );
            None
        }
        _ => {
            report.record(
                "submission",
                "bundle",
                Err("more than one DeliverySubmitted event".to_owned()),
            );
            None
        }
    };

    for event in &bundle.events {
        let Some(envelope) = decoded.get(&event.position) else {
            continue;
        };
        let belongs = match &envelope.event {
            Event::DocumentUploaded(uploaded) => {
                submission.is_some_and(|submitted| submitted.documents.contains(&uploaded.document))
            }
            other => other.delivery() == Some(bundle.delivery),
        };
        let outcome = if belongs {
            Ok(bundle.delivery.to_string())
        } else {
            Err("the event is not part of this delivery".to_owned())
        };
        report.record(
            "event-delivery",
            format!("event {}", event.position),
            outcome,
        );
    }
}

fn check_postmarks(
    bundle: &Bundle,
    keys: &PublicKeys,
    decoded: &HashMap<Position, Envelope>,
    report: &mut VerifyReport,
) {
    let issued: Vec<&PostmarkIssued> = decoded
        .values()
        .filter_map(|envelope| match &envelope.event {
            Event::PostmarkIssued(postmark) => Some(postmark),
            _ => None,
        })
        .collect();
    let count = if issued.len() == bundle.postmarks.len() {
        Ok(format!(
            "{} PostmarkIssued events, each listed",
            issued.len()
        ))
    } else {
        Err(format!(
            "{} PostmarkIssued events but {} postmarks listed",
            issued.len(),
            bundle.postmarks.len()
        ))
    };
    report.record("postmarks", "bundle", count);

    let content_hashes: HashMap<DocumentId, ContentHash> = decoded
        .values()
        .filter_map(|envelope| match &envelope.event {
            Event::DocumentUploaded(uploaded) => Some((uploaded.document, uploaded.content_hash)),
            _ => None,
        })
        .collect();

    for postmark in &bundle.postmarks {
        let subject = format!("postmark of event {}", postmark.submission_position);
        let fields = PostmarkFields {
            chain: bundle.chain,
            position: postmark.submission_position,
            submission_hash: postmark.submission_hash,
            time: postmark.time,
            document_hashes: postmark.document_hashes.clone(),
        };
        let signature = verify_signature(
            keys,
            &postmark_message(&fields),
            &postmark.key_id,
            &postmark.signature,
        )
        .map(|()| format!("signed with {}", postmark.key_id))
        .map_err(|error| error.to_string());
        report.record("postmark-signature", subject.clone(), signature);

        let submission = postmark_submission(bundle, postmark, decoded, &content_hashes);
        report.record("postmark-submission", subject.clone(), submission);

        let recorded = issued.iter().any(|event| {
            event.delivery == bundle.delivery
                && event.submission_chain == bundle.chain
                && event.submission_position == postmark.submission_position
                && event.submission_hash == postmark.submission_hash
                && event.time == postmark.time
                && event.document_hashes == postmark.document_hashes
                && event.key_id == postmark.key_id
                && event.signature == postmark.signature
        });
        let event = if recorded {
            Ok("recorded by a PostmarkIssued event".to_owned())
        } else {
            Err("no PostmarkIssued event of the bundle states these values".to_owned())
        };
        report.record("postmark-event", subject, event);
    }
}

/// Checks a postmark against the submission event it signs and the documents' uploads.
fn postmark_submission(
    bundle: &Bundle,
    postmark: &BundlePostmark,
    decoded: &HashMap<Position, Envelope>,
    content_hashes: &HashMap<DocumentId, ContentHash>,
) -> Result<String, String> {
    let event = bundle
        .events
        .iter()
        .find(|event| event.position == postmark.submission_position)
        .ok_or("the bundle has no event at the submission position")?;
    if event.hash != postmark.submission_hash {
        return Err("the submission event has another hash".to_owned());
    }
    let envelope = decoded
        .get(&event.position)
        .ok_or("the submission event does not decode")?;
    let Event::DeliverySubmitted(submitted) = &envelope.event else {
        return Err("the event at the submission position is not a submission".to_owned());
    };
    if submitted.delivery != bundle.delivery || envelope.time != postmark.time {
        return Err("the submission names another delivery or time".to_owned());
    }
    let documents: Option<Vec<ContentHash>> = submitted
        .documents
        .iter()
        .map(|document| content_hashes.get(document).copied())
        .collect();
    match documents {
        Some(hashes) if hashes == postmark.document_hashes => {
            Ok(format!("{} documents", hashes.len()))
        }
        Some(_) => Err("the document hashes differ from the uploads".to_owned()),
        None => Err("an upload of a submitted document is missing".to_owned()),
    }
}

/// Formats a sequencer time as an RFC 3339 UTC instant, or as microseconds when it is
/// outside the range that RFC 3339 can write.
fn utc(time: consign_schemas::Timestamp) -> String {
    match jiff::Timestamp::from_microsecond(time.as_micros()) {
        Ok(instant) => instant.to_string(),
        Err(_) => format!("{} µs since 1970", time.as_micros()),
    }
}

#[cfg(test)]
mod tests {
    use consign_schemas::Timestamp;

    use super::utc;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(Timestamp::from_micros(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            utc(Timestamp::from_micros(1_796_400_000_123_456)),
            "2026-12-04T16:00:00.123456Z"
        );
        assert_eq!(
            utc(Timestamp::from_micros(i64::MAX)),
            format!("{} µs since 1970", i64::MAX)
        );
    }
}
