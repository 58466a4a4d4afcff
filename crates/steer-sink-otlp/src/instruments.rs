//! The instruments: names, units, bucket boundaries and attributes (the
//! OpenTelemetry GenAI semantic conventions), and how one
//! [`AgentMetrics`] record becomes observations.
//!
//! | instrument | kind | unit | recorded |
//! |---|---|---|---|
//! | `gen_ai.client.operation.duration` | histogram (f64) | `s` | every call, failures included |
//! | `gen_ai.client.token.usage` | histogram (u64) | `{token}` | per `gen_ai.token.type` (`input`, `output`): every successful call; a failed call only for a non-zero count |
//! | `gen_ai.client.operation.time_to_first_chunk` | histogram (f64) | `s` | streamed calls that have a TTFT |
//! | `steer.llm.requests` | counter (f64) | `{request}` | every call |
//! | `steer.llm.errors` | counter (f64) | `{error}` | failed calls |
//! | `steer.llm.cost` | counter (f64) | `USD` | calls with a known cost |
//!
//! Attributes: `gen_ai.operation.name` (`chat`), `gen_ai.provider.name`,
//! `gen_ai.request.model`, `gen_ai.response.model` (when the provider
//! reported one), `gen_ai.response.finish_reasons` (a string array with
//! the record's one finish reason, the provider's own value, when it has
//! one), `error.type` (the [`ErrorClass`](steer_metrics::ErrorClass)
//! snake_case name, failures only), `server.address` (when configured) and
//! each allow-listed record tag the record has (key = tag key).
//!
//! **Token types.** `gen_ai.token.type` is `input` or `output`, the only
//! values the conventions define; cache reads/writes and reasoning tokens
//! are parts of those counts, not types of their own (see
//! [`steer_metrics::semconv`]).
//!
//! **The series cap.** A series is one (provider, request model, response
//! model, finish reason, allow-listed tag values) combination, with a slot
//! per error class. Beyond `max_series` of them, a new combination is
//! folded: provider, models and tag values become `other`, a finish reason
//! other than the [known ones](KNOWN_FINISH_REASONS) becomes `other`.
//!
//! **Sample weights.** A record with `sample_weight` *w* stands for *w*
//! calls: counters add *w* exactly; histograms record the observation
//! `round(w)` times (at least once, at most [`MAX_REPEAT`] times), so for
//! integer weights a histogram's count equals the request counter.
//!
//! **Implausible values are skipped, never recorded.** The record is still
//! counted (requests, errors); only the value is left out and counted in
//! the sink's `invalid_values`:
//!
//! * latency and TTFT that are negative, not finite or above
//!   [`MAX_DURATION_MS`];
//! * a cost that is negative, not finite or above [`MAX_COST_USD`] (so the
//!   `steer.llm.cost` counter never becomes +Inf);
//! * a token count above [`MAX_TOKENS`], or one that would take its series'
//!   running token total past [`TOKEN_SUM_LIMIT`]: the SDK sums a `u64`
//!   histogram in a `u64` (a panic on overflow in debug builds, a wrapped
//!   sum in release), so nothing that could overflow it is handed over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use steer_metrics::{AgentMetrics, ErrorClass};

/// `gen_ai.client.operation.duration`.
pub const DURATION: &str = "gen_ai.client.operation.duration";
/// `gen_ai.client.token.usage`.
pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// `gen_ai.client.operation.time_to_first_chunk`.
pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai.client.operation.time_to_first_chunk";
/// `steer.llm.requests`.
pub const REQUESTS: &str = "steer.llm.requests";
/// `steer.llm.errors`.
pub const ERRORS: &str = "steer.llm.errors";
/// `steer.llm.cost`.
pub const COST: &str = "steer.llm.cost";

