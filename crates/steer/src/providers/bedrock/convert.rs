//! Pure conversions: a [`Request`] → Converse input; Converse output → a
//! [`Completion`]; usage normalisation; JSON ↔ Smithy documents.

use std::collections::HashMap;

use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, CacheTtl, ContentBlock, ConversationRole, InferenceConfiguration, Message,
    SpecificToolChoice, SystemContentBlock, TokenUsage, Tool, ToolChoice, ToolConfiguration, ToolInputSchema,
    ToolResultBlock, ToolResultContentBlock, ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use serde_json::{Map, Value};
use steer_metrics::ErrorClass;

use crate::error::{AttemptError, FailureKind};
use crate::providers::Completion;
use crate::types::{Request, ResponseFormat, Role, ToolCall, Usage};

/// The parts of a Converse / ConverseStream request.
#[derive(Debug)]
pub(super) struct Input {
    pub messages: Vec<Message>,
    pub system: Option<Vec<SystemContentBlock>>,
    pub inference: Option<InferenceConfiguration>,
    pub tools: Option<ToolConfiguration>,
    /// `Request::extra`, passed to the model as `additionalModelRequestFields`.
    pub additional: Option<Document>,
}

/// A request Bedrock would refuse: an `invalid_request`, not retried.
pub(super) fn bad_request(message: impl Into<String>) -> AttemptError {
    let mut e = AttemptError::new(FailureKind::Api, ErrorClass::InvalidRequest, message);
    e.retryable = false;
    e
}

