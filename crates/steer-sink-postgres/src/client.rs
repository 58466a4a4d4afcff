//! I/O: the connection pool, the batched write, and the classification of
//! PostgreSQL errors into retryable / permanent.

use std::pin::pin;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;

use crate::config::{ConfigError, ConnSettings};
use crate::encode::{self, Row};
use crate::schema::TableRef;

/// How a failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Transient (connection lost, server starting or shutting down,
    /// serialization failure, out of resources): try again later.
    Retryable,
    /// Caused by the data of some record (22xxx data exception, 23xxx
    /// constraint): the batch should be split to find it.
    BadData,
    /// Fails whatever the data (42xxx privileges / undefined objects, 28xxx
    /// authentication, 3D000 no such database ...): the sink, not the
    /// record, is wrong; the whole batch fails at once as
    /// [`SinkError::misconfigured`](steer_metrics::SinkError::misconfigured).
    Permanent,
}

/// Classify by SQLSTATE; `None` (no server answer: I/O error, closed
/// connection, timeout) is retryable.
pub fn classify_state(state: Option<&SqlState>) -> Class {
    let Some(code) = state.map(SqlState::code) else {
        return Class::Retryable;
    };
    match &code[..2] {
        // data exception, integrity constraint violation, program limit
        // exceeded (54000: e.g. a 1 MB model name makes an index row too
        // large) — all caused by some record's values: isolate them
        "22" | "23" | "54" => Class::BadData,
        // syntax error or access rule violation (42501 insufficient privilege,
        // 42P01 undefined table ...), invalid authorization, invalid catalog /
        // schema name, feature not supported, invalid role
        "42" | "28" | "3D" | "3F" | "0A" | "0L" | "0P" => Class::Permanent,
        // connection exception, operator intervention (57P01 admin shutdown,
        // 57P03 cannot connect now), serialization failure / deadlock,
        // insufficient resources, lock not available, system error
        "08" | "57" | "40" | "53" | "55" | "58" => Class::Retryable,
        _ => Class::Retryable,
    }
}

/// Classify a driver error.
pub fn classify(e: &tokio_postgres::Error) -> Class {
    classify_state(e.code())
}

/// An error from the pool or the database, classified, with a message that
/// never contains the password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    /// How to handle it.
    pub class: Class,
    /// The SQLSTATE, when the server answered.
    pub sqlstate: Option<String>,
    /// Human-readable, secret-free description.
    pub message: String,
}

impl DbError {
    pub(crate) fn from_pg(context: &str, e: &tokio_postgres::Error) -> Self {
        #[allow(unused_mut)]
        let mut class = classify(e);
        #[cfg(feature = "tls")]
        if crate::tls::is_certificate_error(e) {
            // Retrying will not make an untrusted certificate trusted.
            class = Class::Permanent;
        }
        let sqlstate = e.code().map(|c| c.code().to_string());
        let mut message = match e.as_db_error() {
            Some(db) => {
                let mut m = format!("{context}: {} (SQLSTATE {})", db.message(), db.code().code());
                if let Some(d) = db.detail() {
                    m.push_str(&format!("; detail: {d}"));
                }
                m
            }
            None => {
                // Walk the source chain: "error connecting to server: Connection refused".
                let mut m = format!("{context}: {e}");
                let mut src = std::error::Error::source(e);
                while let Some(s) = src {
                    m.push_str(&format!(": {s}"));
                    src = s.source();
                }
                m
            }
        };
        if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            message.push_str(
                " — the role needs USAGE on the schema and SELECT, INSERT on the table \
                 (plus CREATE on the schema to create it), or build the sink with migrate(false) \
                 after creating the schema as an owner",
            );
        }
        DbError {
            class,
            sqlstate,
            message,
        }
    }

    pub(crate) fn from_pool(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => Self::from_pg("connecting", &e),
            PoolError::Timeout(t) => DbError {
                class: Class::Retryable,
                sqlstate: None,
                message: format!("timed out waiting for a database connection ({t:?})"),
            },
            PoolError::Closed => DbError {
                class: Class::Permanent,
                sqlstate: None,
                message: "the connection pool is closed".into(),
            },
            other => DbError {
                class: Class::Permanent,
                sqlstate: None,
                message: format!("connection pool error: {other}"),
            },
        }
    }
}

