//! AWS Bedrock Runtime, natively: `POST /model/{modelId}/converse`,
//! `/converse-stream`, `/invoke` and `/invoke-with-response-stream` — the
//! Bedrock Runtime REST paths, so the AWS SDKs (and Anthropic's Bedrock
//! client) work with the proxy as their endpoint URL.
//!
//! * **Access.** The proxy signs with its own AWS credentials, so these
//!   routes need the proxy key (`x-steer-proxy-key: KEY`, or
//!   `Authorization: Bearer KEY`) when one is configured, and are refused
//!   (403) when none is, unless the operator opened them
//!   ([`BedrockAccess`]).
//! * **Forwarded** to `{endpoint}/model/{modelId}/{operation}`, the path
//!   exactly as the client encoded it (`...-v1%3A0`), the body byte for
//!   byte; the client's headers minus hop-by-hop ones, its credentials and
//!   AWS signing headers (`Authorization`, `x-amz-*`: signed for the
//!   proxy's host), then signed anew (SigV4, service `bedrock`).
//! * **Measured**: `converse` as a `Converse` body, `converse-stream` as
//!   AWS event-stream frames (TTFT at the first frame carrying output),
//!   `invoke` from the `X-Amzn-Bedrock-Input-Token-Count` /
//!   `-Output-Token-Count` headers (method `embeddings` for a model id
//!   naming `embed`; an Anthropic model's answer as an Anthropic Messages
//!   answer, with its cache tokens, stop reason and tools),
//!   `invoke-with-response-stream` from its chunks (an Anthropic model's as
//!   Anthropic stream events, others by the invocation metrics of the last
//!   chunk), errors by their `x-amzn-ErrorType`. The record's model is the
//!   decoded model id, priced like the client's `bedrock/` calls.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use steer_metrics::{AgentMetrics, Method};

use super::error::{read_body, BodyError};
use super::forward::{acquire, respond, send};
use super::request::upstream_headers;
use crate::attribution;
use crate::auth;
use crate::aws::Aws;
use crate::config::BedrockAccess;
use crate::relay::{Call, Observer};
use crate::Shared;

/// A Bedrock Runtime operation the proxy serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Converse,
    ConverseStream,
    Invoke,
    InvokeStream,
}

/// An error the way Bedrock answers one: the exception in
/// `x-amzn-ErrorType`, `{"message": ...}` as the body (what the AWS SDKs read).
pub(crate) fn bedrock_error(status: StatusCode, exception: &str, message: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::HeaderName::from_static("x-amzn-errortype"), exception),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

/// The message of a 401 on a Bedrock route.
const WRONG_KEY: &str = "missing or wrong proxy key: the Bedrock routes sign with the proxy's AWS credentials; present STEER_PROXY_KEY as `x-steer-proxy-key: KEY`";
/// The message of a 403 on a closed Bedrock route.
const CLOSED: &str = "the Bedrock routes sign with the proxy's AWS credentials and are closed: start the proxy with STEER_PROXY_KEY set (clients present it as `x-steer-proxy-key`) or with --bedrock-open";

/// Percent-decoding of a path segment (`anthropic.claude-v2%3A1` → `anthropic.claude-v2:1`).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The model id (as encoded, and decoded) and the operation of a path.
fn parse_path(path: &str) -> Option<(&str, String, Operation)> {
    let (encoded, op) = path.strip_prefix("/model/")?.split_once('/')?;
    let op = match op {
        "converse" => Operation::Converse,
        "converse-stream" => Operation::ConverseStream,
        "invoke" => Operation::Invoke,
        "invoke-with-response-stream" => Operation::InvokeStream,
        _ => return None,
    };
    let model = percent_decode(encoded).filter(|m| !m.is_empty())?;
    Some((encoded, model, op))
}

/// Headers to send upstream: those of any route, minus the client's
/// credentials and AWS signing headers, and headers that cannot be signed.
fn headers_to_sign(incoming: &HeaderMap) -> HeaderMap {
    let mut out = upstream_headers(incoming);
    for h in auth::KEY_HEADERS {
        out.remove(h);
    }
    let drop: Vec<_> = out
        .iter()
        .filter(|(k, v)| k.as_str().starts_with("x-amz-") || k == &header::EXPECT || v.to_str().is_err())
        .map(|(k, _)| k.clone())
        .collect();
    for k in drop {
        out.remove(k);
    }
    out
}

