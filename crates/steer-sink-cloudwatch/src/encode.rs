//! Pure functions from records to CloudWatch datums: the metric catalogue,
//! dimension normalisation, value validation, the Values/Counts
//! distribution with bounded relative error, and the request-size
//! estimate. No I/O here.
//!
//! | metric | unit | shape | over |
//! |---|---|---|---|
//! | `Requests` | Count | StatisticValues (each call = 1) | every call |
//! | `Errors` | Count | StatisticValues (0 or 1; Average = error rate) | every call |
//! | `Retries` | Count | StatisticValues | every call |
//! | `InputTokens`, `OutputTokens`, `CachedTokens`, `TotalTokens` | Count | StatisticValues | calls that reported usage (input + output > 0) |
//! | `CostUSD` | None | StatisticValues | calls with a known cost |
//! | `Latency` | Milliseconds | Values/Counts | every call |
//! | `TimeToFirstToken` | Milliseconds | Values/Counts | calls with a TTFT |
//!
//! StatisticValues carry SampleCount (calls, weighted), Sum, Minimum and
//! Maximum, so CloudWatch's four basic statistics over a series equal the
//! same statistics over the individual calls.

use std::collections::BTreeMap;

use steer_metrics::AgentMetrics;

/// CloudWatch's limit of distinct values per datum.
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// CloudWatch's limit of datums per PutMetricData call.
pub const MAX_DATUMS_PER_CALL: usize = 1000;
/// CloudWatch's limit of the request body (1 MB).
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// CloudWatch's limit of dimensions per datum.
pub const MAX_DIMENSIONS: usize = 30;
/// Longest dimension name or value CloudWatch accepts.
pub const MAX_DIMENSION_LEN: usize = 255;
/// Smallest magnitude CloudWatch accepts for a non-zero value.
pub const MIN_MAGNITUDE: f64 = 8.515920e-109;
/// Largest magnitude CloudWatch accepts.
pub const MAX_MAGNITUDE: f64 = 1.174271e+108;

/// A metric the sink publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Calls (each contributes 1).
    Requests,
    /// Failed calls (each call contributes 0 or 1).
    Errors,
    /// Retries per call.
    Retries,
    /// Input tokens per call.
    InputTokens,
    /// Output tokens per call.
    OutputTokens,
    /// Cached input tokens per call.
    CachedTokens,
    /// Input plus output tokens per call.
    TotalTokens,
    /// Cost per call in USD.
    CostUsd,
    /// Latency per call (ms), as a distribution.
    Latency,
    /// Time to first token (ms), as a distribution.
    Ttft,
}

/// The unit of a metric, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `Count`.
    Count,
    /// `Milliseconds`.
    Milliseconds,
    /// `None` (a plain number, e.g. USD).
    None,
}

impl Unit {
    /// CloudWatch's name of the unit.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::None => "None",
        }
    }
}

impl Metric {
    /// Every metric, in publishing order.
    pub const ALL: [Metric; 10] = [
        Metric::Requests,
        Metric::Errors,
        Metric::Retries,
        Metric::InputTokens,
        Metric::OutputTokens,
        Metric::CachedTokens,
        Metric::TotalTokens,
        Metric::CostUsd,
        Metric::Latency,
        Metric::Ttft,
    ];

    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Requests => "Requests",
            Metric::Errors => "Errors",
            Metric::Retries => "Retries",
            Metric::InputTokens => "InputTokens",
            Metric::OutputTokens => "OutputTokens",
            Metric::CachedTokens => "CachedTokens",
            Metric::TotalTokens => "TotalTokens",
            Metric::CostUsd => "CostUSD",
            Metric::Latency => "Latency",
            Metric::Ttft => "TimeToFirstToken",
        }
    }

    /// The unit.
    pub fn unit(self) -> Unit {
        match self {
            Metric::Latency | Metric::Ttft => Unit::Milliseconds,
            Metric::CostUsd => Unit::None,
            _ => Unit::Count,
        }
    }

    /// Whether the metric is published as a Values/Counts distribution.
    pub fn is_distribution(self) -> bool {
        matches!(self, Metric::Latency | Metric::Ttft)
    }

    /// This call's value of the metric, or `None` when the call does not
    /// contribute (no usage reported, unknown cost, no TTFT).
    pub fn value(self, m: &AgentMetrics) -> Option<f64> {
        let usage = m.total_tokens() > 0;
        match self {
            Metric::Requests => Some(1.0),
            Metric::Errors => Some(if m.is_error() { 1.0 } else { 0.0 }),
            Metric::Retries => Some(f64::from(m.retries)),
            Metric::InputTokens => usage.then_some(m.input_tokens as f64),
            Metric::OutputTokens => usage.then_some(m.output_tokens as f64),
            Metric::CachedTokens => usage.then_some(m.cached_tokens as f64),
            Metric::TotalTokens => usage.then_some(m.total_tokens() as f64),
            Metric::CostUsd => m.cost_usd,
            Metric::Latency => Some(m.latency_ms),
            Metric::Ttft => m.ttft_ms,
        }
    }
}

