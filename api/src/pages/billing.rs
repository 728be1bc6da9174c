//! The billing page: a period of months and a billing code, the usage and amounts per
//! account, code and month with their totals, a CSV download, and the ledger positions
//! the report reflects, which reproduce it exactly later ("as of").
//!
//! Reports come from [`usage_report`], the function behind `GET /api/billing/usage`,
//! and the CSV is the API's CSV.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use consign_projections::billing::{self, BillingReport, Month, Usage, UsageQuery};
use consign_schemas::events::Role;
use serde::Deserialize;

use super::form::{FormError, error_summary, field_state};
use super::layout::{Section, html_response, page};
use super::session::{PageCaller, PageError, urlencode};
use crate::app::views::{check_period, usage_report};
use crate::app::{ApiError, Core};
use crate::web::html::escape;

/// JSON field names of the usage query and the inputs that show their errors.
const INPUTS: &[(&str, &str)] = &[("from", "from"), ("to", "to"), ("as_of", "as_of")];

/// Query of the billing page and the CSV download.
#[derive(Debug, Deserialize, Default, Clone)]
pub(crate) struct BillingParams {
    from: Option<String>,
    to: Option<String>,
    billing_code: Option<String>,
    as_of: Option<String>,
}

impl BillingParams {
    /// Fills in the current month for a missing period and drops empty fields.
    fn normalized(mut self, now: consign_schemas::Timestamp) -> Self {
        let current = Month::of(now)
            .map(|month| month.to_string())
            .unwrap_or_default();
        let keep = |value: Option<String>| {
            value
                .map(|text| text.trim().to_owned())
                .filter(|text| !text.is_empty())
        };
        self.from = keep(self.from).or_else(|| Some(current.clone()));
        self.to = keep(self.to).or_else(|| self.from.clone());
        self.billing_code = keep(self.billing_code);
        self.as_of = keep(self.as_of);
        self
    }

    fn query(&self, billing_code: Option<String>) -> Result<UsageQuery, ApiError> {
        let month = |field: &str, text: Option<&str>| {
            text.unwrap_or_default().parse::<Month>().map_err(|error| {
                ApiError::invalid(
                    field,
                    format!("{field}: {error}; use a month such as 2026-12"),
                )
            })
        };
        let query = UsageQuery {
            from: month("from", self.from.as_deref())?,
            to: month("to", self.to.as_deref())?,
            billing_code,
        };
        check_period(&query)?;
        Ok(query)
    }

    /// Returns the query string of these parameters.
    fn query_string(&self) -> String {
        let mut parts = Vec::new();
        for (name, value) in [
            ("from", &self.from),
            ("to", &self.to),
            ("billing_code", &self.billing_code),
            ("as_of", &self.as_of),
        ] {
            if let Some(value) = value {
                parts.push(format!("{name}={}", urlencode(value)));
            }
        }
        parts.join("&")
    }
}

/// `GET /billing`: the form and, for a valid period, the report.
pub(crate) async fn show(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Query(params): Query<BillingParams>,
) -> Result<Response, PageError> {
    caller.require(&[Role::Billing, Role::Admin])?;
    let params = params.normalized(core.clock.now());
    let outcome = async {
        // Every code of the period, for the picker, then the report for the chosen one.
        let all = usage_report(&core, params.query(None)?, params.as_of.as_deref(), None).await?;
        let report = match &params.billing_code {
            None => all.clone(),
            Some(code) => {
                usage_report(
                    &core,
                    params.query(Some(code.clone()))?,
                    params.as_of.as_deref(),
                    None,
                )
                .await?
            }
        };
        Ok::<_, ApiError>((all, report))
    }
    .await;
    let (codes, report, error) = match outcome {
        Ok((all, report)) => (codes_of(&all), Some(report), None),
        Err(error) => (
            BTreeSet::new(),
            None,
            Some(FormError::from_api(&error, INPUTS)),
        ),
    };

    let mut body = String::from("<h1>Billing</h1>\n");
    body.push_str(&error_summary(error.as_ref()));
    push_form(&mut body, &params, &codes, error.as_ref());
    if let Some(report) = &report {
        push_report(&mut body, &core, &params, report);
    }
    let status = error
        .as_ref()
        .map_or(StatusCode::OK, |_| StatusCode::UNPROCESSABLE_ENTITY);
    Ok(html_response(
        status,
        page("Billing", Some(caller.viewer()), Section::Billing, &body),
    ))
}

