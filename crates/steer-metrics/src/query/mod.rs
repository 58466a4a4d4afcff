//! One query model for every store: what `steer stats`, `steer dashboard`
//! and its JSON API ask, and what the in-memory, SQLite and PostgreSQL
//! stores answer through the [`SummaryStore`] trait.
//!
//! A [`StatsQuery`] is a time window (`since` inclusive, `until` exclusive),
//! optional equality [`Filter`]s, an optional [`GroupKey`] to break the
//! numbers down by (`model`, `provider`, `error`, `finish_reason`,
//! `tag:KEY`), an optional step for time series, and [`QueryLimits`] that
//! bound what one query may cost (rows read, groups and points returned,
//! time spent).
//!
//! The answers, [`SummaryReport`] and [`Timeseries`], carry
//! [`Summary`] values: the numbers mean exactly what they mean everywhere
//! else (percentiles are `percentile_cont`, unknown costs are counted, not
//! summed as 0). `SummaryReport` serializes like `steer stats --format
//! json` (`total`, `by`, `groups`).
//!
//! Group keys of records without a value: `none` for the error class of a
//! successful call (as `steer stats --by error` always showed), `(none)` for
//! a missing finish reason or tag. Groups beyond
//! [`QueryLimits::max_groups`] (the fewest calls first) are folded into one
//! group named [`OTHER_GROUP`], whose numbers are exact.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::record::AgentMetrics;
use crate::summary::{Sample, Summary, SummaryBuilder, Totals};

/// The group of records that have no value for the key (a missing tag or
/// finish reason).
pub const NONE_GROUP: &str = "(none)";
/// The group key of successful calls when grouping by error class.
pub const NO_ERROR: &str = "none";
/// The group that holds every group beyond [`QueryLimits::max_groups`].
pub const OTHER_GROUP: &str = "(other)";
/// Longest tag key accepted in a query.
pub const MAX_TAG_KEY_LEN: usize = 128;

/// What to break numbers down by (and what a [`Filter`] compares).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GroupKey {
    /// The requested model.
    Model,
    /// The provider.
    Provider,
    /// The error class ([`NO_ERROR`] for successful calls).
    Error,
    /// The provider's finish reason ([`NONE_GROUP`] when absent).
    FinishReason,
    /// The value of a record tag ([`NONE_GROUP`] when the record lacks it).
    Tag(String),
}

impl GroupKey {
    /// The key of a record.
    pub fn key_of<'a>(&self, m: &'a AgentMetrics) -> &'a str {
        match self {
            GroupKey::Model => &m.model,
            GroupKey::Provider => &m.provider,
            GroupKey::Error => m.error_class.map_or(NO_ERROR, |c| c.as_str()),
            GroupKey::FinishReason => m.finish_reason.as_deref().unwrap_or(NONE_GROUP),
            GroupKey::Tag(k) => m.tags.get(k).map_or(NONE_GROUP, String::as_str),
        }
    }

    /// The tag key, for `tag:KEY`.
    pub fn tag(&self) -> Option<&str> {
        match self {
            GroupKey::Tag(k) => Some(k),
            _ => None,
        }
    }

    /// A tag key usable in a query: 1 to [`MAX_TAG_KEY_LEN`] bytes of ASCII
    /// letters, digits, `_`, `-`, `.` and `/` (so it can be used in a JSON
    /// path and a URL without quoting).
    pub fn check_tag_key(key: &str) -> Result<(), QueryError> {
        let ok = !key.is_empty()
            && key.len() <= MAX_TAG_KEY_LEN
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b));
        if ok {
            Ok(())
        } else {
            Err(QueryError::Invalid(format!(
                "tag key `{}` must be 1 to {MAX_TAG_KEY_LEN} letters, digits, `_`, `-`, `.` or `/`",
                crate::redact::truncate(key.to_string(), 64)
            )))
        }
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupKey::Model => f.write_str("model"),
            GroupKey::Provider => f.write_str("provider"),
            // The name `steer stats --format json` always used.
            GroupKey::Error => f.write_str("error_class"),
            GroupKey::FinishReason => f.write_str("finish_reason"),
            GroupKey::Tag(k) => write!(f, "tag:{k}"),
        }
    }
}

