//! Electronic postmarks: issued right after a submission that asks for one, and
//! served as a receipt the sender can check offline.
//!
//! The postmark signs the submission event's hash, chain and position, its sequencer
//! time and the documents' hashes (`consign_ledger::postmark` has the byte format). It
//! is appended as `PostmarkIssued` under the idempotency key `postmark/DELIVERY`, so it
//! exists at most once. A submission whose postmark a crash kept from the ledger gets
//! it from the scheduler's next round.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{ACCEPT, VARY};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use consign_ledger::postmark::{PostmarkFields, postmark_message};
use consign_ledger::{AppendRequest, NewEvent};
use consign_projections::model::{Delivery, Model};
use consign_schemas::events::{PostmarkIssued, Role};
use consign_schemas::{Actor, ContentHash, DeliveryId, Event, IdempotencyKey, SystemComponent};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::body::query_params;
use super::core::Core;
use super::error::ApiError;
use crate::web::html::{self, PostmarkDocument, PostmarkPage};

/// Path of the published postmark public keys.
const PUBLIC_KEYS_PATH: &str = "/.well-known/consign-postmark-keys.json";

/// Signs and records the postmark of `delivery`, unless it has one.
///
/// # Errors
///
/// The delivery is unknown to the model, or the ledger cannot record the postmark.
pub async fn issue(core: &Core, delivery: DeliveryId) -> Result<(), ApiError> {
    let issued = {
        let model = core.model();
        let record = model
            .delivery(delivery)
            .ok_or_else(|| ApiError::not_found(format!("delivery {delivery}")))?;
        if record.postmark.is_some() {
            return Ok(());
        }
        let fields = PostmarkFields {
            chain: record.submitted.chain,
            position: record.submitted.position,
            submission_hash: record.submitted.hash,
            time: record.submitted.time,
            document_hashes: record
                .documents
                .iter()
                .filter_map(|id| model.document(*id).map(|document| document.content_hash))
                .collect(),
        };
        let (key_id, signature) = core.postmark_keys.sign(&fields);
        PostmarkIssued {
            delivery,
            submission_chain: fields.chain,
            submission_position: fields.position,
            submission_hash: fields.submission_hash,
            time: fields.time,
            document_hashes: fields.document_hashes,
            key_id,
            signature,
        }
    };

    let key =
        IdempotencyKey::new(format!("postmark/{delivery}")).expect("the key is short and valid");
    let request = AppendRequest::new(
        core.chain_of(delivery),
        vec![NewEvent {
            actor: Actor::System(SystemComponent::Sequencer),
            event: Event::PostmarkIssued(issued),
        }],
    )
    .with_idempotency_key(key);
    core.append(request).await?;
    tracing::info!(%delivery, "postmark issued");
    Ok(())
}

/// Query of the postmark receipt.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReceiptParams {
    /// `json` or `html`. Without it, the `Accept` header decides.
    format: Option<String>,
}

/// `GET /api/deliveries/{id}/postmark`: the postmark receipt, with everything needed to
/// check it offline: the signed fields, the exact signed message in hex, the key id and
/// the public key. It is JSON unless `format=html`, or an `Accept` header that prefers
/// `text/html`, requests the readable page.
pub async fn receipt(
    State(core): State<Arc<Core>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<ReceiptParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Sender, Role::Admin, Role::Auditor])?;
    let params = query_params(params)?;
    let as_html = wants_html(params.format.as_deref(), &headers)?;
    let not_found = || ApiError::not_found(format!("postmark of delivery {id:?}"));
    let delivery: DeliveryId = id.parse().map_err(|_| not_found())?;
    let model = core.model();
    let record = model.delivery(delivery).ok_or_else(not_found)?;
    if caller.account.role == Role::Sender && record.sender != caller.account.id {
        return Err(not_found());
    }
    let Some(postmark) = record.postmark.as_ref() else {
        let reason = if record.options.postmark {
            "it is not issued yet; retry in a few seconds"
        } else {
            "its submission did not ask for one with \"postmark\": true"
        };
        return Err(ApiError::not_found_because(format!(
            "delivery {id:?} has no postmark: {reason}"
        )));
    };
    let issued = &postmark.event;
    let fields = PostmarkFields {
        chain: issued.submission_chain,
        position: issued.submission_position,
        submission_hash: issued.submission_hash,
        time: issued.time,
        document_hashes: issued.document_hashes.clone(),
    };
    let public_key = core
        .postmark_keys
        .published_keys()
        .get(&issued.key_id)
        .map(hex::encode);
    let signed_message = hex::encode(postmark_message(&fields));
    let signature = hex::encode(&issued.signature);

    let mut response = if as_html {
        let names = signed_document_names(&model, record, &issued.document_hashes);
        let hashes: Vec<String> = issued
            .document_hashes
            .iter()
            .map(ToString::to_string)
            .collect();
        let documents: Vec<PostmarkDocument<'_>> = names
            .iter()
            .zip(&hashes)
            .map(|(name, blake3)| PostmarkDocument {
                name: name.as_deref(),
                blake3,
            })
            .collect();
        let delivery_text = delivery.to_string();
        let json_url = format!("/api/deliveries/{delivery}/postmark?format=json");
        let page = PostmarkPage {
            delivery: &delivery_text,
            subject: &record.subject,
            chain: issued.submission_chain.get(),
            position: issued.submission_position.get(),
            submission_hash: &issued.submission_hash.to_string(),
            submission_time: crate::app::recipient::to_jiff(issued.time),
            documents: &documents,
            key_id: &issued.key_id,
            public_key: public_key.as_deref(),
            signature: &signature,
            signed_message: &signed_message,
            json_url: &json_url,
            keys_url: PUBLIC_KEYS_PATH,
        };
        let mut response = Html(html::postmark_page(&page)).into_response();
        response.headers_mut().insert(
            "content-security-policy",
            HeaderValue::from_static(html::CONTENT_SECURITY_POLICY),
        );
        super::recipient::set_private_headers(response.headers_mut());
        response
    } else {
        Json(json!({
            "delivery": delivery,
            "algorithm": "Ed25519",
            "key_id": issued.key_id,
            "public_key": public_key,
            "signature": signature,
            "signed_message": signed_message,
            "submission": {
                "chain": issued.submission_chain,
                "position": issued.submission_position,
                "hash": issued.submission_hash,
                "time": issued.time,
                "time_utc": crate::app::recipient::to_jiff(issued.time).to_string(),
            },
            "document_hashes": issued.document_hashes,
            "postmark_event": { "chain": postmark.at.chain, "position": postmark.at.position, "hash": postmark.at.hash },
        }))
        .into_response()
    };
    response
        .headers_mut()
        .insert(VARY, HeaderValue::from_static("accept"));
    Ok(response)
}

