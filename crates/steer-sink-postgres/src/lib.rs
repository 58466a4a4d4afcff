//! # steer-sink-postgres
//!
//! A [`MetricsSink`] writing [`AgentMetrics`] to PostgreSQL, and a
//! [`PostgresStore`] computing summary statistics over them.
//!
//! * **Batched**: each batch the collector hands over is one binary `COPY`
//!   into a session-local staging table plus one
//!   `INSERT ... SELECT ... ON CONFLICT (request_id) DO NOTHING`, in one
//!   transaction.
//! * **Exactly once by `request_id`**: a batch retried after a timeout or a
//!   lost connection never duplicates a row.
//! * **Versioned schema**: the table (configurable schema and name, a
//!   column per field, indexes named after the table) is created and
//!   upgraded by migrations applied once each, under an advisory lock.
//!   Only configuration is interpolated into SQL, always quoted; record
//!   values travel as binary COPY data.
//! * **Starts with the database down**: building never connects; writes
//!   fail retryably until the database is back and the collector delivers
//!   later.
//! * **Bad records isolated**: values PostgreSQL cannot store (NUL bytes
//!   in text, NaN / infinite numbers, integers beyond `bigint`) are
//!   rejected individually before sending; their batch-mates are written.
//! * Passwords never appear in `Debug`, errors or logs.
//!
//! ```no_run
//! use steer_metrics::{AgentMetrics, MetricsCollector, SinkOptions};
//! use steer_sink_postgres::PostgresSink;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = PostgresSink::builder("postgres://app:secret@127.0.0.1:5432/metrics")
//!     .schema("public")
//!     .table("llm_metrics")
//!     .build()?;
//! let collector = MetricsCollector::builder()
//!     .sink_with_options(sink, SinkOptions::default().batch_size(5000))
//!     .build()?;
//! collector.record(AgentMetrics::new("openai", "gpt-4o-mini").with_latency_ms(420.0));
//! collector.flush().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod encode;
mod error;
mod query;
pub mod schema;
pub mod spec;
pub mod store;
mod table;
#[cfg(feature = "tls")]
mod tls;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use deadpool_postgres::Pool;
use steer_metrics::{AgentMetrics, MetricsSink, SinkError};

use crate::client::Class;
pub use crate::client::DbError;
use crate::config::ConnSettings;
pub use crate::config::{ConfigError, PostgresSinkBuilder};
pub use crate::schema::TableRef;
pub use crate::store::{PostgresStore, StoreError};

/// Writes [`AgentMetrics`] to a PostgreSQL table. See the [crate docs](crate).
pub struct PostgresSink {
    name: String,
    pool: Pool,
    settings: ConnSettings,
    migrate: bool,
    migrated: AtomicBool,
    write_concurrency: usize,
    /// The last write failed transiently: the next batch may be a retry of
    /// rows that were in fact committed, so de-duplicate it directly.
    suspect_duplicates: AtomicBool,
}

impl fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSink")
            .field("name", &self.name)
            .field("url", &config::redacted(&self.settings.pg))
            .field("table", &self.settings.table.qualified())
            .field("pool_size", &self.settings.pool_size)
            .finish()
    }
}

impl PostgresSink {
    /// Start building a sink from a connection string (URL or `key=value`).
    pub fn builder(url: &str) -> PostgresSinkBuilder {
        PostgresSinkBuilder::new(url)
    }

    /// Start building a sink from a `tokio_postgres::Config`.
    pub fn builder_from_config(config: tokio_postgres::Config) -> PostgresSinkBuilder {
        PostgresSinkBuilder::from_config(config)
    }

    pub(crate) fn from_settings(
        settings: ConnSettings,
        name: String,
        migrate: bool,
    ) -> Result<Self, ConfigError> {
        Ok(PostgresSink {
            write_concurrency: settings.write_concurrency.min(settings.pool_size).max(1),
            name,
            pool: client::pool(&settings)?,
            settings,
            migrate,
            migrated: AtomicBool::new(false),
            suspect_duplicates: AtomicBool::new(false),
        })
    }

    /// The table written.
    pub fn table(&self) -> &TableRef {
        &self.settings.table
    }

    /// A store querying this sink's table over the same pool.
    pub fn store(&self) -> PostgresStore {
        PostgresStore::from_pool(self.pool.clone(), self.settings.clone())
    }

