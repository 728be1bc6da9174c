//! Routes over the persisted views: tracking for senders (with a live stream), billing
//! for the billing department, and the audit history for auditors.
//!
//! Every read takes an optional `after=CHAIN:POSITION` (the `chain` and `position` a
//! submission returned): the read waits until the view has applied that event, so a
//! client sees its own write at once.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use consign_projections::audit::{self, AuditSearch, SearchCursor};
use consign_projections::billing::{self, Month, UsageQuery};
use consign_projections::tracking::{
    self, DeliveryFilter, DeliveryTracking, ListCursor, TrackingStatus,
};
use consign_projections::{Positions, ProjectionError};
use consign_schemas::events::Role;
use consign_schemas::{ChainId, ContentHash, DeliveryId, Position, Timestamp};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::body::query_params;
use super::core::Core;
use super::error::ApiError;
use super::history::checked_history;
use super::names::quoted;

/// Maximum wait for `after`.
const AFTER_TIMEOUT: Duration = Duration::from_secs(10);

impl From<ProjectionError> for ApiError {
    fn from(error: ProjectionError) -> Self {
        ApiError::Internal {
            message: format!("a view could not be read: {error}"),
        }
    }
}

/// Parses `CHAIN:POSITION`.
fn parse_point(field: &str, text: &str) -> Result<(ChainId, Position), ApiError> {
    let parsed = text.split_once(':').and_then(|(chain, position)| {
        Some((
            ChainId::new(chain.parse().ok()?),
            Position::new(position.parse().ok()?),
        ))
    });
    parsed.ok_or_else(|| {
        ApiError::invalid(
            field,
            format!(
                "{field} {} is not CHAIN:POSITION, such as 0:42",
                quoted(text)
            ),
        )
    })
}

/// Trims a `billing_code` filter, as submissions trim the code they record.
///
/// # Errors
///
/// [`ApiError::Invalid`] for a blank code, which no delivery records.
fn billing_code_filter(code: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(code) = code.map(str::trim) else {
        return Ok(None);
    };
    if code.is_empty() {
        return Err(ApiError::invalid(
            "billing_code",
            "billing_code is blank; leave it out to include every billing code",
        ));
    }
    Ok(Some(code.to_owned()))
}

/// Waits until `view` has applied `after`, if given.
async fn wait_after(core: &Core, view: &str, after: Option<&str>) -> Result<(), ApiError> {
    let Some(after) = after else {
        return Ok(());
    };
    let (chain, position) = parse_point("after", after)?;
    if chain.get() >= core.ledger.chain_count() || position >= core.ledger.next_position(chain)? {
        return Err(ApiError::invalid(
            "after",
            format!("after {} is not an event of this ledger", quoted(after)),
        ));
    }
    tokio::time::timeout(AFTER_TIMEOUT, core.views.wait_for(view, chain, position))
        .await
        .map_err(|_| ApiError::Unavailable {
            message: format!(
                "the {view} view has not reached {after} within {AFTER_TIMEOUT:?}; retry"
            ),
        })??;
    Ok(())
}

/// Largest page of `GET /api/tracking/deliveries`.
const MAX_PAGE: usize = 500;

/// Largest result of `GET /api/audit/search`.
const MAX_SEARCH_RESULTS: usize = 1_000;

/// Returns the `limit` parameter, or `default` when it is missing. A limit outside
/// 1 to `max` is rejected rather than silently changed.
fn check_limit(limit: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(limit) if (1..=max).contains(&limit) => Ok(limit),
        Some(limit) => Err(ApiError::invalid(
            "limit",
            format!("limit {limit} is out of range; give a limit from 1 to {max}"),
        )),
    }
}