pub use steer_metrics::semconv::{
    cost_amount, counter_weight, cut_value, finish_reason, folded_finish_reason, folded_series_key,
    provider_name, repeat_count, seconds, series_key, DURATION_BUCKETS, KNOWN_FINISH_REASONS, MAX_COST_USD,
    MAX_DURATION_MS, MAX_REPEAT, MAX_VALUE_LEN, OTHER, TOKEN_BUCKETS, TTFC_BUCKETS,
};

/// Attribute keys (defined once, in [`steer_metrics::semconv::attr`]).
pub use steer_metrics::semconv::attr;

/// The value of `gen_ai.operation.name`.
pub const OPERATION_CHAT: &str = "chat";

/// Largest token count of one call recorded (2^40, about 1.1e12); a larger
/// count is skipped (counted as invalid).
pub const MAX_TOKENS: u64 = 1 << 40;

/// Largest running token total per series (2^60) the sink lets the SDK's
/// `u64` histogram sum reach; an observation that would pass it is skipped
/// (counted as invalid). One record adds at most
/// `MAX_TOKENS * MAX_REPEAT` (< 2^54), so the SDK sum stays at least 16
/// times below `u64::MAX` even where attribute values cut to
/// [`MAX_VALUE_LEN`] make several series share one attribute set.
pub const TOKEN_SUM_LIMIT: u64 = 1 << 60;

/// An attribute value as exported: any UTF-8 is valid in OTLP, so the
/// value is kept verbatim, only cut to [`MAX_VALUE_LEN`] bytes at a
/// character boundary.
pub fn attribute_value(s: &str) -> String {
    cut_value(s).to_string()
}

/// The attributes common to every instrument for one record. A `folded`
/// record (beyond the series cap) gets `other` for its provider, request
/// and response model and allow-listed tag values, and keeps its finish
/// reason only when it is a [known one](KNOWN_FINISH_REASONS) (else
/// `other`).
pub fn common_attributes(
    m: &AgentMetrics,
    folded: bool,
    server_address: Option<&str>,
    tag_keys: &[String],
) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(7 + tag_keys.len());
    a.push(KeyValue::new(
        attr::OPERATION_NAME,
        steer_metrics::semconv::operation_name(m.method),
    ));
    if folded {
        a.push(KeyValue::new(attr::PROVIDER_NAME, OTHER));
        a.push(KeyValue::new(attr::REQUEST_MODEL, OTHER));
        if m.response_model.is_some() {
            a.push(KeyValue::new(attr::RESPONSE_MODEL, OTHER));
        }
    } else {
        a.push(KeyValue::new(
            attr::PROVIDER_NAME,
            attribute_value(provider_name(&m.provider)),
        ));
        a.push(KeyValue::new(attr::REQUEST_MODEL, attribute_value(&m.model)));
        if let Some(r) = &m.response_model {
            a.push(KeyValue::new(attr::RESPONSE_MODEL, attribute_value(r)));
        }
    }
    if let Some(f) = finish_reason(m) {
        let v = if folded {
            folded_finish_reason(f).to_string()
        } else {
            attribute_value(f)
        };
        a.push(KeyValue::new(
            attr::FINISH_REASONS,
            Value::Array(Array::String(vec![StringValue::from(v)])),
        ));
    }
    if let Some(c) = m.error_class {
        a.push(KeyValue::new(attr::ERROR_TYPE, c.as_str()));
    }
    if let Some(s) = server_address {
        a.push(KeyValue::new(attr::SERVER_ADDRESS, attribute_value(s)));
    }
    for k in tag_keys {
        if let Some(v) = m.tags.get(k) {
            let v = if folded {
                OTHER.to_string()
            } else {
                attribute_value(v)
            };
            a.push(KeyValue::new(k.clone(), v));
        }
    }
    a
}

/// The attribute sets of one series, built once.
#[derive(Debug)]
struct SeriesAttrs {
    common: Vec<KeyValue>,
    input: Vec<KeyValue>,
    output: Vec<KeyValue>,
    /// Tokens handed to the SDK so far per type (input, output): the
    /// running total its `u64` histogram sums (cumulative temporality).
    token_sums: [AtomicU64; 2],
}

