//! The sender's sent deliveries: the list with each recipient's live status, one
//! delivery's details and timeline, withdrawal, and the postmark receipt and evidence
//! links.
//!
//! Statuses come from the tracking view. The list page follows `/sent/live`, a stream
//! of the tracking records of the deliveries it shows; a delivery's page follows the
//! API's own stream, `/api/tracking/deliveries/{id}/events`. Both send the record in
//! the JSON of the tracking API.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use consign_projections::tracking::{
    self, DeliveryFilter, DeliveryTracking, ListCursor, TrackingStatus,
};
use consign_schemas::DeliveryId;
use consign_schemas::events::Role;
use futures::Stream;
use serde::Deserialize;
use serde_json::Value;

use super::form::csrf_input;
use super::layout::{Section, html_response, page, time_element};
use super::sent_detail;
use super::session::{PageCaller, PageError, see_other, urlencode};
use crate::app::deliveries::{parse_id, withdraw_delivery};
use crate::app::views::{tracking_json, visible_tracking};
use crate::app::{ApiError, Core};
use crate::web::html::escape;

/// Deliveries per page of the list.
const PAGE_SIZE: usize = 25;

/// Maximum wait for the tracking view to show a delivery just submitted.
const VIEW_WAIT: Duration = Duration::from_secs(10);

/// Returns the label of a recipient status, as the pages show it.
pub(crate) fn status_label(status: TrackingStatus) -> &'static str {
    match status {
        TrackingStatus::Scheduled => "Scheduled",
        TrackingStatus::Released => "Released",
        TrackingStatus::Deferred => "E-mail deferred",
        TrackingStatus::Failed => "E-mail failed",
        TrackingStatus::Notified => "E-mail sent",
        TrackingStatus::Opened => "Opened",
        TrackingStatus::Downloaded => "Downloaded",
        TrackingStatus::ReceiptSent => "Receipt sent",
        TrackingStatus::Expired => "Expired",
        TrackingStatus::Withdrawn => "Withdrawn",
    }
}

/// Returns the JSON name of a status, as the tracking API writes it.
pub(crate) fn status_key(status: TrackingStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Renders a status badge that the script updates for `recipient`.
pub(crate) fn status_badge(recipient: &str, status: TrackingStatus) -> String {
    format!(
        "<span class=\"status status-{}\" data-recipient-status=\"{}\">{}</span>",
        status_key(status),
        escape(recipient),
        status_label(status)
    )
}

/// Returns the `data-status-labels` attribute value: every status's label, for the script.
pub(crate) fn status_labels_attribute() -> String {
    let labels: serde_json::Map<String, Value> = TrackingStatus::ALL
        .iter()
        .map(|status| (status_key(*status), Value::from(status_label(*status))))
        .collect();
    escape(&Value::Object(labels).to_string())
}

/// Query of the list page.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct ListQuery {
    status: Option<String>,
    recipient: Option<String>,
    cursor: Option<String>,
}

