//! The endpoints: the providers' wire APIs, `/metrics` and `/healthz`.
//!
//! | endpoint | wire | upstream path |
//! |---|---|---|
//! | `POST /v1/chat/completions` | OpenAI | `{base}/chat/completions` |
//! | `POST /v1/embeddings` | OpenAI | `{base}/embeddings` |
//! | `POST /v1/messages` | Anthropic | `{base}/messages` |
//! | `POST /v1beta/models/{model}:generateContent` (and `/v1/models/...`) | Gemini | `{GEMINI_BASE_URL}/models/{model}:generateContent` (its version segment the path's) |
//! | `POST /openai/deployments/{deployment}/chat/completions`, `/embeddings`; `/openai/v1/...` | Azure OpenAI (see `azure`) | `{AZURE_OPENAI_ENDPOINT}` + the same path and query |
//! | `POST /model/{modelId}/converse`, `/converse-stream`, `/invoke`, `/invoke-with-response-stream` | Bedrock Runtime (feature `bedrock`, see `bedrock`) | `{endpoint}/model/{modelId}/...`, re-signed |
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
//!
//! * [`forward`](self::forward): admit, rewrite, send, relay — one call;
//! * `request`: the headers and body that go upstream;
//! * `target`: the upstream URL of an endpoint for a routed model;
//! * `error`: the proxy's own errors in each endpoint's shape;
//! * `azure`: Azure OpenAI's own paths (deployments, v1);
//! * `bedrock`: Bedrock Runtime's own routes, signed with the proxy's AWS credentials.

mod azure;
#[cfg(feature = "bedrock")]
mod bedrock;
mod error;
mod forward;
mod request;
mod target;

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use steer::wire::Dialect;

use crate::Shared;
pub(crate) use azure::{deployment_chat, deployment_embeddings, v1_chat, v1_embeddings};
#[cfg(feature = "bedrock")]
pub(crate) use bedrock::bedrock;
pub(crate) use error::error_response;
use forward::{forward_to, Via};

/// The header carrying the id of the call's record.
pub const REQUEST_ID_HEADER: &str = "x-steer-request-id";

/// The 400 of a `bedrock/` model on a JSON wire.
#[cfg(feature = "bedrock")]
const BEDROCK_ON_OPENAI_WIRE: &str = "`bedrock/` models are served on Bedrock Runtime's own API, not on the OpenAI/Anthropic wires: POST /model/{modelId}/converse or /converse-stream (an AWS SDK with endpoint_url = the proxy; the proxy signs with its AWS credentials, SigV4), or register an OpenAI-compatible Bedrock gateway with --openai-compatible";
/// The 400 of a `bedrock/` model on a JSON wire.
#[cfg(not(feature = "bedrock"))]
const BEDROCK_ON_OPENAI_WIRE: &str = "`bedrock/` models are not served by this build of the proxy (Bedrock needs SigV4-signed requests: build steer-proxy with the `bedrock` feature for its /model/{modelId}/converse routes); call Bedrock with the steer client (feature `bedrock`) or through an OpenAI-compatible Bedrock gateway registered with --openai-compatible";

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
    forward_to(s, Endpoint::ChatCompletions, req, Via::Body).await
}

pub(crate) async fn embeddings(State(s): State<Arc<Shared>>, req: Request) -> Response {
    forward_to(s, Endpoint::Embeddings, req, Via::Body).await
}

pub(crate) async fn messages(State(s): State<Arc<Shared>>, req: Request) -> Response {
    forward_to(s, Endpoint::Messages, req, Via::Body).await
}

/// `POST /v1beta/models/{model}:generateContent` and
/// `:streamGenerateContent` (Gemini's native wire).
pub(crate) async fn gemini(
    State(s): State<Arc<Shared>>,
    Path(target): Path<String>,
    req: Request,
) -> Response {
    gemini_native(s, target, "v1beta", req).await
}

/// The same on `/v1/models/...`: the API version the `google-genai` SDKs
/// name by default.
pub(crate) async fn gemini_v1(
    State(s): State<Arc<Shared>>,
    Path(target): Path<String>,
    req: Request,
) -> Response {
    gemini_native(s, target, "v1", req).await
}

async fn gemini_native(s: Arc<Shared>, target: String, version: &'static str, req: Request) -> Response {
    let (model, stream) = match target.rsplit_once(':') {
        Some((m, "generateContent")) if !m.is_empty() => (m, false),
        Some((m, "streamGenerateContent")) if !m.is_empty() => (m, true),
        _ => {
            return error_response(
                Dialect::Gemini,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "steer proxy serves /v1beta/models/{model}:generateContent and :streamGenerateContent (and the same below /v1/)",
            )
        }
    };
    let bare = model.split_once('/').map_or(model, |(_, m)| m);
    if !target::path_id_ok(bare, false) {
        return error_response(
            Dialect::Gemini,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            target::BAD_PATH_ID,
        );
    }
    // The model as routed: a bare Gemini name, or `provider/model`.
    let model = if model.contains('/') {
        model.to_string()
    } else {
        format!("gemini/{model}")
    };
    let via = Via::Path {
        model,
        stream,
        version,
    };
    forward_to(s, Endpoint::Gemini, req, via).await
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

/// A known path with another method than it serves: 405, in the OpenAI error shape.
pub(crate) async fn method_not_allowed(req: Request) -> Response {
    let msg = format!(
        "{} is not served on {}: the wire endpoints take POST, /metrics and /healthz GET",
        req.method(),
        req.uri().path()
    );
    let mut r = error_response(
        Dialect::OpenAi,
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        &msg,
    );
    let allow = if matches!(req.uri().path(), "/metrics" | "/healthz") {
        "GET, HEAD"
    } else {
        "POST"
    };
    r.headers_mut()
        .insert(header::ALLOW, axum::http::HeaderValue::from_static(allow));
    r
}

pub(crate) async fn not_found(req: Request) -> Response {
    let msg = format!(
        "steer proxy serves POST /v1/chat/completions, /v1/embeddings, /v1/messages, /v1beta/models/{{model}}:generateContent, /openai/deployments/{{deployment}}/chat/completions and /embeddings (Azure OpenAI), /model/{{modelId}}/converse (Bedrock), GET /metrics and /healthz; not {} {}",
        req.method(),
        req.uri().path()
    );
    error_response(Dialect::OpenAi, StatusCode::NOT_FOUND, "not_found_error", &msg)
}