impl FromStr for GroupKey {
    type Err = QueryError;
    /// `model`, `provider`, `error` (or `error_class`), `finish_reason`,
    /// `tag:KEY`.
    fn from_str(s: &str) -> Result<Self, QueryError> {
        match s {
            "model" => Ok(GroupKey::Model),
            "provider" => Ok(GroupKey::Provider),
            "error" | "error_class" => Ok(GroupKey::Error),
            "finish_reason" => Ok(GroupKey::FinishReason),
            other => match other.strip_prefix("tag:") {
                Some(k) => {
                    GroupKey::check_tag_key(k)?;
                    Ok(GroupKey::Tag(k.to_string()))
                }
                None => Err(QueryError::Invalid(format!(
                    "cannot group by `{}`: use model, provider, error, finish_reason or tag:KEY",
                    crate::redact::truncate(other.to_string(), 64)
                ))),
            },
        }
    }
}

impl Serialize for GroupKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GroupKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Keep only records whose `key` is `value` (the same key a breakdown
/// shows, so clicking a group filters on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// What to compare.
    pub key: GroupKey,
    /// The group key value to keep.
    pub value: String,
}

impl Filter {
    /// Whether `m` passes.
    pub fn matches(&self, m: &AgentMetrics) -> bool {
        self.key.key_of(m) == self.value
    }
}

impl FromStr for Filter {
    type Err = QueryError;
    /// `KEY=VALUE`, e.g. `model=gpt-4o`, `error=rate_limit`, `tag:team=search`.
    fn from_str(s: &str) -> Result<Self, QueryError> {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            QueryError::Invalid(format!(
                "filter `{}` is not KEY=VALUE (e.g. model=gpt-4o, tag:team=search)",
                crate::redact::truncate(s.to_string(), 64)
            ))
        })?;
        Ok(Filter {
            key: k.parse()?,
            value: v.to_string(),
        })
    }
}

/// Bounds on what one query may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryLimits {
    /// Most records a query may read (default 20 000 000).
    pub max_rows: u64,
    /// Most groups returned; the rest are folded into [`OTHER_GROUP`]
    /// (default 50).
    pub max_groups: usize,
    /// Most time-series points (steps) per series (default 2 000).
    pub max_points: usize,
    /// Longest a query may run before it is cancelled (default 30 s).
    pub timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_rows: 20_000_000,
            max_groups: 50,
            max_points: 2_000,
            timeout: Duration::from_secs(30),
        }
    }
}

impl QueryLimits {
    /// Set [`max_rows`](Self::max_rows) (at least 1).
    #[must_use]
    pub fn max_rows(mut self, n: u64) -> Self {
        self.max_rows = n.max(1);
        self
    }
    /// Set [`max_groups`](Self::max_groups) (at least 1).
    #[must_use]
    pub fn max_groups(mut self, n: usize) -> Self {
        self.max_groups = n.max(1);
        self
    }
    /// Set [`max_points`](Self::max_points) (at least 1).
    #[must_use]
    pub fn max_points(mut self, n: usize) -> Self {
        self.max_points = n.max(1);
        self
    }
    /// Set [`timeout`](Self::timeout) (at least 1 ms).
    #[must_use]
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t.max(Duration::from_millis(1));
        self
    }
}

/// A question to a [`SummaryStore`]. Build with [`StatsQuery::new`] and the
/// setters; every condition that is set must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[must_use]
pub struct StatsQuery {
    /// Records that started at or after this time (all when `None`).
    pub since: Option<DateTime<Utc>>,
    /// Records that started before this time (all when `None`).
    pub until: Option<DateTime<Utc>>,
    /// Break down by this key (`None`: totals only).
    pub by: Option<GroupKey>,
    /// Keep only records matching every filter.
    pub filters: Vec<Filter>,
    /// Time-series step; `None` picks one from the window
    /// ([`auto_step`]).
    pub step: Option<Duration>,
    /// Bounds.
    pub limits: QueryLimits,
}

