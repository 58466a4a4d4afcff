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
//! `error_type` (failures only), `server_address` (when configured).
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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use steer_metrics::{AgentMetrics, ErrorClass};

/// Label set of every series.
pub type Labels = Vec<(&'static str, String)>;

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
    cost_amount, counter_weight, provider_name, repeat_count, seconds, DURATION_BUCKETS, MAX_COST_USD,
    MAX_DURATION_MS, MAX_REPEAT, MAX_VALUE_LEN, OTHER, TOKEN_BUCKETS, TTFC_BUCKETS,
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

/// The labels of one record.
pub fn labels(m: &AgentMetrics, folded: bool, server_address: Option<&str>) -> Labels {
    let mut l: Labels = Vec::with_capacity(7);
    l.push((label::OPERATION_NAME, "chat".into()));
    l.push((label::PROVIDER_NAME, label_value(provider_name(&m.provider))));
    if folded {
        l.push((label::REQUEST_MODEL, OTHER.into()));
        if m.response_model.is_some() {
            l.push((label::RESPONSE_MODEL, OTHER.into()));
        }
    } else {
        l.push((label::REQUEST_MODEL, label_value(&m.model)));
        if let Some(r) = &m.response_model {
            l.push((label::RESPONSE_MODEL, label_value(r)));
        }
    }
    if let Some(c) = m.error_class {
        l.push((label::ERROR_TYPE, c.as_str().into()));
    }
    if let Some(s) = server_address {
        l.push((label::SERVER_ADDRESS, label_value(s)));
    }
    l
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
    other: Slots,
}

fn slot(class: Option<ErrorClass>) -> usize {
    class.map_or(0, |c| {
        1 + ErrorClass::ALL.iter().position(|x| *x == c).unwrap_or(0)
    })
}

/// Records into [`Instruments`] with the series cap: at most `max_series`
/// distinct (provider, request model, response model) combinations; the
/// records of further ones are folded into model `other` (and counted).
/// Memory is bounded by the cap: folded combinations are not remembered.
#[derive(Debug)]
pub struct Recorder {
    instruments: Instruments,
    max_series: usize,
    server_address: Option<String>,
    state: Mutex<State>,
}

impl Recorder {
    /// A recorder into `instruments`.
    pub fn new(instruments: Instruments, max_series: usize, server_address: Option<String>) -> Self {
        Recorder {
            instruments,
            max_series,
            server_address,
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
        st.key.clear();
        // Length-prefixed, so no two combinations share a key.
        let _ = write!(
            st.key,
            "{}:{}{}:{}",
            m.provider.len(),
            m.provider,
            m.model.len(),
            m.model
        );
        match &m.response_model {
            Some(r) => {
                let _ = write!(st.key, "+{r}");
            }
            None => st.key.push('-'),
        }
        let i = slot(m.error_class);
        let folded = !st.series.contains_key(st.key.as_str()) && st.series.len() >= self.max_series;
        if folded {
            self.instruments.folded.inc();
        }
        let slots = if folded {
            &mut st.other
        } else {
            let key = st.key.clone();
            st.series.entry(key).or_default()
        };
        slots[i]
            .get_or_insert_with(|| {
                Arc::new(
                    self.instruments
                        .handles(m, folded, self.server_address.as_deref()),
                )
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

    fn handles(&self, m: &AgentMetrics, folded: bool, server_address: Option<&str>) -> Handles {
        let labels = labels(m, folded, server_address);
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
        l.push((label::TOKEN_TYPE, kind.into()));
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
        let rec = Recorder::new(inst, max_series, Some("api.openai.com".into()));
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
    fn huge_costs_and_durations_are_skipped_and_counters_stay_finite() {
        // Before: two 1e308 costs summed to +Inf and the counter read `inf`.
        let inst = Instruments::new();
        let mut reg = Registry::default();
        inst.register(&mut reg);
        let rec = Recorder::new(inst, 10, None);
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
        let rec = Recorder::new(Instruments::new(), 2, None);
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
        let rec = Recorder::new(Instruments::new(), 10, None);
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
