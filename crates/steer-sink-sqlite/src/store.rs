//! Reading a store: the read-only connection, record queries and the
//! time span (summaries and time series are in `query.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use steer_metrics::query::StatsQuery;
use steer_metrics::AgentMetrics;

use crate::encode;
use crate::error::{SqliteError, SqliteResultExt};
use crate::query::where_sql;
use crate::schema::{self, Table, DEFAULT_TABLE};

/// The start times of the first and the last record of a selection.
pub type TimeSpan = (DateTime<Utc>, DateTime<Utc>);

/// A read-only view of a store, for reports (`steer stats`) and tests.
///
/// Opens with `SQLITE_OPEN_READ_ONLY`: it never creates, migrates or locks
/// out a writer. Thanks to WAL mode, queries run while a
/// [`SqliteSink`](crate::SqliteSink) writes, and see the batches committed
/// before the query started.
///
/// Every question is a [`StatsQuery`]: [`query_summary`](Self::query_summary)
/// and [`query_timeseries`](Self::query_timeseries) answer with the numbers
/// of every other store (the shared `Aggregator`), [`records`](Self::records)
/// and [`time_span`](Self::time_span) select with its window and filters.
///
/// The methods block (SQLite is synchronous); in async code call them from
/// `tokio::task::spawn_blocking`.
pub struct SqliteStore {
    path: PathBuf,
    table: Table,
    conn: Mutex<Connection>,
    /// The file's schema version: the hourly rollup from v3, the tag
    /// rollup from v4.
    file_version: i64,
    /// Whether queries use it (see [`SqliteStore::rollup`]).
    use_rollup: bool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("table", &self.table.name())
            .finish()
    }
}

/// Open `path` with `immutable=1`: no lock, no `-wal`/`-shm` files touched.
fn open_immutable(path: &Path) -> Option<Connection> {
    let abs = std::path::absolute(path).ok()?;
    let text = abs.to_str()?;
    let mut uri = String::from("file:");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .ok()
}

