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
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use steer_metrics::AgentMetrics;

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
use steer_metrics::semconv::{for_each_series_attribute, AttrName, AttrValue, SeriesTable};

/// Label names: the shared GenAI attribute set's
/// ([`GenAiAttr::prometheus_label`]).
pub mod label {
    use steer_metrics::semconv::GenAiAttr;

    /// `gen_ai_operation_name`.
    pub const OPERATION_NAME: &str = GenAiAttr::OperationName.prometheus_label();
    /// `gen_ai_provider_name`.
    pub const PROVIDER_NAME: &str = GenAiAttr::ProviderName.prometheus_label();
    /// `gen_ai_request_model`.
    pub const REQUEST_MODEL: &str = GenAiAttr::RequestModel.prometheus_label();
    /// `gen_ai_response_model`.
    pub const RESPONSE_MODEL: &str = GenAiAttr::ResponseModel.prometheus_label();
    /// `gen_ai_response_finish_reasons`.
    pub const FINISH_REASONS: &str = GenAiAttr::FinishReasons.prometheus_label();
    /// `error_type`.
    pub const ERROR_TYPE: &str = GenAiAttr::ErrorType.prometheus_label();
    /// `server_address`.
    pub const SERVER_ADDRESS: &str = GenAiAttr::ServerAddress.prometheus_label();
    /// `gen_ai_token_type`.
    pub const TOKEN_TYPE: &str = GenAiAttr::TokenType.prometheus_label();
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

/// The labels of one record: the shared GenAI attribute set
/// ([`for_each_series_attribute`]) as labels, text values through
/// [`label_value`]; `tag_labels` are the allow-listed tag keys with their
/// label names, each always present (empty when the record lacks the tag).
/// A `folded` record gets `other` for its provider, models and present tag
/// values, and keeps its finish reason only when it is a [known
/// one](KNOWN_FINISH_REASONS) (else `other`).
pub fn labels(
    m: &AgentMetrics,
    folded: bool,
    server_address: Option<&str>,
    tag_labels: &[TagLabel],
) -> Labels {
    let mut l: Labels = Vec::with_capacity(8 + tag_labels.len());
    let keys = tag_labels.iter().map(|t| t.key.as_str());
    for_each_series_attribute(m, folded, server_address, keys, |name, value| {
        let v = match value {
            None => String::new(),
            Some(AttrValue::Fixed(s)) => s.to_string(),
            Some(AttrValue::Text(s)) => label_value(s),
        };
        let name = match name {
            AttrName::GenAi(a) => Cow::Borrowed(a.prometheus_label()),
            AttrName::Tag { index, .. } => Cow::Owned(tag_labels[index].label.clone()),
        };
        l.push((name, v));
    });
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

/// Records into [`Instruments`] with the series cap: at most `max_series`
/// distinct (provider, request model, response model, finish reason,
/// allow-listed tag values) combinations; the records of further ones are
/// folded into `other` (see [`labels`]) and counted. Memory is bounded by
/// the cap: folded combinations are not remembered.
#[derive(Debug)]
pub struct Recorder {
    instruments: Instruments,
    server_address: Option<String>,
    tag_keys: Vec<String>,
    tag_labels: Vec<TagLabel>,
    state: Mutex<SeriesTable<Handles>>,
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
            server_address,
            tag_labels: TagLabel::for_keys(&tag_keys),
            tag_keys,
            state: Mutex::new(SeriesTable::new(max_series)),
        }
    }

    /// The instruments.
    pub fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    fn handles(&self, m: &AgentMetrics) -> Arc<Handles> {
        let mut table = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (handles, folded) = table.get_or_insert_with(m, &self.tag_keys, |folded| {
            self.instruments
                .handles(m, folded, self.server_address.as_deref(), &self.tag_labels)
        });
        if folded {
            self.instruments.folded.inc();
        }
        handles
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
mod tests;
