//! Request body and query extractors whose failures are [`ApiError`]s, so that a
//! malformed body or query string gets the same JSON error shape as every other failure.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Multipart, Query, Request};
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
        other => format!(
            "the body is not the JSON this route takes: {}",
            other.body_text()
        ),
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

/// Converts a query string that does not parse into the API's JSON error.
///
/// Handlers take the query as a `Result` and call this after their role check, so a
/// caller without the role learns nothing about the parameters.
///
/// # Errors
///
/// [`ApiError::Invalid`] naming the parameter when the reason names one, else the
/// query, with axum's reason.
pub fn query_params<T>(params: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    params.map(|Query(params)| params).map_err(|rejection| {
        let reason = rejection.body_text();
        ApiError::invalid(
            query_field(&reason),
            format!("{reason}; see /api/openapi.json for the parameters"),
        )
    })
}

/// Returns the parameter that a query rejection is about, such as `status` in
/// "Failed to deserialize query string: status: unknown variant `bogus`", or `query`
/// when the reason names none (a missing or unknown parameter).
fn query_field(reason: &str) -> &str {
    let detail = reason
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(reason);
    match detail.split_once(": ") {
        Some((name, _))
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte == b'_') =>
        {
            name
        }
        _ => "query",
    }
}

#[cfg(test)]
mod tests {
    use super::query_field;

    #[test]
    fn query_field_from_reason() {
        let cases = [
            (
                "Failed to deserialize query string: status: unknown variant `bogus`",
                "status",
            ),
            (
                "Failed to deserialize query string: limit: invalid digit found in string",
                "limit",
            ),
            (
                "Failed to deserialize query string: missing field `to`",
                "query",
            ),
            (
                "Failed to deserialize query string: unknown field `x`, expected one of",
                "query",
            ),
            ("something else entirely", "query"),
        ];
        for (reason, field) in cases {
            assert_eq!(query_field(reason), field, "{reason}");
        }
    }
}
