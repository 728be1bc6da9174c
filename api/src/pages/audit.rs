//! The auditor's pages: search deliveries by sender, recipient, document hash or
//! submission time, and a delivery's timeline with ledger positions, hashes and the
//! check of each link, the chain's status and the evidence bundle download.
//!
//! Searches use the audit view's search as `GET /api/audit/search` does, and the
//! timeline uses [`checked_history`], the code of `GET /api/audit/deliveries/{id}`.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use consign_projections::audit::{self, AuditSearch, SearchCursor};
use consign_schemas::events::Role;
use consign_schemas::{ContentHash, DeliveryId, Position, Timestamp};
use serde::Deserialize;

use super::form::{FormError, error_summary, text_input};
use super::layout::{Section, html_response, page, time_element};
use super::session::{PageCaller, PageError, urlencode};
use crate::app::deliveries::status_name;
use crate::app::history::checked_history;
use crate::app::views::audit_search_page;
use crate::app::{ApiError, Core};
use crate::web::html::escape;

/// Maximum wait for the audit view to show a delivery that the model already has.
const VIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Maximum deliveries a page of search results shows.
const MAX_RESULTS: usize = 200;

/// Query fields of the search form and the inputs that show their errors.
const INPUTS: &[(&str, &str)] = &[
    ("sender", "sender"),
    ("recipient", "recipient"),
    ("document", "document"),
    ("from", "from"),
    ("before", "before"),
];

/// Query of the search page; at most one criterion.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct SearchQuery {
    sender: Option<String>,
    recipient: Option<String>,
    document: Option<String>,
    from: Option<String>,
    before: Option<String>,
    /// The next page's cursor, as the previous page's link gives it.
    cursor: Option<String>,
}

impl SearchQuery {
    /// Returns the link to the page of this search after `next`.
    fn next_page_link(&self, next: &SearchCursor) -> String {
        let mut href = format!("/audit?cursor={}", urlencode(&next.to_string()));
        for (name, value) in [
            ("sender", &self.sender),
            ("recipient", &self.recipient),
            ("document", &self.document),
            ("from", &self.from),
            ("before", &self.before),
        ] {
            if let Some(value) = given(value) {
                let _ = write!(href, "&{name}={}", urlencode(value));
            }
        }
        href
    }

    /// Returns the criterion, or `None` for an empty form.
    ///
    /// # Errors
    ///
    /// [`ApiError::Invalid`] naming a malformed field, or a form with more than one
    /// criterion.
    fn criterion(&self, core: &Core) -> Result<Option<AuditSearch>, ApiError> {
        let mut criteria = Vec::new();
        if let Some(login) = given(&self.sender) {
            let account = core
                .model()
                .account_by_login(login)
                .map(|account| account.id)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "sender",
                        format!("no account has the login {login:?}; check the spelling"),
                    )
                })?;
            criteria.push(AuditSearch::Sender(account));
        }
        if let Some(address) = given(&self.recipient) {
            criteria.push(AuditSearch::RecipientAddress(address.to_owned()));
        }
        if let Some(hex_text) = given(&self.document) {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(hex_text, &mut bytes).map_err(|_| {
                ApiError::invalid(
                    "document",
                    format!("document {hex_text:?} is not a BLAKE3 hash of 64 hex digits"),
                )
            })?;
            criteria.push(AuditSearch::DocumentHash(ContentHash::from_bytes(bytes)));
        }
        let from = given(&self.from);
        let before = given(&self.before);
        if from.is_some() || before.is_some() {
            let from_time = from.map_or(Ok(Timestamp::from_micros(0)), |text| day("from", text))?;
            let before_time = before.map_or(Ok(Timestamp::from_micros(i64::MAX)), |text| {
                day("before", text)
            })?;
            if let (Some(from), Some(before)) = (from, before)
                && before_time <= from_time
            {
                return Err(ApiError::invalid(
                    "before",
                    format!(
                        "before {before} is not after from {from}; give a later before date, \
                         or leave one of them empty"
                    ),
                ));
            }
            criteria.push(AuditSearch::SubmittedBetween {
                from: from_time,
                before: before_time,
            });
        }
        match criteria.len() {
            0 => Ok(None),
            1 => Ok(criteria.pop()),
            _ => Err(ApiError::bad_request(
                "fill in only one of sender, recipient, document hash, or the submission dates",
            )),
        }
    }
}

