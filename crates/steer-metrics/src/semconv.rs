//! What the metric backends share: the OpenTelemetry GenAI semantic
//! conventions' attribute names, histogram boundaries and provider names,
//! the bounds beyond which a value is treated as implausible (skipped and
//! counted by aggregating sinks, so one absurd record cannot poison a
//! series' totals), the finish reasons kept on folded series, and the rules
//! for the tag keys a sink exports as attributes / labels (`?tags=`); and
//! the attribute set of a record's series with the series cap
//! ([`for_each_series_attribute`], [`SeriesTable`]), written by the OTLP
//! sink as attributes and by the Prometheus sink as labels.
//!
//! **Token types.** The conventions define `gen_ai.token.type` = `input` |
//! `output` only; cache reads, cache writes and reasoning tokens are span
//! attributes (`gen_ai.usage.cache_read.input_tokens`,
//! `gen_ai.usage.cache_creation.input_tokens`,
//! `gen_ai.usage.reasoning.output_tokens`), not token types of
//! `gen_ai.client.token.usage`. The OTLP and Prometheus sinks therefore keep
//! `input` / `output` (cache and reasoning tokens are parts of those, so
//! extra types would count them twice in any `sum` over the histogram).

use std::fmt::Write as _;

/// The conventions' recommended boundaries for
/// `gen_ai.client.operation.duration` (seconds).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// The conventions' recommended boundaries for `gen_ai.client.token.usage`.
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// Boundaries for `gen_ai.client.operation.time_to_first_chunk` (seconds):
/// those the conventions recommend for the server-side time to first token.
pub const TTFC_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

mod series;
pub use series::{for_each_series_attribute, AttrName, AttrValue, GenAiAttr, SeriesTable};

/// Attribute keys of the GenAI conventions (and `error.type`,
/// `server.address`) the OTLP and Prometheus sinks put on their series.
pub mod attr {
    /// `gen_ai.operation.name` (always `chat`).
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    /// `gen_ai.provider.name`.
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// `gen_ai.request.model`.
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    /// `gen_ai.response.model`.
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// `gen_ai.response.finish_reasons`: a string array; steer puts the
    /// record's one finish reason in it (the provider's own value).
    pub const FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
    /// `error.type`.
    pub const ERROR_TYPE: &str = "error.type";
    /// `server.address`.
    pub const SERVER_ADDRESS: &str = "server.address";
    /// `gen_ai.token.type` (`input` | `output`).
    pub const TOKEN_TYPE: &str = "gen_ai.token.type";

    /// Every built-in key, which an exported tag key must not take.
    pub const ALL: [&str; 8] = [
        OPERATION_NAME,
        PROVIDER_NAME,
        REQUEST_MODEL,
        RESPONSE_MODEL,
        FINISH_REASONS,
        ERROR_TYPE,
        SERVER_ADDRESS,
        TOKEN_TYPE,
    ];
}

/// The finish reasons the providers steer supports report (OpenAI, xAI:
/// `stop`, `length`, `tool_calls`, `content_filter`, `function_call`;
/// Anthropic: `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`,
/// `pause_turn`, `refusal`, `model_context_window_exceeded`). A series
/// folded by a sink's cap keeps its finish reason when it is one of these
/// and gets [`OTHER`] otherwise, so the folded series stay bounded.
pub const KNOWN_FINISH_REASONS: [&str; 12] = [
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "function_call",
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
];

/// The finish reason a folded series carries: the value itself when it is
/// one of [`KNOWN_FINISH_REASONS`], else [`OTHER`].
pub fn folded_finish_reason(reason: &str) -> &'static str {
    KNOWN_FINISH_REASONS
        .iter()
        .find(|k| **k == reason)
        .copied()
        .unwrap_or(OTHER)
}

/// A record's finish reason as the sinks export it: `None` when absent or
/// empty.
pub fn finish_reason(m: &crate::AgentMetrics) -> Option<&str> {
    m.finish_reason.as_deref().filter(|f| !f.is_empty())
}