/// Build the pool (does not connect).
pub(crate) fn pool(s: &ConnSettings) -> Result<Pool, ConfigError> {
    let mgr_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    #[cfg(feature = "tls")]
    let mgr = Manager::from_config(s.pg.clone(), crate::tls::connector(&s.ca_certs_pem)?, mgr_config);
    #[cfg(not(feature = "tls"))]
    let mgr = {
        if !s.ca_certs_pem.is_empty() {
            tracing::warn!("ca_cert_pem ignored: steer-sink-postgres was built without the `tls` feature");
        }
        Manager::from_config(s.pg.clone(), tokio_postgres::NoTls, mgr_config)
    };
    let connect = s.pg.get_connect_timeout().copied().unwrap_or(s.connect_timeout);
    Pool::builder(mgr)
        .max_size(s.pool_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(connect + Duration::from_secs(1)))
        .wait_timeout(Some(Duration::from_secs(30)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| ConfigError::Pool(e.to_string()))
}

/// How a batch was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    /// Binary COPY straight into the table (no row was already there).
    Direct,
    /// COPY into the staging table, then `INSERT ... ON CONFLICT DO NOTHING`.
    Deduplicated,
}

/// Write rows exactly once by `request_id`, in one transaction.
///
/// Normally the rows go with one binary COPY straight into the table: the
/// primary key on `request_id` makes the COPY fail as a whole (unique
/// violation) if any row is already stored. Then, or straight away when
/// `expect_duplicates` (the batch is a retry), the rows go with binary
/// COPY into a per-session temporary staging table and are moved with
/// `INSERT ... SELECT ... ON CONFLICT (request_id) DO NOTHING`, so a batch
/// sent again (after a timeout or a lost connection whose commit did in
/// fact happen) adds nothing. Returns the number of rows newly inserted
/// and the path taken.
pub(crate) async fn write_rows(
    client: &mut tokio_postgres::Client,
    t: &TableRef,
    rows: &[(usize, Row<'_>)],
    expect_duplicates: bool,
) -> Result<(u64, WritePath), tokio_postgres::Error> {
    if !expect_duplicates {
        match copy_direct(client, t, rows).await {
            Ok(n) => return Ok((n, WritePath::Direct)),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                tracing::debug!(table = %t.qualified(), "batch holds rows already stored; de-duplicating");
            }
            Err(e) => return Err(e),
        }
    }
    Ok((copy_dedup(client, t, rows).await?, WritePath::Deduplicated))
}

async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    into: &str,
    rows: &[(usize, Row<'_>)],
) -> Result<u64, tokio_postgres::Error> {
    let copy = tx
        .copy_in(&format!(
            "COPY {into} ({}) FROM STDIN (FORMAT binary)",
            encode::column_list()
        ))
        .await?;
    let mut writer = pin!(BinaryCopyInWriter::new(copy, &encode::column_types()));
    for (_, row) in rows {
        writer.as_mut().write(&row.values()).await?;
    }
    writer.finish().await
}

async fn copy_direct(
    client: &mut tokio_postgres::Client,
    t: &TableRef,
    rows: &[(usize, Row<'_>)],
) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let n = copy_rows(&tx, &t.qualified(), rows).await?;
    tx.commit().await?;
    Ok(n)
}

async fn copy_dedup(
    client: &mut tokio_postgres::Client,
    t: &TableRef,
    rows: &[(usize, Row<'_>)],
) -> Result<u64, tokio_postgres::Error> {
    let staging = t.staging_table();
    let columns = encode::column_list();
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        target = t.qualified()
    ))
    .await?;
    copy_rows(&tx, &staging, rows).await?;
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging} ON CONFLICT (request_id) DO NOTHING",
                target = t.qualified()
            ),
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        use Class::*;
        let cases = [
            (SqlState::ADMIN_SHUTDOWN, Retryable),
            (SqlState::CANNOT_CONNECT_NOW, Retryable),
            (SqlState::CONNECTION_FAILURE, Retryable),
            (SqlState::T_R_SERIALIZATION_FAILURE, Retryable),
            (SqlState::T_R_DEADLOCK_DETECTED, Retryable),
            (SqlState::TOO_MANY_CONNECTIONS, Retryable),
            (SqlState::DISK_FULL, Retryable),
            (SqlState::LOCK_NOT_AVAILABLE, Retryable),
            (SqlState::CHARACTER_NOT_IN_REPERTOIRE, BadData),
            (SqlState::PROGRAM_LIMIT_EXCEEDED, BadData),
            (SqlState::NUMERIC_VALUE_OUT_OF_RANGE, BadData),
            (SqlState::NOT_NULL_VIOLATION, BadData),
            (SqlState::UNIQUE_VIOLATION, BadData),
            (SqlState::INSUFFICIENT_PRIVILEGE, Permanent),
            (SqlState::UNDEFINED_TABLE, Permanent),
            (SqlState::UNDEFINED_COLUMN, Permanent),
            (SqlState::INVALID_PASSWORD, Permanent),
            (SqlState::INVALID_CATALOG_NAME, Permanent),
        ];
        for (state, class) in cases {
            assert_eq!(classify_state(Some(&state)), class, "{}", state.code());
        }
        assert_eq!(classify_state(None), Retryable);
    }
}
