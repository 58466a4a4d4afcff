//! The instruments in Prometheus naming: names, units, buckets, labels,
//! label sanitising, the series cap, and how one [`AgentMetrics`] record
//! becomes observations.
//!
//! | metric (as exposed) | type | recorded |
//! |---|---|---|
//! | `gen_ai_client_operation_duration_seconds` | histogram | every call, failures included |
//! | `gen_ai_client_token_usage` | histogram, label `gen_ai_token_type` = `input` \| `output` | every successful call; a failed call only for a non-zero count |
//! | `gen_ai_client_operation_time_to_first_chunk_seconds` | histogram | streamed calls that have a TTFT |
//! | `steer_llm_requests_total` | counter | every call |
//! | `steer_llm_errors_total` | counter | failed calls |
//! | `steer_llm_cost_usd_total` | counter | calls with a known cost |
//! | `steer_prometheus_folded_series_total` | counter (no labels) | records folded into `gen_ai_request_model="other"` |
//!
//! Labels (the OpenTelemetry attribute names with `.` → `_`):
//! `gen_ai_operation_name` (`chat`), `gen_ai_provider_name`,
//! `gen_ai_request_model`, `gen_ai_response_model` (when reported),
//! `gen_ai_response_finish_reasons` (the record's finish reason, the
//! provider's own value, when it has one), `error_type` (failures only),
//! `server_address` (when configured), and one label per allow-listed
//! record tag (its key sanitised: every character other than a letter,
//! digit or `_` becomes `_`), always present so every series of a metric
//! has the same tag labels: the record's value, or empty (which Prometheus
//! treats as absent) when the record lacks the tag.
//!
//! **Token types.** `gen_ai_token_type` is `input` or `output`, the only
//! values the conventions define (see [`steer_metrics::semconv`]).
//!
//! **The series cap.** A series is one (provider, request model, response
//! model, finish reason, allow-listed tag values) combination, with a slot
//! per error class. Beyond `max_series` of them, a new combination is
//! folded: provider, models and present tag values become `other`, a
//! finish reason other than the [known ones](KNOWN_FINISH_REASONS) becomes
//! `other`.
//!
//! **Label values** are any UTF-8; the OpenMetrics encoder escapes `\`, `"`
//! and newline. Before that, [`label_value`] replaces other control
//! characters with U+FFFD and cuts values to [`MAX_VALUE_LEN`] bytes. An
//! empty value stays empty (Prometheus then treats the label as absent).
//!
//! **Sample weights.** Counters add the weight *w*; histograms observe the
//! value `round(w)` times (at least once, at most [`MAX_REPEAT`]), so for
//! integer weights a histogram's `_count` equals the request counter.
//!
//! **Implausible values are skipped, never observed.** The record is still
//! counted (requests, errors); only the value is left out and counted in
//! the sink's `invalid_values`: latency and TTFT that are negative, not
//! finite or above [`MAX_DURATION_MS`]; a cost that is negative, not finite
//! or above [`MAX_COST_USD`] (or whose weighted amount is not finite). So
//! `steer_llm_cost_usd_total` and the histogram sums stay finite: one
//! `+Inf` added to a counter would poison it (and every `rate()` over it)
//! for the life of the process.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use steer_metrics::{AgentMetrics, ErrorClass};

