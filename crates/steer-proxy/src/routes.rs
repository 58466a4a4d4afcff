//! The endpoints: the providers' wire APIs, `/metrics` and `/healthz`.
//!
//! | endpoint | wire | upstream path |
//! |---|---|---|
//! | `POST /v1/chat/completions` | OpenAI | `{base}/chat/completions` |
//! | `POST /v1/embeddings` | OpenAI | `{base}/embeddings` |
//! | `POST /v1/messages` | Anthropic | `{base}/messages` |
//! | `GET /metrics` | Prometheus (OpenMetrics text) | — |
//! | `GET /healthz` | `ok` | — |
//!
//! The upstream is chosen from the body's `model` like the client does
//! ([`steer::routing`]); a `provider/` prefix is removed from the model
//! before forwarding. Request headers go upstream except hop-by-hop ones,
//! `Host`, `Content-Length`, the `x-steer-*` headers, and
//! `Accept-Encoding` (the proxy asks for an uncompressed answer so it can
//! measure it). The body goes upstream byte for byte, unless the model had
//! a prefix or the proxy asks an OpenAI stream for usage
//! (`stream_options.include_usage`), in which cases it is re-serialised.
//!
//! The answer's status, headers (minus hop-by-hop) and body go back
//! unchanged, plus `x-steer-request-id` (the id of the call's record).
//! Errors of the proxy itself (bad JSON, unknown model, wrong proxy key,
//! upstream unreachable or silent) use the endpoint's own error shape.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use steer::wire::Dialect;
use steer_metrics::{AgentMetrics, ErrorClass, Method};

use crate::attribution;
use crate::auth::{self, X_API_KEY};
use crate::config::AuthMode;
use crate::relay::{Call, Observer, Relay};
use crate::Shared;

/// The header carrying the id of the call's record.
pub const REQUEST_ID_HEADER: &str = "x-steer-request-id";

/// A wire endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    ChatCompletions,
    Embeddings,
    Messages,
}

impl Endpoint {
    fn dialect(self) -> Dialect {
        match self {
            Endpoint::ChatCompletions | Endpoint::Embeddings => Dialect::OpenAi,
            Endpoint::Messages => Dialect::Anthropic,
        }
    }
    fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat/completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
        }
    }
}

pub(crate) async fn chat_completions(State(s): State<Arc<Shared>>, req: Request) -> Response {
    forward(s, Endpoint::ChatCompletions, req).await
}

pub(crate) async fn embeddings(State(s): State<Arc<Shared>>, req: Request) -> Response {
    forward(s, Endpoint::Embeddings, req).await
}

pub(crate) async fn messages(State(s): State<Arc<Shared>>, req: Request) -> Response {
    forward(s, Endpoint::Messages, req).await
}

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    match s.prometheus.as_ref().and_then(|p| p.encode()) {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                steer_sink_prometheus::CONTENT_TYPE_OPENMETRICS,
            )],
            text,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no metrics endpoint configured\n").into_response(),
    }
}

pub(crate) async fn not_found(req: Request) -> Response {
    let msg = format!(
        "steer proxy serves POST /v1/chat/completions, /v1/embeddings, /v1/messages, GET /metrics and /healthz; not {} {}",
        req.method(),
        req.uri().path()
    );
    error_response(Dialect::OpenAi, StatusCode::NOT_FOUND, "not_found_error", &msg)
}

