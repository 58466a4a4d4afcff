//! Series state: per-interval count cells (cumulative, resent until
//! delivered), per-call distribution values, the cardinality cap and the
//! resume marks that make a collector retry exact.
//!
//! Datadog keeps the *last* value written for a (metric, tags, host,
//! timestamp) point. A count cell therefore always carries the interval's
//! running total: shipping it again after more records arrived, or after a
//! failed attempt, replaces the earlier value instead of adding to it.
//! Distribution values are additive on Datadog's side, so they are shipped
//! exactly once, per call.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use steer_metrics::AgentMetrics;
use uuid::Uuid;

use crate::encode::tag;
use crate::MAX_POINT_VALUE;

/// The tag key of the record's finish reason (`finish_reason:length`).
pub(crate) const FINISH_REASON_TAG: &str = "finish_reason";

use steer_metrics::semconv::{finish_reason, folded_finish_reason};

/// The costs and durations Datadog gets are the plausible ones, as for
/// every aggregating sink.
pub(crate) use steer_metrics::semconv::{
    plausible_cost as valid_cost, plausible_duration_ms as valid_duration,
};

/// How many of a record's latency, TTFT and cost are left out as negative,
/// not finite or above their bound.
pub(crate) fn invalid_values(m: &AgentMetrics) -> u64 {
    u64::from(!valid_duration(m.latency_ms))
        + u64::from(m.ttft_ms.is_some_and(|t| !valid_duration(t)))
        + u64::from(m.cost_usd.is_some_and(|c| !valid_cost(c)))
}

/// Whether a count point may carry this value (finite, at most
/// [`MAX_POINT_VALUE`], so its JSON number is always in the double range).
pub(crate) fn fits_point(v: f64) -> bool {
    v.is_finite() && v <= MAX_POINT_VALUE
}

/// Tags of a series, normalised, sorted and de-duplicated.
pub(crate) type Tags = Arc<[String]>;

/// A count metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Count {
    Requests,
    Errors,
    InputTokens,
    OutputTokens,
    CachedTokens,
    Retries,
    Cost,
}

impl Count {
    pub(crate) fn metric(self) -> &'static str {
        match self {
            Count::Requests => "steer.llm.requests",
            Count::Errors => "steer.llm.errors",
            Count::InputTokens | Count::OutputTokens | Count::CachedTokens => "steer.llm.tokens",
            Count::Retries => "steer.llm.retries",
            Count::Cost => "steer.llm.cost_usd",
        }
    }

    /// The extra tag this metric carries (`token_type:`).
    pub(crate) fn extra_tag(self) -> Option<&'static str> {
        match self {
            Count::InputTokens => Some("token_type:input"),
            Count::OutputTokens => Some("token_type:output"),
            Count::CachedTokens => Some("token_type:cached"),
            _ => None,
        }
    }

    /// This record's contribution (before the sample weight), if any.
    pub(crate) fn amount(self, m: &AgentMetrics) -> Option<f64> {
        let v = match self {
            Count::Requests => 1.0,
            Count::Errors => return m.is_error().then_some(1.0),
            Count::InputTokens => m.input_tokens as f64,
            Count::OutputTokens => m.output_tokens as f64,
            Count::CachedTokens => m.cached_tokens as f64,
            Count::Retries => m.retries as f64,
            Count::Cost => return m.cost_usd.filter(|c| valid_cost(*c) && *c > 0.0),
        };
        (v > 0.0).then_some(v)
    }

    pub(crate) const ALL: [Count; 7] = [
        Count::Requests,
        Count::Errors,
        Count::InputTokens,
        Count::OutputTokens,
        Count::CachedTokens,
        Count::Retries,
        Count::Cost,
    ];
}

/// A distribution metric (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Dist {
    Latency,
    Ttft,
}

impl Dist {
    pub(crate) fn metric(self) -> &'static str {
        match self {
            Dist::Latency => "steer.llm.latency",
            Dist::Ttft => "steer.llm.ttft",
        }
    }
    fn bit(self) -> u8 {
        match self {
            Dist::Latency => LAT_DONE,
            Dist::Ttft => TTFT_DONE,
        }
    }
    fn value(self, m: &AgentMetrics) -> Option<f64> {
        let v = match self {
            Dist::Latency => m.latency_ms,
            Dist::Ttft => m.ttft_ms?,
        };
        valid_duration(v).then_some(v)
    }
}

