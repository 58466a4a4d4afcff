//! Azure OpenAI's own paths, so Azure SDKs (`openai.AzureOpenAI`, the
//! Azure OpenAI client libraries) work with the proxy as their endpoint:
//!
//! | endpoint | model of the record |
//! |---|---|
//! | `POST /openai/deployments/{deployment}/chat/completions` | the deployment |
//! | `POST /openai/deployments/{deployment}/embeddings` | the deployment |
//! | `POST /openai/v1/chat/completions`, `/openai/v1/embeddings` (the v1 GA form) | the body's `model` (a deployment) |
//!
//! Each goes to the same path and query (`api-version=...`) below
//! `AZURE_OPENAI_ENDPOINT`, measured on the OpenAI wire (the `include_usage`
//! request and usage-chunk removal of a stream included), recorded as
//! provider `azure`: the model is the deployment, the response model and
//! the cost are those of the model Azure reports. Keys as on every route:
//! the client's `api-key` or Entra `Authorization: Bearer` passed through,
//! or, with provider keys, the proxy key checked and the proxy's Azure key
//! (`AZURE_OPENAI_API_KEY`, else the Entra token) set.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::Response;

use super::{forward_to, Endpoint, Via};
use crate::Shared;

/// `POST /openai/deployments/{deployment}/chat/completions`.
pub(crate) async fn deployment_chat(
    State(s): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    req: Request,
) -> Response {
    let via = Via::Azure {
        deployment: Some(deployment),
    };
    forward_to(s, Endpoint::ChatCompletions, req, via).await
}

/// `POST /openai/deployments/{deployment}/embeddings`.
pub(crate) async fn deployment_embeddings(
    State(s): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    req: Request,
) -> Response {
    let via = Via::Azure {
        deployment: Some(deployment),
    };
    forward_to(s, Endpoint::Embeddings, req, via).await
}

/// `POST /openai/v1/chat/completions` (the body's `model` is the deployment).
pub(crate) async fn v1_chat(State(s): State<Arc<Shared>>, req: Request) -> Response {
    forward_to(s, Endpoint::ChatCompletions, req, Via::Azure { deployment: None }).await
}

/// `POST /openai/v1/embeddings` (the body's `model` is the deployment).
pub(crate) async fn v1_embeddings(State(s): State<Arc<Shared>>, req: Request) -> Response {
    forward_to(s, Endpoint::Embeddings, req, Via::Azure { deployment: None }).await
}
