//! Requests, responses and stream events.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use steer_metrics::AgentMetrics;
use uuid::Uuid;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// For [`Role::Tool`] messages: the id of the tool call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For [`Role::Assistant`] messages: the tool calls the model made
    /// (send them back with the tool results in an agent loop).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

impl Message {
    /// A message with this role and text.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            tool_call_id: None,
            tool_calls: Vec::new(),
        }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    /// The result of the tool call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: Role::Tool,
            content: content.into(),
            tool_call_id: Some(tool_call_id.into()),
            tool_calls: Vec::new(),
        }
    }
    /// An assistant message that called tools (as returned in
    /// [`GenerateResponse::tool_calls`]).
    pub fn assistant_tool_calls(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
            tool_call_id: None,
            tool_calls,
        }
    }
}

/// The shape of the answer.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum ResponseFormat {
    /// Free text (the default).
    #[default]
    Text,
    /// Any JSON object (OpenAI `json_object`; for Anthropic an instruction
    /// is added to the system prompt).
    JsonObject,
    /// JSON matching a schema (OpenAI `json_schema`; for Anthropic the schema
    /// is added to the system prompt).
    JsonSchema {
        /// Schema name.
        name: String,
        /// The JSON schema.
        schema: Value,
    },
}

/// A request: messages plus options. Build from a prompt (`"Hello".into()`),
/// from messages ([`Request::new`]), then chain options.
///
/// ```
/// use steer::{Message, Request};
/// let req = Request::new(vec![Message::user("Summarise this")])
///     .system("Be brief.")
///     .temperature(0.2)
///     .max_tokens(100)
///     .tag("team", "search");
/// assert_eq!(req.messages.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
#[non_exhaustive]
pub struct Request {
    /// The conversation.
    pub messages: Vec<Message>,
    /// System prompt (sent as the provider expects: a system message or field).
    pub system: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Largest number of output tokens (Anthropic requires one: default 4096).
    pub max_tokens: Option<u32>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Answer format.
    pub response_format: ResponseFormat,
    /// Tool definitions, passed to the provider as they are (in its format).
    pub tools: Option<Value>,
    /// Tool choice, passed to the provider as it is.
    pub tool_choice: Option<Value>,
    /// Extra top-level body fields, passed as they are (e.g. `seed`).
    pub extra: BTreeMap<String, Value>,
    /// Use this id for the call's metrics record instead of a fresh UUID v7.
    pub request_id: Option<Uuid>,
    /// Distributed-trace id copied into the record.
    pub trace_id: Option<String>,
    /// Tags copied into the record.
    pub tags: BTreeMap<String, String>,
    /// Time budget per attempt (default: the client's timeout).
    pub timeout: Option<Duration>,
    /// Time budget for the whole call, retries and backoff included
    /// (default: [`RetryConfig::total_deadline`](crate::RetryConfig)).
    pub deadline: Option<Duration>,
}

impl Request {
    /// A request with these messages.
    pub fn new(messages: Vec<Message>) -> Self {
        Request {
            messages,
            ..Default::default()
        }
    }
    /// A request with one user message.
    pub fn prompt(text: impl Into<String>) -> Self {
        Self::new(vec![Message::user(text)])
    }
    /// Set the system prompt.
    pub fn system(mut self, s: impl Into<String>) -> Self {
        self.system = Some(s.into());
        self
    }
    /// Set the temperature.
    pub fn temperature(mut self, t: f64) -> Self {
        self.temperature = Some(t);
        self
    }
    /// Set the maximum number of output tokens.
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }
    /// Set top-p.
    pub fn top_p(mut self, p: f64) -> Self {
        self.top_p = Some(p);
        self
    }
    /// Add a stop sequence.
    pub fn stop(mut self, s: impl Into<String>) -> Self {
        self.stop.push(s.into());
        self
    }
    /// Ask for a JSON object.
    pub fn json_mode(mut self) -> Self {
        self.response_format = ResponseFormat::JsonObject;
        self
    }
    /// Ask for JSON matching `schema`.
    pub fn json_schema(mut self, name: impl Into<String>, schema: Value) -> Self {
        self.response_format = ResponseFormat::JsonSchema {
            name: name.into(),
            schema,
        };
        self
    }
    /// Tool definitions in the provider's format (an array), passed through.
    pub fn tools(mut self, tools: Value) -> Self {
        self.tools = Some(tools);
        self
    }
    /// Tool choice in the provider's format, passed through.
    pub fn tool_choice(mut self, choice: Value) -> Self {
        self.tool_choice = Some(choice);
        self
    }
    /// Add an extra top-level body field.
    pub fn extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }
    /// Use this request id for the metrics record.
    pub fn request_id(mut self, id: Uuid) -> Self {
        self.request_id = Some(id);
        self
    }
    /// Set the trace id.
    pub fn trace_id(mut self, id: impl Into<String>) -> Self {
        self.trace_id = Some(id.into());
        self
    }
    /// Add a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }
    /// Set the per-attempt timeout (for streams also the longest wait for the next piece).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
    /// Bound the whole call, retries and backoff included.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }

    /// The system prompt and every system message, joined.
    pub(crate) fn system_text(&self) -> Option<String> {
        let mut parts: Vec<&str> = Vec::new();
        if let Some(s) = &self.system {
            parts.push(s);
        }
        parts.extend(
            self.messages
                .iter()
                .filter(|m| m.role == Role::System)
                .map(|m| m.content.as_str()),
        );
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }
}

