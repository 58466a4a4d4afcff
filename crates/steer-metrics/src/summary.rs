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

/// The `qs` quantiles (ascending, each in `0.0..=1.0`) of non-empty finite
/// `values` (reordered in place), exactly as [`percentile`] over the sorted
/// values: the two closest ranks are found by selection, each selection
/// working on what is right of the previous one.
fn select_percentiles<const N: usize>(values: &mut [f64], qs: [f64; N]) -> [f64; N] {
    let n = values.len();
    let mut out = [0.0; N];
    // Everything left of `done` is <= everything at or right of it.
    let mut done = 0usize;
    for (o, q) in out.iter_mut().zip(qs) {
        let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
        let lo = (pos.floor() as usize).max(done).min(n - 1);
        let hi = (pos.ceil() as usize).min(n - 1);
        let frac = pos - pos.floor();
        let (_, lo_v, _) = values[done..].select_nth_unstable_by(lo - done, f64::total_cmp);
        let lo_v = *lo_v;
        let hi_v = if hi > lo {
            values[lo + 1..].iter().copied().fold(f64::INFINITY, f64::min)
        } else {
            lo_v
        };
        *o = lo_v + (hi_v - lo_v) * frac;
        done = lo;
    }
    out
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
    ///
    /// The percentiles are exactly [`percentile`] of the sorted values, found
    /// by selection (`O(n)`) instead of a full sort, so a summary over
    /// millions of calls stays fast.
    pub fn from_values(mut values: Vec<f64>) -> Option<Self> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let mut sum = 0.0;
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for &v in &values {
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        let [p50, p95, p99] = select_percentiles(&mut values, [0.50, 0.95, 0.99]);
        Some(Distribution {
            count: n as u64,
            mean: sum / n as f64,
            min,
            max,
            p50,
            p95,
            p99,
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
    /// Reasoning / thinking output tokens (0 when not reported).
    pub reasoning_tokens: u64,
    /// Input tokens written to the prompt cache (0 when not reported).
    pub cache_write_tokens: u64,
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
            reasoning_tokens: m.reasoning_tokens.unwrap_or(0),
            cache_write_tokens: m.cache_write_tokens.unwrap_or(0),
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
    /// Sum of reasoning / thinking tokens (part of `output_tokens`).
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Sum of input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
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

/// The additive part of a summary (everything but the latency and TTFT
/// values): what a store can keep pre-aggregated per hour and add up later
/// with the same rules as [`SummaryBuilder::push`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Records.
    pub count: u64,
    /// Failed records.
    pub errors: u64,
    /// Sum of input tokens (saturating).
    pub input_tokens: u64,
    /// Sum of output tokens (saturating).
    pub output_tokens: u64,
    /// Sum of cached input tokens (saturating).
    pub cached_tokens: u64,
    /// Sum of reasoning tokens (saturating).
    pub reasoning_tokens: u64,
    /// Sum of cache-write tokens (saturating).
    pub cache_write_tokens: u64,
    /// Sum of the finite costs.
    pub cost_usd: f64,
    /// Records without a finite cost.
    pub cost_unknown: u64,
    /// Successful records without a finite cost.
    pub unpriced: u64,
    /// Sum of retries (saturating).
    pub retries: u64,
}

impl Totals {
    /// Count one sample (its latency and TTFT are not kept here).
    pub fn push(&mut self, s: &Sample) {
        self.count += 1;
        self.errors += u64::from(s.error);
        self.input_tokens = self.input_tokens.saturating_add(s.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(s.output_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(s.cached_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(s.reasoning_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(s.cache_write_tokens);
        match s.cost_usd {
            Some(c) if c.is_finite() => self.cost_usd += c,
            _ => {
                self.cost_unknown += 1;
                self.unpriced += u64::from(!s.error);
            }
        }
        self.retries = self.retries.saturating_add(s.retries);
    }

    /// The totals of these records without `some` of them (the totals of
    /// a subset): counts and token sums subtracted (saturating at 0), the
    /// cost sum subtracted (exact up to float rounding; exactly 0 when no
    /// record left has a known cost).
    pub fn minus(&self, some: &Totals) -> Totals {
        let count = self.count.saturating_sub(some.count);
        let cost_unknown = self.cost_unknown.saturating_sub(some.cost_unknown);
        Totals {
            count,
            errors: self.errors.saturating_sub(some.errors),
            input_tokens: self.input_tokens.saturating_sub(some.input_tokens),
            output_tokens: self.output_tokens.saturating_sub(some.output_tokens),
            cached_tokens: self.cached_tokens.saturating_sub(some.cached_tokens),
            reasoning_tokens: self.reasoning_tokens.saturating_sub(some.reasoning_tokens),
            cache_write_tokens: self.cache_write_tokens.saturating_sub(some.cache_write_tokens),
            cost_usd: if count > cost_unknown {
                self.cost_usd - some.cost_usd
            } else {
                0.0
            },
            cost_unknown,
            unpriced: self.unpriced.saturating_sub(some.unpriced),
            retries: self.retries.saturating_sub(some.retries),
        }
    }

    /// Add the totals of other records.
    pub fn merge(&mut self, o: &Totals) {
        self.count += o.count;
        self.errors += o.errors;
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(o.cached_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(o.reasoning_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(o.cache_write_tokens);
        self.cost_usd += o.cost_usd;
        self.cost_unknown += o.cost_unknown;
        self.unpriced += o.unpriced;
        self.retries = self.retries.saturating_add(o.retries);
    }
}

/// Accumulates [`Sample`]s into a [`Summary`].
#[derive(Debug, Default)]
pub struct SummaryBuilder {
    totals: Totals,
    latency: Vec<f64>,
    ttft: Vec<f64>,
}

impl SummaryBuilder {
    /// Add one sample.
    pub fn push(&mut self, s: Sample) {
        self.totals.push(&s);
        self.latency.push(s.latency_ms);
        if let Some(t) = s.ttft_ms {
            self.ttft.push(t);
        }
    }

    /// Add pre-aggregated records: their totals and their latency and TTFT
    /// values (in any order: percentiles do not depend on it). The result
    /// is the one pushing each record would give, except that float sums
    /// (cost, the means) may differ in the last bits by summation order.
    pub fn add(
        &mut self,
        totals: &Totals,
        latency_ms: impl IntoIterator<Item = f64>,
        ttft_ms: impl IntoIterator<Item = f64>,
    ) {
        self.totals.merge(totals);
        self.latency.extend(latency_ms);
        self.ttft.extend(ttft_ms);
    }

    /// Add everything `other` accumulated (as if its samples were pushed
    /// here after this one's).
    pub fn merge(&mut self, other: &SummaryBuilder) {
        self.totals.merge(&other.totals);
        self.latency.extend_from_slice(&other.latency);
        self.ttft.extend_from_slice(&other.ttft);
    }

    /// Samples pushed so far.
    pub fn count(&self) -> u64 {
        self.totals.count
    }

    /// The summary.
    pub fn finish(self) -> Summary {
        let t = self.totals;
        Summary {
            count: t.count,
            errors: t.errors,
            error_rate: if t.count == 0 {
                0.0
            } else {
                t.errors as f64 / t.count as f64
            },
            latency_ms: Distribution::from_values(self.latency),
            ttft_ms: Distribution::from_values(self.ttft),
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cached_tokens: t.cached_tokens,
            reasoning_tokens: t.reasoning_tokens,
            cache_write_tokens: t.cache_write_tokens,
            cost_usd: t.cost_usd,
            cost_unknown: t.cost_unknown,
            unpriced: t.unpriced,
            retries: t.retries,
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
        fn selection_gives_the_sorted_percentiles(values in proptest::collection::vec(-1e6f64..1e6, 1..300)) {
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let d = Distribution::from_values(values).unwrap();
            prop_assert_eq!(d.p50, percentile(&sorted, 0.50).unwrap());
            prop_assert_eq!(d.p95, percentile(&sorted, 0.95).unwrap());
            prop_assert_eq!(d.p99, percentile(&sorted, 0.99).unwrap());
            prop_assert_eq!(d.min, sorted[0]);
            prop_assert_eq!(d.max, *sorted.last().unwrap());
        }

        #[test]
        fn percentiles_are_ordered_and_bounded(values in proptest::collection::vec(-1e9f64..1e9, 1..200)) {
            let d = Distribution::from_values(values).unwrap();
            prop_assert!(d.min <= d.p50 && d.p50 <= d.p95 && d.p95 <= d.p99 && d.p99 <= d.max);
            prop_assert!(d.min <= d.mean + 1e-6 && d.mean <= d.max + 1e-6);
        }
    }
}
