//! Password changes: an account changes its own password, and an administrator sets
//! another account's. Each is a `CredentialChanged` event on the account chain, after
//! which every session opened with the old password is rejected (see
//! [`super::sessions`]).

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use consign_ledger::{AppendRequest, NewEvent};
use consign_projections::model::Account;
use consign_schemas::events::{CredentialChanged, Role};
use consign_schemas::{AccountId, Actor, Event, Position};
use serde::Deserialize;
use serde_json::json;

use super::accounts::ACCOUNT_CHAIN;
use super::auth::{Caller, check_credentials, session_cookie};
use super::body::ApiJson;
use super::core::Core;
use super::error::ApiError;
use super::names::quoted;
use super::passwords;
use super::recipient::ClientIp;
use super::sessions::SESSION_LIFETIME;

/// The body of `POST /api/me/password`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnPasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// The body of `POST /api/accounts/{login}/password`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    pub password: String,
}

/// Builds the append request that gives `account` the Argon2id hash `password_hash`.
pub fn credential_request(
    account: AccountId,
    password_hash: String,
    actor: Actor,
) -> AppendRequest {
    let event = Event::CredentialChanged(CredentialChanged {
        account,
        password_hash,
    });
    AppendRequest::new(ACCOUNT_CHAIN, vec![NewEvent { actor, event }])
}

/// `POST /api/me/password`: the caller changes its own password, giving the current
/// one. The response carries a new session token, and every earlier session of the
/// account ends.
pub async fn change_own(
    State(core): State<Arc<Core>>,
    ClientIp(ip): ClientIp,
    caller: Caller,
    body: Result<ApiJson<OwnPasswordChange>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(change) = body?;
    let (token, position) = change_own_password(&core, ip, &caller.account, change).await?;

    let mut response = Json(json!({
        "token": token,
        "position": position,
        "expires_in_seconds": SESSION_LIFETIME.as_secs(),
    }))
    .into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&session_cookie(&core, &token)).expect("the cookie is ASCII"),
    );
    Ok(response)
}

/// Changes the password of `account` after checking its current one, and returns a
/// new session token and the position of the `CredentialChanged` event. Shared by the
/// API and the account page.
///
/// # Errors
///
/// [`ApiError::Invalid`] for a wrong current password or an unfit new one,
/// [`ApiError::Throttled`] after too many wrong guesses, and append failures.
pub(crate) async fn change_own_password(
    core: &Core,
    ip: IpAddr,
    account: &Account,
    change: OwnPasswordChange,
) -> Result<(String, Position), ApiError> {
    passwords::check_account_password("new_password", &change.new_password)?;
    if change.new_password == change.current_password {
        return Err(ApiError::invalid(
            "new_password",
            "new_password is the current password; choose another",
        ));
    }

    // The current password is checked under the login throttle, so a stolen session
    // cannot be used to guess it faster than the login form allows.
    match check_credentials(core, ip, &account.login, change.current_password).await {
        Ok(_) => {}
        Err(ApiError::BadCredentials) => {
            return Err(ApiError::invalid(
                "current_password",
                "current_password is not the account's password; nothing was changed",
            ));
        }
        Err(other) => return Err(other),
    }

    let hash = passwords::hash(change.new_password).await?;
    let id = account.id;
    let appended = core
        .append(credential_request(id, hash, Actor::Account(id)))
        .await?;
    let position = appended.events[0].position;
    let changed = core
        .model()
        .account(id)
        .cloned()
        .ok_or_else(|| ApiError::Internal {
            message: format!("account {id} is missing from the model after its password change"),
        })?;
    let token = core.sessions.open(&changed);
    tracing::info!(account = %id, %position, "password changed by the account");
    Ok((token, position))
}

/// `POST /api/accounts/{login}/password`: an administrator sets the password of the
/// account with `login`, which ends every session of that account.
pub async fn reset(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(login): Path<String>,
    body: Result<ApiJson<PasswordReset>, ApiError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let ApiJson(reset) = body?;
    passwords::check_account_password("password", &reset.password)?;
    let account = core
        .model()
        .account_by_login(&login)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("account with login {}", quoted(&login))))?;

    if passwords::verify(reset.password.clone(), Some(account.password_hash.clone())).await {
        return Err(ApiError::invalid(
            "password",
            format!(
                "password is the current password of {}; choose another",
                quoted(&account.login)
            ),
        ));
    }
    let hash = passwords::hash(reset.password).await?;
    let actor = Actor::Account(caller.account.id);
    let appended = core
        .append(credential_request(account.id, hash, actor))
        .await?;
    let position = appended.events[0].position;
    tracing::info!(account = %account.id, by = %caller.account.id, %position, "password set by an administrator");
    Ok(Json(json!({
        "account": account.id,
        "login": account.login,
        "position": position,
    })))
}