/// Label set of every series.
pub type Labels = Vec<(Cow<'static, str>, String)>;

type HistFamily = Family<Labels, Histogram, fn() -> Histogram>;
type CounterFamily = Family<Labels, Counter<f64, AtomicU64>>;

/// Histogram of call durations (exposed with the `_seconds` unit suffix).
pub const DURATION: &str = "gen_ai_client_operation_duration";
/// Histogram of tokens per call.
pub const TOKEN_USAGE: &str = "gen_ai_client_token_usage";
/// Histogram of the time to the first chunk (exposed with `_seconds`).
pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai_client_operation_time_to_first_chunk";
/// Counter of calls (exposed with `_total`).
pub const REQUESTS: &str = "steer_llm_requests";
/// Counter of failed calls (exposed with `_total`).
pub const ERRORS: &str = "steer_llm_errors";
/// Counter of cost in US dollars (exposed with `_total`).
pub const COST: &str = "steer_llm_cost_usd";
/// Counter of records folded by the series cap (exposed with `_total`).
pub const FOLDED: &str = "steer_prometheus_folded_series";

pub use steer_metrics::semconv::{
    cost_amount, counter_weight, finish_reason, folded_finish_reason, folded_series_key,
    prometheus_label_name, provider_name, repeat_count, seconds, series_key, DURATION_BUCKETS,
    KNOWN_FINISH_REASONS, MAX_COST_USD, MAX_DURATION_MS, MAX_REPEAT, MAX_VALUE_LEN, OTHER, TOKEN_BUCKETS,
    TTFC_BUCKETS,
};

/// Label names.
pub mod label {
    /// `gen_ai_operation_name`.
    pub const OPERATION_NAME: &str = "gen_ai_operation_name";
    /// `gen_ai_provider_name`.
    pub const PROVIDER_NAME: &str = "gen_ai_provider_name";
    /// `gen_ai_request_model`.
    pub const REQUEST_MODEL: &str = "gen_ai_request_model";
    /// `gen_ai_response_model`.
    pub const RESPONSE_MODEL: &str = "gen_ai_response_model";
    /// `gen_ai_response_finish_reasons`.
    pub const FINISH_REASONS: &str = "gen_ai_response_finish_reasons";
    /// `error_type`.
    pub const ERROR_TYPE: &str = "error_type";
    /// `server_address`.
    pub const SERVER_ADDRESS: &str = "server_address";
    /// `gen_ai_token_type`.
    pub const TOKEN_TYPE: &str = "gen_ai_token_type";
}

/// A label value made safe: control characters other than newline (which
/// the encoder escapes) become U+FFFD; cut to [`MAX_VALUE_LEN`] bytes at a
/// character boundary.
pub fn label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_VALUE_LEN));
    for c in s.chars() {
        let c = if c.is_control() && c != '\n' {
            '\u{FFFD}'
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_VALUE_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// The labels of one record: `tag_labels` are the allow-listed tag keys
/// with their label names. A `folded` record gets `other` for its
/// provider, models and present tag values, and keeps its finish reason
/// only when it is a [known one](KNOWN_FINISH_REASONS) (else `other`).
pub fn labels(
    m: &AgentMetrics,
    folded: bool,
    server_address: Option<&str>,
    tag_labels: &[TagLabel],
) -> Labels {
    let mut l: Labels = Vec::with_capacity(8 + tag_labels.len());
    let mut push = |k: &'static str, v: String| l.push((Cow::Borrowed(k), v));
    push(
        label::OPERATION_NAME,
        steer_metrics::semconv::operation_name(m.method).into(),
    );
    if folded {
        push(label::PROVIDER_NAME, OTHER.into());
        push(label::REQUEST_MODEL, OTHER.into());
        if m.response_model.is_some() {
            push(label::RESPONSE_MODEL, OTHER.into());
        }
    } else {
        push(label::PROVIDER_NAME, label_value(provider_name(&m.provider)));
        push(label::REQUEST_MODEL, label_value(&m.model));
        if let Some(r) = &m.response_model {
            push(label::RESPONSE_MODEL, label_value(r));
        }
    }
    if let Some(f) = finish_reason(m) {
        let v = if folded {
            folded_finish_reason(f).to_string()
        } else {
            label_value(f)
        };
        push(label::FINISH_REASONS, v);
    }
    if let Some(c) = m.error_class {
        push(label::ERROR_TYPE, c.as_str().into());
    }
    if let Some(s) = server_address {
        push(label::SERVER_ADDRESS, label_value(s));
    }
    for t in tag_labels {
        let v = match m.tags.get(&t.key) {
            Some(_) if folded => OTHER.to_string(),
            Some(v) => label_value(v),
            None => String::new(),
        };
        l.push((Cow::Owned(t.label.clone()), v));
    }
    l
}

/// An allow-listed record tag: its key and its label name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagLabel {
    /// The record tag key (e.g. `team.id`).
    pub key: String,
    /// The label name (e.g. `team_id`).
    pub label: String,
}

impl TagLabel {
    /// The labels of checked tag keys (see
    /// [`check_tag_keys`](steer_metrics::semconv::check_tag_keys)).
    pub fn for_keys(keys: &[String]) -> Vec<TagLabel> {
        keys.iter()
            .map(|k| TagLabel {
                key: k.clone(),
                label: prometheus_label_name(k),
            })
            .collect()
    }
}

/// Per label set: the series handles, resolved once (the histograms and
/// counters of `prometheus_client` are shared handles), so recording a
/// record does not rebuild and hash its label set for every metric.
#[derive(Debug)]
struct Handles {
    labels: Labels,
    requests: Counter<f64, AtomicU64>,
    errors: Option<Counter<f64, AtomicU64>>,
    duration: Histogram,
    ttfc: OnceLock<Histogram>,
    cost: OnceLock<Counter<f64, AtomicU64>>,
    input: OnceLock<Histogram>,
    output: OnceLock<Histogram>,
}

/// The handles of one (provider, model, response model): one slot for
/// success and one per error class.
type Slots = [Option<Arc<Handles>>; 1 + ErrorClass::ALL.len()];

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
/// folded into `other` (see [`labels`]) and counted. Memory is bounded by
/// the cap: folded combinations are not remembered.
#[derive(Debug)]
pub struct Recorder {
    instruments: Instruments,
    max_series: usize,
    server_address: Option<String>,
    tag_keys: Vec<String>,
    tag_labels: Vec<TagLabel>,
    state: Mutex<State>,
}

impl Recorder {
    /// A recorder into `instruments`, exporting the record tags named in
    /// `tag_keys` as labels (checked with
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
            tag_labels: TagLabel::for_keys(&tag_keys),
            tag_keys,
            state: Mutex::new(State::default()),
        }
    }

    /// The instruments.
    pub fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    fn handles(&self, m: &AgentMetrics) -> Arc<Handles> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *guard;
        series_key(&mut st.key, m, &self.tag_keys);
        let folded = !st.series.contains_key(st.key.as_str()) && st.series.len() >= self.max_series;
        if folded {
            self.instruments.folded.inc();
            folded_series_key(&mut st.key, m, &self.tag_keys);
        }
        let map = if folded { &mut st.other } else { &mut st.series };
        let slots = map.entry(st.key.clone()).or_default();
        slots[slot(m.error_class)]
            .get_or_insert_with(|| {
                Arc::new(self.instruments.handles(
                    m,
                    folded,
                    self.server_address.as_deref(),
                    &self.tag_labels,
                ))
            })
            .clone()
    }

    /// Record one record; returns how many values were skipped as negative,
    /// not finite or implausible (see the module documentation).
    pub fn record(&self, m: &AgentMetrics) -> u64 {
        let h = self.handles(m);
        self.instruments.record_into(&h, m)
    }
}

