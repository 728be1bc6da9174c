//! `POST /api/deliveries`: a multipart submission streamed into the document store and
//! recorded as one atomic append.
//!
//! The first part is `metadata` (JSON, see [`super::request`]); every later part is a
//! `document` with a file name. The metadata is checked before any document is read.
//! Each document streams through the blob store, which hashes it and, when asked,
//! encrypts it, with fixed-size buffers. On any failure every document stored so far
//! is deleted and nothing is appended. On success the `DocumentUploaded` events, the
//! `DeliverySubmitted` event and, without a delivery date, `DeliveryReleased` are
//! appended in one request to the delivery's chain.

mod replay;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::multipart::Field;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::header::{CONNECTION, CONTENT_DISPOSITION, CONTENT_TYPE, HeaderName};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use consign_ledger::{AppendRequest, NewEvent};
use consign_notifier::token_hash;
use consign_schemas::events::{
    DeliveryOptions, DeliveryReleased, DeliverySubmitted, DocumentUploaded, RecipientEntry, Role,
};
use consign_schemas::{Actor, ChainId, DeliveryId, DocumentId, Event, IdempotencyKey, RecipientId};
use serde_json::json;

use super::auth::Caller;
use super::core::Core;
use super::error::{ApiError, UNCONFIRMED};
use super::media_type::{check_media_type, check_transfer_encoding};
use super::names::{check_unique_file_name, quoted};
use super::part_name::{check_part_file_name, part_name};
use super::passwords;
use super::request::{Plan, plan};
use crate::blobs::{BlobError, BlobLimits, StoredBlob};
use replay::{Fingerprint, advice_without_key, idempotency_key, replayed_body};

/// Maximum size of the metadata part.
const MAX_METADATA_BYTES: usize = 1024 * 1024;

/// One stored document of the submission in progress.
pub(crate) struct Upload {
    id: DocumentId,
    file_name: String,
    media_type: String,
    blob: StoredBlob,
}

/// Handles a submission; see the module documentation.
///
/// A rejected submission gets `Connection: close`: the rest of its body is read for
/// at most [`DRAIN_TIME`], so the connection cannot carry another request.
pub async fn submit(
    State(core): State<Arc<Core>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Multipart, MultipartRejection>,
) -> Response {
    match submit_checked(core, caller, headers, body).await {
        Ok(created) => created.into_response(),
        Err(error) => {
            let mut response = error.into_response();
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

async fn submit_checked(
    core: Arc<Core>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(&[Role::Sender])?;
    check_one_content_type(&headers)?;
    let mut multipart = super::body::multipart(body)?;
    let outcome = submit_parts(core, caller, &headers, &mut multipart).await;
    if outcome.is_err() {
        // The rest of the body is read before the error is sent, so that a client still
        // sending a body of moderate size gets the error rather than a reset.
        let _ = tokio::time::timeout(DRAIN_TIME, drain(&mut multipart)).await;
    }
    outcome
}

/// Most time spent reading the rest of a rejected submission's body.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Reads and drops what is left of a multipart body.
async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

/// Reads the metadata and the documents of a submission and records it.
async fn submit_parts(
    core: Arc<Core>,
    caller: Caller,
    headers: &HeaderMap,
    multipart: &mut Multipart,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let idempotency = idempotency_key(headers, &caller)?;
    let key_sent = idempotency.is_some();

    let metadata = next_field(multipart).await?.ok_or_else(|| {
        ApiError::bad_request("the request has no parts; send a metadata part, then documents")
    })?;
    let first_name = part_name(
        metadata
            .headers()
            .get(CONTENT_DISPOSITION)
            .map(HeaderValue::as_bytes),
    );
    if first_name.as_deref() != Some("metadata") {
        return Err(ApiError::BadRequest {
            field: Some("metadata".to_owned()),
            message: format!(
                "the first part is {}; the metadata part must come before the documents",
                quoted(first_name.as_deref().unwrap_or(""))
            ),
        });
    }
    let json = read_small(metadata, MAX_METADATA_BYTES).await?;
    let plan = {
        let model = core.model();
        plan(
            &json,
            &model,
            caller.account.id,
            &core.limits,
            &core.transport,
            core.clock.now(),
        )?
    };

    let mut uploads = Vec::new();
    let stored = store_documents(&core, &plan, multipart, &mut uploads).await;
    let outcome = match stored {
        Ok(()) => record(&core, &caller, plan, &uploads, idempotency).await,
        Err(error) => Err(error),
    };
    let pending = matches!(&outcome, Err(error) if outcome_unknown(error));
    if !pending && (outcome.is_err() || matches!(outcome, Ok((_, true)))) {
        discard(&core, &uploads).await;
    }
    let outcome = match outcome {
        Err(ApiError::Unavailable { message }) if pending && !key_sent => {
            Err(ApiError::Unavailable {
                message: advice_without_key(&message),
            })
        }
        other => other,
    };
    let (body, _) = outcome?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// Rejects a request with more than one Content-Type header, of which the multipart
/// parser would read the first without saying so.
///
/// # Errors
///
/// [`ApiError::BadRequest`] on `Content-Type`.
fn check_one_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_types = headers.get_all(CONTENT_TYPE).iter().count();
    if content_types > 1 {
        return Err(ApiError::BadRequest {
            field: Some("Content-Type".to_owned()),
            message: format!(
                "the request has {content_types} Content-Type headers, and the server would \
                 read only one of them; send the header once: Content-Type: \
                 multipart/form-data; boundary=..."
            ),
        });
    }
    Ok(())
}

/// Reads the head of the next part, giving up when no data arrives for
/// [`UPLOAD_IDLE_TIMEOUT`], as a document's content does.
pub(crate) async fn next_field<'a>(
    multipart: &'a mut Multipart,
) -> Result<Option<Field<'a>>, ApiError> {
    let Ok(next) = tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, multipart.next_field()).await else {
        return Err(ApiError::BadRequest {
            field: None,
            message: format!("the multipart body stopped: {UploadStalled}"),
        });
    };
    next.map_err(|error| ApiError::BadRequest {
        field: None,
        message: format!("the multipart body is malformed or was cut off: {error}"),
    })
}

