//! Evidence for third parties: a delivery's evidence bundle, each chain's latest
//! signed checkpoint, and inclusion and consistency proofs.
//!
//! A checkpoint fetched here and saved elsewhere lets `consign ledger verify
//! --checkpoint FILE` detect a later truncation or rewrite of the chain.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use consign_ledger::EmbeddedLedger;
use consign_ledger::evidence::{EvidenceError, export_bundle, read_checkpoint};
use consign_projections::audit;
use consign_schemas::events::Role;
use consign_schemas::{ChainId, DeliveryId, Position, hash_stored_event};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::body::query_params;
use super::core::Core;
use super::error::ApiError;

/// Maximum wait for the audit view to reach the ledger's head.
const VIEW_WAIT: Duration = Duration::from_secs(10);

/// `GET /api/audit/deliveries/{id}/evidence`: the delivery's evidence bundle, for an
/// auditor, an administrator or the delivery's sender.
pub async fn bundle(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin, Role::Sender])?;
    let not_found = || ApiError::not_found(format!("delivery {id:?}"));
    let delivery: DeliveryId = id.parse().map_err(|_| not_found())?;
    if caller.account.role == Role::Sender {
        let owned = core
            .model()
            .delivery(delivery)
            .is_some_and(|record| record.sender == caller.account.id);
        if !owned {
            return Err(not_found());
        }
    }

    // The audit view lists the delivery's events once it has applied them. Waiting for
    // the chain's head makes the bundle complete for everything committed so far.
    let chain = core.chain_of(delivery);
    let next = core.ledger.next_position(chain)?;
    if next.get() > 0 {
        let last = Position::new(next.get() - 1);
        tokio::time::timeout(
            VIEW_WAIT,
            core.views.wait_for(audit::Audit::NAME, chain, last),
        )
        .await
        .map_err(|_| ApiError::Unavailable {
            message: format!("the audit view has not caught up within {VIEW_WAIT:?}; retry"),
        })??;
    }
    let entries = audit::history(&core.views, delivery)?;
    if entries.is_empty() {
        return Err(not_found());
    }
    let positions: Vec<Position> = entries.iter().map(|entry| entry.position).collect();
    let keys = core.postmark_keys.published_keys();
    let bundle = export_bundle(&core.ledger, delivery, chain, &positions, &keys)
        .await
        .map_err(|error| match error {
            EvidenceError::Ledger(error) => ApiError::from(error),
            other => {
                tracing::error!(%delivery, error = %other, "cannot export the evidence bundle");
                ApiError::Internal {
                    message: other.to_string(),
                }
            }
        })?;

    let disposition = format!("attachment; filename=\"evidence-{delivery}.json\"");
    Ok((
        [
            (CONTENT_TYPE, "application/json".to_owned()),
            (CONTENT_DISPOSITION, disposition),
        ],
        bundle.to_bytes(),
    )
        .into_response())
}

/// Parses a chain number from the path, checking it against the ledger.
fn chain_of(ledger: &EmbeddedLedger, text: &str) -> Result<ChainId, ApiError> {
    let chain = text
        .parse::<u32>()
        .ok()
        .filter(|number| *number < ledger.chain_count())
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "chain {text:?} (this ledger has chains 0 to {})",
                ledger.chain_count() - 1
            ))
        })?;
    Ok(ChainId::new(chain))
}

/// `GET /api/ledger/chains/{chain}/checkpoint`: the chain's latest signed checkpoint.
pub async fn checkpoint(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(chain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin])?;
    let chain = chain_of(&core.ledger, &chain)?;
    let position = core.ledger.last_checkpoint(chain)?.ok_or_else(|| {
        ApiError::not_found(format!("checkpoint of chain {chain}: none is signed yet"))
    })?;
    let checkpoint =
        read_checkpoint(&core.ledger, chain, position).map_err(|error| match error {
            EvidenceError::Ledger(error) => ApiError::from(error),
            other => {
                tracing::error!(%chain, %position, error = %other, "cannot read the checkpoint");
                ApiError::Internal {
                    message: other.to_string(),
                }
            }
        })?;
    Ok(Json(json!({ "chain": chain, "checkpoint": checkpoint })))
}

#[derive(Debug, Deserialize)]
pub struct InclusionParams {
    position: u64,
    tree_size: Option<u64>,
}

/// `GET /api/ledger/chains/{chain}/proofs/inclusion?position=P[&tree_size=N]`: the proof
/// that event P is in the tree of the first N events (the latest checkpoint's by
/// default).
pub async fn inclusion(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(chain): Path<String>,
    params: Result<Query<InclusionParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin])?;
    let params = query_params(params)?;
    let chain = chain_of(&core.ledger, &chain)?;
    let tree_size = match params.tree_size {
        Some(size) => size,
        None => latest_tree_size(&core.ledger, chain)?,
    };
    if params.position >= tree_size {
        return Err(ApiError::invalid(
            "position",
            format!(
                "position {} is not below the tree size {tree_size} (the latest checkpoint's \
                 unless tree_size is given); give a smaller position or a larger tree_size",
                params.position
            ),
        ));
    }
    let position = Position::new(params.position);
    let proof = core.ledger.inclusion_proof(chain, position, tree_size)?;
    let root = core.ledger.tree_root(chain, tree_size)?;
    let leaf = core
        .ledger
        .read_raw(chain, position, 1)?
        .into_iter()
        .next()
        .map(|raw| hash_stored_event(&raw.bytes));
    Ok(Json(json!({
        "chain": chain,
        "position": position,
        "tree_size": tree_size,
        "leaf": leaf,
        "root": root,
        "proof": proof,
    })))
}

#[derive(Debug, Deserialize)]
pub struct ConsistencyParams {
    old_size: u64,
    new_size: Option<u64>,
}

/// `GET /api/ledger/chains/{chain}/proofs/consistency?old_size=M[&new_size=N]`: the
/// proof that the tree of the first M events is a prefix of the tree of the first N
/// (the latest checkpoint's by default).
pub async fn consistency(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(chain): Path<String>,
    params: Result<Query<ConsistencyParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin])?;
    let params = query_params(params)?;
    let chain = chain_of(&core.ledger, &chain)?;
    let new_size = match params.new_size {
        Some(size) => size,
        None => latest_tree_size(&core.ledger, chain)?,
    };
    let events = core.ledger.next_position(chain)?.get();
    if new_size > events {
        return Err(ApiError::invalid(
            "new_size",
            format!(
                "chain {chain} has {events} events, fewer than the new size {new_size}; \
                 ask for at most {events}"
            ),
        ));
    }
    if params.old_size > new_size {
        return Err(ApiError::invalid(
            "old_size",
            format!(
                "old size {} is larger than the new size {new_size}",
                params.old_size
            ),
        ));
    }
    let proof = core
        .ledger
        .consistency_proof(chain, params.old_size, new_size)?;
    Ok(Json(json!({
        "chain": chain,
        "old_size": params.old_size,
        "new_size": new_size,
        "old_root": core.ledger.tree_root(chain, params.old_size)?,
        "new_root": core.ledger.tree_root(chain, new_size)?,
        "proof": proof,
    })))
}

fn latest_tree_size(ledger: &EmbeddedLedger, chain: ChainId) -> Result<u64, ApiError> {
    let position = ledger.last_checkpoint(chain)?.ok_or_else(|| {
        ApiError::not_found(format!("checkpoint of chain {chain}: none is signed yet"))
    })?;
    Ok(position.get())
}
