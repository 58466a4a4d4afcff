//! # steer-sink-sqlite
//!
//! An embedded metrics store for the steer LLM SDK: [`SqliteSink`] writes
//! one row per [`AgentMetrics`] into an SQLite file, and [`SqliteStore`]
//! answers record queries and summaries over it (the store behind
//! `steer stats`).
//!
//! ```no_run
//! use steer_metrics::{AgentMetrics, MetricsCollector, SinkOptions, StatsQuery};
//! use steer_sink_sqlite::SqliteSink;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = SqliteSink::open("metrics.db")?;
//! let collector = MetricsCollector::builder()
//!     .sink_with_options(sink.clone(), SinkOptions::default().batch_size(2000))
//!     .build()?;
//! collector.record(AgentMetrics::new("openai", "gpt-4o-mini").with_latency_ms(420.0));
//! collector.flush().await;
//!
//! let report = sink.store()?.query_summary(&StatsQuery::new())?;
//! assert_eq!(report.total.count, 1);
//! # Ok(()) }
//! ```
//!
//! ## How it writes
//!
//! * WAL journal mode, `synchronous = NORMAL` by default (a committed batch
//!   survives a crash of the process; `Full` also survives a power loss).
//! * Each `record_batch` is one `IMMEDIATE` transaction through a cached
//!   prepared statement, run on Tokio's blocking pool
//!   (`spawn_blocking`): the async runtime never waits on SQLite.
//! * `INSERT ... ON CONFLICT(request_id) DO NOTHING`: a batch written twice
//!   (a retry after a timeout) never duplicates a row.
//! * Errors: `SQLITE_BUSY` / `LOCKED`, I/O and "disk full" are retryable for
//!   the whole batch (the transaction is rolled back); a row the database
//!   refuses (constraint, type) is rejected alone and the rest of the batch
//!   is committed.
//!
//! ## Table layout
//!
//! One row per record, a column per field (see `schema.rs` for the DDL and
//! `encode.rs` for the value rules: unix-microsecond `ts`, `NULL` cost when
//! unknown, non-finite floats as `NULL`, counts saturating at `i64::MAX`,
//! JSON text for `tools_used` and `tags`). Indexes are named after the
//! table: `<table>_request_id_key` (unique), `<table>_ts_idx`,
//! `<table>_model_ts_idx`, `<table>_provider_ts_idx`,
//! `<table>_error_class_ts_idx`; the view `<table>_view` adds an ISO-8601
//! `ts_iso` column. The schema version is `PRAGMA user_version`; opening for
//! writing migrates older files.
//!
//! Schema v3 adds the hourly rollup `<table>_hourly` (sums and exact
//! latency/TTFT values per hour, model, provider, error class and finish
//! reason; see `rollup.rs`), written by the sink in each batch's
//! transaction, so summaries and whole-hour time series over months of
//! calls read it instead of every row. `<table>_hourly_stale` and two
//! triggers track hours whose rows were deleted or updated outside the
//! sink (those are scanned until rebuilt). Schema v4 adds the tag rollup
//! `<table>_hourly_tags` (the same per hour, tag key and tag value), so
//! queries by `tag:KEY` do the same. Reading needs v2 at least; a v2 file
//! opened read-only is scanned (a v3 file, by tag).
#![warn(missing_docs)]

mod encode;
mod error;
mod query;
mod rollup;
mod schema;
pub mod spec;
mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use steer_metrics::{AgentMetrics, MetricsSink, SinkError};

pub use error::SqliteError;
pub use query::SqliteSummaryStore;
pub use schema::{APPLICATION_ID, DEFAULT_TABLE, SCHEMA_VERSION};
pub use store::{SqliteStore, TimeSpan};

use encode::Row;
use error::SqliteResultExt;
use schema::Table;

/// SQLite's `synchronous` setting for the writer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// Committed batches survive a crash of the process; the last ones may
    /// be lost on a power loss or OS crash. The default: fastest safe mode
    /// with WAL.
    #[default]
    Normal,
    /// Every commit is fsynced: committed batches survive a power loss.
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Configures a [`SqliteSink`].
#[must_use]
#[derive(Debug, Clone)]
pub struct SqliteSinkBuilder {
    path: PathBuf,
    table: String,
    name: String,
    synchronous: Synchronous,
    busy_timeout: Duration,
}

