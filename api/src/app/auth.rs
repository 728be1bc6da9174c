//! Login, logout and the caller of each request, with its role.
//!
//! The API takes the session token as `Authorization: Bearer TOKEN`; pages take it from
//! the `consign_session` cookie (HttpOnly, SameSite=Strict, and Secure over HTTPS).

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use consign_projections::model::Account;
use consign_schemas::events::Role;
use serde::Deserialize;
use serde_json::json;

use super::body::ApiJson;
use super::core::Core;
use super::error::ApiError;
use super::passwords;
use super::recipient::ClientIp;
use super::sessions::SESSION_LIFETIME;
use super::tokens::cookie_values;
use crate::web::throttle::ThrottleKey;
use consign_projections::model::Model;
use std::time::Instant;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "consign_session";

/// The logged-in account that sent a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: Account,
}

impl Caller {
    /// Checks that the caller has one of `roles`.
    ///
    /// # Errors
    ///
    /// [`ApiError::Forbidden`] naming the first allowed role.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.account.role) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|role| role_name(*role)).collect();
        let needed = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.concat(),
        };
        Err(ApiError::Forbidden {
            needed,
            actual: role_name(self.account.role).to_owned(),
        })
    }
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Sender => "sender",
        Role::Billing => "billing",
        Role::Auditor => "auditor",
    }
}

impl FromRequestParts<Arc<Core>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, core: &Arc<Core>) -> Result<Self, ApiError> {
        // Authorization carries one credential. A proxy and this server could each read
        // another of two headers, so a request with two is rejected.
        let headers = parts.headers.get_all(AUTHORIZATION).iter().count();
        if headers > 1 {
            return Err(ApiError::bad_request(format!(
                "the request has {headers} Authorization headers; send one, as \
                 `Authorization: Bearer TOKEN`"
            )));
        }
        let token = session_token(&parts.headers).ok_or(ApiError::Unauthenticated)?;
        // A browser sends the cookie with requests that another site starts. The pages
        // check a form token for those, so the JSON API takes the bearer header instead.
        let from_cookie = !parts.headers.contains_key(AUTHORIZATION);
        if from_cookie && !parts.method.is_safe() {
            return Err(ApiError::CookieCannotWrite);
        }
        let account = core
            .sessions
            .account(&token, &core.model())
            .ok_or(ApiError::Unauthenticated)?;
        Ok(Caller { account })
    }
}

/// Reads the session token from the bearer header, or else from the session cookie.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    {
        // The scheme name is case-insensitive (RFC 9110, section 11.1).
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    cookie_values(headers, SESSION_COOKIE)
        .next()
        .map(str::to_owned)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub login: String,
    pub password: String,
}

/// `POST /api/login`: checks the password and opens a session.
pub async fn login(
    State(core): State<Arc<Core>>,
    ClientIp(ip): ClientIp,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let account = check_credentials(&core, ip, &request.login, request.password).await?;
    let token = core.sessions.open(&account);
    tracing::info!(account = %account.id, role = role_name(account.role), "login");
    let body = Json(json!({
        "token": token,
        "account": account.id,
        "login": account.login,
        "role": role_name(account.role),
        "expires_in_seconds": SESSION_LIFETIME.as_secs(),
    }));
    let mut response = body.into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&session_cookie(&core, &token)).expect("the cookie is ASCII"),
    );
    Ok(response)
}

/// Checks a login and password under the guess throttle and returns the account.
///
/// # Errors
///
/// [`ApiError::BadCredentials`] for an unknown login or a wrong password, and
/// [`ApiError::Throttled`] after too many failures from the client's network.
pub(crate) async fn check_credentials(
    core: &Core,
    ip: std::net::IpAddr,
    login: &str,
    password: String,
) -> Result<Account, ApiError> {
    let shown: String = login.chars().take(64).collect();
    if password.len() > passwords::MAX_PASSWORD_BYTES || login.len() > 256 {
        return Err(ApiError::BadCredentials);
    }

    // Guesses are throttled per login and client network, as recipient passwords are,
    // so a guesser elsewhere cannot lock the account's owner out.
    let key = ThrottleKey::new(login_throttle_hash(login), ip);
    if let Err(retry) = core.throttle.check(key, Instant::now()) {
        tracing::info!(login = %shown.escape_debug(), %ip, "login throttled");
        return Err(ApiError::Throttled {
            retry_after_seconds: retry.seconds(),
        });
    }
    let account = core.model().account_by_login(login).cloned();
    let phc = account
        .as_ref()
        .map(|account| account.password_hash.clone());
    if !passwords::verify(password, phc).await {
        core.throttle.record_failure(key, Instant::now());
        tracing::info!(login = %shown.escape_debug(), %ip, "login failed");
        return Err(ApiError::BadCredentials);
    }
    core.throttle.record_success(key);
    Ok(account.expect("a verified password belongs to an account"))
}

/// Returns the `Set-Cookie` value that carries a session token: HttpOnly,
/// SameSite=Strict, and Secure when the server runs behind HTTPS.
pub(crate) fn session_cookie(core: &Core, token: &str) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if core.secure_cookies { "; Secure" } else { "" }
    )
}

/// Returns the `Set-Cookie` value that removes the session cookie.
pub(crate) fn expired_session_cookie(core: &Core) -> String {
    format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if core.secure_cookies { "; Secure" } else { "" }
    )
}

/// Returns the throttle key hash of a login, apart from every link token hash.
fn login_throttle_hash(login: &str) -> consign_schemas::Hash32 {
    let key = Model::login_key(login);
    consign_schemas::Hash32::from_bytes(blake3::derive_key(
        "consign 2026-12-04 login throttle v1",
        key.as_bytes(),
    ))
}

/// `POST /api/logout`: ends the caller's session. Like every route but login and the
/// API description, it needs a live session, so a request without one gets 401.
pub async fn logout(
    State(core): State<Arc<Core>>,
    _caller: Caller,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = session_token(&headers) {
        core.sessions.close(&token);
    }
    let cookie = expired_session_cookie(&core);
    let mut response = axum::http::StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("the cookie is ASCII"),
    );
    response
}

/// `GET /api/me`: the caller's account.
pub async fn me(caller: Caller) -> Json<serde_json::Value> {
    Json(json!({
        "account": caller.account.id,
        "login": caller.account.login,
        "display_name": caller.account.display_name,
        "email": caller.account.email,
        "role": role_name(caller.account.role),
    }))
}