async fn read_small(mut field: Field<'_>, max: usize) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    loop {
        let Ok(next) = tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, field.chunk()).await else {
            return Err(ApiError::BadRequest {
                field: Some("metadata".to_owned()),
                message: format!("the metadata part stopped: {UploadStalled}"),
            });
        };
        let next = next.map_err(|error| ApiError::BadRequest {
            field: Some("metadata".to_owned()),
            message: format!("the metadata part was cut off: {error}"),
        })?;
        let Some(chunk) = next else {
            break;
        };
        if bytes.len() + chunk.len() > max {
            return Err(ApiError::LimitExceeded {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                limit: "metadata",
                message: format!("the metadata part is larger than {max} bytes"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Streams every document part into the blob store, pushing each stored one to
/// `uploads` so the caller can delete them all on failure.
async fn store_documents(
    core: &Core,
    plan: &Plan,
    multipart: &mut Multipart,
    uploads: &mut Vec<Upload>,
) -> Result<(), ApiError> {
    while let Some(field) = next_field(multipart).await? {
        store_document(core, plan, field, uploads).await?;
    }
    if uploads.is_empty() {
        return Err(ApiError::invalid(
            "documents",
            "no document: add at least one part named document with a file name",
        ));
    }
    Ok(())
}

/// Streams one part named `document` into the blob store and pushes it to `uploads`.
///
/// # Errors
///
/// [`ApiError::BadRequest`] for a part of another name, [`ApiError::LimitExceeded`]
/// past `max_documents` or `max_document_bytes`, [`ApiError::Invalid`] for a bad or
/// repeated file name or a bad media type, and the blob store's errors.
pub(crate) async fn store_document(
    core: &Core,
    plan: &Plan,
    field: Field<'_>,
    uploads: &mut Vec<Upload>,
) -> Result<(), ApiError> {
    let limits = BlobLimits {
        max_size: core.limits.max_document_bytes,
    };
    let index = uploads.len();
    let name = part_name(
        field
            .headers()
            .get(CONTENT_DISPOSITION)
            .map(HeaderValue::as_bytes),
    );
    if name.as_deref() != Some("document") {
        return Err(ApiError::BadRequest {
            field: Some(format!("documents[{index}]")),
            message: format!(
                "unexpected part {} after metadata; every later part must be named document",
                quoted(name.as_deref().unwrap_or(""))
            ),
        });
    }
    if index >= core.limits.max_documents {
        return Err(ApiError::LimitExceeded {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            limit: "max_documents",
            message: format!(
                "document {} ({}) is one more than the limit of {} documents per delivery \
                 (max_documents); send the others in another delivery",
                index + 1,
                quoted(field.file_name().unwrap_or("")),
                core.limits.max_documents
            ),
        });
    }
    let (file_name, media_type) = check_part_headers(&field, index, uploads)?;

    let kek = plan.encrypt.then_some(&core.kek);
    let blob = match core.blobs.put(with_idle_timeout(field), &limits, kek).await {
        Ok(blob) => blob,
        Err(BlobError::TooLarge { limit, .. }) => {
            let document = format!("document {} ({})", index + 1, quoted(&file_name));
            return Err(ApiError::document_too_large(&document, limit));
        }
        Err(other) => return Err(other.into()),
    };
    tracing::debug!(blob.key = %blob.storage_key, size = blob.size, "document stored");
    uploads.push(Upload {
        id: DocumentId::random(),
        file_name,
        media_type,
        blob,
    });
    Ok(())
}

/// Checks the file name, media type and transfer encoding of document `index`, and
/// returns the name and the media type.
fn check_part_headers(
    field: &Field<'_>,
    index: usize,
    uploads: &[Upload],
) -> Result<(String, String), ApiError> {
    // The checks read the raw headers, because the multipart parser drops a content type
    // it cannot parse, which would then pass as none given, and misreads some file names
    // (see `check_part_file_name`).
    let raw_header = |name| field.headers().get(name).map(HeaderValue::as_bytes);
    let file_name_field = format!("documents[{index}].file_name");
    let file_name = check_part_file_name(&file_name_field, raw_header(CONTENT_DISPOSITION))?;
    check_unique_file_name(
        &file_name_field,
        &file_name,
        uploads.iter().map(|upload| upload.file_name.as_str()),
    )?;
    let media_type = check_media_type(
        &format!("documents[{index}].content_type"),
        raw_header(CONTENT_TYPE)
            .map(String::from_utf8_lossy)
            .as_deref(),
    )?;
    check_transfer_encoding(
        &format!("documents[{index}]"),
        raw_header(CONTENT_TRANSFER_ENCODING),
    )?;
    Ok((file_name, media_type))
}

/// Header of a MIME part's transfer encoding, which the `http` crate does not name.
const CONTENT_TRANSFER_ENCODING: HeaderName = HeaderName::from_static("content-transfer-encoding");

/// Maximum time between two pieces of a document before the upload counts as stalled.
const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Error of an upload that stalled.
#[derive(Debug, thiserror::Error)]
#[error("no data arrived for {UPLOAD_IDLE_TIMEOUT:?}; the upload is taken as abandoned")]
struct UploadStalled;

/// Streams a document part, ending with an error when no data arrives for
/// [`UPLOAD_IDLE_TIMEOUT`], so a stalled client cannot hold a temp file open forever.
fn with_idle_timeout(
    field: Field<'_>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>> + '_
{
    futures::stream::unfold(Some(field), |field| async move {
        let mut field = field?;
        match tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, field.chunk()).await {
            Ok(Ok(Some(bytes))) => Some((Ok(bytes), Some(field))),
            Ok(Ok(None)) => None,
            Ok(Err(error)) => Some((Err(error.into()), None)),
            Err(_) => Some((Err(UploadStalled.into()), None)),
        }
    })
}

/// Returns a new delivery id on a chain of this process (see
/// `EmbeddedLedger::is_home_chain`), when it has any. On Kafka the delivery's documents, e-mails and recipient links then stay with
/// the process that took the upload. On the embedded backend every id qualifies.
fn local_delivery_id(core: &Core) -> DeliveryId {
    // With k of n chains here, a random id lands on one with probability k/n.
    const TRIES: usize = 4096;
    let first = DeliveryId::random();
    if core.ledger.is_home_chain(core.chain_of(first)) {
        return first;
    }
    (1..TRIES)
        .map(|_| DeliveryId::random())
        .find(|delivery| core.ledger.is_home_chain(core.chain_of(*delivery)))
        .unwrap_or(first)
}

/// Returns a new delivery id on the chain that `key` maps to. Every server maps a key
/// to the same chain, so a retry sent to another server reaches the same sequencer,
/// which finds the first submission by its key. A delivery on a chain of another
/// process is forwarded to it, like any append there.
fn keyed_delivery_id(core: &Core, key: &IdempotencyKey) -> DeliveryId {
    let digest = blake3::hash(key.as_str().as_bytes());
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest.as_bytes()[..8]);
    let chains = u64::from(core.ledger.chain_count());
    let chain = ChainId::new(
        u32::try_from(u64::from_be_bytes(prefix) % chains).expect("a remainder below a u32"),
    );
    // A random id lands on the chain with probability 1/n, so this ends after about n
    // tries.
    loop {
        let delivery = DeliveryId::random();
        if core.chain_of(delivery) == chain {
            return delivery;
        }
    }
}

/// Rejects a submission whose expiration date passed while its documents were
/// uploading, which would be recorded already expired and never notified. A retry of a
/// submission this ledger copy has recorded under the same key passes, so it gets the
/// original response.
///
/// # Errors
///
/// [`ApiError::Invalid`] naming `expires_at`, and ledger read failures.
fn check_not_expired_meanwhile(
    core: &Core,
    plan: &Plan,
    idempotency: Option<&IdempotencyKey>,
) -> Result<(), ApiError> {
    let Some(expires_at) = &plan.expires_at else {
        return Ok(());
    };
    if expires_at.instant > core.clock.now() {
        return Ok(());
    }
    if let Some(key) = idempotency
        && core.ledger.find_idempotent(key)?.is_some()
    {
        return Ok(());
    }
    Err(ApiError::invalid(
        "expires_at",
        "expires_at passed while the documents were uploading, so the delivery would be \
         recorded already expired; nothing was recorded, so give a later date and time",
    ))
}

/// Appends the submission. Returns the response body and whether the idempotency key
/// replayed an earlier submission, whose documents were stored already.
pub(crate) async fn record(
    core: &Core,
    caller: &Caller,
    plan: Plan,
    uploads: &[Upload],
    idempotency: Option<IdempotencyKey>,
) -> Result<(serde_json::Value, bool), ApiError> {
    check_not_expired_meanwhile(core, &plan, idempotency.as_ref())?;
    let delivery = match &idempotency {
        Some(key) => keyed_delivery_id(core, key),
        None => local_delivery_id(core),
    };
    let chain = core.chain_of(delivery);
    let actor = Actor::Account(caller.account.id);
    let plan_password = plan.password.clone();
    let password_hash = match plan.password.clone() {
        Some(password) => Some(passwords::hash(password).await?),
        None => None,
    };

    let recipients: Vec<RecipientEntry> = plan
        .recipients
        .iter()
        .map(|resolved| {
            let recipient = RecipientId::random();
            let token = core.links.token(delivery, recipient);
            RecipientEntry {
                recipient,
                mailbox: resolved.mailbox.clone(),
                via_list: resolved.via_list.clone(),
                access_token_hash: token_hash(token.as_str()),
            }
        })
        .collect();
    let mut events: Vec<NewEvent> = uploads
        .iter()
        .map(|upload| NewEvent {
            actor: actor.clone(),
            event: Event::DocumentUploaded(DocumentUploaded {
                document: upload.id,
                account: caller.account.id,
                file_name: upload.file_name.clone(),
                media_type: upload.media_type.clone(),
                size: upload.blob.size,
                content_hash: upload.blob.content_hash,
                storage_key: upload.blob.storage_key.as_str().to_owned(),
                encryption: upload.blob.encryption.clone(),
            }),
        })
        .collect();
    let released = plan.deliver_at.is_none();
    events.push(NewEvent {
        actor: actor.clone(),
        event: Event::DeliverySubmitted(DeliverySubmitted {
            delivery,
            sender: caller.account.id,
            recipients: recipients.clone(),
            documents: uploads.iter().map(|upload| upload.id).collect(),
            subject: plan.subject,
            message: plan.message,
            options: DeliveryOptions {
                priority: plan.priority,
                encrypt_at_rest: plan.encrypt,
                receipt_requested: plan.receipt,
                expires_at: plan.expires_at,
                deliver_at: plan.deliver_at,
                billing_code: plan.billing_code,
                access_password_hash: password_hash,
                require_tls: plan.require_tls,
                postmark: plan.postmark,
            },
        }),
    });
    if released {
        events.push(NewEvent {
            actor: Actor::System(consign_schemas::SystemComponent::Scheduler),
            event: Event::DeliveryReleased(DeliveryReleased { delivery }),
        });
    }

    let plan_postmark = matches!(
        &events[uploads.len()].event,
        Event::DeliverySubmitted(submitted) if submitted.options.postmark
    );
    let fingerprint = Fingerprint::new(
        &events[uploads.len()].event,
        uploads.iter().map(|upload| {
            (
                upload.blob.content_hash,
                upload.file_name.clone(),
                upload.media_type.clone(),
            )
        }),
    );
    let submitted_index = uploads.len();
    let mut request = AppendRequest::new(chain, events);
    request.idempotency_key = idempotency;
    // Only a failed append may fail the submission: after it succeeded, the documents
    // belong to the ledger and the error path would delete them.
    let appended = core.ledger.append(request).await?;
    if let Some(last) = appended.events.last()
        && let Err(error) = core.wait_applied(appended.chain, last.position).await
    {
        tracing::error!(%error, %delivery, "the model is late with a recorded submission");
    }
    if appended.replayed {
        let body = replayed_body(core, &appended, &fingerprint, plan_password).await?;
        return Ok((body, true));
    }
    let submitted = appended.events[submitted_index];
    // The submission is on the ledger from here on, so nothing below may fail it: that
    // would delete its documents. A postmark that cannot be recorded now is issued by
    // the scheduler's next round.
    if plan_postmark && let Err(error) = super::postmark::issue(core, delivery).await {
        tracing::error!(%error, %delivery, "cannot record the postmark now; the scheduler retries");
    }

    tracing::info!(
        %delivery,
        sender = %caller.account.id,
        chain = %chain,
        position = %submitted.position,
        documents = uploads.len(),
        recipients = recipients.len(),
        "delivery submitted"
    );
    Ok((
        json!({
            "delivery": delivery,
            "chain": chain,
            "position": submitted.position,
            "hash": submitted.hash,
            "status": if released { "released" } else { "scheduled" },
            "documents": uploads.iter().map(|upload| json!({
                "document": upload.id,
                "file_name": upload.file_name,
                "media_type": upload.media_type,
                "size": upload.blob.size,
                "blake3": upload.blob.content_hash,
            })).collect::<Vec<_>>(),
            "recipients": recipients.iter().map(|entry| json!({
                "recipient": entry.recipient,
                "address": entry.mailbox.address,
            })).collect::<Vec<_>>(),
        }),
        false,
    ))
}

/// Deletes the documents of a failed or replayed submission.
/// Returns true when `error` leaves the submission's outcome unknown: a Kafka
/// sequencer did not confirm it, so it may still be recorded and its documents must
/// stay. They are kept, and logged.
pub(crate) fn outcome_unknown(error: &ApiError) -> bool {
    let unknown =
        matches!(error, ApiError::Unavailable { message } if message.starts_with(UNCONFIRMED));
    if unknown {
        tracing::warn!(%error, "documents kept: the submission may still be recorded");
    }
    unknown
}

pub(crate) async fn discard(core: &Core, uploads: &[Upload]) {
    for upload in uploads {
        if let Err(error) = core.blobs.delete(&upload.blob.storage_key).await {
            tracing::error!(%error, blob.key = %upload.blob.storage_key, "cannot delete a document of a failed submission");
        }
    }
}