/// `s` cut to at most [`MAX_VALUE_LEN`] bytes at a character boundary.
pub fn cut_value(s: &str) -> &str {
    crate::redact::truncate_str(s, MAX_VALUE_LEN)
}

/// Append one part of a series key: `-` when absent, else the value (as
/// exported, cut to [`MAX_VALUE_LEN`]) length-prefixed, so no two
/// combinations share a key.
fn key_part(key: &mut String, v: Option<&str>) {
    match v {
        Some(v) => {
            let v = cut_value(v);
            let _ = write!(key, "{}:{v}", v.len());
        }
        None => key.push('-'),
    }
}

/// `gen_ai.operation.name` of a record: `embeddings` for embeddings calls,
/// `chat` for the others.
pub fn operation_name(method: crate::Method) -> &'static str {
    match method {
        crate::Method::Embeddings => "embeddings",
        crate::Method::Generate | crate::Method::Stream => "chat",
    }
}

/// The series key of a record: the operation, provider, request model, response model,
/// finish reason and the allow-listed tag values (the error class picks a
/// slot of the series), into `key` (cleared first). The OTLP and
/// Prometheus sinks' series cap counts these keys.
pub fn series_key(key: &mut String, m: &crate::AgentMetrics, tag_keys: &[String]) {
    key.clear();
    key_part(key, Some(operation_name(m.method)));
    key_part(key, Some(&m.provider));
    key_part(key, Some(&m.model));
    key_part(key, m.response_model.as_deref());
    key_part(key, finish_reason(m));
    for k in tag_keys {
        key_part(key, m.tags.get(k).map(String::as_str));
    }
}

/// The key of a folded record's series: which of the attributes it has
/// (response model, tags) and its folded finish reason ([`folded_finish_reason`]).
/// Bounded: at most 2 × (2 + [`KNOWN_FINISH_REASONS`]) × 2^tags keys.
pub fn folded_series_key(key: &mut String, m: &crate::AgentMetrics, tag_keys: &[String]) {
    key.clear();
    key_part(key, Some(operation_name(m.method)));
    key.push(if m.response_model.is_some() { 'r' } else { '-' });
    key_part(key, finish_reason(m).map(folded_finish_reason));
    for k in tag_keys {
        key.push(if m.tags.contains_key(k) { 't' } else { '-' });
    }
}

/// Prometheus label names that histograms and summaries use themselves.
const PROMETHEUS_RESERVED: [&str; 2] = ["le", "quantile"];

/// An attribute key in Prometheus naming: every character other than an
/// ASCII letter, digit or `_` becomes `_` (so `gen_ai.request.model` is
/// `gen_ai_request_model`, as the OpenTelemetry Collector's Prometheus
/// exporter writes it).
pub fn prometheus_label_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Why a tag key cannot be exported as an attribute / label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagKeyError {
    /// Empty, or after sanitising ([`prometheus_label_name`]) not a valid
    /// Prometheus label name (starts with a digit, or with the reserved
    /// `__`).
    #[error("tag key `{0}` is not a valid label name (after `.`/`-`/... become `_`: letters, digits and `_`, not starting with a digit or `__`)")]
    InvalidName(String),
    /// It (or its sanitised form) is a built-in attribute / label name, or
    /// a label Prometheus histograms use (`le`, `quantile`).
    #[error("tag key `{key}` collides with the built-in `{builtin}`")]
    Reserved {
        /// The tag key.
        key: String,
        /// The built-in name it collides with.
        builtin: String,
    },
    /// Two keys give the same label name after sanitising.
    #[error("tag keys `{0}` and `{1}` give the same label name")]
    Duplicate(String, String),
}

