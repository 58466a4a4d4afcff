//! What a point is made of: the attributes of a record, where each goes
//! (tag, field or omitted) and the timestamp precision. Shared by the
//! configuration and the encoder.

/// Timestamp precision of the written points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds (the default; exact).
    #[default]
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
}

impl Precision {
    /// Nanoseconds per unit.
    pub fn nanos_per_unit(self) -> i128 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
        }
    }

    /// The `precision=` value of the v1 `/write` API (`n`, `u`, `ms`, `s`;
    /// InfluxDB 1.x silently reads `ns`/`us` as nanoseconds).
    pub fn v1_param(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "n",
            Precision::Microseconds => "u",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
        }
    }

    /// The `precision=` value of the v2 `/api/v2/write` API (`ns`, `us`, `ms`, `s`).
    pub fn v2_param(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "n" | "ns" => Precision::Nanoseconds,
            "u" | "us" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            _ => return None,
        })
    }
}

/// Where an attribute of [`AgentMetrics`](steer_metrics::AgentMetrics) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A tag (indexed; keep cardinality low).
    Tag,
    /// A field.
    Field,
    /// Not written.
    Omit,
}

macro_rules! attributes {
    ($( $(#[$doc:meta])* $name:ident = $key:literal, $default:ident, $numeric:literal; )*) => {
        /// An attribute of a record and the tag/field key it is written as.
        ///
        /// Text attributes can be tags, fields or omitted; numeric ones fields
        /// or omitted.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Attribute {
            $( $(#[$doc])* $name, )*
        }

        impl Attribute {
            /// Every attribute.
            pub const ALL: [Attribute; Attribute::COUNT] = [$(Attribute::$name,)*];
            /// Number of attributes.
            pub const COUNT: usize = [$($key,)*].len();

            /// The tag or field key it is written as.
            pub fn key(self) -> &'static str {
                match self { $(Attribute::$name => $key,)* }
            }

            /// Where it goes unless configured otherwise.
            pub fn default_placement(self) -> Placement {
                match self { $(Attribute::$name => Placement::$default,)* }
            }

            /// Whether it is a number (cannot be a tag).
            pub fn is_numeric(self) -> bool {
                match self { $(Attribute::$name => $numeric,)* }
            }

            /// Whether `key` is the key of a built-in attribute (user tags
            /// with such a key are skipped).
            pub fn is_builtin_key(key: &str) -> bool {
                // `tags` names the user tags themselves, not a column.
                key != "tags" && matches!(key, $($key)|*)
            }
        }
    };
}

attributes! {
    /// `model` (tag by default).
    Model = "model", Tag, false;
    /// `provider` (tag).
    Provider = "provider", Tag, false;
    /// `method`: `generate` or `stream` (tag).
    Method = "method", Tag, false;
    /// `status`: `success` or `error` (tag).
    Status = "status", Tag, false;
    /// `error_class`, only on failed calls (tag).
    ErrorClass = "error_class", Tag, false;
    /// `finish_reason`, as the provider said it (`stop`, `length`,
    /// `tool_calls`, `end_turn`, `max_tokens`, ...; tag: low cardinality).
    FinishReason = "finish_reason", Tag, false;
    /// The user's free-form tags, each under its own key (tags).
    UserTags = "tags", Tag, false;
    /// `response_model` (string field).
    ResponseModel = "response_model", Field, false;
    /// `agent_runtime` (string field).
    AgentRuntime = "agent_runtime", Field, false;
    /// `trace_id` (string field).
    TraceId = "trace_id", Field, false;
    /// `error_message` (string field).
    ErrorMessage = "error_message", Field, false;
    /// `request_id`, the record's UUID (string field; never a tag unless you
    /// accept one series per call).
    RequestId = "request_id", Field, false;
    /// `tools_used`, comma-separated (string field).
    ToolsUsed = "tools_used", Field, false;
    /// `latency_ms` (float field).
    LatencyMs = "latency_ms", Field, true;
    /// `ttft_ms` (float field, streaming calls).
    TtftMs = "ttft_ms", Field, true;
    /// `input_tokens` (integer field).
    InputTokens = "input_tokens", Field, true;
    /// `output_tokens` (integer field).
    OutputTokens = "output_tokens", Field, true;
    /// `total_tokens` = input + output (integer field).
    TotalTokens = "total_tokens", Field, true;
    /// `cached_tokens` (integer field).
    CachedTokens = "cached_tokens", Field, true;
    /// `cache_write_tokens` (integer field, where reported).
    CacheWriteTokens = "cache_write_tokens", Field, true;
    /// `cache_write_1h_tokens`: the 1-hour part of the cache writes (integer field, where reported).
    CacheWrite1hTokens = "cache_write_1h_tokens", Field, true;
    /// `reasoning_tokens` (integer field, where reported).
    ReasoningTokens = "reasoning_tokens", Field, true;
    /// `cost_usd` (float field; absent when the price is unknown).
    CostUsd = "cost_usd", Field, true;
    /// `retries` (integer field).
    Retries = "retries", Field, true;
    /// `tools_invoked` (integer field).
    ToolsInvoked = "tools_invoked", Field, true;
    /// `agent_loop_iters` (integer field).
    AgentLoopIters = "agent_loop_iters", Field, true;
    /// `sample_weight` (float field).
    SampleWeight = "sample_weight", Field, true;
}