impl SeriesAttrs {
    /// Reserve `n` tokens of running total; false (nothing reserved) when
    /// the total would pass [`TOKEN_SUM_LIMIT`].
    fn reserve_tokens(&self, kind: usize, n: u64) -> bool {
        self.token_sums[kind]
            .fetch_update(Relaxed, Relaxed, |s| {
                s.checked_add(n).filter(|t| *t <= TOKEN_SUM_LIMIT)
            })
            .is_ok()
    }
}

impl SeriesAttrs {
    fn new(m: &AgentMetrics, folded: bool, server_address: Option<&str>, tag_keys: &[String]) -> Self {
        let common = common_attributes(m, folded, server_address, tag_keys);
        let with = |t: &'static str| {
            let mut a = common.clone();
            a.push(KeyValue::new(attr::TOKEN_TYPE, t));
            a
        };
        SeriesAttrs {
            input: with("input"),
            output: with("output"),
            common,
            token_sums: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }
}

/// One slot for success and one per error class.
type Slots = [Option<Arc<SeriesAttrs>>; 1 + ErrorClass::ALL.len()];

#[derive(Debug, Default)]
struct State {
    key: String,
    series: HashMap<String, Slots>,
    /// Folded series, by [`folded_series_key`] (bounded by construction).
    other: HashMap<String, Slots>,
}

fn slot(class: Option<ErrorClass>) -> usize {
    class.map_or(0, |c| {
        1 + ErrorClass::ALL.iter().position(|x| *x == c).unwrap_or(0)
    })
}

/// Records into [`Instruments`] with the series cap: at most `max_series`
/// distinct (provider, request model, response model, finish reason,
/// allow-listed tag values) combinations; the records of further ones are
/// folded into `other` (see [`common_attributes`]) and counted. Attribute
/// sets are built once per series; memory is bounded by the cap (folded
/// combinations are not remembered).
#[derive(Debug)]
pub struct Recorder {
    instruments: Instruments,
    max_series: usize,
    server_address: Option<String>,
    tag_keys: Vec<String>,
    state: Mutex<State>,
    folded: AtomicU64,
}

impl Recorder {
    /// A recorder into `instruments`, exporting the record tags named in
    /// `tag_keys` as attributes (checked with
    /// [`check_tag_keys`](steer_metrics::semconv::check_tag_keys) by the
    /// builder).
    pub fn new(
        instruments: Instruments,
        max_series: usize,
        server_address: Option<String>,
        tag_keys: Vec<String>,
    ) -> Self {
        Recorder {
            instruments,
            max_series,
            server_address,
            tag_keys,
            state: Mutex::new(State::default()),
            folded: AtomicU64::new(0),
        }
    }

    /// Records folded so far.
    pub fn folded(&self) -> u64 {
        self.folded.load(Relaxed)
    }

    fn attrs(&self, m: &AgentMetrics) -> Arc<SeriesAttrs> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *guard;
        series_key(&mut st.key, m, &self.tag_keys);
        let folded = !st.series.contains_key(st.key.as_str()) && st.series.len() >= self.max_series;
        if folded {
            self.folded.fetch_add(1, Relaxed);
            folded_series_key(&mut st.key, m, &self.tag_keys);
        }
        let map = if folded { &mut st.other } else { &mut st.series };
        let slots = map.entry(st.key.clone()).or_default();
        slots[slot(m.error_class)]
            .get_or_insert_with(|| {
                Arc::new(SeriesAttrs::new(
                    m,
                    folded,
                    self.server_address.as_deref(),
                    &self.tag_keys,
                ))
            })
            .clone()
    }

    /// Record one record; returns how many values were skipped as negative,
    /// not finite or implausible (see the module documentation).
    pub fn record(&self, m: &AgentMetrics) -> u64 {
        let a = self.attrs(m);
        self.instruments.record_with(m, &a)
    }
}

