//! Errors of the proxy itself, in the endpoint's own error shape, and
//! reading the request body under the size cap.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use steer::wire::Dialect;

/// An error of the proxy itself, in the endpoint's error shape.
pub(crate) fn error_response(dialect: Dialect, status: StatusCode, kind: &str, message: &str) -> Response {
    let body = match dialect {
        Dialect::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
        Dialect::Gemini => {
            json!({"error": {"code": status.as_u16(), "message": message, "status": match status {
                StatusCode::BAD_REQUEST => "INVALID_ARGUMENT",
                StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
                StatusCode::NOT_FOUND => "NOT_FOUND",
                StatusCode::PAYLOAD_TOO_LARGE => "INVALID_ARGUMENT",
                StatusCode::GATEWAY_TIMEOUT => "DEADLINE_EXCEEDED",
                StatusCode::BAD_GATEWAY => "UNAVAILABLE",
                _ => "INTERNAL",
            }}})
        }
        _ => json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The 413 of a body over `limit` bytes.
pub(crate) fn too_large(dialect: Dialect, limit: usize) -> Response {
    error_response(
        dialect,
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        &format!("request body larger than {limit} bytes"),
    )
}

/// The whole request body, at most `limit` bytes (else a 413).
pub(crate) async fn read_body(body: Body, limit: usize, dialect: Dialect) -> Result<Bytes, Response> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            // http-body-util's LengthLimitError, somewhere in the chain.
            let mut over = false;
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = src {
                over |= err.to_string().contains("length limit exceeded");
                src = err.source();
            }
            if over {
                Err(too_large(dialect, limit))
            } else {
                Err(error_response(
                    dialect,
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "could not read the request body",
                ))
            }
        }
    }
}