/// `GET /billing/usage.csv`: the report as the API's CSV, as a download.
pub(crate) async fn csv(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Query(params): Query<BillingParams>,
) -> Result<Response, PageError> {
    caller.require(&[Role::Billing, Role::Admin])?;
    let params = params.normalized(core.clock.now());
    let query = params.query(params.billing_code.clone())?;
    let report = usage_report(&core, query, params.as_of.as_deref(), None).await?;
    let mut bytes = Vec::new();
    billing::write_csv(&report, core.rates.as_ref(), &mut bytes).map_err(ApiError::from)?;
    let file_name = format!(
        "consign-billing-{}-to-{}.csv",
        params.from.as_deref().unwrap_or_default(),
        params.to.as_deref().unwrap_or_default()
    );
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        CONTENT_DISPOSITION,
        crate::web::disposition::content_disposition(&file_name),
    );
    Ok(response)
}

fn codes_of(report: &BillingReport) -> BTreeSet<String> {
    report
        .rows
        .iter()
        .filter_map(|row| row.billing_code.clone())
        .collect()
}

fn push_form(
    body: &mut String,
    params: &BillingParams,
    codes: &BTreeSet<String>,
    error: Option<&FormError>,
) {
    body.push_str("<form method=\"get\" action=\"/billing\">\n<fieldset><legend>Period</legend>\n");
    for (id, label, value) in [
        ("from", "First month", &params.from),
        ("to", "Last month", &params.to),
    ] {
        let state = field_state(id, error);
        let _ = write!(
            body,
            "<div class=\"field\"><label for=\"{id}\">{label}</label>\n{}\
             <input id=\"{id}\" name=\"{id}\" type=\"month\" required value=\"{}\"{}></div>\n",
            state.message,
            escape(value.as_deref().unwrap_or_default()),
            state.attributes,
        );
    }
    body.push_str("<p class=\"hint\">Months are calendar months in UTC.</p>\n</fieldset>\n");

    let _ = write!(
        body,
        "<div class=\"field\"><label for=\"billing_code\">Billing code</label>\n\
         <select id=\"billing_code\" name=\"billing_code\"><option value=\"\">All billing codes</option>"
    );
    let mut options: BTreeSet<String> = codes.clone();
    options.extend(params.billing_code.clone());
    for code in options {
        let selected = if params.billing_code.as_deref() == Some(code.as_str()) {
            " selected"
        } else {
            ""
        };
        let code = escape(&code);
        let _ = write!(body, "<option value=\"{code}\"{selected}>{code}</option>");
    }
    body.push_str("</select></div>\n");

    let state = field_state("as_of", error);
    let _ = write!(
        body,
        "<div class=\"field\"><label for=\"as_of\">As of ledger positions (optional)</label>\n\
         <p class=\"hint\" id=\"as_of-hint\">To reproduce an earlier report exactly, enter the \
         positions it states, such as 0:120,1:98. Empty for the current state.</p>\n{}\
         <input id=\"as_of\" name=\"as_of\" type=\"text\" spellcheck=\"false\" value=\"{}\" \
         aria-describedby=\"as_of-hint\"{}></div>\n\
         <div class=\"actions\"><button type=\"submit\">Show usage</button></div>\n</form>\n",
        state.message,
        escape(params.as_of.as_deref().unwrap_or_default()),
        state.attributes,
    );
}

