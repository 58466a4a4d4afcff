//! Provider dialects: request bodies, response parsing and stream decoding.

pub(crate) mod anthropic;
#[cfg(feature = "bedrock")]
pub(crate) mod bedrock;
pub(crate) mod gemini;
pub(crate) mod openai;
pub(crate) mod presets;
pub(crate) mod sim;

use serde_json::Value;

use crate::error::AttemptError;
use crate::sse::SseEvent;
use crate::types::{ToolCall, Usage};

/// The wire protocol of an HTTP provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// OpenAI Chat Completions (OpenAI, xAI, Ollama, vLLM, llama.cpp server, ...).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini, Generative Language API (`generateContent`).
    Gemini,
    /// Azure OpenAI: Chat Completions on a deployment
    /// (`/openai/deployments/{deployment}/chat/completions?api-version=..`).
    AzureOpenAi,
}

impl Dialect {
    /// Parse a whole (2xx) response body.
    pub(crate) fn parse(self, body: &[u8]) -> Result<Completion, AttemptError> {
        match self {
            Dialect::OpenAi | Dialect::AzureOpenAi => openai::parse(body),
            Dialect::Anthropic => anthropic::parse(body),
            Dialect::Gemini => gemini::parse(body),
        }
    }

    /// A decoder for a streamed answer.
    pub(crate) fn decoder(self) -> Box<dyn Decoder> {
        match self {
            Dialect::OpenAi | Dialect::AzureOpenAi => Box::<openai::StreamDecoder>::default(),
            Dialect::Anthropic => Box::<anthropic::StreamDecoder>::default(),
            Dialect::Gemini => Box::<gemini::StreamDecoder>::default(),
        }
    }

    /// Normalised usage from a provider `usage` object.
    pub(crate) fn usage(self, u: &Value) -> Usage {
        match self {
            Dialect::OpenAi | Dialect::AzureOpenAi => openai::usage(u),
            Dialect::Anthropic => anthropic::usage(u),
            Dialect::Gemini => gemini::usage(u),
        }
    }
}

/// Whether a finish reason means the provider stopped the answer for its
/// content (OpenAI `content_filter`, Anthropic `refusal`, Gemini safety
/// blocks, Bedrock guardrails): such a call is a `content_filter` failure.
pub(crate) fn is_content_stop(reason: &str) -> bool {
    matches!(
        reason,
        "content_filter" | "refusal" | "guardrail_intervened" | "content_filtered"
    ) || gemini::BLOCKED.contains(&reason)
}

/// An API key: the shared secret type (`Debug` and `Display` print `***`).
pub(crate) type ApiKey = steer_metrics::http::Secret;

/// A key as given (trimmed), `None` when empty.
pub(crate) fn api_key(key: impl Into<String>) -> Option<ApiKey> {
    let k = key.into().trim().to_string();
    (!k.is_empty()).then(|| ApiKey::new(k))
}

/// How a provider wants its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// `Authorization: Bearer KEY` (OpenAI and compatible servers, Azure Entra tokens).
    Bearer,
    /// `x-api-key: KEY` plus `anthropic-version`.
    Anthropic,
    /// `api-key: KEY` (Azure OpenAI keys).
    AzureKey,
    /// `x-goog-api-key: KEY` (Gemini).
    Google,
}

/// An HTTP provider as configured.
#[derive(Debug, Clone)]
pub(crate) struct HttpProvider {
    pub name: String,
    pub dialect: Dialect,
    pub base_url: String,
    pub api_key: Option<ApiKey>,
    pub auth: Auth,
    /// Environment variable named in the missing-key error; `None` when a key is optional.
    pub key_env: Option<&'static str>,
    /// OpenAI wants `max_completion_tokens`; compatible servers know `max_tokens`.
    pub max_tokens_field: &'static str,
    /// Azure OpenAI's `api-version` query parameter.
    pub api_version: Option<String>,
}