impl From<&str> for Request {
    fn from(s: &str) -> Self {
        Request::prompt(s)
    }
}

impl From<String> for Request {
    fn from(s: String) -> Self {
        Request::prompt(s)
    }
}

impl From<&String> for Request {
    fn from(s: &String) -> Self {
        Request::prompt(s.as_str())
    }
}

impl From<Vec<Message>> for Request {
    fn from(m: Vec<Message>) -> Self {
        Request::new(m)
    }
}

impl From<Message> for Request {
    fn from(m: Message) -> Self {
        Request::new(vec![m])
    }
}

/// Token usage, normalised so every provider means the same thing.
///
/// `input_tokens` counts every input token: for OpenAI it is
/// `prompt_tokens` (cached included); for Anthropic it is
/// `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// All input tokens, cached and cache-written ones included.
    pub input_tokens: u64,
    /// Output tokens, reasoning included.
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cached_tokens: u64,
    /// Input tokens written to the prompt cache (every cache lifetime), where reported.
    pub cache_write_tokens: Option<u64>,
    /// The part of `cache_write_tokens` written to the 1-hour cache (Anthropic
    /// `cache_creation.ephemeral_1h_input_tokens`), where reported; the rest
    /// are 5-minute writes.
    #[serde(default)]
    pub cache_write_1h_tokens: Option<u64>,
    /// Reasoning (thinking) tokens (part of `output_tokens`), where reported.
    pub reasoning_tokens: Option<u64>,
    /// Server-side web searches the provider ran for the call and bills per
    /// request (Anthropic `usage.server_tool_use.web_search_requests`), where
    /// reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_search_requests: Option<u64>,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call (send it back in [`Message::tool`]).
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, as a JSON text.
    pub arguments: String,
}

/// The answer to [`SteerClient::generate`](crate::SteerClient::generate).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GenerateResponse {
    /// The generated text (empty when the model only called tools).
    pub text: String,
    /// Tool calls the model asked for.
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped, as the provider said it (`stop`, `end_turn`, `tool_calls`, ...).
    pub finish_reason: Option<String>,
    /// Normalised token usage.
    pub usage: Usage,
    /// The provider that answered.
    pub provider: String,
    /// The model that answered, as the provider reported it.
    pub model: String,
    /// The metrics record of this call, exactly as it was handed to the collector.
    pub metrics: AgentMetrics,
}

impl GenerateResponse {
    /// The call's request id.
    pub fn request_id(&self) -> Uuid {
        self.metrics.request_id
    }
    /// The call's cost in USD, if the model is priced.
    pub fn cost_usd(&self) -> Option<f64> {
        self.metrics.cost_usd
    }
}

/// The input of [`SteerClient::embed`](crate::SteerClient::embed): texts,
/// and the tags and id of the call's record.
///
/// ```
/// let r = steer::EmbedRequest::from(vec!["a", "b"]).tag("feature", "search");
/// assert_eq!(r.inputs.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
#[non_exhaustive]
pub struct EmbedRequest {
    /// The texts to embed.
    pub inputs: Vec<String>,
    /// Tags of the call's record.
    pub tags: BTreeMap<String, String>,
    /// The record's id (default: a fresh UUID v7).
    pub request_id: Option<Uuid>,
    /// Time budget per attempt (default: the client's).
    pub timeout: Option<Duration>,
}

impl EmbedRequest {
    /// Add a tag to the call's record.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }
    /// Set the record's id.
    pub fn request_id(mut self, id: Uuid) -> Self {
        self.request_id = Some(id);
        self
    }
    /// Set the time budget per attempt.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
}

impl From<&str> for EmbedRequest {
    fn from(s: &str) -> Self {
        EmbedRequest {
            inputs: vec![s.to_string()],
            ..EmbedRequest::default()
        }
    }
}

impl From<String> for EmbedRequest {
    fn from(s: String) -> Self {
        EmbedRequest {
            inputs: vec![s],
            ..EmbedRequest::default()
        }
    }
}

impl From<Vec<String>> for EmbedRequest {
    fn from(inputs: Vec<String>) -> Self {
        EmbedRequest {
            inputs,
            ..EmbedRequest::default()
        }
    }
}

impl From<Vec<&str>> for EmbedRequest {
    fn from(inputs: Vec<&str>) -> Self {
        inputs.into_iter().map(str::to_string).collect::<Vec<_>>().into()
    }
}

/// The answer to [`SteerClient::embed`](crate::SteerClient::embed).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EmbedResponse {
    /// One vector per input, in input order.
    pub embeddings: Vec<Vec<f32>>,
    /// Usage (input tokens, where the provider reports them).
    pub usage: Usage,
    /// The provider that answered.
    pub provider: String,
    /// The model that answered (the provider's, else the requested one).
    pub model: String,
    /// The call's metrics record, exactly as it was handed to the collector.
    pub metrics: AgentMetrics,
}

/// An item of a [`ResponseStream`](crate::ResponseStream).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// A piece of generated text.
    Delta(String),
    /// The end: the whole response, usage and metrics included. Always the last item.
    Done(Box<GenerateResponse>),
}
