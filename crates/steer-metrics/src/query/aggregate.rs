//! The one-pass aggregation the in-memory and SQLite stores answer with.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Turns selected rows into a [`SummaryReport`] or a [`Timeseries`] in one
/// pass: what the in-memory and SQLite stores use (PostgreSQL aggregates in
/// the database with the same definitions).
///
/// Feed it every selected record's group key, start time and [`Sample`];
/// it counts rows against [`QueryLimits::max_rows`]. Aggregators over
/// disjoint parts of the selection (scanned in parallel) combine with
/// [`Aggregator::merge`].
#[derive(Debug)]
pub struct Aggregator {
    by: Option<GroupKey>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limits: QueryLimits,
    /// Step in microseconds (time series), `None` for a summary.
    step_us: Option<i64>,
    /// Group names; index = group number (a single `""` group without a
    /// breakdown).
    names: Vec<String>,
    /// Name -> group number, once there are too many names for a linear
    /// search.
    index: HashMap<String, usize>,
    rows: u64,
    /// Summary: per group.
    groups: Vec<SummaryBuilder>,
    /// Time series: bucket number -> slot in `slots`.
    bucket_slot: HashMap<i64, usize>,
    /// Per slot: (bucket number, per group number).
    slots: Vec<(i64, Vec<SummaryBuilder>)>,
    /// The last (bucket, slot) looked up: rows come roughly in time order.
    last_slot: Option<(i64, usize)>,
}

/// Names searched linearly below this count (faster than hashing).
const LINEAR_GROUPS: usize = 24;

impl Aggregator {
    /// For a summary of `q`.
    pub fn summary(q: &StatsQuery) -> Self {
        Self::new(q, None)
    }

    /// For a time series of `q` with `step`.
    pub fn timeseries(q: &StatsQuery, step: Duration) -> Self {
        let us = i64::try_from(step.as_micros()).unwrap_or(i64::MAX).max(1_000_000);
        Self::new(q, Some(us))
    }

    fn new(q: &StatsQuery, step_us: Option<i64>) -> Self {
        Aggregator {
            by: q.by.clone(),
            since: q.since,
            until: q.until,
            limits: q.limits,
            step_us,
            names: Vec::new(),
            index: HashMap::new(),
            rows: 0,
            groups: Vec::new(),
            bucket_slot: HashMap::new(),
            slots: Vec::new(),
            last_slot: None,
        }
    }

    fn group(&mut self, key: &str) -> usize {
        let key = if self.by.is_some() { key } else { "" };
        if self.names.len() <= LINEAR_GROUPS {
            if let Some(i) = self.names.iter().position(|n| n == key) {
                return i;
            }
        } else if let Some(&i) = self.index.get(key) {
            return i;
        }
        let i = self.names.len();
        self.names.push(key.to_string());
        if self.names.len() > LINEAR_GROUPS {
            if self.index.is_empty() {
                for (j, n) in self.names.iter().enumerate() {
                    self.index.insert(n.clone(), j);
                }
            } else {
                self.index.insert(key.to_string(), i);
            }
        }
        i
    }

    fn slot(&mut self, b: i64) -> Result<usize, QueryError> {
        if let Some((lb, ls)) = self.last_slot {
            if lb == b {
                return Ok(ls);
            }
        }
        let slot = match self.bucket_slot.get(&b) {
            Some(&i) => i,
            None => {
                let i = self.slots.len();
                if i >= self.limits.max_points {
                    return Err(self.too_many_points());
                }
                self.slots.push((b, Vec::new()));
                self.bucket_slot.insert(b, i);
                i
            }
        };
        self.last_slot = Some((b, slot));
        Ok(slot)
    }

    fn count_rows(&mut self, n: u64) -> Result<(), QueryError> {
        self.rows += n;
        if self.rows > self.limits.max_rows {
            return Err(QueryError::TooLarge(format!(
                "more than {} records selected: choose a shorter window",
                self.limits.max_rows
            )));
        }
        Ok(())
    }

