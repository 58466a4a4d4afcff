//! Answering a [`StatsQuery`] from the hourly rollup (see `rollup.rs`):
//! the complete hours of the window from the rollup, the partial hours at
//! its edges from the rows, merged into one [`Aggregator`].
//!
//! The rollup answers when every key the query groups or filters by is one
//! it keeps (not a tag), and, for a time series, when the step is a whole
//! number of hours (steps are aligned to multiples of themselves since the
//! epoch, so each hour then falls in exactly one step). Otherwise, and when
//! a stale hour (rows deleted or changed outside the sink, not yet
//! rebuilt) touches the window, the caller scans the rows.

use chrono::DateTime;
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;
use steer_metrics::query::{Aggregator, GroupKey, QueryError, StatsQuery, NONE_GROUP};

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

/// How a query splits between the rollup and the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Unix hours `[from, to)` read from the rollup (`None`: unbounded).
    hours: (Option<i64>, Option<i64>),
    /// Microsecond ranges `[a, b)` read from the rows.
    edges: Vec<(i64, i64)>,
}

/// The plan for `q` (a time series when `step_us` is set), `None` when the
/// rollup cannot answer it.
pub(crate) fn plan(q: &StatsQuery, step_us: Option<i64>) -> Option<Plan> {
    let keys_ok =
        q.by.iter()
            .chain(q.filters.iter().map(|f| &f.key))
            .all(|k| column(k).is_some());
    if !keys_ok || step_us.is_some_and(|s| s % HOUR_US != 0) {
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
    let (mut conds, mut params) = (conds, params);
    for f in &q.filters {
        // `plan` checked every key.
        let col = column(&f.key).unwrap_or("NULL");
        params.push(Value::Text(f.value.clone()));
        conds.push(format!("{col} = ?{}", params.len()));
    }
    let key = q.by.as_ref().and_then(column).unwrap_or("''");
    let sql = format!(
        "SELECT hour, {key}, {TOTALS_COLUMNS} FROM \"{}\"{}",
        rollup::hourly(table),
        where_sql(&conds)
    );
    {
        let mut stmt = tx.prepare_cached(&sql).map_err(interrupted)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(interrupted)?;
        while let Some(r) = rows.next().map_err(interrupted)? {
            let hour: i64 = r.get(0).map_err(interrupted)?;
            let key = match r.get_ref(1) {
                Ok(ValueRef::Text(t)) => std::str::from_utf8(t).unwrap_or(NONE_GROUP),
                _ => NONE_GROUP,
            };
            let totals = rollup::read_totals(r, 2);
            let blob = |i: usize| r.get_ref(i).unwrap_or(ValueRef::Null);
            agg.push_totals(
                key,
                hour.saturating_mul(HOUR_US),
                &totals,
                rollup::values(blob(13)),
                rollup::values(blob(14)),
            )?;
        }
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
        let p = plan(&q, None).unwrap();
        assert_eq!(p.hours, (Some(11), Some(20)));
        assert_eq!(p.edges, [(10 * h + 5, 11 * h), (20 * h, 20 * h + 7)]);
        // Aligned: no edges.
        let q = StatsQuery::new().since(at(10 * h)).until(at(20 * h));
        assert_eq!(plan(&q, Some(6 * h)).unwrap().edges, []);
        // Unbounded.
        assert_eq!(plan(&StatsQuery::new(), None).unwrap().hours, (None, None));
        let q = StatsQuery::new().since(at(-h - 1));
        assert_eq!(plan(&q, None).unwrap().hours, (Some(-1), None));
    }

    #[test]
    fn what_the_rollup_cannot_answer() {
        let h = HOUR_US;
        // Less than one complete hour.
        let q = StatsQuery::new().since(at(10 * h + 5)).until(at(11 * h + 7));
        assert!(plan(&q, None).is_none());
        // A tag, as key or filter.
        assert!(plan(&StatsQuery::new().by("tag:team".parse().unwrap()), None).is_none());
        assert!(plan(&StatsQuery::new().filter("tag:a=b".parse().unwrap()), None).is_none());
        // A step that is not whole hours.
        assert!(plan(&StatsQuery::new(), Some(h / 2)).is_none());
        assert!(plan(&StatsQuery::new(), Some(h * 3 / 2)).is_none());
        assert!(plan(&StatsQuery::new(), Some(3 * h)).is_some());
    }
}
