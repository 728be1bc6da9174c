//! Request body and query extractors whose failures are [`ApiError`]s, so that a
//! malformed body or query string gets the same JSON error shape as every other failure.

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest JSON body a route takes, as axum's default body limit.
const MAX_JSON_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Most bytes of an oversized JSON body read before the 413 is sent.
const DRAINED_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A JSON body. A missing or repeated content type, a body over
/// [`MAX_JSON_BODY_BYTES`] or JSON that does not fit the route becomes an [`ApiError`].
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        check_json_content_type(request.headers(), "")?;
        let bytes = read_json_body(request.into_body()).await?;
        Ok(Self(parse_body(&bytes)?))
    }
}

/// A JSON body that may be left out: an empty body, or one of white space only, gives
/// `T::default()`. Anything else is read as [`ApiJson`] reads it.
#[derive(Debug)]
pub struct OptionalApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = read_json_body(body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        check_json_content_type(&parts.headers, ", or no body")?;
        Ok(Self(parse_body(&bytes)?))
    }
}

/// Requires one Content-Type header naming JSON. `alternative` ends the message, for a
/// route that also takes something else.
fn check_json_content_type(headers: &HeaderMap, alternative: &str) -> Result<(), ApiError> {
    let content_types = headers.get_all(CONTENT_TYPE).iter().count();
    if content_types > 1 {
        return Err(ApiError::bad_request(format!(
            "the request has {content_types} Content-Type headers; send one: \
             Content-Type: application/json"
        )));
    }
    if !is_json(headers) {
        return Err(ApiError::bad_request(format!(
            "the body must be JSON with Content-Type: application/json{alternative}"
        )));
    }
    Ok(())
}

fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    parse_json(bytes, |reason| {
        ApiError::bad_request(format!(
            "the body is not the JSON this route takes: {reason}; see /api/openapi.json"
        ))
    })
}

/// Returns whether the content type is `application/json` or `application/*+json`.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// Reads a JSON body of at most [`MAX_JSON_BODY_BYTES`].
///
/// The rest of a larger body is read and dropped, up to [`DRAINED_BODY_BYTES`] in all,
/// before the 413 is sent. A server that responds while the client is still sending
/// closes a connection with unread data, so the client's next write fails with a reset
/// before it can read the response. A body larger still is not read to its end.
async fn read_json_body(body: Body) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut json = Vec::new();
    let mut received: usize = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::bad_request(format!("the body could not be read: {error}"))
        })?;
        received = received.saturating_add(chunk.len());
        if received <= MAX_JSON_BODY_BYTES {
            json.extend_from_slice(&chunk);
        } else if received > DRAINED_BODY_BYTES {
            break;
        }
    }
    if received > MAX_JSON_BODY_BYTES {
        return Err(ApiError::LimitExceeded {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            limit: "json_body_bytes",
            message: format!(
                "the body is larger than the {MAX_JSON_BODY_BYTES} bytes a JSON request may have"
            ),
        });
    }
    Ok(json)
}

/// Parses `json` into `T`. A wrong value in a known field is that field's error (422).
/// Any other failure, such as JSON that does not parse, an unknown field or a body of
/// another JSON type, goes to `whole` with its reason.
///
/// # Errors
///
/// [`ApiError::Invalid`] naming the field, or the error `whole` makes.
pub fn parse_json<T: DeserializeOwned>(
    json: &[u8],
    whole: impl Fn(String) -> ApiError,
) -> Result<T, ApiError> {
    // serde reads an array as a struct's fields in order, which would give an array
    // body errors about the wrong fields.
    match json.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => return Err(whole("expected a JSON object in braces".to_owned())),
        None => return Err(whole("the JSON is empty, expected an object".to_owned())),
    }

    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let reason = without_type_names(&inner.to_string());
        if inner.is_data()
            && let Some(name) = missing_field(&reason)
        {
            let field = if path == "." {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            return ApiError::invalid(field.clone(), format!("{field} is missing"));
        }
        // A path such as `[0]` or `.` comes from a body that is not an object at all, and
        // an unknown field is not a field of the route.
        let names_field = path.starts_with(|c: char| c.is_ascii_lowercase())
            && !reason.starts_with("unknown field");
        if inner.is_data() && names_field {
            ApiError::invalid(path.clone(), format!("{path}: {reason}"))
        } else {
            whole(reason)
        }
    })?;
    deserializer
        .end()
        .map_err(|error| whole(error.to_string()))?;
    Ok(value)
}

/// Returns the field that a serde reason such as "missing field `role` at line 1
/// column 9" names.
fn missing_field(reason: &str) -> Option<&str> {
    let rest = reason.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(name, _)| name)
}

/// Replaces the server's own type names in a serde reason, such as "expected struct
/// LoginRequest", with the JSON type a client sends.
fn without_type_names(reason: &str) -> String {
    let mut plain = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(at) = rest
        .find("expected struct ")
        .or_else(|| rest.find("expected enum "))
    {
        let (before, from) = rest.split_at(at);
        plain.push_str(before);
        let (kind, after) = match from.strip_prefix("expected struct ") {
            Some(after) => ("expected a JSON object", after),
            None => ("expected a string", &from["expected enum ".len()..]),
        };
        plain.push_str(kind);
        let name_end = after
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(after.len());
        rest = &after[name_end..];
    }
    plain.push_str(rest);
    plain
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
        let field = query_field(&reason);
        let detail = reason
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&reason);
        let message = match detail.strip_prefix(&format!("{field}: ")) {
            Some(problem) => format!(
                "invalid query parameter {field}: {problem}; see /api/openapi.json for its \
                 values"
            ),
            None => {
                format!("invalid query string: {detail}; see /api/openapi.json for the parameters")
            }
        };
        ApiError::invalid(field, message)
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
    use super::{missing_field, query_field, without_type_names};

    #[test]
    fn missing_field_from_reason() {
        assert_eq!(
            missing_field("missing field `role` at line 1 column 9"),
            Some("role")
        );
        assert_eq!(missing_field("unknown field `x`"), None);
    }

    #[test]
    fn type_names_become_json_types() {
        let cases = [
            (
                "invalid type: sequence, expected struct LoginRequest at line 1 column 0",
                "invalid type: sequence, expected a JSON object at line 1 column 0",
            ),
            (
                "invalid type: integer `3`, expected enum Role",
                "invalid type: integer `3`, expected a string",
            ),
            ("unknown variant `god`", "unknown variant `god`"),
        ];
        for (reason, plain) in cases {
            assert_eq!(without_type_names(reason), plain, "{reason}");
        }
    }

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
