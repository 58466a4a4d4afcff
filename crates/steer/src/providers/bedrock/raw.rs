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

/// Decodes a `ConverseStream` body (AWS event-stream frames) as it
/// arrives, or, made with [`invoke`](Self::invoke), an
/// `InvokeModelWithResponseStream` body: the same frames, whose `chunk`
/// events carry the model's own JSON events base64-encoded
/// (`{"bytes": "..."}`).
#[derive(Debug)]
pub struct EventStreamDecoder {
    frames: MessageFrameDecoder,
    buf: BytesMut,
    events: Events,
}

/// What the frames' events are, and their state.
#[derive(Debug)]
enum Events {
    /// `ConverseStream` events, accumulated as the SDK's.
    Converse(Box<Accumulator>),
    /// `InvokeModelWithResponseStream` chunks.
    Invoke(Box<Invoke>),
}

/// Whether a Bedrock model id (or ARN, or inference profile) names an
/// Anthropic model, whose `InvokeModel` bodies are Anthropic's own.
fn is_anthropic(model: &str) -> bool {
    model.contains("anthropic.")
}

/// The state of an `InvokeModelWithResponseStream` body. An Anthropic
/// model's events are Anthropic's stream events, measured by the same
/// decoder as the Messages API (usage with cache tokens, stop reason, tool
/// calls); any other model's by the `amazon-bedrock-invocationMetrics`
/// Bedrock adds to the last chunk (token counts) and the model's own stop
/// reason field.
#[derive(Debug)]
struct Invoke {
    model: String,
    anthropic: Option<crate::wire::StreamDecoder>,
    /// `inputTokenCount`, `outputTokenCount` of the invocation metrics.
    metrics: Option<(u64, u64)>,
    stop_reason: Option<String>,
}

impl Invoke {
    /// One chunk's decoded JSON; whether it carried model output.
    fn on_chunk(&mut self, inner: &Value) -> Result<bool, WireError> {
        if let Some(m) = inner.get("amazon-bedrock-invocationMetrics") {
            let n = |k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.metrics = Some((n("inputTokenCount"), n("outputTokenCount")));
        }
        if let Some(d) = self.anthropic.as_mut() {
            let ev = crate::sse::SseEvent {
                event: text(inner, "type"),
                data: inner.to_string(),
                id: None,
            };
            return Ok(d.on_event(ev)?.is_output());
        }
        if let Some(reason) = native_stop_reason(inner) {
            self.stop_reason = Some(reason);
        }
        Ok(native_output(inner))
    }

    fn finish(self) -> Result<Completion, WireError> {
        let mut c = match self.anthropic {
            Some(d) => d.finish()?,
            None => Completion {
                finish_reason: self.stop_reason,
                ..Completion::default()
            },
        };
        if let Some((input, output)) = self.metrics {
            // The model's own usage when it reported one (cache tokens);
            // Bedrock's counts otherwise.
            if c.usage.input_tokens == 0 && c.usage.output_tokens == 0 {
                c.usage.input_tokens = input;
                c.usage.output_tokens = output;
            }
        } else if c.usage.input_tokens == 0 && c.usage.output_tokens == 0 && c.finish_reason.is_none() {
            return Err(malformed("the stream ended before the model's last chunk"));
        }
        c.response_model.get_or_insert(self.model);
        Ok(c)
    }
}

/// The stop reason in a model's native answer (or chunk) of the
/// `InvokeModel` APIs: Titan's `completionReason` (also under `results`),
/// Llama's and Mistral's `stop_reason` (also under `outputs`), Cohere's
/// `finish_reason` (also under `generations`), an Anthropic text
/// completion's `stop_reason`.
fn native_stop_reason(v: &Value) -> Option<String> {
    let nested = [&v["outputs"][0], &v["generations"][0], &v["results"][0]];
    ["completionReason", "stop_reason", "finish_reason"]
        .iter()
        .find_map(|k| std::iter::once(v).chain(nested).find_map(|x| text(x, k)))
}