/// Counts added to the state.
pub(crate) const COUNTS_ADDED: u8 = 1;
/// Latency shipped.
pub(crate) const LAT_DONE: u8 = 2;
/// TTFT shipped.
pub(crate) const TTFT_DONE: u8 = 4;

/// A count cell's key.
pub(crate) type CellKey = (i64, Count, Tags);

#[derive(Debug, Default)]
struct Bucket {
    tag_sets: HashSet<Tags>,
    cells: HashMap<(Count, Tags), Cell>,
}

#[derive(Debug, Clone, Copy)]
struct Cell {
    value: f64,
    /// Bumped on every change so a delivery only cleans the value it carried.
    version: u64,
    dirty: bool,
}

/// A count point to ship.
#[derive(Debug, Clone)]
pub(crate) struct CountPoint {
    pub key: CellKey,
    pub value: f64,
    pub version: u64,
}

/// A distribution series of one call.
#[derive(Debug, Clone)]
pub(crate) struct DistSeries {
    pub dist: Dist,
    pub tags: Tags,
    pub ts: i64,
    pub values: Vec<f64>,
    /// Index into the batch of each value's record.
    pub records: Vec<usize>,
}

/// What one record of a batch touched.
#[derive(Debug, Default, Clone)]
pub(crate) struct Touched {
    pub cells: Vec<CellKey>,
    pub bits_before: u8,
}

/// Outcome counters of the aggregation.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AggCounters {
    pub folded: u64,
    pub lost_points: u64,
    /// Values left out: see [`invalid_values`], plus count contributions
    /// that would have pushed a point past [`MAX_POINT_VALUE`].
    pub invalid_values: u64,
}

/// Remembers, per request id, what of a partly shipped record is done, so
/// the collector's retry of that record does not count it twice. Bounded.
#[derive(Debug)]
struct Resume {
    marks: HashMap<Uuid, u8>,
    order: VecDeque<Uuid>,
    cap: usize,
}

impl Resume {
    fn get(&self, id: &Uuid) -> u8 {
        self.marks.get(id).copied().unwrap_or(0)
    }
    fn set(&mut self, id: Uuid, bits: u8) {
        if self.marks.insert(id, bits).is_none() {
            self.order.push_back(id);
        }
        while self.marks.len() > self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    if self.marks.remove(&old).is_some() {
                        tracing::warn!(
                            "datadog sink: resume marks full; a retried record may be counted twice"
                        );
                    }
                }
                None => break,
            }
        }
        if self.order.len() > self.cap * 2 {
            let marks = &self.marks;
            self.order.retain(|id| marks.contains_key(id));
        }
    }
    fn clear(&mut self, id: &Uuid) {
        self.marks.remove(id);
    }
}

/// The sink's series state.
#[derive(Debug)]
pub(crate) struct Aggregator {
    interval: i64,
    max_tag_sets: usize,
    retained: usize,
    static_tags: Vec<String>,
    record_tags: Vec<String>,
    buckets: BTreeMap<i64, Bucket>,
    resume: Resume,
    next_version: u64,
    pub counters: AggCounters,
}

impl Aggregator {
    pub(crate) fn new(
        interval_secs: u64,
        max_tag_sets: usize,
        retained: usize,
        static_tags: Vec<String>,
        record_tags: Vec<String>,
    ) -> Self {
        Aggregator {
            interval: interval_secs.max(1) as i64,
            max_tag_sets,
            retained: retained.max(1),
            static_tags,
            record_tags,
            buckets: BTreeMap::new(),
            resume: Resume {
                marks: HashMap::new(),
                order: VecDeque::new(),
                cap: 100_000,
            },
            next_version: 1,
            counters: AggCounters::default(),
        }
    }