/// Parses an RFC 3339 time, whose offset must be under 24 hours.
pub(crate) fn parse_time(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    let invalid = |reason: String| {
        ApiError::invalid(
            field,
            format!(
                "{field} {} is not an RFC 3339 time such as 2026-12-01T00:00:00Z: {reason}",
                quoted(text)
            ),
        )
    };
    let instant: jiff::Timestamp = text.parse().map_err(|error| invalid(format!("{error}")))?;
    if crate::zoned::offset_out_of_range(text) {
        return Err(invalid("the offset is 24 hours or more".to_owned()));
    }
    Ok(Timestamp::from_micros(instant.as_microsecond()))
}

/// Checks that a period given as `from` and `before` is not empty or inverted.
fn check_range(from: Option<Timestamp>, before: Option<Timestamp>) -> Result<(), ApiError> {
    if let (Some(from), Some(before)) = (from, before)
        && before <= from
    {
        return Err(ApiError::invalid(
            "before",
            "before is not after from; give a later before, or leave one of them out",
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    status: Option<TrackingStatus>,
    from: Option<String>,
    before: Option<String>,
    billing_code: Option<String>,
    recipient: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    after: Option<String>,
}

/// `GET /api/tracking/deliveries`: the caller's deliveries from the tracking view, newest
/// first, with filters and paging.
pub async fn list(
    State(core): State<Arc<Core>>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Sender])?;
    let params = query_params(params)?;
    wait_after(&core, "tracking", params.after.as_deref()).await?;
    let filter = DeliveryFilter {
        status: params.status,
        submitted_from: params
            .from
            .as_deref()
            .map(|text| parse_time("from", text))
            .transpose()?,
        submitted_before: params
            .before
            .as_deref()
            .map(|text| parse_time("before", text))
            .transpose()?,
        billing_code: billing_code_filter(params.billing_code.as_deref())?,
        recipient_address: params.recipient,
    };
    check_range(filter.submitted_from, filter.submitted_before)?;
    let cursor = params
        .cursor
        .as_deref()
        .map(|text| {
            text.parse::<ListCursor>()
                .map_err(|error| ApiError::invalid("cursor", error.to_string()))
        })
        .transpose()?;
    let limit = check_limit(params.limit, 50, MAX_PAGE)?;
    let page = tracking::list_deliveries(
        &core.views,
        caller.account.id,
        &filter,
        limit,
        cursor.as_ref(),
    )?;
    Ok(Json(json!({
        "deliveries": page.deliveries,
        "next_cursor": page.next_cursor.map(|cursor| cursor.to_string()),
        "positions": core.views.positions("tracking")?,
    })))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AfterParams {
    after: Option<String>,
}

/// Reads a delivery's tracking record if the caller may see it.
pub(crate) fn visible_tracking(
    core: &Core,
    caller: &Caller,
    id: &str,
) -> Result<DeliveryTracking, ApiError> {
    let not_found = || ApiError::not_found(format!("delivery {}", quoted(id)));
    let id: DeliveryId = id.parse().map_err(|_| not_found())?;
    let record = tracking::delivery(&core.views, id)?.ok_or_else(not_found)?;
    let allowed = match caller.account.role {
        Role::Admin | Role::Auditor => true,
        Role::Sender => record.summary.sender == caller.account.id,
        Role::Billing => false,
    };
    if !allowed {
        return Err(not_found());
    }
    Ok(record)
}

pub(crate) fn tracking_json(record: &DeliveryTracking) -> Value {
    json!({ "summary": record.summary, "recipients": record.recipients })
}

/// `GET /api/tracking/deliveries/{id}`: one delivery with every recipient's steps.
pub async fn get(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<AfterParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Sender, Role::Admin, Role::Auditor])?;
    let params = query_params(params)?;
    wait_after(&core, "tracking", params.after.as_deref()).await?;
    let record = visible_tracking(&core, &caller, &id)?;
    Ok(Json(tracking_json(&record)))
}

