//! The frame of every sender, billing and auditor page: the HTML document, the site
//! header with the navigation for the caller's role, the logout button, the security
//! headers and the shared stylesheet and script.
//!
//! Every page links `/assets/consign.css` and `/assets/consign.js` and contains no
//! inline style or script, so the Content-Security-Policy allows only this origin.

use std::fmt::Write;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use consign_schemas::Timestamp;
use consign_schemas::events::Role;

use crate::web::html::{STYLESHEET_PATH, escape};

/// `Content-Security-Policy` of the pages: scripts, styles, images and connections
/// (the live status stream) from this origin only, forms posting to this origin, and
/// no framing.
pub(crate) const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// Path of the pages' script.
pub(crate) const SCRIPT_PATH: &str = "/assets/consign.js";

const STYLESHEET: &str = include_str!("assets/consign.css");
const SCRIPT: &str = include_str!("assets/consign.js");

/// The section of the site a page belongs to, marked in the navigation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Section {
    Compose,
    Sent,
    Lists,
    Billing,
    Audit,
    None,
}

/// The logged-in account as the header shows it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Viewer<'a> {
    pub(crate) login: &'a str,
    pub(crate) role: Role,
    /// The session's form token, for the logout form.
    pub(crate) csrf: &'a str,
}

/// Renders a complete page. `body` must already be escaped; `viewer` is `None` on the
/// login page.
pub(crate) fn page(
    title: &str,
    viewer: Option<Viewer<'_>>,
    section: Section,
    body: &str,
) -> String {
    let mut html = String::with_capacity(body.len() + 2048);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} - consign</title>\n\
         <link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\">\n\
         <script src=\"{SCRIPT_PATH}\" defer></script>\n</head>\n<body>\n\
         <a class=\"skip\" href=\"#content\">Skip to the content</a>\n",
        escape(title)
    );
    push_header(&mut html, viewer, section);
    let class = if viewer.is_none() {
        " class=\"narrow\""
    } else {
        ""
    };
    let _ = write!(
        html,
        "<main id=\"content\"{class} tabindex=\"-1\">\n{body}</main>\n</body>\n</html>\n"
    );
    html
}

fn push_header(html: &mut String, viewer: Option<Viewer<'_>>, section: Section) {
    html.push_str(
        "<header class=\"site\"><div class=\"bar\">\
         <a class=\"brand\" href=\"/\">consign</a>\n",
    );
    if let Some(viewer) = viewer {
        let links: &[(&str, &str, Section)] = match viewer.role {
            Role::Sender => &[
                ("/compose", "New delivery", Section::Compose),
                ("/sent", "Sent", Section::Sent),
                ("/lists", "Mailing lists", Section::Lists),
            ],
            Role::Billing => &[("/billing", "Billing", Section::Billing)],
            Role::Auditor => &[("/audit", "Audit", Section::Audit)],
            Role::Admin => &[
                ("/billing", "Billing", Section::Billing),
                ("/audit", "Audit", Section::Audit),
            ],
        };
        html.push_str("<nav aria-label=\"Main\"><ul>\n");
        for (href, label, link_section) in links {
            let current = if *link_section == section {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = writeln!(html, "<li><a href=\"{href}\"{current}>{label}</a></li>");
        }
        html.push_str("</ul></nav>\n");
        let _ = writeln!(
            html,
            "<div class=\"who\"><span>Logged in as <strong>{}</strong></span>\
             <a href=\"/password\">Password</a>\
             <form method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Log out</button></form></div>",
            escape(viewer.login),
            escape(viewer.csrf),
        );
    }
    html.push_str("</div></header>\n");
}

/// Returns an HTML response with the page headers.
pub(crate) fn html_response(status: StatusCode, html: String) -> Response {
    (status, Html(html)).into_response()
}

/// Sets the security headers of a page response, keeping any the handler set.
pub(crate) fn set_page_headers(headers: &mut HeaderMap) {
    let defaults = [
        ("content-security-policy", PAGE_CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "private, no-store"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
}

/// `GET /assets/consign.css`.
pub(crate) async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

/// `GET /assets/consign.js`.
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The assets change only with a new binary, so an hour of caching is safe.
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// Formats a sequencer time as a `<time>` element in UTC.
pub(crate) fn time_element(time: Timestamp) -> String {
    let Ok(instant) = jiff::Timestamp::from_microsecond(time.as_micros()) else {
        return "unknown time".to_owned();
    };
    format!(
        "<time datetime=\"{}\">{}</time>",
        instant.strftime("%Y-%m-%dT%H:%M:%SZ"),
        instant.strftime("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// Formats an optional time, or a dash.
pub(crate) fn maybe_time(time: Option<Timestamp>) -> String {
    time.map_or_else(|| "&ndash;".to_owned(), time_element)
}
