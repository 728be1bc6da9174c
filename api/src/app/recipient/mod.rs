//! The recipient's side: the page behind the private link, the password form and the
//! downloads. Plain HTML without JavaScript.
//!
//! A link token is looked up by its hash only, so an unknown token costs the same hash
//! and map lookup whatever its text, and gets the same 404 page. Every refusal
//! of a known link (not yet released, expired, withdrawn, wrong password, throttled) is
//! recorded as `AccessDenied` with its reason; opening the page after the password is
//! `DeliveryOpened`; a document served to its last byte, in one response or in Range
//! pieces, is `DocumentDownloaded`.

mod coverage;
mod download;
mod grants;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use consign_ledger::{AppendRequest, NewEvent};
use consign_projections::model::{Availability, Delivery, Recipient};
use consign_schemas::events::{AccessDenied, DeliveryOpened, DenialReason};
use consign_schemas::{Actor, Event, EventHash, Timestamp};
use serde::Deserialize;

pub use coverage::Coverage;
pub use download::download;
pub use grants::Grants;

use super::core::Core;
use super::error::ApiError;
use super::passwords;
use super::tokens::cookie_values;
use crate::web::html::{self, DeliveryPage, DocumentRow, PasswordPage, StatusPage};
use crate::web::throttle::ThrottleKey;

/// Headers every recipient page carries: the token is in the URL, so no referrer may
/// leave the page, and nothing may be cached or framed.
fn page_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, axum::response::Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(html::CONTENT_SECURITY_POLICY),
    );
    set_private_headers(headers);
    response
}

/// Sets the headers shared by pages and downloads.
pub(crate) fn set_private_headers(headers: &mut HeaderMap) {
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "cache-control",
        HeaderValue::from_static("private, no-store"),
    );
}

/// The client's IP address, or 0.0.0.0 when the server runs without connection info.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        Ok(ClientIp(ip))
    }
}

/// A link resolved to its delivery and recipient, cloned out of the model.
pub(crate) struct Resolved {
    pub token_hash: EventHash,
    pub delivery: Delivery,
    pub recipient: Recipient,
}

/// Looks up a link token; `None` for an unknown one.
pub(crate) fn resolve(core: &Core, token: &str) -> Option<Resolved> {
    let token_hash = consign_notifier::token_hash(token);
    let model = core.model();
    let (delivery, recipient) = model.by_token(&token_hash)?;
    Some(Resolved {
        token_hash,
        delivery: delivery.clone(),
        recipient: recipient.clone(),
    })
}

/// Records an event caused by a recipient on the delivery's chain.
pub(crate) async fn record(core: &Core, resolved: &Resolved, event: Event) -> Result<(), ApiError> {
    let actor = Actor::Recipient {
        delivery: resolved.delivery.id,
        recipient: resolved.recipient.id,
    };
    let request = AppendRequest::new(
        core.chain_of(resolved.delivery.id),
        vec![NewEvent { actor, event }],
    );
    core.append(request).await.map(|_| ())
}

/// Records a refusal and returns its reason.
async fn deny(core: &Core, resolved: &Resolved, reason: DenialReason) -> Result<(), ApiError> {
    let event = Event::AccessDenied(AccessDenied {
        delivery: resolved.delivery.id,
        recipient: resolved.recipient.id,
        reason,
    });
    tracing::info!(delivery = %resolved.delivery.id, recipient = %resolved.recipient.id, ?reason, "access denied");
    record(core, resolved, event).await
}

/// Returns the status page for a delivery that is not available, after recording the
/// refusal, or `None` when it is available.
pub(crate) async fn unavailable(
    core: &Core,
    resolved: &Resolved,
) -> Result<Option<Response>, ApiError> {
    let delivery = &resolved.delivery;
    let (page, reason) = match delivery.availability(core.clock.now()) {
        Availability::Available => return Ok(None),
        Availability::NotYetReleased => {
            let release_at = delivery
                .options
                .deliver_at
                .as_ref()
                .map_or(delivery.submitted.time, |time| time.instant);
            (
                StatusPage::NotYetReleased {
                    release_at: to_jiff(release_at),
                },
                DenialReason::NotYetReleased,
            )
        }
        Availability::Expired => {
            let expired_at = delivery
                .options
                .expires_at
                .as_ref()
                .map(|time| time.instant)
                .or(delivery.expired_at);
            (
                StatusPage::Expired {
                    expired_at: expired_at.map(to_jiff),
                },
                DenialReason::Expired,
            )
        }
        Availability::Withdrawn => (StatusPage::Withdrawn, DenialReason::Withdrawn),
        Availability::Purged => (
            StatusPage::Expired { expired_at: None },
            DenialReason::Purged,
        ),
    };
    deny(core, resolved, reason).await?;
    Ok(Some(page_response(
        page.status_code(),
        html::status_page(&page),
    )))
}

/// Returns the page for a link that names no delivery.
pub(crate) fn unknown_link() -> Response {
    let page = StatusPage::UnknownLink;
    page_response(page.status_code(), html::status_page(&page))
}

