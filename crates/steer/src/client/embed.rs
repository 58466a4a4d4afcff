//! Embeddings calls: [`SteerClient::embed`], measured like every call
//! (operation `embeddings`: input tokens, cost, latency, retries, errors).

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::providers::{gemini, Embeddings};
use crate::types::{EmbedRequest, EmbedResponse, Usage};

impl SteerClient {
    /// Embed one or more texts with `model` (`text-embedding-3-small`,
    /// `gemini/gemini-embedding-001`, `azure/<deployment>`,
    /// `ollama/nomic-embed-text`, `bedrock/amazon.titan-embed-text-v2:0`,
    /// `sim/<model>`). One record per call, with operation `embeddings`.
    pub async fn embed(
        &self,
        request: impl Into<EmbedRequest>,
        model: &str,
    ) -> Result<EmbedResponse, SteerError> {
        let request = request.into();
        let route = self.route(model)?;
        let mut req = Request::default();
        req.tags.clone_from(&request.tags);
        req.request_id = request.request_id;
        req.timeout = request.timeout;
        let mut call = Call::start(self.inner.clone(), route, &req, Method::Embeddings);
        if request.inputs.is_empty() {
            return Err(call.fail(AttemptError::invalid("nothing to embed: give at least one text")));
        }
        loop {
            match self.attempt_embed(&request.inputs, &mut call).await {
                Ok(e) => {
                    let c = Completion {
                        usage: e.usage,
                        response_model: e.model,
                        ..Completion::default()
                    };
                    let m = call.record_success(&c);
                    return Ok(EmbedResponse {
                        embeddings: e.vectors,
                        usage: e.usage,
                        provider: m.provider.clone(),
                        model: m.response_model.clone().unwrap_or_else(|| m.model.clone()),
                        metrics: m,
                    });
                }
                Err(e) => match call.retry_wait(&e) {
                    Some(wait) => call.backoff(wait, &e).await,
                    None => return Err(call.fail(e)),
                },
            }
        }
    }

    async fn attempt_embed(&self, inputs: &[String], call: &mut Call) -> Result<Embeddings, AttemptError> {
        let t = call.attempt_timeout();
        let model = call.route.model.clone();
        if call.route.simulated {
            return Ok(sim_embeddings(inputs, &model));
        }
        let inner = &*self.inner;
        #[cfg(feature = "bedrock")]
        if call.route.provider == "bedrock" {
            let bedrock = inner.bedrock().await?;
            let (vectors, usage) = bedrock.embed(inputs, &model, t).await?;
            return Ok(Embeddings {
                vectors,
                usage,
                model: Some(model),
            });
        }
        let provider = inner.http_provider(&call.route.provider)?;
        let Some(url) = provider.embeddings_url(&model) else {
            let mut e = AttemptError::invalid(format!("{} has no embeddings API", provider.name));
            e.class = ErrorClass::InvalidRequest;
            return Err(e);
        };
        let body = match provider.dialect {
            Dialect::Gemini => gemini::embed_body(inputs, &model),
            _ => serde_json::json!({ "model": model, "input": inputs }),
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| AttemptError::invalid(format!("cannot encode the request: {e}")))?;
        let once = async {
            let resp = send(inner, &provider, &url, &body, t).await?;
            let bytes = read_limited(resp, inner.max_response_bytes, t).await?;
            match provider.dialect {
                Dialect::Gemini => gemini::parse_embeddings(&bytes).map(|e| Embeddings {
                    model: Some(model.clone()),
                    ..e
                }),
                _ => openai::parse_embeddings(&bytes),
            }
        };
        tokio::time::timeout(t, once)
            .await
            .unwrap_or_else(|_| Err(AttemptError::timeout(t)))
    }
}

/// Deterministic unit vectors for the simulated provider (8 dimensions; one
/// token per 4 characters, as the simulated chat calls count them).
fn sim_embeddings(inputs: &[String], model: &str) -> Embeddings {
    let vectors = inputs
        .iter()
        .map(|text| {
            let mut rng = fastrand::Rng::with_seed(text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            }));
            let v: Vec<f32> = (0..8).map(|_| rng.f32() * 2.0 - 1.0).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::EPSILON);
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect();
    let tokens = inputs.iter().map(|t| (t.chars().count() as u64 / 4).max(1)).sum();
    let usage = Usage {
        input_tokens: tokens,
        ..Usage::default()
    };
    Embeddings {
        vectors,
        usage,
        model: Some(model.to_string()),
    }
}
