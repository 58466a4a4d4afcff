//! Provider dialects: request bodies, response parsing and stream decoding.

pub(crate) mod anthropic;
pub(crate) mod openai;
pub(crate) mod sim;

use std::fmt;

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
}

/// An API key. Its Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let k = key.into().trim().to_string();
        (!k.is_empty()).then_some(ApiKey(k))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// An HTTP provider as configured.
#[derive(Debug, Clone)]
pub(crate) struct HttpProvider {
    pub name: String,
    pub dialect: Dialect,
    pub base_url: String,
    pub api_key: Option<ApiKey>,
    /// Environment variable named in the missing-key error; `None` when a key is optional.
    pub key_env: Option<&'static str>,
    /// OpenAI wants `max_completion_tokens`; compatible servers know `max_tokens`.
    pub max_tokens_field: &'static str,
}

impl HttpProvider {
    pub fn url(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        match self.dialect {
            Dialect::OpenAi => format!("{base}/chat/completions"),
            Dialect::Anthropic => format!("{base}/messages"),
        }
    }
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