/// Check an allow-list of tag keys exported as attributes (OTLP) or labels
/// (Prometheus): each non-empty, a valid Prometheus label name after
/// sanitising, not a built-in name ([`attr::ALL`], in either naming, or
/// `le` / `quantile`), no two the same label. Returns the keys, trimmed,
/// in the order given.
pub fn check_tag_keys<I, S>(keys: I) -> Result<Vec<String>, TagKeyError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<String> = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for k in keys {
        let key = k.as_ref().trim().to_string();
        let label = prometheus_label_name(&key);
        if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) || label.starts_with("__") {
            return Err(TagKeyError::InvalidName(key));
        }
        let builtin = attr::ALL
            .iter()
            .find(|b| **b == key || prometheus_label_name(b) == label)
            .copied()
            .or_else(|| PROMETHEUS_RESERVED.iter().find(|r| **r == label).copied());
        if let Some(b) = builtin {
            return Err(TagKeyError::Reserved {
                key,
                builtin: b.to_string(),
            });
        }
        if let Some(i) = labels.iter().position(|l| *l == label) {
            return Err(TagKeyError::Duplicate(out[i].clone(), key));
        }
        labels.push(label);
        out.push(key);
    }
    Ok(out)
}

/// Take the `tags` parameter out of a sink spec's query (`URL?tags=user,team`
/// or `ADDR?tags=user,team`): returns the spec without it (other query
/// parameters kept in order; no `?` left when none remain) and the
/// comma-separated keys (empty entries skipped; several `tags=` add up), or
/// `None` when there was no `tags` parameter. The keys are not checked here:
/// see [`check_tag_keys`].
pub fn take_tags_param(spec: &str) -> (String, Option<Vec<String>>) {
    let Some((base, query)) = spec.split_once('?') else {
        return (spec.to_string(), None);
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut keys: Option<Vec<String>> = None;
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("tags", v)) => keys.get_or_insert_with(Vec::new).extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(String::from),
            ),
            None if pair == "tags" => {
                keys.get_or_insert_with(Vec::new);
            }
            _ => kept.push(pair),
        }
    }
    let mut out = base.to_string();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    (out, keys)
}

/// The model value of series folded beyond a sink's cardinality cap.
pub const OTHER: &str = "other";

/// Longest attribute / label value kept, in bytes.
pub const MAX_VALUE_LEN: usize = 256;

/// Most times one record's observation is repeated for its sample weight.
pub const MAX_REPEAT: u32 = 10_000;

/// Largest cost of one call aggregating sinks record, in US dollars.
pub const MAX_COST_USD: f64 = 1e9;

/// Largest latency or TTFT aggregating sinks record, in milliseconds (about 11.6 days).
pub const MAX_DURATION_MS: f64 = 1e9;

/// The `gen_ai.provider.name` for a steer provider name: the conventions'
/// well-known value where it differs (`xai` → `x_ai`), else the name itself.
pub fn provider_name(provider: &str) -> &str {
    match provider {
        "xai" => "x_ai",
        other => other,
    }
}

/// How many times a histogram observes a record with this sample weight:
/// `round(w)`, at least 1, at most [`MAX_REPEAT`].
pub fn repeat_count(weight: f64) -> u32 {
    if !weight.is_finite() || weight <= 1.0 {
        return 1;
    }
    let r = weight.round();
    if r >= f64::from(MAX_REPEAT) {
        MAX_REPEAT
    } else {
        // In 1..MAX_REPEAT: exact.
        r as u32
    }
}

/// What a counter adds for a record with this sample weight: `w` when
/// finite and positive, else 1.
pub fn counter_weight(weight: f64) -> f64 {
    if weight.is_finite() && weight > 0.0 {
        weight
    } else {
        1.0
    }
}

/// A plausible cost of one call: finite, not negative, at most [`MAX_COST_USD`].
pub fn plausible_cost(usd: f64) -> bool {
    usd.is_finite() && (0.0..=MAX_COST_USD).contains(&usd)
}

/// A plausible latency or TTFT: finite, not negative, at most [`MAX_DURATION_MS`].
pub fn plausible_duration_ms(ms: f64) -> bool {
    ms.is_finite() && (0.0..=MAX_DURATION_MS).contains(&ms)
}

/// Milliseconds to seconds; `None` unless [`plausible_duration_ms`].
pub fn seconds(ms: f64) -> Option<f64> {
    plausible_duration_ms(ms).then_some(ms / 1000.0)
}