    /// The full tag set of a record (static tags + record dimensions).
    pub(crate) fn tags_of(&self, m: &AgentMetrics) -> Vec<String> {
        let mut t: Vec<String> = self.static_tags.clone();
        t.extend(tag("model", &m.model));
        t.extend(tag("provider", &m.provider));
        t.extend(tag("method", m.method.as_str()));
        t.extend(tag("status", m.status()));
        if let Some(e) = m.error_class {
            t.extend(tag("error_class", e.as_str()));
        }
        if let Some(f) = finish_reason(m) {
            t.extend(tag(FINISH_REASON_TAG, f));
        }
        for k in &self.record_tags {
            if let Some(v) = m.tags.get(k) {
                t.extend(tag(k, v));
            }
        }
        t.sort();
        t.dedup();
        t
    }

    fn folded_tags(&self, m: &AgentMetrics) -> Tags {
        let mut t: Vec<String> = self.static_tags.clone();
        t.push("model:other".into());
        t.push("provider:other".into());
        t.extend(tag("method", m.method.as_str()));
        t.extend(tag("status", m.status()));
        // Bounded on folded series: a known finish reason, else `other`.
        if let Some(f) = finish_reason(m) {
            t.extend(tag(FINISH_REASON_TAG, folded_finish_reason(f)));
        }
        t.sort();
        t.dedup();
        t.into()
    }

    fn bucket_of(&self, m: &AgentMetrics) -> i64 {
        let ts = m.timestamp.timestamp();
        ts.div_euclid(self.interval) * self.interval
    }

