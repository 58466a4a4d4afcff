//! `ConverseStream` events → chunks and a final [`Completion`].

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{ContentBlockDelta, ContentBlockStart, ConverseStreamOutput as Event};

use super::{convert, errors};
use crate::error::AttemptError;
use crate::providers::{Chunk, Completion};
use crate::types::{ToolCall, Usage};

/// A `ConverseStream` answer being read.
pub(crate) struct BedrockStream {
    events: EventReceiver<Event, ConverseStreamOutputError>,
    timeout: Duration,
    acc: Accumulator,
    ended: bool,
}

impl std::fmt::Debug for BedrockStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockStream")
            .field("model", &self.acc.model)
            .field("stopped", &self.acc.stop_reason.is_some())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl BedrockStream {
    pub(super) fn new(
        events: EventReceiver<Event, ConverseStreamOutputError>,
        model: &str,
        timeout: Duration,
    ) -> Self {
        BedrockStream {
            events,
            timeout,
            acc: Accumulator::new(model),
            ended: false,
        }
    }

    /// The next model output: [`Chunk::Text`] for text deltas,
    /// [`Chunk::Output`] for reasoning and tool-use starts and deltas (they
    /// count for time to first token); `None` at the end of the stream.
    /// Waits at most the stream's timeout for each event.
    pub(crate) async fn next(&mut self) -> Result<Option<Chunk>, AttemptError> {
        while !self.ended {
            let event = tokio::time::timeout(self.timeout, self.events.recv())
                .await
                .map_err(|_| AttemptError::timeout(self.timeout))?
                .map_err(|e| errors::from_stream(&e, self.timeout))?;
            match event {
                Some(ev) => {
                    let chunk = self.acc.on_event(ev);
                    if chunk.is_output() {
                        return Ok(Some(chunk));
                    }
                }
                None => self.ended = true,
            }
        }
        Ok(None)
    }

    /// The whole answer, after [`next`](Self::next) returned `None`: text,
    /// tool calls, `stopReason` verbatim, usage. A stream cut before its
    /// `messageStop` is a network error; a filtered answer a `content_filter`
    /// error.
    pub(crate) fn finish(self) -> Result<Completion, AttemptError> {
        self.acc.finish()
    }
}

/// What the events said so far.
#[derive(Debug, Default)]
pub(super) struct Accumulator {
    model: String,
    text: String,
    tools: BTreeMap<i32, ToolCall>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
}

impl Accumulator {
    pub(super) fn new(model: &str) -> Self {
        Accumulator {
            model: model.to_string(),
            ..Accumulator::default()
        }
    }

    /// Handle one event: what model output it carried.
    pub(super) fn on_event(&mut self, ev: Event) -> Chunk {
        match ev {
            Event::ContentBlockStart(s) => {
                if let Some(ContentBlockStart::ToolUse(t)) = s.start() {
                    self.tools.insert(
                        s.content_block_index(),
                        ToolCall {
                            id: t.tool_use_id().to_string(),
                            name: t.name().to_string(),
                            arguments: String::new(),
                        },
                    );
                    return Chunk::Output;
                }
            }
            Event::ContentBlockDelta(d) => match d.delta() {
                Some(ContentBlockDelta::Text(t)) if !t.is_empty() => {
                    self.text.push_str(t);
                    return Chunk::Text(t.clone());
                }
                Some(ContentBlockDelta::ToolUse(t)) => {
                    let call = self
                        .tools
                        .entry(d.content_block_index())
                        .or_insert_with(|| ToolCall {
                            id: String::new(),
                            name: String::new(),
                            arguments: String::new(),
                        });
                    call.arguments.push_str(t.input());
                    return Chunk::Output;
                }
                Some(ContentBlockDelta::ReasoningContent(_) | ContentBlockDelta::Citation(_)) => {
                    return Chunk::Output
                }
                _ => {}
            },
            Event::MessageStop(m) => self.stop_reason = Some(m.stop_reason().as_str().to_string()),
            Event::Metadata(m) => {
                if let Some(u) = m.usage() {
                    self.usage = Some(convert::usage(u));
                }
            }
            _ => {} // messageStart, contentBlockStop, future events
        }
        Chunk::Nothing
    }

