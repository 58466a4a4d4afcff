//! Reading back: summary statistics computed in PostgreSQL with the same
//! definitions as [`steer_metrics::summary`], and the stored records.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use steer_metrics::summary::{Distribution, Summary};
use steer_metrics::{AgentMetrics, ErrorClass, GroupBy, Method};
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use crate::client::{self, Class, DbError};
use crate::config::{redacted, ConfigError, ConnSettings, PostgresSinkBuilder};
use crate::encode;
use crate::schema::{quote_ident, TableRef};

/// Errors reading from the store. Never contains the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database failed or refused the query.
    #[error("{0}")]
    Db(#[from] DbError),
    /// A stored value could not be turned back into a record.
    #[error("stored row {request_id} is not a valid record: {reason}")]
    Corrupt {
        /// The row's request id.
        request_id: uuid::Uuid,
        /// What is wrong.
        reason: String,
    },
}

impl StoreError {
    /// Whether trying again later may succeed (connection lost, server
    /// restarting).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Db(e) if e.class == Class::Retryable)
    }
}

/// Queries over the metrics table: [`summary`](Self::summary),
/// [`breakdown`](Self::breakdown), [`records`](Self::records).
///
/// Numbers mean the same as [`Summary::from_records`] over the same records:
/// percentiles are `percentile_cont` (linear interpolation), costs sum the
/// known ones and count the unknown ones.
///
/// ```no_run
/// # async fn f() -> Result<(), steer_sink_postgres::StoreError> {
/// use steer_sink_postgres::PostgresStore;
/// use steer_metrics::GroupBy;
/// let store = PostgresStore::connect("postgres://app@127.0.0.1/metrics").await?;
/// let since = chrono::Utc::now() - chrono::Duration::hours(24);
/// let all = store.summary(Some(since)).await?;
/// let by_model = store.breakdown(Some(since), GroupBy::Model).await?;
/// println!("{} calls, p95 {:?} ms, {} models", all.count, all.latency_ms.map(|d| d.p95), by_model.len());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    settings: ConnSettings,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &redacted(&self.settings.pg))
            .field("table", &self.settings.table.qualified())
            .finish()
    }
}

const SUMMARY_COLUMNS: &str = r#"
    count(*)::int8,
    count(*) FILTER (WHERE error_class IS NOT NULL)::int8,
    avg(latency_ms), min(latency_ms), max(latency_ms),
    percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[]) WITHIN GROUP (ORDER BY latency_ms),
    count(ttft_ms)::int8, avg(ttft_ms), min(ttft_ms), max(ttft_ms),
    percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[]) WITHIN GROUP (ORDER BY ttft_ms),
    LEAST(coalesce(sum(input_tokens), 0), 9223372036854775807)::int8,
    LEAST(coalesce(sum(output_tokens), 0), 9223372036854775807)::int8,
    LEAST(coalesce(sum(cached_tokens), 0), 9223372036854775807)::int8,
    coalesce(sum(cost_usd), 0)::float8,
    count(*) FILTER (WHERE cost_usd IS NULL)::int8,
    LEAST(coalesce(sum(retries), 0), 9223372036854775807)::int8"#;