impl SqliteStore {
    /// Open the store at `path` (table `llm_metrics`) for reading.
    ///
    /// Errors: [`SqliteError::NotFound`] when the file is missing,
    /// [`SqliteError::NotAStore`] when it is not a steer store (not SQLite,
    /// another application's database, no such table),
    /// [`SqliteError::SchemaTooNew`] when a newer steer wrote it.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        Self::open_read_only_table(path, DEFAULT_TABLE)
    }

    /// Like [`open_read_only`](Self::open_read_only) for another table.
    pub fn open_read_only_table(path: impl AsRef<Path>, table: &str) -> Result<Self, SqliteError> {
        let path = path.as_ref();
        let table = Table::new(table)?;
        match path.try_exists() {
            Ok(true) => {}
            Ok(false) => {
                return Err(SqliteError::NotFound {
                    path: path.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(SqliteError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        if path.is_dir() {
            return Err(SqliteError::NotAStore {
                path: path.to_path_buf(),
                reason: "it is a directory".into(),
            });
        }
        let open = || -> Result<(Connection, i64), SqliteError> {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| schema::classify_open_error(e, path, "opening the database"))?;
            conn.busy_timeout(Duration::from_secs(5))
                .ctx("setting the busy timeout")?;
            let version = schema::check_readable(&conn, &table, path)?;
            Ok((conn, version))
        };
        let (conn, version) = match open() {
            Ok(opened) => opened,
            Err(e @ (SqliteError::NotAStore { .. } | SqliteError::SchemaTooNew { .. })) => return Err(e),
            // A WAL database in a directory we cannot write (a read-only
            // mount, a 0555 directory) cannot create its `-shm` file: read
            // the file as immutable instead (what was checkpointed).
            Err(e) => match open_immutable(path) {
                Some(conn) => {
                    let version = schema::check_readable(&conn, &table, path)?;
                    tracing::debug!(path = %path.display(), "sqlite store: read-only location, opened immutable");
                    (conn, version)
                }
                None => return Err(e),
            },
        };
        Ok(SqliteStore {
            path: path.to_path_buf(),
            table,
            conn: Mutex::new(conn),
            file_version: version,
            use_rollup: true,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table queried.
    pub fn table(&self) -> &str {
        self.table.name()
    }

    /// Whether queries use the hourly rollup: the file has one (schema v3)
    /// and it was not turned off with [`rollup`](Self::rollup).
    pub fn has_rollup(&self) -> bool {
        self.file_version >= 3 && self.use_rollup
    }

    /// The file's schema version (`PRAGMA user_version`) when opened: 3
    /// and up have the hourly rollup, 4 and up the tag rollup.
    pub fn schema_version(&self) -> i64 {
        self.file_version
    }

    /// Whether queries by tag use the tag rollup: as
    /// [`has_rollup`](Self::has_rollup), for a file at schema v4.
    pub(crate) fn has_tag_rollup(&self) -> bool {
        self.file_version >= 4 && self.use_rollup
    }

    /// Answer queries from the hourly rollup where it can (the default when
    /// the file has one) or always by scanning the rows (`false`): the two
    /// give the same numbers; turning it off is for comparing them and for
    /// benchmarks. On a file without a rollup (schema v2, opened read-only)
    /// queries scan either way.
    #[must_use]
    pub fn rollup(mut self, on: bool) -> Self {
        self.use_rollup = on;
        self
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done state behind:
        // every query is a single read statement.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of stored records.
    pub fn count(&self) -> Result<u64, SqliteError> {
        let n: i64 = self
            .conn()
            .query_row(
                &format!("SELECT count(*) FROM \"{}\"", self.table.name()),
                [],
                |r| r.get(0),
            )
            .ctx("counting records")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The first and last start times of the records `q` selects (its
    /// window and filters), `None` when none match.
    pub fn time_span(&self, q: &StatsQuery) -> Result<Option<TimeSpan>, SqliteError> {
        let (where_sql, params) = where_sql(q);
        let sql = format!(
            "SELECT min(ts), max(ts) FROM \"{}\"{where_sql}",
            self.table.name()
        );
        let conn = self.conn();
        let (lo, hi): (Option<i64>, Option<i64>) = conn
            .query_row(&sql, rusqlite::params_from_iter(params), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .ctx("reading the time span")?;
        let to_time = |us: i64| {
            DateTime::from_timestamp_micros(us).ok_or(SqliteError::Decode {
                row_id: -1,
                column: "ts",
                reason: format!("{us} is out of range"),
            })
        };
        match (lo, hi) {
            (Some(lo), Some(hi)) => Ok(Some((to_time(lo)?, to_time(hi)?))),
            _ => Ok(None),
        }
    }

    /// The records `q` selects (its window and filters; the breakdown,
    /// step and limits do not apply), in the order they were stored.
    pub fn records(&self, q: &StatsQuery) -> Result<Vec<AgentMetrics>, SqliteError> {
        let (where_sql, params) = where_sql(q);
        let sql = format!(
            "SELECT {} FROM \"{}\"{where_sql} ORDER BY id",
            encode::record_columns(),
            self.table.name()
        );
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql).ctx("preparing the records query")?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .ctx("running the records query")?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().ctx("reading records")? {
            out.push(encode::decode(row)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rusqlite::types::Value;

    #[test]
    fn where_sql_numbers_parameters_in_order() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let q = StatsQuery::new()
            .since(t)
            .filter("provider=openai".parse().unwrap());
        let (sql, params) = where_sql(&q);
        assert_eq!(sql, " WHERE ts >= ?1 AND provider = ?2");
        assert_eq!(
            params,
            vec![
                Value::Integer(1_700_000_000_000_000),
                Value::Text("openai".into())
            ]
        );
        assert_eq!(where_sql(&StatsQuery::new()).0, "");
    }
}
