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
use std::borrow::Cow;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use steer::presets::AuthHeader;
use steer::wire::Dialect;
use steer_metrics::{AgentMetrics, ErrorClass, Method};

use crate::attribution;
use crate::auth;
use crate::config::{AuthMode, Upstream};
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
    /// Gemini's native `generateContent` / `streamGenerateContent`.
    Gemini,
}

impl Endpoint {
    fn dialect(self) -> Dialect {
        match self {
            Endpoint::ChatCompletions | Endpoint::Embeddings => Dialect::OpenAi,
            Endpoint::Messages => Dialect::Anthropic,
            Endpoint::Gemini => Dialect::Gemini,
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

/// `POST /v1beta/models/{model}:generateContent` and
/// `:streamGenerateContent` (Gemini's native wire).
pub(crate) async fn gemini(
    State(s): State<Arc<Shared>>,
    Path(target): Path<String>,
    req: Request,
) -> Response {
    let (model, stream) = match target.rsplit_once(':') {
        Some((m, "generateContent")) if !m.is_empty() => (m, false),
        Some((m, "streamGenerateContent")) if !m.is_empty() => (m, true),
        _ => {
            return error_response(
                Dialect::Gemini,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "steer proxy serves /v1beta/models/{model}:generateContent and :streamGenerateContent",
            )
        }
    };
    // The model as routed: a bare Gemini name, or `provider/model`.
    let model = if model.contains('/') {
        model.to_string()
    } else {
        format!("gemini/{model}")
    };
    forward_to(s, Endpoint::Gemini, req, Some((model, stream))).await
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

/// Where a call goes: the upstream URL, the dialect its answer is measured
/// in, and the header the proxy's key goes in.
struct Target {
    url: String,
    dialect: Dialect,
    auth: AuthHeader,
}

/// The upstream URL of `endpoint` for a call of `model` on `up`.
fn target(endpoint: Endpoint, up: &Upstream, model: &str, stream: bool) -> Result<Target, String> {
    let openai = |path: &str| Target {
        url: up.url(path),
        dialect: Dialect::OpenAi,
        auth: AuthHeader::Bearer,
    };
    if up.base_url().is_empty() {
        let var = if up.name() == "azure" {
            "AZURE_OPENAI_ENDPOINT"
        } else {
            "its base URL"
        };
        return Err(format!(
            "provider `{}` has no endpoint configured: set {var}",
            up.name()
        ));
    }
    let dialect = up.dialect();
    let wrong = |wire: &str| {
        Err(format!(
            "provider `{}` is not served on {wire}; use {}",
            up.name(),
            match dialect {
                Dialect::Gemini => "/v1/chat/completions or /v1beta/models/{model}:generateContent",
                _ => "/v1/chat/completions",
            }
        ))
    };
    Ok(match (endpoint, dialect) {
        (Endpoint::ChatCompletions, Dialect::AzureOpenAi) => Target {
            url: up.info().chat_url(model, stream),
            dialect: Dialect::OpenAi,
            auth: up.auth(),
        },
        (Endpoint::Embeddings, Dialect::AzureOpenAi) => Target {
            url: up.info().embeddings_url(model).unwrap_or_default(),
            dialect: Dialect::OpenAi,
            auth: up.auth(),
        },
        // Gemini's OpenAI-compatible endpoint.
        (Endpoint::ChatCompletions, Dialect::Gemini) => openai("openai/chat/completions"),
        (Endpoint::Embeddings, Dialect::Gemini) => openai("openai/embeddings"),
        (Endpoint::Embeddings, Dialect::Anthropic) => return wrong("/v1/embeddings"),
        // Anthropic's OpenAI-compatible endpoint, and OpenAI-compatible servers.
        (Endpoint::ChatCompletions, _) => openai("chat/completions"),
        (Endpoint::Embeddings, _) => openai("embeddings"),
        (Endpoint::Messages, Dialect::Gemini | Dialect::AzureOpenAi) => return wrong("/v1/messages"),
        (Endpoint::Messages, _) => Target {
            url: up.url("messages"),
            dialect: Dialect::Anthropic,
            auth: AuthHeader::Anthropic,
        },
        (Endpoint::Gemini, Dialect::Gemini) => Target {
            url: up.info().chat_url(model, stream),
            dialect: Dialect::Gemini,
            auth: AuthHeader::Google,
        },
        (Endpoint::Gemini, _) => {
            return Err(format!(
                "/v1beta/models/... is Gemini's API; `{model}` is a model of `{}`",
                up.name()
            ))
        }
    })
}

/// The decoded pairs of a request's query string.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return Vec::new();
    };
    reqwest::Url::parse(&format!("http://q/?{q}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The fields of a request body the proxy reads, borrowed from it: the
/// rest of the body is checked to be JSON but not built into a tree.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

/// A JSON string's value (`None` when it is not a string).
fn json_str(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = raw?.get();
    if let Ok(s) = serde_json::from_str::<&str>(raw) {
        return Some(Cow::Borrowed(s));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// The byte range of `part` (a slice of `whole`) in `whole`.
fn span(whole: &[u8], part: &RawValue) -> (usize, usize) {
    let start = (part.get().as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    (start, start + part.get().len())
}

/// `body` with the byte ranges replaced (ranges sorted, not overlapping).
fn splice(body: &[u8], mut edits: Vec<(usize, usize, String)>) -> Bytes {
    edits.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(body.len() + edits.iter().map(|e| e.2.len()).sum::<usize>());
    let mut at = 0;
    for (start, end, text) in edits {
        out.extend_from_slice(&body[at..start]);
        out.extend_from_slice(text.as_bytes());
        at = end;
    }
    out.extend_from_slice(&body[at..]);
    Bytes::from(out)
}

/// What the proxy learnt from the request: the model, whether it streams,
/// the body to send upstream, the tags.
struct Prepared {
    model: String,
    stream: bool,
    strip_usage: bool,
    user: Option<String>,
}

async fn forward(s: Arc<Shared>, endpoint: Endpoint, req: Request) -> Response {
    forward_to(s, endpoint, req, None).await
}

/// Forward one call; `gemini` is the model and method of a Gemini-native path.
async fn forward_to(
    s: Arc<Shared>,
    endpoint: Endpoint,
    req: Request,
    gemini: Option<(String, bool)>,
) -> Response {
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
                "missing or wrong proxy key: present STEER_PROXY_KEY as `Authorization: Bearer KEY`, `x-api-key: KEY` or `x-goog-api-key: KEY`",
            );
        }
    }

    let raw = match read_body(body, limit, dialect).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut edits = Vec::new();
    let is_gemini = gemini.is_some();
    let prepared = if let Some((model, stream)) = gemini {
        // Gemini's native wire: the model is in the path, the body goes as is.
        Prepared {
            model,
            stream,
            strip_usage: false,
            user: None,
        }
    } else {
        if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return bad("the request body must be a JSON object");
        }
        let head: Head<'_> = match serde_json::from_slice(&raw) {
            Ok(h) => h,
            Err(e) => return bad(&format!("the request body is not valid JSON: {e}")),
        };
        let Some(model) = json_str(head.model) else {
            return bad("the request body has no `model` string");
        };
        let stream = endpoint != Endpoint::Embeddings && head.stream.is_some_and(|v| v.get() == "true");
        let include_usage = head
            .stream_options
            .and_then(|o| serde_json::from_str::<Value>(o.get()).ok());
        let strip_usage = endpoint == Endpoint::ChatCompletions
            && stream
            && include_usage
                .as_ref()
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                != Some(true);
        if strip_usage {
            // Ask for usage: add `stream_options`, or `include_usage` to it.
            match (head.stream_options, include_usage) {
                (Some(raw_opts), Some(Value::Object(mut o))) => {
                    o.insert("include_usage".into(), Value::Bool(true));
                    let (a, b) = span(&raw, raw_opts);
                    edits.push((a, b, Value::Object(o).to_string()));
                }
                (Some(raw_opts), _) => {
                    let (a, b) = span(&raw, raw_opts);
                    edits.push((a, b, r#"{"include_usage":true}"#.to_string()));
                }
                (None, _) => {
                    let open = raw.iter().position(|&b| b == b'{').map_or(0, |i| i + 1);
                    edits.push((
                        open,
                        open,
                        r#""stream_options":{"include_usage":true},"#.to_string(),
                    ));
                }
            }
        }
        let user = json_str(head.user)
            .or_else(|| {
                head.metadata.and_then(|m| {
                    serde_json::from_str::<Value>(m.get()).ok().and_then(|v| {
                        v.get("user_id")
                            .and_then(Value::as_str)
                            .map(|u| Cow::Owned(u.to_string()))
                    })
                })
            })
            .map(Cow::into_owned);
        if let Some(m) = head.model {
            // Remembered to rewrite a `provider/` prefix once routed.
            let (a, b) = span(&raw, m);
            edits.push((a, b, String::new()));
        }
        Prepared {
            model: model.into_owned(),
            stream,
            strip_usage,
            user,
        }
    };
    let Prepared {
        model,
        stream,
        strip_usage,
        user,
    } = prepared;

    let route =
        match steer::routing::route_with(&model, &s.config.prices, |p| s.config.upstreams.contains_key(p)) {
            Ok(r) if r.simulated => return bad("`sim/` models are not served by the proxy"),
            Ok(r) => r,
            Err(e) => return bad(&e.to_string()),
        };
    if route.provider == "bedrock" {
        return bad("`bedrock/` models are not served by the proxy: Bedrock needs SigV4-signed requests with AWS credentials, which the proxy does not do; call Bedrock with the steer client (feature `bedrock`) or through an OpenAI-compatible Bedrock gateway registered with --openai-compatible");
    }
    let Some(upstream) = s.config.upstreams.get(&route.provider) else {
        return bad(&format!(
            "model `{model}` belongs to provider `{}`, which the proxy has no upstream for",
            route.provider
        ));
    };
    let target = match target(endpoint, upstream, &route.model, stream) {
        Ok(t) => t,
        Err(msg) => return bad(&msg),
    };

    // The model edit (last, if any): the model without its prefix, or nothing.
    if !is_gemini {
        let model_edit = edits.pop();
        if let Some((a, b, _)) = model_edit.filter(|_| route.model != model) {
            match serde_json::to_string(&route.model) {
                Ok(m) => edits.push((a, b, m)),
                Err(_) => return bad("the request body cannot be re-encoded"),
            }
        }
    }
    let body = if edits.is_empty() {
        raw
    } else {
        splice(&raw, edits)
    };

    let mut record = AgentMetrics::new(route.provider.clone(), route.model.clone());
    record.method = match (endpoint, stream) {
        (Endpoint::Embeddings, _) => Method::Embeddings,
        (_, true) => Method::Stream,
        (_, false) => Method::Generate,
    };
    record.tags = attribution::tags(&parts.headers, user.as_deref(), s.config.max_tags);
    record.trace_id = attribution::trace_id(&parts.headers);

    let mut headers = upstream_headers(&parts.headers);
    let mut call = Call::new(
        s.collector.clone(),
        s.prices.clone(),
        record,
        started,
        &s.in_flight,
    );
    let mut url = target.url;
    match &s.config.auth {
        AuthMode::Passthrough => {
            for h in auth::KEY_HEADERS {
                if let Some(v) = parts.headers.get(h).and_then(|v| v.to_str().ok()) {
                    call.mask_key(v.trim_start_matches("Bearer ").trim_start_matches("bearer "));
                }
            }
            if endpoint == Endpoint::Gemini {
                for (k, v) in query_pairs(parts.uri.query()) {
                    if k == "key" {
                        call.mask_key(&v);
                    }
                }
            }
        }
        AuthMode::ProviderKeys(_) => {
            if !auth::set_provider_key(&mut headers, target.auth, upstream.key.as_ref()) {
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
    if endpoint == Endpoint::Gemini {
        // The client's query (e.g. `alt=sse`), without a `key` when the proxy holds the key.
        let keep_key = matches!(s.config.auth, AuthMode::Passthrough);
        let pairs: Vec<(String, String)> = query_pairs(parts.uri.query())
            .into_iter()
            .filter(|(k, _)| keep_key || k != "key")
            .filter(|(k, _)| !(k == "alt" && url.contains("alt=")))
            .collect();
        if !pairs.is_empty() {
            if let Ok(mut u) = reqwest::Url::parse(&url) {
                u.query_pairs_mut().extend_pairs(pairs);
                url = u.to_string();
            }
        }
    }
    let request_id = call.request_id();

    // Wait for a slot (a client going away meanwhile records `cancelled`).
    let permit = s.limit.clone().acquire_owned().await.ok();

    let send = s.http.post(url).headers(headers).body(body).send();
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
            tracing::debug!(provider = %upstream.name(), error = %e.without_url(), "upstream request failed");
            call.fail(class, msg, None);
            return error_response(
                dialect,
                status,
                "api_error",
                &format!("steer proxy: {msg} ({})", upstream.name()),
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
        Observer::sse(target.dialect)
    } else {
        Observer::json(target.dialect, endpoint == Endpoint::Embeddings)
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
