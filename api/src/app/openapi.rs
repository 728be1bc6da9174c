//! `GET /api/openapi.json`: the OpenAPI 3.1 description of the JSON API, kept by hand
//! in `openapi.json` beside this file. The integration tests call every operation it
//! lists against a running server, so a route missing from the router fails them.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

/// The document, checked to be JSON by the unit test below.
const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_is_openapi_json() {
        let value: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();

        assert_eq!(value["openapi"], "3.1.0");
        assert!(value["paths"]["/api/deliveries"]["post"].is_object());
    }
}