/// Whether a model's native chunk carries generated text.
fn native_output(v: &Value) -> bool {
    let some = |x: &Value| x.as_str().is_some_and(|t| !t.is_empty());
    ["outputText", "generation", "text", "completion"]
        .iter()
        .any(|k| some(&v[*k]))
        || some(&v["outputs"][0]["text"])
        || some(&v["generations"][0]["text"])
}

/// A successful `InvokeModel` answer of `model` (the requested model id)
/// with Bedrock's token counts (the `X-Amzn-Bedrock-Input-Token-Count` and
/// `-Output-Token-Count` headers). An Anthropic model's body is an
/// Anthropic Messages answer, measured as one (usage with cache reads and
/// writes, stop reason, tool calls); any other model's usage is Bedrock's
/// counts and its stop reason the model's own field.
pub fn parse_invoke(model: &str, body: &[u8], input_tokens: u64, output_tokens: u64) -> Completion {
    if is_anthropic(model) {
        if let Ok(c) = crate::wire::parse_response(crate::wire::Dialect::Anthropic, body) {
            if c.usage.input_tokens > 0 || c.usage.output_tokens > 0 {
                return c;
            }
        }
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    Completion {
        usage: crate::Usage {
            input_tokens,
            output_tokens,
            ..crate::Usage::default()
        },
        finish_reason: native_stop_reason(&v),
        response_model: Some(model.to_string()),
        ..Completion::default()
    }
}

impl EventStreamDecoder {
    /// A decoder of a `ConverseStream` of `model` (the requested model id).
    pub fn new(model: &str) -> Self {
        Self::of(Events::Converse(Box::new(Accumulator::new(model))))
    }

    /// A decoder of an `InvokeModelWithResponseStream` of `model`.
    pub fn invoke(model: &str) -> Self {
        let anthropic =
            is_anthropic(model).then(|| crate::wire::StreamDecoder::new(crate::wire::Dialect::Anthropic));
        Self::of(Events::Invoke(Box::new(Invoke {
            model: model.to_string(),
            anthropic,
            metrics: None,
            stop_reason: None,
        })))
    }

    fn of(events: Events) -> Self {
        EventStreamDecoder {
            frames: MessageFrameDecoder::new(),
            buf: BytesMut::new(),
            events,
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
        let kind = header(":event-type");
        match &mut self.events {
            Events::Converse(acc) => {
                let Some(event) = kind.and_then(|t| to_event(&t, &payload)) else {
                    return Ok(false);
                };
                Ok(!matches!(acc.on_event(event), Chunk::Nothing))
            }
            Events::Invoke(inv) => {
                if kind.as_deref() != Some("chunk") {
                    return Ok(false);
                }
                let bytes = text(&payload, "bytes").unwrap_or_default();
                let inner = aws_smithy_types::base64::decode(bytes)
                    .map_err(|e| malformed(&format!("a chunk's bytes are not base64: {e}")))?;
                let inner: Value = serde_json::from_slice(&inner)
                    .map_err(|e| malformed(&format!("a chunk is not JSON: {e}")))?;
                inv.on_chunk(&inner)
            }
        }
    }

    /// The answer, once the body ended (an error when it ended before
    /// `messageStop`, or before an invoked model's last chunk).
    pub fn finish(self) -> Result<Completion, WireError> {
        let acc = match self.events {
            Events::Converse(acc) => acc,
            Events::Invoke(inv) => return inv.finish(),
        };
        match acc.finish() {
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

    /// An `InvokeModelWithResponseStream` chunk carrying `inner`.
    fn chunk(inner: &Value) -> Vec<u8> {
        let bytes = aws_smithy_types::base64::encode(inner.to_string());
        frame(("event", "chunk"), &json!({ "bytes": bytes }))
    }

    #[test]
    fn invoke_streams_of_anthropic_models_are_anthropic_streams() {
        let metrics = json!({"inputTokenCount": 25, "outputTokenCount": 7, "invocationLatency": 900, "firstByteLatency": 300});
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-5-20250929", "usage": {"input_tokens": 25, "cache_read_input_tokens": 10, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}),
            json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics}),
        ];
        let mut d = EventStreamDecoder::invoke("us.anthropic.claude-sonnet-4-5-20250929-v1:0");
        let outputs: Vec<bool> = events.iter().map(|e| d.feed(&chunk(e)).unwrap()).collect();
        assert_eq!(outputs, [false, false, true, false, false, false]);
        let c = d.finish().unwrap();
        assert_eq!(c.text, "Hi");
        assert_eq!(c.finish_reason.as_deref(), Some("end_turn"));
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (35, 7));
        assert_eq!(c.usage.cached_tokens, 10);
        assert_eq!(c.response_model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    }

    #[test]
    fn invoke_streams_of_other_models_use_the_invocation_metrics() {
        let mut d = EventStreamDecoder::invoke("amazon.titan-text-express-v1");
        assert!(d
            .feed(&chunk(
                &json!({"outputText": "Hel", "index": 0, "completionReason": null})
            ))
            .unwrap());
        let last = json!({"outputText": "lo", "index": 0, "completionReason": "FINISH",
            "amazon-bedrock-invocationMetrics": {"inputTokenCount": 5, "outputTokenCount": 2}});
        // Byte by byte: frames are reassembled.
        let bytes = chunk(&last);
        let got: Vec<bool> = bytes
            .iter()
            .map(|b| d.feed(std::slice::from_ref(b)).unwrap())
            .collect();
        assert_eq!(got.iter().filter(|o| **o).count(), 1);
        let c = d.finish().unwrap();
        assert_eq!(c.finish_reason.as_deref(), Some("FINISH"));
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (5, 2));
        assert_eq!(c.response_model.as_deref(), Some("amazon.titan-text-express-v1"));
        // Cut before the last chunk: not a complete answer.
        let mut d = EventStreamDecoder::invoke("meta.llama3-8b-instruct-v1:0");
        assert!(d
            .feed(&chunk(&json!({"generation": "Hi", "stop_reason": null})))
            .unwrap());
        assert!(d.finish().is_err());
        // A chunk whose bytes are not base64 is a broken stream.
        let mut d = EventStreamDecoder::invoke("meta.llama3-8b-instruct-v1:0");
        assert!(d
            .feed(&frame(("event", "chunk"), &json!({"bytes": "%%%"})))
            .is_err());
    }

    #[test]
    fn invoke_answers_of_anthropic_models_are_anthropic_messages() {
        let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Let me look."},
                        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 30, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200, "output_tokens": 12}});
        let c = parse_invoke(
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            body.to_string().as_bytes(),
            30,
            12,
        );
        assert_eq!(c.finish_reason.as_deref(), Some("tool_use"));
        assert_eq!(
            (c.usage.input_tokens, c.usage.cached_tokens, c.usage.output_tokens),
            (1230, 1000, 12)
        );
        assert_eq!(c.usage.cache_write_tokens, Some(200));
        assert_eq!(c.tool_calls[0].name, "get_weather");
        assert_eq!(c.response_model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        // Other models: Bedrock's counts and the model's own stop reason.
        let titan = json!({"inputTextTokenCount": 5, "results": [{"tokenCount": 3, "outputText": "Hi", "completionReason": "FINISH"}]});
        let c = parse_invoke("amazon.titan-text-express-v1", titan.to_string().as_bytes(), 5, 3);
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (5, 3));
        assert_eq!(c.finish_reason.as_deref(), Some("FINISH"));
        assert_eq!(c.response_model.as_deref(), Some("amazon.titan-text-express-v1"));
        let llama = json!({"generation": "Hi", "prompt_token_count": 4, "generation_token_count": 1, "stop_reason": "length"});
        assert_eq!(
            parse_invoke("meta.llama3-8b-instruct-v1:0", llama.to_string().as_bytes(), 4, 1)
                .finish_reason
                .as_deref(),
            Some("length")
        );
        // An Anthropic body that is not a Messages answer: the counts.
        let c = parse_invoke(
            "anthropic.claude-v2",
            br#"{"completion": " Hi", "stop_reason": "stop_sequence"}"#,
            9,
            2,
        );
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (9, 2));
        assert_eq!(c.finish_reason.as_deref(), Some("stop_sequence"));
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