/// The instruments of one meter.
#[derive(Debug, Clone)]
pub struct Instruments {
    duration: Histogram<f64>,
    tokens: Histogram<u64>,
    ttfc: Histogram<f64>,
    requests: Counter<f64>,
    errors: Counter<f64>,
    cost: Counter<f64>,
}

impl Instruments {
    /// Create the instruments on `meter` with the boundaries above.
    pub fn new(meter: &Meter) -> Self {
        Instruments {
            duration: meter
                .f64_histogram(DURATION)
                .with_unit("s")
                .with_description("Duration of GenAI operations, retries included")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            tokens: meter
                .u64_histogram(TOKEN_USAGE)
                .with_unit("{token}")
                .with_description("Number of input and output tokens used per call")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build(),
            ttfc: meter
                .f64_histogram(TIME_TO_FIRST_CHUNK)
                .with_unit("s")
                .with_description("Time from the request to the first chunk of a streamed response")
                .with_boundaries(TTFC_BUCKETS.to_vec())
                .build(),
            requests: meter
                .f64_counter(REQUESTS)
                .with_unit("{request}")
                .with_description("LLM calls (sample weights applied)")
                .build(),
            errors: meter
                .f64_counter(ERRORS)
                .with_unit("{error}")
                .with_description("Failed LLM calls (sample weights applied)")
                .build(),
            cost: meter
                .f64_counter(COST)
                .with_unit("USD")
                .with_description("Cost of LLM calls whose price is known, in US dollars")
                .build(),
        }
    }