impl SqliteSinkBuilder {
    /// The table to write (default `llm_metrics`). Letters, digits and `_`;
    /// index and view names are derived from it.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The sink's name in collector stats and reports (default `sqlite`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Durability of each committed batch (default [`Synchronous::Normal`]).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long a write waits for another connection's lock before the batch
    /// fails as retryable (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Open (creating the file if needed, but not its directory), switch to
    /// WAL and create or migrate the table.
    ///
    /// Blocks on file I/O for a few milliseconds; in latency-sensitive async
    /// code, call it from `spawn_blocking`.
    ///
    /// Errors: [`SqliteError::MissingDirectory`],
    /// [`SqliteError::NotAStore`] (not an SQLite file, another
    /// application's database, a foreign table of that name),
    /// [`SqliteError::SchemaTooNew`], [`SqliteError::InvalidTableName`].
    pub fn build(self) -> Result<SqliteSink, SqliteError> {
        let table = Table::new(&self.table)?;
        let config = Config {
            synchronous: self.synchronous,
            busy_timeout: self.busy_timeout,
        };
        let conn = open_writer(&self.path, &table, &config)?;
        tracing::debug!(path = %self.path.display(), table = table.name(), "sqlite sink opened");
        Ok(SqliteSink {
            inner: Arc::new(Inner {
                name: self.name,
                insert_sql: table.insert_sql(),
                path: self.path,
                table,
                config,
                conn: Mutex::new(Some(conn)),
                inserted: AtomicU64::new(0),
                duplicates: AtomicU64::new(0),
            }),
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Config {
    synchronous: Synchronous,
    busy_timeout: Duration,
}

fn open_writer(path: &Path, table: &Table, config: &Config) -> Result<Connection, SqliteError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(SqliteError::MissingDirectory {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            });
        }
    }
    if path.is_dir() {
        return Err(SqliteError::NotAStore {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
        });
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| schema::classify_open_error(e, path, "opening the database"))?;
    conn.busy_timeout(config.busy_timeout)
        .ctx("setting the busy timeout")?;
    // Reads the header first: a file that is not a database fails here with
    // a typed error, before anything is written.
    schema::inspect(&conn, path)?;
    refuse_foreign(&conn, path)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| schema::classify_open_error(e, path, "switching to WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "sqlite sink: WAL mode unavailable; readers may block writes");
    }
    conn.execute_batch(&format!("PRAGMA synchronous = {}", config.synchronous.pragma()))
        .ctx("setting synchronous")?;
    schema::migrate(&mut conn, table, path)?;
    rollup::reconcile(&conn, table.name()).ctx("checking the hourly rollup against the rows")?;
    Ok(conn)
}

/// Refuse a non-empty database that steer did not create: it has no steer
/// application id but already holds tables, views or indexes (another
/// application's data, which steer must neither stamp nor add tables to).
fn refuse_foreign(conn: &Connection, path: &Path) -> Result<(), SqliteError> {
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| schema::classify_open_error(e, path, "reading the database header"))?;
    if app_id != 0 {
        return Ok(()); // steer's (anything else was refused by `inspect`)
    }
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| schema::classify_open_error(e, path, "reading the schema"))?;
    if objects > 0 {
        return Err(SqliteError::NotAStore {
            path: path.to_path_buf(),
            reason: format!(
                "the database is not empty ({objects} tables, views or indexes) and was not created by steer; \
                 use a new file for steer's store"
            ),
        });
    }
    Ok(())
}

/// Writes [`AgentMetrics`] into an SQLite file, one row per record.
///
/// Hand it to a [`MetricsCollector`](steer_metrics::MetricsCollector)
/// (batch sizes of 1 000–5 000 suit it); keep a clone to query it with
/// [`store`](Self::store). Clones share one connection.
#[derive(Clone)]
pub struct SqliteSink {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    path: PathBuf,
    table: Table,
    config: Config,
    insert_sql: String,
    /// `None` after `close()`; the next write reopens.
    conn: Mutex<Option<Connection>>,
    inserted: AtomicU64,
    duplicates: AtomicU64,
}