fn duration_hist() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}
fn token_hist() -> Histogram {
    Histogram::new(TOKEN_BUCKETS)
}
fn ttfc_hist() -> Histogram {
    Histogram::new(TTFC_BUCKETS)
}

/// The metric families. Clones share the underlying series.
#[derive(Debug, Clone)]
pub struct Instruments {
    duration: HistFamily,
    tokens: HistFamily,
    ttfc: HistFamily,
    requests: CounterFamily,
    errors: CounterFamily,
    cost: CounterFamily,
    folded: Counter,
}

impl Default for Instruments {
    fn default() -> Self {
        Self::new()
    }
}

impl Instruments {
    /// Fresh, unregistered families.
    pub fn new() -> Self {
        Instruments {
            duration: Family::new_with_constructor(duration_hist as fn() -> Histogram),
            tokens: Family::new_with_constructor(token_hist as fn() -> Histogram),
            ttfc: Family::new_with_constructor(ttfc_hist as fn() -> Histogram),
            requests: Family::default(),
            errors: Family::default(),
            cost: Family::default(),
            folded: Counter::default(),
        }
    }

    /// Register every family into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            DURATION,
            "Duration of GenAI operations, retries included",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            TOKEN_USAGE,
            "Number of input and output tokens used per call",
            self.tokens.clone(),
        );
        registry.register_with_unit(
            TIME_TO_FIRST_CHUNK,
            "Time from the request to the first chunk of a streamed response",
            Unit::Seconds,
            self.ttfc.clone(),
        );
        registry.register(
            REQUESTS,
            "LLM calls (sample weights applied)",
            self.requests.clone(),
        );
        registry.register(
            ERRORS,
            "Failed LLM calls (sample weights applied)",
            self.errors.clone(),
        );
        registry.register(
            COST,
            "Cost of LLM calls whose price is known, in US dollars",
            self.cost.clone(),
        );
        registry.register(
            FOLDED,
            "Records whose model series was folded into gen_ai_request_model=\"other\" by the series cap",
            self.folded.clone(),
        );
    }

    /// Records folded so far.
    pub fn folded(&self) -> u64 {
        self.folded.get()
    }

    fn handles(
        &self,
        m: &AgentMetrics,
        folded: bool,
        server_address: Option<&str>,
        tag_labels: &[TagLabel],
    ) -> Handles {
        let labels = labels(m, folded, server_address, tag_labels);
        Handles {
            requests: self.requests.get_or_create_owned(&labels),
            errors: m.is_error().then(|| self.errors.get_or_create_owned(&labels)),
            duration: self.duration.get_or_create_owned(&labels),
            ttfc: OnceLock::new(),
            cost: OnceLock::new(),
            input: OnceLock::new(),
            output: OnceLock::new(),
            labels,
        }
    }

    fn token_hist(&self, h: &Handles, kind: &'static str) -> Histogram {
        let mut l = h.labels.clone();
        l.push((Cow::Borrowed(label::TOKEN_TYPE), kind.into()));
        self.tokens.get_or_create_owned(&l)
    }

    fn record_into(&self, h: &Handles, m: &AgentMetrics) -> u64 {
        let repeat = repeat_count(m.sample_weight);
        let w = counter_weight(m.sample_weight);
        let mut invalid = 0;

        h.requests.inc_by(w);
        if let Some(e) = &h.errors {
            e.inc_by(w);
        }
        match seconds(m.latency_ms) {
            Some(s) => (0..repeat).for_each(|_| h.duration.observe(s)),
            None => invalid += 1,
        }
        if let Some(t) = m.ttft_ms {
            match seconds(t) {
                Some(s) => {
                    let hist = h.ttfc.get_or_init(|| self.ttfc.get_or_create_owned(&h.labels));
                    (0..repeat).for_each(|_| hist.observe(s));
                }
                None => invalid += 1,
            }
        }
        match m.cost_usd.map(|c| cost_amount(c, w)) {
            Some(Some(v)) => {
                h.cost
                    .get_or_init(|| self.cost.get_or_create_owned(&h.labels))
                    .inc_by(v);
            }
            Some(None) => invalid += 1,
            None => {}
        }
        for (kind, n, cell) in [
            ("input", m.input_tokens, &h.input),
            ("output", m.output_tokens, &h.output),
        ] {
            if m.is_error() && n == 0 {
                continue;
            }
            let hist = cell.get_or_init(|| self.token_hist(h, kind));
            (0..repeat).for_each(|_| hist.observe(n as f64));
        }
        invalid
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use proptest::prelude::*;

    fn exposition(records: &[AgentMetrics], max_series: usize) -> String {
        let inst = Instruments::new();
        let mut reg = Registry::default();
        inst.register(&mut reg);
        let rec = Recorder::new(inst, max_series, Some("api.openai.com".into()), Vec::new());
        for m in records {
            rec.record(m);
        }
        let mut s = String::new();
        encode(&mut s, &reg).unwrap();
        s
    }

    #[test]
    fn names_units_and_labels_in_the_exposition() {
        let mut ok = AgentMetrics::new("xai", "grok-4")
            .with_latency_ms(150.0)
            .with_tokens(3, 20);
        ok.cost_usd = Some(0.5);
        ok.ttft_ms = Some(250.0);
        let err = AgentMetrics::new("openai", "gpt-4o")
            .with_latency_ms(50.0)
            .with_error(ErrorClass::RateLimit);
        let text = exposition(&[ok, err], 10);
        for want in [
            "# TYPE gen_ai_client_operation_duration_seconds histogram",
            "# UNIT gen_ai_client_operation_duration_seconds seconds",
            "# TYPE gen_ai_client_token_usage histogram",
            "# TYPE gen_ai_client_operation_time_to_first_chunk_seconds histogram",
            "# TYPE steer_llm_requests counter",
            "# TYPE steer_llm_cost_usd counter",
            "steer_prometheus_folded_series_total 0",
            r#"steer_llm_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="x_ai",gen_ai_request_model="grok-4",server_address="api.openai.com"} 1.0"#,
            r#"steer_llm_errors_total{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o",error_type="rate_limit",server_address="api.openai.com"} 1.0"#,
            r#"steer_llm_cost_usd_total{gen_ai_operation_name="chat",gen_ai_provider_name="x_ai",gen_ai_request_model="grok-4",server_address="api.openai.com"} 0.5"#,
            r#"gen_ai_client_operation_duration_seconds_bucket{le="0.16",gen_ai_operation_name="chat",gen_ai_provider_name="x_ai",gen_ai_request_model="grok-4",server_address="api.openai.com"} 1"#,
            r#"gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",gen_ai_provider_name="x_ai",gen_ai_request_model="grok-4",server_address="api.openai.com",gen_ai_token_type="output"} 20.0"#,
            "# EOF",
        ] {
            assert!(text.contains(want), "missing {want}\n{text}");
        }
        assert!(
            !text.contains("error_type=\"rate_limit\",server_address=\"api.openai.com\",gen_ai_token_type"),
            "no token usage for a failure without tokens"
        );
    }

    #[test]
    fn golden_exposition_with_finish_reasons_and_tag_labels() {
        let inst = Instruments::new();
        let mut reg = Registry::default();
        inst.register(&mut reg);
        let rec = Recorder::new(inst, 3, None, vec!["user".into(), "team.id".into()]);
        let r = |model: &str, finish: Option<&str>, tags: &[(&str, &str)]| {
            let mut m = AgentMetrics::new("openai", model)
                .with_latency_ms(100.0)
                .with_tokens(5, 2);
            m.finish_reason = finish.map(String::from);
            for (k, v) in tags {
                m.tags.insert(k.to_string(), v.to_string());
            }
            m
        };
        for m in [
            r("gpt-5", Some("stop"), &[("user", "alice"), ("team.id", "t1")]),
            r(
                "gpt-5",
                Some("stop"),
                &[("user", "alice"), ("team.id", "t1"), ("x", "y")],
            ),
            r("gpt-5", Some("length"), &[("user", "alice"), ("team.id", "t1")]),
            r("gpt-5", None, &[("user", "bob")]),
            // Beyond the cap of 3: folded.
            r("gpt-5", Some("stop"), &[("user", "carol")]),
            r("m2", Some("weird"), &[]),
        ] {
            rec.record(&m);
        }
        let mut text = String::new();
        encode(&mut text, &reg).unwrap();
        for want in [
            r#"steer_llm_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-5",gen_ai_response_finish_reasons="stop",user="alice",team_id="t1"} 2.0"#,
            r#"steer_llm_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-5",gen_ai_response_finish_reasons="length",user="alice",team_id="t1"} 1.0"#,
            r#"steer_llm_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-5",user="bob",team_id=""} 1.0"#,
            r#"steer_llm_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="other",gen_ai_request_model="other",gen_ai_response_finish_reasons="stop",user="other",team_id=""} 1.0"#,
            r#"steer_llm_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="other",gen_ai_request_model="other",gen_ai_response_finish_reasons="other",user="",team_id=""} 1.0"#,
            r#"gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-5",gen_ai_response_finish_reasons="length",user="alice",team_id="t1",gen_ai_token_type="input"} 5.0"#,
            r#"gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-5",user="bob",team_id=""} 1"#,
            "steer_prometheus_folded_series_total 2",
        ] {
            assert!(text.contains(want), "missing {want}\n{text}");
        }
        assert!(!text.contains("carol") && !text.contains("weird") && !text.contains("m2"));
        assert!(!text.contains("x=\"y\""), "tags not allow-listed stay out");
    }

    #[test]
    fn huge_costs_and_durations_are_skipped_and_counters_stay_finite() {
        // Before: two 1e308 costs summed to +Inf and the counter read `inf`.
        let inst = Instruments::new();
        let mut reg = Registry::default();
        inst.register(&mut reg);
        let rec = Recorder::new(inst, 10, None, Vec::new());
        let mut huge = AgentMetrics::new("openai", "m").with_latency_ms(1e308);
        huge.cost_usd = Some(1e308);
        huge.ttft_ms = Some(2e9);
        for _ in 0..2 {
            assert_eq!(rec.record(&huge), 3, "latency, ttft and cost");
        }
        let mut ok = AgentMetrics::new("openai", "m").with_latency_ms(MAX_DURATION_MS);
        ok.cost_usd = Some(MAX_COST_USD);
        assert_eq!(rec.record(&ok), 0, "the bounds themselves are recorded");
        let mut s = String::new();
        encode(&mut s, &reg).unwrap();
        let line = |name: &str| {
            s.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in {s}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(line("steer_llm_cost_usd_total{"), "1000000000.0");
        assert_eq!(line("steer_llm_requests_total{"), "3.0");
        assert_eq!(line("gen_ai_client_operation_duration_seconds_sum{"), "1000000.0");
        assert_eq!(line("gen_ai_client_operation_duration_seconds_count{"), "1");
        assert!(!s.contains("inf"), "{s}");
        assert_eq!(cost_amount(1e9, 1e300), None, "product not finite");
        assert_eq!(cost_amount(-0.5, 1.0), None);
        assert_eq!(cost_amount(0.5, 2.0), Some(1.0));
    }

    #[test]
    fn excess_series_fold_into_other_and_are_counted() {
        let recs: Vec<_> = (0..5)
            .map(|i| AgentMetrics::new("openai", format!("m{i}")).with_latency_ms(1.0))
            .collect();
        let text = exposition(&recs, 2);
        assert!(text.contains("steer_prometheus_folded_series_total 3"), "{text}");
        assert!(
            text.contains(r#"gen_ai_request_model="other",server_address="api.openai.com"} 3.0"#),
            "{text}"
        );
        assert!(!text.contains("m4"));
    }

    #[test]
    fn memory_is_bounded_by_the_cap() {
        let rec = Recorder::new(Instruments::new(), 2, None, Vec::new());
        for i in 0..5000 {
            let class = if i % 2 == 0 {
                None
            } else {
                Some(ErrorClass::ALL[i % 11])
            };
            let mut m = AgentMetrics::new("openai", format!("model-{i}")).with_latency_ms(1.0);
            m.error_class = class;
            rec.record(&m);
        }
        let st = rec.state.lock().unwrap();
        assert_eq!(st.series.len(), 2, "folded combinations are not remembered");
        assert_eq!(rec.instruments().folded(), 4998);
        // Same combination, same handles; a different error class, another slot.
        drop(st);
        let a = AgentMetrics::new("openai", "model-0");
        assert!(Arc::ptr_eq(&rec.handles(&a), &rec.handles(&a)));
        assert!(!Arc::ptr_eq(
            &rec.handles(&a),
            &rec.handles(&a.clone().with_error(ErrorClass::Timeout))
        ));
        // Length-prefixed keys: ("ab", "c") and ("a", "bc") are distinct series.
        let rec = Recorder::new(Instruments::new(), 10, None, Vec::new());
        rec.record(&AgentMetrics::new("ab", "c"));
        rec.record(&AgentMetrics::new("a", "bc"));
        assert_eq!(rec.state.lock().unwrap().series.len(), 2);
    }

    #[test]
    fn sanitising() {
        assert_eq!(
            label_value("a\"b\\c\nd"),
            "a\"b\\c\nd",
            "the encoder escapes these"
        );
        assert_eq!(label_value("a\u{0}b\rc\td"), "a\u{FFFD}b\u{FFFD}c\u{FFFD}d");
        assert_eq!(label_value(""), "");
        let long = "λ".repeat(300);
        let v = label_value(&long);
        assert!(v.len() <= MAX_VALUE_LEN && long.starts_with(&v));
        assert_eq!(repeat_count(3.0), 3);
        assert_eq!(repeat_count(0.2), 1);
        assert_eq!(repeat_count(1e9), MAX_REPEAT);
        assert_eq!(counter_weight(f64::NAN), 1.0);
    }

    /// Parse one OpenMetrics label-value (after `="`), undoing the escapes;
    /// returns the value and the rest after the closing quote.
    fn unescape(s: &str) -> Option<(String, &str)> {
        let mut out = String::new();
        let mut it = s.char_indices();
        while let Some((i, c)) = it.next() {
            match c {
                '"' => return Some((out, &s[i + 1..])),
                '\\' => match it.next()?.1 {
                    'n' => out.push('\n'),
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    _ => return None,
                },
                '\n' => return None,
                c => out.push(c),
            }
        }
        None
    }

    proptest! {
        /// Any model/provider name gives a well-formed exposition (one
        /// sample per line, every label value properly quoted) from which
        /// the sanitised value is recovered exactly.
        #[test]
        fn odd_names_are_escaped_and_recoverable(
            model in prop_oneof![Just(String::new()), Just("a\"b\\c\nd{e}=f".to_string()), any::<String>()],
            provider in any::<String>(),
        ) {
            let m = AgentMetrics::new(provider.clone(), model.clone()).with_latency_ms(5.0);
            let text = exposition(&[m], 10);
            prop_assert!(text.ends_with("# EOF\n"));
            let line = text
                .lines()
                .find(|l| l.starts_with("steer_llm_requests_total{"))
                .expect("the requests sample");
            prop_assert!(line.ends_with("} 1.0"), "{}", line);
            let mut rest = &line["steer_llm_requests_total{".len()..];
            let mut got = Vec::new();
            while let Some(eq) = rest.find("=\"") {
                let key = rest[..eq].trim_start_matches(',').to_string();
                let (v, after) = unescape(&rest[eq + 2..]).expect("a well-formed value");
                got.push((key, v));
                rest = after;
            }
            prop_assert_eq!(rest, "} 1.0");
            let model_label = got.iter().find(|(k, _)| k == label::REQUEST_MODEL).map(|(_, v)| v.clone());
            prop_assert_eq!(model_label, Some(label_value(&model)));
            let provider_label = got.iter().find(|(k, _)| k == label::PROVIDER_NAME).map(|(_, v)| v.clone());
            prop_assert_eq!(provider_label, Some(label_value(provider_name(&provider))));
        }
    }
}
