//! The compose page: recipients and mailing lists, subject, message, documents and
//! every delivery option, submitted as one multipart form.
//!
//! The form sends its text fields before the file input, so the handler reads and
//! checks the form token and every option with the API's own [`plan`] before it
//! stores a byte of any document. The documents then stream into the blob store and
//! the delivery is recorded exactly as `POST /api/deliveries` records it. A hidden
//! random key makes a repeated submission of the same form (a reload, a double click)
//! return the first delivery instead of sending again.

use std::sync::Arc;

use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{Multipart, Query, State};
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use consign_schemas::IdempotencyKey;
use consign_schemas::events::Role;
use serde::Deserialize;
use serde_json::json;

use super::compose_form::render;
use super::form::{FormError, parse_recipient_lines};
use super::session::{PageCaller, PageError, see_other};
use crate::app::request::{Plan, plan};
use crate::app::submit::{Upload, discard, next_field, outcome_unknown, record, store_document};
use crate::app::{ApiError, Core};

/// Maximum size of all text fields of the form together.
const MAX_TEXT_BYTES: usize = 1024 * 1024;

/// JSON field names of the submission metadata and the inputs that show their errors.
const INPUTS: &[(&str, &str)] = &[
    ("recipients", "recipients"),
    ("lists", "lists"),
    ("max_recipients", "recipients"),
    ("subject", "subject"),
    ("message", "message"),
    ("password", "password"),
    ("priority", "priority"),
    ("deliver_at", "deliver_at"),
    ("expires_at", "expires_at"),
    ("time_zone", "time_zone"),
    ("billing_code", "billing_code"),
    ("require_tls", "require_tls"),
    ("documents", "documents"),
    ("document", "documents"),
    ("max_documents", "documents"),
    ("max_document_bytes", "documents"),
];

/// The text fields of the compose form, as entered.
#[derive(Debug, Default)]
pub(super) struct ComposeFields {
    pub(super) csrf: Option<String>,
    pub(super) idempotency: String,
    pub(super) recipients: String,
    pub(super) lists: Vec<String>,
    pub(super) subject: String,
    pub(super) message: String,
    pub(super) password: String,
    pub(super) priority: String,
    pub(super) deliver_at: String,
    pub(super) expires_at: String,
    pub(super) time_zone: String,
    pub(super) billing_code: String,
    pub(super) encrypt: bool,
    pub(super) receipt: bool,
    pub(super) postmark: bool,
    pub(super) require_tls: bool,
}

impl ComposeFields {
    fn set(&mut self, name: &str, value: String) {
        let flag = value == "true";
        match name {
            "csrf" => self.csrf = Some(value),
            "idempotency" => self.idempotency = value,
            "recipients" => self.recipients = value,
            "lists" => self.lists.push(value),
            "subject" => self.subject = value,
            "message" => self.message = value,
            "password" => self.password = value,
            "priority" => self.priority = value,
            "deliver_at" => self.deliver_at = value,
            "expires_at" => self.expires_at = value,
            "time_zone" => self.time_zone = value,
            "billing_code" => self.billing_code = value,
            "encrypt" => self.encrypt = flag,
            "receipt" => self.receipt = flag,
            "postmark" => self.postmark = flag,
            "require_tls" => self.require_tls = flag,
            // Unknown fields are ignored, as browsers may add their own.
            _ => {}
        }
    }

    /// Builds the metadata JSON of `POST /api/deliveries` from the form.
    fn metadata(&self) -> serde_json::Value {
        let optional = |text: &str| {
            let text = text.trim();
            (!text.is_empty()).then(|| text.to_owned())
        };
        let recipients: Vec<serde_json::Value> = parse_recipient_lines(&self.recipients)
            .into_iter()
            .map(|input| match input {
                crate::app::recipients::RecipientInput::Address(address) => json!(address),
                crate::app::recipients::RecipientInput::Named { address, name } => {
                    json!({ "address": address, "name": name })
                }
            })
            .collect();
        json!({
            "recipients": recipients,
            "lists": self.lists,
            "subject": self.subject,
            "message": self.message,
            "priority": optional(&self.priority),
            "encrypt": self.encrypt,
            "receipt": self.receipt,
            "expires_at": optional(&self.expires_at),
            "deliver_at": optional(&self.deliver_at),
            "time_zone": optional(&self.time_zone),
            "billing_code": optional(&self.billing_code),
            // An empty password field means no password, as leaving it out does.
            "password": (!self.password.is_empty()).then(|| self.password.clone()),
            "postmark": self.postmark,
            "require_tls": self.require_tls,
        })
    }
}

/// Query of the compose page.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct ComposeQuery {
    /// A mailing list to preselect, from the mailing list page.
    list: Option<String>,
}

/// `GET /compose`: an empty form.
pub(crate) async fn form_page(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Query(query): Query<ComposeQuery>,
) -> Result<Response, PageError> {
    caller.require(&[Role::Sender])?;
    let mut fields = ComposeFields {
        receipt: true,
        ..ComposeFields::default()
    };
    fields.lists.extend(query.list);
    Ok(render(&core, &caller, &fields, None, StatusCode::OK))
}

