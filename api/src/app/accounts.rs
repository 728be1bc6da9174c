//! Accounts and mailing lists: the checks and events that create and change them.
//!
//! Account events are on chain 0. A login is unique because its account is appended
//! under the idempotency key `account/LOGIN`: a second account with the same login
//! (in any letter case) replays the first append, and is reported as taken.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use consign_ledger::{AppendRequest, NewEvent};
use consign_projections::model::Model;
use consign_schemas::events::{AccountOpened, Mailbox, MailingListDefined, Role};
use consign_schemas::{AccountId, Actor, ChainId, Event, IdempotencyKey, SystemComponent};
use serde::Deserialize;
use serde_json::json;
use unicode_normalization::UnicodeNormalization;

use super::auth::{Caller, role_name};
use super::body::ApiJson;
use super::core::Core;
use super::error::ApiError;
use super::names::quoted;
use super::passwords;
use super::recipients::{RecipientInput, parse_mailbox};
use super::text::{check_line, is_blank};

/// Chain of account and mailing list events.
pub const ACCOUNT_CHAIN: ChainId = ChainId::new(0);

/// Maximum members of one mailing list.
pub const MAX_LIST_MEMBERS: usize = 1_000;

/// A new account as an administrator or the command line enters it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub login: String,
    pub display_name: String,
    pub email: String,
    pub role: Role,
    pub password: String,
}

/// Checks a new account against the model and builds its append request; `password_hash`
/// is the Argon2id hash of `account.password`.
///
/// # Errors
///
/// [`ApiError::Invalid`] for a bad login, name, address or password, and
/// [`ApiError::Conflict`] for a login that is taken.
pub fn account_request(
    model: &Model,
    account: &NewAccount,
    password_hash: String,
    actor: Actor,
) -> Result<(AccountId, AppendRequest), ApiError> {
    // The login is kept in NFC form, so that a name typed with combining marks matches
    // the same name typed with precomposed letters.
    let login: String = account.login.nfc().collect();
    check_login(&login)?;
    check_line("display_name", &account.display_name, 200)?;
    if account.display_name.trim().is_empty() {
        return Err(ApiError::invalid(
            "display_name",
            "display_name is empty; give the name recipients see",
        ));
    }
    let mailbox = parse_mailbox("email", &RecipientInput::Address(account.email.clone()))?;
    passwords::check_account_password("password", &account.password)?;
    if model.account_by_login(&login).is_some() {
        return Err(login_taken(&login));
    }
    // Logins that differ only in case folding or compatibility forms, such as "ﬁle"
    // and "file" or "Straße" and "STRASSE", would look alike in the audit pages.
    if let Some(existing) = model
        .accounts()
        .find(|existing| caseless::compatibility_caseless_match_str(&existing.login, &login))
    {
        return Err(ApiError::Conflict {
            message: format!(
                "the login {} reads the same as the existing login {}; choose another",
                quoted(&login),
                quoted(&existing.login)
            ),
        });
    }

    let id = AccountId::random();
    let event = Event::AccountOpened(AccountOpened {
        account: id,
        login: login.clone(),
        display_name: account.display_name.clone(),
        email: mailbox.address,
        role: account.role,
        password_hash,
    });
    let key = IdempotencyKey::new(account_key(&login))
        .map_err(|error| ApiError::invalid("login", error.to_string()))?;
    let request = AppendRequest::new(ACCOUNT_CHAIN, vec![NewEvent { actor, event }])
        .with_idempotency_key(key);
    Ok((id, request))
}

/// Returns the idempotency key of the account with `login`: `account/` and the login's
/// skeleton, or the skeleton's BLAKE3 hash when the skeleton would make the key longer
/// than [`IdempotencyKey::MAX_LEN`] (compatibility decomposition can expand a letter
/// into many).
fn account_key(login: &str) -> String {
    let key = format!("account/{}", login_skeleton(login));
    if key.len() <= IdempotencyKey::MAX_LEN {
        return key;
    }
    format!("account/blake3-{}", blake3::hash(key.as_bytes()).to_hex())
}

/// Returns the form in which logins that read alike are equal: compatibility
/// decomposition and full case folding, as Unicode's compatibility caseless match
/// defines. For an ASCII login it is the login in lowercase, the key of earlier
/// versions. The account is appended under it, so two such logins sent at the same
/// moment cannot both be recorded.
fn login_skeleton(login: &str) -> String {
    use caseless::Caseless;

    login
        .chars()
        .nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkd()
        .collect()
}

pub fn login_taken(login: &str) -> ApiError {
    ApiError::Conflict {
        message: format!("the login {} is taken; choose another", quoted(login)),
    }
}

/// Checks a login: 1 to 64 characters of letters, digits, `.`, `_`, `-` and `@`.
fn check_login(login: &str) -> Result<(), ApiError> {
    let valid = !login.is_empty()
        && login.chars().count() <= 64
        && login
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if valid {
        return Ok(());
    }
    Err(ApiError::invalid(
        "login",
        format!(
            "invalid login {}: use 1 to 64 letters, digits, '.', '_', '-' or '@'",
            quoted(login)
        ),
    ))
}

/// `POST /api/accounts`: an administrator opens an account.
pub async fn create(
    State(core): State<Arc<Core>>,
    caller: Caller,
    body: Result<ApiJson<NewAccount>, ApiError>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(&[Role::Admin])?;
    let ApiJson(account) = body?;
    passwords::check_account_password("password", &account.password)?;
    let hash = passwords::hash(account.password.clone()).await?;
    let actor = Actor::Account(caller.account.id);
    let (id, request) = account_request(&core.model(), &account, hash, actor)?;

    let appended = core.append(request).await?;
    if appended.replayed {
        return Err(login_taken(&account.login));
    }
    tracing::info!(account = %id, role = role_name(account.role), by = %caller.account.id, "account opened");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "account": id,
            "login": account.login.nfc().collect::<String>(),
            "role": role_name(account.role),
            "position": appended.events[0].position,
        })),
    ))
}

