//! The providers' wire formats, for programs that relay provider traffic
//! (such as a gateway) and want the same measurements as [`SteerClient`](crate::SteerClient).
//!
//! The same decoders the client uses: [`parse_response`] for a whole
//! response body, [`StreamDecoder`] for server-sent events (feed it events
//! from [`SseParser`](crate::sse::SseParser)), [`parse_error`] for an error
//! answer. Fill a record from the result with
//! [`measure::apply_completion`](crate::measure::apply_completion).
//!
//! ```
//! use steer::wire::{parse_response, Dialect};
//! let body = br#"{"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,
//!   "message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],
//!   "usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}"#;
//! let c = parse_response(Dialect::OpenAi, body).unwrap();
//! assert_eq!(c.finish_reason.as_deref(), Some("stop"));
//! assert_eq!(c.usage.input_tokens, 9);
//! ```

use std::fmt;

use serde_json::Value;
use steer_metrics::ErrorClass;

use crate::error::AttemptError;
use crate::providers::Decoder;
pub use crate::providers::{Chunk, Completion, Dialect};
use crate::sse::SseEvent;
use crate::types::Usage;

/// A provider answer that is an error (an error status, an error object in
/// a 200 or in a stream, a malformed body), classified like the client does.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WireError {
    /// The typed class (`rate_limit`, `authentication`, ...).
    pub class: ErrorClass,
    /// The provider's message (not redacted: it is the provider's text).
    pub message: String,
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
    /// The provider's error type or code.
    pub provider_code: Option<String>,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

impl std::error::Error for WireError {}

impl From<AttemptError> for WireError {
    fn from(e: AttemptError) -> Self {
        WireError {
            class: e.class,
            message: e.message,
            status: e.status,
            provider_code: e.provider_code,
        }
    }
}

/// Parse a successful (2xx) response body of `dialect`.
pub fn parse_response(dialect: Dialect, body: &[u8]) -> Result<Completion, WireError> {
    Ok(dialect.parse(body)?)
}

/// Classify an error answer: its HTTP status and body (either provider's
/// error shape).
pub fn parse_error(status: u16, body: &[u8]) -> WireError {
    let (t, c, m) = crate::error::parse_error_body(body);
    crate::providers::api_error(Some(status), t, c, m).into()
}

/// Normalised usage from a provider `usage` object of `dialect` (e.g. the
/// `usage` of an OpenAI embeddings response).
pub fn usage(dialect: Dialect, usage: &Value) -> Usage {
    dialect.usage(usage)
}

/// The error class a finished answer stands for, if the provider stopped it
/// for its content (`content_filter`, `refusal`); the client records such
/// calls as failed with class `content_filter`.
pub fn content_error(c: &Completion) -> Option<ErrorClass> {
    c.finish_reason
        .as_deref()
        .is_some_and(crate::providers::is_content_stop)
        .then_some(ErrorClass::ContentFilter)
}

/// Decodes a streamed answer event by event.
pub struct StreamDecoder {
    inner: Box<dyn Decoder>,
}

impl fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamDecoder").finish_non_exhaustive()
    }
}

impl StreamDecoder {
    /// A decoder for a stream of `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        StreamDecoder {
            inner: dialect.decoder(),
        }
    }

    /// Handle one event: what model output it carried (for time to first
    /// token), or the error the provider sent in the stream.
    pub fn on_event(&mut self, ev: SseEvent) -> Result<Chunk, WireError> {
        Ok(self.inner.on_event(ev)?)
    }

    /// Whether the provider signalled the end of the stream.
    pub fn is_done(&self) -> bool {
        self.inner.is_done()
    }

    /// The whole answer, once the stream has ended (an error if it ended
    /// before the provider's final event).
    pub fn finish(self) -> Result<Completion, WireError> {
        Ok(self.inner.finish()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stream_decoder_reports_output_and_the_final_answer() {
        let mut d = StreamDecoder::new(Dialect::Anthropic);
        let ev = |data: &str| SseEvent {
            event: None,
            data: data.into(),
            id: None,
        };
        assert_eq!(
            d.on_event(ev(r#"{"type":"message_start","message":{"model":"claude-sonnet-4-5","usage":{"input_tokens":5,"output_tokens":1}}}"#)).unwrap(),
            Chunk::Nothing
        );
        // An empty thinking block is not output yet; its first thinking is.
        assert_eq!(
            d.on_event(ev(r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#)).unwrap(),
            Chunk::Nothing
        );
        assert_eq!(
            d.on_event(ev(r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me"}}"#)).unwrap(),
            Chunk::Output
        );
        d.on_event(ev(
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}"#,
        ))
        .unwrap();
        d.on_event(ev(r#"{"type":"message_stop"}"#)).unwrap();
        assert!(d.is_done());
        let c = d.finish().unwrap();
        assert_eq!(c.finish_reason.as_deref(), Some("end_turn"));
        assert_eq!(c.usage.output_tokens, 7);
    }

    #[test]
    fn errors_are_classified() {
        let e = parse_error(
            429,
            br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(e.class, ErrorClass::RateLimit);
        assert_eq!(e.status, Some(429));
        assert_eq!(parse_error(401, b"{}").class, ErrorClass::Authentication);
    }
}

/// AWS Bedrock Runtime answers as bytes (feature `bedrock`): a `Converse`
/// body, a `ConverseStream` event-stream, an error answer — measured by
/// the same code as the client's Bedrock calls.
#[cfg(feature = "bedrock")]
pub mod bedrock {
    pub use crate::providers::bedrock::raw::{parse_converse, parse_error, parse_invoke, EventStreamDecoder};
}
