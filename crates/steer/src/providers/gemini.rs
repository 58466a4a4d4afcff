//! Google Gemini, Generative Language API (`generateContent`,
//! `streamGenerateContent?alt=sse`, `batchEmbedContents`).
//!
//! Usage (`usageMetadata`) is normalised like every provider's:
//! `input = promptTokenCount + toolUsePromptTokenCount` (the prompt count
//! includes cached content), `cached = cachedContentTokenCount`,
//! `output = candidatesTokenCount + thoughtsTokenCount` (thinking is billed as
//! output), `reasoning = thoughtsTokenCount`. The finish reason is kept as
//! Gemini says it (`STOP`, `MAX_TOKENS`, `SAFETY`, ...); safety blocks
//! (`SAFETY`, `PROHIBITED_CONTENT`, `BLOCKLIST`, `SPII`, `RECITATION`, a
//! `promptFeedback.blockReason`) are content-filter failures.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{embedded_error, malformed, opt_u64_at, str_at, u64_at, Chunk, Completion, Decoder, Embeddings};
use crate::error::AttemptError;
use crate::sse::SseEvent;
use crate::types::{Request, ResponseFormat, Role, ToolCall, Usage};

/// Finish reasons (and prompt block reasons) that mean the content was blocked.
/// `MODEL_ARMOR` and `JAILBREAK` are Vertex AI's prompt (and response)
/// screening blocks, reported in the same shape.
pub(crate) const BLOCKED: [&str; 11] = [
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "OTHER_BLOCKED",
    "MODEL_ARMOR",
    "JAILBREAK",
];

/// OpenAI-style `[{"type":"function","function":{..}}]` tools as Gemini
/// `[{"functionDeclarations":[..]}]`; anything else is passed as given.
fn tools(t: &Value) -> Value {
    let Some(list) = t.as_array() else {
        return t.clone();
    };
    let decls: Vec<Value> = list.iter().filter_map(|x| x.get("function").cloned()).collect();
    if decls.is_empty() || decls.len() != list.len() {
        return t.clone();
    }
    json!([{ "functionDeclarations": decls }])
}

/// The request body.
pub(crate) fn body(req: &Request, _model: &str) -> Value {
    let mut contents: Vec<Value> = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let (role, parts) = match m.role {
            Role::System => continue, // joined into systemInstruction
            Role::User => ("user", vec![json!({"text": m.content})]),
            Role::Assistant => {
                let mut parts = Vec::new();
                if !m.content.is_empty() {
                    parts.push(json!({"text": m.content}));
                }
                for c in &m.tool_calls {
                    let args: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                    parts.push(json!({"functionCall": {"name": c.name, "args": args}}));
                }
                ("model", parts)
            }
            Role::Tool => {
                // Gemini matches a result to its call by the function name,
                // which steer keeps as the call id.
                let response: Value =
                    serde_json::from_str(&m.content).unwrap_or_else(|_| json!({"result": m.content}));
                let response = if response.is_object() {
                    response
                } else {
                    json!({ "result": response })
                };
                let name = m.tool_call_id.clone().unwrap_or_default();
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
        };
        contents.push(json!({"role": role, "parts": parts}));
    }
    let mut b = Map::new();
    b.insert("contents".into(), Value::Array(contents));
    if let Some(s) = req.system_text() {
        b.insert("systemInstruction".into(), json!({"parts": [{"text": s}]}));
    }
    let mut g = Map::new();
    if let Some(t) = req.temperature {
        g.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        g.insert("topP".into(), json!(p));
    }
    if let Some(n) = req.max_tokens {
        g.insert("maxOutputTokens".into(), json!(n));
    }
    if !req.stop.is_empty() {
        g.insert("stopSequences".into(), json!(req.stop));
    }
    match &req.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            g.insert("responseMimeType".into(), json!("application/json"));
        }
        ResponseFormat::JsonSchema { schema, .. } => {
            g.insert("responseMimeType".into(), json!("application/json"));
            g.insert("responseJsonSchema".into(), schema.clone());
        }
    }
    if !g.is_empty() {
        b.insert("generationConfig".into(), Value::Object(g));
    }
    if let Some(t) = &req.tools {
        b.insert("tools".into(), tools(t));
    }
    if let Some(t) = &req.tool_choice {
        b.insert("toolConfig".into(), t.clone());
    }
    for (k, v) in &req.extra {
        b.insert(k.clone(), v.clone());
    }
    Value::Object(b)
}