/// A count from a Bedrock token-count header.
fn count(headers: &reqwest::header::HeaderMap, name: &str) -> u64 {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `POST /model/{modelId}/{converse | converse-stream | invoke}`.
pub(crate) async fn bedrock(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let Some((encoded, model, op)) = parse_path(parts.uri.path()) else {
        return bedrock_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "steer proxy serves POST /model/{modelId}/converse, /converse-stream, /invoke and /invoke-with-response-stream",
        );
    };
    match &s.config.bedrock.access {
        BedrockAccess::Closed => {
            return bedrock_error(StatusCode::FORBIDDEN, "AccessDeniedException", CLOSED)
        }
        BedrockAccess::Key(k) if !auth::check_bedrock_key(&parts.headers, k) => {
            return bedrock_error(StatusCode::UNAUTHORIZED, "AccessDeniedException", WRONG_KEY)
        }
        _ => {}
    }
    if !super::target::path_id_ok(&model, true) {
        return bedrock_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            super::target::BAD_PATH_ID,
        );
    }
    let (limit, client_timeout) = (s.config.max_body_bytes, s.config.client_timeout);
    let refuse = |e: BodyError| {
        let (status, msg) = e.status_message(limit, client_timeout);
        bedrock_error(status, "ValidationException", &msg)
    };
    if parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
    {
        return refuse(BodyError::TooLarge);
    }
    let raw = match read_body(&parts.headers, body, limit, client_timeout).await {
        Ok(b) => b,
        Err(e) => return refuse(e),
    };
    if !matches!(op, Operation::Invoke | Operation::InvokeStream) {
        if let Err(msg) = super::request::Prepared::check_object(&raw) {
            return bedrock_error(StatusCode::BAD_REQUEST, "ValidationException", &msg);
        }
    }
    let aws = match s.aws.get_or_try_init(|| Aws::load(&s.config.bedrock)).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "Bedrock call refused");
            return bedrock_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerException",
                &e.to_string(),
            );
        }
    };

    let mut record = AgentMetrics::new("bedrock", model.clone());
    record.method = match op {
        Operation::ConverseStream | Operation::InvokeStream => Method::Stream,
        Operation::Invoke if model.contains("embed") => Method::Embeddings,
        _ => Method::Generate,
    };
    let embeddings = record.method == Method::Embeddings;
    record.tags = attribution::tags(&parts.headers, None, s.config.max_tags);
    record.trace_id = attribution::trace_id(&parts.headers);

    let url = format!("{}{}", aws.endpoint(), parts.uri.path());
    let mut headers = headers_to_sign(&parts.headers);
    if let Err(e) = aws.sign(&url, &mut headers, &raw).await {
        tracing::warn!(error = %e, "Bedrock call refused");
        return bedrock_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            &e.to_string(),
        );
    }
    tracing::trace!(model = %model, encoded, "forwarding a Bedrock call");
    let permit = match acquire(&s).await {
        Ok(p) => p,
        Err(waited) => {
            return super::forward::busy(
                |status, msg| bedrock_error(status, "ServiceUnavailableException", msg),
                waited,
            )
        }
    };
    let mut call = Call::new(
        s.collector.clone(),
        s.prices.clone(),
        record,
        started,
        &s.in_flight,
    );
    let request = s.http.post(url).headers(headers).body(raw);
    let shape = |status, msg: &str| {
        let exception = if status == StatusCode::GATEWAY_TIMEOUT {
            "ModelTimeoutException"
        } else {
            "ServiceUnavailableException"
        };
        bedrock_error(status, exception, msg)
    };
    let resp = match send(&s, request, &mut call, shape, "bedrock").await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let status = resp.status().as_u16();
    let observer = if status >= 400 {
        Observer::BedrockError {
            status,
            error_type: resp
                .headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            buf: Vec::new(),
        }
    } else {
        match op {
            Operation::Converse => Observer::Converse {
                model,
                buf: Vec::new(),
                overflow: false,
            },
            Operation::ConverseStream => Observer::EventStream {
                decoder: Some(Box::new(steer::wire::bedrock::EventStreamDecoder::new(&model))),
                error: None,
            },
            Operation::InvokeStream => Observer::EventStream {
                decoder: Some(Box::new(steer::wire::bedrock::EventStreamDecoder::invoke(&model))),
                error: None,
            },
            Operation::Invoke => {
                let h = resp.headers();
                let counts = (
                    count(h, "x-amzn-bedrock-input-token-count"),
                    count(h, "x-amzn-bedrock-output-token-count"),
                );
                if embeddings {
                    // The body is the vectors: Bedrock's counts are the measure.
                    let c = steer::wire::bedrock::parse_invoke(&model, b"", counts.0, counts.1);
                    Observer::Known(Box::new(c))
                } else {
                    Observer::Invoke {
                        model,
                        counts,
                        buf: Vec::new(),
                        overflow: false,
                    }
                }
            }
        }
    };
    respond(&s, resp, observer, false, call, permit, shape)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn paths_keep_the_encoding_and_decode_the_model() {
        let (enc, model, op) =
            parse_path("/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream").unwrap();
        assert_eq!(enc, "anthropic.claude-sonnet-4-5-20250929-v1%3A0");
        assert_eq!(model, "anthropic.claude-sonnet-4-5-20250929-v1:0");
        assert_eq!(op, Operation::ConverseStream);
        let (_, model, _) = parse_path(
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.amazon.nova-pro-v1%3A0/converse",
        )
        .unwrap();
        assert_eq!(
            model,
            "arn:aws:bedrock:us-east-1:1:inference-profile/us.amazon.nova-pro-v1:0"
        );
        assert_eq!(
            parse_path("/model/m/invoke-with-response-stream").unwrap().2,
            Operation::InvokeStream
        );
        assert!(parse_path("/model/m/invoke-with-stream").is_none());
        assert!(parse_path("/model/%zz/converse").is_none());
        assert!(parse_path("/model//converse").is_none());
    }

    #[test]
    fn client_signature_and_keys_are_not_forwarded() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=client"),
        );
        h.insert("x-amz-date", HeaderValue::from_static("20250101T000000Z"));
        h.insert("x-amz-security-token", HeaderValue::from_static("client-token"));
        h.insert("x-steer-proxy-key", HeaderValue::from_static("pk"));
        h.insert("x-amzn-bedrock-trace", HeaderValue::from_static("ENABLED"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let out = headers_to_sign(&h);
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept-encoding", "content-type", "x-amzn-bedrock-trace"]);
    }
}
