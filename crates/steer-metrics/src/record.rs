//! The metrics record: one [`AgentMetrics`] per logical LLM call.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How a call was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A single request/response call.
    #[default]
    Generate,
    /// A streamed call (server-sent events).
    Stream,
    /// An embeddings call (the GenAI conventions' operation `embeddings`).
    Embeddings,
}

impl Method {
    /// The stable snake_case name (`generate`, `stream`, `embeddings`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Generate => "generate",
            Method::Stream => "stream",
            Method::Embeddings => "embeddings",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "generate" => Ok(Method::Generate),
            "stream" => Ok(Method::Stream),
            "embeddings" => Ok(Method::Embeddings),
            other => Err(UnknownName(other.to_string())),
        }
    }
}

/// A name that does not map to a known enum value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown name `{0}`")]
pub struct UnknownName(pub String);

/// Why a call failed, as a stable, typed class (never an exception class name).
///
/// The serialized names are stable snake_case strings and are what every sink
/// writes (`rate_limit`, `timeout`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// 429 or a provider rate-limit / overload signal.
    RateLimit,
    /// The request or the whole call exceeded its time budget.
    Timeout,
    /// 401: missing or invalid credentials.
    Authentication,
    /// 403: the credentials may not do this.
    PermissionDenied,
    /// 404: unknown model or endpoint.
    NotFound,
    /// 400/422: the request was malformed or unacceptable.
    InvalidRequest,
    /// The provider refused the content.
    ContentFilter,
    /// 5xx from the provider.
    ServerError,
    /// Connection refused / reset, DNS, TLS, truncated body.
    Network,
    /// The caller dropped or cancelled the call.
    Cancelled,
    /// Anything else.
    Unknown,
}

impl ErrorClass {
    /// Every class, in a stable order.
    pub const ALL: [ErrorClass; 11] = [
        ErrorClass::RateLimit,
        ErrorClass::Timeout,
        ErrorClass::Authentication,
        ErrorClass::PermissionDenied,
        ErrorClass::NotFound,
        ErrorClass::InvalidRequest,
        ErrorClass::ContentFilter,
        ErrorClass::ServerError,
        ErrorClass::Network,
        ErrorClass::Cancelled,
        ErrorClass::Unknown,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::RateLimit => "rate_limit",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Authentication => "authentication",
            ErrorClass::PermissionDenied => "permission_denied",
            ErrorClass::NotFound => "not_found",
            ErrorClass::InvalidRequest => "invalid_request",
            ErrorClass::ContentFilter => "content_filter",
            ErrorClass::ServerError => "server_error",
            ErrorClass::Network => "network",
            ErrorClass::Cancelled => "cancelled",
            ErrorClass::Unknown => "unknown",
        }
    }

    /// Whether a call failing with this class is worth retrying.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorClass::RateLimit | ErrorClass::Timeout | ErrorClass::ServerError | ErrorClass::Network
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorClass {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_string()))
    }
}

/// One record per logical LLM call (all retries of one call are one record).
///
/// Build one with [`AgentMetrics::new`] and fill the public fields; every
/// field has a meaningful default. Serializes with serde (JSON field names
/// are the Rust field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentMetrics {
    /// Unique, time-ordered id (UUID v7). Sinks that can de-duplicate use it.
    pub request_id: Uuid,
    /// Optional distributed-trace id supplied by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// When the call started (UTC).
    pub timestamp: DateTime<Utc>,
    /// The model as requested (without the `provider/` prefix).
    pub model: String,
    /// The model as the provider reported it answered (e.g. a dated alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    /// Provider name (`openai`, `anthropic`, `xai`, `sim`, or a custom one).
    pub provider: String,
    /// `generate`, `stream` or `embeddings`.
    #[serde(default)]
    pub method: Method,
    /// Wall-clock duration of the whole logical call, retries included, in milliseconds.
    pub latency_ms: f64,
    /// Time to first token (streaming), in milliseconds: from the start of the
    /// call to the first output chunk of any kind (text, reasoning/thinking,
    /// tool-call delta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// Input (prompt) tokens, cached ones included.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output (completion) tokens, reasoning included.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens served from the provider's prompt cache (a subset of `input_tokens`).
    #[serde(default)]
    pub cached_tokens: u64,
    /// Input tokens written to the provider's prompt cache (every cache
    /// lifetime), where reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    /// The part of `cache_write_tokens` written to the 1-hour cache (billed at
    /// a higher rate than 5-minute writes), where the provider reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h_tokens: Option<u64>,
    /// Reasoning / thinking tokens (a subset of `output_tokens`), where reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// Cost in USD; `None` when the price is unknown (never a silent 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Number of retries (attempts - 1).
    #[serde(default)]
    pub retries: u32,
    /// Why the model stopped, exactly as the provider said it (`stop`,
    /// `length`, `tool_calls`, `content_filter`, `end_turn`, `max_tokens`,
    /// `pause_turn`, `refusal`, ...), like the GenAI conventions'
    /// `gen_ai.response.finish_reasons`. `None` when the call failed before
    /// the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Why the call failed; `None` on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// Short, secret-free description of the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Names of the tools the model asked to call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools_used: Vec<String>,
    /// Number of tool invocations.
    #[serde(default)]
    pub tools_invoked: u32,
    /// Iterations of an agent loop this call belongs to.
    #[serde(default)]
    pub agent_loop_iters: u32,
    /// Name of the agent runtime, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_runtime: Option<String>,
    /// Free-form user tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// How many calls this record stands for (1 / sample rate).
    #[serde(default = "one")]
    pub sample_weight: f64,
}

