//! Embeddings through `InvokeModel`, in the model family's own format.
//!
//! - Amazon Titan text embeddings (`amazon.titan-embed-text-v1`,
//!   `amazon.titan-embed-text-v2:0`, `amazon.titan-embed-g1-text-02`):
//!   request `{"inputText": ...}`, one text per call; response
//!   `{"embedding": [...], "inputTextTokenCount": n}`.
//! - Cohere embed (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`,
//!   `cohere.embed-v4:0`, and inference profiles of them): request
//!   `{"texts": [...], "input_type": "search_document"}`, at most 96 texts a
//!   call; response `{"embeddings": [[...]]}` or, by type,
//!   `{"embeddings": {"float": [[...]]}}`.
//!
//! Input tokens: the body's `inputTextTokenCount` where there is one, else
//! the `X-Amzn-Bedrock-Input-Token-Count` response header.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_bedrockruntime::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_bedrockruntime::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_bedrockruntime::primitives::Blob;
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

use super::convert::bad_request;
use super::errors;
use crate::error::AttemptError;
use crate::providers::malformed;
use crate::types::Usage;

/// Texts per Cohere call (the model's limit).
const COHERE_BATCH: usize = 96;
/// Titan calls in flight at once (one text each).
const TITAN_CONCURRENCY: usize = 4;
/// The header Bedrock counts a call's input tokens in.
const TOKEN_HEADER: &str = "x-amzn-bedrock-input-token-count";

/// The request/response format of an embedding model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Titan,
    Cohere,
}

/// The format of `model` (a model id, an inference profile or an ARN).
pub(super) fn format_of(model: &str) -> Option<Format> {
    let m = model.to_ascii_lowercase();
    if m.contains("amazon.titan-embed") {
        Some(Format::Titan)
    } else if m.contains("cohere.embed") {
        Some(Format::Cohere)
    } else {
        None
    }
}

pub(super) async fn embed(
    client: &aws_sdk_bedrockruntime::Client,
    inputs: &[String],
    model: &str,
    timeout: Duration,
) -> Result<(Vec<Vec<f32>>, Usage), AttemptError> {
    let format = format_of(model).ok_or_else(|| {
        bad_request(format!(
            "`{model}` is not a Bedrock embedding model steer knows the format of (Amazon Titan text embeddings, Cohere embed)"
        ))
    })?;
    let bodies: Vec<Value> = match format {
        Format::Titan => inputs.iter().map(|t| json!({"inputText": t})).collect(),
        Format::Cohere => inputs
            .chunks(COHERE_BATCH)
            .map(|c| json!({"texts": c, "input_type": "search_document"}))
            .collect(),
    };
    let concurrency = match format {
        Format::Titan => TITAN_CONCURRENCY,
        Format::Cohere => 1,
    };
    let parts: Vec<(Vec<Vec<f32>>, u64)> = futures::stream::iter(bodies)
        .map(|body| invoke(client, body, model, format, timeout))
        .buffered(concurrency)
        .try_collect()
        .await?;
    let mut vectors = Vec::with_capacity(inputs.len());
    let mut tokens = 0u64;
    for (v, t) in parts {
        vectors.extend(v);
        tokens = tokens.saturating_add(t);
    }
    if vectors.len() != inputs.len() {
        return Err(AttemptError::invalid(format!(
            "Bedrock returned {} embeddings for {} inputs",
            vectors.len(),
            inputs.len()
        )));
    }
    Ok((
        vectors,
        Usage {
            input_tokens: tokens,
            ..Usage::default()
        },
    ))
}

/// One `InvokeModel` call: its vectors and input tokens.
async fn invoke(
    client: &aws_sdk_bedrockruntime::Client,
    body: Value,
    model: &str,
    format: Format,
    timeout: Duration,
) -> Result<(Vec<Vec<f32>>, u64), AttemptError> {
    let bytes =
        serde_json::to_vec(&body).map_err(|e| bad_request(format!("cannot encode the request: {e}")))?;
    let counted = TokenCount::default();
    let out = client
        .invoke_model()
        .model_id(model)
        .content_type("application/json")
        .accept("application/json")
        .body(Blob::new(bytes))
        .customize()
        .interceptor(counted.clone())
        .send()
        .await
        .map_err(|e| errors::from_sdk(&e, timeout))?;
    let (vectors, body_tokens) = parse(out.body().as_ref(), format)?;
    Ok((vectors, body_tokens.or_else(|| counted.get()).unwrap_or(0)))
}