    /// Record one record with the attributes built for it. Returns the
    /// number of values skipped as negative, not finite or implausible.
    fn record_with(&self, m: &AgentMetrics, a: &SeriesAttrs) -> u64 {
        let repeat = repeat_count(m.sample_weight);
        let w = counter_weight(m.sample_weight);
        let mut invalid = 0;

        self.requests.add(w, &a.common);
        if m.is_error() {
            self.errors.add(w, &a.common);
        }
        match seconds(m.latency_ms) {
            Some(s) => (0..repeat).for_each(|_| self.duration.record(s, &a.common)),
            None => invalid += 1,
        }
        if let Some(t) = m.ttft_ms {
            match seconds(t) {
                Some(s) => (0..repeat).for_each(|_| self.ttfc.record(s, &a.common)),
                None => invalid += 1,
            }
        }
        match m.cost_usd.map(|c| cost_amount(c, w)) {
            Some(Some(v)) => self.cost.add(v, &a.common),
            Some(None) => invalid += 1,
            None => {}
        }
        for (kind, n, attrs) in [(0, m.input_tokens, &a.input), (1, m.output_tokens, &a.output)] {
            if m.is_error() && n == 0 {
                continue;
            }
            // n ≤ 2^40 and repeat ≤ 10 000: the product fits easily.
            if n > MAX_TOKENS || !a.reserve_tokens(kind, n * u64::from(repeat)) {
                invalid += 1;
                continue;
            }
            (0..repeat).for_each(|_| self.tokens.record(n, attrs));
        }
        invalid
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn get(attrs: &[KeyValue], key: &str) -> Option<String> {
        attrs
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    }

    #[test]
    fn buckets_are_the_recommended_ones_and_ascending() {
        assert_eq!(DURATION_BUCKETS[0], 0.01);
        assert_eq!(DURATION_BUCKETS[13], 81.92);
        for w in DURATION_BUCKETS.windows(2) {
            assert!((w[1] / w[0] - 2.0).abs() < 1e-9);
        }
        for (i, b) in TOKEN_BUCKETS.iter().enumerate() {
            assert_eq!(*b, 4f64.powi(i as i32));
        }
        assert!(TTFC_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn attributes_of_a_success_and_a_failure() {
        let mut m = AgentMetrics::new("xai", "grok-4");
        m.response_model = Some("grok-4-0709".into());
        let a = common_attributes(&m, false, Some("api.x.ai"), &[]);
        assert_eq!(get(&a, attr::OPERATION_NAME).as_deref(), Some("chat"));
        assert_eq!(get(&a, attr::PROVIDER_NAME).as_deref(), Some("x_ai"));
        assert_eq!(get(&a, attr::REQUEST_MODEL).as_deref(), Some("grok-4"));
        assert_eq!(get(&a, attr::RESPONSE_MODEL).as_deref(), Some("grok-4-0709"));
        assert_eq!(get(&a, attr::SERVER_ADDRESS).as_deref(), Some("api.x.ai"));
        assert_eq!(get(&a, attr::ERROR_TYPE), None, "error.type only on failures");

        let f = AgentMetrics::new("openai", "gpt-4o").with_error(ErrorClass::PermissionDenied);
        let a = common_attributes(&f, false, None, &[]);
        assert_eq!(get(&a, attr::ERROR_TYPE).as_deref(), Some("permission_denied"));
        assert_eq!(get(&a, attr::RESPONSE_MODEL), None);
        assert_eq!(get(&a, attr::SERVER_ADDRESS), None);

        let a = common_attributes(&m, true, None, &[]);
        assert_eq!(get(&a, attr::REQUEST_MODEL).as_deref(), Some("other"));
        assert_eq!(get(&a, attr::RESPONSE_MODEL).as_deref(), Some("other"));
        assert_eq!(get(&a, attr::PROVIDER_NAME).as_deref(), Some("other"));
        assert_eq!(
            get(&a, attr::FINISH_REASONS),
            None,
            "none without a finish reason"
        );
    }

    fn finish(attrs: &[KeyValue]) -> Option<Value> {
        attrs
            .iter()
            .find(|kv| kv.key.as_str() == attr::FINISH_REASONS)
            .map(|kv| kv.value.clone())
    }

    fn reasons(v: &[&str]) -> Option<Value> {
        Some(Value::Array(Array::String(
            v.iter().map(|s| StringValue::from(s.to_string())).collect(),
        )))
    }

    #[test]
    fn golden_attributes_with_finish_reason_and_tags() {
        let mut m = AgentMetrics::new("anthropic", "claude-sonnet-4-6");
        m.response_model = Some("claude-sonnet-4-6-20260101".into());
        m.finish_reason = Some("max_tokens".into());
        m.tags.insert("user".into(), "u-42".into());
        m.tags.insert("feature".into(), "search".into());
        m.tags.insert("secret".into(), "not exported".into());
        let keys = vec!["user".to_string(), "team".to_string(), "feature".to_string()];
        let a = common_attributes(&m, false, None, &keys);
        let got: Vec<(String, Value)> = a
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.clone()))
            .collect();
        let s = |v: &str| Value::from(v.to_string());
        assert_eq!(
            got,
            vec![
                ("gen_ai.operation.name".into(), s("chat")),
                ("gen_ai.provider.name".into(), s("anthropic")),
                ("gen_ai.request.model".into(), s("claude-sonnet-4-6")),
                ("gen_ai.response.model".into(), s("claude-sonnet-4-6-20260101")),
                (
                    "gen_ai.response.finish_reasons".into(),
                    reasons(&["max_tokens"]).unwrap()
                ),
                ("user".into(), s("u-42")),
                ("feature".into(), s("search")),
            ],
            "no `team` attribute for a record without it; `secret` is not allow-listed"
        );
        // Folded: known finish reasons stay, others and tag values become `other`.
        let a = common_attributes(&m, true, None, &keys);
        assert_eq!(finish(&a), reasons(&["max_tokens"]));
        assert_eq!(get(&a, "user").as_deref(), Some("other"));
        assert_eq!(get(&a, "team"), None);
        m.finish_reason = Some("brand_new_reason".into());
        assert_eq!(
            finish(&common_attributes(&m, true, None, &keys)),
            reasons(&["other"])
        );
        assert_eq!(
            finish(&common_attributes(&m, false, None, &keys)),
            reasons(&["brand_new_reason"])
        );
        m.finish_reason = Some(String::new());
        assert_eq!(
            finish(&common_attributes(&m, false, None, &keys)),
            None,
            "empty is absent"
        );
    }

    #[test]
    fn finish_reasons_and_tag_values_are_part_of_the_series_key() {
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
        let meter = opentelemetry::metrics::MeterProvider::meter(&provider, "t");
        let rec = Recorder::new(Instruments::new(&meter), 4, None, vec!["user".into()]);
        let with = |f: Option<&str>, user: Option<&str>| {
            let mut m = AgentMetrics::new("openai", "gpt-5");
            m.finish_reason = f.map(String::from);
            if let Some(u) = user {
                m.tags.insert("user".into(), u.into());
            }
            m
        };
        for m in [
            with(Some("stop"), Some("a")),
            with(Some("length"), Some("a")),
            with(Some("stop"), Some("b")),
            with(None, None),
        ] {
            rec.record(&m);
        }
        assert_eq!(rec.state.lock().unwrap().series.len(), 4);
        assert_eq!(rec.folded(), 0);
        // Beyond the cap: folded, and the folded series are bounded.
        for i in 0..100 {
            rec.record(&with(Some("stop"), Some(&format!("user-{i}"))));
            rec.record(&with(Some(&format!("odd-{i}")), None));
        }
        assert_eq!(rec.folded(), 200);
        let st = rec.state.lock().unwrap();
        assert_eq!(st.series.len(), 4);
        assert_eq!(st.other.len(), 2, "(stop, user present) and (other, no user)");
        drop(st);
        let a = rec.attrs(&with(Some("stop"), Some("zzz")));
        assert_eq!(get(&a.common, "user").as_deref(), Some("other"));
        assert_eq!(get(&a.common, attr::REQUEST_MODEL).as_deref(), Some("other"));
        let a = rec.attrs(&with(Some("length"), Some("a")));
        assert_eq!(get(&a.common, "user").as_deref(), Some("a"), "a known series");
        assert_eq!(finish(&a.common), reasons(&["length"]));
        assert_eq!(get(&a.input, attr::TOKEN_TYPE).as_deref(), Some("input"));
        assert_eq!(
            finish(&a.input),
            reasons(&["length"]),
            "on the token histogram too"
        );
    }

    #[test]
    fn weights() {
        assert_eq!(repeat_count(1.0), 1);
        assert_eq!(repeat_count(4.0), 4);
        assert_eq!(repeat_count(2.4), 2);
        assert_eq!(repeat_count(0.5), 1);
        assert_eq!(repeat_count(f64::NAN), 1);
        assert_eq!(repeat_count(1e12), MAX_REPEAT);
        assert_eq!(counter_weight(2.5), 2.5);
        assert_eq!(counter_weight(-1.0), 1.0);
        assert_eq!(counter_weight(f64::INFINITY), 1.0);
        assert_eq!(seconds(1500.0), Some(1.5));
        assert_eq!(seconds(-1.0), None);
        assert_eq!(seconds(f64::NAN), None);
    }

    fn recorder(max: usize) -> Recorder {
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
        let meter = opentelemetry::metrics::MeterProvider::meter(&provider, "t");
        Recorder::new(Instruments::new(&meter), max, None, Vec::new())
    }

    #[test]
    fn cap_folds_new_series_beyond_the_limit_only_and_forgets_them() {
        let rec = recorder(2);
        for i in 0..5000 {
            rec.record(&AgentMetrics::new("openai", format!("m{i}")));
        }
        assert_eq!(rec.folded(), 4998);
        assert_eq!(rec.state.lock().unwrap().series.len(), 2);
        let known = AgentMetrics::new("openai", "m0");
        rec.record(&known);
        assert_eq!(rec.folded(), 4998, "known series stay");
        let a = rec.attrs(&known);
        assert!(Arc::ptr_eq(&a, &rec.attrs(&known)), "attributes built once");
        assert_eq!(get(&a.common, attr::REQUEST_MODEL).as_deref(), Some("m0"));
        assert_eq!(get(&a.input, attr::TOKEN_TYPE).as_deref(), Some("input"));
        let f = rec.attrs(&AgentMetrics::new("openai", "new").with_error(ErrorClass::Timeout));
        assert_eq!(get(&f.common, attr::REQUEST_MODEL).as_deref(), Some("other"));
        assert_eq!(get(&f.common, attr::ERROR_TYPE).as_deref(), Some("timeout"));
        // Length-prefixed keys: ("ab", "c") and ("a", "bc") are distinct.
        let rec = recorder(10);
        rec.record(&AgentMetrics::new("ab", "c"));
        rec.record(&AgentMetrics::new("a", "bc"));
        assert_eq!(rec.state.lock().unwrap().series.len(), 2);
    }

    #[test]
    fn max_tokens_and_huge_costs_never_reach_the_sdk() {
        // Before: the second u64::MAX observation overflowed the SDK's u64
        // histogram sum (a panic in debug builds), and the cost counter
        // summed two 1e308 costs to +Inf.
        let rec = recorder(10);
        let mut m = AgentMetrics::new("openai", "m").with_latency_ms(1e308);
        m.input_tokens = u64::MAX;
        m.output_tokens = MAX_TOKENS + 1;
        m.cost_usd = Some(1e308);
        m.ttft_ms = Some(f64::NAN);
        for _ in 0..3 {
            assert_eq!(rec.record(&m), 5, "latency, ttft, cost, input and output tokens");
        }
        let mut ok = AgentMetrics::new("openai", "m").with_latency_ms(MAX_DURATION_MS);
        ok.input_tokens = MAX_TOKENS;
        ok.cost_usd = Some(MAX_COST_USD);
        assert_eq!(rec.record(&ok), 0, "the bounds themselves are recorded");
        assert_eq!(cost_amount(-0.5, 1.0), None);
        assert_eq!(cost_amount(1e9, 2.0), Some(2e9));
        assert_eq!(cost_amount(1e9, 1e300), None, "product not finite");
        assert_eq!(seconds(1e9 + 1.0), None);
    }

    #[test]
    fn the_running_token_total_of_a_series_is_bounded() {
        let rec = recorder(10);
        let a = rec.attrs(&AgentMetrics::new("openai", "m"));
        let per = MAX_TOKENS * u64::from(MAX_REPEAT);
        let fit = TOKEN_SUM_LIMIT / per;
        for _ in 0..fit {
            assert!(a.reserve_tokens(0, per));
        }
        assert!(!a.reserve_tokens(0, per), "past the limit");
        assert!(a.reserve_tokens(1, per), "per token type");
        let left = TOKEN_SUM_LIMIT - fit * per;
        assert!(a.reserve_tokens(0, left), "up to the limit exactly");
        assert!(!a.reserve_tokens(0, 1));
        assert!(!a.reserve_tokens(0, u64::MAX), "no wrap-around");
        assert_eq!(a.token_sums[0].load(Relaxed), TOKEN_SUM_LIMIT);
        // A series at the limit records no more tokens, and says so.
        let m = AgentMetrics::new("openai", "m").with_tokens(1, 0);
        assert_eq!(rec.record(&m), 1);
    }

    #[test]
    fn long_values_are_cut_at_a_char_boundary() {
        let s = "é".repeat(200); // 400 bytes
        let v = attribute_value(&s);
        assert!(v.len() <= MAX_VALUE_LEN && v.len() >= MAX_VALUE_LEN - 1);
        assert!(s.starts_with(&v));
    }

    proptest! {
        #[test]
        fn any_value_is_kept_verbatim_up_to_the_limit(s in any::<String>()) {
            let v = attribute_value(&s);
            prop_assert!(s.starts_with(&v));
            prop_assert!(v.len() <= MAX_VALUE_LEN);
            if s.len() <= MAX_VALUE_LEN {
                prop_assert_eq!(v, s);
            }
        }
    }
}
