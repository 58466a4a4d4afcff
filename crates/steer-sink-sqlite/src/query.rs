//! [`StatsQuery`] over an SQLite store: the [`SummaryStore`] of `steer
//! stats` and `steer dashboard`.
//!
//! One indexed range scan selects the summary inputs of the matching rows
//! (schema v3 adds a covering index on `ts` and those columns, so the scan
//! never visits the table unless a query groups or filters by a tag) and
//! the shared [`Aggregator`] turns them into the same [`Summary`] numbers
//! as every other store.
//!
//! Bounds: the aggregator stops after [`QueryLimits::max_rows`] rows, and
//! a query still running after [`QueryLimits::timeout`] is interrupted
//! (`sqlite3_interrupt`).
//!
//! [`Summary`]: steer_metrics::Summary
//! [`QueryLimits::max_rows`]: steer_metrics::query::QueryLimits
//! [`QueryLimits::timeout`]: steer_metrics::query::QueryLimits

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::types::{Value, ValueRef};
use steer_metrics::query::{
    Aggregator, GroupKey, QueryError, StatsQuery, SummaryReport, SummaryStore, Timeseries, NONE_GROUP,
    NO_ERROR,
};
use steer_metrics::summary::Sample;

use crate::error::SqliteError;
use crate::store::SqliteStore;

/// The SQL expression of a group key (tag keys are checked by
/// [`GroupKey::check_tag_key`] and bound as a parameter).
fn key_sql(key: &GroupKey, params: &mut Vec<Value>) -> String {
    match key {
        GroupKey::Model => "model".into(),
        GroupKey::Provider => "provider".into(),
        GroupKey::Error => format!("COALESCE(error_class, '{NO_ERROR}')"),
        GroupKey::FinishReason => format!("COALESCE(finish_reason, '{NONE_GROUP}')"),
        GroupKey::Tag(k) => {
            params.push(Value::Text(format!("$.\"{k}\"")));
            format!("COALESCE(json_extract(tags, ?{}), '{NONE_GROUP}')", params.len())
        }
        // A key this version does not know: select nothing rather than
        // everything.
        _ => "NULL".into(),
    }
}

/// `SELECT ts, key, <summary inputs> FROM table WHERE ...` and its
/// parameters.
pub(crate) fn select_sql(table: &str, q: &StatsQuery) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let key =
        q.by.as_ref()
            .map_or_else(|| "''".to_string(), |k| key_sql(k, &mut params));
    let mut conds = Vec::new();
    if let Some(t) = q.since {
        params.push(Value::Integer(t.timestamp_micros()));
        conds.push(format!("ts >= ?{}", params.len()));
    }
    if let Some(t) = q.until {
        params.push(Value::Integer(t.timestamp_micros()));
        conds.push(format!("ts < ?{}", params.len()));
    }
    for f in &q.filters {
        let expr = key_sql(&f.key, &mut params);
        params.push(Value::Text(f.value.clone()));
        conds.push(format!("{expr} = ?{}", params.len()));
    }
    let where_sql = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    (
        format!(
            "SELECT ts, {key}, latency_ms, ttft_ms, error_class IS NOT NULL, input_tokens, output_tokens, \
             cached_tokens, cost_usd, retries, reasoning_tokens, cache_write_tokens FROM \"{table}\"{where_sql}"
        ),
        params,
    )
}

fn int(v: ValueRef<'_>) -> u64 {
    match v {
        ValueRef::Integer(i) => u64::try_from(i).unwrap_or(0),
        _ => 0,
    }
}

fn float(v: ValueRef<'_>) -> Option<f64> {
    match v {
        ValueRef::Real(f) => Some(f),
        ValueRef::Integer(i) => Some(i as f64),
        _ => None,
    }
}

fn store_err(e: SqliteError) -> QueryError {
    QueryError::store(e, false)
}