    /// The builder of group `key` (in the step of `ts_us` for a time series).
    fn builder(&mut self, key: &str, ts_us: i64) -> Result<&mut SummaryBuilder, QueryError> {
        let g = self.group(key);
        let builders = match self.step_us {
            None => &mut self.groups,
            Some(step) => {
                let slot = self.slot(ts_us.div_euclid(step))?;
                &mut self.slots[slot].1
            }
        };
        if g >= builders.len() {
            builders.resize_with(g + 1, SummaryBuilder::default);
        }
        Ok(&mut builders[g])
    }

    /// Add one record. `key` is its group key (ignored without a
    /// breakdown), `ts_us` its start in Unix microseconds.
    pub fn push(&mut self, key: &str, ts_us: i64, s: Sample) -> Result<(), QueryError> {
        self.count_rows(1)?;
        self.builder(key, ts_us)?.push(s);
        Ok(())
    }

    /// Add pre-aggregated records that share a group key and a time step
    /// (a store's rollup of one hour): `totals` and their finite latency
    /// and TTFT values. `ts_us` is any instant of the step they fall in.
    /// Counts `totals.count` rows against [`QueryLimits::max_rows`].
    pub fn push_totals(
        &mut self,
        key: &str,
        ts_us: i64,
        totals: &Totals,
        latency_ms: impl IntoIterator<Item = f64>,
        ttft_ms: impl IntoIterator<Item = f64>,
    ) -> Result<(), QueryError> {
        self.count_rows(totals.count)?;
        self.builder(key, ts_us)?.add(totals, latency_ms, ttft_ms);
        Ok(())
    }

    /// The time-series step in microseconds (`None` for a summary).
    pub fn step_us(&self) -> Option<i64> {
        self.step_us
    }

    /// Add everything `other` (an aggregator of the same query over other
    /// records) accumulated.
    pub fn merge(&mut self, other: Aggregator) -> Result<(), QueryError> {
        self.count_rows(other.rows)?;
        let map: Vec<usize> = other.names.iter().map(|n| self.group(n)).collect();
        let add = |into: &mut Vec<SummaryBuilder>, from: Vec<SummaryBuilder>| {
            for (g, b) in from.into_iter().enumerate() {
                let i = map[g];
                if i >= into.len() {
                    into.resize_with(i + 1, SummaryBuilder::default);
                }
                into[i].merge(&b);
            }
        };
        add(&mut self.groups, other.groups);
        for (b, groups) in other.slots {
            let slot = self.slot(b)?;
            add(&mut self.slots[slot].1, groups);
        }
        Ok(())
    }

    fn too_many_points(&self) -> QueryError {
        QueryError::TooLarge(format!(
            "more than {} steps: choose a longer step or a shorter window",
            self.limits.max_points
        ))
    }

    /// Group numbers to keep (the `max_groups` with the most calls, ties
    /// by name) and how many were folded.
    fn kept(&self, counts: &[u64]) -> (Vec<bool>, u64) {
        let mut order: Vec<usize> = (0..self.names.len()).collect();
        order.sort_by(|&a, &b| {
            counts[b]
                .cmp(&counts[a])
                .then_with(|| self.names[a].cmp(&self.names[b]))
        });
        let mut keep = vec![false; self.names.len()];
        for &i in order.iter().take(self.limits.max_groups) {
            keep[i] = true;
        }
        let folded = self.names.len().saturating_sub(self.limits.max_groups) as u64;
        (keep, folded)
    }

    /// The summary (for an aggregator made by [`Aggregator::summary`]).
    pub fn finish_summary(self) -> SummaryReport {
        let mut total = SummaryBuilder::default();
        for b in &self.groups {
            total.merge(b);
        }
        let mut groups = BTreeMap::new();
        let mut folded = 0;
        if self.by.is_some() {
            let counts: Vec<u64> = self.groups.iter().map(SummaryBuilder::count).collect();
            let (keep, f) = self.kept(&counts);
            folded = f;
            let mut other = SummaryBuilder::default();
            for (i, b) in self.groups.into_iter().enumerate() {
                if keep[i] {
                    groups.insert(self.names[i].clone(), b.finish());
                } else {
                    other.merge(&b);
                }
            }
            if folded > 0 {
                groups.insert(OTHER_GROUP.to_string(), other.finish());
            }
        }
        SummaryReport {
            total: total.finish(),
            by: self.by,
            groups,
            since: self.since,
            until: self.until,
            folded_groups: folded,
        }
    }

