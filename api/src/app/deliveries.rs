//! The sender's view of its deliveries, and withdrawal.
//!
//! A sender sees only its own deliveries: another sender's delivery gets
//! 404, the same as one that does not exist. Administrators and auditors see every
//! delivery.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use consign_ledger::{AppendRequest, NewEvent};
use consign_projections::model::{Availability, Delivery, Model, NotificationStatus, Recipient};
use consign_schemas::events::{DeliveryWithdrawn, Role, ZonedTime};
use consign_schemas::{Actor, DeliveryId, Event, IdempotencyKey};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::body::OptionalApiJson;
use super::core::Core;
use super::error::ApiError;
use super::names::quoted;
use super::text::check_line;
use crate::zoned::format_for_sender;

/// `GET /api/deliveries`: the caller's deliveries, newest first. It takes no query
/// parameters; filters and paging are on `GET /api/tracking/deliveries`, so a filter
/// given here gets 422 instead of an unfiltered list.
pub async fn list(
    State(core): State<Arc<Core>>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Sender])?;
    if let Some(query) = query.filter(|query| !query.is_empty()) {
        return Err(ApiError::invalid(
            "query",
            format!(
                "GET /api/deliveries takes no query parameters, but got {}; filter and \
                 page with GET /api/tracking/deliveries (status, from, before, billing_code, \
                 recipient, limit, cursor)",
                quoted(&query)
            ),
        ));
    }
    let model = core.model();
    let now = core.clock.now();
    let mut deliveries: Vec<Value> = model
        .deliveries_of(caller.account.id)
        .map(|delivery| summary(delivery, now))
        .collect();
    deliveries.reverse();
    Ok(Json(json!({ "deliveries": deliveries })))
}

/// `GET /api/deliveries/{id}`: one delivery with each recipient's status.
pub async fn get(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Sender, Role::Admin, Role::Auditor])?;
    let id = parse_id(&id)?;
    let model = core.model();
    let delivery = visible(&model, &caller, id)?;
    Ok(Json(detail(&model, delivery, core.clock.now())))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WithdrawBody {
    #[serde(default)]
    pub reason: String,
}

/// `POST /api/deliveries/{id}/withdraw`: the sender recalls a delivery. Its documents
/// are unavailable from then on and no more e-mails go out for it.
pub async fn withdraw(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalApiJson(body): OptionalApiJson<WithdrawBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Sender])?;
    let id = parse_id(&id)?;
    let position = withdraw_delivery(&core, &caller, id, body.reason).await?;
    Ok(Json(json!({
        "delivery": id,
        "status": "withdrawn",
        "position": position,
    })))
}

/// Records the withdrawal of one of the caller's deliveries and returns the position of
/// its `DeliveryWithdrawn` event.
///
/// # Errors
///
/// [`ApiError::NotFound`] for a delivery the caller cannot see, [`ApiError::Conflict`]
/// for one already withdrawn or expired, [`ApiError::Invalid`] for a bad reason.
pub(crate) async fn withdraw_delivery(
    core: &Core,
    caller: &Caller,
    id: DeliveryId,
    reason: String,
) -> Result<consign_schemas::Position, ApiError> {
    caller.require(&[Role::Sender])?;
    check_line("reason", &reason, 500)?;
    {
        let model = core.model();
        let delivery = visible(&model, caller, id)?;
        match delivery.availability(core.clock.now()) {
            Availability::Withdrawn => {
                return Err(ApiError::Conflict {
                    message: format!("delivery {id} is already withdrawn"),
                });
            }
            Availability::Expired | Availability::Purged => {
                return Err(ApiError::Conflict {
                    message: format!("delivery {id} has expired; there is nothing to withdraw"),
                });
            }
            Availability::Available | Availability::NotYetReleased => {}
        }
    }

    let event = Event::DeliveryWithdrawn(DeliveryWithdrawn {
        delivery: id,
        by: caller.account.id,
        reason,
    });
    let key = IdempotencyKey::new(format!("withdraw/{id}")).expect("the key is short and valid");
    let request = AppendRequest::new(
        core.chain_of(id),
        vec![NewEvent {
            actor: Actor::Account(caller.account.id),
            event,
        }],
    )
    .with_idempotency_key(key);
    let appended = core.append(request).await?;
    tracing::info!(delivery = %id, by = %caller.account.id, "delivery withdrawn");
    Ok(appended.events[0].position)
}

pub(crate) fn parse_id(text: &str) -> Result<DeliveryId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("delivery {}", quoted(text))))
}

