//! Electronic postmarks: issued right after a submission that asks for one, and
//! served as a receipt the sender can check offline.
//!
//! The postmark signs the submission event's hash, chain and position, its sequencer
//! time and the documents' hashes (`consign_ledger::postmark` has the byte format). It
//! is appended as `PostmarkIssued` under the idempotency key `postmark/DELIVERY`, so it
//! exists at most once. A submission whose postmark a crash kept from the ledger gets
//! it from the scheduler's next round.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use consign_ledger::postmark::{PostmarkFields, postmark_message};
use consign_ledger::{AppendRequest, NewEvent};
use consign_schemas::events::{PostmarkIssued, Role};
use consign_schemas::{Actor, DeliveryId, Event, IdempotencyKey, SystemComponent};
use serde_json::{Value, json};

use super::auth::Caller;
use super::core::Core;
use super::error::ApiError;

/// Signs and records the postmark of `delivery`, unless it has one.
///
/// # Errors
///
/// The delivery is unknown to the model, or the ledger cannot record the postmark.
pub async fn issue(core: &Core, delivery: DeliveryId) -> Result<(), ApiError> {
    let issued = {
        let model = core.model();
        let record = model
            .delivery(delivery)
            .ok_or_else(|| ApiError::not_found(format!("delivery {delivery}")))?;
        if record.postmark.is_some() {
            return Ok(());
        }
        let fields = PostmarkFields {
            chain: record.submitted.chain,
            position: record.submitted.position,
            submission_hash: record.submitted.hash,
            time: record.submitted.time,
            document_hashes: record
                .documents
                .iter()
                .filter_map(|id| model.document(*id).map(|document| document.content_hash))
                .collect(),
        };
        let (key_id, signature) = core.postmark_keys.sign(&fields);
        PostmarkIssued {
            delivery,
            submission_chain: fields.chain,
            submission_position: fields.position,
            submission_hash: fields.submission_hash,
            time: fields.time,
            document_hashes: fields.document_hashes,
            key_id,
            signature,
        }
    };

    let key = IdempotencyKey::new(format!("postmark/{delivery}")).expect("the key is short and valid");
    let request = AppendRequest::new(
        core.chain_of(delivery),
        vec![NewEvent {
            actor: Actor::System(SystemComponent::Sequencer),
            event: Event::PostmarkIssued(issued),
        }],
    )
    .with_idempotency_key(key);
    core.append(request).await?;
    tracing::info!(%delivery, "postmark issued");
    Ok(())
}

/// `GET /api/deliveries/{id}/postmark`: the postmark receipt, with everything needed to
/// check it offline: the signed fields, the exact signed message in hex, the key id and
/// the public key.
pub async fn receipt(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Sender, Role::Admin, Role::Auditor])?;
    let not_found = || ApiError::not_found(format!("postmark of delivery {id:?}"));
    let delivery: DeliveryId = id.parse().map_err(|_| not_found())?;
    let model = core.model();
    let record = model.delivery(delivery).ok_or_else(not_found)?;
    if caller.account.role == Role::Sender && record.sender != caller.account.id {
        return Err(not_found());
    }
    let postmark = record.postmark.as_ref().ok_or_else(not_found)?;
    let issued = &postmark.event;
    let fields = PostmarkFields {
        chain: issued.submission_chain,
        position: issued.submission_position,
        submission_hash: issued.submission_hash,
        time: issued.time,
        document_hashes: issued.document_hashes.clone(),
    };
    let public_key = core
        .postmark_keys
        .public_keys()
        .get(&issued.key_id)
        .map(hex::encode);
    Ok(Json(json!({
        "delivery": delivery,
        "algorithm": "Ed25519",
        "key_id": issued.key_id,
        "public_key": public_key,
        "signature": hex::encode(&issued.signature),
        "signed_message": hex::encode(postmark_message(&fields)),
        "submission": {
            "chain": issued.submission_chain,
            "position": issued.submission_position,
            "hash": issued.submission_hash,
            "time": issued.time,
            "time_utc": crate::app::recipient::to_jiff(issued.time).to_string(),
        },
        "document_hashes": issued.document_hashes,
        "postmark_event": { "chain": postmark.at.chain, "position": postmark.at.position, "hash": postmark.at.hash },
    })))
}

/// `GET /.well-known/consign-postmark-keys.json`: every public key that signed or
/// signs postmarks, by key id, and the current one.
pub async fn public_keys(State(core): State<Arc<Core>>) -> Json<Value> {
    let keys: Vec<Value> = core
        .postmark_keys
        .public_keys()
        .iter()
        .map(|(id, key)| json!({ "key_id": id, "algorithm": "Ed25519", "public_key": hex::encode(key) }))
        .collect();
    Json(json!({ "current": core.postmark_keys.current_id(), "keys": keys }))
}