fn push_report(body: &mut String, core: &Core, params: &BillingParams, report: &BillingReport) {
    let positions: Vec<String> = report
        .positions
        .iter()
        .map(|(chain, position)| format!("{chain}:{position}"))
        .collect();
    let positions = positions.join(",");
    let _ = write!(
        body,
        "<h2>Usage</h2>\n<p>This report counts every ledger event before the positions \
         <code id=\"report-positions\">{}</code> (chain:next position) and none after.</p>\n",
        escape(&positions)
    );
    let mut exact = params.clone();
    exact.as_of = Some(positions);
    let _ = writeln!(
        body,
        "<div class=\"actions\"><a class=\"button\" id=\"csv-download\" href=\"/billing/usage.csv?{}\" download>Download CSV</a>\
         <a href=\"/billing?{}\">Link to exactly this report</a></div>",
        escape(&exact.query_string()),
        escape(&exact.query_string()),
    );
    if report.rows.is_empty() {
        body.push_str("<p>No usage in this period.</p>\n");
        return;
    }

    let rates = core.rates.as_ref();
    let mut html = String::from(
        "<div class=\"scroll\"><table class=\"stack\" id=\"usage\">\n<thead><tr>\
         <th scope=\"col\">Month</th><th scope=\"col\">Account</th><th scope=\"col\">Billing code</th>\
         <th scope=\"col\" class=\"number\">Deliveries</th><th scope=\"col\" class=\"number\">Recipients</th>\
         <th scope=\"col\" class=\"number\">Documents</th><th scope=\"col\" class=\"number\">Bytes</th>\
         <th scope=\"col\" class=\"number\">Postmarks</th>",
    );
    if rates.is_some() {
        html.push_str("<th scope=\"col\" class=\"number\">Amount</th>");
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    let mut total = Usage::default();
    let mut total_cents = 0u64;
    let model = core.model();
    for row in &report.rows {
        let account = model
            .account(row.account)
            .map_or_else(|| row.account.to_string(), |account| account.login.clone());
        let _ = write!(
            html,
            "<tr><td data-label=\"Month\">{}</td><td data-label=\"Account\">{}</td>\
             <td data-label=\"Billing code\">{}</td>{}",
            row.month,
            escape(&account),
            row.billing_code
                .as_deref()
                .map_or_else(|| "&ndash;".to_owned(), escape),
            usage_cells(&row.usage),
        );
        if let Some(rates) = rates {
            let cents = rates.price(&row.usage).total;
            total_cents = total_cents.saturating_add(cents);
            let _ = write!(
                html,
                "<td data-label=\"Amount\" class=\"number\">{}</td>",
                amount(cents)
            );
        }
        html.push_str("</tr>\n");
        add_usage(&mut total, &row.usage);
    }
    let _ = write!(
        html,
        "</tbody>\n<tfoot><tr><td colspan=\"3\">Total</td>{}",
        usage_cells(&total)
    );
    if rates.is_some() {
        let _ = write!(
            html,
            "<td data-label=\"Amount\" class=\"number\" id=\"total-amount\">{}</td>",
            amount(total_cents)
        );
    }
    html.push_str("</tr></tfoot>\n</table></div>\n");
    body.push_str(&html);
    if rates.is_some() {
        body.push_str("<p class=\"hint\">Amounts are in the currency of the configured rate table, from its cents.</p>\n");
    }
}

fn usage_cells(usage: &Usage) -> String {
    format!(
        "<td data-label=\"Deliveries\" class=\"number\">{}</td><td data-label=\"Recipients\" class=\"number\">{}</td>\
         <td data-label=\"Documents\" class=\"number\">{}</td><td data-label=\"Bytes\" class=\"number\">{}</td>\
         <td data-label=\"Postmarks\" class=\"number\">{}</td>",
        usage.deliveries, usage.recipients, usage.documents, usage.bytes, usage.postmarks
    )
}

fn add_usage(total: &mut Usage, usage: &Usage) {
    total.deliveries += usage.deliveries;
    total.recipients += usage.recipients;
    total.documents += usage.documents;
    total.bytes += usage.bytes;
    total.postmarks += usage.postmarks;
}

/// Formats cents as units with two decimals, such as `12.05`.
fn amount(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}
