//! Summary statistics over records: one definition shared by every store
//! (in-memory, SQLite, PostgreSQL) so their numbers mean the same thing.
//!
//! Percentiles use linear interpolation between closest ranks (the
//! definition of SQL's `percentile_cont`), so they are defined for any
//! number of samples >= 1 (the original SDK left p95 undefined below 20).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::{AgentMetrics, ErrorClass};

/// The `q`-quantile (`0.0..=1.0`) of ascending-sorted finite values, by
/// linear interpolation (`percentile_cont`). `None` when empty.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// Distribution of one measure (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Number of samples.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Distribution {
    /// From samples in any order; non-finite values are ignored. `None` when
    /// no finite value remains.
    pub fn from_values(mut values: Vec<f64>) -> Option<Self> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let sum: f64 = values.iter().sum();
        Some(Distribution {
            count: n as u64,
            mean: sum / n as f64,
            min: values[0],
            max: values[n - 1],
            p50: percentile(&values, 0.50)?,
            p95: percentile(&values, 0.95)?,
            p99: percentile(&values, 0.99)?,
        })
    }
}

/// The inputs of a summary for one record (what a store needs to select).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Latency in ms.
    pub latency_ms: f64,
    /// TTFT in ms.
    pub ttft_ms: Option<f64>,
    /// Whether the call failed.
    pub error: bool,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cached input tokens.
    pub cached_tokens: u64,
    /// Cost, when known.
    pub cost_usd: Option<f64>,
    /// Retries.
    pub retries: u64,
}

impl From<&AgentMetrics> for Sample {
    fn from(m: &AgentMetrics) -> Self {
        Sample {
            latency_ms: m.latency_ms,
            ttft_ms: m.ttft_ms,
            error: m.is_error(),
            input_tokens: m.input_tokens,
            output_tokens: m.output_tokens,
            cached_tokens: m.cached_tokens,
            cost_usd: m.cost_usd,
            retries: u64::from(m.retries),
        }
    }
}

/// Summary of a set of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Records.
    pub count: u64,
    /// Failed records.
    pub errors: u64,
    /// `errors / count` (0 when empty).
    pub error_rate: f64,
    /// Latency distribution (ms) of all records, failed ones included.
    pub latency_ms: Option<Distribution>,
    /// TTFT distribution (ms) of records that have one.
    pub ttft_ms: Option<Distribution>,
    /// Sum of input tokens.
    pub input_tokens: u64,
    /// Sum of output tokens.
    pub output_tokens: u64,
    /// Sum of cached input tokens.
    pub cached_tokens: u64,
    /// Sum of known costs (USD).
    pub cost_usd: f64,
    /// Records whose cost is unknown (not included in `cost_usd`).
    pub cost_unknown: u64,
    /// Successful calls whose model has no price (a subset of
    /// `cost_unknown`): a sign the price table needs an entry.
    #[serde(default)]
    pub unpriced: u64,
    /// Sum of retries.
    pub retries: u64,
}

impl Summary {
    /// Summarise samples.
    pub fn from_samples(samples: impl IntoIterator<Item = Sample>) -> Self {
        let mut acc = SummaryBuilder::default();
        for s in samples {
            acc.push(s);
        }
        acc.finish()
    }

    /// Summarise records.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a AgentMetrics>) -> Self {
        Self::from_samples(records.into_iter().map(Sample::from))
    }
}

/// Accumulates [`Sample`]s into a [`Summary`].
#[derive(Debug, Default)]
pub struct SummaryBuilder {
    count: u64,
    errors: u64,
    latency: Vec<f64>,
    ttft: Vec<f64>,
    input: u64,
    output: u64,
    cached: u64,
    cost: f64,
    cost_unknown: u64,
    unpriced: u64,
    retries: u64,
}

impl SummaryBuilder {
    /// Add one sample.
    pub fn push(&mut self, s: Sample) {
        self.count += 1;
        self.errors += u64::from(s.error);
        self.latency.push(s.latency_ms);
        if let Some(t) = s.ttft_ms {
            self.ttft.push(t);
        }
        self.input = self.input.saturating_add(s.input_tokens);
        self.output = self.output.saturating_add(s.output_tokens);
        self.cached = self.cached.saturating_add(s.cached_tokens);
        match s.cost_usd {
            Some(c) if c.is_finite() => self.cost += c,
            _ => {
                self.cost_unknown += 1;
                self.unpriced += u64::from(!s.error);
            }
        }
        self.retries = self.retries.saturating_add(s.retries);
    }

