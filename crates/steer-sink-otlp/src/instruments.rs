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

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use steer_metrics::AgentMetrics;

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
use steer_metrics::semconv::{for_each_series_attribute, AttrName, AttrValue, GenAiAttr, SeriesTable};

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

/// The attributes common to every instrument for one record: the shared
/// GenAI attribute set ([`for_each_series_attribute`]) as OTLP attributes,
/// text values through [`attribute_value`], the finish reason as a
/// one-element string array, and only the allow-listed tags the record
/// has. A `folded` record (beyond the series cap) gets `other` for its
/// provider, request and response model and allow-listed tag values, and
/// keeps its finish reason only when it is a [known
/// one](KNOWN_FINISH_REASONS) (else `other`).
pub fn common_attributes(
    m: &AgentMetrics,
    folded: bool,
    server_address: Option<&str>,
    tag_keys: &[String],
) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(7 + tag_keys.len());
    let keys = tag_keys.iter().map(String::as_str);
    for_each_series_attribute(m, folded, server_address, keys, |name, value| {
        // A tag the record lacks is not an attribute.
        let Some(value) = value else { return };
        let v = match value {
            AttrValue::Fixed(s) => StringValue::from(s),
            AttrValue::Text(s) => StringValue::from(attribute_value(s)),
        };
        a.push(match name {
            AttrName::GenAi(GenAiAttr::FinishReasons) => {
                KeyValue::new(attr::FINISH_REASONS, Value::Array(Array::String(vec![v])))
            }
            AttrName::GenAi(k) => KeyValue::new(k.otel_key(), Value::String(v)),
            AttrName::Tag { key, .. } => KeyValue::new(key.to_string(), Value::String(v)),
        });
    });
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

/// Records into [`Instruments`] with the series cap: at most `max_series`
/// distinct (provider, request model, response model, finish reason,
/// allow-listed tag values) combinations; the records of further ones are
/// folded into `other` (see [`common_attributes`]) and counted. Attribute
/// sets are built once per series; memory is bounded by the cap (folded
/// combinations are not remembered).
#[derive(Debug)]
pub struct Recorder {
    instruments: Instruments,
    server_address: Option<String>,
    tag_keys: Vec<String>,
    state: Mutex<SeriesTable<SeriesAttrs>>,
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
            server_address,
            tag_keys,
            state: Mutex::new(SeriesTable::new(max_series)),
            folded: AtomicU64::new(0),
        }
    }

    /// Records folded so far.
    pub fn folded(&self) -> u64 {
        self.folded.load(Relaxed)
    }

    fn attrs(&self, m: &AgentMetrics) -> Arc<SeriesAttrs> {
        let mut table = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (attrs, folded) = table.get_or_insert_with(m, &self.tag_keys, |folded| {
            SeriesAttrs::new(m, folded, self.server_address.as_deref(), &self.tag_keys)
        });
        if folded {
            self.folded.fetch_add(1, Relaxed);
        }
        attrs
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
mod tests;