fn one() -> f64 {
    1.0
}

impl AgentMetrics {
    /// A record for `provider`/`model` starting now, with a fresh UUID v7 id.
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        AgentMetrics {
            request_id: Uuid::now_v7(),
            trace_id: None,
            timestamp: Utc::now(),
            model: model.into(),
            response_model: None,
            provider: provider.into(),
            method: Method::Generate,
            latency_ms: 0.0,
            ttft_ms: None,
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            cache_write_tokens: None,
            cache_write_1h_tokens: None,
            reasoning_tokens: None,
            cost_usd: None,
            retries: 0,
            finish_reason: None,
            error_class: None,
            error_message: None,
            tools_used: Vec::new(),
            tools_invoked: 0,
            agent_loop_iters: 0,
            agent_runtime: None,
            tags: BTreeMap::new(),
            sample_weight: 1.0,
        }
    }

    /// Whether the call failed.
    pub fn is_error(&self) -> bool {
        self.error_class.is_some()
    }

    /// `"success"` or `"error"`.
    pub fn status(&self) -> &'static str {
        if self.is_error() {
            "error"
        } else {
            "success"
        }
    }

    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Builder-style: set the latency.
    #[must_use]
    pub fn with_latency_ms(mut self, ms: f64) -> Self {
        self.latency_ms = ms;
        self
    }

    /// Builder-style: set input and output tokens.
    #[must_use]
    pub fn with_tokens(mut self, input: u64, output: u64) -> Self {
        self.input_tokens = input;
        self.output_tokens = output;
        self
    }

    /// Builder-style: mark the call failed.
    #[must_use]
    pub fn with_error(mut self, class: ErrorClass) -> Self {
        self.error_class = Some(class);
        self
    }

    /// Builder-style: add a tag.
    #[must_use]
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_class_names_are_stable_and_round_trip() {
        for class in ErrorClass::ALL {
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
            assert_eq!(class.as_str().parse::<ErrorClass>().unwrap(), class);
        }
        assert_eq!(ErrorClass::PermissionDenied.as_str(), "permission_denied");
        assert!("Exception".parse::<ErrorClass>().is_err());
    }

    #[test]
    fn request_ids_are_unique_and_time_ordered() {
        let ids: Vec<Uuid> = (0..1000)
            .map(|_| AgentMetrics::new("sim", "m").request_id)
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "UUID v7 ids generated in sequence sort in sequence");
        sorted.dedup();
        assert_eq!(sorted.len(), 1000);
        assert_eq!(ids[0].get_version_num(), 7);
    }

    #[test]
    fn json_round_trip_keeps_every_field() {
        let mut m = AgentMetrics::new("anthropic", "claude-sonnet-4-5")
            .with_latency_ms(812.5)
            .with_tokens(1200, 300)
            .with_error(ErrorClass::RateLimit)
            .with_tag("team", "search");
        m.trace_id = Some("abc".into());
        m.ttft_ms = Some(120.0);
        m.cached_tokens = 1000;
        m.cache_write_tokens = Some(10);
        m.cache_write_1h_tokens = Some(4);
        m.finish_reason = Some("max_tokens".into());
        m.reasoning_tokens = Some(5);
        m.cost_usd = Some(0.0123);
        m.retries = 2;
        m.tools_used = vec!["search".into()];
        m.tools_invoked = 1;
        m.agent_loop_iters = 3;
        m.agent_runtime = Some("loop".into());
        m.sample_weight = 4.0;
        m.method = Method::Stream;
        m.response_model = Some("claude-sonnet-4-5-20250929".into());
        let json = serde_json::to_string(&m).unwrap();
        let back: AgentMetrics = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert!(json.contains("\"error_class\":\"rate_limit\""));
    }

    #[test]
    fn unknown_cost_is_absent_not_zero() {
        let m = AgentMetrics::new("sim", "x");
        assert_eq!(m.cost_usd, None);
        let json = serde_json::to_value(&m).unwrap();
        assert!(json.get("cost_usd").is_none());
    }
}
