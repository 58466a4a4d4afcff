//! The table layout and its versioned migrations.
//!
//! A steer store is an SQLite file marked with `PRAGMA application_id =
//! 0x53544552` ("STER"). `PRAGMA user_version` is the schema version of
//! every steer table in the file; the tables themselves are listed in
//! `steer_tables`, so a migration can be applied to each of them (a file may
//! hold several metrics tables under different names).
//!
//! Opening a file for writing creates the table (and its indexes and view)
//! when missing and applies pending migrations in one `IMMEDIATE`
//! transaction, so two processes opening the same new file do not race.
//! A file written by a newer steer (higher `user_version`) is refused with
//! [`SqliteError::SchemaTooNew`]; a file of another application is refused
//! with [`SqliteError::NotAStore`].

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::error::{SqliteError, SqliteResultExt};

/// The schema version this crate writes (and migrates older files to).
pub const SCHEMA_VERSION: i64 = 4;

/// The oldest schema version this crate reads without migrating: v2 has
/// every column a query reads; v3 adds the hourly rollup and v4 the tag
/// rollup, which queries use when they are there and do without (scanning
/// the rows) when not.
pub(crate) const MIN_READ_VERSION: i64 = 2;

/// `PRAGMA application_id` of a steer store: "STER" in ASCII.
pub const APPLICATION_ID: i64 = 0x5354_4552;

/// The registry of steer tables in a file.
const REGISTRY: &str = "steer_tables";

/// The default table name.
pub const DEFAULT_TABLE: &str = "llm_metrics";

/// Columns of a metrics table, in insert / select order (after the
/// `id INTEGER PRIMARY KEY` rowid alias, which keeps insertion order).
pub(crate) const COLUMNS: [&str; 26] = [
    "request_id",
    "ts",
    "model",
    "response_model",
    "provider",
    "method",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "retries",
    "error_class",
    "error_message",
    "tools_used",
    "tools_invoked",
    "agent_loop_iters",
    "agent_runtime",
    "tags",
    "sample_weight",
    "trace_id",
    "finish_reason",
    "cache_write_1h_tokens",
];

/// A validated table name: `[A-Za-z_][A-Za-z0-9_]*`, at most 48 bytes, not
/// starting with `sqlite_`. Index and view names are derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Table(String);

impl Table {
    pub(crate) fn new(name: &str) -> Result<Self, SqliteError> {
        let mut chars = name.chars();
        let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() <= 48
            && !name.to_ascii_lowercase().starts_with("sqlite_")
            && !name.eq_ignore_ascii_case(REGISTRY);
        if valid {
            Ok(Table(name.to_string()))
        } else {
            Err(SqliteError::InvalidTableName(name.to_string()))
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.0
    }

    /// `INSERT ... ON CONFLICT(request_id) DO NOTHING`: a record written
    /// twice (a retried batch) keeps its first row, while every other
    /// constraint still raises (unlike `INSERT OR IGNORE`).
    pub(crate) fn insert_sql(&self) -> String {
        let placeholders = (1..=COLUMNS.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO \"{t}\" ({cols}) VALUES ({placeholders}) ON CONFLICT(request_id) DO NOTHING",
            t = self.0,
            cols = COLUMNS.join(", "),
        )
    }
}

/// Version 1: the table, its indexes and the ISO-timestamp view.
fn v1(tx: &Transaction<'_>, t: &Table) -> rusqlite::Result<()> {
    let t = t.name();
    tx.execute_batch(&format!(
        r#"
CREATE TABLE "{t}" (
    id                 INTEGER PRIMARY KEY,   -- insertion order
    request_id         TEXT    NOT NULL,      -- UUID, hyphenated lower case
    ts                 INTEGER NOT NULL,      -- call start, unix microseconds (UTC)
    model              TEXT    NOT NULL,
    response_model     TEXT,
    provider           TEXT    NOT NULL,
    method             TEXT    NOT NULL,      -- generate | stream
    latency_ms         REAL,                  -- NULL: not a finite number
    ttft_ms            REAL,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cached_tokens      INTEGER NOT NULL,
    cache_write_tokens INTEGER,
    reasoning_tokens   INTEGER,
    cost_usd           REAL,                  -- NULL: unknown (never 0)
    retries            INTEGER NOT NULL,
    error_class        TEXT,                  -- NULL: success
    error_message      TEXT,
    tools_used         TEXT    NOT NULL,      -- JSON array of strings
    tools_invoked      INTEGER NOT NULL,
    agent_loop_iters   INTEGER NOT NULL,
    agent_runtime      TEXT,
    tags               TEXT    NOT NULL,      -- JSON object of strings
    sample_weight      REAL,
    trace_id           TEXT
);
CREATE UNIQUE INDEX "{t}_request_id_key" ON "{t}" (request_id);
CREATE INDEX "{t}_ts_idx" ON "{t}" (ts);
CREATE INDEX "{t}_model_ts_idx" ON "{t}" (model, ts);
CREATE INDEX "{t}_provider_ts_idx" ON "{t}" (provider, ts);
CREATE INDEX "{t}_error_class_ts_idx" ON "{t}" (error_class, ts) WHERE error_class IS NOT NULL;
CREATE VIEW "{t}_view" AS
    SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ts / 1000000.0, 'unixepoch') AS ts_iso, *
    FROM "{t}";
"#
    ))
}

