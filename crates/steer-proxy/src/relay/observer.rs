//! What the relay learns from an answer as it passes: TTFT, usage,
//! finish reason, or the error.

use serde_json::Value;
use steer::sse::{SseEvent, SseParser};
use steer::wire::{self, Completion, Dialect, StreamDecoder};
use steer_metrics::ErrorClass;

use super::Call;

/// Most bytes of a JSON answer kept to measure it.
pub const MAX_OBSERVED_BODY: usize = 64 * 1024 * 1024;
/// Most bytes of an error answer kept to classify it.
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// What kind of answer the body is.
pub(crate) enum Observer {
    /// Server-sent events.
    Sse {
        parser: SseParser,
        decoder: Option<StreamDecoder>,
        events: Vec<SseEvent>,
        /// The first error the stream carried.
        error: Option<wire::WireError>,
    },
    /// A JSON answer (2xx).
    Json {
        dialect: Dialect,
        embeddings: bool,
        buf: Vec<u8>,
        overflow: bool,
    },
    /// An error answer (status >= 400).
    Error { status: u16, buf: Vec<u8> },
    /// A Bedrock `Converse` answer (2xx JSON) of the requested model.
    #[cfg(feature = "bedrock")]
    Converse {
        model: String,
        buf: Vec<u8>,
        overflow: bool,
    },
    /// A Bedrock `ConverseStream` answer: AWS event-stream frames.
    #[cfg(feature = "bedrock")]
    EventStream {
        decoder: Option<Box<wire::bedrock::EventStreamDecoder>>,
        /// The first error the stream carried (an exception frame).
        error: Option<wire::WireError>,
    },
    /// A Bedrock error answer, classified by its `x-amzn-ErrorType`.
    #[cfg(feature = "bedrock")]
    BedrockError {
        status: u16,
        error_type: Option<String>,
        buf: Vec<u8>,
    },
    /// An answer measured from its headers alone (Bedrock `InvokeModel`
    /// of an embeddings model).
    #[cfg(feature = "bedrock")]
    Known(Box<Completion>),
    /// A Bedrock `InvokeModel` answer (2xx) of the requested model, and
    /// Bedrock's token counts from its headers.
    #[cfg(feature = "bedrock")]
    Invoke {
        model: String,
        counts: (u64, u64),
        buf: Vec<u8>,
        overflow: bool,
    },
}

impl Observer {
    pub(crate) fn sse(dialect: Dialect) -> Self {
        Observer::Sse {
            parser: SseParser::default(),
            decoder: Some(StreamDecoder::new(dialect)),
            events: Vec::new(),
            error: None,
        }
    }

    pub(crate) fn json(dialect: Dialect, embeddings: bool) -> Self {
        Observer::Json {
            dialect,
            embeddings,
            buf: Vec::new(),
            overflow: false,
        }
    }

    pub(crate) fn error(status: u16) -> Self {
        Observer::Error {
            status,
            buf: Vec::new(),
        }
    }

