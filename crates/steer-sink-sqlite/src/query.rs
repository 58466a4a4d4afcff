//! [`StatsQuery`] over an SQLite store: the [`SummaryStore`] of `steer
//! stats` and `steer dashboard`.
//!
//! A store with the hourly rollup (schema v3) answers the complete hours of
//! a window from it and only the partial hours at the edges from the rows
//! (`query/rollup.rs`); other queries (by tag, sub-hour steps, a file still
//! at v2) select the summary inputs of the matching rows with indexed range
//! scans. Either way the shared [`Aggregator`] turns them into the same
//! [`Summary`] numbers as every other store.
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
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use steer_metrics::query::{
    Aggregator, GroupKey, QueryError, StatsQuery, SummaryReport, SummaryStore, Timeseries, NONE_GROUP,
    NO_ERROR,
};
use steer_metrics::summary::Sample;

use crate::error::SqliteError;
use crate::store::SqliteStore;

mod cache;
mod rollup;

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

/// ` WHERE ...` (or nothing) selecting `q`'s window and filters, and its
/// parameters.
pub(crate) fn where_sql(q: &StatsQuery) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let sql = conditions(q, &mut params);
    (sql, params)
}

/// `SELECT ts, key, <summary inputs> FROM table WHERE ...` and its
/// parameters.
pub(crate) fn select_sql(table: &str, q: &StatsQuery) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let key =
        q.by.as_ref()
            .map_or_else(|| "''".to_string(), |k| key_sql(k, &mut params));
    let where_sql = conditions(q, &mut params);
    (
        format!("SELECT ts, {key}, {SAMPLE_COLUMNS} FROM \"{table}\"{where_sql}"),
        params,
    )
}

/// ` WHERE ...` for `q`'s window and filters, numbering parameters after
/// those already in `params`.
fn conditions(q: &StatsQuery, params: &mut Vec<Value>) -> String {
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
        let expr = key_sql(&f.key, params);
        params.push(Value::Text(f.value.clone()));
        conds.push(format!("{expr} = ?{}", params.len()));
    }
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

/// The row columns a [`Sample`] is read from, in [`sample_at`]'s order.
pub(crate) const SAMPLE_COLUMNS: &str = "latency_ms, ttft_ms, error_class IS NOT NULL, input_tokens, \
     output_tokens, cached_tokens, cost_usd, retries, reasoning_tokens, cache_write_tokens";

/// The [`Sample`] of a row selected with [`SAMPLE_COLUMNS`] from column `first`.
pub(crate) fn sample_at(row: &rusqlite::Row<'_>, first: usize) -> Sample {
    let get = |i: usize| row.get_ref(first + i).unwrap_or(ValueRef::Null);
    Sample {
        latency_ms: float(get(0)).unwrap_or(f64::NAN),
        ttft_ms: float(get(1)),
        error: int(get(2)) != 0,
        input_tokens: int(get(3)),
        output_tokens: int(get(4)),
        cached_tokens: int(get(5)),
        cost_usd: float(get(6)),
        retries: int(get(7)),
        reasoning_tokens: int(get(8)),
        cache_write_tokens: int(get(9)),
    }
}

pub(crate) fn int(v: ValueRef<'_>) -> u64 {
    match v {
        ValueRef::Integer(i) => u64::try_from(i).unwrap_or(0),
        _ => 0,
    }
}

pub(crate) fn float(v: ValueRef<'_>) -> Option<f64> {
    match v {
        ValueRef::Real(f) => Some(f),
        ValueRef::Integer(i) => Some(i as f64),
        _ => None,
    }
}

pub(crate) fn store_err(e: SqliteError) -> QueryError {
    QueryError::store(e, false)
}

/// Most parts a scan is split into (one thread and connection each).
const MAX_PARTS: usize = 4;

/// Read the selected rows of `sql` into `agg`; `Err(Timeout)` when the
/// statement was interrupted.
fn read_rows(
    conn: &Connection,
    sql: &str,
    params: Vec<Value>,
    agg: &mut Aggregator,
    timeout: Duration,
) -> Result<(), QueryError> {
    let sqlite = |context: &'static str| move |e| store_err(SqliteError::sqlite(context, e));
    let mut stmt = conn
        .prepare_cached(sql)
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
        agg.push(key, ts, sample_at(row, 2))?;
    }
    Ok(())
}