    /// Add a batch: counts into the cells (once per record, whatever the
    /// retries), distribution values into this call's series.
    pub(crate) fn add_batch(
        &mut self,
        batch: &[AgentMetrics],
        skip: &[bool],
    ) -> (Vec<Touched>, Vec<DistSeries>) {
        let newest = batch
            .iter()
            .zip(skip)
            .filter(|(_, s)| !**s)
            .map(|(m, _)| self.bucket_of(m))
            .chain(self.buckets.keys().next_back().copied())
            .max();
        let cutoff = newest.map(|n| n - (self.retained as i64 - 1) * self.interval);
        let mut interned: HashMap<Vec<String>, Tags> = HashMap::new();
        let mut dists: BTreeMap<(Dist, Tags, i64), DistSeries> = BTreeMap::new();
        let mut touched = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            let mut t = Touched::default();
            if skip[i] {
                touched.push(t);
                continue;
            }
            // Late records land in the oldest bucket still held, so its
            // total grows instead of a stale total being overwritten.
            let bucket = cutoff.map_or(self.bucket_of(m), |c| self.bucket_of(m).max(c));
            let raw = self.tags_of(m);
            let tags = match interned.get(&raw) {
                Some(t) => t.clone(),
                None => {
                    let t: Tags = raw.clone().into();
                    interned.insert(raw, t.clone());
                    t
                }
            };
            let b = self.buckets.entry(bucket).or_default();
            let tags = if b.tag_sets.contains(&tags) {
                tags
            } else if b.tag_sets.len() < self.max_tag_sets {
                b.tag_sets.insert(tags.clone());
                tags
            } else {
                self.counters.folded += 1;
                self.folded_tags(m)
            };
            t.bits_before = self.resume.get(&m.request_id);
            let weight = if m.sample_weight.is_finite() && m.sample_weight > 0.0 {
                m.sample_weight
            } else {
                1.0
            };
            let add = t.bits_before & COUNTS_ADDED == 0;
            if add {
                // Marked before anything is sent: if this call is cancelled
                // (attempt timeout), the retry must not add these again.
                self.resume.set(m.request_id, t.bits_before | COUNTS_ADDED);
                self.counters.invalid_values += invalid_values(m);
            }
            for c in Count::ALL {
                let Some(amount) = c.amount(m) else { continue };
                let key = (bucket, c, tags.clone());
                if add {
                    let b = self.buckets.entry(bucket).or_default();
                    let cell_key = (c, tags.clone());
                    let current = b.cells.get(&cell_key).map_or(0.0, |cell| cell.value);
                    let next = current + amount * weight;
                    if !fits_point(next) {
                        // Left out rather than sent as a number no JSON
                        // parser reads (or a total that means nothing).
                        self.counters.invalid_values += 1;
                        tracing::warn!(
                            metric = c.metric(),
                            "datadog sink: a count contribution would push its point past {MAX_POINT_VALUE:e}; left out"
                        );
                        continue;
                    }
                    let version = self.next_version;
                    self.next_version += 1;
                    b.cells.insert(
                        cell_key,
                        Cell {
                            value: next,
                            version,
                            dirty: true,
                        },
                    );
                }
                t.cells.push(key);
            }
            for d in [Dist::Latency, Dist::Ttft] {
                let Some(v) = d.value(m) else { continue };
                if t.bits_before & d.bit() != 0 {
                    continue;
                }
                let s = dists
                    .entry((d, tags.clone(), bucket))
                    .or_insert_with(|| DistSeries {
                        dist: d,
                        tags: tags.clone(),
                        ts: bucket,
                        values: Vec::new(),
                        records: Vec::new(),
                    });
                // A sampled record stands for `weight` calls.
                let copies = weight.round().clamp(1.0, 1000.0) as usize;
                for _ in 0..copies {
                    s.values.push(v);
                    s.records.push(i);
                }
            }
            touched.push(t);
        }
        self.evict(cutoff);
        (touched, dists.into_values().collect())
    }

    fn evict(&mut self, cutoff: Option<i64>) {
        while let Some((&first, _)) = self.buckets.first_key_value() {
            if self.buckets.len() <= self.retained && !matches!(cutoff, Some(c) if first < c) {
                break;
            }
            let Some(b) = self.buckets.remove(&first) else {
                break;
            };
            let ts = first;
            let lost = b.cells.values().filter(|c| c.dirty).count() as u64;
            if lost > 0 {
                self.counters.lost_points += lost;
                tracing::error!(
                    bucket = ts,
                    lost,
                    "datadog sink: count points never delivered dropped from the retained window"
                );
            }
        }
    }

    /// Every count cell not yet delivered.
    pub(crate) fn dirty(&self) -> Vec<CountPoint> {
        let mut out = Vec::new();
        for (&ts, b) in &self.buckets {
            for ((c, tags), cell) in &b.cells {
                if cell.dirty {
                    out.push(CountPoint {
                        key: (ts, *c, tags.clone()),
                        value: cell.value,
                        version: cell.version,
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.key.1, &a.key.2, a.key.0).cmp(&(b.key.1, &b.key.2, b.key.0)));
        out
    }

    /// A shipped point: clean unless it changed meanwhile.
    pub(crate) fn delivered(&mut self, p: &CountPoint) {
        if let Some(cell) = self.cell_mut(&p.key) {
            if cell.version == p.version {
                cell.dirty = false;
            }
        }
    }

    /// A point Datadog refused for good: stop resending it.
    pub(crate) fn rejected(&mut self, p: &CountPoint) {
        if let Some(cell) = self.cell_mut(&p.key) {
            cell.dirty = false;
        }
    }

    fn cell_mut(&mut self, key: &CellKey) -> Option<&mut Cell> {
        self.buckets
            .get_mut(&key.0)?
            .cells
            .get_mut(&(key.1, key.2.clone()))
    }

    /// Whether this cell still waits for delivery.
    pub(crate) fn is_dirty(&self, key: &CellKey) -> bool {
        self.buckets
            .get(&key.0)
            .and_then(|b| b.cells.get(&(key.1, key.2.clone())))
            .is_some_and(|c| c.dirty)
    }

    /// Remember what of a record is done (or forget it when `bits` is 0).
    pub(crate) fn mark(&mut self, id: Uuid, bits: u8) {
        if bits == 0 {
            self.resume.clear(&id);
        } else {
            self.resume.set(id, bits);
        }
    }

    /// What of this record is already done.
    pub(crate) fn resume_bits(&self, id: &Uuid) -> u8 {
        self.resume.get(id)
    }

    /// Count cells held.
    pub(crate) fn cells(&self) -> usize {
        self.buckets.values().map(|b| b.cells.len()).sum()
    }
}

#[cfg(test)]
mod tests;