/// Parses a UTC day such as 2026-12-01 into the instant it starts.
fn day(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    let invalid = || {
        ApiError::invalid(
            field,
            format!("{field} {text:?} is not a date; give one such as 2026-12-01"),
        )
    };
    let date: jiff::civil::Date = text.parse().map_err(|_| invalid())?;
    let start = jiff::tz::Offset::UTC
        .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        .map_err(|_| invalid())?;
    Ok(Timestamp::from_micros(start.as_microsecond()))
}

/// Returns a trimmed field value, or `None` for a missing or blank one.
fn given(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// `GET /audit`: the search form and its results.
pub(crate) async fn search(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Query(query): Query<SearchQuery>,
) -> Result<Response, PageError> {
    caller.require(&[Role::Auditor, Role::Admin])?;
    let cursor = given(&query.cursor);
    let outcome = match query.criterion(&core) {
        Ok(Some(criterion)) => audit_search_page(&core, &criterion, cursor, MAX_RESULTS).map(Some),
        // A cursor without a criterion is still checked, so a damaged link is named.
        Ok(None) => match cursor.map(str::parse::<SearchCursor>) {
            Some(Err(error)) => Err(ApiError::invalid("cursor", error.to_string())),
            _ => Ok(None),
        },
        Err(error) => Err(error),
    };
    let (found, error) = match outcome {
        Ok(found) => (found, None),
        Err(error) => (None, Some(FormError::from_api(&error, INPUTS))),
    };

    let mut body = String::from("<h1>Audit</h1>\n");
    body.push_str(&error_summary(error.as_ref()));
    push_form(&mut body, &query, error.as_ref());
    if let Some(found) = &found {
        push_results(
            &mut body,
            &core,
            &found.deliveries,
            query.cursor.is_some(),
            found.next.is_some(),
        );
        if let Some(next) = &found.next {
            let _ = writeln!(
                body,
                "<p><a class=\"button secondary\" href=\"{}\">Next {MAX_RESULTS} deliveries</a></p>",
                escape(&query.next_page_link(next))
            );
        }
    }
    let status = error
        .as_ref()
        .map_or(StatusCode::OK, |_| StatusCode::UNPROCESSABLE_ENTITY);
    Ok(html_response(
        status,
        page("Audit", Some(caller.viewer()), Section::Audit, &body),
    ))
}

fn push_form(body: &mut String, query: &SearchQuery, error: Option<&FormError>) {
    let value = |field: &Option<String>| field.clone().unwrap_or_default();
    body.push_str(
        "<form method=\"get\" action=\"/audit\" role=\"search\">\n\
         <p class=\"hint\">Search by one criterion.</p>\n",
    );
    body.push_str(&text_input(
        "sender",
        "Sender login",
        None,
        &value(&query.sender),
        " spellcheck=\"false\"",
        error,
    ));
    body.push_str(&text_input(
        "recipient",
        "Recipient address",
        None,
        &value(&query.recipient),
        " spellcheck=\"false\"",
        error,
    ));
    body.push_str(&text_input(
        "document",
        "Document BLAKE3 hash",
        Some("64 hexadecimal digits, as on the recipient's page and in the postmark."),
        &value(&query.document),
        " spellcheck=\"false\" aria-describedby=\"document-hint\"",
        error,
    ));
    body.push_str("<fieldset><legend>Submitted between (UTC days)</legend>\n");
    for (id, label, field) in [
        ("from", "From (inclusive)", &query.from),
        ("before", "Before (exclusive)", &query.before),
    ] {
        let state = super::form::field_state(id, error);
        let _ = write!(
            body,
            "<div class=\"field\"><label for=\"{id}\">{label}</label>\n{}\
             <input id=\"{id}\" name=\"{id}\" type=\"date\" value=\"{}\"{}></div>\n",
            state.message,
            escape(&value(field)),
            state.attributes,
        );
    }
    body.push_str("</fieldset>\n<div class=\"actions\"><button type=\"submit\">Search</button></div>\n</form>\n");
}

/// Lists the deliveries of one page of results. `later` is true on the pages after
/// the first, and `more` when a next page follows.
fn push_results(body: &mut String, core: &Core, found: &[DeliveryId], later: bool, more: bool) {
    let noun = if found.len() == 1 {
        "delivery"
    } else {
        "deliveries"
    };
    let count = found.len();
    let summary = match (later, more) {
        (false, false) => format!("{count} {noun} found."),
        (_, true) => format!("{count} {noun} on this page, and more match."),
        (true, false) => format!("{count} {noun} on this page, the last."),
    };
    let _ = writeln!(body, "<h2>Results</h2>\n<p>{summary}</p>");
    if found.is_empty() {
        return;
    }
    body.push_str(
        "<div class=\"scroll\"><table class=\"stack\" id=\"results\">\n<thead><tr><th scope=\"col\">Delivery</th>\
         <th scope=\"col\">Subject</th><th scope=\"col\">Sender</th><th scope=\"col\">Submitted</th>\
         <th scope=\"col\">Status</th></tr></thead>\n<tbody>\n",
    );
    let model = core.model();
    let now = core.clock.now();
    for delivery in found {
        let Some(record) = model.delivery(*delivery) else {
            continue;
        };
        let sender = model.account(record.sender).map_or_else(
            || record.sender.to_string(),
            |account| account.login.clone(),
        );
        let status = status_name(record.availability(now));
        let _ = writeln!(
            body,
            "<tr><td data-label=\"Delivery\"><a href=\"/audit/deliveries/{delivery}\"><code>{delivery}</code></a></td>\
             <td data-label=\"Subject\">{}</td><td data-label=\"Sender\">{}</td><td data-label=\"Submitted\">{}</td>\
             <td data-label=\"Status\"><span class=\"status status-{status}\">{status}</span></td></tr>",
            escape(&record.subject),
            escape(&sender),
            time_element(record.submitted.time),
        );
    }
    body.push_str("</tbody></table></div>\n");
}

/// `GET /audit/deliveries/{id}`: the delivery's events with positions and hashes, the
/// check of each against the ledger, and the chain's status.
pub(crate) async fn timeline(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    caller.require(&[Role::Auditor, Role::Admin])?;
    let not_found = || ApiError::not_found(format!("delivery {id:?}"));
    let delivery: DeliveryId = id.parse().map_err(|_| not_found())?;
    // A delivery that the model has may not be in the audit view yet.
    let submitted = core
        .model()
        .delivery(delivery)
        .map(|record| (record.submitted.chain, record.submitted.position));
    if let Some((chain, position)) = submitted {
        tokio::time::timeout(
            VIEW_WAIT,
            core.views.wait_for(audit::Audit::NAME, chain, position),
        )
        .await
        .map_err(|_| ApiError::Unavailable {
            message: format!(
                "the audit view has not caught up within {VIEW_WAIT:?}; reload the page"
            ),
        })?
        .map_err(ApiError::from)?;
    }
    let history = checked_history(&core, delivery)?;
    if history.is_empty() {
        return Err(not_found().into());
    }
    let chain = core.chain_of(delivery);
    let head = core.ledger.next_position(chain).map_err(ApiError::from)?;
    let checkpoint = core.ledger.last_checkpoint(chain).map_err(ApiError::from)?;

    let (subject, sender) = {
        let model = core.model();
        model.delivery(delivery).map_or_else(
            || (String::new(), String::new()),
            |record| {
                let sender = model.account(record.sender).map_or_else(
                    || record.sender.to_string(),
                    |account| account.login.clone(),
                );
                (record.subject.clone(), sender)
            },
        )
    };

    let mut body = format!("<h1>Delivery <code>{delivery}</code></h1>\n");
    let _ = writeln!(
        body,
        "<dl class=\"facts\"><dt>Subject</dt><dd>{}</dd><dt>Sender</dt><dd>{}</dd></dl>",
        escape(&subject),
        escape(&sender)
    );

    let broken: Vec<String> = history
        .iter()
        .filter(|row| !row.link_verified)
        .map(|row| format!("{}:{}", row.entry.chain, row.entry.position))
        .collect();
    let last = history
        .last()
        .map(|row| row.entry.position)
        .unwrap_or(Position::new(0));
    body.push_str("<h2>Chain status</h2>\n<ul id=\"chain-status\">\n");
    if broken.is_empty() {
        let _ = writeln!(
            body,
            "<li><span class=\"status status-verified\">Verified</span> All {} events of this delivery \
             hash to their recorded hashes and link to the event before them in chain {chain}.</li>",
            history.len()
        );
    } else {
        let _ = writeln!(
            body,
            "<li><span class=\"status status-broken\">Broken</span> {} of {} events fail the check \
             against the ledger: {}. Run <code>consign ledger verify</code> on the server.</li>",
            broken.len(),
            history.len(),
            escape(&broken.join(", "))
        );
    }
    let _ = writeln!(
        body,
        "<li>Chain {chain} holds {head} events (next position {head}).</li>"
    );
    let covered = match checkpoint {
        Some(position) if position > last => format!(
            "The latest signed checkpoint, at position {position}, covers every event of this delivery."
        ),
        Some(position) => format!(
            "The latest signed checkpoint, at position {position}, does not cover the last events yet; \
             the evidence bundle asks the ledger for one that does."
        ),
        None => "No checkpoint is signed on this chain yet; the evidence bundle asks the ledger for one.".to_owned(),
    };
    let _ = writeln!(body, "<li>{covered}</li>\n</ul>");
    let _ = writeln!(
        body,
        "<p><a class=\"button\" id=\"evidence-download\" href=\"/api/audit/deliveries/{delivery}/evidence\" download>\
         Download the evidence bundle</a></p>\n<p class=\"hint\">The bundle proves each event into a signed \
         checkpoint; check it offline with <code>consign evidence verify FILE</code>.</p>"
    );

    body.push_str(
        "<h2>Timeline</h2>\n<div class=\"scroll\"><table class=\"stack\" id=\"timeline\">\n<thead><tr>\
         <th scope=\"col\">Position</th><th scope=\"col\">Time</th><th scope=\"col\">Event</th>\
         <th scope=\"col\">Hash and previous hash (BLAKE3)</th><th scope=\"col\">Check</th></tr></thead>\n<tbody>\n",
    );
    for row in &history {
        let entry = &row.entry;
        let etsi = row.etsi.map_or_else(String::new, |name| {
            format!("<br><small>ETSI EN 319 522: {name}</small>")
        });
        let mut facts = String::new();
        if let Some(recipient) = &row.recipient {
            let _ = write!(facts, "<br>Recipient: {}", escape(recipient));
        }
        if let Some(document) = &row.document {
            let _ = write!(facts, "<br>Document: {}", escape(document));
        }
        if let Some(detail) = &row.detail {
            let _ = write!(
                facts,
                "<br><small class=\"detail\">{}</small>",
                escape(detail)
            );
        }
        let check = if row.link_verified {
            "<span class=\"status status-verified\">Verified</span>"
        } else {
            "<span class=\"status status-broken\">Fails</span>"
        };
        let _ = writeln!(
            body,
            "<tr><td data-label=\"Position\">{}:{}</td><td data-label=\"Time\">{}</td>\
             <td data-label=\"Event\">{}{etsi}{facts}</td>\
             <td data-label=\"Hashes\"><code>{}</code><br><small>previous <code>{}</code></small></td>\
             <td data-label=\"Check\">{check}</td></tr>",
            entry.chain,
            entry.position,
            time_element(entry.time),
            entry.kind.name(),
            entry.hash,
            entry.previous,
        );
    }
    body.push_str("</tbody></table></div>\n");
    Ok(html_response(
        StatusCode::OK,
        page(
            "Delivery timeline",
            Some(caller.viewer()),
            Section::Audit,
            &body,
        ),
    ))
}
