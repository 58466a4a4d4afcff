//! Errors of the proxy itself, in the endpoint's own error shape, and
//! reading the request body: under the size cap, within the client
//! timeout, gzip or deflate decoded.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use steer::wire::Dialect;

/// An error of the proxy itself, in the endpoint's error shape.
pub(crate) fn error_response(dialect: Dialect, status: StatusCode, kind: &str, message: &str) -> Response {
    // Never echo a huge name or path back whole.
    let message = steer_metrics::redact::truncate_str(message, 1024);
    let body = match dialect {
        Dialect::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
        Dialect::Gemini => {
            json!({"error": {"code": status.as_u16(), "message": message, "status": match status {
                StatusCode::BAD_REQUEST => "INVALID_ARGUMENT",
                StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
                StatusCode::NOT_FOUND => "NOT_FOUND",
                StatusCode::PAYLOAD_TOO_LARGE => "INVALID_ARGUMENT",
                StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => "DEADLINE_EXCEEDED",
                StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => "UNAVAILABLE",
                StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNSUPPORTED_MEDIA_TYPE => "INVALID_ARGUMENT",
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

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Larger than the cap (compressed or once decompressed): 413.
    TooLarge,
    /// Not all received within the client timeout: 408.
    Timeout,
    /// A `Content-Encoding` the proxy cannot decode: 415.
    Encoding(String),
    /// Cut short, or not valid gzip / deflate data: 400.
    Unreadable,
}

impl BodyError {
    /// The status and message of this error.
    pub(crate) fn status_message(&self, limit: usize, timeout: Duration) -> (StatusCode, String) {
        match self {
            BodyError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {limit} bytes"),
            ),
            BodyError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body was not received within {} s",
                    timeout.as_secs_f64()
                ),
            ),
            BodyError::Encoding(e) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding `{e}` is not supported: send the body uncompressed, gzip or deflate"
                ),
            ),
            BodyError::Unreadable => (
                StatusCode::BAD_REQUEST,
                "could not read the request body (cut short, or not valid for its Content-Encoding)".into(),
            ),
        }
    }

    /// This error in the endpoint's shape.
    pub(crate) fn response(&self, dialect: Dialect, limit: usize, timeout: Duration) -> Response {
        let (status, msg) = self.status_message(limit, timeout);
        let kind = match self {
            BodyError::TooLarge => "request_too_large",
            BodyError::Timeout => "timeout_error",
            _ => "invalid_request_error",
        };
        error_response(dialect, status, kind, &msg)
    }
}

/// The whole request body, at most `limit` bytes, received within
/// `timeout`, decoded when it came gzip- or deflate-encoded (the decoded
/// body at most `limit` bytes too).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let encoding = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e != "identity")
        .collect::<Vec<_>>();
    if let Some(e) = encoding
        .iter()
        .find(|e| !matches!(e.as_str(), "gzip" | "x-gzip" | "deflate"))
    {
        return Err(BodyError::Encoding(
            steer_metrics::redact::truncate_str(e, 64).to_string(),
        ));
    }
    let raw = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => return Err(BodyError::Timeout),
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            // http-body-util's LengthLimitError, somewhere in the chain.
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = src {
                if err.to_string().contains("length limit exceeded") {
                    return Err(BodyError::TooLarge);
                }
                src = err.source();
            }
            return Err(BodyError::Unreadable);
        }
    };
    // Decoded in the order applied, last first.
    encoding.iter().rev().try_fold(raw, |b, e| decode(&b, e, limit))
}

/// `body` decoded from `encoding` (gzip or deflate), at most `limit` bytes.
fn decode(body: &[u8], encoding: &str, limit: usize) -> Result<Bytes, BodyError> {
    use std::io::Read;
    let mut out = Vec::new();
    let cap = limit as u64 + 1;
    let read = if encoding == "deflate" {
        flate2::read::ZlibDecoder::new(body)
            .take(cap)
            .read_to_end(&mut out)
    } else {
        flate2::read::MultiGzDecoder::new(body)
            .take(cap)
            .read_to_end(&mut out)
    };
    match read {
        Err(_) => Err(BodyError::Unreadable),
        Ok(n) if n > limit => Err(BodyError::TooLarge),
        Ok(_) => Ok(Bytes::from(out)),
    }
}