/// `GET /sent`: the caller's deliveries, newest first, with filters and paging.
pub(crate) async fn list(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    caller.require(&[Role::Sender])?;
    let status = match query.status.as_deref().filter(|text| !text.is_empty()) {
        None => None,
        Some(text) => Some(
            TrackingStatus::ALL
                .into_iter()
                .find(|status| status_key(*status) == text)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "status",
                        format!("status {text:?} is not one of the listed statuses"),
                    )
                })?,
        ),
    };
    let recipient = query
        .recipient
        .clone()
        .filter(|text| !text.trim().is_empty());
    let filter = DeliveryFilter {
        status,
        recipient_address: recipient.clone(),
        ..DeliveryFilter::default()
    };
    let cursor = query
        .cursor
        .as_deref()
        .filter(|text| !text.is_empty())
        .map(|text| {
            text.parse::<ListCursor>()
                .map_err(|error| ApiError::invalid("cursor", error.to_string()))
        })
        .transpose()?;
    let page_of = tracking::list_deliveries(
        &core.views,
        caller.caller.account.id,
        &filter,
        PAGE_SIZE,
        cursor.as_ref(),
    )
    .map_err(ApiError::from)?;

    let mut body = String::from("<h1>Sent deliveries</h1>\n");
    push_filters(&mut body, status, recipient.as_deref());
    if page_of.deliveries.is_empty() {
        body.push_str(
            "<p>No delivery matches. <a href=\"/compose\">Send a new delivery</a>.</p>\n",
        );
    } else {
        let ids: Vec<String> = page_of
            .deliveries
            .iter()
            .map(|summary| summary.delivery.to_string())
            .collect();
        let _ = write!(
            body,
            "<p id=\"live-note\" class=\"hint\" aria-live=\"polite\"></p>\n\
             <div class=\"scroll\" data-live-events=\"/sent/live?ids={}\" data-status-labels=\"{}\">\n\
             <table class=\"stack\"><caption class=\"visually-hidden\">Sent deliveries, newest first</caption>\n\
             <thead><tr><th scope=\"col\">Subject</th><th scope=\"col\">Submitted</th>\
             <th scope=\"col\">Recipients</th><th scope=\"col\">Billing code</th></tr></thead>\n<tbody>\n",
            ids.join(","),
            status_labels_attribute(),
        );
        for summary in &page_of.deliveries {
            let mut recipients = String::from("<ul class=\"plain\">");
            for recipient in &summary.recipients {
                let _ = write!(
                    recipients,
                    "<li>{} {}</li>",
                    escape(&recipient.address),
                    status_badge(&recipient.recipient.to_string(), recipient.status)
                );
            }
            recipients.push_str("</ul>");
            let _ = writeln!(
                body,
                "<tr><td data-label=\"Subject\"><a href=\"/sent/{}\">{}</a></td>\
                 <td data-label=\"Submitted\">{}</td><td data-label=\"Recipients\">{recipients}</td>\
                 <td data-label=\"Billing code\">{}</td></tr>",
                summary.delivery,
                escape(&summary.subject),
                time_element(summary.submitted_at),
                summary
                    .billing_code
                    .as_deref()
                    .map_or_else(|| "&ndash;".to_owned(), escape),
            );
        }
        body.push_str("</tbody></table></div>\n");
    }
    if let Some(next) = page_of.next_cursor {
        let mut href = format!("/sent?cursor={}", urlencode(&next.to_string()));
        if let Some(status) = status {
            let _ = write!(href, "&status={}", status_key(status));
        }
        if let Some(recipient) = &recipient {
            let _ = write!(href, "&recipient={}", urlencode(recipient));
        }
        let _ = writeln!(
            body,
            "<p><a class=\"button secondary\" href=\"{}\">Older deliveries</a></p>",
            escape(&href)
        );
    }
    Ok(html_response(
        axum::http::StatusCode::OK,
        page(
            "Sent deliveries",
            Some(caller.viewer()),
            Section::Sent,
            &body,
        ),
    ))
}

fn push_filters(body: &mut String, status: Option<TrackingStatus>, recipient: Option<&str>) {
    body.push_str(
        "<form method=\"get\" action=\"/sent\" class=\"actions\" role=\"search\">\n\
         <div><label for=\"status\">Recipient status</label><select id=\"status\" name=\"status\">\
         <option value=\"\">Any status</option>",
    );
    for option in TrackingStatus::ALL {
        let selected = if Some(option) == status {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<option value=\"{}\"{selected}>{}</option>",
            status_key(option),
            status_label(option)
        );
    }
    let _ = write!(
        body,
        "</select></div>\n<div><label for=\"recipient\">Recipient address</label>\
         <input id=\"recipient\" name=\"recipient\" type=\"search\" value=\"{}\"></div>\n\
         <div><button type=\"submit\" class=\"secondary\">Filter</button></div>\n</form>\n",
        escape(recipient.unwrap_or(""))
    );
}

/// Query of the live list stream.
#[derive(Debug, Deserialize)]
pub(crate) struct LiveQuery {
    /// Delivery ids separated by commas, at most [`PAGE_SIZE`].
    ids: String,
}