/// Version 2: the provider's finish reason and 1-hour cache writes (the
/// part of `cache_write_tokens` billed at the 1-hour rate). Rows written
/// before have NULL: not reported.
fn v2(tx: &Transaction<'_>, t: &Table) -> rusqlite::Result<()> {
    let t = t.name();
    tx.execute_batch(&format!(
        r#"
ALTER TABLE "{t}" ADD COLUMN finish_reason TEXT;
ALTER TABLE "{t}" ADD COLUMN cache_write_1h_tokens INTEGER;
"#
    ))
}

type Migration = fn(&Transaction<'_>, &Table) -> rusqlite::Result<()>;

/// `MIGRATIONS[i]` brings a table from version `i` to `i + 1`.
const MIGRATIONS: [Migration; SCHEMA_VERSION as usize] = [v1, v2, crate::rollup::v3, crate::rollup::v4];

/// What a file says about itself.
struct Header {
    application_id: i64,
    user_version: i64,
}

fn header(conn: &Connection, path: &Path) -> Result<Header, SqliteError> {
    let read = |pragma: &str| -> Result<i64, SqliteError> {
        conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
            .map_err(|e| classify_open_error(e, path, "reading the database header"))
    };
    Ok(Header {
        application_id: read("application_id")?,
        user_version: read("user_version")?,
    })
}

/// Map the errors SQLite gives for a file that is not a database.
pub(crate) fn classify_open_error(e: rusqlite::Error, path: &Path, context: &'static str) -> SqliteError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => SqliteError::NotAStore {
            path: path.to_path_buf(),
            reason: "the file is not an SQLite database".into(),
        },
        Some(ErrorCode::DatabaseCorrupt) => SqliteError::NotAStore {
            path: path.to_path_buf(),
            reason: "the database file is corrupt".into(),
        },
        _ => SqliteError::sqlite(context, e),
    }
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
}

