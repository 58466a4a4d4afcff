//! Bedrock Runtime answers as bytes, for programs that relay them (a
//! gateway): a `Converse` JSON body, a `ConverseStream` AWS event-stream,
//! an error answer. The JSON is mapped onto the SDK's types and measured
//! by the same code as the client's calls ([`convert::usage`],
//! [`Accumulator`], [`errors::class_of`]), so both record the same usage,
//! stop reason and error class.

use aws_sdk_bedrockruntime::types::{
    ContentBlockDelta, ContentBlockDeltaEvent, ContentBlockStart, ContentBlockStartEvent,
    ConverseStreamMetadataEvent, ConverseStreamOutput as Event, MessageStopEvent, ReasoningContentBlockDelta,
    StopReason, TokenUsage, ToolUseBlockDelta, ToolUseBlockStart,
};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::BytesMut;
use serde_json::Value;
use steer_metrics::ErrorClass;

use super::stream::Accumulator;
use super::{convert, errors};
use crate::providers::{Chunk, Completion};
use crate::types::ToolCall;
use crate::wire::WireError;

fn int(v: &Value, key: &str) -> Option<i32> {
    v.get(key)
        .and_then(Value::as_i64)
        .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A `usage` object as the SDK's [`TokenUsage`].
fn token_usage(u: &Value) -> Option<TokenUsage> {
    let input = int(u, "inputTokens").unwrap_or(0);
    let output = int(u, "outputTokens").unwrap_or(0);
    TokenUsage::builder()
        .input_tokens(input)
        .output_tokens(output)
        .total_tokens(int(u, "totalTokens").unwrap_or(input.saturating_add(output)))
        .set_cache_read_input_tokens(int(u, "cacheReadInputTokens"))
        .set_cache_write_input_tokens(int(u, "cacheWriteInputTokens"))
        .build()
        .ok()
}

fn malformed(what: &str) -> WireError {
    crate::error::AttemptError::invalid(format!("unreadable Bedrock answer: {what}")).into()
}

/// A successful `Converse` body for `model` (the requested model id: Bedrock
/// echoes none). A filtered answer is returned as is: see
/// [`content_error`](crate::wire::content_error).
pub fn parse_converse(body: &[u8], model: &str) -> Result<Completion, WireError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(&e.to_string()))?;
    let mut c = Completion {
        finish_reason: text(&v, "stopReason"),
        response_model: Some(model.to_string()),
        ..Completion::default()
    };
    if let Some(u) = v.get("usage").and_then(token_usage) {
        c.usage = convert::usage(&u);
    }
    let blocks = v
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for b in blocks {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            c.text.push_str(t);
        } else if let Some(t) = b.get("toolUse") {
            c.tool_calls.push(ToolCall {
                id: text(t, "toolUseId").unwrap_or_default(),
                name: text(t, "name").unwrap_or_default(),
                arguments: t.get("input").map_or_else(|| "{}".into(), Value::to_string),
            });
        }
    }
    Ok(c)
}

/// An error answer: its status, `x-amzn-ErrorType` header and body,
/// classified by the exception name like the client's calls.
pub fn parse_error(status: u16, error_type: Option<&str>, body: &[u8]) -> WireError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = error_type
        .map(|t| t.split(':').next().unwrap_or(t).trim().to_string())
        .or_else(|| text(&v, "__type").map(|t| t.rsplit('#').next().unwrap_or(&t).to_string()))
        .filter(|c| !c.is_empty());
    let message = text(&v, "message")
        .or_else(|| text(&v, "Message"))
        .unwrap_or_else(|| format!("Bedrock answered HTTP {status}"));
    match code.as_deref().and_then(errors::class_of) {
        Some((class, _)) => WireError {
            class,
            message,
            status: Some(status),
            provider_code: code,
        },
        None => {
            let mut e = crate::wire::parse_error(status, body);
            e.provider_code = code.or(e.provider_code);
            e
        }
    }
}

