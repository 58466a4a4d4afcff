//! Anthropic Messages API.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{api_error, embedded_error, malformed, opt_u64_at, str_at, u64_at, Chunk, Completion, Decoder};
use crate::error::AttemptError;
use crate::sse::SseEvent;
use crate::types::{Request, ResponseFormat, Role, ToolCall, Usage};

/// The `anthropic-version` header sent with every request.
pub(crate) const API_VERSION: &str = "2023-06-01";

/// Anthropic requires `max_tokens`; used when the request sets none.
pub(crate) const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The request body.
pub(crate) fn body(req: &Request, model: &str, stream: bool) -> Value {
    let mut messages: Vec<Value> = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        match m.role {
            Role::System => {} // joined into `system`
            Role::Tool => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": m.content,
                });
                // Consecutive tool results go into one user message.
                if let Some(Value::Array(blocks)) = messages
                    .last_mut()
                    .filter(|last| last["role"] == "user")
                    .and_then(|last| last.get_mut("content"))
                {
                    if blocks.iter().all(|b| b["type"] == "tool_result") {
                        blocks.push(block);
                        continue;
                    }
                }
                messages.push(json!({"role": "user", "content": [block]}));
            }
            Role::Assistant if !m.tool_calls.is_empty() => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for c in &m.tool_calls {
                    let input: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
                }
                messages.push(json!({"role": "assistant", "content": blocks}));
            }
            Role::User | Role::Assistant => {
                messages.push(json!({"role": m.role.as_str(), "content": m.content}));
            }
        }
    }
    let mut system = req.system_text();
    let instruction = match &req.response_format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some("Respond with a single JSON object and nothing else.".to_string()),
        ResponseFormat::JsonSchema { schema, .. } => Some(format!(
            "Respond with a single JSON object matching this JSON schema and nothing else: {schema}"
        )),
    };
    if let Some(i) = instruction {
        system = Some(match system {
            Some(s) => format!("{s}\n\n{i}"),
            None => i,
        });
    }
    let mut b = Map::new();
    b.insert("model".into(), json!(model));
    b.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    b.insert("messages".into(), Value::Array(messages));
    if let Some(s) = system {
        b.insert("system".into(), json!(s));
    }
    if stream {
        b.insert("stream".into(), json!(true));
    }
    if let Some(t) = req.temperature {
        b.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        b.insert("top_p".into(), json!(p));
    }
    if !req.stop.is_empty() {
        b.insert("stop_sequences".into(), json!(req.stop));
    }
    if let Some(t) = &req.tools {
        b.insert("tools".into(), t.clone());
    }
    if let Some(t) = &req.tool_choice {
        b.insert("tool_choice".into(), t.clone());
    }
    for (k, v) in &req.extra {
        b.insert(k.clone(), v.clone());
    }
    Value::Object(b)
}

/// Raw Anthropic usage; `input_tokens` excludes cache reads and writes.
///
/// A stream reports usage twice (`message_start`, then cumulative figures in
/// `message_delta`); every field present in a later block replaces the
/// earlier value.
#[derive(Debug, Default, Clone, Copy)]
struct RawUsage {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: Option<u64>,
    /// `cache_creation.ephemeral_5m_input_tokens`.
    write_5m: Option<u64>,
    /// `cache_creation.ephemeral_1h_input_tokens`.
    write_1h: Option<u64>,
    /// `output_tokens_details.thinking_tokens`.
    thinking: Option<u64>,
    /// `server_tool_use.web_search_requests`.
    web_search: Option<u64>,
    /// Usage of the `compaction` iterations, which the top level leaves out.
    compaction: Compaction,
}

/// Token counts of the compaction iterations of a request.
#[derive(Debug, Default, Clone, Copy)]
struct Compaction {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    write_1h: u64,
}

