//! Forwarding one call: admit it, rewrite it, send it, relay the answer.
//!
//! The steps are separate functions so that every wire admits, sends and
//! relays the same way: [`refuse`] (size cap, proxy key), [`send`] (timeouts, upstream
//! failures recorded and answered in the endpoint's error shape) and
//! [`respond`] (status and headers back, the body through a [`Relay`]).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use steer::wire::Dialect;
use steer_metrics::{AgentMetrics, ErrorClass, Method};
use tokio::sync::OwnedSemaphorePermit;

use super::error::{error_response, read_body, too_large};
use super::request::{is_hop_by_hop, upstream_headers, Prepared};
use super::target::{path_id_ok, query_pairs, target, with_version, BAD_PATH_ID, MAX_MODEL_LEN};
use super::{Endpoint, REQUEST_ID_HEADER};
use crate::attribution;
use crate::auth;
use crate::config::AuthMode;
use crate::relay::{Call, Observer, Relay};
use crate::Shared;

/// The message of a 401 for a missing or wrong proxy key.
pub(super) const WRONG_PROXY_KEY: &str = "missing or wrong proxy key: present STEER_PROXY_KEY as `Authorization: Bearer KEY`, `x-api-key: KEY`, `api-key: KEY` or `x-goog-api-key: KEY`";

/// The refusal of a body announced larger than the cap, or (when the
/// proxy holds the provider keys) of a client without the proxy key: such
/// a client learns nothing else.
pub(super) fn refuse(s: &Shared, headers: &HeaderMap, dialect: Dialect) -> Option<Response> {
    let limit = s.config.max_body_bytes;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Some(too_large(dialect, limit));
        }
    }
    if let AuthMode::ProviderKeys(key) = &s.config.auth {
        if !auth::check_proxy_key(headers, key) {
            return Some(error_response(
                dialect,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                WRONG_PROXY_KEY,
            ));
        }
    }
    None
}

/// A slot for one upstream call, waiting at most the queue timeout
/// (`Err`: the time waited).
pub(super) async fn acquire(s: &Shared) -> Result<Option<OwnedSemaphorePermit>, std::time::Duration> {
    let wait = s.config.queue_timeout;
    match tokio::time::timeout(wait, s.limit.clone().acquire_owned()).await {
        Ok(p) => Ok(p.ok()),
        Err(_) => Err(wait),
    }
}