impl HttpProvider {
    /// A provider of `dialect` at `base_url` with the dialect's usual key header.
    pub fn new(
        name: impl Into<String>,
        dialect: Dialect,
        base_url: impl Into<String>,
        api_key: Option<ApiKey>,
    ) -> Self {
        HttpProvider {
            name: name.into(),
            dialect,
            base_url: base_url.into(),
            api_key,
            auth: match dialect {
                Dialect::OpenAi => Auth::Bearer,
                Dialect::Anthropic => Auth::Anthropic,
                Dialect::Gemini => Auth::Google,
                Dialect::AzureOpenAi => Auth::AzureKey,
            },
            key_env: None,
            max_tokens_field: "max_tokens",
            api_version: None,
        }
    }

    fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }

    fn api_version(&self) -> String {
        let v = self.api_version.as_deref().unwrap_or(presets::AZURE_API_VERSION);
        url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
    }

    /// Where a chat call of `model` goes (for Azure, `model` is the deployment).
    pub fn url(&self, model: &str, stream: bool) -> String {
        let base = self.base();
        match self.dialect {
            Dialect::OpenAi => format!("{base}/chat/completions"),
            Dialect::Anthropic => format!("{base}/messages"),
            Dialect::Gemini => {
                let m = path_segment(model);
                if stream {
                    format!("{base}/models/{m}:streamGenerateContent?alt=sse")
                } else {
                    format!("{base}/models/{m}:generateContent")
                }
            }
            Dialect::AzureOpenAi => format!(
                "{base}/openai/deployments/{}/chat/completions?api-version={}",
                path_segment(model),
                self.api_version()
            ),
        }
    }

    /// Where an embeddings call of `model` goes, if the dialect has one.
    pub fn embeddings_url(&self, model: &str) -> Option<String> {
        let base = self.base();
        match self.dialect {
            Dialect::OpenAi => Some(format!("{base}/embeddings")),
            Dialect::AzureOpenAi => Some(format!(
                "{base}/openai/deployments/{}/embeddings?api-version={}",
                path_segment(model),
                self.api_version()
            )),
            Dialect::Gemini => Some(format!(
                "{base}/models/{}:batchEmbedContents",
                path_segment(model)
            )),
            Dialect::Anthropic => None,
        }
    }

    /// The request body of a chat call.
    pub fn body(&self, req: &crate::types::Request, model: &str, stream: bool) -> Value {
        match self.dialect {
            Dialect::OpenAi | Dialect::AzureOpenAi => openai::body(req, model, stream, self.max_tokens_field),
            Dialect::Anthropic => anthropic::body(req, model, stream),
            Dialect::Gemini => gemini::body(req, model),
        }
    }
}

/// `s` percent-encoded for one URL path segment.
fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A parsed answer, common to every provider.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// Tool calls the model asked for (function and custom tools).
    pub tool_calls: Vec<ToolCall>,
    /// Why the model stopped, as the provider said it.
    pub finish_reason: Option<String>,
    /// Normalised usage.
    pub usage: Usage,
    /// The model the provider reported.
    pub response_model: Option<String>,
}

/// An embeddings answer: one vector per input, usage, the model reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub usage: Usage,
    pub model: Option<String>,
}

/// What one stream event carried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Chunk {
    /// No model output (metadata, usage, keep-alive, the end).
    Nothing,
    /// Model output that is not answer text: reasoning/thinking, a tool-call
    /// delta, a refusal. Counts for time to first token.
    Output,
    /// A piece of answer text.
    Text(String),
}

impl Chunk {
    /// Whether the event carried model output of any kind.
    pub fn is_output(&self) -> bool {
        !matches!(self, Chunk::Nothing)
    }
}

/// Turns a provider's server-sent events into text deltas and a final [`Completion`].
pub(crate) trait Decoder: Send {
    /// Handle one event: what model output, if any, it carried.
    fn on_event(&mut self, ev: SseEvent) -> Result<Chunk, AttemptError>;
    /// Whether the provider signalled the end of the stream.
    fn is_done(&self) -> bool;
    /// The whole answer, once the byte stream has ended.
    fn finish(self: Box<Self>) -> Result<Completion, AttemptError>;
}

