//! Answering a [`StatsQuery`] from the hourly rollup (see `rollup.rs`):
//! the complete hours of the window from the rollup, the partial hours at
//! its edges from the rows, merged into one [`Aggregator`].
//!
//! The hourly rollup answers when every key the query groups or filters by
//! is one it keeps; the tag rollup when one tag key appears among them (a
//! key's `(none)` group is the hourly rollup's calls minus those with the
//! key, per hour and group); and, for a time series, when the step is a whole
//! number of hours (steps are aligned to multiples of themselves since the
//! epoch, so each hour then falls in exactly one step). Otherwise, and when
//! a stale hour (rows deleted or changed outside the sink, not yet
//! rebuilt) touches the window, the caller scans the rows.

use std::collections::HashMap;

use chrono::DateTime;
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;
use steer_metrics::query::{Aggregator, GroupKey, QueryError, StatsQuery, NONE_GROUP};
use steer_metrics::summary::Totals;

use super::{read_rows, select_sql, store_err};
use crate::error::SqliteError;
use crate::rollup::{self, HOUR_US, TOTALS_COLUMNS};

/// The rollup column of a group key (`None`: a tag, or a key this version
/// does not know).
fn column(key: &GroupKey) -> Option<&'static str> {
    match key {
        GroupKey::Model => Some("model"),
        GroupKey::Provider => Some("provider"),
        GroupKey::Error => Some("error_class"),
        GroupKey::FinishReason => Some("finish_reason"),
        _ => None,
    }
}

/// Which rollup table answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `<table>_hourly`: keys are model, provider, error, finish reason.
    Main,
    /// `<table>_hourly_tags` for this tag key: the only tag key of the
    /// query; its other keys are the hourly rollup's.
    Tag(String),
}

/// How a query splits between the rollup and the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    source: Source,
    /// Unix hours `[from, to)` read from the rollup (`None`: unbounded).
    hours: (Option<i64>, Option<i64>),
    /// Microsecond ranges `[a, b)` read from the rows.
    edges: Vec<(i64, i64)>,
}

/// The rollup table that can answer for these keys, if one can (`tags`:
/// the file has the tag rollup): the hourly rollup for its own keys; the
/// tag rollup when one tag key appears, with or without the others.
fn source<'a>(keys: impl Iterator<Item = &'a GroupKey>, tags: bool) -> Option<Source> {
    let mut tag = None;
    for k in keys {
        match k {
            k if column(k).is_some() => {}
            GroupKey::Tag(t) if tag.is_none_or(|first| first == t) => tag = Some(t),
            _ => return None,
        }
    }
    match tag {
        None => Some(Source::Main),
        Some(t) => tags.then(|| Source::Tag(t.clone())),
    }
}

/// The plan for `q` (a time series when `step_us` is set), `None` when the
/// rollup cannot answer it (`tags`: the file has the tag rollup).
pub(crate) fn plan(q: &StatsQuery, step_us: Option<i64>, tags: bool) -> Option<Plan> {
    let source = source(q.by.iter().chain(q.filters.iter().map(|f| &f.key)), tags)?;
    if step_us.is_some_and(|s| s % HOUR_US != 0) {
        return None;
    }
    let since = q.since.map(|t| t.timestamp_micros());
    let until = q.until.map(|t| t.timestamp_micros());
    // The first and the end of the complete hours.
    let from = since.map(|s| s.div_euclid(HOUR_US) + i64::from(s.rem_euclid(HOUR_US) != 0));
    let to = until.map(|u| u.div_euclid(HOUR_US));
    if let (Some(a), Some(b)) = (from, to) {
        if a >= b {
            return None; // no complete hour: the rows answer alone
        }
    }
    let mut edges = Vec::new();
    if let (Some(s), Some(a)) = (since, from) {
        if s < a * HOUR_US {
            edges.push((s, a * HOUR_US));
        }
    }
    if let (Some(u), Some(b)) = (until, to) {
        if b * HOUR_US < u {
            edges.push((b * HOUR_US, u));
        }
    }
    Some(Plan {
        source,
        hours: (from, to),
        edges,
    })
}