    /// Create or upgrade the table now (it otherwise happens on the first
    /// write). Returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<i32>, DbError> {
        let mut c = self.pool.get().await.map_err(DbError::from_pool)?;
        let applied = schema::migrate(&mut c, &self.settings.table)
            .await
            .map_err(|e| DbError::from_pg("migrating the schema", &e))?;
        self.migrated.store(true, Ordering::Release);
        Ok(applied)
    }

    async fn ensure_migrated(&self) -> Result<(), DbError> {
        if self.migrate && !self.migrated.load(Ordering::Acquire) {
            self.migrate().await?;
        }
        Ok(())
    }

    /// Write one chunk on its own connection.
    async fn write_chunk(&self, rows: &[(usize, encode::Row<'_>)], suspect: bool) -> Result<u64, DbError> {
        let mut c = self.pool.get().await.map_err(DbError::from_pool)?;
        match client::write_rows(&mut c, &self.settings.table, rows, suspect).await {
            Ok((n, _path)) => Ok(n),
            Err(e) => {
                if e.code().is_none() {
                    // The connection may be half-way through a COPY or dead:
                    // never hand it back to the pool.
                    let _ = deadpool_postgres::Object::take(c);
                }
                Err(DbError::from_pg("writing a batch", &e))
            }
        }
    }

    /// Write the rows, spread over up to `write_concurrency` connections in
    /// contiguous chunks. Returns each chunk with its outcome.
    async fn write<'r, 'a>(
        &self,
        rows: &'r [(usize, encode::Row<'a>)],
    ) -> Vec<(&'r [(usize, encode::Row<'a>)], Result<u64, DbError>)> {
        if let Err(e) = self.ensure_migrated().await {
            return vec![(rows, Err(e))];
        }
        let suspect = self.suspect_duplicates.load(Ordering::Relaxed);
        let chunks = self.write_concurrency.min(rows.len() / MIN_CHUNK_ROWS).max(1);
        let chunk_len = rows.len().div_ceil(chunks).max(1);
        let results = futures::future::join_all(
            rows.chunks(chunk_len)
                .map(|chunk| async move { (chunk, self.write_chunk(chunk, suspect).await) }),
        )
        .await;
        let transient = results
            .iter()
            .any(|(_, r)| matches!(r, Err(e) if e.class == Class::Retryable));
        // After a transient failure a commit may have happened unseen: the
        // next batch is likely a retry, so de-duplicate it straight away.
        self.suspect_duplicates.store(transient, Ordering::Relaxed);
        results
    }
}

/// Smallest chunk worth its own connection.
const MIN_CHUNK_ROWS: usize = 1000;

fn severity(c: Class) -> u8 {
    match c {
        Class::Permanent => 3,
        Class::Retryable => 2,
        Class::BadData => 1,
    }
}

#[async_trait]
impl MetricsSink for PostgresSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(metrics)).await
    }

    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        let (good, bad) = encode::rows(batch);
        let bad_idx: Vec<usize> = bad.iter().map(|(i, _)| *i).collect();
        let rejected = || {
            bad.first().map(|(i, why)| {
                SinkError::permanent(format!(
                    "{} record(s) cannot be stored in PostgreSQL; first: record {i} (request_id {}): {why}",
                    bad.len(),
                    batch[*i].request_id
                ))
            })
        };
        let mut failed: Vec<usize> = Vec::new();
        let mut worst: Option<DbError> = None;
        let mut inserted = 0u64;
        if !good.is_empty() {
            for (chunk, outcome) in self.write(&good).await {
                match outcome {
                    Ok(n) => inserted += n,
                    Err(e) => {
                        failed.extend(chunk.iter().map(|(i, _)| *i));
                        if !matches!(&worst, Some(w) if severity(w.class) >= severity(e.class)) {
                            worst = Some(e);
                        }
                    }
                }
            }
        }
        let written = good.len() - failed.len();
        if (written as u64) > inserted {
            tracing::debug!(
                sink = %self.name,
                skipped = written as u64 - inserted,
                "rows already stored (retried batch); not duplicated"
            );
        }
        let Some(e) = worst else {
            // Everything valid is stored; the invalid records are rejected.
            return match rejected() {
                None => Ok(()),
                Some(err) => Err(err.with_records(bad_idx)),
            };
        };
        let class = e.class;
        let err = match class {
            Class::Retryable => SinkError::retryable(e.message.clone()),
            Class::BadData => SinkError::permanent(e.message.clone()),
            // Fails whatever the data (28P01 bad password, 42501 missing
            // privilege, 3D000 no such database): the sink is wrong.
            Class::Permanent => SinkError::misconfigured(e.message.clone()),
        };
        let err = err.with_source(e);
        let all_good_failed = failed.len() == good.len();
        Err(match class {
            // Fails whatever the content (privileges, missing table ...): the whole batch, at once.
            Class::Permanent => err.with_records((0..batch.len()).collect()),
            // Retry exactly the records whose chunk failed (with backoff).
            Class::Retryable if bad.is_empty() => err.with_records(failed),
            // A record the server refused, whole batch concerned: the
            // collector splits the batch to find it.
            Class::BadData if bad.is_empty() && all_good_failed => err,
            // Otherwise: reject the invalid records now, try the failed
            // chunks again on their own (a refused record is then found by
            // splitting); the rest is stored.
            Class::Retryable | Class::BadData => {
                SinkError::partial(rejected().unwrap_or(err), bad_idx, failed)
            }
        })
    }

    async fn close(&self) -> Result<(), SinkError> {
        self.pool.close();
        Ok(())
    }
}