/// Usage of a response (`usageMetadata`).
pub(crate) fn usage(u: &Value) -> Usage {
    let prompt = u64_at(u, "promptTokenCount").saturating_add(u64_at(u, "toolUsePromptTokenCount"));
    let thoughts = opt_u64_at(u, "thoughtsTokenCount");
    Usage {
        input_tokens: prompt,
        output_tokens: u64_at(u, "candidatesTokenCount").saturating_add(thoughts.unwrap_or(0)),
        cached_tokens: u64_at(u, "cachedContentTokenCount").min(prompt),
        cache_write_tokens: None,
        cache_write_1h_tokens: None,
        reasoning_tokens: thoughts,
        web_search_requests: None,
    }
}

/// What one response (or stream chunk) holds.
#[derive(Default)]
struct Parts {
    text: String,
    thought: bool,
    calls: Vec<ToolCall>,
}

fn parts(candidate: &Value) -> Parts {
    let mut out = Parts::default();
    let Some(list) = candidate
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
    else {
        return out;
    };
    for p in list {
        if let Some(f) = p.get("functionCall") {
            let name = str_at(f, "name").unwrap_or_default();
            out.calls.push(ToolCall {
                id: str_at(f, "id").unwrap_or_else(|| name.clone()),
                name,
                arguments: f.get("args").map_or_else(|| "{}".to_string(), Value::to_string),
            });
        } else if let Some(t) = p.get("text").and_then(Value::as_str) {
            if p.get("thought").and_then(Value::as_bool) == Some(true) {
                out.thought |= !t.is_empty();
            } else {
                out.text.push_str(t);
            }
        }
    }
    out
}

/// The finish reason of a response: the candidate's, or the prompt's block reason.
fn finish_reason(v: &Value) -> Option<String> {
    v.get("candidates")
        .and_then(|c| c.get(0))
        .and_then(|c| str_at(c, "finishReason"))
        .or_else(|| v.get("promptFeedback").and_then(|f| str_at(f, "blockReason")))
}

/// Parse a (200) response body.
pub(crate) fn parse(body: &[u8]) -> Result<Completion, AttemptError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(&e))?;
    if let Some(e) = embedded_error(&v) {
        return Err(e);
    }
    let candidate = v.get("candidates").and_then(|c| c.get(0));
    let finish = finish_reason(&v);
    if candidate.is_none() && finish.is_none() {
        return Err(AttemptError::invalid("response has no candidates"));
    }
    let p = candidate.map(parts).unwrap_or_default();
    Ok(Completion {
        text: p.text,
        tool_calls: p.calls,
        finish_reason: finish,
        usage: v.get("usageMetadata").map(usage).unwrap_or_default(),
        response_model: str_at(&v, "modelVersion"),
    })
}

/// Decodes `streamGenerateContent?alt=sse`: every event is a whole
/// `GenerateContentResponse` chunk; the last carries the finish reason and
/// the usage. The stream has no end marker: it ends with the connection.
#[derive(Default)]
pub(crate) struct StreamDecoder {
    text: String,
    tools: BTreeMap<usize, ToolCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    model: Option<String>,
}

impl Decoder for StreamDecoder {
    fn on_event(&mut self, ev: SseEvent) -> Result<Chunk, AttemptError> {
        let data = ev.data.trim();
        if data.is_empty() {
            return Ok(Chunk::Nothing);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| malformed(&e))?;
        if let Some(e) = embedded_error(&v) {
            return Err(e);
        }
        if let Some(m) = str_at(&v, "modelVersion") {
            self.model = Some(m);
        }
        if let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) {
            self.usage = Some(usage(u));
        }
        if let Some(r) = finish_reason(&v) {
            self.finish_reason = Some(r);
        }
        let Some(candidate) = v.get("candidates").and_then(|c| c.get(0)) else {
            return Ok(Chunk::Nothing);
        };
        let p = parts(candidate);
        let output = p.thought || !p.calls.is_empty();
        for c in p.calls {
            let i = self.tools.len();
            self.tools.insert(i, c);
        }
        if !p.text.is_empty() {
            self.text.push_str(&p.text);
            return Ok(Chunk::Text(p.text));
        }
        Ok(if output { Chunk::Output } else { Chunk::Nothing })
    }

    fn is_done(&self) -> bool {
        false
    }

    fn finish(self: Box<Self>) -> Result<Completion, AttemptError> {
        if self.finish_reason.is_none() {
            return Err(AttemptError::network("stream ended before the final chunk"));
        }
        Ok(Completion {
            text: self.text,
            tool_calls: self.tools.into_values().collect(),
            finish_reason: self.finish_reason,
            usage: self.usage.unwrap_or_default(),
            response_model: self.model,
        })
    }
}

/// The `batchEmbedContents` body for `inputs`.
pub(crate) fn embed_body(inputs: &[String], model: &str) -> Value {
    let requests: Vec<Value> = inputs
        .iter()
        .map(|t| json!({"model": format!("models/{model}"), "content": {"parts": [{"text": t}]}}))
        .collect();
    json!({ "requests": requests })
}