    /// The summary.
    pub fn finish(self) -> Summary {
        Summary {
            count: self.count,
            errors: self.errors,
            error_rate: if self.count == 0 {
                0.0
            } else {
                self.errors as f64 / self.count as f64
            },
            latency_ms: Distribution::from_values(self.latency),
            ttft_ms: Distribution::from_values(self.ttft),
            input_tokens: self.input,
            output_tokens: self.output,
            cached_tokens: self.cached,
            cost_usd: self.cost,
            cost_unknown: self.cost_unknown,
            unpriced: self.unpriced,
            retries: self.retries,
        }
    }
}

/// What to break a summary down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// The requested model.
    Model,
    /// The provider.
    Provider,
    /// The error class (`none` for successes).
    ErrorClass,
}

impl GroupBy {
    /// The group key of a record.
    pub fn key(self, m: &AgentMetrics) -> String {
        match self {
            GroupBy::Model => m.model.clone(),
            GroupBy::Provider => m.provider.clone(),
            GroupBy::ErrorClass => error_key(m.error_class),
        }
    }
}

/// The group key for an error class (`none` for success).
pub fn error_key(c: Option<ErrorClass>) -> String {
    c.map_or_else(|| "none".to_string(), |c| c.as_str().to_string())
}

/// Summaries per group.
pub fn breakdown<'a>(
    records: impl IntoIterator<Item = &'a AgentMetrics>,
    by: GroupBy,
) -> BTreeMap<String, Summary> {
    let mut groups: BTreeMap<String, SummaryBuilder> = BTreeMap::new();
    for m in records {
        groups.entry(by.key(m)).or_default().push(Sample::from(m));
    }
    groups.into_iter().map(|(k, v)| (k, v.finish())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentiles_defined_for_one_sample() {
        let d = Distribution::from_values(vec![42.0]).unwrap();
        assert_eq!((d.p50, d.p95, d.p99, d.mean), (42.0, 42.0, 42.0, 42.0));
    }

    #[test]
    fn percentile_matches_percentile_cont() {
        // percentile_cont(0.95) over 1..=10 = 1 + 0.95*9 = 9.55
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!((percentile(&v, 0.95).unwrap() - 9.55).abs() < 1e-12);
        assert_eq!(percentile(&v, 0.5).unwrap(), 5.5);
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn summary_counts_errors_tokens_and_unknown_cost() {
        let mut a = AgentMetrics::new("openai", "gpt-4o")
            .with_latency_ms(100.0)
            .with_tokens(10, 5);
        a.cost_usd = Some(0.5);
        let b = AgentMetrics::new("openai", "gpt-4o")
            .with_latency_ms(300.0)
            .with_error(ErrorClass::Timeout);
        let s = Summary::from_records([&a, &b]);
        assert_eq!(s.count, 2);
        assert_eq!(s.errors, 1);
        assert_eq!(s.error_rate, 0.5);
        assert_eq!(s.cost_usd, 0.5);
        assert_eq!(s.cost_unknown, 1);
        assert_eq!(s.input_tokens, 10);
        assert_eq!(s.latency_ms.unwrap().mean, 200.0);
        let by = breakdown([&a, &b], GroupBy::ErrorClass);
        assert_eq!(by.keys().collect::<Vec<_>>(), vec!["none", "timeout"]);
    }

    proptest! {
        #[test]
        fn percentiles_are_ordered_and_bounded(values in proptest::collection::vec(-1e9f64..1e9, 1..200)) {
            let d = Distribution::from_values(values).unwrap();
            prop_assert!(d.min <= d.p50 && d.p50 <= d.p95 && d.p95 <= d.p99 && d.p99 <= d.max);
            prop_assert!(d.min <= d.mean + 1e-6 && d.mean <= d.max + 1e-6);
        }
    }
}