impl std::fmt::Debug for SqliteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSink")
            .field("name", &self.inner.name)
            .field("path", &self.inner.path)
            .field("table", &self.inner.table.name())
            .finish()
    }
}

/// What one transaction did.
struct Written {
    inserted: u64,
    duplicates: u64,
    /// Rows the database refused, by index into the batch.
    rejected: Vec<(usize, rusqlite::Error)>,
}

/// Why a whole batch was not written (the transaction was rolled back).
enum BatchFailure {
    /// Opening the connection again failed.
    Open(SqliteError),
    /// A statement or the commit failed.
    Sql(rusqlite::Error),
}

/// Whether an error is about the row's data (retrying it cannot help)
/// rather than the database's state.
fn is_row_error(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig)
    ) || matches!(
        e,
        rusqlite::Error::ToSqlConversionFailure(_) | rusqlite::Error::IntegralValueOutOfRange(..)
    )
}

impl Inner {
    /// One transaction for the batch. Runs on a blocking thread.
    fn write(&self, rows: &[(usize, Row)]) -> Result<Written, BatchFailure> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = match guard.take() {
            Some(conn) => conn,
            None => {
                tracing::debug!(path = %self.path.display(), "sqlite sink: reopening after close");
                open_writer(&self.path, &self.table, &self.config).map_err(BatchFailure::Open)?
            }
        };
        let conn = guard.insert(conn);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(BatchFailure::Sql)?;
        let mut written = Written {
            inserted: 0,
            duplicates: 0,
            rejected: Vec::new(),
        };
        // The inserted rows, for the hourly rollup (same transaction).
        let mut partials = rollup::Partials::new(&rollup::MAIN);
        let mut tag_partials = rollup::Partials::new(&rollup::TAGS);
        {
            let mut stmt = tx.prepare_cached(&self.insert_sql).map_err(BatchFailure::Sql)?;
            for (i, row) in rows {
                match row.insert(&mut stmt) {
                    Ok(0) => written.duplicates += 1,
                    Ok(_) => {
                        written.inserted += 1;
                        let sample = row.sample();
                        partials.push(row.ts(), row.rollup_key(), &sample);
                        for key in row.tag_keys() {
                            tag_partials.push(row.ts(), key, &sample);
                        }
                    }
                    Err(e) if is_row_error(&e) => {
                        // SQLite undid this statement only, unless the error
                        // (e.g. a trigger's RAISE(ROLLBACK)) ended the
                        // transaction: then nothing of the batch is kept.
                        if tx.is_autocommit() {
                            return Err(BatchFailure::Sql(e));
                        }
                        written.rejected.push((*i, e));
                    }
                    Err(e) => return Err(BatchFailure::Sql(e)),
                }
            }
        }
        partials
            .write(&tx, self.table.name())
            .map_err(BatchFailure::Sql)?;
        tag_partials
            .write(&tx, self.table.name())
            .map_err(BatchFailure::Sql)?;
        rollup::repair(&tx, self.table.name(), rollup::REPAIR_HOURS_PER_BATCH).map_err(BatchFailure::Sql)?;
        tx.commit().map_err(BatchFailure::Sql)?;
        Ok(written)
    }

    /// `PRAGMA wal_checkpoint(mode)`; returns (busy, wal pages, checkpointed pages).
    fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
    }
}