/// Decodes a `ConverseStream` body (AWS event-stream frames) as it arrives.
#[derive(Debug)]
pub struct EventStreamDecoder {
    frames: MessageFrameDecoder,
    buf: BytesMut,
    acc: Accumulator,
}

impl EventStreamDecoder {
    /// A decoder of a stream of `model` (the requested model id).
    pub fn new(model: &str) -> Self {
        EventStreamDecoder {
            frames: MessageFrameDecoder::new(),
            buf: BytesMut::new(),
            acc: Accumulator::new(model),
        }
    }

    /// Feed bytes; `Ok(true)` when a complete event in them carried model
    /// output (the first one sets time to first token). An exception frame
    /// (`throttlingException`, ...) or a broken frame is an error.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<bool, WireError> {
        self.buf.extend_from_slice(chunk);
        let mut output = false;
        loop {
            match self.frames.decode_frame(&mut self.buf) {
                Ok(DecodedFrame::Complete(m)) => output |= self.on_message(&m)?,
                Ok(DecodedFrame::Incomplete) => return Ok(output),
                Err(e) => return Err(malformed(&e.to_string())),
            }
        }
    }

    fn on_message(&mut self, m: &Message) -> Result<bool, WireError> {
        let header = |name: &str| {
            m.headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_string())
        };
        let payload: Value = serde_json::from_slice(m.payload()).unwrap_or(Value::Null);
        match header(":message-type").as_deref() {
            Some("event") => {}
            Some("exception") => {
                let code = header(":exception-type").unwrap_or_default();
                let class = errors::class_of(&code).map_or(ErrorClass::ServerError, |c| c.0);
                return Err(WireError {
                    class,
                    message: text(&payload, "message").unwrap_or_else(|| code.clone()),
                    status: None,
                    provider_code: Some(code),
                });
            }
            _ => {
                let code = header(":error-code").unwrap_or_default();
                return Err(WireError {
                    class: errors::class_of(&code).map_or(ErrorClass::ServerError, |c| c.0),
                    message: header(":error-message").unwrap_or_else(|| code.clone()),
                    status: None,
                    provider_code: Some(code),
                });
            }
        }
        let Some(event) = header(":event-type").and_then(|t| to_event(&t, &payload)) else {
            return Ok(false);
        };
        Ok(!matches!(self.acc.on_event(event), Chunk::Nothing))
    }

    /// The answer, once the body ended (an error when it ended before `messageStop`).
    pub fn finish(self) -> Result<Completion, WireError> {
        match self.acc.finish() {
            Ok(c) => Ok(c),
            // A filtered answer is an answer: the caller checks its stop reason.
            Err(e) if e.partial.is_some() && e.class == ErrorClass::ContentFilter => {
                Ok(e.partial.map(|c| *c).unwrap_or_default())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// An event's JSON payload as the SDK's event (the events measured).
fn to_event(kind: &str, p: &Value) -> Option<Event> {
    let index = int(p, "contentBlockIndex").unwrap_or(0);
    Some(match kind {
        "contentBlockStart" => {
            let t = p.pointer("/start/toolUse")?;
            let start = ToolUseBlockStart::builder()
                .tool_use_id(text(t, "toolUseId").unwrap_or_default())
                .name(text(t, "name").unwrap_or_default())
                .build()
                .ok()?;
            Event::ContentBlockStart(
                ContentBlockStartEvent::builder()
                    .content_block_index(index)
                    .start(ContentBlockStart::ToolUse(start))
                    .build()
                    .ok()?,
            )
        }
        "contentBlockDelta" => {
            let d = p.get("delta")?;
            let delta = if let Some(t) = d.get("text").and_then(Value::as_str) {
                ContentBlockDelta::Text(t.to_string())
            } else if let Some(t) = d.get("toolUse") {
                ContentBlockDelta::ToolUse(
                    ToolUseBlockDelta::builder()
                        .input(text(t, "input").unwrap_or_default())
                        .build()
                        .ok()?,
                )
            } else if d.get("reasoningContent").is_some() || d.get("citation").is_some() {
                // Output for time to first token; its text is not kept.
                ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Text(String::new()))
            } else {
                return None;
            };
            Event::ContentBlockDelta(
                ContentBlockDeltaEvent::builder()
                    .content_block_index(index)
                    .delta(delta)
                    .build()
                    .ok()?,
            )
        }
        "messageStop" => Event::MessageStop(
            MessageStopEvent::builder()
                .stop_reason(StopReason::from(
                    text(p, "stopReason").unwrap_or_default().as_str(),
                ))
                .build()
                .ok()?,
        ),
        "metadata" => Event::Metadata(
            ConverseStreamMetadataEvent::builder()
                .set_usage(p.get("usage").and_then(token_usage))
                .build(),
        ),
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use aws_smithy_types::event_stream::{Header, HeaderValue};
    use serde_json::json;

    use super::*;

    fn frame(kind: (&str, &str), payload: &Value) -> Vec<u8> {
        let (message_type, name) = kind;
        let type_header = if message_type == "event" {
            ":event-type"
        } else {
            ":exception-type"
        };
        let msg = Message::new_from_parts(
            vec![
                Header::new(type_header, HeaderValue::String(name.to_string().into())),
                Header::new(
                    ":message-type",
                    HeaderValue::String(message_type.to_string().into()),
                ),
            ],
            payload.to_string().into_bytes(),
        );
        let mut out = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&msg, &mut out).unwrap();
        out
    }

    #[test]
    fn converse_usage_is_normalised_like_the_clients() {
        let body = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"text": "Hi"},
                {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 10, "outputTokens": 3, "totalTokens": 20,
                      "cacheReadInputTokens": 5, "cacheWriteInputTokens": 2}
        });
        let c = parse_converse(body.to_string().as_bytes(), "anthropic.claude").unwrap();
        assert_eq!(c.text, "Hi");
        assert_eq!(c.tool_calls[0].arguments, r#"{"a":1}"#);
        assert_eq!(c.finish_reason.as_deref(), Some("tool_use"));
        assert_eq!(c.usage.input_tokens, 17);
        assert_eq!(c.usage.cached_tokens, 5);
        assert_eq!(c.usage.cache_write_tokens, Some(2));
        assert_eq!(c.usage.output_tokens, 3);
        assert_eq!(c.response_model.as_deref(), Some("anthropic.claude"));
    }

    #[test]
    fn event_stream_byte_by_byte() {
        let mut bytes = Vec::new();
        bytes.extend(frame(("event", "messageStart"), &json!({"role": "assistant"})));
        bytes.extend(frame(
            ("event", "contentBlockDelta"),
            &json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        ));
        bytes.extend(frame(
            ("event", "messageStop"),
            &json!({"stopReason": "end_turn"}),
        ));
        bytes.extend(frame(
            ("event", "metadata"),
            &json!({"usage": {"inputTokens": 4, "outputTokens": 2, "totalTokens": 6}}),
        ));
        let mut d = EventStreamDecoder::new("m");
        let mut first_output = None;
        for (i, b) in bytes.iter().enumerate() {
            if d.feed(std::slice::from_ref(b)).unwrap() && first_output.is_none() {
                first_output = Some(i);
            }
        }
        let c = d.finish().unwrap();
        assert!(first_output.is_some());
        assert_eq!(c.text, "Hel");
        assert_eq!(c.finish_reason.as_deref(), Some("end_turn"));
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (4, 2));
    }

    #[test]
    fn exceptions_and_error_answers_are_classified() {
        let mut d = EventStreamDecoder::new("m");
        let e = d
            .feed(&frame(
                ("exception", "throttlingException"),
                &json!({"message": "slow down"}),
            ))
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::RateLimit);
        let e = parse_error(
            429,
            Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            br#"{"message":"Too many requests"}"#,
        );
        assert_eq!(
            (e.class, e.message.as_str()),
            (ErrorClass::RateLimit, "Too many requests")
        );
        assert_eq!(
            parse_error(400, None, br#"{"message":"bad"}"#).class,
            ErrorClass::InvalidRequest
        );
        assert!(EventStreamDecoder::new("m").finish().is_err());
    }
}
