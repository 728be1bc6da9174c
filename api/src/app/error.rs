//! The API's error type: every failure a handler returns, with its HTTP status and a
//! JSON body that names the offending field or limit and what to do.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use consign_ledger::LedgerError;
use serde_json::json;

use crate::blobs::BlobError;

/// A failed API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (not JSON, not multipart, a missing part).
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },

    /// A field has an invalid value.
    #[error("{message}")]
    Invalid { field: String, message: String },

    /// A configured limit was exceeded: a document too large (413) or too many of
    /// something (422).
    #[error("{message}")]
    LimitExceeded {
        status: StatusCode,
        limit: &'static str,
        message: String,
    },

    #[error("log in first: send `Authorization: Bearer TOKEN` from POST /api/login")]
    Unauthenticated,

    #[error("the login or the password is wrong")]
    BadCredentials,

    #[error("too many failed attempts from this network; retry in {retry_after_seconds} s")]
    Throttled { retry_after_seconds: u64 },

    #[error("this route needs the {needed} role; the account has the {actual} role")]
    Forbidden { needed: String, actual: String },

    #[error(
        "the session cookie only reads through the API, so that another site cannot make a \
         browser change anything; send `Authorization: Bearer TOKEN` from POST /api/login"
    )]
    CookieCannotWrite,

    #[error("{message}")]
    NotFound { message: String },

    #[error("{message}")]
    Conflict { message: String },

    #[error("{path} does not take {method}; see /api/openapi.json for its methods")]
    MethodNotAllowed { method: String, path: String },

    /// The ledger or the disk cannot take the request now; nothing was recorded.
    #[error("{message}")]
    Unavailable { message: String },

    #[error("internal error: {message}")]
    Internal { message: String },
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            field: None,
            message: message.into(),
        }
    }

    /// Returns the 404 for `what`, such as `delivery "ID"`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound {
            message: format!("{} not found", what.into()),
        }
    }

    /// Returns a 404 with the whole `message`, for a resource that does not exist for a
    /// reason the message gives.
    pub fn not_found_because(message: impl Into<String>) -> Self {
        Self::NotFound {
            message: message.into(),
        }
    }

    /// Returns the 413 for a document larger than `max_document_bytes`. `document` names
    /// it, such as `document 2 ("scan.pdf")`.
    pub(crate) fn document_too_large(document: &str, limit: u64) -> Self {
        Self::LimitExceeded {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            limit: "max_document_bytes",
            message: format!(
                "{document} is larger than the limit of {limit} bytes (max_document_bytes); \
                 nothing was stored"
            ),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::LimitExceeded { status, .. } => *status,
            ApiError::Unauthenticated | ApiError::BadCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } | ApiError::CookieCannotWrite => StatusCode::FORBIDDEN,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Invalid { .. } => "invalid_field",
            ApiError::LimitExceeded { .. } => "limit_exceeded",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::BadCredentials => "bad_credentials",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::CookieCannotWrite => "cookie_cannot_write",
            ApiError::Throttled { .. } => "throttled",
            ApiError::NotFound { .. } => "not_found",
            ApiError::Conflict { .. } => "conflict",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal { .. } => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, status = status.as_u16(), "request failed");
        }
        let retry_after = match &self {
            ApiError::Throttled {
                retry_after_seconds,
            } => Some(*retry_after_seconds),
            _ => None,
        };
        let mut body = json!({ "error": self.code(), "message": self.to_string() });
        match &self {
            ApiError::Invalid { field, .. } => body["field"] = json!(field),
            ApiError::BadRequest {
                field: Some(field), ..
            } => body["field"] = json!(field),
            ApiError::LimitExceeded { limit, .. } => body["limit"] = json!(limit),
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// Start of the message of a 503 for an append that a Kafka sequencer could not take
/// now: it is starting, moving to another process, or lost its brokers.
pub(crate) const UNCONFIRMED: &str = "the ledger cannot confirm this now";

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::DiskFull { .. } | LedgerError::Closed | LedgerError::Storage { .. } => {
                ApiError::Unavailable {
                    message: format!(
                        "the ledger cannot record this now, so nothing was recorded: {error}"
                    ),
                }
            }
            LedgerError::Unavailable { .. } | LedgerError::Replica { .. } => {
                ApiError::Unavailable {
                    message: format!("{UNCONFIRMED}: {error}"),
                }
            }
            LedgerError::TreeBeyondHead { .. } => ApiError::invalid("tree_size", error.to_string()),
            LedgerError::Proof { .. } => ApiError::bad_request(error.to_string()),
            other => ApiError::Internal {
                message: other.to_string(),
            },
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(error: BlobError) -> Self {
        match error {
            BlobError::TooLarge { limit, .. } => ApiError::document_too_large("a document", limit),
            BlobError::Source { source } => ApiError::BadRequest {
                field: Some("document".to_owned()),
                message: format!(
                    "the upload was cut off or malformed, so nothing was stored: {source}"
                ),
            },
            other => ApiError::Unavailable {
                message: format!("the document store failed: {other}"),
            },
        }
    }
}