/// The Converse input for `req`.
///
/// - System prompt and system messages → `system`; a JSON response format
///   adds an instruction there (as for Anthropic).
/// - Consecutive messages of one role merge into one message (Converse wants
///   user and assistant turns to alternate); a tool result is a `toolResult`
///   block of a user turn; an assistant's tool calls are `toolUse` blocks.
/// - Tools in the OpenAI format (`{"type":"function","function":{...}}`), the
///   Anthropic format (`{"name","description","input_schema"}`) or Bedrock's
///   own (`{"toolSpec":{...}}`) → `toolSpec`s; `tool_choice` `auto`,
///   `required`/`any`, or a named function/tool → `auto`, `any`, `tool`
///   (`none` sends no choice).
pub(super) fn input(req: &Request) -> Result<Input, AttemptError> {
    let mut messages: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();
    for m in &req.messages {
        let (role, blocks) = match m.role {
            Role::System => continue, // joined into `system`
            Role::User => (
                ConversationRole::User,
                vec![ContentBlock::Text(m.content.clone())],
            ),
            Role::Tool => {
                let result = ToolResultBlock::builder()
                    .tool_use_id(m.tool_call_id.clone().unwrap_or_default())
                    .content(ToolResultContentBlock::Text(m.content.clone()))
                    .build()
                    .map_err(|e| bad_request(format!("tool result: {e}")))?;
                (ConversationRole::User, vec![ContentBlock::ToolResult(result)])
            }
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() || m.tool_calls.is_empty() {
                    blocks.push(ContentBlock::Text(m.content.clone()));
                }
                for c in &m.tool_calls {
                    let args: Value =
                        serde_json::from_str(&c.arguments).unwrap_or_else(|_| Value::Object(Map::new()));
                    let block = ToolUseBlock::builder()
                        .tool_use_id(&c.id)
                        .name(&c.name)
                        .input(to_document(&args))
                        .build()
                        .map_err(|e| bad_request(format!("tool call: {e}")))?;
                    blocks.push(ContentBlock::ToolUse(block));
                }
                (ConversationRole::Assistant, blocks)
            }
        };
        match messages.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let messages = messages
        .into_iter()
        .map(|(role, content)| {
            Message::builder()
                .role(role)
                .set_content(Some(content))
                .build()
                .map_err(|e| bad_request(format!("message: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;

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

    let inference = (req.max_tokens.is_some()
        || req.temperature.is_some()
        || req.top_p.is_some()
        || !req.stop.is_empty())
    .then(|| {
        InferenceConfiguration::builder()
            .set_max_tokens(req.max_tokens.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
            .set_temperature(req.temperature.map(|t| t as f32))
            .set_top_p(req.top_p.map(|p| p as f32))
            .set_stop_sequences((!req.stop.is_empty()).then(|| req.stop.clone()))
            .build()
    });

    let additional = (!req.extra.is_empty()).then(|| {
        Document::Object(
            req.extra
                .iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect(),
        )
    });

    Ok(Input {
        messages,
        system: system.map(|s| vec![SystemContentBlock::Text(s)]),
        inference,
        tools: tool_config(req.tools.as_ref(), req.tool_choice.as_ref())?,
        additional,
    })
}

fn tool_config(
    tools: Option<&Value>,
    choice: Option<&Value>,
) -> Result<Option<ToolConfiguration>, AttemptError> {
    let Some(tools) = tools else {
        return Ok(None);
    };
    let list = tools
        .as_array()
        .ok_or_else(|| bad_request("tools must be an array of tool definitions"))?;
    if list.is_empty() {
        return Ok(None);
    }
    let mut specs = Vec::with_capacity(list.len());
    for t in list {
        specs.push(Tool::ToolSpec(tool_spec(t)?));
    }
    let choice = match choice {
        None => None,
        Some(c) => tool_choice(c)?,
    };
    ToolConfiguration::builder()
        .set_tools(Some(specs))
        .set_tool_choice(choice)
        .build()
        .map(Some)
        .map_err(|e| bad_request(format!("tool configuration: {e}")))
}

/// One tool definition in any of the accepted formats.
fn tool_spec(t: &Value) -> Result<ToolSpecification, AttemptError> {
    let (name, description, schema) = if let Some(s) = t.get("toolSpec") {
        let schema = s.get("inputSchema").map(|i| i.get("json").unwrap_or(i)).cloned();
        (s.get("name"), s.get("description"), schema)
    } else if let Some(f) = t.get("function").filter(|f| f.is_object()) {
        (f.get("name"), f.get("description"), f.get("parameters").cloned())
    } else {
        (
            t.get("name"),
            t.get("description"),
            t.get("input_schema").cloned(),
        )
    };
    let name = name
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("a tool definition has no name"))?;
    let schema = schema.unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
    ToolSpecification::builder()
        .name(name)
        .set_description(description.and_then(Value::as_str).map(str::to_string))
        .input_schema(ToolInputSchema::Json(to_document(&schema)))
        .build()
        .map_err(|e| bad_request(format!("tool `{name}`: {e}")))
}

fn tool_choice(c: &Value) -> Result<Option<ToolChoice>, AttemptError> {
    let named = |name: Option<&Value>| -> Result<Option<ToolChoice>, AttemptError> {
        let name = name
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request("tool_choice names no tool"))?;
        SpecificToolChoice::builder()
            .name(name)
            .build()
            .map(|s| Some(ToolChoice::Tool(s)))
            .map_err(|e| bad_request(format!("tool_choice: {e}")))
    };
    let kind = c.as_str().or_else(|| c.get("type").and_then(Value::as_str));
    match kind {
        Some("auto") => Ok(Some(ToolChoice::Auto(AutoToolChoice::builder().build()))),
        Some("required" | "any") => Ok(Some(ToolChoice::Any(AnyToolChoice::builder().build()))),
        Some("none") => Ok(None),
        // OpenAI {"type":"function","function":{"name":..}}; Anthropic {"type":"tool","name":..}
        Some("function") => named(c.get("function").and_then(|f| f.get("name"))),
        Some("tool") => named(c.get("name")),
        _ => match c.get("tool") {
            // Bedrock's own {"tool":{"name":..}}, {"auto":{}}, {"any":{}}
            Some(t) => named(t.get("name")),
            None if c.get("auto").is_some() => Ok(Some(ToolChoice::Auto(AutoToolChoice::builder().build()))),
            None if c.get("any").is_some() => Ok(Some(ToolChoice::Any(AnyToolChoice::builder().build()))),
            None => Err(bad_request(format!("unsupported tool_choice for Bedrock: {c}"))),
        },
    }
}

/// Normalised usage (see the module docs of `bedrock`).
pub(super) fn usage(u: &TokenUsage) -> Usage {
    let n = |x: i32| u64::try_from(x).unwrap_or(0);
    let read = u.cache_read_input_tokens().map_or(0, n);
    let details = u.cache_details();
    let split = (!details.is_empty()).then(|| details.iter().map(|d| n(d.input_tokens())).sum::<u64>());
    let one_hour = (!details.is_empty()).then(|| {
        details
            .iter()
            .filter(|d| *d.ttl() == CacheTtl::OneHour)
            .map(|d| n(d.input_tokens()))
            .sum::<u64>()
    });
    let write = u.cache_write_input_tokens().map(n).or(split);
    let w = write.unwrap_or(0);
    Usage {
        input_tokens: n(u.input_tokens()).saturating_add(read).saturating_add(w),
        output_tokens: n(u.output_tokens()),
        cached_tokens: read,
        cache_write_tokens: write,
        cache_write_1h_tokens: one_hour.map(|h| h.min(w)),
        reasoning_tokens: None,
        web_search_requests: None,
    }
}

/// Text and tool calls of an answer's content blocks.
pub(super) fn collect_blocks(blocks: &[ContentBlock], c: &mut Completion) {
    for b in blocks {
        match b {
            ContentBlock::Text(t) => c.text.push_str(t),
            ContentBlock::ToolUse(u) => c.tool_calls.push(ToolCall {
                id: u.tool_use_id().to_string(),
                name: u.name().to_string(),
                arguments: to_json(u.input()).to_string(),
            }),
            _ => {} // reasoning, citations, images, ...
        }
    }
}

/// Stop reasons that mean a guardrail or content filter stopped the answer.
const FILTERED: [&str; 2] = ["guardrail_intervened", "content_filtered"];

/// A filtered answer fails as `content_filter`, its usage kept.
pub(super) fn check_content(c: Completion) -> Result<Completion, AttemptError> {
    match c.finish_reason.as_deref() {
        Some(r) if FILTERED.contains(&r) => {
            let mut e = AttemptError::new(
                FailureKind::Api,
                ErrorClass::ContentFilter,
                format!("the provider stopped the answer ({r})"),
            );
            e.retryable = false;
            e.provider_code = Some(r.to_string());
            e.partial = Some(Box::new(c));
            Err(e)
        }
        _ => Ok(c),
    }
}

/// JSON → a Smithy document.
pub(super) fn to_document(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(0.0))
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        Value::Object(o) => Document::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// A Smithy document → JSON (a non-finite float becomes `null`).
pub(super) fn to_json(d: &Document) -> Value {
    match d {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Document::String(s) => Value::String(s.clone()),
        Document::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Document::Object(o) => {
            // Sorted keys: the arguments text is the same for the same object.
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), to_json(&o[k]))).collect())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::types::Message as Msg;
    use serde_json::json;

    #[test]
    fn messages_alternate_and_carry_tool_use_and_results() {
        let req = Request::new(vec![
            Msg::system("extra"),
            Msg::user("What is the weather in Paris and Rome?"),
            Msg::assistant_tool_calls(
                "Let me check.",
                vec![
                    ToolCall {
                        id: "tooluse_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    },
                    ToolCall {
                        id: "tooluse_2".into(),
                        name: "get_weather".into(),
                        arguments: "not json".into(),
                    },
                ],
            ),
            Msg::tool("tooluse_1", "18 C"),
            Msg::tool("tooluse_2", "21 C"),
            Msg::user("And tomorrow?"),
        ])
        .system("sys")
        .max_tokens(512)
        .temperature(0.5)
        .stop("END")
        .json_mode()
        .extra("top_k", json!(50));
        let i = input(&req).unwrap();
        assert_eq!(
            i.messages.len(),
            3,
            "tool results and the next user text form one user turn"
        );
        assert_eq!(i.messages[0].role(), &ConversationRole::User);
        let a = i.messages[1].content();
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].as_text().unwrap(), "Let me check.");
        let tu = a[1].as_tool_use().unwrap();
        assert_eq!(tu.tool_use_id(), "tooluse_1");
        assert_eq!(to_json(tu.input()), json!({"city": "Paris"}));
        assert_eq!(
            to_json(a[2].as_tool_use().unwrap().input()),
            json!({}),
            "bad JSON → {{}}"
        );
        let u = i.messages[2].content();
        assert_eq!(u.len(), 3);
        assert_eq!(u[1].as_tool_result().unwrap().tool_use_id(), "tooluse_2");
        assert_eq!(u[2].as_text().unwrap(), "And tomorrow?");
        let sys = i.system.unwrap();
        assert!(sys[0]
            .as_text()
            .unwrap()
            .starts_with("sys\n\nextra\n\nRespond with a single JSON"));
        let inf = i.inference.unwrap();
        assert_eq!(inf.max_tokens(), Some(512));
        assert_eq!(inf.temperature(), Some(0.5));
        assert_eq!(inf.stop_sequences(), ["END"]);
        assert_eq!(to_json(&i.additional.unwrap()), json!({"top_k": 50}));
        assert!(i.tools.is_none());
    }

    #[test]
    fn tools_in_every_accepted_format() {
        let params =
            json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
        let req = Request::prompt("hi")
            .tools(json!([
                {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": params}},
                {"name": "lookup", "description": "Look up", "input_schema": params},
                {"toolSpec": {"name": "top_song", "inputSchema": {"json": params}}},
            ]))
            .tool_choice(json!({"type": "function", "function": {"name": "get_weather"}}));
        let t = input(&req).unwrap().tools.unwrap();
        let names: Vec<&str> = t
            .tools()
            .iter()
            .map(|t| t.as_tool_spec().unwrap().name())
            .collect();
        assert_eq!(names, ["get_weather", "lookup", "top_song"]);
        let spec = t.tools()[0].as_tool_spec().unwrap();
        assert_eq!(spec.description(), Some("Weather"));
        assert_eq!(to_json(spec.input_schema().unwrap().as_json().unwrap()), params);
        assert_eq!(
            to_json(
                t.tools()[2]
                    .as_tool_spec()
                    .unwrap()
                    .input_schema()
                    .unwrap()
                    .as_json()
                    .unwrap()
            ),
            params
        );
        assert_eq!(t.tool_choice().unwrap().as_tool().unwrap().name(), "get_weather");

        for (choice, want) in [
            (json!("auto"), "auto"),
            (json!("required"), "any"),
            (json!({"type": "any"}), "any"),
            (json!({"type": "tool", "name": "lookup"}), "tool"),
            (json!({"tool": {"name": "lookup"}}), "tool"),
        ] {
            let req = Request::prompt("hi")
                .tools(json!([{"name": "lookup"}]))
                .tool_choice(choice);
            let got = match input(&req).unwrap().tools.unwrap().tool_choice() {
                Some(ToolChoice::Auto(_)) => "auto",
                Some(ToolChoice::Any(_)) => "any",
                Some(ToolChoice::Tool(_)) => "tool",
                _ => "other",
            };
            assert_eq!(got, want);
        }
        let none = Request::prompt("hi")
            .tools(json!([{"name": "lookup"}]))
            .tool_choice(json!("none"));
        assert!(input(&none).unwrap().tools.unwrap().tool_choice().is_none());

        let bad = Request::prompt("hi").tools(json!([{"description": "no name"}]));
        let e = input(&bad).unwrap_err();
        assert_eq!(e.class, ErrorClass::InvalidRequest);
        assert!(!e.retryable);
        let bad = Request::prompt("hi").tools(json!({"not": "an array"}));
        assert_eq!(input(&bad).unwrap_err().class, ErrorClass::InvalidRequest);
    }

    #[test]
    fn usage_counts_cache_reads_and_writes_as_input() {
        let u = TokenUsage::builder()
            .input_tokens(4)
            .output_tokens(9)
            .total_tokens(4014)
            .cache_read_input_tokens(0)
            .cache_write_input_tokens(4001)
            .build()
            .unwrap();
        let n = usage(&u);
        assert_eq!(
            n.input_tokens, 4005,
            "inputTokens excludes cache tokens: totalTokens - outputTokens"
        );
        assert_eq!(n.input_tokens + n.output_tokens, 4014);
        assert_eq!(n.cached_tokens, 0);
        assert_eq!(n.cache_write_tokens, Some(4001));
        assert_eq!(n.cache_write_1h_tokens, None);

        let u = TokenUsage::builder()
            .input_tokens(10)
            .output_tokens(5)
            .total_tokens(2515)
            .cache_read_input_tokens(1500)
            .cache_write_input_tokens(1000)
            .cache_details(
                aws_sdk_bedrockruntime::types::CacheDetail::builder()
                    .ttl(CacheTtl::OneHour)
                    .input_tokens(600)
                    .build()
                    .unwrap(),
            )
            .cache_details(
                aws_sdk_bedrockruntime::types::CacheDetail::builder()
                    .ttl(CacheTtl::FiveMinutes)
                    .input_tokens(400)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let n = usage(&u);
        assert_eq!(n.input_tokens, 2510);
        assert_eq!(n.cached_tokens, 1500);
        assert_eq!(n.cache_write_tokens, Some(1000));
        assert_eq!(n.cache_write_1h_tokens, Some(600));

        // Negative counts (never sent) read as 0.
        let u = TokenUsage::builder()
            .input_tokens(-1)
            .output_tokens(3)
            .total_tokens(2)
            .build()
            .unwrap();
        assert_eq!(usage(&u).input_tokens, 0);
        assert_eq!(usage(&u).cache_write_tokens, None);
    }

    #[test]
    fn filtered_answers_fail_with_their_usage() {
        for r in ["guardrail_intervened", "content_filtered"] {
            let c = Completion {
                finish_reason: Some(r.into()),
                usage: Usage {
                    input_tokens: 7,
                    ..Usage::default()
                },
                ..Completion::default()
            };
            let e = check_content(c).unwrap_err();
            assert_eq!(e.class, ErrorClass::ContentFilter);
            assert_eq!(e.provider_code.as_deref(), Some(r));
            assert_eq!(e.partial.unwrap().usage.input_tokens, 7);
        }
        let c = Completion {
            finish_reason: Some("max_tokens".into()),
            ..Completion::default()
        };
        assert!(check_content(c).is_ok());
    }

    #[test]
    fn documents_round_trip() {
        let v = json!({"a": [1, -2, 2.5, true, null, "x"], "b": {"c": {}}, "big": u64::MAX});
        assert_eq!(to_json(&to_document(&v)), v);
        assert_eq!(to_json(&Document::Number(Number::Float(f64::NAN))), Value::Null);
    }
}