fn registered(conn: &Connection, table: &Table) -> rusqlite::Result<bool> {
    if !table_exists(conn, REGISTRY)? {
        return Ok(false);
    }
    conn.query_row(
        &format!("SELECT 1 FROM {REGISTRY} WHERE name = ?1"),
        [table.name()],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
}

fn check_header(h: &Header, path: &Path) -> Result<(), SqliteError> {
    if h.application_id != 0 && h.application_id != APPLICATION_ID {
        return Err(SqliteError::NotAStore {
            path: path.to_path_buf(),
            reason: format!(
                "the database belongs to another application (application_id {:#x})",
                h.application_id
            ),
        });
    }
    if h.application_id == 0 && h.user_version != 0 {
        return Err(SqliteError::NotAStore {
            path: path.to_path_buf(),
            reason: format!(
                "the database belongs to another application (user_version {})",
                h.user_version
            ),
        });
    }
    if h.user_version > SCHEMA_VERSION {
        return Err(SqliteError::SchemaTooNew {
            path: path.to_path_buf(),
            found: h.user_version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Check, without writing, that the file may be opened for writing: an
/// SQLite database that is empty or a steer store no newer than this crate.
pub(crate) fn inspect(conn: &Connection, path: &Path) -> Result<(), SqliteError> {
    check_header(&header(conn, path)?, path)
}

/// Bring `table` in the file to [`SCHEMA_VERSION`], creating it if missing.
pub(crate) fn migrate(conn: &mut Connection, table: &Table, path: &Path) -> Result<(), SqliteError> {
    // Read the header first: on a file that is not a database this is where
    // SQLite notices, and we want the typed error rather than a failed BEGIN.
    inspect(conn, path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("starting the schema transaction")?;
    // Re-read under the write lock: another process may have migrated.
    let h = header(&tx, path)?;
    check_header(&h, path)?;
    let from = if h.application_id == APPLICATION_ID {
        h.user_version
    } else {
        0
    };

    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {REGISTRY} (
            name       TEXT PRIMARY KEY,
            created_us INTEGER NOT NULL
        );"
    ))
    .ctx("creating the table registry")?;

    // Existing steer tables move from `from` to the current version.
    let tables: Vec<Table> = if from == 0 {
        Vec::new()
    } else {
        let mut stmt = tx
            .prepare(&format!("SELECT name FROM {REGISTRY} ORDER BY name"))
            .ctx("listing steer tables")?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .ctx("listing steer tables")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx("listing steer tables")?;
        names.iter().filter_map(|n| Table::new(n).ok()).collect()
    };
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        for t in &tables {
            migration(&tx, t).ctx("migrating the schema")?;
            tracing::info!(table = t.name(), to = i + 1, "sqlite store: migrated table");
        }
    }

    // The requested table: create it at the current version.
    if !registered(&tx, table).ctx("reading the table registry")? {
        if table_exists(&tx, table.name()).ctx("reading the schema")? {
            return Err(SqliteError::NotAStore {
                path: path.to_path_buf(),
                reason: format!("table `{}` exists but was not created by steer", table.name()),
            });
        }
        for migration in MIGRATIONS {
            migration(&tx, table).ctx("creating the metrics table")?;
        }
        tx.execute(
            &format!("INSERT INTO {REGISTRY} (name, created_us) VALUES (?1, ?2)"),
            rusqlite::params![table.name(), chrono::Utc::now().timestamp_micros()],
        )
        .ctx("registering the metrics table")?;
        tracing::debug!(table = table.name(), path = %path.display(), "sqlite store: created table");
    }

    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .ctx("stamping the schema version")?;
    tx.commit().ctx("committing the schema")?;
    Ok(())
}

/// Check, without writing, that `table` in the file can be read by this
/// version; returns the file's schema version.
pub(crate) fn check_readable(conn: &Connection, table: &Table, path: &Path) -> Result<i64, SqliteError> {
    let h = header(conn, path)?;
    if h.application_id != APPLICATION_ID {
        return Err(SqliteError::NotAStore {
            path: path.to_path_buf(),
            reason: if h.application_id == 0 {
                "the database was not written by steer".into()
            } else {
                format!(
                    "the database belongs to another application (application_id {:#x})",
                    h.application_id
                )
            },
        });
    }
    check_header(&h, path)?;
    if h.user_version < MIN_READ_VERSION {
        return Err(SqliteError::SchemaTooOld {
            path: path.to_path_buf(),
            found: h.user_version,
            supported: MIN_READ_VERSION,
        });
    }
    if !registered(conn, table).ctx("reading the table registry")? {
        return Err(SqliteError::NotAStore {
            path: path.to_path_buf(),
            reason: format!("the database has no steer table `{}`", table.name()),
        });
    }
    Ok(h.user_version)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        for ok in ["llm_metrics", "_x", "Metrics2"] {
            assert!(Table::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "x\"; DROP TABLE y; --",
            "sqlite_master",
            "steer_tables",
            "é",
            &"a".repeat(49),
        ] {
            assert!(
                matches!(Table::new(bad), Err(SqliteError::InvalidTableName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn insert_sql_names_every_column_once() {
        let sql = Table::new("t").unwrap().insert_sql();
        assert!(sql.contains(&format!("?{})", COLUMNS.len())));
        assert!(!sql.contains(&format!("?{}", COLUMNS.len() + 1)));
        assert!(sql.ends_with("ON CONFLICT(request_id) DO NOTHING"));
    }

    #[test]
    fn migrating_twice_is_a_no_op_and_indexes_are_named_after_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = Connection::open(&path).unwrap();
        let t = Table::new("calls").unwrap();
        migrate(&mut conn, &t, &path).unwrap();
        migrate(&mut conn, &t, &path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'calls' ORDER BY name",
            )
            .unwrap();
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        drop(stmt);
        assert_eq!(
            names,
            [
                "calls_error_class_ts_idx",
                "calls_model_ts_idx",
                "calls_provider_ts_idx",
                "calls_request_id_key",
                "calls_ts_idx"
            ]
        );
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // A second table in the same file gets its own indexes.
        let t2 = Table::new("other").unwrap();
        migrate(&mut conn, &t2, &path).unwrap();
        check_readable(&conn, &t, &path).unwrap();
        check_readable(&conn, &t2, &path).unwrap();
    }

    #[test]
    fn a_foreign_table_of_the_same_name_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE llm_metrics (x INTEGER)")
            .unwrap();
        let err = migrate(&mut conn, &Table::new(DEFAULT_TABLE).unwrap(), &path).unwrap_err();
        assert!(matches!(err, SqliteError::NotAStore { .. }), "{err}");
    }
}
