//! The HTTP application: the JSON API for senders and administrators, and the recipient
//! pages, over one shared [`Core`].
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `POST /api/login`, `POST /api/logout`, `GET /api/me` | anyone, then the caller | sessions |
//! | `POST /api/accounts` | admin | open an account |
//! | `GET /api/lists`, `PUT, DELETE /api/lists/{name}` | sender | mailing lists |
//! | `POST /api/deliveries` | sender | submit (multipart) |
//! | `GET /api/deliveries`, `GET /api/deliveries/{id}` | sender (own), admin, auditor | status |
//! | `POST /api/deliveries/{id}/withdraw` | sender (own) | withdraw |
//! | `GET /api/deliveries/{id}/postmark` | sender (own), admin, auditor | postmark receipt, JSON or HTML page |
//! | `GET /.well-known/consign-postmark-keys.json` | anyone | postmark public keys |
//! | `GET /api/tracking/deliveries[/{id}[/events]]` | sender (own), admin, auditor | tracking view, live stream |
//! | `GET /api/billing/usage` | billing, admin | usage and amounts, JSON or CSV, as of a position |
//! | `GET /api/audit/deliveries/{id}`, `GET /api/audit/search` | auditor, admin | history with hashes |
//! | `GET /api/views/status` | admin, auditor | each view's positions, lag and digest |
//! | `GET /api/openapi.json` | anyone | the API description |
//! | `GET, POST /d/{token}`, `GET /d/{token}/documents/{id}` | recipient with the link | pages and downloads |
//!
//! The HTML pages for senders, billing and auditors are in [`crate::pages`].

pub(crate) mod accounts;
pub(crate) mod auth;
pub(crate) mod body;
mod core;
pub(crate) mod credentials;
pub(crate) mod deliveries;
mod error;
mod evidence;
pub(crate) mod history;
mod limits;
mod media_type;
mod names;
mod openapi;
mod part_name;
mod passwords;
pub mod postmark;
pub(crate) mod recipient;
pub(crate) mod recipients;
pub(crate) mod request;
pub mod scheduler;
mod sessions;
pub(crate) mod submit;
mod text;
pub(crate) mod tokens;
pub(crate) mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

pub use accounts::{ACCOUNT_CHAIN, CLI_ACTOR, NewAccount, account_request, login_taken};
pub use core::{Core, CoreParts};
pub use credentials::credential_request;
pub use error::ApiError;
pub use limits::{Limits, MailTransport, Transport};
pub use passwords::{
    check_account_password, hash_blocking as hash_password,
    verify_blocking as verify_password_blocking,
};

/// Builds the router over `core`.
pub fn router(core: Arc<Core>) -> Router {
    let api = Router::new()
        .route("/login", post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/me", get(auth::me))
        .route("/me/password", post(credentials::change_own))
        .route("/accounts", post(accounts::create))
        .route("/accounts/{login}/password", post(credentials::reset))
        .route("/lists", get(accounts::get_lists))
        .route(
            "/lists/{name}",
            put(accounts::put_list).delete(accounts::delete_list),
        )
        .route(
            "/deliveries",
            post(submit::submit)
                .layer(DefaultBodyLimit::disable())
                .get(deliveries::list),
        )
        .route("/deliveries/{id}", get(deliveries::get))
        .route("/deliveries/{id}/withdraw", post(deliveries::withdraw))
        .route("/deliveries/{id}/postmark", get(postmark::receipt))
        .route("/openapi.json", get(openapi::document))
        .route("/tracking/deliveries", get(views::list))
        .route("/tracking/deliveries/{id}", get(views::get))
        .route("/tracking/deliveries/{id}/events", get(views::stream))
        .route("/billing/usage", get(views::usage))
        .route("/audit/deliveries/{id}", get(views::history))
        .route("/audit/deliveries/{id}/evidence", get(evidence::bundle))
        .route(
            "/ledger/chains/{chain}/checkpoint",
            get(evidence::checkpoint),
        )
        .route(
            "/ledger/chains/{chain}/proofs/inclusion",
            get(evidence::inclusion),
        )
        .route(
            "/ledger/chains/{chain}/proofs/consistency",
            get(evidence::consistency),
        )
        .route("/audit/search", get(views::search))
        .route("/views/status", get(views::status));

    let api = api
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(map_response(with_api_headers));
    Router::new()
        .nest("/api", api)
        .route(
            "/.well-known/consign-postmark-keys.json",
            get(postmark::public_keys),
        )
        .route("/d/{token}", get(recipient::page).post(recipient::password))
        .route("/d/{token}/documents/{document}", get(recipient::download))
        .merge(crate::pages::router())
        .layer(from_fn(undecodable_path))
        .with_state(core)
}

/// Returns the response to a request whose path does not percent-decode to UTF-8
/// text, which no route's parameters take: a JSON error under `/api`, the
/// unknown-link page under `/d/`, and 404 elsewhere.
async fn undecodable_path(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .is_ok()
    {
        return next.run(request).await;
    }
    tracing::debug!(path, "request path is not UTF-8 text");
    if path.starts_with("/api/") {
        let error = ApiError::bad_request(format!(
            "the path {path} has percent-encoded bytes that are not UTF-8 text; encode ids \
             and names as UTF-8 before percent-encoding them"
        ));
        return with_api_headers(error.into_response()).await;
    }
    if path.starts_with("/d/") {
        return recipient::unknown_link();
    }
    StatusCode::NOT_FOUND.into_response()
}

/// Sets the headers that keep a browser from reading an API response as another type
/// or showing it in a frame, unless the handler set them.
async fn with_api_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
    ] {
        if !headers.contains_key(name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

/// Returns the usual JSON error for an unknown `/api` path. It names the path as the
/// client sent it, because the nested router receives it without `/api`.
async fn no_route(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!("route {} (see /api/openapi.json)", uri.path()))
}

/// Returns the usual JSON error for a known `/api` path with a wrong method.
async fn method_not_allowed(method: axum::http::Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
