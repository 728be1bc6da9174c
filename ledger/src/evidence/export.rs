//! Building a bundle from the embedded ledger.

use consign_schemas::{ChainId, DeliveryId, Envelope, Event, Position, hash_stored_event};

use super::{
    BUNDLE_FORMAT, Bundle, BundleCheckpoint, BundleEvent, BundlePostmark, EvidenceError,
    PublicKeyHex,
};
use crate::EmbeddedLedger;
use crate::checkpoint::PublicKeys;

/// Builds the bundle of `delivery` from its events at `positions` of `chain`.
///
/// A checkpoint is signed first if the last one does not cover every committed event
/// of the chain, so every event in the bundle is proved into the same signed tree.
///
/// # Errors
///
/// [`EvidenceError::NoEvents`] when `positions` is empty, ledger failures (among
/// them [`crate::LedgerError::NoCheckpointSigner`] when the ledger signs no
/// checkpoints), and [`EvidenceError::Damaged`] when a stored event fails its own
/// hash or does not decode, and [`EvidenceError::SelfCheck`] when the bundle built
/// fails one of [`super::verify::verify_bundle`]'s checks of the ledger's data.
pub async fn export_bundle(
    ledger: &EmbeddedLedger,
    delivery: DeliveryId,
    chain: ChainId,
    positions: &[Position],
    public_keys: &PublicKeys,
) -> Result<Bundle, EvidenceError> {
    let mut positions = positions.to_vec();
    positions.sort();
    positions.dedup();
    if positions.is_empty() {
        return Err(EvidenceError::NoEvents { delivery });
    }

    let checkpoint_position = if ledger.sequences_here(chain) {
        ledger
            .checkpoint(chain)
            .await?
            .ok_or(EvidenceError::NoEvents { delivery })?
    } else {
        let last = *positions.last().expect("not empty");
        covering_checkpoint(ledger, chain, last).await?
    };
    let checkpoint = read_checkpoint(ledger, chain, checkpoint_position)?;

    let mut events = Vec::with_capacity(positions.len());
    let mut postmarks = Vec::new();
    for position in positions {
        let (hash, stored, envelope) = read_event(ledger, chain, position)?;
        let inclusion_proof = ledger.inclusion_proof(chain, position, checkpoint.tree_size)?;
        if let Event::PostmarkIssued(postmark) = &envelope.event {
            postmarks.push(BundlePostmark {
                submission_position: postmark.submission_position,
                submission_hash: postmark.submission_hash,
                time: postmark.time,
                document_hashes: postmark.document_hashes.clone(),
                key_id: postmark.key_id.clone(),
                signature: postmark.signature.clone(),
            });
        }
        events.push(BundleEvent {
            position,
            kind: envelope.event.kind().name().to_owned(),
            hash,
            stored,
            inclusion_proof,
        });
    }

    let bundle = Bundle {
        format: BUNDLE_FORMAT.to_owned(),
        delivery,
        chain,
        events,
        checkpoint,
        postmarks,
        public_keys: public_keys
            .iter()
            .map(|(id, key)| (id.clone(), PublicKeyHex(*key)))
            .collect(),
    };

    // A damaged Merkle index gives proofs that fail, and such a bundle is not handed
    // out. The checks of what the positions cover, such as the submission's presence,
    // are the caller's matter.
    let report = super::verify::verify_bundle(&bundle.to_bytes());
    let failures: Vec<String> = report
        .failures()
        .filter(|check| LEDGER_CHECKS.contains(&check.name))
        .take(3)
        .map(|check| format!("{} of {}: {}", check.name, check.subject, check.detail))
        .collect();
    if !failures.is_empty() {
        return Err(EvidenceError::SelfCheck {
            failures: failures.join("; "),
        });
    }
    Ok(bundle)
}

/// The checks of a bundle that depend only on the ledger: its events, their proofs,
/// and the checkpoint.
const LEDGER_CHECKS: [&str; 5] = [
    "event-hash",
    "event-place",
    "inclusion",
    "checkpoint-event",
    "checkpoint-signature",
];

/// Reads the `CheckpointSigned` event at `position` in the shape of a bundle's
/// checkpoint.
///
/// # Errors
///
/// Ledger failures, and [`EvidenceError::Damaged`] when the event is missing, fails
/// its hash, does not decode or is not a checkpoint.
pub fn read_checkpoint(
    ledger: &EmbeddedLedger,
    chain: ChainId,
    position: Position,
) -> Result<BundleCheckpoint, EvidenceError> {
    let (hash, stored, envelope) = read_event(ledger, chain, position)?;
    let Event::CheckpointSigned(signed) = envelope.event else {
        return Err(EvidenceError::Damaged {
            chain,
            position,
            reason: "the event is not a checkpoint".to_owned(),
        });
    };
    Ok(BundleCheckpoint {
        position,
        hash,
        stored,
        tree_size: signed.tree_size,
        root: signed.root_hash,
        time: envelope.time,
        key_id: signed.key_id,
        signature: signed.signature,
    })
}

/// Reads one event and checks it against its recorded hash.
fn read_event(
    ledger: &EmbeddedLedger,
    chain: ChainId,
    position: Position,
) -> Result<(consign_schemas::EventHash, Vec<u8>, Envelope), EvidenceError> {
    let damaged = |reason: String| EvidenceError::Damaged {
        chain,
        position,
        reason,
    };
    let raw = ledger
        .read_raw(chain, position, 1)?
        .into_iter()
        .next()
        .filter(|raw| raw.position == position)
        .ok_or_else(|| damaged("no event is stored there".to_owned()))?;
    let hash = hash_stored_event(&raw.bytes);
    if raw.recorded_hash != Some(hash) {
        return Err(damaged(
            "the stored bytes do not match the recorded hash".to_owned(),
        ));
    }
    let envelope = Envelope::decode(&raw.bytes).map_err(|error| damaged(error.to_string()))?;
    Ok((hash, raw.bytes, envelope))
}

/// Waits for a checkpoint of `chain` that covers `position`, signed by the process
/// that sequences the chain, which signs one at most a configured time after each
/// event. Returns its position.
async fn covering_checkpoint(
    ledger: &EmbeddedLedger,
    chain: ChainId,
    position: Position,
) -> Result<Position, EvidenceError> {
    let deadline = std::time::Instant::now() + COVERING_WAIT;
    loop {
        if let Some(checkpoint) = ledger.last_checkpoint(chain)?
            && checkpoint > position
        {
            return Ok(checkpoint);
        }
        if std::time::Instant::now() >= deadline {
            return Err(crate::LedgerError::Unavailable {
                chain,
                reason: format!(
                    "no signed checkpoint covers position {position} yet, and chain {chain} is \
                     sequenced by another process, which signs the next one"
                ),
            }
            .into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Maximum wait for another process's checkpoint to cover the events of a bundle.
const COVERING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