/// `GET /sent/live?ids=ID,ID`: server-sent `tracking` events with the record of each
/// listed delivery, first as it is and then after every change.
pub(crate) async fn live(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Query(query): Query<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, PageError> {
    caller.require(&[Role::Sender])?;
    let ids: Vec<&str> = query.ids.split(',').filter(|id| !id.is_empty()).collect();
    if ids.len() > PAGE_SIZE {
        return Err(ApiError::invalid(
            "ids",
            format!("more than {PAGE_SIZE} deliveries; list at most {PAGE_SIZE}"),
        )
        .into());
    }
    let mut deliveries = Vec::with_capacity(ids.len());
    for id in ids {
        deliveries.push(
            visible_tracking(&core, &caller.caller, id)?
                .summary
                .delivery,
        );
    }

    // Subscribing before the first read means no change between the two is missed.
    let commits = core.views.commits();
    let state = LiveState {
        core,
        deliveries,
        sent: HashMap::new(),
        pending: Vec::new(),
        commits,
        first: true,
    };
    let events = futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(body) = state.pending.pop() {
                let event = SseEvent::default().event("tracking").data(body.to_string());
                return Some((Ok(event), state));
            }
            if !state.first && state.commits.changed().await.is_err() {
                return None;
            }
            state.first = false;
            state.collect_changes();
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

struct LiveState {
    core: Arc<Core>,
    deliveries: Vec<DeliveryId>,
    /// The last record sent of each delivery.
    sent: HashMap<DeliveryId, Value>,
    pending: Vec<Value>,
    commits: tokio::sync::watch::Receiver<u64>,
    first: bool,
}

impl LiveState {
    /// Queues the record of every delivery that changed since it was last sent.
    fn collect_changes(&mut self) {
        for delivery in &self.deliveries {
            let Ok(Some(record)) = tracking::delivery(&self.core.views, *delivery) else {
                continue;
            };
            let body = tracking_json(&record);
            if self.sent.get(delivery) != Some(&body) {
                self.sent.insert(*delivery, body.clone());
                self.pending.push(body);
            }
        }
    }
}

/// Query of a delivery's page.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct DetailQuery {
    submitted: Option<String>,
    withdrawn: Option<String>,
}

/// `GET /sent/{id}`: one delivery with its recipients, documents, options and timeline.
pub(crate) async fn detail(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Result<Response, PageError> {
    caller.require(&[Role::Sender])?;
    let delivery = parse_id(&id)?;
    let (chain, position) = {
        let model = core.model();
        let record = crate::app::deliveries::visible(&model, &caller.caller, delivery)?;
        (record.submitted.chain, record.submitted.position)
    };
    // A delivery just submitted may not be in the tracking view yet.
    tokio::time::timeout(VIEW_WAIT, core.views.wait_for("tracking", chain, position))
        .await
        .map_err(|_| ApiError::Unavailable {
            message: format!(
                "the tracking view has not caught up within {VIEW_WAIT:?}; reload the page"
            ),
        })?
        .map_err(ApiError::from)?;
    let tracking: DeliveryTracking = visible_tracking(&core, &caller.caller, &id)?;

    let mut notices = String::new();
    if query.submitted.is_some() {
        notices.push_str("<p class=\"notice\" role=\"status\">The delivery was submitted. Each recipient gets an e-mail with a private link.</p>\n");
    }
    if query.withdrawn.is_some() {
        notices.push_str("<p class=\"notice\" role=\"status\">The delivery was withdrawn. Its documents can no longer be downloaded.</p>\n");
    }
    let body = sent_detail::render(&core, &caller, delivery, &tracking, &notices);
    Ok(html_response(
        axum::http::StatusCode::OK,
        page(
            &tracking.summary.subject,
            Some(caller.viewer()),
            Section::Sent,
            &body,
        ),
    ))
}

/// Fields of the withdrawal form.
#[derive(Debug, Deserialize)]
pub(crate) struct WithdrawForm {
    csrf: Option<String>,
    #[serde(default)]
    reason: String,
}

/// `POST /sent/{id}/withdraw`: withdraws the delivery and returns to its page.
pub(crate) async fn withdraw(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Path(id): Path<String>,
    Form(form): Form<WithdrawForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(form.csrf.as_deref())?;
    caller.require(&[Role::Sender])?;
    let delivery = parse_id(&id)?;
    withdraw_delivery(
        &core,
        &caller.caller,
        delivery,
        form.reason.trim().to_owned(),
    )
    .await?;
    Ok(see_other(&format!("/sent/{delivery}?withdrawn=1")))
}

/// Renders the withdrawal form of a delivery.
pub(crate) fn withdraw_form(delivery: DeliveryId, csrf: &str) -> String {
    format!(
        "<h2>Withdraw</h2>\n<form method=\"post\" action=\"/sent/{delivery}/withdraw\">\n{}\
         <div class=\"field\"><label for=\"reason\">Reason (optional)</label>\n\
         <p class=\"hint\" id=\"reason-hint\">Recorded on the ledger with the withdrawal.</p>\n\
         <input id=\"reason\" name=\"reason\" type=\"text\" maxlength=\"500\" aria-describedby=\"reason-hint\"></div>\n\
         <button type=\"submit\" class=\"danger\">Withdraw this delivery</button>\n\
         <p class=\"hint\">Recipients can no longer download the documents, and no more e-mails go out.</p>\n</form>\n",
        csrf_input(csrf)
    )
}