impl RawUsage {
    fn update(&mut self, u: &Value) {
        if let Some(x) = opt_u64_at(u, "input_tokens") {
            self.input = x;
        }
        if let Some(x) = opt_u64_at(u, "output_tokens") {
            self.output = x;
        }
        if let Some(x) = opt_u64_at(u, "cache_read_input_tokens") {
            self.cache_read = x;
        }
        if let Some(x) = opt_u64_at(u, "cache_creation_input_tokens") {
            self.cache_write = Some(x);
        }
        if let Some(c) = u.get("cache_creation").filter(|c| c.is_object()) {
            if let Some(x) = opt_u64_at(c, "ephemeral_5m_input_tokens") {
                self.write_5m = Some(x);
            }
            if let Some(x) = opt_u64_at(c, "ephemeral_1h_input_tokens") {
                self.write_1h = Some(x);
            }
        }
        if let Some(x) = u
            .get("output_tokens_details")
            .and_then(|d| opt_u64_at(d, "thinking_tokens"))
        {
            self.thinking = Some(x);
        }
        if let Some(x) = u
            .get("server_tool_use")
            .and_then(|d| opt_u64_at(d, "web_search_requests"))
        {
            self.web_search = Some(x);
        }
        self.sum_iterations(u);
    }

    /// A request that compacted its context (server-side compaction) sampled
    /// twice: `usage.iterations` holds a `compaction` iteration and the
    /// `message` one, and the top level reports only the latter. Every
    /// compaction is billed too, so its tokens are added. Other iterations
    /// are already in the top level (`message`) or belong to another model
    /// (`advisor_message`, priced as that model) and are left as reported.
    fn sum_iterations(&mut self, u: &Value) {
        let Some(list) = u.get("iterations").and_then(Value::as_array) else {
            return;
        };
        let mut c = Compaction::default();
        for i in list
            .iter()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("compaction"))
        {
            let creation = i.get("cache_creation").filter(|c| c.is_object());
            let split = |key: &str| creation.and_then(|cc| opt_u64_at(cc, key)).unwrap_or(0);
            let write_5m = split("ephemeral_5m_input_tokens");
            let write_1h = split("ephemeral_1h_input_tokens");
            c.input = c.input.saturating_add(u64_at(i, "input_tokens"));
            c.output = c.output.saturating_add(u64_at(i, "output_tokens"));
            c.cache_read = c.cache_read.saturating_add(u64_at(i, "cache_read_input_tokens"));
            c.cache_write = c.cache_write.saturating_add(
                opt_u64_at(i, "cache_creation_input_tokens").unwrap_or(write_5m.saturating_add(write_1h)),
            );
            c.write_1h = c.write_1h.saturating_add(write_1h);
        }
        // Each usage block reports every iteration so far: the latest replaces.
        self.compaction = c;
    }

    /// Normalised: input counts cache reads and writes too. When only the
    /// per-lifetime breakdown is reported, the total is its sum; the 1-hour
    /// part never exceeds the total.
    fn normalise(self) -> Usage {
        let split = match (self.write_5m, self.write_1h) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        let c = self.compaction;
        let cache_write = self.cache_write.or(split);
        let cache_write = match cache_write {
            Some(w) => Some(w.saturating_add(c.cache_write)),
            None => (c.cache_write > 0).then_some(c.cache_write),
        };
        let write = cache_write.unwrap_or(0);
        let write_1h = match self.write_1h {
            Some(h) => Some(h.saturating_add(c.write_1h)),
            None => (c.write_1h > 0).then_some(c.write_1h),
        };
        let cache_read = self.cache_read.saturating_add(c.cache_read);
        let output = self.output.saturating_add(c.output);
        Usage {
            input_tokens: self
                .input
                .saturating_add(c.input)
                .saturating_add(cache_read)
                .saturating_add(write),
            output_tokens: output,
            cached_tokens: cache_read,
            cache_write_tokens: cache_write,
            cache_write_1h_tokens: write_1h.map(|h| h.min(write)),
            reasoning_tokens: self.thinking.map(|t| t.min(output)),
            web_search_requests: self.web_search,
        }
    }
}

/// Usage of a response.
pub(crate) fn usage(u: &Value) -> Usage {
    let mut r = RawUsage::default();
    r.update(u);
    r.normalise()
}