/// `GET /api/tracking/deliveries/{id}/events`: server-sent events with the delivery's
/// tracking record, first as it is and then after every change.
pub async fn stream(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    caller.require(&[Role::Sender, Role::Admin, Role::Auditor])?;
    if let Some(query) = query.filter(|query| !query.is_empty()) {
        return Err(ApiError::invalid(
            "query",
            format!(
                "the events stream takes no query parameters, but got {}; it sends the \
                 delivery's tracking record at once and again after each change",
                quoted(&query)
            ),
        ));
    }
    let first = visible_tracking(&core, &caller, &id)?;
    let delivery = first.summary.delivery;
    let chain = core.chain_of(delivery);

    let start = (core, None::<Value>, Some(first));
    let events = futures::stream::unfold(start, move |(core, sent, pending)| async move {
        let mut pending = pending;
        loop {
            if let Some(record) = pending.take() {
                let body = tracking_json(&record);
                if sent.as_ref() != Some(&body) {
                    let event = SseEvent::default().event("tracking").data(body.to_string());
                    return Some((Ok(event), (core, Some(body), None)));
                }
            }
            let next = core.views.position("tracking", chain).ok()?;
            core.views.wait_for("tracking", chain, next).await.ok()?;
            pending = tracking::delivery(&core.views, delivery).ok()?;
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    from: String,
    to: String,
    billing_code: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
    /// `CHAIN:POSITION,...`: the next position of each chain to count up to, to
    /// reproduce an earlier export exactly.
    as_of: Option<String>,
    after: Option<String>,
}

/// `GET /api/billing/usage`: usage per account, billing code and month, priced with the
/// configured rates, as JSON or CSV, stating the ledger positions it reflects.
pub async fn usage(
    State(core): State<Arc<Core>>,
    caller: Caller,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Billing, Role::Admin])?;
    let params = query_params(params)?;
    let month = |field: &str, text: &str| {
        text.parse::<Month>()
            .map_err(|error| ApiError::invalid(field, format!("{field}: {error}")))
    };
    let query = UsageQuery {
        from: month("from", &params.from)?,
        to: month("to", &params.to)?,
        billing_code: billing_code_filter(params.billing_code.as_deref())?,
    };
    check_period(&query)?;
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "format",
                format!("format {} is not json or csv", quoted(other)),
            ));
        }
    };

    let report = usage_report(
        &core,
        query,
        params.as_of.as_deref(),
        params.after.as_deref(),
    )
    .await?;

    let mut body = Vec::new();
    if csv {
        billing::write_csv(&report, core.rates.as_ref(), &mut body)?;
        Ok(([(CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
    } else {
        billing::write_json(&report, core.rates.as_ref(), &mut body)?;
        Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
    }
}

/// Computes a billing report from the billing view, or as of the ledger positions in
/// `as_of` (`CHAIN:POSITION,...`) by folding that ledger prefix again.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `as_of` or `after` when they are malformed or beyond the
/// ledger, and the view's errors.
pub(crate) async fn usage_report(
    core: &Arc<Core>,
    query: UsageQuery,
    as_of: Option<&str>,
    after: Option<&str>,
) -> Result<billing::BillingReport, ApiError> {
    match as_of {
        Some(as_of) => {
            let positions = parse_positions(as_of, core.ledger.chain_count())?;
            let core = Arc::clone(core);
            tokio::task::spawn_blocking(move || {
                billing::billing_as_of(&core.ledger, &positions, &query)
            })
            .await
            .map_err(|error| ApiError::Internal {
                message: format!("the as-of computation failed: {error}"),
            })?
            .map_err(|error| ApiError::invalid("as_of", error.to_string()))
        }
        None => {
            wait_after(core, "billing", after).await?;
            Ok(billing::usage(&core.views, &query)?)
        }
    }
}

/// Parses `CHAIN:POSITION,CHAIN:POSITION,...`, which must name each of the ledger's
/// `chains` once: a chain left out would count none of its events.
fn parse_positions(text: &str, chains: u32) -> Result<Positions, ApiError> {
    let mut positions = BTreeMap::new();
    for part in text.split(',') {
        let (chain, position) = parse_point("as_of", part)?;
        if positions.insert(chain, position).is_some() {
            return Err(ApiError::invalid(
                "as_of",
                format!(
                    "as_of {} names chain {chain} twice; give one position per chain, as a \
                     report's positions list them",
                    quoted(text)
                ),
            ));
        }
    }
    let missing: Vec<String> = (0..chains)
        .map(ChainId::new)
        .filter(|chain| !positions.contains_key(chain))
        .map(|chain| chain.to_string())
        .collect();
    if !missing.is_empty() && positions.keys().all(|chain| chain.get() < chains) {
        return Err(ApiError::invalid(
            "as_of",
            format!(
                "as_of {} has no position for {} {} of the {chains} chains; give one \
                 position per chain, as a report's positions list them",
                quoted(text),
                if missing.len() == 1 {
                    "chain"
                } else {
                    "chains"
                },
                missing.join(", ")
            ),
        ));
    }
    Ok(positions)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// `json` (default) or `jsonl`, one entry per line.
    format: Option<String>,
    after: Option<String>,
}

/// `GET /api/audit/deliveries/{id}`: the delivery's ordered history with positions,
/// hashes and previous hashes, the ETSI EN 319 522 event name of each event (or null),
/// and whether each link verifies against the ledger.
pub async fn history(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin])?;
    let params = query_params(params)?;
    wait_after(&core, "audit", params.after.as_deref()).await?;
    let not_found = || ApiError::not_found(format!("delivery {}", quoted(&id)));
    let delivery: DeliveryId = id.parse().map_err(|_| not_found())?;
    let history = checked_history(&core, delivery)?;
    if history.is_empty() {
        return Err(not_found());
    }
    let rows: Vec<Value> = history
        .iter()
        .map(|row| {
            let entry = &row.entry;
            json!({
                "chain": entry.chain,
                "position": entry.position,
                "hash": entry.hash,
                "previous": entry.previous,
                "time": entry.time,
                "type": entry.kind.name(),
                "etsi": row.etsi,
                "link_verified": row.link_verified,
                "recipient": row.recipient,
                "document": row.document,
                "detail": row.detail,
            })
        })
        .collect();
    match params.format.as_deref() {
        None | Some("json") => {
            Ok(Json(json!({ "delivery": delivery, "events": rows })).into_response())
        }
        Some("jsonl") => {
            let mut body = String::new();
            for row in &rows {
                body.push_str(&row.to_string());
                body.push('\n');
            }
            Ok(([(CONTENT_TYPE, "application/x-ndjson")], body).into_response())
        }
        Some(other) => Err(ApiError::invalid(
            "format",
            format!("format {} is not json or jsonl", quoted(other)),
        )),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    sender: Option<String>,
    recipient: Option<String>,
    document: Option<String>,
    from: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/audit/search`: deliveries by sender, recipient address, document BLAKE3
/// hash, or submission time range; exactly one criterion. A page that does not hold
/// the last match carries `next_cursor`, which the same search takes as `cursor` for
/// the next page.
pub async fn search(
    State(core): State<Arc<Core>>,
    caller: Caller,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin])?;
    let params = query_params(params)?;
    let mut criteria = Vec::new();
    if let Some(sender) = &params.sender {
        let account = sender.parse().map_err(|_| {
            ApiError::invalid(
                "sender",
                format!("sender {} is not an account id", quoted(sender)),
            )
        })?;
        criteria.push(AuditSearch::Sender(account));
    }
    if let Some(recipient) = &params.recipient {
        criteria.push(AuditSearch::RecipientAddress(recipient.clone()));
    }
    if let Some(document) = &params.document {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(document, &mut bytes).map_err(|_| {
            ApiError::invalid(
                "document",
                format!(
                    "document {} is not a BLAKE3 hash of 64 hex digits",
                    quoted(document)
                ),
            )
        })?;
        criteria.push(AuditSearch::DocumentHash(ContentHash::from_bytes(bytes)));
    }
    if params.from.is_some() || params.before.is_some() {
        let from = params
            .from
            .as_deref()
            .map_or(Ok(Timestamp::from_micros(0)), |text| {
                parse_time("from", text)
            })?;
        let before = params
            .before
            .as_deref()
            .map_or(Ok(Timestamp::from_micros(i64::MAX)), |text| {
                parse_time("before", text)
            })?;
        if params.from.is_some() && params.before.is_some() {
            check_range(Some(from), Some(before))?;
        }
        criteria.push(AuditSearch::SubmittedBetween { from, before });
    }
    let [criterion] = criteria.as_slice() else {
        return Err(ApiError::bad_request(
            "give exactly one of sender, recipient, document, or from/before",
        ));
    };
    let limit = check_limit(params.limit, 100, MAX_SEARCH_RESULTS)?;
    let page = audit_search_page(&core, criterion, params.cursor.as_deref(), limit)?;
    Ok(Json(json!({
        "deliveries": page.deliveries,
        "next_cursor": page.next.map(|cursor| cursor.to_string()),
    })))
}

/// Returns up to `limit` deliveries matching `criterion` after the text form of
/// `cursor`, for the API and the auditor's page.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `cursor` for a malformed cursor or one of another search,
/// and the view's errors.
pub(crate) fn audit_search_page(
    core: &Core,
    criterion: &AuditSearch,
    cursor: Option<&str>,
    limit: usize,
) -> Result<audit::SearchPage, ApiError> {
    let invalid = |error: ProjectionError| ApiError::invalid("cursor", error.to_string());
    let cursor = cursor
        .map(|text| text.parse::<SearchCursor>().map_err(invalid))
        .transpose()?;
    audit::search_page(&core.views, criterion, cursor.as_ref(), limit).map_err(
        |error| match error {
            ProjectionError::InvalidCursor { .. } => invalid(error),
            other => other.into(),
        },
    )
}

/// `GET /api/views/status`: each view's position, lag and state digest, while serving.
pub async fn status(
    State(core): State<Arc<Core>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let core = Arc::clone(&core);
    let statuses = tokio::task::spawn_blocking(move || {
        consign_projections::status(&core.ledger, &core.views, &consign_projections::ALL_VIEWS)
    })
    .await
    .map_err(|error| ApiError::Internal {
        message: format!("the status task failed: {error}"),
    })??;
    let views: Vec<Value> = statuses
        .iter()
        .map(|view| {
            json!({
                "view": view.view,
                "state": view.state,
                "entries": view.entries,
                "chains": view.chains.iter().map(|chain| json!({
                    "chain": chain.chain,
                    "position": chain.position,
                    "head": chain.head,
                    "lag": chain.lag,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "views": views })))
}

/// Checks that a billing period's last month is not before its first.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `to`, naming both months.
pub(crate) fn check_period(query: &UsageQuery) -> Result<(), ApiError> {
    if query.to < query.from {
        return Err(ApiError::invalid(
            "to",
            format!(
                "to {} is before from {}; give a period whose last month is not before its first",
                query.to, query.from
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_needs_each_chain_once() {
        let parsed = parse_positions("0:5,1:2", 2).unwrap();
        assert_eq!(parsed[&ChainId::new(0)], Position::new(5));
        assert_eq!(parsed[&ChainId::new(1)], Position::new(2));

        let missing = parse_positions("0:5", 3).unwrap_err().to_string();
        assert!(
            missing.contains("has no position for chains 1, 2 of the 3 chains"),
            "{missing}"
        );
        let twice = parse_positions("0:5,1:2,0:3", 2).unwrap_err().to_string();
        assert!(twice.contains("names chain 0 twice"), "{twice}");
        let empty = parse_positions("0:5,,1:2", 2).unwrap_err().to_string();
        assert!(
            empty.contains("as_of \"\" is not CHAIN:POSITION"),
            "{empty}"
        );
    }
}