    pub(super) fn finish(self) -> Result<Completion, AttemptError> {
        let Some(stop_reason) = self.stop_reason else {
            return Err(AttemptError::network("stream ended before messageStop"));
        };
        let tool_calls = self
            .tools
            .into_values()
            .map(|mut c| {
                if c.arguments.is_empty() {
                    c.arguments = "{}".into();
                }
                c
            })
            .collect();
        convert::check_content(Completion {
            text: self.text,
            tool_calls,
            finish_reason: Some(stop_reason),
            usage: self.usage.unwrap_or_default(),
            response_model: Some(self.model),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::{
        ContentBlockDeltaEvent, ContentBlockStartEvent, ConverseStreamMetadataEvent, MessageStopEvent,
        ReasoningContentBlockDelta, StopReason, TokenUsage, ToolUseBlockDelta, ToolUseBlockStart,
    };

    fn delta(i: i32, d: ContentBlockDelta) -> Event {
        Event::ContentBlockDelta(
            ContentBlockDeltaEvent::builder()
                .content_block_index(i)
                .delta(d)
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn events_to_chunks_and_completion() {
        let mut a = Accumulator::new("anthropic.claude-3-haiku-20240307-v1:0");
        let reasoning = ReasoningContentBlockDelta::Text("thinking".into());
        assert_eq!(
            a.on_event(delta(0, ContentBlockDelta::ReasoningContent(reasoning))),
            Chunk::Output
        );
        assert_eq!(
            a.on_event(delta(1, ContentBlockDelta::Text(String::new()))),
            Chunk::Nothing
        );
        assert_eq!(
            a.on_event(delta(1, ContentBlockDelta::Text("Hi".into()))),
            Chunk::Text("Hi".into())
        );
        let start = ToolUseBlockStart::builder()
            .tool_use_id("tooluse_1")
            .name("f")
            .build()
            .unwrap();
        let ev = Event::ContentBlockStart(
            ContentBlockStartEvent::builder()
                .content_block_index(2)
                .start(ContentBlockStart::ToolUse(start))
                .build()
                .unwrap(),
        );
        assert_eq!(a.on_event(ev), Chunk::Output);
        for part in ["{\"x\":", "2}"] {
            let d = ToolUseBlockDelta::builder().input(part).build().unwrap();
            assert_eq!(a.on_event(delta(2, ContentBlockDelta::ToolUse(d))), Chunk::Output);
        }
        let stop = MessageStopEvent::builder()
            .stop_reason(StopReason::ToolUse)
            .build()
            .unwrap();
        assert_eq!(a.on_event(Event::MessageStop(stop)), Chunk::Nothing);
        let usage = TokenUsage::builder()
            .input_tokens(5)
            .output_tokens(7)
            .total_tokens(112)
            .cache_read_input_tokens(100)
            .build()
            .unwrap();
        let meta = ConverseStreamMetadataEvent::builder().usage(usage).build();
        assert_eq!(a.on_event(Event::Metadata(meta)), Chunk::Nothing);
        let c = a.finish().unwrap();
        assert_eq!(c.text, "Hi");
        assert_eq!(c.finish_reason.as_deref(), Some("tool_use"));
        assert_eq!(c.tool_calls[0].arguments, "{\"x\":2}");
        assert_eq!(c.tool_calls[0].id, "tooluse_1");
        assert_eq!(c.usage.input_tokens, 105);
        assert_eq!(c.usage.cached_tokens, 100);
        assert_eq!(
            c.response_model.as_deref(),
            Some("anthropic.claude-3-haiku-20240307-v1:0")
        );
    }

    #[test]
    fn a_stream_without_message_stop_is_cut_short() {
        let mut a = Accumulator::new("m");
        a.on_event(delta(0, ContentBlockDelta::Text("partial".into())));
        let e = a.finish().unwrap_err();
        assert_eq!(e.class, steer_metrics::ErrorClass::Network);
    }
}