/// What a cost counter adds for a record: `cost × weight` when the cost is
/// finite, not negative and at most [`MAX_COST_USD`] (and the product
/// finite); `None` otherwise.
pub fn cost_amount(cost: f64, weight: f64) -> Option<f64> {
    let v = cost * weight;
    (plausible_cost(cost) && v.is_finite()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_repeats_and_bounds() {
        assert_eq!(
            (
                repeat_count(f64::NAN),
                repeat_count(0.2),
                repeat_count(2.6),
                repeat_count(1e12)
            ),
            (1, 1, 3, MAX_REPEAT)
        );
        assert_eq!((counter_weight(-1.0), counter_weight(4.0)), (1.0, 4.0));
        assert_eq!(seconds(1500.0), Some(1.5));
        assert_eq!(
            (seconds(-1.0), seconds(f64::INFINITY), seconds(2e9)),
            (None, None, None)
        );
        assert_eq!(cost_amount(0.5, 2.0), Some(1.0));
        assert_eq!(
            (
                cost_amount(1e308, 1.0),
                cost_amount(-0.1, 1.0),
                cost_amount(1e9, f64::MAX)
            ),
            (None, None, None)
        );
        assert_eq!(provider_name("xai"), "x_ai");
        assert_eq!(provider_name("openai"), "openai");
    }

    #[test]
    fn finish_reasons_fold_to_known_values_or_other() {
        assert_eq!(folded_finish_reason("length"), "length");
        assert_eq!(folded_finish_reason("refusal"), "refusal");
        assert_eq!(folded_finish_reason("made-up-42"), OTHER);
        assert_eq!(attr::FINISH_REASONS, "gen_ai.response.finish_reasons");
    }

    #[test]
    fn tag_keys_are_checked() {
        assert_eq!(
            check_tag_keys(["user", " team ", "feature.name"]),
            Ok(vec!["user".into(), "team".into(), "feature.name".into()])
        );
        assert_eq!(check_tag_keys(Vec::<String>::new()), Ok(vec![]));
        for bad in ["", "  ", "1user", "__name", ".-x"] {
            let e = check_tag_keys([bad]);
            assert!(matches!(e, Err(TagKeyError::InvalidName(_))), "{bad}: {e:?}");
        }
        for (key, builtin) in [
            ("gen_ai.request.model", "gen_ai.request.model"),
            ("gen_ai_provider_name", "gen_ai.provider.name"),
            ("error.type", "error.type"),
            ("error_type", "error.type"),
            ("server-address", "server.address"),
            ("gen_ai.response.finish_reasons", "gen_ai.response.finish_reasons"),
            ("le", "le"),
            ("quantile", "quantile"),
        ] {
            assert_eq!(
                check_tag_keys([key]),
                Err(TagKeyError::Reserved {
                    key: key.into(),
                    builtin: builtin.into()
                })
            );
        }
        assert_eq!(
            check_tag_keys(["team.id", "team-id"]),
            Err(TagKeyError::Duplicate("team.id".into(), "team-id".into()))
        );
        assert_eq!(prometheus_label_name("a.b-c/d_é"), "a_b_c_d__");
    }

    #[test]
    fn the_tags_parameter_is_taken_out_of_a_spec() {
        let t = |s: &str| take_tags_param(s);
        assert_eq!(t("127.0.0.1:9464"), ("127.0.0.1:9464".into(), None));
        assert_eq!(
            t("127.0.0.1:9464?tags=user,team"),
            ("127.0.0.1:9464".into(), Some(vec!["user".into(), "team".into()]))
        );
        assert_eq!(
            t("http://h:4318/otlp?x=1&tags=user,,team&tags=feature&y=2"),
            (
                "http://h:4318/otlp?x=1&y=2".into(),
                Some(vec!["user".into(), "team".into(), "feature".into()])
            )
        );
        assert_eq!(t("http://h?tags="), ("http://h".into(), Some(vec![])));
        assert_eq!(t("http://h?tags"), ("http://h".into(), Some(vec![])));
        assert_eq!(t("http://h?a=b#f"), ("http://h?a=b#f".into(), None));
    }
}