impl SqliteStore {
    /// Run `q` into `agg` (blocking), interrupting the statement after the
    /// query's timeout.
    fn scan(&self, q: &StatsQuery, agg: &mut Aggregator) -> Result<(), QueryError> {
        q.validate()?;
        let (sql, params) = select_sql(self.table(), q);
        let conn = self.conn();
        let handle = conn.get_interrupt_handle();
        let timeout = q.limits.timeout;
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::Builder::new()
            .name("steer-sqlite-query-timeout".into())
            .spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
                    handle.interrupt();
                }
            })
            .map_err(|e| QueryError::store(format!("cannot start the query timer: {e}"), true))?;
        let result = (|| -> Result<(), QueryError> {
            let sqlite = |context: &'static str| move |e| store_err(SqliteError::sqlite(context, e));
            let mut stmt = conn
                .prepare_cached(&sql)
                .map_err(sqlite("preparing the stats query"))?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params))
                .map_err(sqlite("running the stats query"))?;
            loop {
                let row = match rows.next() {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == rusqlite::ErrorCode::OperationInterrupted =>
                    {
                        return Err(QueryError::Timeout(timeout));
                    }
                    Err(e) => return Err(sqlite("reading the stats rows")(e)),
                };
                let get = |i: usize| row.get_ref(i).unwrap_or(ValueRef::Null);
                let ts = match get(0) {
                    ValueRef::Integer(t) => t,
                    _ => continue,
                };
                let key = match get(1) {
                    ValueRef::Text(t) => std::str::from_utf8(t).unwrap_or(NONE_GROUP),
                    _ => NONE_GROUP,
                };
                let sample = Sample {
                    latency_ms: float(get(2)).unwrap_or(f64::NAN),
                    ttft_ms: float(get(3)),
                    error: int(get(4)) != 0,
                    input_tokens: int(get(5)),
                    output_tokens: int(get(6)),
                    cached_tokens: int(get(7)),
                    cost_usd: float(get(8)),
                    retries: int(get(9)),
                    reasoning_tokens: int(get(10)),
                    cache_write_tokens: int(get(11)),
                };
                agg.push(key, ts, sample)?;
            }
            Ok(())
        })();
        let _ = done_tx.send(());
        let _ = watchdog.join();
        result
    }

    /// [`SummaryStore::summary`], blocking.
    pub fn query_summary(&self, q: &StatsQuery) -> Result<SummaryReport, QueryError> {
        let mut agg = Aggregator::summary(q);
        self.scan(q, &mut agg)?;
        Ok(agg.finish_summary())
    }

    /// [`SummaryStore::timeseries`], blocking.
    pub fn query_timeseries(&self, q: &StatsQuery) -> Result<Timeseries, QueryError> {
        let mut agg = Aggregator::timeseries(q, q.effective_step(Utc::now()));
        self.scan(q, &mut agg)?;
        agg.finish_timeseries()
    }
}

/// A shareable [`SqliteStore`] answering [`StatsQuery`]s as a
/// [`SummaryStore`] (each query runs on tokio's blocking pool).
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use steer_metrics::{GroupKey, StatsQuery, SummaryStore};
/// let store = steer_sink_sqlite::SqliteSummaryStore::open("steer-metrics.db")?;
/// let q = StatsQuery::new().last(std::time::Duration::from_secs(3600)).by(GroupKey::Model);
/// let report = store.summary(&q).await?;
/// println!("{} calls", report.total.count);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteSummaryStore {
    store: Arc<SqliteStore>,
}

impl SqliteSummaryStore {
    /// Open the store at `path` read-only ([`SqliteStore::open_read_only`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        Ok(Self::from(SqliteStore::open_read_only(path)?))
    }

    /// The store.
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }
}

impl From<SqliteStore> for SqliteSummaryStore {
    fn from(store: SqliteStore) -> Self {
        SqliteSummaryStore {
            store: Arc::new(store),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, QueryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| QueryError::store(format!("the query task failed: {e}"), false))?
}

#[async_trait]
impl SummaryStore for SqliteSummaryStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.store.path().display())
    }

    async fn summary(&self, q: &StatsQuery) -> Result<SummaryReport, QueryError> {
        let (store, q) = (self.store.clone(), q.clone());
        blocking(move || store.query_summary(&q)).await
    }

    async fn timeseries(&self, q: &StatsQuery) -> Result<Timeseries, QueryError> {
        let (store, q) = (self.store.clone(), q.clone());
        blocking(move || store.query_timeseries(&q)).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tag_keys_and_values_are_parameters() {
        let q = StatsQuery::new()
            .by("tag:team".parse().unwrap())
            .filter("error=none".parse().unwrap())
            .since(chrono::DateTime::from_timestamp(1, 0).unwrap());
        let (sql, params) = select_sql("t", &q);
        assert!(sql.contains("json_extract(tags, ?1)"), "{sql}");
        assert!(
            sql.ends_with("WHERE ts >= ?2 AND COALESCE(error_class, 'none') = ?3"),
            "{sql}"
        );
        assert_eq!(params[0], Value::Text("$.\"team\"".into()));
        assert_eq!(params[2], Value::Text("none".into()));
    }
}