/// Returns the delivery if the caller may see it, and 404 otherwise.
pub(crate) fn visible<'m>(
    model: &'m Model,
    caller: &Caller,
    id: DeliveryId,
) -> Result<&'m Delivery, ApiError> {
    let delivery = model
        .delivery(id)
        .ok_or_else(|| ApiError::not_found(format!("delivery {id}")))?;
    let allowed = match caller.account.role {
        Role::Admin | Role::Auditor => true,
        Role::Sender => delivery.sender == caller.account.id,
        Role::Billing => false,
    };
    if !allowed {
        return Err(ApiError::not_found(format!("delivery {id}")));
    }
    Ok(delivery)
}

pub(crate) fn status_name(availability: Availability) -> &'static str {
    match availability {
        Availability::Available => "released",
        Availability::NotYetReleased => "scheduled",
        Availability::Expired => "expired",
        Availability::Withdrawn => "withdrawn",
        Availability::Purged => "purged",
    }
}

fn summary(delivery: &Delivery, now: consign_schemas::Timestamp) -> Value {
    json!({
        "delivery": delivery.id,
        "subject": delivery.subject,
        "status": status_name(delivery.availability(now)),
        "submitted_at": delivery.submitted.time,
        "recipients": delivery.recipients.len(),
        "documents": delivery.documents.len(),
        "billing_code": delivery.options.billing_code,
    })
}

fn detail(model: &Model, delivery: &Delivery, now: consign_schemas::Timestamp) -> Value {
    let options = &delivery.options;
    let documents: Vec<Value> = delivery
        .documents
        .iter()
        .filter_map(|id| model.document(*id))
        .map(|document| {
            json!({
                "document": document.id,
                "file_name": document.file_name,
                "media_type": document.media_type,
                "size": document.size,
                "blake3": document.content_hash,
                "encrypted": document.encryption.is_some(),
            })
        })
        .collect();
    json!({
        "delivery": delivery.id,
        "subject": delivery.subject,
        "message": delivery.message,
        "status": status_name(delivery.availability(now)),
        "submitted": {
            "chain": delivery.submitted.chain,
            "position": delivery.submitted.position,
            "hash": delivery.submitted.hash,
            "at": delivery.submitted.time,
        },
        "released_at": delivery.released_at,
        "expired_at": delivery.expired_at,
        "withdrawn_at": delivery.withdrawn.as_ref().map(|withdrawal| withdrawal.at),
        "options": {
            "priority": options.priority,
            "encrypt": options.encrypt_at_rest,
            "receipt": options.receipt_requested,
            "password": options.access_password_hash.is_some(),
            "billing_code": options.billing_code,
            "postmark": options.postmark,
            "require_tls": options.require_tls,
            "deliver_at": options.deliver_at.as_ref().map(zoned_time),
            "expires_at": options.expires_at.as_ref().map(zoned_time),
        },
        "documents": documents,
        "recipients": delivery.recipients.iter().map(recipient_status).collect::<Vec<_>>(),
    })
}

/// Describes a delivery date or expiration date as its instant in microseconds since
/// the Unix epoch (as every other time of the response), the IANA zone it was entered
/// in, and the local time in that zone for people.
fn zoned_time(time: &ZonedTime) -> Value {
    json!({
        "instant": time.instant,
        "zone": time.zone,
        "text": format_for_sender(time),
    })
}

fn recipient_status(recipient: &Recipient) -> Value {
    let notification = recipient.consignment.as_ref().map(|notification| {
        let (state, detail) = match &notification.status {
            NotificationStatus::Attempted => ("sending", Value::Null),
            NotificationStatus::Sent { at } => ("sent", json!({ "at": at })),
            NotificationStatus::Deferred { reason, retry_at } => (
                "deferred",
                json!({ "reason": reason, "retry_at": retry_at }),
            ),
            NotificationStatus::Failed { reason } => ("failed", json!({ "reason": reason })),
        };
        json!({ "state": state, "attempts": notification.attempts, "detail": detail })
    });
    json!({
        "recipient": recipient.id,
        "address": recipient.mailbox.address,
        "name": recipient.mailbox.display_name,
        "via_list": recipient.via_list,
        "notification": notification,
        "opened_at": recipient.first_opened_at,
        "downloads": recipient.downloads.iter().map(|(document, at)| json!({ "document": document, "at": at })).collect::<Vec<_>>(),
        "receipt_sent_at": recipient.receipt_sent_at,
    })
}