/// Whether CloudWatch accepts `v` as a value: finite and 0 or within
/// [`MIN_MAGNITUDE`]..=[`MAX_MAGNITUDE`] in magnitude.
pub fn is_valid_value(v: f64) -> bool {
    v.is_finite() && (v == 0.0 || (MIN_MAGNITUDE..=MAX_MAGNITUDE).contains(&v.abs()))
}

/// Why a record cannot be published.
pub fn invalid_reason(m: &AgentMetrics) -> Option<String> {
    let w = m.sample_weight;
    if !(w.is_finite() && w > 0.0 && w <= MAX_MAGNITUDE) {
        return Some(format!("sample_weight {w} is not a positive finite number"));
    }
    for metric in Metric::ALL {
        if let Some(v) = metric.value(m) {
            if !is_valid_value(v) || v < 0.0 || !is_valid_value(v * w) {
                return Some(format!(
                    "{} value {v} is not a value CloudWatch accepts (finite, >= 0, magnitude 0 or {MIN_MAGNITUDE:e}..{MAX_MAGNITUDE:e})",
                    metric.name()
                ));
            }
        }
    }
    None
}

/// A dimension (name, value), both already normalised.
pub type Dimension = (String, String);

/// Normalise a dimension name or value to what CloudWatch accepts: ASCII
/// without control characters (others become `_`), surrounding whitespace
/// trimmed, at most 255 characters, never empty (`fallback` instead). A
/// name may not start with `:`.
pub fn normalize(s: &str, fallback: &str, is_name: bool) -> String {
    let mut out: String = s
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '_'
            }
        })
        .collect();
    if is_name && out.starts_with(':') {
        out.replace_range(0..1, "_");
    }
    out.truncate(MAX_DIMENSION_LEN);
    let trimmed = out.trim_end();
    if trimmed.is_empty() {
        return fallback.to_string();
    }
    trimmed.to_string()
}

/// Build a datum's dimension list: the fixed ones first (later duplicates
/// of a name are dropped), at most [`MAX_DIMENSIONS`].
pub fn dimensions(pairs: impl IntoIterator<Item = (String, String)>) -> Vec<Dimension> {
    let mut out: Vec<Dimension> = Vec::new();
    for (n, v) in pairs {
        let n = normalize(&n, "dimension", true);
        let v = normalize(&v, "none", false);
        if out.iter().any(|(k, _)| *k == n) {
            continue;
        }
        if out.len() == MAX_DIMENSIONS {
            break;
        }
        out.push((n, v));
    }
    out
}

/// StatisticValues of a datum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Weighted number of calls.
    pub sample_count: f64,
    /// Weighted sum.
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Stats {
    /// Stats of one weighted value.
    pub fn one(v: f64, w: f64) -> Self {
        Stats {
            sample_count: w,
            sum: v * w,
            min: v,
            max: v,
        }
    }

    /// Add a weighted value.
    pub fn add(&mut self, v: f64, w: f64) {
        self.sample_count += w;
        self.sum += v * w;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }
}

/// What a datum carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A single value.
    Value(f64),
    /// Pre-aggregated statistics.
    Stats(Stats),
    /// Distinct values and their (weighted) counts; at most
    /// [`MAX_VALUES_PER_DATUM`].
    Values(Vec<f64>, Vec<f64>),
}