pub(crate) fn u64_at(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

pub(crate) fn opt_u64_at(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

pub(crate) fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

pub(crate) fn malformed(e: &serde_json::Error) -> AttemptError {
    AttemptError::invalid(format!("malformed JSON from provider: {e}"))
}

/// An error the provider reported (HTTP error status or an error object in a 200 / stream).
pub(crate) fn api_error(
    status: Option<u16>,
    error_type: Option<String>,
    code: Option<String>,
    message: Option<String>,
) -> AttemptError {
    let (class, retryable) = crate::error::classify(status, error_type.as_deref(), code.as_deref());
    let message = message.unwrap_or_else(|| match status {
        Some(s) => format!("HTTP {s}"),
        None => "provider error".to_string(),
    });
    // Not truncated here: the client redacts the key first, then cuts
    // (a key straddling a cut made first would leak its prefix).
    let mut e = AttemptError::new(crate::error::FailureKind::Api, class, message);
    e.retryable = retryable;
    e.status = status;
    e.provider_code = code.or(error_type);
    e
}

/// An error object inside a successful response or a stream event, if there is one.
pub(crate) fn embedded_error(v: &Value) -> Option<AttemptError> {
    let err = v.get("error")?;
    if err.is_null() {
        return None;
    }
    let (t, c, m) = crate::error::parse_error_body(v.to_string().as_bytes());
    Some(api_error(
        None,
        t,
        c,
        m.or_else(|| err.as_str().map(str::to_string)),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(d: &mut dyn Decoder, events: &[(Option<String>, String)]) {
        for (event, data) in events {
            let _ = d.on_event(SseEvent {
                event: event.clone(),
                data: data.clone(),
                id: None,
            });
        }
    }

    proptest! {
        /// Decoders never panic, whatever the provider sends.
        #[test]
        fn decoders_never_panic(events in proptest::collection::vec(
            (proptest::option::of("[a-z_]{0,20}"),
             prop_oneof![
                 ".{0,40}",
                 // Plausible JSON shapes with random values.
                 "\\{\"type\":\"(message_start|content_block_start|content_block_delta|message_delta|error|message_stop)\",\"index\":[0-9]{1,3},\"delta\":\\{\"type\":\"(text_delta|input_json_delta)\",\"text\":\"[a-z]{0,5}\"\\}\\}",
                 "\\{\"choices\":\\[\\{\"index\":[0-9]{1,20},\"delta\":\\{\"content\":(null|\"x\"|3),\"tool_calls\":\\[\\{\"index\":[0-9]{1,3}\\}\\]\\}\\}\\],\"usage\":(null|\\{\"prompt_tokens\":[0-9]{1,20}\\})\\}",
                 Just("[DONE]".to_string()),
             ]),
            0..12,
        )) {
            let mut a = anthropic::StreamDecoder::default();
            run(&mut a, &events);
            let _ = Box::new(a).finish();
            let mut o = openai::StreamDecoder::default();
            run(&mut o, &events);
            let _ = Box::new(o).finish();
        }

        #[test]
        fn response_parsers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = openai::parse(&body);
            let _ = anthropic::parse(&body);
            let _ = crate::error::parse_error_body(&body);
        }
    }

    #[test]
    fn huge_token_counts_saturate_instead_of_overflowing() {
        let u = openai::usage(
            &serde_json::json!({"prompt_tokens": u64::MAX, "completion_tokens": u64::MAX,
            "total_tokens": 1, "completion_tokens_details": {"reasoning_tokens": u64::MAX}}),
        );
        assert_eq!(u.input_tokens, u64::MAX);
        let u = anthropic::usage(
            &serde_json::json!({"input_tokens": u64::MAX, "cache_read_input_tokens": u64::MAX,
            "cache_creation_input_tokens": u64::MAX, "output_tokens": 1}),
        );
        assert_eq!(u.input_tokens, u64::MAX);
    }
}