/// Parse a (200) response body.
pub(crate) fn parse(body: &[u8]) -> Result<Completion, AttemptError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(&e))?;
    if let Some(e) = embedded_error(&v) {
        return Err(e);
    }
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| AttemptError::invalid("response has no content"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: str_at(block, "id").unwrap_or_default(),
                name: str_at(block, "name").unwrap_or_default(),
                arguments: block
                    .get("input")
                    .map_or_else(|| "{}".to_string(), Value::to_string),
            }),
            _ => {}
        }
    }
    Ok(Completion {
        text,
        tool_calls,
        finish_reason: str_at(&v, "stop_reason"),
        usage: v.get("usage").map(usage).unwrap_or_default(),
        response_model: str_at(&v, "model"),
    })
}

/// Decodes `message_start` … `message_stop`.
#[derive(Default)]
pub(crate) struct StreamDecoder {
    text: String,
    tools: BTreeMap<u64, ToolCall>,
    stop_reason: Option<String>,
    usage: RawUsage,
    model: Option<String>,
    done: bool,
}

impl Decoder for StreamDecoder {
    fn on_event(&mut self, ev: SseEvent) -> Result<Chunk, AttemptError> {
        if ev.data.trim().is_empty() {
            return Ok(Chunk::Nothing);
        }
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| malformed(&e))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(ev.event.as_deref())
            .unwrap_or("");
        match kind {
            "message_start" => {
                if let Some(m) = v.get("message") {
                    self.model = str_at(m, "model");
                    if let Some(u) = m.get("usage") {
                        self.usage.update(u);
                    }
                    // A resumed turn (programmatic tool calling) can start
                    // with content blocks and a stop reason already in place.
                    if let Some(r) = str_at(m, "stop_reason") {
                        self.stop_reason = Some(r);
                    }
                    let blocks = m.get("content").and_then(Value::as_array);
                    for (i, b) in blocks.into_iter().flatten().enumerate() {
                        match b.get("type").and_then(Value::as_str) {
                            Some("text") => self
                                .text
                                .push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
                            Some("tool_use") => {
                                self.tools.insert(
                                    i as u64,
                                    ToolCall {
                                        id: str_at(b, "id").unwrap_or_default(),
                                        name: str_at(b, "name").unwrap_or_default(),
                                        arguments: b.get("input").map_or_else(String::new, Value::to_string),
                                    },
                                );
                            }
                            _ => {}
                        }
                    }
                }
            }
            "content_block_start" => {
                let idx = u64_at(&v, "index");
                if let Some(b) = v.get("content_block") {
                    match b.get("type").and_then(Value::as_str) {
                        Some("tool_use") => {
                            self.tools.insert(
                                idx,
                                ToolCall {
                                    id: str_at(b, "id").unwrap_or_default(),
                                    name: str_at(b, "name").unwrap_or_default(),
                                    arguments: String::new(),
                                },
                            );
                            return Ok(Chunk::Output);
                        }
                        Some("text") => {
                            if let Some(t) = b.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                                self.text.push_str(t);
                                return Ok(Chunk::Text(t.to_string()));
                            }
                        }
                        // The model's first output may be thinking or a server
                        // tool call; an empty thinking block is not output yet.
                        Some("redacted_thinking" | "server_tool_use") => return Ok(Chunk::Output),
                        Some("thinking")
                            if b.get("thinking")
                                .and_then(Value::as_str)
                                .is_some_and(|t| !t.is_empty()) =>
                        {
                            return Ok(Chunk::Output)
                        }
                        _ => {}
                    }
                }
            }
            "content_block_delta" => {
                let idx = u64_at(&v, "index");
                let Some(d) = v.get("delta") else {
                    return Ok(Chunk::Nothing);
                };
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        if let Some(t) = d.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                            self.text.push_str(t);
                            return Ok(Chunk::Text(t.to_string()));
                        }
                    }
                    Some("input_json_delta") => {
                        if let (Some(call), Some(p)) = (
                            self.tools.get_mut(&idx),
                            d.get("partial_json").and_then(Value::as_str),
                        ) {
                            call.arguments.push_str(p);
                        }
                        return Ok(Chunk::Output);
                    }
                    Some("thinking_delta")
                        if d.get("thinking")
                            .and_then(Value::as_str)
                            .is_some_and(|t| !t.is_empty()) =>
                    {
                        return Ok(Chunk::Output)
                    }
                    Some("citations_delta") => return Ok(Chunk::Output),
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = v.get("delta").and_then(|d| str_at(d, "stop_reason")) {
                    self.stop_reason = Some(r);
                }
                if let Some(u) = v.get("usage") {
                    self.usage.update(u);
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                let (t, c, m) = crate::error::parse_error_body(ev.data.as_bytes());
                return Err(api_error(None, t, c, m));
            }
            _ => {} // ping, content_block_stop, future events
        }
        Ok(Chunk::Nothing)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(self: Box<Self>) -> Result<Completion, AttemptError> {
        if !self.done {
            return Err(AttemptError::network("stream ended before message_stop"));
        }
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
        Ok(Completion {
            text: self.text,
            tool_calls,
            finish_reason: self.stop_reason,
            usage: self.usage.normalise(),
            response_model: self.model,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::types::Message;

    #[test]
    fn body_moves_system_and_tool_results() {
        let req = Request::new(vec![
            Message::system("extra"),
            Message::user("hi"),
            Message::assistant_tool_calls(
                "",
                vec![ToolCall {
                    id: "t1".into(),
                    name: "f".into(),
                    arguments: "{\"a\":1}".into(),
                }],
            ),
            Message::tool("t1", "1"),
            Message::tool("t2", "2"),
        ])
        .system("sys")
        .stop("END")
        .json_mode();
        let b = body(&req, "claude-sonnet-4-5", true);
        assert_eq!(b["max_tokens"], DEFAULT_MAX_TOKENS);
        assert!(b["system"]
            .as_str()
            .unwrap()
            .starts_with("sys\n\nextra\n\nRespond with a single JSON"));
        assert_eq!(b["messages"].as_array().unwrap().len(), 3);
        assert_eq!(b["messages"][1]["content"][0]["input"]["a"], 1);
        assert_eq!(b["messages"][2]["content"].as_array().unwrap().len(), 2);
        assert_eq!(b["stop_sequences"], json!(["END"]));
        assert_eq!(b["stream"], true);
    }

    #[test]
    fn parses_a_documented_response_with_cache_usage() {
        let body = br#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
          "content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"city":"Paris"}}],
          "stop_reason":"tool_use","stop_sequence":null,
          "usage":{"input_tokens":100,"cache_creation_input_tokens":2000,"cache_read_input_tokens":5000,"output_tokens":300}}"#;
        let c = parse(body).unwrap();
        assert_eq!(c.text, "Let me check.");
        assert_eq!(c.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(c.usage.input_tokens, 7100, "input + cache reads + cache writes");
        assert_eq!(c.usage.cached_tokens, 5000);
        assert_eq!(c.usage.cache_write_tokens, Some(2000));
        assert_eq!(c.usage.output_tokens, 300);
    }

    #[test]
    fn documented_stream() {
        let events = [
            (
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-haiku-4-5-20251001","stop_reason":null,"usage":{"input_tokens":25,"cache_read_input_tokens":10,"cache_creation_input_tokens":0,"output_tokens":1}}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            ("ping", r#"{"type": "ping"}"#),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}"#,
            ),
            ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"x\":"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"2}"}}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            ),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ];
        let mut d: Box<dyn Decoder> = Box::<StreamDecoder>::default();
        let mut deltas = Vec::new();
        for (e, data) in events {
            if let Chunk::Text(t) = d
                .on_event(SseEvent {
                    event: Some(e.into()),
                    data: data.into(),
                    id: None,
                })
                .unwrap()
            {
                deltas.push(t);
            }
        }
        assert_eq!(deltas, vec!["Hello", "!"]);
        assert!(d.is_done());
        let c = d.finish().unwrap();
        assert_eq!(c.usage.input_tokens, 35);
        assert_eq!(c.usage.cached_tokens, 10);
        assert_eq!(c.usage.output_tokens, 15);
        assert_eq!(c.tool_calls[0].arguments, "{\"x\":2}");
        assert_eq!(c.finish_reason.as_deref(), Some("tool_use"));
    }

    #[test]
    fn stream_that_starts_with_content() {
        let mut d = StreamDecoder::default();
        let ev = |data: &str| SseEvent {
            event: None,
            data: data.into(),
            id: None,
        };
        d.on_event(ev(r#"{"type":"message_start","message":{"model":"claude-sonnet-4-6","content":[{"type":"code_execution_tool_result","tool_use_id":"srvtoolu_1","content":{}},{"type":"tool_use","id":"toolu_1","name":"lookup_customer","input":{"id":"c1"}}],"stop_reason":"tool_use","usage":{"input_tokens":0,"output_tokens":0}}}"#)).unwrap();
        d.on_event(ev(r#"{"type":"message_stop"}"#)).unwrap();
        let c = Box::new(d).finish().unwrap();
        assert_eq!(c.finish_reason.as_deref(), Some("tool_use"));
        assert_eq!(c.tool_calls[0].name, "lookup_customer");
        assert_eq!(c.tool_calls[0].arguments, r#"{"id":"c1"}"#);
    }

    #[test]
    fn compaction_iterations_are_added() {
        let u = usage(
            &json!({"input_tokens":180,"output_tokens":8,"cache_read_input_tokens":0,
            "cache_creation_input_tokens":0,
            "iterations":[
              {"type":"compaction","input_tokens":100,"output_tokens":82,"cache_read_input_tokens":0,
               "cache_creation_input_tokens":55096,
               "cache_creation":{"ephemeral_5m_input_tokens":55096,"ephemeral_1h_input_tokens":0}},
              {"type":"message","input_tokens":180,"output_tokens":8},
              {"type":"advisor_message","model":"claude-opus-4-8","input_tokens":2518,"output_tokens":22}]}),
        );
        assert_eq!(u.input_tokens, 180 + 100 + 55096);
        assert_eq!(u.output_tokens, 90);
        assert_eq!(u.cache_write_tokens, Some(55096));
        assert_eq!(u.cache_write_1h_tokens.unwrap_or(0), 0);
    }

    #[test]
    fn web_search_requests_are_read_and_billed() {
        // The final `message_delta` usage of a recorded web-search stream.
        let u: Value = serde_json::from_str(
            r#"{"input_tokens":22397,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,
                "output_tokens":637,"server_tool_use":{"web_search_requests":2,"web_fetch_requests":0}}"#,
        )
        .unwrap();
        let usage = usage(&u);
        assert_eq!(usage.web_search_requests, Some(2));
        // claude-sonnet-4: 3 / 15 USD per 1M tokens and 10 USD per 1,000 searches.
        let cost = crate::pricing::PriceTable::builtin()
            .cost("claude-sonnet-4-20250514", &usage)
            .unwrap();
        let expected = 22_397.0 * 3e-6 + 637.0 * 15e-6 + 2.0 * 0.01;
        assert!((cost - expected).abs() < 1e-9, "{cost} vs {expected}");
        // No server tool use reported: nothing added.
        let u: Value = serde_json::from_str(r#"{"input_tokens":10,"output_tokens":5}"#).unwrap();
        assert_eq!(super::usage(&u).web_search_requests, None);
    }

    #[test]
    fn stream_error_event_is_classified() {
        let mut d = StreamDecoder::default();
        let e = d
            .on_event(SseEvent {
                event: Some("error".into()),
                data: r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.into(),
                id: None,
            })
            .unwrap_err();
        assert_eq!(e.class, steer_metrics::ErrorClass::RateLimit);
        assert!(e.retryable);
        assert_eq!(e.provider_code.as_deref(), Some("overloaded_error"));
        let d: Box<dyn Decoder> = Box::<StreamDecoder>::default();
        assert!(d.finish().is_err(), "no message_stop = truncated");
    }
}
