//! Request body extractors whose failures are [`ApiError`]s, so that a malformed body
//! gets the same JSON error shape as every other failure.

use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Multipart, Request};
use axum::Json;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body; a missing content type or invalid JSON becomes [`ApiError`].
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_error(&rejection)),
        }
    }
}

fn json_error(rejection: &JsonRejection) -> ApiError {
    let message = match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "the body must be JSON with Content-Type: application/json".to_owned()
        }
        other => format!("the body is not the JSON this route takes: {}", other.body_text()),
    };
    ApiError::BadRequest {
        field: None,
        message,
    }
}

/// Converts a multipart rejection into [`ApiError`].
pub fn multipart_error(rejection: &MultipartRejection) -> ApiError {
    ApiError::BadRequest {
        field: None,
        message: format!(
            "the body must be multipart/form-data with a boundary: {}",
            rejection.body_text()
        ),
    }
}

/// Passes a multipart body through, or its rejection as [`ApiError`].
///
/// # Errors
///
/// [`ApiError::BadRequest`] when the request is not multipart.
pub fn multipart(body: Result<Multipart, MultipartRejection>) -> Result<Multipart, ApiError> {
    body.map_err(|rejection| multipart_error(&rejection))
}