/// One MetricDatum, independent of the SDK.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    /// The metric.
    pub metric: Metric,
    /// Dimensions (normalised).
    pub dimensions: std::sync::Arc<[Dimension]>,
    /// Timestamp, epoch milliseconds.
    pub timestamp_ms: i64,
    /// 1 (high resolution) or 60.
    pub storage_resolution: i32,
    /// The data.
    pub payload: Payload,
}

impl Datum {
    /// An upper bound of the datum's size in the CBOR request body, in bytes.
    pub fn estimated_size(&self) -> usize {
        // Map header, keys and fixed members (name key + value, unit,
        // timestamp tag + double, storage resolution).
        let mut n = 96 + self.metric.name().len();
        for (k, v) in self.dimensions.iter() {
            // {"Name": k, "Value": v} with string headers.
            n += 24 + k.len() + v.len();
        }
        n += match &self.payload {
            Payload::Value(_) => 16,
            Payload::Stats(_) => 96,
            // Two arrays of doubles (9 bytes each) plus headers and keys.
            Payload::Values(v, c) => 32 + 9 * (v.len() + c.len()),
        };
        n
    }

    /// Every number the datum carries (for validation).
    pub fn numbers(&self) -> Vec<f64> {
        match &self.payload {
            Payload::Value(v) => vec![*v],
            Payload::Stats(s) => vec![s.sample_count, s.sum, s.min, s.max],
            Payload::Values(v, c) => v.iter().chain(c).copied().collect(),
        }
    }
}

/// Fixed bytes of a PutMetricData body around the datums (namespace, keys).
pub fn envelope_size(namespace: &str) -> usize {
    64 + namespace.len()
}

/// Accumulates the distribution of one series: weighted values rounded to
/// buckets of relative width `relative_error`, with the exact minimum and
/// maximum kept as values of their own.
///
/// Each bucket is published as the weighted **mean** of the values that
/// fell in it, so the distribution's Sum equals the sum of the original
/// values (up to floating-point rounding), SampleCount equals the number
/// of calls, Minimum and Maximum are exact, and every published value is
/// within `relative_error` of the call value it stands for (percentiles
/// are therefore within that error too).
#[derive(Debug, Clone)]
pub struct DistAcc {
    log_base: f64,
    // bucket -> (weight, weighted sum)
    buckets: BTreeMap<i64, (f64, f64)>,
    zero: f64,
    min: Option<(f64, f64)>,
    max: Option<(f64, f64)>,
}

/// Bucket key for zero.
const ZERO: i64 = i64::MIN;

impl DistAcc {
    /// An empty accumulator; `relative_error` is clamped to 1e-6..=0.5.
    pub fn new(relative_error: f64) -> Self {
        let e = if relative_error.is_finite() {
            relative_error.clamp(1e-6, 0.5)
        } else {
            0.01
        };
        DistAcc {
            log_base: (1.0 + e).ln(),
            buckets: BTreeMap::new(),
            zero: 0.0,
            min: None,
            max: None,
        }
    }

    fn key(&self, v: f64) -> i64 {
        if v == 0.0 {
            ZERO
        } else {
            (v.ln() / self.log_base).floor() as i64
        }
    }

    /// Add value `v` (finite, >= 0) with weight `w`.
    pub fn add(&mut self, v: f64, w: f64) {
        // Track the exact extremes; the value they replace goes to its bucket.
        let mut to_bucket = Some((v, w));
        match self.min {
            None => {
                self.min = Some((v, w));
                to_bucket = None;
            }
            Some((mv, mw)) if v < mv => {
                self.min = Some((v, w));
                to_bucket = Some((mv, mw));
            }
            Some((mv, mw)) if v == mv => {
                self.min = Some((mv, mw + w));
                to_bucket = None;
            }
            _ => {}
        }
        if let Some((bv, bw)) = to_bucket {
            to_bucket = None;
            match self.max {
                None => self.max = Some((bv, bw)),
                Some((xv, xw)) if bv > xv => {
                    self.max = Some((bv, bw));
                    to_bucket = Some((xv, xw));
                }
                Some((xv, xw)) if bv == xv => self.max = Some((xv, xw + bw)),
                _ => to_bucket = Some((bv, bw)),
            }
        }
        if let Some((bv, bw)) = to_bucket {
            if bv == 0.0 {
                self.zero += bw;
            } else {
                let e = self.buckets.entry(self.key(bv)).or_insert((0.0, 0.0));
                e.0 += bw;
                e.1 += bv * bw;
            }
        }
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.min.is_none()
    }

