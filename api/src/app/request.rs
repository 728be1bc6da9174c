//! The metadata part of a submission: recipients, texts and options, checked before
//! any document is stored.

use consign_projections::model::Model;
use consign_schemas::events::{Priority, ZonedTime};
use consign_schemas::{AccountId, Timestamp};
use serde::Deserialize;

use super::error::ApiError;
use super::limits::{Limits, MailTransport, Transport};
use super::names::quoted;
use super::recipients::{RecipientInput, ResolvedRecipient, resolve};
use super::text::{check_line, check_text, is_blank};
use crate::zoned::{TimeInputError, parse_sender_time};

/// Minimum length of an access password, in characters.
pub const MIN_ACCESS_PASSWORD_CHARS: usize = 8;

/// The JSON of the `metadata` part, as clients send it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmissionMetadata {
    #[serde(default)]
    pub recipients: Vec<RecipientInput>,
    #[serde(default)]
    pub lists: Vec<String>,
    pub subject: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub encrypt: bool,
    #[serde(default)]
    pub receipt: bool,
    /// A date and time: RFC 3339 with an offset, or local time with `time_zone`.
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub deliver_at: Option<String>,
    /// IANA zone of `expires_at` and `deliver_at`, such as `Europe/Paris`.
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub billing_code: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub postmark: bool,
    #[serde(default)]
    pub require_tls: bool,
}

/// A checked submission, ready for its documents.
#[derive(Debug)]
pub struct Plan {
    pub recipients: Vec<ResolvedRecipient>,
    pub subject: String,
    pub message: String,
    pub priority: Priority,
    pub encrypt: bool,
    pub receipt: bool,
    pub expires_at: Option<ZonedTime>,
    pub deliver_at: Option<ZonedTime>,
    pub billing_code: Option<String>,
    pub password: Option<String>,
    pub postmark: bool,
    pub require_tls: bool,
}

/// Parses and checks the metadata JSON against the model and the limits at `now`.
///
/// # Errors
///
/// [`ApiError::BadRequest`] for JSON that does not parse, and [`ApiError::Invalid`] or
/// [`ApiError::LimitExceeded`] naming the first field that is wrong.
pub fn plan(
    json: &[u8],
    model: &Model,
    sender: AccountId,
    limits: &Limits,
    transport: &Transport,
    now: Timestamp,
) -> Result<Plan, ApiError> {
    let metadata = parse_metadata(json)?;

    check_line("subject", &metadata.subject, limits.max_subject_chars)?;
    if is_blank(&metadata.subject) {
        return Err(ApiError::invalid(
            "subject",
            "subject is empty; give the delivery a subject",
        ));
    }
    check_text("message", &metadata.message, limits.max_message_chars)?;
    if let Some(code) = &metadata.billing_code {
        check_line("billing_code", code, 64)?;
    }
    if let Some(password) = &metadata.password {
        check_access_password(password)?;
    }
    if metadata.require_tls {
        check_tls_available(transport)?;
    }
    let zone = metadata.time_zone.as_deref();
    if let Some(zone) = zone {
        crate::zoned::lookup_zone(zone)
            .map_err(|error| ApiError::invalid("time_zone", format!("time_zone: {error}")))?;
    }
    let deliver_at = parse_future("deliver_at", metadata.deliver_at.as_deref(), zone, now)?;
    let expires_at = parse_future("expires_at", metadata.expires_at.as_deref(), zone, now)?;
    if let (Some(deliver), Some(expires)) = (&deliver_at, &expires_at)
        && expires.instant <= deliver.instant
    {
        return Err(ApiError::invalid(
            "expires_at",
            "expires_at is not after deliver_at; the documents would never be available",
        ));
    }
    let recipients = resolve(
        model,
        sender,
        &metadata.recipients,
        &metadata.lists,
        limits.max_recipients,
    )?;

    Ok(Plan {
        recipients,
        subject: metadata.subject.trim().to_owned(),
        message: metadata.message,
        priority: metadata.priority.unwrap_or(Priority::Normal),
        encrypt: metadata.encrypt,
        receipt: metadata.receipt,
        expires_at,
        deliver_at,
        billing_code: metadata
            .billing_code
            .map(|code| code.trim().to_owned())
            .filter(|code| !code.is_empty()),
        password: metadata.password,
        postmark: metadata.postmark,
        require_tls: metadata.require_tls,
    })
}

/// Checks that this server can honour `require_tls`: e-mail over TLS (or into a local
/// outbox) and https links.
fn check_tls_available(transport: &Transport) -> Result<(), ApiError> {
    if transport.mail == MailTransport::Plain {
        return Err(ApiError::invalid(
            "require_tls",
            "require_tls is not available: this server sends e-mail over SMTP without TLS; \
             the operator must configure --smtp with ?tls=starttls or smtps://",
        ));
    }
    if !transport.links_https {
        return Err(ApiError::invalid(
            "require_tls",
            "require_tls is not available: this server's links are not https; the operator \
             must serve TLS (--tls-cert, --tls-key) or set an https --public-url",
        ));
    }
    Ok(())
}

/// Parses the metadata JSON. A wrong value in a known field is that field's error
/// (422). Any other failure, such as JSON that does not parse or an unknown field, is
/// an error of the whole metadata part (400).
fn parse_metadata(json: &[u8]) -> Result<SubmissionMetadata, ApiError> {
    super::body::parse_json(json, |reason| ApiError::BadRequest {
        field: Some("metadata".to_owned()),
        message: format!("the metadata part is not valid submission JSON: {reason}"),
    })
}

fn check_access_password(password: &str) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if password.trim().is_empty() {
        return Err(ApiError::invalid(
            "password",
            "the access password is blank; choose a real one, or leave it out for no password",
        ));
    }
    if chars < MIN_ACCESS_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            "password",
            format!(
                "the access password is too short ({chars} of at least \
                 {MIN_ACCESS_PASSWORD_CHARS} characters); choose a longer one, or leave it out \
                 for no password"
            ),
        ));
    }
    if password.len() > super::passwords::MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(
            "password",
            format!(
                "the access password is longer than {} bytes",
                super::passwords::MAX_PASSWORD_BYTES
            ),
        ));
    }
    // An HTML password field strips line breaks from its value, and other control
    // characters cannot be typed, so a recipient could never enter such a password.
    if let Some((index, character)) = password.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(ApiError::invalid(
            "password",
            format!(
                "the access password contains the control character U+{:04X} at character \
                 {}, which a recipient cannot type; choose one of printable characters",
                u32::from(character),
                index + 1
            ),
        ));
    }
    Ok(())
}

/// Parses an optional sender time that must lie after `now`.
fn parse_future(
    field: &str,
    text: Option<&str>,
    zone: Option<&str>,
    now: Timestamp,
) -> Result<Option<ZonedTime>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let time = parse_sender_time(text, zone).map_err(|error| {
        // A zone the database does not know is the time zone's fault, not the date's.
        let field = match error {
            TimeInputError::UnknownZone { .. } => "time_zone",
            _ => field,
        };
        ApiError::invalid(field, format!("{field}: {error}"))
    })?;
    if time.instant <= now {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} {} is in the past; give a later date and time",
                quoted(text)
            ),
        ));
    }
    Ok(Some(time))
}