    /// The time series (for an aggregator made by
    /// [`Aggregator::timeseries`]): every step from the window's start (or
    /// the first record) to its end (or the last record).
    pub fn finish_timeseries(self) -> Result<Timeseries, QueryError> {
        let step = self.step_us.unwrap_or(3_600_000_000);
        let first = self
            .since
            .map(|t| t.timestamp_micros().div_euclid(step))
            .or_else(|| self.slots.iter().map(|s| s.0).min());
        let last = self
            .until
            .map(|t| (t.timestamp_micros() - 1).div_euclid(step))
            .or_else(|| self.slots.iter().map(|s| s.0).max());
        let (first, last) = match (first, last) {
            (Some(a), Some(b)) if b >= a => (a, b),
            _ => (0, -1),
        };
        let n = usize::try_from(last - first + 1).unwrap_or(0);
        if n > self.limits.max_points {
            return Err(self.too_many_points());
        }
        let mut counts = vec![0u64; self.names.len()];
        for (_, g) in &self.slots {
            for (i, b) in g.iter().enumerate() {
                counts[i] += b.count();
            }
        }
        let (keep, folded) = if self.by.is_some() {
            self.kept(&counts)
        } else {
            (vec![false; self.names.len()], 0)
        };
        let empty = || SummaryBuilder::default().finish();
        let mut total = vec![empty(); n];
        let mut per: Vec<Option<Vec<Summary>>> = vec![None; self.names.len()];
        let mut other: Vec<Summary> = if folded > 0 { vec![empty(); n] } else { Vec::new() };
        for (b, groups) in self.slots {
            let Some(at) = usize::try_from(b - first).ok().filter(|&i| i < n) else {
                continue;
            };
            let mut all = SummaryBuilder::default();
            let mut folded_here = SummaryBuilder::default();
            for (i, g) in groups.into_iter().enumerate() {
                all.merge(&g);
                if keep[i] {
                    per[i].get_or_insert_with(|| vec![empty(); n])[at] = g.finish();
                } else if folded > 0 {
                    folded_here.merge(&g);
                }
            }
            total[at] = all.finish();
            if folded > 0 {
                other[at] = folded_here.finish();
            }
        }
        let mut groups: BTreeMap<String, Vec<Summary>> = per
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (self.names[i].clone(), v)))
            .collect();
        if folded > 0 {
            groups.insert(OTHER_GROUP.to_string(), other);
        }
        let step_s = step / 1_000_000;
        Ok(Timeseries {
            step_seconds: u64::try_from(step_s).unwrap_or(1),
            by: self.by,
            buckets: (0..n as i64).map(|i| (first + i) * step_s).collect(),
            total,
            groups,
            since: self.since,
            until: self.until,
            folded_groups: folded,
        })
    }
}

/// Answer `q` over records in memory (what [`crate::sinks::MemorySink`]
/// does; also handy in tests).
pub fn summarize<'a>(
    records: impl IntoIterator<Item = &'a AgentMetrics>,
    q: &StatsQuery,
) -> Result<SummaryReport, QueryError> {
    q.validate()?;
    let mut agg = Aggregator::summary(q);
    for m in records.into_iter().filter(|m| q.matches(m)) {
        let key = q.by.as_ref().map_or("", |k| k.key_of(m));
        agg.push(key, m.timestamp.timestamp_micros(), Sample::from(m))?;
    }
    Ok(agg.finish_summary())
}

/// The time series of `q` over records in memory.
pub fn timeseries<'a>(
    records: impl IntoIterator<Item = &'a AgentMetrics>,
    q: &StatsQuery,
) -> Result<Timeseries, QueryError> {
    q.validate()?;
    let mut agg = Aggregator::timeseries(q, q.effective_step(Utc::now()));
    for m in records.into_iter().filter(|m| q.matches(m)) {
        let key = q.by.as_ref().map_or("", |k| k.key_of(m));
        agg.push(key, m.timestamp.timestamp_micros(), Sample::from(m))?;
    }
    agg.finish_timeseries()
}
