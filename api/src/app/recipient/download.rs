//! `GET /d/{token}/documents/{id}`: a document download with Range support.
//!
//! The body streams from the blob store. A response that covers the whole document
//! records `DocumentDownloaded` once its last byte has been handed to the connection
//! and, for the whole document, the BLAKE3 check at the end of the stream passed. So
//! does a Range response whose bytes, with the ranges this recipient fetched before,
//! cover the whole document. A read error aborts the response, so the client sees a
//! failed download rather than a short file, and so does a withdrawal or the
//! expiration date passing while the response runs: the stream checks the delivery's
//! availability every [`AVAILABILITY_CHECK`] and at its end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LOCATION,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use consign_projections::model::Availability;
use consign_schemas::events::DocumentDownloaded;
use consign_schemas::{DeliveryId, DocumentId, Event};
use futures::StreamExt;

use super::{
    Resolved, has_grant, page_response, record, resolve, set_private_headers, unavailable,
};
use crate::app::core::Core;
use crate::app::error::ApiError;
use crate::blobs::{BlobStream, StorageKey, StoredBlob};
use crate::web::disposition::content_disposition;
use crate::web::html::{self, StatusPage};
use crate::web::range::{RangeDecision, evaluate, unsatisfied_content_range};

/// How often a running download checks that its delivery is still available, so that
/// a withdrawal or the expiration date cuts it within about this time.
const AVAILABILITY_CHECK: Duration = Duration::from_secs(1);

/// Handles a download; see the module documentation.
pub async fn download(
    State(core): State<Arc<Core>>,
    Path((token, document)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(resolved) = resolve(&core, &token) else {
        return Ok(super::unknown_link());
    };
    if let Some(response) = unavailable(&core, &resolved).await? {
        return Ok(response);
    }
    if resolved.delivery.options.access_password_hash.is_some()
        && !has_grant(&core, &headers, &resolved)
    {
        let mut response = StatusCode::SEE_OTHER.into_response();
        if let Ok(location) = HeaderValue::from_str(&format!("/d/{token}")) {
            response.headers_mut().insert(LOCATION, location);
        }
        set_private_headers(response.headers_mut());
        return Ok(response);
    }

    let Some(document) = document
        .parse::<DocumentId>()
        .ok()
        .filter(|id| resolved.delivery.documents.contains(id))
    else {
        let page = StatusPage::UnknownDocument;
        return Ok(page_response(page.status_code(), html::status_page(&page)));
    };
    let record_of = core
        .model()
        .document(document)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("document {document}")))?;
    let blob = StoredBlob {
        storage_key: StorageKey::parse(&record_of.storage_key)?,
        size: record_of.size,
        content_hash: record_of.content_hash,
        encryption: record_of.encryption.clone(),
    };

    let etag = format!("\"{}\"", record_of.content_hash);
    let size = record_of.size;
    let decision = evaluate(&headers, size, &etag);
    let kek = blob.encryption.as_ref().map(|_| &core.kek);
    let (status, stream, length, whole) = match decision {
        RangeDecision::Unsatisfiable => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            response
                .headers_mut()
                .insert(CONTENT_RANGE, unsatisfied_content_range(size));
            set_private_headers(response.headers_mut());
            return Ok(response);
        }
        RangeDecision::Full => (
            StatusCode::OK,
            core.blobs.open_read(&blob, kek).await?,
            size,
            true,
        ),
        RangeDecision::Partial(range) => {
            let stream = core
                .blobs
                .read_range(&blob, kek, range.start, range.len)
                .await?;
            let whole = range.start == 0 && range.len == size;
            (StatusCode::PARTIAL_CONTENT, stream, range.len, whole)
        }
    };

    let piece = match decision {
        RangeDecision::Partial(range) if !whole => Some((range.start, range.start + range.len)),
        _ => None,
    };
    let body = if size == 0 {
        // HTTP servers need not poll an empty body, so an empty document's download is
        // recorded before the response, which carries all of it.
        record(&core, &resolved, downloaded(&resolved, document, size)).await?;
        Body::empty()
    } else {
        Body::from_stream(record_when_complete(
            Arc::clone(&core),
            resolved,
            document,
            size,
            piece,
            stream,
        ))
    };
    let mut response = (status, body).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(&record_of.media_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    response_headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response_headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(
        CONTENT_DISPOSITION,
        content_disposition(&record_of.file_name),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response_headers.insert(ETAG, value);
    }
    if let RangeDecision::Partial(range) = decision {
        response_headers.insert(CONTENT_RANGE, range.content_range(size));
    }
    set_private_headers(response_headers);
    Ok(response)
}