impl StatsQuery {
    /// Every record, no breakdown, default limits.
    pub fn new() -> Self {
        Self::default()
    }
    /// Records that started at or after `t`.
    pub fn since(mut self, t: DateTime<Utc>) -> Self {
        self.since = Some(t);
        self
    }
    /// Records that started within `window` before now.
    pub fn last(self, window: Duration) -> Self {
        let w = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let t = Utc::now()
            .checked_sub_signed(w)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.since(t)
    }
    /// Records that started before `t`.
    pub fn until(mut self, t: DateTime<Utc>) -> Self {
        self.until = Some(t);
        self
    }
    /// Break down by `key`.
    pub fn by(mut self, key: GroupKey) -> Self {
        self.by = Some(key);
        self
    }
    /// Add a filter.
    pub fn filter(mut self, f: Filter) -> Self {
        self.filters.push(f);
        self
    }
    /// Time-series step.
    pub fn step(mut self, step: Duration) -> Self {
        self.step = Some(step);
        self
    }
    /// Bounds.
    pub fn limits(mut self, limits: QueryLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether `m` is selected (window and filters), at the microsecond
    /// resolution the SQL stores keep.
    pub fn matches(&self, m: &AgentMetrics) -> bool {
        let ts = m.timestamp.timestamp_micros();
        self.since.is_none_or(|t| ts >= t.timestamp_micros())
            && self.until.is_none_or(|t| ts < t.timestamp_micros())
            && self.filters.iter().all(|f| f.matches(m))
    }

    /// Check the query before running it: tag keys, a window that is not
    /// empty or reversed, and a step that gives at most
    /// [`QueryLimits::max_points`] points.
    pub fn validate(&self) -> Result<(), QueryError> {
        for k in self.filters.iter().map(|f| &f.key).chain(self.by.as_ref()) {
            if let Some(t) = k.tag() {
                GroupKey::check_tag_key(t)?;
            }
        }
        if let (Some(a), Some(b)) = (self.since, self.until) {
            if b <= a {
                return Err(QueryError::Invalid("`until` must be after `since`".into()));
            }
        }
        if let Some(step) = self.step {
            if step < Duration::from_secs(1) {
                return Err(QueryError::Invalid("the step must be at least 1s".into()));
            }
            if let Some(since) = self.since {
                let until = self.until.unwrap_or_else(Utc::now);
                let span = (until - since).num_seconds().max(0) as u128;
                let points = span / u128::from(step.as_secs().max(1)) + 1;
                if points > self.limits.max_points as u128 {
                    return Err(QueryError::TooLarge(format!(
                        "{points} steps of {} exceed the limit of {} points: choose a longer step or a shorter window",
                        humanize(step),
                        self.limits.max_points
                    )));
                }
            }
        }
        Ok(())
    }

    /// The step to use for a time series: the one set, else [`auto_step`]
    /// of the window (with `now` as the end when `until` is not set, and the
    /// last day when `since` is not set either).
    pub fn effective_step(&self, now: DateTime<Utc>) -> Duration {
        if let Some(s) = self.step {
            return s.max(Duration::from_secs(1));
        }
        let until = self.until.unwrap_or(now);
        let since = self.since.unwrap_or(until - chrono::Duration::days(1));
        auto_step((until - since).to_std().unwrap_or(Duration::from_secs(3600)))
    }
}

/// Steps [`auto_step`] chooses from.
pub const STEPS: [u64; 13] = [
    10,
    30,
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
    7 * 86_400,
    30 * 86_400,
];

/// A step giving at most about 120 points over `window`: 15m → 10s,
/// 1h → 30s, 6h → 5m, 24h → 15m, 7d → 3h, 30d → 6h.
pub fn auto_step(window: Duration) -> Duration {
    let secs = window.as_secs().max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| secs / s <= 120)
        .unwrap_or(STEPS[STEPS.len() - 1]);
    Duration::from_secs(step)
}

/// `90s` → `1m30s`-style text for messages (`1h`, `1d`, `5m`).
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query itself is wrong (bad key, window or step).
    #[error("invalid query: {0}")]
    Invalid(String),
    /// The query would read or return more than its limits allow.
    #[error("query too large: {0}")]
    TooLarge(String),
    /// The query ran longer than [`QueryLimits::timeout`].
    #[error("query cancelled after {0:?}")]
    Timeout(Duration),
    /// The store failed (unreachable, refused, corrupt).
    #[error("{message}")]
    Store {
        /// What went wrong (no secrets).
        message: String,
        /// Whether trying again later may work (connection lost).
        retryable: bool,
    },
}

impl QueryError {
    /// A store failure.
    pub fn store(message: impl fmt::Display, retryable: bool) -> Self {
        QueryError::Store {
            message: message.to_string(),
            retryable,
        }
    }
}

/// Summary of the selected records, overall and per group: the JSON shape
/// of `steer stats --format json` (`total`, `by`, `groups`), plus the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SummaryReport {
    /// Over every selected record.
    pub total: Summary,
    /// What `groups` is keyed by (`null`: no breakdown).
    pub by: Option<GroupKey>,
    /// Per group, at most [`QueryLimits::max_groups`] plus [`OTHER_GROUP`].
    pub groups: BTreeMap<String, Summary>,
    /// The window's start, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The window's end, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// How many groups were folded into [`OTHER_GROUP`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub folded_groups: u64,
}

impl SummaryReport {
    /// A report from summaries computed elsewhere (a store that aggregates
    /// in its database).
    pub fn new(
        q: &StatsQuery,
        total: Summary,
        groups: BTreeMap<String, Summary>,
        folded_groups: u64,
    ) -> Self {
        SummaryReport {
            total,
            by: q.by.clone(),
            groups,
            since: q.since,
            until: q.until,
            folded_groups,
        }
    }
}