/// Vectors (and usage, where reported) of a `batchEmbedContents` answer.
pub(crate) fn parse_embeddings(body: &[u8]) -> Result<Embeddings, AttemptError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(&e))?;
    if let Some(e) = embedded_error(&v) {
        return Err(e);
    }
    let list = v
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| AttemptError::invalid("embeddings response has no `embeddings`"))?;
    let vectors = list
        .iter()
        .map(|e| {
            e.get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).map(|x| x as f32).collect())
                .ok_or_else(|| AttemptError::invalid("an embedding has no `values`"))
        })
        .collect::<Result<Vec<Vec<f32>>, _>>()?;
    Ok(Embeddings {
        vectors,
        usage: v.get("usageMetadata").map(usage).unwrap_or_default(),
        model: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::types::Message;

    #[test]
    fn body_maps_roles_tools_and_options() {
        let req = Request::new(vec![
            Message::user("weather?"),
            Message::assistant_tool_calls(
                "",
                vec![ToolCall {
                    id: "get_weather".into(),
                    name: "get_weather".into(),
                    arguments: "{\"city\":\"Paris\"}".into(),
                }],
            ),
            Message::tool("get_weather", "{\"temp\":21}"),
        ])
        .system("be brief")
        .max_tokens(64)
        .temperature(0.3)
        .json_mode()
        .tools(json!([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]));
        let b = body(&req, "gemini-2.5-flash");
        assert_eq!(b["systemInstruction"]["parts"][0]["text"], "be brief");
        assert_eq!(b["contents"][0]["role"], "user");
        assert_eq!(b["contents"][1]["role"], "model");
        assert_eq!(
            b["contents"][1]["parts"][0]["functionCall"]["args"]["city"],
            "Paris"
        );
        assert_eq!(
            b["contents"][2]["parts"][0]["functionResponse"]["response"]["temp"],
            21
        );
        assert_eq!(b["generationConfig"]["maxOutputTokens"], 64);
        assert_eq!(b["generationConfig"]["responseMimeType"], "application/json");
        assert_eq!(b["tools"][0]["functionDeclarations"][0]["name"], "get_weather");
    }

    #[test]
    fn parses_a_documented_response_with_thoughts_and_cache() {
        let body = br#"{"candidates":[{"content":{"parts":[{"text":"Hi there"}],"role":"model"},
          "finishReason":"STOP","index":0}],
          "usageMetadata":{"promptTokenCount":1200,"candidatesTokenCount":40,"totalTokenCount":1340,
            "cachedContentTokenCount":1024,"thoughtsTokenCount":100},
          "modelVersion":"gemini-2.5-flash","responseId":"abc"}"#;
        let c = parse(body).unwrap();
        assert_eq!(c.text, "Hi there");
        assert_eq!(c.finish_reason.as_deref(), Some("STOP"));
        assert_eq!(c.usage.input_tokens, 1200);
        assert_eq!(c.usage.cached_tokens, 1024);
        assert_eq!(c.usage.output_tokens, 140);
        assert_eq!(c.usage.reasoning_tokens, Some(100));
        assert_eq!(c.response_model.as_deref(), Some("gemini-2.5-flash"));
    }

    #[test]
    fn a_blocked_prompt_has_its_block_reason() {
        let c =
            parse(br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":8}}"#)
                .unwrap();
        assert_eq!(c.finish_reason.as_deref(), Some("SAFETY"));
        assert!(parse(b"{}").is_err());
    }

    #[test]
    fn stream_chunks_thoughts_calls_and_the_end() {
        let mut d: Box<dyn Decoder> = Box::<StreamDecoder>::default();
        let ev = |s: &str| SseEvent {
            event: None,
            data: s.to_string(),
            id: None,
        };
        assert_eq!(
            d.on_event(ev(r#"{"candidates":[{"content":{"parts":[{"text":"thinking...","thought":true}],"role":"model"}}]}"#)).unwrap(),
            Chunk::Output
        );
        assert_eq!(
            d.on_event(ev(
                r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"}}]}"#
            ))
            .unwrap(),
            Chunk::Text("Hel".into())
        );
        d.on_event(ev(r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{"a":1}}}],"role":"model"},"finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":5,"thoughtsTokenCount":3},"modelVersion":"gemini-2.5-pro"}"#)).unwrap();
        let c = d.finish().unwrap();
        assert_eq!(c.text, "Hel");
        assert_eq!(c.tool_calls[0].name, "f");
        assert_eq!(c.tool_calls[0].arguments, "{\"a\":1}");
        assert_eq!(c.usage.output_tokens, 8);
        let d: Box<dyn Decoder> = Box::<StreamDecoder>::default();
        assert!(d.finish().is_err(), "a stream cut before its last chunk fails");
    }
}