/// Passes the stream through one chunk behind, and records the download before the
/// last chunk goes out when the response completes the document.
///
/// A response without `piece` carries the whole document. A response with `piece`
/// carries that byte range, and completes the document when the ranges that this
/// recipient has fetched before cover the rest (see [`super::coverage`]).
///
/// Holding the last chunk back until the blob stream has ended means its end-of-stream
/// checks (the BLAKE3 comparison of a whole document) decide before the client gets
/// its last byte, and the `DocumentDownloaded` event is durable before the download
/// completes. A failed check or a failed append aborts the response one chunk short,
/// so no client ever has a whole document whose download is not on the ledger.
/// The request stays in flight until then, so a graceful shutdown waits for it.
fn record_when_complete(
    core: Arc<Core>,
    resolved: Resolved,
    document: DocumentId,
    size: u64,
    piece: Option<(u64, u64)>,
    stream: BlobStream,
) -> impl futures::Stream<Item = Result<bytes::Bytes, crate::blobs::BlobError>> {
    struct State {
        stream: BlobStream,
        held: Option<bytes::Bytes>,
        core: Arc<Core>,
        resolved: Resolved,
        checked_at: Instant,
    }
    let start = State {
        stream,
        held: None,
        core,
        resolved,
        checked_at: Instant::now(),
    };
    futures::stream::unfold(Some(start), move |state| async move {
        let mut state = state?;
        loop {
            match state.stream.next().await {
                Some(Ok(chunk)) => {
                    if state.checked_at.elapsed() >= AVAILABILITY_CHECK {
                        state.checked_at = Instant::now();
                        if !still_available(&state.core, state.resolved.delivery.id) {
                            return Some((Err(cut_short(&state.resolved, document)), None));
                        }
                    }
                    if let Some(previous) = state.held.replace(chunk) {
                        return Some((Ok(previous), Some(state)));
                    }
                }
                Some(Err(error)) => return Some((Err(error), None)),
                None => {
                    if !still_available(&state.core, state.resolved.delivery.id) {
                        return Some((Err(cut_short(&state.resolved, document)), None));
                    }
                    // A whole response counts as the range of the whole document, which
                    // also clears the pieces fetched before it.
                    let recipient = state.resolved.recipient.id;
                    let piece = piece.unwrap_or((0, size));
                    let Some(earlier) = state
                        .core
                        .coverage
                        .complete(recipient, document, piece, size)
                    else {
                        return state.held.take().map(|last| (Ok(last), None));
                    };
                    let event = downloaded(&state.resolved, document, size);
                    if let Err(error) = record(&state.core, &state.resolved, event).await {
                        tracing::error!(%error, delivery = %state.resolved.delivery.id, %document, "cannot record a completed download; aborting it");
                        state.core.coverage.restore(recipient, document, earlier);
                        return Some((
                            Err(crate::blobs::BlobError::Source {
                                source: error.to_string().into(),
                            }),
                            None,
                        ));
                    }
                    let last = state.held.take()?;
                    return Some((Ok(last), None));
                }
            }
        }
    })
}

/// Logs and returns the error that cuts a download short once its delivery was
/// withdrawn or expired.
fn cut_short(resolved: &Resolved, document: DocumentId) -> crate::blobs::BlobError {
    let delivery = resolved.delivery.id;
    let recipient = resolved.recipient.id;
    tracing::info!(%delivery, %recipient, %document, "delivery withdrawn or expired during a download; aborting it");
    crate::blobs::BlobError::Source {
        source: "the delivery was withdrawn or expired during the download".into(),
    }
}

/// Returns the `DocumentDownloaded` event of a document served in full.
fn downloaded(resolved: &Resolved, document: DocumentId, size: u64) -> Event {
    Event::DocumentDownloaded(DocumentDownloaded {
        delivery: resolved.delivery.id,
        recipient: resolved.recipient.id,
        document,
        bytes: size,
    })
}

/// Returns true when the delivery is still available now. A download that ends after a
/// withdrawal or the expiration date is aborted rather than recorded, since the
/// documents are unavailable from that moment.
fn still_available(core: &Core, delivery: DeliveryId) -> bool {
    let now = core.clock.now();
    core.model()
        .delivery(delivery)
        .is_some_and(|current| matches!(current.availability(now), Availability::Available))
}