/// Members of a mailing list, as `PUT /api/lists/{name}` takes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListBody {
    pub members: Vec<RecipientInput>,
}

/// `PUT /api/lists/{name}`: defines or replaces one of the sender's mailing lists.
pub async fn put_list(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<ApiJson<ListBody>, ApiError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Sender])?;
    let ApiJson(body) = body?;
    let (members, position) = define_list(&core, &caller, &name, &body.members).await?;
    Ok(Json(json!({
        "name": name,
        "members": members.len(),
        "position": position,
    })))
}

/// Checks a mailing list of the caller and records it, replacing any list of that name.
/// Returns the checked members and the position of the `MailingListDefined` event.
///
/// # Errors
///
/// [`ApiError::Invalid`] naming the name or the first member that is wrong, and the
/// ledger's errors.
pub(crate) async fn define_list(
    core: &Core,
    caller: &Caller,
    name: &str,
    members: &[RecipientInput],
) -> Result<(Vec<Mailbox>, consign_schemas::Position), ApiError> {
    caller.require(&[Role::Sender])?;
    check_line("name", name, 100)?;
    if is_blank(name) {
        return Err(ApiError::invalid("name", "the list name is empty"));
    }
    if members.is_empty() || members.len() > MAX_LIST_MEMBERS {
        return Err(ApiError::invalid(
            "members",
            format!(
                "a list has 1 to {MAX_LIST_MEMBERS} members; this one has {}",
                members.len()
            ),
        ));
    }
    let members = members
        .iter()
        .enumerate()
        .map(|(index, member)| parse_mailbox(&format!("members[{index}]"), member))
        .collect::<Result<Vec<Mailbox>, _>>()?;
    // A delivery merges recipients whose addresses differ only in letter case, so a list
    // cannot hold both.
    for (index, member) in members.iter().enumerate() {
        let address = member.address.to_lowercase();
        if let Some(earlier) = members[..index]
            .iter()
            .position(|other| other.address.to_lowercase() == address)
        {
            return Err(ApiError::invalid(
                format!("members[{index}]"),
                format!(
                    "members[{index}] {} is the address of members[{earlier}], letter case \
                     aside; give each member once",
                    quoted(&member.address)
                ),
            ));
        }
    }

    let event = Event::MailingListDefined(MailingListDefined {
        account: caller.account.id,
        name: name.to_owned(),
        members: members.clone(),
    });
    let actor = Actor::Account(caller.account.id);
    let appended = core
        .append(AppendRequest::new(
            ACCOUNT_CHAIN,
            vec![NewEvent { actor, event }],
        ))
        .await?;
    Ok((members, appended.events[0].position))
}

/// `DELETE /api/lists/{name}`: removes a mailing list of the caller.
pub async fn delete_list(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let position = remove_list(&core, &caller, &name).await?;
    Ok(Json(json!({
        "name": name,
        "removed": true,
        "position": position,
    })))
}

/// Removes the caller's mailing list `name` by recording it without members, and
/// returns the position of that `MailingListDefined` event. Deliveries already sent to
/// the list keep their recipients.
///
/// # Errors
///
/// [`ApiError::NotFound`] when the caller has no list of that name, and the ledger's
/// errors.
pub(crate) async fn remove_list(
    core: &Core,
    caller: &Caller,
    name: &str,
) -> Result<consign_schemas::Position, ApiError> {
    caller.require(&[Role::Sender])?;
    if core.model().mailing_list(caller.account.id, name).is_none() {
        return Err(ApiError::not_found(format!(
            "mailing list {}",
            quoted(name)
        )));
    }
    let event = Event::MailingListDefined(MailingListDefined {
        account: caller.account.id,
        name: name.to_owned(),
        members: Vec::new(),
    });
    let actor = Actor::Account(caller.account.id);
    let appended = core
        .append(AppendRequest::new(
            ACCOUNT_CHAIN,
            vec![NewEvent { actor, event }],
        ))
        .await?;
    Ok(appended.events[0].position)
}

/// `GET /api/lists`: the caller's mailing lists.
pub async fn get_lists(
    State(core): State<Arc<Core>>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Sender])?;
    let model = core.model();
    let lists: Vec<_> = model
        .mailing_lists(caller.account.id)
        .map(|(name, members)| {
            // Members read back in the form PUT takes, so a list can be saved as read.
            let members: Vec<_> = members
                .iter()
                .map(|member| json!({ "address": member.address, "name": member.display_name }))
                .collect();
            json!({ "name": name, "members": members })
        })
        .collect();
    Ok(Json(json!({ "lists": lists })))
}

/// Actor of accounts opened on the command line.
pub const CLI_ACTOR: Actor = Actor::System(SystemComponent::Administration);

#[cfg(test)]
mod tests {
    use super::account_key;

    #[test]
    fn lookalike_logins_share_a_key() {
        assert_eq!(account_key("Carol"), "account/carol");
        assert_eq!(account_key("\u{fb01}le"), account_key("file"));
        assert_eq!(account_key("Stra\u{df}e"), account_key("STRASSE"));
        assert_eq!(account_key("e\u{301}cole"), account_key("\u{e9}cole"));
        assert_ne!(account_key("file"), account_key("files"));

        // A long expansion is hashed to stay within the key's limit.
        let long = "\u{fdfa}".repeat(64);
        let key = account_key(&long);
        assert!(
            key.len() <= consign_schemas::IdempotencyKey::MAX_LEN,
            "{key}"
        );
        assert!(key.starts_with("account/blake3-"), "{key}");
    }
}