/// Vectors and (Titan) input tokens of a response body.
pub(super) fn parse(body: &[u8], format: Format) -> Result<(Vec<Vec<f32>>, Option<u64>), AttemptError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(&e))?;
    let vectors = match format {
        Format::Titan => {
            let e = v
                .get("embedding")
                .or_else(|| v.get("embeddingsByType").and_then(|t| t.get("float")))
                .ok_or_else(|| AttemptError::invalid("Titan response has no embedding"))?;
            vec![vector(e)?]
        }
        Format::Cohere => {
            let list = match v.get("embeddings") {
                Some(Value::Array(a)) => a,
                Some(Value::Object(o)) => o
                    .get("float")
                    .and_then(Value::as_array)
                    .ok_or_else(|| AttemptError::invalid("Cohere response has no float embeddings"))?,
                _ => return Err(AttemptError::invalid("Cohere response has no embeddings")),
            };
            list.iter().map(vector).collect::<Result<_, _>>()?
        }
    };
    Ok((vectors, v.get("inputTextTokenCount").and_then(Value::as_u64)))
}

fn vector(v: &Value) -> Result<Vec<f32>, AttemptError> {
    v.as_array()
        .ok_or_else(|| AttemptError::invalid("an embedding is not an array"))?
        .iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| AttemptError::invalid("an embedding holds a non-number"))
        })
        .collect()
}

/// Reads the input-token header of the response (absent: `None`).
#[derive(Debug, Clone, Default)]
struct TokenCount(Arc<AtomicU64>);

impl TokenCount {
    /// The count, stored plus one so that 0 means "no header".
    fn get(&self) -> Option<u64> {
        self.0.load(Ordering::Relaxed).checked_sub(1)
    }
}

impl Intercept for TokenCount {
    fn name(&self) -> &'static str {
        "steer::bedrock::TokenCount"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_bedrockruntime::error::BoxError> {
        if let Some(n) = context
            .response()
            .headers()
            .get(TOKEN_HEADER)
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            self.0.store(n.saturating_add(1), Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_model_id() {
        assert_eq!(format_of("amazon.titan-embed-text-v2:0"), Some(Format::Titan));
        assert_eq!(format_of("amazon.titan-embed-text-v1"), Some(Format::Titan));
        assert_eq!(format_of("cohere.embed-english-v3"), Some(Format::Cohere));
        assert_eq!(format_of("us.cohere.embed-v4:0"), Some(Format::Cohere));
        assert_eq!(format_of("anthropic.claude-3-haiku-20240307-v1:0"), None);
    }

    #[test]
    fn parses_both_formats() {
        let titan = br#"{"embedding":[0.5,-0.25,1],"embeddingsByType":{"float":[0.5,-0.25,1]},"inputTextTokenCount":6}"#;
        assert_eq!(
            parse(titan, Format::Titan).unwrap(),
            (vec![vec![0.5, -0.25, 1.0]], Some(6))
        );
        let cohere = br#"{"embeddings":[[0.1,0.2],[0.3,0.4]],"id":"x","response_type":"embeddings_floats","texts":["a","b"]}"#;
        let (v, t) = parse(cohere, Format::Cohere).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(t, None);
        let by_type = br#"{"embeddings":{"float":[[1,2]]},"response_type":"embeddings_by_type"}"#;
        assert_eq!(parse(by_type, Format::Cohere).unwrap().0, vec![vec![1.0, 2.0]]);
        assert!(parse(b"{}", Format::Titan).is_err());
        assert!(parse(br#"{"embeddings":[["x"]]}"#, Format::Cohere).is_err());
        assert!(parse(b"not json", Format::Cohere).is_err());
    }
}