/// `WHERE` conditions on the rollup's hour, and their parameters.
fn hour_conditions(hours: (Option<i64>, Option<i64>)) -> (Vec<String>, Vec<Value>) {
    let (mut conds, mut params) = (Vec::new(), Vec::new());
    if let Some(a) = hours.0 {
        params.push(Value::Integer(a));
        conds.push(format!("hour >= ?{}", params.len()));
    }
    if let Some(b) = hours.1 {
        params.push(Value::Integer(b));
        conds.push(format!("hour < ?{}", params.len()));
    }
    (conds, params)
}

fn where_sql(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

/// Run `plan` for `q` into `agg` in one read transaction (the rollup and
/// the edge rows from the same snapshot). `Ok(false)`: a stale hour
/// touches the window; nothing was added and the rows must be scanned.
pub(crate) fn run(
    conn: &Connection,
    table: &str,
    q: &StatsQuery,
    plan: &Plan,
    agg: &mut Aggregator,
) -> Result<bool, QueryError> {
    let sqlite = |context: &'static str| move |e| store_err(SqliteError::sqlite(context, e));
    let interrupted = |e: rusqlite::Error| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::OperationInterrupted => {
            QueryError::Timeout(q.limits.timeout)
        }
        e => sqlite("reading the hourly rollup")(e),
    };
    let tx = conn
        .unchecked_transaction()
        .map_err(sqlite("starting the read transaction"))?;
    let (conds, params) = hour_conditions(plan.hours);
    let stale: bool = tx
        .query_row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM \"{}\"{})",
                rollup::stale(table),
                where_sql(&conds)
            ),
            rusqlite::params_from_iter(params.iter()),
            |r| r.get(0),
        )
        .map_err(interrupted)?;
    if stale {
        tracing::debug!(
            table,
            "sqlite store: stale rollup hours in the window; scanning the rows"
        );
        return Ok(false);
    }
    // Rows written by something other than the sink (a bulk `INSERT`, an
    // import) reach no trigger and no rollup: if the window's complete hours
    // hold another number of rows than the rollup counts, the rollup is not
    // the truth for it and the rows answer. One count over the time index.
    let (mut ts_conds, mut ts_params) = (Vec::new(), Vec::new());
    if let Some(a) = plan.hours.0 {
        ts_params.push(Value::Integer(a.saturating_mul(HOUR_US)));
        ts_conds.push(format!("ts >= ?{}", ts_params.len()));
    }
    if let Some(b) = plan.hours.1 {
        ts_params.push(Value::Integer(b.saturating_mul(HOUR_US)));
        ts_conds.push(format!("ts < ?{}", ts_params.len()));
    }
    let stored: i64 = tx
        .query_row(
            &format!("SELECT count(*) FROM \"{table}\"{}", where_sql(&ts_conds)),
            rusqlite::params_from_iter(ts_params.iter()),
            |r| r.get(0),
        )
        .map_err(interrupted)?;
    let rolled: i64 = tx
        .query_row(
            &format!(
                "SELECT coalesce(sum(calls), 0) FROM \"{}\"{}",
                rollup::hourly(table),
                where_sql(&conds)
            ),
            rusqlite::params_from_iter(params.iter()),
            |r| r.get(0),
        )
        .map_err(interrupted)?;
    if stored != rolled {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                table,
                rows = stored,
                rollup = rolled,
                "sqlite store: rows were written outside steer's sink (not in the hourly rollup); \
                 queries scan the rows until the sink opens the store again and rebuilds them"
            );
        });
        return Ok(false);
    }
    let added = match &plan.source {
        Source::Main => add_main(&tx, table, q, conds, params, agg),
        Source::Tag(key) => add_tag(&tx, table, q, key, conds, params, agg),
    };
    match added {
        Ok(()) => {}
        Err(AddError::Sql(e)) => return Err(interrupted(e)),
        Err(AddError::Query(e)) => return Err(e),
    }
    for &(a, b) in &plan.edges {
        let mut sub = q.clone();
        sub.since = DateTime::from_timestamp_micros(a);
        sub.until = DateTime::from_timestamp_micros(b);
        let (sql, params) = select_sql(table, &sub);
        read_rows(&tx, &sql, params, agg, q.limits.timeout)?;
    }
    tx.commit().map_err(sqlite("ending the read transaction"))?;
    Ok(true)
}