impl SqliteSink {
    /// Open or create the store at `path` with the default settings (table
    /// `llm_metrics`, name `sqlite`, `synchronous = NORMAL`). See
    /// [`SqliteSinkBuilder::build`] for the errors.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        Self::builder(path).build()
    }

    /// Configure a sink writing to `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteSinkBuilder {
        SqliteSinkBuilder {
            path: path.as_ref().to_path_buf(),
            table: DEFAULT_TABLE.to_string(),
            name: "sqlite".to_string(),
            synchronous: Synchronous::default(),
            busy_timeout: Duration::from_secs(5),
        }
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The table written.
    pub fn table(&self) -> &str {
        self.inner.table.name()
    }

    /// A read-only view of the same table (a separate connection; sees every
    /// committed batch).
    pub fn store(&self) -> Result<SqliteStore, SqliteError> {
        SqliteStore::open_read_only_table(&self.inner.path, self.inner.table.name())
    }

    /// Rows inserted by this sink so far.
    pub fn inserted(&self) -> u64 {
        self.inner.inserted.load(Relaxed)
    }

    /// Records not inserted because their `request_id` was already stored
    /// (a retried or repeated write).
    pub fn duplicates_ignored(&self) -> u64 {
        self.inner.duplicates.load(Relaxed)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T, SinkError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| SinkError::retryable(format!("sqlite {what} task failed: {e}")))
    }
}

fn batch_error(path: &Path, e: BatchFailure) -> SinkError {
    match e {
        BatchFailure::Open(e) => {
            SinkError::retryable(format!("cannot reopen {}: {e}", path.display())).with_source(e)
        }
        BatchFailure::Sql(e) => {
            let message = format!("writing to {}: {e}", path.display());
            if is_row_error(&e) {
                // The transaction was rolled back by a row's error: let the
                // collector split the batch to find the bad rows.
                SinkError::permanent(message).with_source(e)
            } else {
                // BUSY / LOCKED (another writer), I/O, disk full, ...: the
                // batch was rolled back and can be written again.
                SinkError::retryable(message).with_source(e)
            }
        }
    }
}

#[async_trait]
impl MetricsSink for SqliteSink {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(metrics)).await
    }

    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(batch.len());
        let mut rejected: Vec<(usize, String)> = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            match encode::encode(m) {
                Ok(row) => rows.push((i, row)),
                Err(e) => rejected.push((i, format!("cannot encode record: {e}"))),
            }
        }
        let written = self
            .blocking("writer", move |inner| inner.write(&rows))
            .await?
            .map_err(|e| batch_error(&self.inner.path, e))?;
        self.inner.inserted.fetch_add(written.inserted, Relaxed);
        if written.duplicates > 0 {
            self.inner.duplicates.fetch_add(written.duplicates, Relaxed);
            tracing::debug!(
                sink = %self.inner.name,
                duplicates = written.duplicates,
                "sqlite sink: records already stored were ignored"
            );
        }
        rejected.extend(written.rejected.into_iter().map(|(i, e)| (i, e.to_string())));
        if rejected.is_empty() {
            return Ok(());
        }
        rejected.sort_by_key(|(i, _)| *i);
        let message = format!(
            "{} record(s) refused by {}; first: {}",
            rejected.len(),
            self.inner.path.display(),
            rejected[0].1
        );
        Err(SinkError::permanent(message).with_records(rejected.into_iter().map(|(i, _)| i).collect()))
    }

    /// Checkpoint the WAL into the database file (`PASSIVE`: never waits for
    /// readers). Committed batches are already durable; this keeps the WAL
    /// short.
    async fn flush(&self) -> Result<(), SinkError> {
        let path = self.inner.path.clone();
        self.blocking("checkpoint", |inner| {
            let guard = inner.conn.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                Some(conn) => Inner::checkpoint(conn, "PASSIVE").map(|_| ()),
                None => Ok(()),
            }
        })
        .await?
        .map_err(|e| SinkError::retryable(format!("checkpointing {}: {e}", path.display())).with_source(e))
    }

    /// Checkpoint and close the connection, so the file is complete without
    /// its `-wal` / `-shm` companions. A later write reopens it.
    async fn close(&self) -> Result<(), SinkError> {
        self.blocking("close", |inner| {
            let mut guard = inner.conn.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(conn) = guard.take() {
                if let Err(e) = Inner::checkpoint(&conn, "TRUNCATE") {
                    tracing::debug!(error = %e, "sqlite sink: final checkpoint incomplete");
                }
                if let Err((_conn, e)) = conn.close() {
                    tracing::warn!(path = %inner.path.display(), error = %e, "sqlite sink: close failed");
                }
            }
        })
        .await
    }
}