impl Timeseries {
    /// A time series from per-bucket summaries computed elsewhere (bucket
    /// number = start / step, as [`Aggregator`] numbers them): fills the
    /// steps without records like [`Aggregator::finish_timeseries`].
    pub fn from_buckets(
        q: &StatsQuery,
        step: Duration,
        total: BTreeMap<i64, Summary>,
        groups: BTreeMap<String, BTreeMap<i64, Summary>>,
        folded_groups: u64,
    ) -> Result<Self, QueryError> {
        let step_s = i64::try_from(step.as_secs()).unwrap_or(i64::MAX).max(1);
        let step_us = step_s.saturating_mul(1_000_000);
        let first = q
            .since
            .map(|t| t.timestamp_micros().div_euclid(step_us))
            .or_else(|| total.keys().next().copied());
        let last = q
            .until
            .map(|t| (t.timestamp_micros() - 1).div_euclid(step_us))
            .or_else(|| total.keys().next_back().copied());
        let (first, last) = match (first, last) {
            (Some(a), Some(b)) if b >= a => (a, b),
            _ => (0, -1),
        };
        let n = usize::try_from(last - first + 1).unwrap_or(0);
        if n > q.limits.max_points {
            return Err(QueryError::TooLarge(format!(
                "more than {} steps: choose a longer step or a shorter window",
                q.limits.max_points
            )));
        }
        let dense = |m: BTreeMap<i64, Summary>| -> Vec<Summary> {
            let mut v = vec![SummaryBuilder::default().finish(); n];
            for (b, s) in m {
                if let Some(i) = usize::try_from(b - first).ok().filter(|&i| i < n) {
                    v[i] = s;
                }
            }
            v
        };
        Ok(Timeseries {
            step_seconds: u64::try_from(step_s).unwrap_or(1),
            by: q.by.clone(),
            buckets: (0..n as i64).map(|i| (first + i) * step_s).collect(),
            total: dense(total),
            groups: groups.into_iter().map(|(k, v)| (k, dense(v))).collect(),
            since: q.since,
            until: q.until,
            folded_groups,
        })
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Summaries per time step: `total[i]` and each `groups[name][i]` cover
/// `[buckets[i], buckets[i] + step_seconds)`. Buckets are aligned to
/// multiples of the step since the Unix epoch (a `1d` step starts at UTC
/// midnight); steps without records are present with `count` 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Timeseries {
    /// The step in seconds.
    pub step_seconds: u64,
    /// What `groups` is keyed by (`null`: totals only).
    pub by: Option<GroupKey>,
    /// Start of each step, Unix seconds, ascending.
    pub buckets: Vec<i64>,
    /// Over every selected record, per step.
    pub total: Vec<Summary>,
    /// Per group, per step (the same length as `buckets`).
    pub groups: BTreeMap<String, Vec<Summary>>,
    /// The window's start, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The window's end, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// How many groups were folded into [`OTHER_GROUP`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub folded_groups: u64,
}

/// A store that answers [`StatsQuery`]s: the in-memory sink, the SQLite
/// store and the PostgreSQL store implement it with the same numbers.
#[async_trait]
pub trait SummaryStore: Send + Sync {
    /// What is being read, for messages (`sqlite:PATH`, a redacted URL).
    fn describe(&self) -> String;

    /// Summary of the selected records, overall and per `q.by`.
    async fn summary(&self, q: &StatsQuery) -> Result<SummaryReport, QueryError>;

    /// Summaries per step (`q.step` or [`StatsQuery::effective_step`]),
    /// overall and per `q.by`.
    async fn timeseries(&self, q: &StatsQuery) -> Result<Timeseries, QueryError>;
}

#[async_trait]
impl<T: SummaryStore + ?Sized> SummaryStore for std::sync::Arc<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    async fn summary(&self, q: &StatsQuery) -> Result<SummaryReport, QueryError> {
        (**self).summary(q).await
    }
    async fn timeseries(&self, q: &StatsQuery) -> Result<Timeseries, QueryError> {
        (**self).timeseries(q).await
    }
}

#[async_trait]
impl<T: SummaryStore + ?Sized> SummaryStore for Box<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    async fn summary(&self, q: &StatsQuery) -> Result<SummaryReport, QueryError> {
        (**self).summary(q).await
    }
    async fn timeseries(&self, q: &StatsQuery) -> Result<Timeseries, QueryError> {
        (**self).timeseries(q).await
    }
}

mod aggregate;
#[cfg(test)]
mod tests;

pub use aggregate::{summarize, timeseries, Aggregator};