/// An error of the proxy itself, in the endpoint's error shape.
pub(crate) fn error_response(dialect: Dialect, status: StatusCode, kind: &str, message: &str) -> Response {
    let body = match dialect {
        Dialect::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
        _ => json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Headers to send upstream.
fn upstream_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        let n = name.as_str();
        if is_hop_by_hop(name)
            || n == "host"
            || n == "content-length"
            || n == "accept-encoding"
            || n.starts_with("x-steer-")
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    out
}

async fn read_body(body: Body, limit: usize, dialect: Dialect) -> Result<Bytes, Response> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            // http-body-util's LengthLimitError, somewhere in the chain.
            let mut too_large = false;
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = src {
                too_large |= err.to_string().contains("length limit exceeded");
                src = err.source();
            }
            if too_large {
                Err(error_response(
                    dialect,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request_too_large",
                    &format!("request body larger than {limit} bytes"),
                ))
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

async fn forward(s: Arc<Shared>, endpoint: Endpoint, req: Request) -> Response {
    let started = Instant::now();
    let dialect = endpoint.dialect();
    let bad = |msg: &str| error_response(dialect, StatusCode::BAD_REQUEST, "invalid_request_error", msg);
    let (parts, body) = req.into_parts();
    let limit = s.config.max_body_bytes;
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return error_response(
                dialect,
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                &format!("request body larger than {limit} bytes"),
            );
        }
    }

    // Credentials first: a client without the proxy key learns nothing else.
    if let AuthMode::ProviderKeys(key) = &s.config.auth {
        if !auth::check_proxy_key(&parts.headers, key) {
            return error_response(
                dialect,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "missing or wrong proxy key: present STEER_PROXY_KEY as `Authorization: Bearer KEY` or `x-api-key: KEY`",
            );
        }
    }

    let raw = match read_body(body, limit, dialect).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut json: Value = match serde_json::from_slice(&raw) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return bad("the request body must be a JSON object"),
        Err(e) => return bad(&format!("the request body is not valid JSON: {e}")),
    };
    let Some(model) = json.get("model").and_then(Value::as_str).map(str::to_string) else {
        return bad("the request body has no `model` string");
    };
    let route = match steer::routing::route_with(&model, &s.config.prices, |p| {
        s.config.upstreams.contains_key(p)
    }) {
        Ok(r) if r.simulated => return bad("`sim/` models are not served by the proxy"),
        Ok(r) => r,
        // OpenAI's embedding models are in no price table and match no
        // name rule; on the embeddings endpoint they are OpenAI's.
        Err(_) if endpoint == Endpoint::Embeddings && model.starts_with("text-embedding-") => steer::Route {
            provider: "openai".into(),
            model: model.clone(),
            simulated: false,
        },
        Err(e) => return bad(&e.to_string()),
    };
    let Some(upstream) = s.config.upstreams.get(&route.provider) else {
        return bad(&format!(
            "model `{model}` belongs to provider `{}`, which the proxy has no upstream for",
            route.provider
        ));
    };

    let stream =
        endpoint != Endpoint::Embeddings && json.get("stream").and_then(Value::as_bool) == Some(true);
    let mut rewrite = false;
    if route.model != model {
        json["model"] = Value::String(route.model.clone());
        rewrite = true;
    }
    let strip_usage = endpoint == Endpoint::ChatCompletions
        && stream
        && json
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            != Some(true);
    if strip_usage {
        match json.get_mut("stream_options") {
            Some(Value::Object(o)) => {
                o.insert("include_usage".into(), Value::Bool(true));
            }
            _ => json["stream_options"] = json!({"include_usage": true}),
        }
        rewrite = true;
    }
    let body = if rewrite {
        match serde_json::to_vec(&json) {
            Ok(b) => Bytes::from(b),
            Err(_) => return bad("the request body cannot be re-encoded"),
        }
    } else {
        raw
    };

    let mut record = AgentMetrics::new(route.provider.clone(), route.model.clone());
    record.method = if stream { Method::Stream } else { Method::Generate };
    record.tags = attribution::tags(&parts.headers, &json, s.config.max_tags);
    record.trace_id = attribution::trace_id(&parts.headers);
    drop(json);

    let mut headers = upstream_headers(&parts.headers);
    let mut call = Call::new(
        s.collector.clone(),
        s.prices.clone(),
        record,
        started,
        &s.in_flight,
    );
    match &s.config.auth {
        AuthMode::Passthrough => {
            for h in [header::AUTHORIZATION.as_str(), X_API_KEY] {
                if let Some(v) = parts.headers.get(h).and_then(|v| v.to_str().ok()) {
                    call.mask_key(v.trim_start_matches("Bearer ").trim_start_matches("bearer "));
                }
            }
        }
        AuthMode::ProviderKeys(_) => {
            if !auth::set_provider_key(&mut headers, dialect, upstream.key.as_ref()) {
                call.fail(
                    ErrorClass::Authentication,
                    "the provider key held by the proxy is not a valid header value",
                    None,
                );
                return error_response(
                    dialect,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    "the provider key held by the proxy is not a valid header value",
                );
            }
            if let Some(k) = &upstream.key {
                call.mask_key(k.expose());
            }
        }
    }
    let request_id = call.request_id();

    // Wait for a slot (a client going away meanwhile records `cancelled`).
    let permit = s.limit.clone().acquire_owned().await.ok();

    let send = s
        .http
        .post(upstream.url(endpoint.path()))
        .headers(headers)
        .body(body)
        .send();
    let resp = match tokio::time::timeout(s.config.response_timeout, send).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let (class, status, msg) = if e.is_timeout() {
                (
                    ErrorClass::Timeout,
                    StatusCode::GATEWAY_TIMEOUT,
                    "the upstream did not answer in time",
                )
            } else if e.is_connect() {
                (
                    ErrorClass::Network,
                    StatusCode::BAD_GATEWAY,
                    "cannot connect to the upstream",
                )
            } else {
                (
                    ErrorClass::Network,
                    StatusCode::BAD_GATEWAY,
                    "the upstream request failed",
                )
            };
            tracing::debug!(provider = %upstream.name, error = %e, "upstream request failed");
            call.fail(class, msg, None);
            return error_response(
                dialect,
                status,
                "api_error",
                &format!("steer proxy: {msg} ({})", upstream.name),
            );
        }
        Err(_) => {
            let msg = format!(
                "the upstream sent no response headers within {} ms",
                s.config.response_timeout.as_millis()
            );
            call.fail(ErrorClass::Timeout, &msg, None);
            return error_response(
                dialect,
                StatusCode::GATEWAY_TIMEOUT,
                "api_error",
                &format!("steer proxy: {msg}"),
            );
        }
    };

    let status = resp.status();
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"));
    let observer = if status.as_u16() >= 400 {
        Observer::error(status.as_u16())
    } else if is_sse {
        Observer::sse(dialect)
    } else {
        Observer::json(dialect, endpoint == Endpoint::Embeddings)
    };
    let strip = strip_usage && is_sse && status.is_success();

    let mut builder = Response::builder().status(status.as_u16());
    if let Some(h) = builder.headers_mut() {
        for (name, value) in resp.headers() {
            if is_hop_by_hop(name) || (strip && name == header::CONTENT_LENGTH) {
                continue;
            }
            h.append(name.clone(), value.clone());
        }
        if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id.to_string()).ok()) {
            h.insert(HeaderName::from_static(REQUEST_ID_HEADER), id);
        }
    }
    let relay = Relay::new(resp, observer, strip, call, s.config.idle_timeout, permit);
    match builder.body(Body::from_stream(relay)) {
        Ok(r) => r,
        Err(_) => error_response(
            dialect,
            StatusCode::BAD_GATEWAY,
            "api_error",
            "steer proxy: invalid upstream response headers",
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn upstream_headers_drop_hop_by_hop_and_steer_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive"));
        h.insert("host", HeaderValue::from_static("127.0.0.1:4000"));
        h.insert("x-steer-tag-team", HeaderValue::from_static("a"));
        h.insert("accept-encoding", HeaderValue::from_static("gzip"));
        h.insert("authorization", HeaderValue::from_static("Bearer sk-x"));
        h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        let out = upstream_headers(&h);
        assert!(out.get("connection").is_none() && out.get("host").is_none());
        assert!(out.get("x-steer-tag-team").is_none());
        assert_eq!(out.get("accept-encoding").unwrap(), "identity");
        assert_eq!(out.get("authorization").unwrap(), "Bearer sk-x");
        assert_eq!(out.get("anthropic-version").unwrap(), "2023-06-01");
    }
}