    pub(super) fn feed(&mut self, chunk: &[u8], call: &mut Call) {
        match self {
            #[cfg(feature = "bedrock")]
            Observer::Converse { buf, overflow, .. } | Observer::Invoke { buf, overflow, .. } => {
                if buf.len() + chunk.len() > MAX_OBSERVED_BODY {
                    *overflow = true;
                } else if !*overflow {
                    buf.extend_from_slice(chunk);
                }
            }
            #[cfg(feature = "bedrock")]
            Observer::EventStream { decoder, error } => {
                if let Some(d) = decoder.as_mut() {
                    match d.feed(chunk) {
                        Ok(true) => call.first_output(),
                        Ok(false) => {}
                        Err(e) => {
                            *error = Some(e);
                            *decoder = None;
                        }
                    }
                }
            }
            #[cfg(feature = "bedrock")]
            Observer::BedrockError { buf, .. } => {
                let room = MAX_ERROR_BODY.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            #[cfg(feature = "bedrock")]
            Observer::Known(_) => {}
            Observer::Sse {
                parser,
                decoder,
                events,
                error,
            } => {
                if parser.feed(chunk, events).is_err() {
                    // A line beyond the parser's cap: stop measuring, keep relaying.
                    if error.is_none() {
                        *error = Some(wire::parse_error(502, b"{}"));
                    }
                    *decoder = None;
                }
                for ev in events.drain(..) {
                    let Some(d) = decoder.as_mut() else { break };
                    match d.on_event(ev) {
                        Ok(c) if c.is_output() => call.first_output(),
                        Ok(_) => {}
                        Err(e) => {
                            *error = Some(e);
                            *decoder = None;
                        }
                    }
                }
            }
            Observer::Json { buf, overflow, .. } => {
                if buf.len() + chunk.len() > MAX_OBSERVED_BODY {
                    *overflow = true;
                } else if !*overflow {
                    buf.extend_from_slice(chunk);
                }
            }
            Observer::Error { buf, .. } => {
                let room = MAX_ERROR_BODY.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
        }
    }

    /// The body ended: write the record.
    pub(super) fn finish(self, call: &mut Call) {
        match self {
            #[cfg(feature = "bedrock")]
            Observer::Converse { model, buf, overflow } => {
                if overflow {
                    tracing::warn!(
                        limit = MAX_OBSERVED_BODY,
                        "answer too large to measure; recorded without usage"
                    );
                    return call.succeed(&Completion::default());
                }
                match wire::bedrock::parse_converse(&buf, &model) {
                    Ok(c) => call.succeed(&c),
                    Err(e) => call.fail(e.class, &e.message, None),
                }
            }
            #[cfg(feature = "bedrock")]
            Observer::EventStream { decoder, error } => {
                if let Some(e) = error {
                    return call.fail(e.class, &e.message, None);
                }
                match decoder.map(|d| d.finish()) {
                    Some(Ok(c)) => call.succeed(&c),
                    Some(Err(e)) => call.fail(e.class, &e.message, None),
                    None => call.fail(ErrorClass::Unknown, "the stream could not be decoded", None),
                }
            }
            #[cfg(feature = "bedrock")]
            Observer::BedrockError {
                status,
                error_type,
                buf,
            } => {
                let e = wire::bedrock::parse_error(status, error_type.as_deref(), &buf);
                call.fail(e.class, &e.message, None);
            }
            #[cfg(feature = "bedrock")]
            Observer::Known(c) => call.succeed(&c),
            #[cfg(feature = "bedrock")]
            Observer::Invoke {
                model,
                counts: (input, output),
                buf,
                overflow,
            } => {
                // Too large to keep: Bedrock's counts still measure it.
                let body: &[u8] = if overflow { b"" } else { &buf };
                call.succeed(&wire::bedrock::parse_invoke(&model, body, input, output));
            }
            Observer::Sse { decoder, error, .. } => {
                if let Some(e) = error {
                    return call.fail(e.class, &e.message, None);
                }
                match decoder.map(StreamDecoder::finish) {
                    Some(Ok(c)) => call.succeed(&c),
                    Some(Err(e)) => call.fail(e.class, &e.message, None),
                    None => call.fail(ErrorClass::Unknown, "the stream could not be decoded", None),
                }
            }
            Observer::Json {
                dialect,
                embeddings,
                buf,
                overflow,
            } => {
                if overflow {
                    tracing::warn!(
                        limit = MAX_OBSERVED_BODY,
                        "answer too large to measure; recorded without usage"
                    );
                    return call.succeed(&Completion::default());
                }
                if embeddings {
                    return call.succeed(&embeddings_completion(dialect, &buf));
                }
                match wire::parse_response(dialect, &buf) {
                    Ok(c) => call.succeed(&c),
                    Err(e) => call.fail(e.class, &e.message, None),
                }
            }
            Observer::Error { status, buf } => {
                let e = wire::parse_error(status, &buf);
                call.fail(e.class, &e.message, None);
            }
        }
    }
}

/// The measured part of an embeddings answer: its usage and model.
fn embeddings_completion(dialect: Dialect, body: &[u8]) -> Completion {
    let mut c = Completion::default();
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(u) = v.get("usage") {
            c.usage = wire::usage(dialect, u);
        }
        c.response_model = v.get("model").and_then(Value::as_str).map(str::to_string);
    }
    c
}