/// `POST /compose`: checks the form, stores the documents and records the delivery,
/// then redirects to the delivery's page.
pub(crate) async fn submit(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    body: Result<Multipart, MultipartRejection>,
) -> Response {
    let mut fields = ComposeFields::default();
    let outcome = submit_checked(&core, &caller, body, &mut fields).await;
    let mut response = match outcome {
        Ok(response) => return response,
        Err(SubmitError::Page(error)) => axum::response::IntoResponse::into_response(error),
        Err(SubmitError::Form(error, status)) => {
            render(&core, &caller, &fields, Some(&error), status)
        }
    };
    // The rest of a rejected body is never read, so the connection cannot carry another
    // request.
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

enum SubmitError {
    /// Shown as an error page: a wrong role or form token.
    Page(PageError),
    /// Shown on the form again with the entered values.
    Form(FormError, StatusCode),
}

impl From<ApiError> for SubmitError {
    fn from(error: ApiError) -> Self {
        let status = error.status();
        SubmitError::Form(FormError::from_api(&error, INPUTS), status)
    }
}

async fn submit_checked(
    core: &Arc<Core>,
    caller: &PageCaller,
    body: Result<Multipart, MultipartRejection>,
    fields: &mut ComposeFields,
) -> Result<Response, SubmitError> {
    caller.require(&[Role::Sender]).map_err(SubmitError::Page)?;
    let mut multipart = crate::app::body::multipart(body)?;

    let mut uploads: Vec<Upload> = Vec::new();
    let stored = read_form(core, caller, &mut multipart, fields, &mut uploads).await;
    let idempotency = idempotency_key(caller, &fields.idempotency);
    let mut pending = false;
    let outcome = match stored {
        Ok(plan) => {
            let recorded = record(core, &caller.caller, plan, &uploads, idempotency).await;
            pending = matches!(&recorded, Err(error) if outcome_unknown(error));
            recorded.map_err(SubmitError::from)
        }
        Err(error) => Err(error),
    };
    if !pending && (outcome.is_err() || matches!(outcome, Ok((_, true)))) {
        discard(core, &uploads).await;
    }
    let (body, _) = outcome?;
    let delivery = body["delivery"].as_str().unwrap_or_default();
    Ok(see_other(&format!("/sent/{delivery}?submitted=1")))
}

/// Reads the text fields into `fields`, checks the form token and the submission at
/// the first document part, then stores every document part. Returns the checked
/// submission.
async fn read_form(
    core: &Core,
    caller: &PageCaller,
    multipart: &mut Multipart,
    fields: &mut ComposeFields,
    uploads: &mut Vec<Upload>,
) -> Result<Plan, SubmitError> {
    let mut plan: Option<Plan> = None;
    let mut text_bytes = 0;
    while let Some(field) = next_field(multipart).await? {
        if plan.is_none() && field.name() != Some("document") {
            let name = field.name().unwrap_or("").to_owned();
            let value = read_text(field, &mut text_bytes).await?;
            fields.set(&name, value);
            continue;
        }
        if field.name() != Some("document") {
            let name = field.name().unwrap_or("").to_owned();
            return Err(ApiError::BadRequest {
                field: Some("documents".to_owned()),
                message: format!("the form sent the field {name:?} after the documents; send every text field before the files"),
            }
            .into());
        }
        let checked = match plan {
            Some(ref checked) => checked,
            None => plan.insert(check_fields(core, caller, fields)?),
        };
        store_if_chosen(core, checked, field, uploads).await?;
    }
    let plan = match plan {
        Some(plan) => plan,
        None => check_fields(core, caller, fields)?,
    };
    if uploads.is_empty() {
        return Err(ApiError::invalid(
            "documents",
            "no document: choose at least one file under Documents",
        )
        .into());
    }
    Ok(plan)
}

/// Checks the form token, then the submission with the API's [`plan`].
fn check_fields(
    core: &Core,
    caller: &PageCaller,
    fields: &ComposeFields,
) -> Result<Plan, SubmitError> {
    caller
        .check_csrf(fields.csrf.as_deref())
        .map_err(SubmitError::Page)?;
    let model = core.model();
    let json = fields.metadata().to_string();
    let checked = plan(
        json.as_bytes(),
        &model,
        caller.caller.account.id,
        &core.limits,
        &core.transport,
        core.clock.now(),
    )?;
    Ok(checked)
}

/// Stores a document part, skipping the empty part a browser sends for a file input
/// with no file chosen.
async fn store_if_chosen(
    core: &Core,
    plan: &Plan,
    field: Field<'_>,
    uploads: &mut Vec<Upload>,
) -> Result<(), ApiError> {
    if field.name() == Some("document") && field.file_name().is_some_and(str::is_empty) {
        return Ok(());
    }
    store_document(core, plan, field, uploads).await
}

/// Reads a text field, counting its bytes against [`MAX_TEXT_BYTES`].
async fn read_text(mut field: Field<'_>, total: &mut usize) -> Result<String, ApiError> {
    let name = field.name().unwrap_or("").to_owned();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|error| ApiError::BadRequest {
        field: Some(name.clone()),
        message: format!("the form was cut off while sending {name}: {error}"),
    })? {
        *total += chunk.len();
        if *total > MAX_TEXT_BYTES {
            return Err(ApiError::LimitExceeded {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                limit: "form",
                message: format!("the text fields are larger than {MAX_TEXT_BYTES} bytes together"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::invalid(name.clone(), format!("{name} is not valid UTF-8 text")))
}

/// Returns the ledger idempotency key of the form's hidden key, scoped to the caller
/// as the API's `Idempotency-Key` header is.
fn idempotency_key(caller: &PageCaller, text: &str) -> Option<IdempotencyKey> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if !valid {
        return None;
    }
    IdempotencyKey::new(format!("submit/{}/page-{text}", caller.caller.account.id)).ok()
}