impl PostgresStore {
    /// Connect to the default table (`public.llm_metrics`) and check that
    /// the database answers. For another table use
    /// [`PostgresSink::builder`](crate::PostgresSink::builder)`(url).schema(..).table(..).build_store()`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = PostgresSinkBuilder::new(url).build_store()?;
        store.ping().await?;
        Ok(store)
    }

    pub(crate) fn from_settings(settings: ConnSettings) -> Result<Self, ConfigError> {
        Ok(PostgresStore {
            pool: client::pool(&settings)?,
            settings,
        })
    }

    pub(crate) fn from_pool(pool: Pool, settings: ConnSettings) -> Self {
        PostgresStore { pool, settings }
    }

    /// The table queried.
    pub fn table(&self) -> &TableRef {
        &self.settings.table
    }

    /// Check that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(DbError::from_pool)?;
        c.simple_query("SELECT 1")
            .await
            .map_err(|e| DbError::from_pg("ping", &e))?;
        Ok(())
    }

    async fn query(&self, sql: &str, since: Option<DateTime<Utc>>) -> Result<Vec<Row>, StoreError> {
        let c = self.pool.get().await.map_err(DbError::from_pool)?;
        let stmt = c
            .prepare_cached(sql)
            .await
            .map_err(|e| DbError::from_pg("preparing a summary query", &e))?;
        Ok(c.query(&stmt, &[&since])
            .await
            .map_err(|e| DbError::from_pg("running a summary query", &e))?)
    }

    /// Summary of every record with `timestamp >= since` (all when `None`).
    pub async fn summary(&self, since: Option<DateTime<Utc>>) -> Result<Summary, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM {} WHERE ($1::timestamptz IS NULL OR \"timestamp\" >= $1)",
            self.settings.table.qualified()
        );
        let rows = self.query(&sql, since).await?;
        Ok(rows.first().map(|r| summary_from_row(r, 0)).unwrap_or_else(empty))
    }

    /// Summary of the last `hours` hours, measured by the database clock
    /// (`now() - make_interval(hours => $1)`).
    pub async fn summary_last_hours(&self, hours: i32) -> Result<Summary, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM {} WHERE \"timestamp\" >= now() - make_interval(hours => $1)",
            self.settings.table.qualified()
        );
        let c = self.pool.get().await.map_err(DbError::from_pool)?;
        let rows = c
            .query(&sql, &[&hours])
            .await
            .map_err(|e| DbError::from_pg("running a summary query", &e))?;
        Ok(rows.first().map(|r| summary_from_row(r, 0)).unwrap_or_else(empty))
    }

    /// Summaries per model, provider or error class (`none` for successes)
    /// of the records with `timestamp >= since` (all when `None`).
    pub async fn breakdown(
        &self,
        since: Option<DateTime<Utc>>,
        by: GroupBy,
    ) -> Result<BTreeMap<String, Summary>, StoreError> {
        let key = match by {
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::ErrorClass => "coalesce(error_class, 'none')",
        };
        let sql = format!(
            "SELECT {key} AS k, {SUMMARY_COLUMNS} FROM {} WHERE ($1::timestamptz IS NULL OR \"timestamp\" >= $1) GROUP BY 1",
            self.settings.table.qualified()
        );
        let rows = self.query(&sql, since).await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), summary_from_row(r, 1)))
            .collect())
    }

    /// Number of stored records with `timestamp >= since` (all when `None`).
    pub async fn count(&self, since: Option<DateTime<Utc>>) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT count(*)::int8 FROM {} WHERE ($1::timestamptz IS NULL OR \"timestamp\" >= $1)",
            self.settings.table.qualified()
        );
        let rows = self.query(&sql, since).await?;
        Ok(rows
            .first()
            .map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
    }

    /// Stored records with `timestamp >= since` (all when `None`), oldest
    /// first, at most `limit`. Timestamps come back at PostgreSQL's
    /// microsecond precision.
    pub async fn records(&self, since: Option<DateTime<Utc>>, limit: i64) -> Result<Vec<AgentMetrics>, StoreError> {
        let cols = encode::COLUMNS
            .iter()
            .map(|(n, _)| {
                if *n == "cost_usd" {
                    "cost_usd::float8".to_string()
                } else {
                    quote_ident(n)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols} FROM {} WHERE ($1::timestamptz IS NULL OR \"timestamp\" >= $1) ORDER BY \"timestamp\", request_id LIMIT $2",
            self.settings.table.qualified()
        );
        let c = self.pool.get().await.map_err(DbError::from_pool)?;
        let rows = c
            .query(&sql, &[&since, &limit.max(0)])
            .await
            .map_err(|e| DbError::from_pg("reading records", &e))?;
        rows.iter().map(record_from_row).collect()
    }
}

fn empty() -> Summary {
    Summary::from_records(std::iter::empty())
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn distribution(r: &Row, count: u64, at: usize) -> Option<Distribution> {
    if count == 0 {
        return None;
    }
    let p: Vec<f64> = r.get::<_, Option<Vec<f64>>>(at + 3)?;
    Some(Distribution {
        count,
        mean: r.get::<_, Option<f64>>(at)?,
        min: r.get::<_, Option<f64>>(at + 1)?,
        max: r.get::<_, Option<f64>>(at + 2)?,
        p50: *p.first()?,
        p95: *p.get(1)?,
        p99: *p.get(2)?,
    })
}

/// Turn the [`SUMMARY_COLUMNS`] starting at column `o` into a [`Summary`].
fn summary_from_row(r: &Row, o: usize) -> Summary {
    let count = u(r.get(o));
    let errors = u(r.get(o + 1));
    Summary {
        count,
        errors,
        error_rate: if count == 0 { 0.0 } else { errors as f64 / count as f64 },
        latency_ms: distribution(r, count, o + 2),
        ttft_ms: distribution(r, u(r.get(o + 6)), o + 7),
        input_tokens: u(r.get(o + 11)),
        output_tokens: u(r.get(o + 12)),
        cached_tokens: u(r.get(o + 13)),
        cost_usd: r.get(o + 14),
        cost_unknown: u(r.get(o + 15)),
        retries: u(r.get(o + 16)),
    }
}

fn record_from_row(r: &Row) -> Result<AgentMetrics, StoreError> {
    let request_id: uuid::Uuid = r.get(0);
    let corrupt = |reason: String| StoreError::Corrupt { request_id, reason };
    let model: String = r.get(3);
    let provider: String = r.get(5);
    let mut m = AgentMetrics::new(provider, model);
    m.request_id = request_id;
    m.trace_id = r.get(1);
    m.timestamp = r.get(2);
    m.response_model = r.get(4);
    m.method = r
        .get::<_, String>(6)
        .parse::<Method>()
        .map_err(|e| corrupt(e.to_string()))?;
    m.latency_ms = r.get(7);
    m.ttft_ms = r.get(8);
    let nonneg = |i: usize, v: i64| u64::try_from(v).map_err(|_| corrupt(format!("negative {}", encode::COLUMNS[i].0)));
    m.input_tokens = nonneg(9, r.get(9))?;
    m.output_tokens = nonneg(10, r.get(10))?;
    m.cached_tokens = nonneg(11, r.get(11))?;
    m.cache_write_tokens = r.get::<_, Option<i64>>(12).map(|v| nonneg(12, v)).transpose()?;
    m.reasoning_tokens = r.get::<_, Option<i64>>(13).map(|v| nonneg(13, v)).transpose()?;
    m.cost_usd = r.get(14);
    let small = |i: usize, v: i64| u32::try_from(v).map_err(|_| corrupt(format!("{} out of range", encode::COLUMNS[i].0)));
    m.retries = small(15, r.get(15))?;
    m.error_class = r
        .get::<_, Option<String>>(16)
        .map(|s| s.parse::<ErrorClass>())
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    m.error_message = r.get(17);
    m.tools_used = r.get(18);
    m.tools_invoked = small(19, r.get(19))?;
    m.agent_loop_iters = small(20, r.get(20))?;
    m.agent_runtime = r.get(21);
    m.tags = r.get::<_, Json<BTreeMap<String, String>>>(22).0;
    m.sample_weight = r.get(23);
    Ok(m)
}