pub(crate) fn to_jiff(time: Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(time.as_micros()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Reads the grant cookie and checks it against the recipient.
pub(crate) fn has_grant(core: &Core, headers: &HeaderMap, resolved: &Resolved) -> bool {
    cookie_values(headers, grants::GRANT_COOKIE).any(|value| {
        core.grants
            .allows(value, resolved.delivery.id, resolved.recipient.id)
    })
}

/// `GET /d/{token}`: the delivery page, the password form, or a status page. A `HEAD`
/// request gets the same response without its body, and records no opening.
pub async fn page(
    State(core): State<Arc<Core>>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(resolved) = resolve(&core, &token) else {
        return Ok(unknown_link());
    };
    if let Some(response) = unavailable(&core, &resolved).await? {
        return Ok(response);
    }
    if resolved.delivery.options.access_password_hash.is_some()
        && !has_grant(&core, &headers, &resolved)
    {
        return Ok(page_response(
            StatusCode::OK,
            html::password_page(&PasswordPage::default()),
        ));
    }

    if method != Method::HEAD {
        let event = Event::DeliveryOpened(DeliveryOpened {
            delivery: resolved.delivery.id,
            recipient: resolved.recipient.id,
        });
        record(&core, &resolved, event).await?;
    }
    Ok(page_response(
        StatusCode::OK,
        delivery_page(&core, &resolved, &token),
    ))
}

fn delivery_page(core: &Core, resolved: &Resolved, token: &str) -> String {
    let model = core.model();
    let sender = model.account(resolved.delivery.sender).map_or_else(
        || "the sender".to_owned(),
        |account| account.display_name.clone(),
    );
    let documents: Vec<_> = resolved
        .delivery
        .documents
        .iter()
        .filter_map(|id| model.document(*id))
        .map(|document| {
            (
                document.file_name.clone(),
                document.size,
                document.content_hash.to_string(),
                format!("/d/{token}/documents/{}", document.id),
            )
        })
        .collect();
    drop(model);

    let rows: Vec<DocumentRow<'_>> = documents
        .iter()
        .map(|(name, size, hash, href)| DocumentRow {
            name,
            size: *size,
            blake3_hex: hash,
            href,
        })
        .collect();
    html::delivery_page(&DeliveryPage {
        sender_name: &sender,
        subject: &resolved.delivery.subject,
        message: &resolved.delivery.message,
        documents: &rows,
        expires_at: resolved
            .delivery
            .options
            .expires_at
            .as_ref()
            .map(|time| to_jiff(time.instant)),
    })
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    password: String,
}

/// `POST /d/{token}`: checks the access password under the guess throttle.
///
/// The form needs no separate CSRF token: its URL contains the 256-bit link token,
/// which another site cannot know. A browser's `Sec-Fetch-Site: cross-site` is
/// rejected as well, so a page that learned a link still cannot post through a
/// recipient's browser.
pub async fn password(
    State(core): State<Arc<Core>>,
    Path(token): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    if cross_site {
        tracing::warn!(%ip, "password form rejected: posted from another site");
        let page = StatusPage::CrossSite;
        return Ok(page_response(page.status_code(), html::status_page(&page)));
    }
    let Some(resolved) = resolve(&core, &token) else {
        return Ok(unknown_link());
    };
    if let Some(response) = unavailable(&core, &resolved).await? {
        return Ok(response);
    }
    let Some(phc) = resolved.delivery.options.access_password_hash.clone() else {
        return Ok(see_other(&token, None));
    };
    // A body that is no form as the page sends it (a field twice, JSON, too large) gets
    // the form again with the reason, not the framework's plain text.
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            tracing::info!(%ip, error = %rejection.body_text(), "password form unreadable");
            let page = PasswordPage {
                error: Some(
                    "The form could not be read. Enter the password below and send it again.",
                ),
                retry_after_seconds: None,
            };
            return Ok(page_response(
                rejection.status(),
                html::password_page(&page),
            ));
        }
    };

    let key = ThrottleKey::new(resolved.token_hash, ip);
    if let Err(retry) = core.throttle.check(key, Instant::now()) {
        // A throttled guess is never checked, so it is logged but not recorded: each
        // one would otherwise add an event that anyone with the link can multiply.
        tracing::info!(delivery = %resolved.delivery.id, recipient = %resolved.recipient.id, %ip, "password guess throttled");
        let page = PasswordPage {
            error: Some("Too many wrong passwords from this network."),
            retry_after_seconds: Some(retry.seconds()),
        };
        let mut response = page_response(StatusCode::TOO_MANY_REQUESTS, html::password_page(&page));
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry.seconds()));
        return Ok(response);
    }

    let right = form.password.len() <= passwords::MAX_PASSWORD_BYTES
        && passwords::verify(form.password, Some(phc)).await;
    if !right {
        core.throttle.record_failure(key, Instant::now());
        deny(&core, &resolved, DenialReason::WrongPassword).await?;
        let page = PasswordPage {
            error: Some("Wrong password. Ask the sender if you do not have it."),
            retry_after_seconds: None,
        };
        return Ok(page_response(
            StatusCode::UNAUTHORIZED,
            html::password_page(&page),
        ));
    }

    core.throttle.record_success(key);
    let grant = core
        .grants
        .issue(resolved.delivery.id, resolved.recipient.id);
    let cookie = format!(
        "{}={grant}; Path=/d/{token}; HttpOnly; SameSite=Lax; Max-Age={}{}",
        grants::GRANT_COOKIE,
        grants::GRANT_LIFETIME.as_secs(),
        if core.secure_cookies { "; Secure" } else { "" }
    );
    Ok(see_other(&token, Some(cookie)))
}

fn see_other(token: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&format!("/d/{token}")) {
        headers.insert(LOCATION, location);
    }
    if let Some(cookie) = cookie.and_then(|cookie| HeaderValue::from_str(&cookie).ok()) {
        headers.insert(SET_COOKIE, cookie);
    }
    set_private_headers(headers);
    response
}