/// Decides between the page and JSON: `format` when given, otherwise the `Accept`
/// header, where `text/html` must have a higher quality than `application/json`.
/// Wildcards such as `*/*` count for neither, so they get JSON.
fn wants_html(format: Option<&str>, headers: &HeaderMap) -> Result<bool, ApiError> {
    match format {
        Some("html") => return Ok(true),
        Some("json") => return Ok(false),
        Some(other) => {
            return Err(ApiError::invalid(
                "format",
                format!("format {other:?} is not json or html"),
            ));
        }
        None => {}
    }
    let mut html_quality = 0.0_f32;
    let mut json_quality = 0.0_f32;
    let ranges = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for range in ranges {
        let mut parts = range.split(';');
        let media_type = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|parameter| parameter.trim().strip_prefix("q="))
            .find_map(|value| value.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media_type.as_str() {
            "text/html" => html_quality = html_quality.max(quality),
            "application/json" => json_quality = json_quality.max(quality),
            _ => {}
        }
    }
    Ok(html_quality > 0.0 && html_quality > json_quality)
}

/// Returns the file name of each signed document hash, in signed order: the document
/// at the same place in the delivery when its hash matches, else any document of the
/// delivery with that hash, else `None`.
fn signed_document_names(
    model: &Model,
    record: &Delivery,
    signed: &[ContentHash],
) -> Vec<Option<String>> {
    let documents: Vec<_> = record
        .documents
        .iter()
        .filter_map(|id| model.document(*id))
        .collect();
    signed
        .iter()
        .enumerate()
        .map(|(index, hash)| {
            let same_place = documents
                .get(index)
                .filter(|document| document.content_hash == *hash);
            same_place
                .or_else(|| {
                    documents
                        .iter()
                        .find(|document| document.content_hash == *hash)
                })
                .map(|document| document.file_name.clone())
        })
        .collect()
}

/// `GET /.well-known/consign-postmark-keys.json`: every public key that signed or
/// signs postmarks, by key id, and the current one.
pub async fn public_keys(State(core): State<Arc<Core>>) -> Json<Value> {
    let keys: Vec<Value> = core
        .postmark_keys
        .published_keys()
        .iter()
        .map(|(id, key)| json!({ "key_id": id, "algorithm": "Ed25519", "public_key": hex::encode(key) }))
        .collect();
    Json(json!({ "current": core.postmark_keys.current_id(), "keys": keys }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn format_parameter_decides() {
        let browser = accept("text/html");
        assert!(wants_html(Some("html"), &HeaderMap::new()).unwrap());
        assert!(!wants_html(Some("json"), &browser).unwrap());
        assert!(wants_html(Some("pdf"), &browser).is_err());
    }

    #[test]
    fn accept_header_decides_without_format() {
        let cases = [
            (
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                true,
            ),
            ("TEXT/HTML", true),
            ("application/json;q=0.5, text/html", true),
            ("text/html;q=0", false),
            ("text/html;q=0.5, application/json", false),
            ("text/html, application/json", false),
            ("*/*", false),
            ("text/*", false),
            ("application/json", false),
        ];
        for (value, expected) in cases {
            assert_eq!(
                wants_html(None, &accept(value)).unwrap(),
                expected,
                "Accept: {value}"
            );
        }
        assert!(!wants_html(None, &HeaderMap::new()).unwrap());
    }
}
