//! Reading back: summary statistics computed in PostgreSQL with the same
//! definitions as [`steer_metrics::summary`], and the stored records.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use steer_metrics::summary::{Distribution, Summary};
use steer_metrics::{AgentMetrics, ErrorClass, Method};
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

/// Queries over the metrics table: summaries and time series through
/// [`SummaryStore`](steer_metrics::SummaryStore) (a [`StatsQuery`](steer_metrics::StatsQuery),
/// aggregated in the database), and [`count`](Self::count) and
/// [`records`](Self::records) of the stored rows.
///
/// Numbers mean the same as [`Summary::from_records`] over the same records:
/// percentiles are `percentile_cont` (linear interpolation), costs sum the
/// known ones and count the unknown ones.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use steer_sink_postgres::PostgresStore;
/// use steer_metrics::{GroupKey, StatsQuery, SummaryStore};
/// let store = PostgresStore::connect("postgres://app@127.0.0.1/metrics").await?;
/// let q = StatsQuery::new().last(std::time::Duration::from_secs(86_400)).by(GroupKey::Model);
/// let report = store.summary(&q).await?;
/// let all = &report.total;
/// println!("{} calls, p95 {:?} ms, {} models", all.count, all.latency_ms.map(|d| d.p95), report.groups.len());
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

pub(crate) const SUMMARY_COLUMNS: &str = r#"
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
    LEAST(coalesce(sum(retries), 0), 9223372036854775807)::int8,
    count(*) FILTER (WHERE cost_usd IS NULL AND error_class IS NULL)::int8,
    LEAST(coalesce(sum(reasoning_tokens), 0), 9223372036854775807)::int8,
    LEAST(coalesce(sum(cache_write_tokens), 0), 9223372036854775807)::int8"#;

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

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
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

    /// Number of stored records with `timestamp >= since` (all when `None`).
    pub async fn count(&self, since: Option<DateTime<Utc>>) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT count(*)::int8 FROM {} WHERE ($1::timestamptz IS NULL OR \"timestamp\" >= $1)",
            self.settings.table.qualified()
        );
        let rows = self.query(&sql, since).await?;
        rows.first().map_or(Ok(0), |r| Ok(u(col(r, 0)?)))
    }

    /// Stored records with `timestamp >= since` (all when `None`), oldest
    /// first, at most `limit`. Timestamps come back at PostgreSQL's
    /// microsecond precision.
    pub async fn records(
        &self,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<AgentMetrics>, StoreError> {
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

/// A column of a result row, as a [`StoreError`] instead of a panic when the
/// table does not have the expected shape.
pub(crate) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, StoreError> {
    r.try_get(i).map_err(|e| {
        StoreError::Db(DbError {
            class: Class::Permanent,
            sqlstate: None,
            message: format!("unexpected value in result column {i}: {e}"),
        })
    })
}

pub(crate) fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn distribution(r: &Row, count: u64, at: usize) -> Result<Option<Distribution>, StoreError> {
    if count == 0 {
        return Ok(None);
    }
    let p: Option<Vec<f64>> = col(r, at + 3)?;
    let (Some(mean), Some(min), Some(max), Some(p)) = (
        col::<Option<f64>>(r, at)?,
        col::<Option<f64>>(r, at + 1)?,
        col::<Option<f64>>(r, at + 2)?,
        p,
    ) else {
        return Ok(None);
    };
    let (Some(&p50), Some(&p95), Some(&p99)) = (p.first(), p.get(1), p.get(2)) else {
        return Ok(None);
    };
    Ok(Some(Distribution {
        count,
        mean,
        min,
        max,
        p50,
        p95,
        p99,
    }))
}

/// Turn the [`SUMMARY_COLUMNS`] starting at column `o` into a [`Summary`].
pub(crate) fn summary_from_row(r: &Row, o: usize) -> Result<Summary, StoreError> {
    let count = u(col(r, o)?);
    let errors = u(col(r, o + 1)?);
    Ok(Summary {
        count,
        errors,
        error_rate: if count == 0 {
            0.0
        } else {
            errors as f64 / count as f64
        },
        latency_ms: distribution(r, count, o + 2)?,
        ttft_ms: distribution(r, u(col(r, o + 6)?), o + 7)?,
        input_tokens: u(col(r, o + 11)?),
        output_tokens: u(col(r, o + 12)?),
        cached_tokens: u(col(r, o + 13)?),
        reasoning_tokens: u(col(r, o + 18)?),
        cache_write_tokens: u(col(r, o + 19)?),
        cost_usd: col(r, o + 14)?,
        cost_unknown: u(col(r, o + 15)?),
        unpriced: u(col(r, o + 17)?),
        retries: u(col(r, o + 16)?),
    })
}

fn record_from_row(r: &Row) -> Result<AgentMetrics, StoreError> {
    let request_id: uuid::Uuid = col(r, 0)?;
    let corrupt = |reason: String| StoreError::Corrupt { request_id, reason };
    let mut m = AgentMetrics::new(col::<String>(r, 5)?, col::<String>(r, 3)?);
    m.request_id = request_id;
    m.trace_id = col(r, 1)?;
    m.timestamp = col(r, 2)?;
    m.response_model = col(r, 4)?;
    m.method = col::<String>(r, 6)?
        .parse::<Method>()
        .map_err(|e| corrupt(e.to_string()))?;
    m.latency_ms = col(r, 7)?;
    m.ttft_ms = col(r, 8)?;
    let big = |i: usize| -> Result<u64, StoreError> {
        u64::try_from(col::<i64>(r, i)?).map_err(|_| corrupt(format!("negative {}", encode::COLUMNS[i].0)))
    };
    let opt_big = |i: usize| -> Result<Option<u64>, StoreError> {
        col::<Option<i64>>(r, i)?
            .map(|v| u64::try_from(v).map_err(|_| corrupt(format!("negative {}", encode::COLUMNS[i].0))))
            .transpose()
    };
    let small = |i: usize| -> Result<u32, StoreError> {
        u32::try_from(col::<i64>(r, i)?)
            .map_err(|_| corrupt(format!("{} out of range", encode::COLUMNS[i].0)))
    };
    m.input_tokens = big(9)?;
    m.output_tokens = big(10)?;
    m.cached_tokens = big(11)?;
    m.cache_write_tokens = opt_big(12)?;
    m.reasoning_tokens = opt_big(13)?;
    m.cost_usd = col(r, 14)?;
    m.retries = small(15)?;
    m.error_class = col::<Option<String>>(r, 16)?
        .map(|s| s.parse::<ErrorClass>())
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    m.error_message = col(r, 17)?;
    m.tools_used = col(r, 18)?;
    m.tools_invoked = small(19)?;
    m.agent_loop_iters = small(20)?;
    m.agent_runtime = col(r, 21)?;
    m.tags = col::<Json<BTreeMap<String, String>>>(r, 22)?.0;
    m.sample_weight = col(r, 23)?;
    m.finish_reason = col(r, 24)?;
    m.cache_write_1h_tokens = opt_big(25)?;
    Ok(m)
}