    /// Distinct values and counts, ascending, equal values merged.
    pub fn entries(&self) -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = Vec::with_capacity(self.buckets.len() + 3);
        let mut push = |v: f64, c: f64| {
            if c <= 0.0 {
                return;
            }
            match out.iter_mut().find(|(x, _)| x.to_bits() == v.to_bits()) {
                Some(e) => e.1 += c,
                None => out.push((v, c)),
            }
        };
        if let Some((v, w)) = self.min {
            push(v, w);
        }
        if self.zero > 0.0 {
            push(0.0, self.zero);
        }
        for (w, s) in self.buckets.values() {
            let mean = s / w;
            // Keep the mean inside the series' range despite rounding.
            let lo = self.min.map_or(mean, |m| m.0);
            let hi = self.max.map_or(mean, |m| m.0);
            push(mean.clamp(lo, hi), *w);
        }
        if let Some((v, w)) = self.max {
            push(v, w);
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// The entries as Values/Counts payloads of at most `per_datum` values each.
    pub fn payloads(&self, per_datum: usize) -> Vec<Payload> {
        let per = per_datum.clamp(1, MAX_VALUES_PER_DATUM);
        self.entries()
            .chunks(per)
            .map(|c| Payload::Values(c.iter().map(|e| e.0).collect(), c.iter().map(|e| e.1).collect()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_and_units_are_cloudwatch_ones() {
        assert_eq!(Metric::Latency.unit().as_str(), "Milliseconds");
        assert_eq!(Metric::Requests.unit().as_str(), "Count");
        assert_eq!(Metric::CostUsd.unit().as_str(), "None");
        assert_eq!(Metric::Ttft.name(), "TimeToFirstToken");
        assert!(Metric::ALL
            .iter()
            .all(|m| m.name().len() <= 255 && m.name().is_ascii()));
    }

    #[test]
    fn normalize_dimension_values() {
        assert_eq!(normalize("  gpt-4o  ", "none", false), "gpt-4o");
        assert_eq!(normalize("", "none", false), "none");
        assert_eq!(normalize("   ", "none", false), "none");
        assert_eq!(normalize("modèle\n1", "none", false), "mod_le_1");
        assert_eq!(normalize(":name", "d", true), "_name");
        let long = "x".repeat(300);
        assert_eq!(normalize(&long, "none", false).len(), 255);
    }

    #[test]
    fn dimensions_are_capped_and_deduplicated() {
        let pairs = (0..40).map(|i| (format!("k{i}"), "v".to_string()));
        let d = dimensions(
            [
                ("Model".to_string(), "a".to_string()),
                ("Model".to_string(), "b".to_string()),
            ]
            .into_iter()
            .chain(pairs),
        );
        assert_eq!(d.len(), MAX_DIMENSIONS);
        assert_eq!(d[0], ("Model".to_string(), "a".to_string()));
        assert_eq!(d.iter().filter(|(k, _)| k == "Model").count(), 1);
    }

    #[test]
    fn value_ranges() {
        assert!(is_valid_value(0.0));
        assert!(is_valid_value(1e-100));
        assert!(!is_valid_value(1e-200));
        assert!(!is_valid_value(1e200));
        assert!(!is_valid_value(f64::NAN));
        assert!(!is_valid_value(f64::INFINITY));
        let mut m = AgentMetrics::new("p", "m").with_latency_ms(5.0);
        assert!(invalid_reason(&m).is_none());
        m.ttft_ms = Some(f64::NAN);
        assert!(invalid_reason(&m).unwrap().contains("TimeToFirstToken"));
        m.ttft_ms = None;
        m.cost_usd = Some(f64::INFINITY);
        assert!(invalid_reason(&m).is_some());
        m.cost_usd = Some(-1.0);
        assert!(invalid_reason(&m).is_some());
        m.cost_usd = None;
        m.sample_weight = 0.0;
        assert!(invalid_reason(&m).is_some());
    }

    #[test]
    fn usage_metrics_only_for_calls_that_reported_usage() {
        let m = AgentMetrics::new("p", "m").with_latency_ms(3.0);
        assert_eq!(Metric::InputTokens.value(&m), None);
        assert_eq!(Metric::Requests.value(&m), Some(1.0));
        let m = m.with_tokens(10, 0);
        assert_eq!(Metric::OutputTokens.value(&m), Some(0.0));
        assert_eq!(Metric::TotalTokens.value(&m), Some(10.0));
    }

    #[test]
    fn distribution_keeps_extremes_and_sum() {
        let mut d = DistAcc::new(0.01);
        for v in [100.0, 100.5, 101.0, 250.0, 0.0, 999.0] {
            d.add(v, 1.0);
        }
        let e = d.entries();
        assert_eq!(e.first().unwrap().0, 0.0);
        assert_eq!(e.last().unwrap().0, 999.0);
        let count: f64 = e.iter().map(|x| x.1).sum();
        let sum: f64 = e.iter().map(|x| x.0 * x.1).sum();
        assert_eq!(count, 6.0);
        assert!((sum - 1550.5).abs() < 1e-9);
    }

    #[test]
    fn payloads_split_at_150_values() {
        let mut d = DistAcc::new(0.0001);
        for i in 1..=400 {
            d.add(f64::from(i), 1.0);
        }
        let p = d.payloads(150);
        assert_eq!(p.len(), 3);
        let total: usize = p
            .iter()
            .map(|p| match p {
                Payload::Values(v, c) => {
                    assert_eq!(v.len(), c.len());
                    assert!(v.len() <= 150);
                    v.len()
                }
                _ => unreachable!(),
            })
            .sum();
        assert_eq!(total, 400);
    }

    proptest! {
        #[test]
        fn distribution_error_is_bounded(
            values in proptest::collection::vec((0.0f64..1e7, 1u32..4), 1..400),
            err in 0.001f64..0.05,
        ) {
            let mut d = DistAcc::new(err);
            for (v, w) in &values {
                d.add(*v, f64::from(*w));
            }
            let e = d.entries();
            let n: f64 = values.iter().map(|x| f64::from(x.1)).sum();
            let s: f64 = values.iter().map(|x| x.0 * f64::from(x.1)).sum();
            let min = values.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
            let max = values.iter().map(|x| x.0).fold(0.0, f64::max);
            prop_assert_eq!(e.iter().map(|x| x.1).sum::<f64>(), n);
            let es: f64 = e.iter().map(|x| x.0 * x.1).sum();
            prop_assert!((es - s).abs() <= 1e-9 * s.max(1.0));
            prop_assert_eq!(e[0].0, min);
            prop_assert_eq!(e[e.len() - 1].0, max);
            // Every original value has a published value within the error.
            for (v, _) in &values {
                prop_assert!(e.iter().any(|(x, _)| (x - v).abs() <= err * v.abs() + 1e-12));
            }
            // Values are distinct and ascending.
            prop_assert!(e.windows(2).all(|w| w[0].0 < w[1].0));
            for p in d.payloads(MAX_VALUES_PER_DATUM) {
                if let Payload::Values(v, _) = p {
                    prop_assert!(v.len() <= MAX_VALUES_PER_DATUM);
                }
            }
        }

        #[test]
        fn normalized_dimensions_are_always_acceptable(s in ".{0,400}") {
            let v = normalize(&s, "none", false);
            prop_assert!(!v.is_empty() && v.len() <= MAX_DIMENSION_LEN);
            prop_assert!(v.chars().all(|c| c.is_ascii() && !c.is_ascii_control()));
            prop_assert!(!v.trim().is_empty());
            let n = normalize(&s, "d", true);
            prop_assert!(!n.starts_with(':'));
        }
    }
}