/// A rollup row's error: SQLite's, or the aggregator's (row limit).
enum AddError {
    Sql(rusqlite::Error),
    Query(QueryError),
}

impl From<rusqlite::Error> for AddError {
    fn from(e: rusqlite::Error) -> Self {
        AddError::Sql(e)
    }
}

impl From<QueryError> for AddError {
    fn from(e: QueryError) -> Self {
        AddError::Query(e)
    }
}

/// The text of a key column (`(none)` when not text).
fn text<'a>(v: rusqlite::Result<ValueRef<'a>>) -> &'a str {
    match v {
        Ok(ValueRef::Text(t)) => std::str::from_utf8(t).unwrap_or(NONE_GROUP),
        _ => NONE_GROUP,
    }
}

/// Add a condition to `conds` for each of `q`'s filters on a key the
/// rollups keep as a column; returns the values of its filters on a tag
/// (the plan allows one tag key).
fn filter_conditions<'q>(
    q: &'q StatsQuery,
    conds: &mut Vec<String>,
    params: &mut Vec<Value>,
) -> Vec<&'q str> {
    let mut tag_values = Vec::new();
    for f in &q.filters {
        match column(&f.key) {
            Some(col) => {
                params.push(Value::Text(f.value.clone()));
                conds.push(format!("{col} = ?{}", params.len()));
            }
            None => tag_values.push(f.value.as_str()),
        }
    }
    tag_values
}