/// Interrupts the given connections when `timeout` passes before it is
/// dropped.
struct Watchdog {
    done: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(handles: Vec<rusqlite::InterruptHandle>, timeout: Duration) -> Result<Self, QueryError> {
        let (done, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("steer-sqlite-query-timeout".into())
            .spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
                    for h in &handles {
                        h.interrupt();
                    }
                }
            })
            .map_err(|e| QueryError::store(format!("cannot start the query timer: {e}"), true))?;
        Ok(Watchdog {
            done: Some(done),
            thread: Some(thread),
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(d) = self.done.take() {
            let _ = d.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl SqliteStore {
    /// Run `q` into a fresh aggregator from `make` (blocking).
    ///
    /// A window of many rows is split by time into parts scanned in
    /// parallel, each on its own read-only connection, and the parts'
    /// aggregators merged (each part reads its own consistent snapshot). A
    /// statement still running after the query's timeout is interrupted.
    fn scan(&self, q: &StatsQuery, make: impl Fn() -> Aggregator + Sync) -> Result<Aggregator, QueryError> {
        q.validate()?;
        let timeout = q.limits.timeout;
        let table = self.table().to_string();
        let conn = self.conn();
        // The time span of the selection (two index probes).
        let (lo, hi) = {
            let (mut sql, mut params) = (format!("SELECT min(ts), max(ts) FROM \"{table}\""), Vec::new());
            let mut conds = Vec::new();
            if let Some(t) = q.since {
                params.push(Value::Integer(t.timestamp_micros()));
                conds.push(format!("ts >= ?{}", params.len()));
            }
            if let Some(t) = q.until {
                params.push(Value::Integer(t.timestamp_micros()));
                conds.push(format!("ts < ?{}", params.len()));
            }
            if !conds.is_empty() {
                sql.push_str(&format!(" WHERE {}", conds.join(" AND ")));
            }
            conn.query_row(&sql, rusqlite::params_from_iter(params), |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .map_err(|e| store_err(SqliteError::sqlite("reading the time span", e)))?
        };
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(make());
        };
        let parts = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_PARTS);
        // Extra connections for the other parts; without them (a store
        // opened as immutable, a file that vanished) scan in one part.
        let extra: Vec<Connection> = if parts > 1 && hi > lo {
            (1..parts)
                .map_while(|_| {
                    Connection::open_with_flags(
                        self.path(),
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .ok()
                    // Reading must work too (a WAL file in a read-only
                    // directory opens, then fails on the first read).
                    .filter(|c| {
                        c.query_row(&format!("SELECT 1 FROM \"{table}\" LIMIT 1"), [], |_| Ok(()))
                            .is_ok()
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let parts = extra.len() + 1;
        let span = i128::from(hi) - i128::from(lo) + 1;
        let bound = |i: usize| -> i64 {
            i64::try_from(i128::from(lo) + span * i as i128 / parts as i128).unwrap_or(hi)
        };
        let part_sql = |i: usize| -> (String, Vec<Value>) {
            let (a, b) = (bound(i), bound(i + 1));
            let mut sub = q.clone();
            sub.since = Some(chrono::DateTime::from_timestamp_micros(a).unwrap_or_default());
            sub.until = Some(chrono::DateTime::from_timestamp_micros(b).unwrap_or_default());
            if i == 0 {
                sub.since = q.since.map_or(sub.since, |s| sub.since.max(Some(s)));
            }
            if i + 1 == parts {
                sub.until = q.until.or(Some(
                    chrono::DateTime::from_timestamp_micros(hi.saturating_add(1)).unwrap_or_default(),
                ));
            }
            select_sql(&table, &sub)
        };
        let mut handles = vec![conn.get_interrupt_handle()];
        handles.extend(extra.iter().map(Connection::get_interrupt_handle));
        let _watchdog = Watchdog::start(handles, timeout)?;
        if parts == 1 {
            let (sql, params) = select_sql(&table, q);
            let mut agg = make();
            read_rows(&conn, &sql, params, &mut agg, timeout)?;
            return Ok(agg);
        }
        let results: Vec<Result<Aggregator, QueryError>> = std::thread::scope(|s| {
            let mut running = Vec::new();
            for (i, c) in extra.into_iter().enumerate() {
                let (sql, params) = part_sql(i + 1);
                let make = &make;
                running.push(s.spawn(move || {
                    let mut agg = make();
                    read_rows(&c, &sql, params, &mut agg, timeout).map(|()| agg)
                }));
            }
            let (sql, params) = part_sql(0);
            let mut agg = make();
            let first = read_rows(&conn, &sql, params, &mut agg, timeout).map(|()| agg);
            let mut out = vec![first];
            for h in running {
                out.push(
                    h.join()
                        .unwrap_or_else(|_| Err(QueryError::store("a query thread panicked", false))),
                );
            }
            out
        });
        let mut iter = results.into_iter();
        let mut agg = iter.next().unwrap_or_else(|| Ok(make()))?;
        for r in iter {
            agg.merge(r?)?;
        }
        Ok(agg)
    }

    /// Run `q` into a fresh aggregator from `make` (blocking): from the
    /// hourly rollup and the rows of the window's partial hours when the
    /// store has a rollup that can answer, else by [scanning](Self::scan)
    /// the rows. Both give the same numbers.
    fn collect(
        &self,
        q: &StatsQuery,
        make: impl Fn() -> Aggregator + Sync,
    ) -> Result<Aggregator, QueryError> {
        q.validate()?;
        let mut agg = make();
        if let Some(plan) = self
            .has_rollup()
            .then(|| rollup::plan(q, agg.step_us(), self.has_tag_rollup()))
            .flatten()
        {
            let conn = self.conn();
            let _watchdog = Watchdog::start(vec![conn.get_interrupt_handle()], q.limits.timeout)?;
            if rollup::run(&conn, self.table(), q, &plan, &mut agg)? {
                return Ok(agg);
            }
        }
        self.scan(q, make)
    }

    /// [`SummaryStore::summary`], blocking.
    pub fn query_summary(&self, q: &StatsQuery) -> Result<SummaryReport, QueryError> {
        Ok(self.collect(q, || Aggregator::summary(q))?.finish_summary())
    }

    /// [`SummaryStore::timeseries`], blocking.
    pub fn query_timeseries(&self, q: &StatsQuery) -> Result<Timeseries, QueryError> {
        let step = q.effective_step(Utc::now());
        self.collect(q, || Aggregator::timeseries(q, step))?
            .finish_timeseries()
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
    /// The in-memory copy, when [`cached`](Self::cached).
    copy: Option<Arc<std::sync::Mutex<cache::Columns>>>,
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

    /// Keep an in-memory, column-wise copy of the summary inputs, brought up
    /// to date incrementally before each query (only rows inserted since
    /// the last query are read), for a long-lived reader such as `steer
    /// dashboard` over a store without the hourly rollup (a schema v2 file
    /// opened read-only): the first query reads every row, later ones
    /// aggregate from memory. About 100 bytes per stored call; stores above
    /// 5 M rows, and queries by tag, are scanned instead. A store with the
    /// rollup answers faster without the copy (the rollup for whole hours,
    /// an indexed range scan for sub-hour steps, which are short windows),
    /// so the copy is not built for it. Off by default.
    #[must_use]
    pub fn cached(mut self, on: bool) -> Self {
        self.copy = on.then(|| Arc::new(std::sync::Mutex::new(cache::Columns::default())));
        self
    }

    /// Run `q` into a fresh aggregator: from the copy when there is one
    /// that can answer and the store has no rollup, else as
    /// [`SqliteStore::query_summary`] does (rollup, else scan).
    fn run(
        store: &SqliteStore,
        copy: Option<&std::sync::Mutex<cache::Columns>>,
        q: &StatsQuery,
        make: impl Fn() -> Aggregator + Sync,
    ) -> Result<Aggregator, QueryError> {
        if let Some(copy) = copy.filter(|_| !store.has_rollup() && cache::can_answer(q)) {
            q.validate()?;
            let mut cols = copy.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = {
                let conn = store.conn();
                cols.refresh(&conn, store.table())?
            };
            if fresh {
                let mut agg = make();
                cols.aggregate(q, &mut agg)?;
                return Ok(agg);
            }
        }
        store.collect(q, make)
    }
}

impl From<SqliteStore> for SqliteSummaryStore {
    fn from(store: SqliteStore) -> Self {
        SqliteSummaryStore {
            store: Arc::new(store),
            copy: None,
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
        let (store, copy, q) = (self.store.clone(), self.copy.clone(), q.clone());
        blocking(move || {
            Self::run(&store, copy.as_deref(), &q, || Aggregator::summary(&q)).map(Aggregator::finish_summary)
        })
        .await
    }

    async fn timeseries(&self, q: &StatsQuery) -> Result<Timeseries, QueryError> {
        let (store, copy, q) = (self.store.clone(), self.copy.clone(), q.clone());
        blocking(move || {
            let step = q.effective_step(Utc::now());
            Self::run(&store, copy.as_deref(), &q, || Aggregator::timeseries(&q, step))?.finish_timeseries()
        })
        .await
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