/// The 503 of a call that found no slot: `Retry-After` says when to retry.
/// `shape` builds the 503 in the wire's own error shape from its status and message.
pub(super) fn busy(
    shape: impl FnOnce(StatusCode, &str) -> Response,
    waited: std::time::Duration,
) -> Response {
    let msg = format!(
        "steer proxy: --max-concurrent upstream calls are in flight and none ended within {} s; retry later",
        waited.as_secs_f64()
    );
    let mut r = shape(StatusCode::SERVICE_UNAVAILABLE, &msg);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Where a call's model comes from, and where it goes.
pub(super) enum Via {
    /// The body's `model`, routed like the client's calls (`provider/`
    /// prefix, price table, name rules).
    Body,
    /// A path naming the model and method (Gemini's native wire), and the
    /// API version (`v1beta`, `v1`): the body goes as it is.
    Path {
        model: String,
        stream: bool,
        version: &'static str,
    },
    /// Azure OpenAI's own paths: the deployment named in the path (else the
    /// body's `model`, the v1 form), forwarded to the same path and query
    /// below `AZURE_OPENAI_ENDPOINT`.
    Azure { deployment: Option<String> },
}

/// Forward one call of `endpoint`, its model found as `via` says.
pub(super) async fn forward_to(s: Arc<Shared>, endpoint: Endpoint, req: Request, via: Via) -> Response {
    let started = Instant::now();
    let dialect = endpoint.dialect();
    let bad = |msg: &str| error_response(dialect, StatusCode::BAD_REQUEST, "invalid_request_error", msg);
    let (parts, body) = req.into_parts();
    if let Some(r) = refuse(&s, &parts.headers, dialect) {
        return r;
    }
    let (limit, client_timeout) = (s.config.max_body_bytes, s.config.client_timeout);
    let raw = match read_body(&parts.headers, body, limit, client_timeout).await {
        Ok(b) => b,
        Err(e) => return e.response(dialect, limit, client_timeout),
    };
    if std::str::from_utf8(&raw).is_err() {
        return bad("the request body is not valid UTF-8 (JSON must be)");
    }
    if let Via::Azure { deployment: Some(d) } = &via {
        if !path_id_ok(d, false) {
            return bad(BAD_PATH_ID);
        }
    }
    let parsed = match &via {
        Via::Path { model, stream, .. } => {
            Prepared::check_object(&raw).map(|()| Prepared::from_path(model.clone(), *stream))
        }
        Via::Body => Prepared::parse(endpoint, &raw),
        Via::Azure { deployment } => Prepared::parse_azure(endpoint, &raw, deployment.as_deref()),
    };
    let mut prepared = match parsed {
        Ok(p) => p,
        Err(msg) => return bad(&msg),
    };
    let (model, stream) = (prepared.model.clone(), prepared.stream);
    if model.len() > MAX_MODEL_LEN {
        return bad(&format!("the model name is longer than {MAX_MODEL_LEN} bytes"));
    }

    let route =
        match steer::routing::route_with(&model, &s.config.prices, |p| s.config.upstreams.contains_key(p)) {
            Ok(r) if r.simulated => return bad("`sim/` models are not served by the proxy"),
            Ok(r) => r,
            Err(e) => return bad(&e.to_string()),
        };
    if route.provider == "bedrock" {
        return bad(super::BEDROCK_ON_OPENAI_WIRE);
    }
    let Some(upstream) = s.config.upstreams.get(&route.provider) else {
        return bad(&format!(
            "model `{model}` belongs to provider `{}`, which the proxy has no upstream for",
            route.provider
        ));
    };
    if upstream.dialect() == Dialect::AzureOpenAi && !path_id_ok(&route.model, false) {
        // The deployment goes into the upstream URL's path.
        return bad(BAD_PATH_ID);
    }
    let mut target = match target(endpoint, upstream, &route.model, stream) {
        Ok(t) => t,
        Err(msg) => return bad(&msg),
    };
    match via {
        Via::Azure { .. } => {
            // Azure's own path: the same path and query (`api-version`) upstream.
            let path = parts
                .uri
                .path_and_query()
                .map_or(parts.uri.path(), |p| p.as_str());
            target.url = format!("{}{path}", upstream.base_url().trim_end_matches('/'));
        }
        Via::Path { version, .. } => target.url = with_version(target.url, upstream.base_url(), version),
        Via::Body => {}
    }
    let body = match prepared.body(raw, &route.model) {
        Ok(b) => b,
        Err(msg) => return bad(&msg),
    };

    let mut record = AgentMetrics::new(route.provider.clone(), route.model.clone());
    record.method = match (endpoint, stream) {
        (Endpoint::Embeddings, _) => Method::Embeddings,
        (_, true) => Method::Stream,
        (_, false) => Method::Generate,
    };
    record.tags = attribution::tags(&parts.headers, prepared.user.as_deref(), s.config.max_tags);
    record.trace_id = attribution::trace_id(&parts.headers);

    // Wait for a slot; none within the queue timeout: 503, nothing sent.
    let permit = match acquire(&s).await {
        Ok(p) => p,
        Err(wait) => {
            return busy(
                |status, msg| error_response(dialect, status, "overloaded_error", msg),
                wait,
            )
        }
    };
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
                for v in parts.headers.get_all(h).iter().filter_map(|v| v.to_str().ok()) {
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
                let msg = "the provider key held by the proxy is not a valid header value";
                call.fail(ErrorClass::Authentication, msg, None);
                return error_response(dialect, StatusCode::INTERNAL_SERVER_ERROR, "api_error", msg);
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

    let request = s.http.post(url).headers(headers).body(body);
    let shape = |status, msg: &str| error_response(dialect, status, "api_error", msg);
    let resp = match send(&s, request, &mut call, shape, upstream.name()).await {
        Ok(r) => r,
        Err(r) => return r,
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
    let strip = prepared.strip_usage && is_sse && status.is_success();
    respond(&s, resp, observer, strip, call, permit, shape)
}

/// Send the request upstream; a failure is recorded on `call` and answered
/// in the endpoint's error shape (`shape`: a status and a message to a response).
pub(super) async fn send(
    s: &Shared,
    request: reqwest::RequestBuilder,
    call: &mut Call,
    shape: impl Fn(StatusCode, &str) -> Response,
    provider: &str,
) -> Result<reqwest::Response, Response> {
    match tokio::time::timeout(s.config.response_timeout, request.send()).await {
        Ok(Ok(r)) => Ok(r),
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
            tracing::debug!(provider, error = %e.without_url(), "upstream request failed");
            call.fail(class, msg, None);
            Err(shape(status, &format!("steer proxy: {msg} ({provider})")))
        }
        Err(_) => {
            let msg = format!(
                "the upstream sent no response headers within {} ms",
                s.config.response_timeout.as_millis()
            );
            call.fail(ErrorClass::Timeout, &msg, None);
            Err(shape(StatusCode::GATEWAY_TIMEOUT, &format!("steer proxy: {msg}")))
        }
    }
}

/// The client's response: the upstream's status and headers (minus
/// hop-by-hop ones; minus `Content-Length` when the body is edited), the
/// record's id, and the body relayed as it arrives.
pub(super) fn respond(
    s: &Shared,
    resp: reqwest::Response,
    observer: Observer,
    strip_usage: bool,
    call: Call,
    permit: Option<OwnedSemaphorePermit>,
    shape: impl Fn(StatusCode, &str) -> Response,
) -> Response {
    let mut builder = Response::builder().status(resp.status().as_u16());
    if let Some(h) = builder.headers_mut() {
        for (name, value) in resp.headers() {
            if is_hop_by_hop(name) || (strip_usage && name == header::CONTENT_LENGTH) {
                continue;
            }
            h.append(name.clone(), value.clone());
        }
        if let Some(id) = call
            .request_id()
            .and_then(|id| HeaderValue::from_str(&id.to_string()).ok())
        {
            h.insert(HeaderName::from_static(REQUEST_ID_HEADER), id);
        }
    }
    let relay = Relay::new(resp, observer, strip_usage, call, s.config.idle_timeout, permit);
    match builder.body(Body::from_stream(relay)) {
        Ok(r) => r,
        Err(_) => shape(
            StatusCode::BAD_GATEWAY,
            "steer proxy: invalid upstream response headers",
        ),
    }
}