/// Add `<table>_hourly`'s rows for the hours `conds` select and `q`'s
/// filters, grouped by `q`'s key.
fn add_main(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    q: &StatsQuery,
    mut conds: Vec<String>,
    mut params: Vec<Value>,
    agg: &mut Aggregator,
) -> Result<(), AddError> {
    // `plan` chose this table: no filter is on a tag.
    filter_conditions(q, &mut conds, &mut params);
    let key = q.by.as_ref().and_then(column).unwrap_or("''");
    let sql = format!(
        "SELECT hour, {key}, {TOTALS_COLUMNS} FROM \"{}\"{}",
        rollup::hourly(table),
        where_sql(&conds)
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    while let Some(r) = rows.next()? {
        let hour: i64 = r.get(0)?;
        let (totals, latency, ttft) = rollup::read_part(r, 2);
        agg.push_totals(
            text(r.get_ref(1)),
            hour.saturating_mul(HOUR_US),
            &totals,
            latency,
            ttft,
        )?;
    }
    Ok(())
}

/// One hour's totals and values, read from rollup rows.
#[derive(Default)]
struct HourValues {
    totals: Totals,
    latency: Vec<f64>,
    ttft: Vec<f64>,
}

impl HourValues {
    fn add(&mut self, r: &rusqlite::Row<'_>) {
        let (totals, latency, ttft) = rollup::read_part(r, 0);
        self.totals.merge(&totals);
        self.latency.extend(latency);
        self.ttft.extend(ttft);
    }
}

/// The values of `all` not in `some` (multisets: each value of `some`
/// removes one equal value of `all`; bit-exact, as both were stored from
/// the same calls).
fn without(mut all: Vec<f64>, mut some: Vec<f64>) -> Vec<f64> {
    all.sort_unstable_by(f64::total_cmp);
    some.sort_unstable_by(f64::total_cmp);
    let mut out = Vec::with_capacity(all.len().saturating_sub(some.len()));
    let mut j = 0;
    for v in all {
        while j < some.len() && some[j].total_cmp(&v).is_lt() {
            j += 1;
        }
        if j < some.len() && some[j].total_cmp(&v).is_eq() {
            j += 1;
        } else {
            out.push(v);
        }
    }
    out
}

/// Add `<table>_hourly_tags`'s rows of tag `key` for the hours `conds`
/// select and `q`'s filters (on `key`'s value, and on the other keys),
/// grouped by `q`'s key; and the calls without `key` (its `(none)` group:
/// the hourly rollup's rows minus the tag rollup's, per hour and group)
/// unless a filter on the value excludes them.
fn add_tag(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    q: &StatsQuery,
    key: &str,
    mut conds: Vec<String>,
    mut params: Vec<Value>,
    agg: &mut Aggregator,
) -> Result<(), AddError> {
    let (main, tags) = (rollup::hourly(table), rollup::hourly_tags(table));
    // Filters on the other keys select rows of both tables alike; filters
    // on the tag's value are checked here.
    let values = filter_conditions(q, &mut conds, &mut params);
    let keep = |value: &str| values.iter().all(|v| *v == value);
    // What a row is grouped by: the tag's value, one of the other keys, or nothing.
    let by_tag = matches!(q.by, Some(GroupKey::Tag(_)));
    let group = q.by.as_ref().and_then(column).unwrap_or("''");
    let (main_conds, main_params) = (conds.clone(), params.clone());
    params.push(Value::Text(key.to_string()));
    conds.push(format!("tag_key = ?{}", params.len()));

    // The tagged rows, each to its group.
    {
        let sql = format!(
            "SELECT hour, {group}, tag_value, {TOTALS_COLUMNS} FROM \"{tags}\"{}",
            where_sql(&conds)
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        while let Some(r) = rows.next()? {
            let value = text(r.get_ref(2));
            if !keep(value) {
                continue;
            }
            let hour: i64 = r.get(0)?;
            let (totals, latency, ttft) = rollup::read_part(r, 3);
            agg.push_totals(
                if by_tag { value } else { text(r.get_ref(1)) },
                hour.saturating_mul(HOUR_US),
                &totals,
                latency,
                ttft,
            )?;
        }
    }
    if !keep(NONE_GROUP) {
        return Ok(());
    }
    // The calls without the key: per hour and group, the calls of the
    // hourly rollup minus the tagged ones, where there are fewer tagged.
    let counts =
        |table: &str, conds: &[String], params: &[Value]| -> rusqlite::Result<HashMap<(i64, String), u64>> {
            let sql = format!(
                "SELECT hour, {group}, sum(calls) FROM \"{table}\"{} GROUP BY 1, 2",
                where_sql(conds)
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
                Ok((
                    (r.get::<_, i64>(0)?, text(r.get_ref(1)).to_string()),
                    u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                ))
            })?;
            rows.collect()
        };
    let all = counts(&main, &main_conds, &main_params)?;
    let tagged = counts(&tags, &conds, &params)?;
    let mut short: Vec<(i64, String)> = all
        .into_iter()
        .filter(|(k, n)| tagged.get(k).copied().unwrap_or(0) < *n)
        .map(|(k, _)| k)
        .collect();
    short.sort_unstable();
    let read = |table: &str,
                conds: &[String],
                params: &[Value],
                hour: i64,
                g: &str|
     -> Result<HourValues, AddError> {
        let (mut conds, mut params) = (conds.to_vec(), params.to_vec());
        params.push(Value::Integer(hour));
        conds.push(format!("hour = ?{}", params.len()));
        params.push(Value::Text(g.to_string()));
        conds.push(format!("{group} = ?{}", params.len()));
        let sql = format!("SELECT {TOTALS_COLUMNS} FROM \"{table}\"{}", where_sql(&conds));
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = HourValues::default();
        while let Some(r) = rows.next()? {
            out.add(r);
        }
        Ok(out)
    };
    for (hour, g) in short {
        let all = read(&main, &main_conds, &main_params, hour, &g)?;
        let with = read(&tags, &conds, &params, hour, &g)?;
        agg.push_totals(
            if by_tag { NONE_GROUP } else { &g },
            hour.saturating_mul(HOUR_US),
            &all.totals.minus(&with.totals),
            without(all.latency, with.latency),
            without(all.ttft, with.ttft),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(us: i64) -> DateTime<chrono::Utc> {
        DateTime::from_timestamp_micros(us).unwrap()
    }

    #[test]
    fn complete_hours_from_the_rollup_and_edges_from_the_rows() {
        let h = HOUR_US;
        let q = StatsQuery::new().since(at(10 * h + 5)).until(at(20 * h + 7));
        let p = plan(&q, None, true).unwrap();
        assert_eq!(p.hours, (Some(11), Some(20)));
        assert_eq!(p.edges, [(10 * h + 5, 11 * h), (20 * h, 20 * h + 7)]);
        // Aligned: no edges.
        let q = StatsQuery::new().since(at(10 * h)).until(at(20 * h));
        assert_eq!(plan(&q, Some(6 * h), true).unwrap().edges, []);
        // Unbounded.
        assert_eq!(plan(&StatsQuery::new(), None, true).unwrap().hours, (None, None));
        let q = StatsQuery::new().since(at(-h - 1));
        assert_eq!(plan(&q, None, true).unwrap().hours, (Some(-1), None));
    }

    #[test]
    fn what_the_rollup_cannot_answer() {
        let h = HOUR_US;
        // Less than one complete hour.
        let q = StatsQuery::new().since(at(10 * h + 5)).until(at(11 * h + 7));
        assert!(plan(&q, None, true).is_none());
        // A tag, as key or filter, without the tag rollup (a v3 file).
        let by_tag = StatsQuery::new().by("tag:team".parse().unwrap());
        assert!(plan(&by_tag, None, false).is_none());
        assert!(plan(&StatsQuery::new().filter("tag:a=b".parse().unwrap()), None, false).is_none());
        // With it: one tag key, not two, nor a tag with another key.
        assert_eq!(
            plan(&by_tag.clone().filter("tag:team=x".parse().unwrap()), None, true)
                .unwrap()
                .source,
            Source::Tag("team".into())
        );
        assert!(plan(&by_tag.clone().filter("tag:app=x".parse().unwrap()), None, true).is_none());
        assert_eq!(
            plan(&by_tag.clone().filter("model=x".parse().unwrap()), None, true)
                .unwrap()
                .source,
            Source::Tag("team".into())
        );
        let by_model = StatsQuery::new()
            .by(GroupKey::Model)
            .filter("tag:team=x".parse().unwrap());
        assert_eq!(
            plan(&by_model, None, true).unwrap().source,
            Source::Tag("team".into())
        );
        assert_eq!(
            plan(&StatsQuery::new().by(GroupKey::Model), None, true)
                .unwrap()
                .source,
            Source::Main
        );
        // A step that is not whole hours.
        assert!(plan(&StatsQuery::new(), Some(h / 2), true).is_none());
        assert!(plan(&StatsQuery::new(), Some(h * 3 / 2), true).is_none());
        assert!(plan(&StatsQuery::new(), Some(3 * h), true).is_some());
    }

    #[test]
    fn values_removed_as_a_multiset() {
        let got = without(vec![3.0, 1.0, 2.0, 1.0, f64::MAX], vec![1.0, f64::MAX, 7.0]);
        assert_eq!(got, [1.0, 2.0, 3.0]);
        assert_eq!(without(vec![0.5], vec![]), [0.5]);
        assert!(without(vec![], vec![1.0]).is_empty());
    }
}
