//! The table's schema: versioned migrations (the table reference and
//! identifier quoting live in `table` and are re-exported here).
//!
//! Migrations are applied in order, each once, each in its own transaction
//! holding a transaction-level advisory lock derived from the table's name,
//! so any number of processes can start at once. Applied versions are kept
//! in `<table>_migrations` next to the table.
//!
//! Only configuration (the schema and table names) is ever interpolated
//! into SQL, always quoted with [`quote_ident`]; record values always travel
//! as parameters or binary COPY data.

pub use crate::table::{quote_ident, TableRef, MAX_TABLE_NAME};

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, from 1, strictly increasing.
    pub version: i32,
    /// Short description.
    pub name: &'static str,
    sql: fn(&TableRef) -> String,
}

impl Migration {
    /// The SQL of this migration for a table.
    pub fn sql(&self, t: &TableRef) -> String {
        (self.sql)(t)
    }
}

/// Every migration, in order. Never edit a released migration: add one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create metrics table",
        sql: v1,
    },
    Migration {
        version: 2,
        name: "finish reason and 1-hour cache writes",
        sql: v2,
    },
];

/// The latest schema version.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn v1(t: &TableRef) -> String {
    let q = t.qualified();
    format!(
        r#"CREATE TABLE {q} (
    request_id          uuid             NOT NULL,
    trace_id            text,
    "timestamp"         timestamptz      NOT NULL,
    model               text             NOT NULL,
    response_model      text,
    provider            text             NOT NULL,
    method              text             NOT NULL,
    latency_ms          double precision NOT NULL,
    ttft_ms             double precision,
    input_tokens        bigint           NOT NULL DEFAULT 0,
    output_tokens       bigint           NOT NULL DEFAULT 0,
    cached_tokens       bigint           NOT NULL DEFAULT 0,
    cache_write_tokens  bigint,
    reasoning_tokens    bigint,
    cost_usd            numeric,
    retries             bigint           NOT NULL DEFAULT 0,
    error_class         text,
    error_message       text,
    tools_used          text[]           NOT NULL DEFAULT '{{}}',
    tools_invoked       bigint           NOT NULL DEFAULT 0,
    agent_loop_iters    bigint           NOT NULL DEFAULT 0,
    agent_runtime       text,
    tags                jsonb            NOT NULL DEFAULT '{{}}',
    sample_weight       double precision NOT NULL DEFAULT 1,
    CONSTRAINT {pk} PRIMARY KEY (request_id)
);
CREATE INDEX {ts_idx} ON {q} ("timestamp");
CREATE INDEX {model_idx} ON {q} (model, "timestamp");
CREATE INDEX {provider_idx} ON {q} (provider, "timestamp");
CREATE INDEX {error_idx} ON {q} (error_class, "timestamp") WHERE error_class IS NOT NULL;
COMMENT ON TABLE {q} IS 'steer LLM call metrics: one row per logical call, unique by request_id';"#,
        pk = t.derived("_pkey"),
        ts_idx = t.derived("_timestamp_idx"),
        model_idx = t.derived("_model_timestamp_idx"),
        provider_idx = t.derived("_provider_timestamp_idx"),
        error_idx = t.derived("_error_class_timestamp_idx"),
    )
}

/// The provider's finish reason and the 1-hour part of the cache writes.
/// Rows written before have NULL: not reported.
fn v2(t: &TableRef) -> String {
    let q = t.qualified();
    format!(
        r#"ALTER TABLE {q} ADD COLUMN IF NOT EXISTS finish_reason text;
ALTER TABLE {q} ADD COLUMN IF NOT EXISTS cache_write_1h_tokens bigint;"#
    )
}

/// All the SQL a DBA needs to create the schema by hand (what the sink's
/// automatic migration would run, without the bookkeeping).
pub fn migration_sql(t: &TableRef) -> String {
    let mut out = format!("CREATE SCHEMA IF NOT EXISTS {};\n", quote_ident(t.schema()));
    out.push_str(&bootstrap_sql(t));
    out.push('\n');
    for m in MIGRATIONS {
        out.push_str(&format!("-- {}: {}\n", m.version, m.name));
        out.push_str(&m.sql(t));
        out.push_str(&format!(
            "\nINSERT INTO {} (version, name) VALUES ({}, '{}');\n",
            t.migrations_table(),
            m.version,
            m.name.replace('\'', "''")
        ));
    }
    out
}

pub(crate) fn bootstrap_sql(t: &TableRef) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());",
        t.migrations_table()
    )
}

/// Bring the table to the latest version. Safe to run concurrently from
/// many processes. Returns the versions this call applied.
pub(crate) async fn migrate(
    client: &mut tokio_postgres::Client,
    t: &TableRef,
) -> Result<Vec<i32>, tokio_postgres::Error> {
    // Fast path: already current (needs only SELECT on the bookkeeping table).
    if current_version(client, t)
        .await?
        .is_some_and(|v| v >= latest_version())
    {
        return Ok(Vec::new());
    }
    let key = t.lock_key();
    {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key]).await?;
        let exists = tx
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&t.schema()])
            .await?
            .is_some();
        if !exists {
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(t.schema())
            ))
            .await?;
        }
        tx.batch_execute(&bootstrap_sql(t)).await?;
        tx.commit().await?;
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key]).await?;
        let done = tx
            .query_opt(
                &format!("SELECT 1 FROM {} WHERE version = $1", t.migrations_table()),
                &[&m.version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(&m.sql(t)).await?;
            tx.execute(
                &format!(
                    "INSERT INTO {} (version, name) VALUES ($1, $2)",
                    t.migrations_table()
                ),
                &[&m.version, &m.name],
            )
            .await?;
            tx.commit().await?;
            tracing::info!(table = %t.qualified(), version = m.version, migration = m.name, "applied migration");
            applied.push(m.version);
        }
    }
    Ok(applied)
}

/// The highest applied version, `None` when the bookkeeping table (or the
/// schema) does not exist yet.
pub(crate) async fn current_version(
    client: &tokio_postgres::Client,
    t: &TableRef,
) -> Result<Option<i32>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!(
                "{}.{}",
                quote_ident(t.schema()),
                quote_ident(&format!("{}_migrations", t.table()))
            )],
        )
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one(&format!("SELECT max(version) FROM {}", t.migrations_table()), &[])
        .await?;
    row.try_get::<_, Option<i32>>(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("llm_metrics"), "\"llm_metrics\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        let t = TableRef::new("my schema", "t\"x").unwrap();
        assert_eq!(t.qualified(), "\"my schema\".\"t\"\"x\"");
        assert_eq!(t.derived("_timestamp_idx"), "\"t\"\"x_timestamp_idx\"");
    }

    #[test]
    fn derived_names_fit_postgres_identifiers() {
        assert!(TableRef::new("s", &"t".repeat(MAX_TABLE_NAME)).is_ok());
        for suffix in [
            "_pkey",
            "_timestamp_idx",
            "_model_timestamp_idx",
            "_provider_timestamp_idx",
            "_error_class_timestamp_idx",
            "_migrations",
            "_staging",
        ] {
            assert!(MAX_TABLE_NAME + suffix.len() <= 63, "{suffix}");
        }
        assert!(TableRef::new("s", &"t".repeat(MAX_TABLE_NAME + 1)).is_err());
        // Every index name in the DDL is derived from the table name.
        let sql = v1(&TableRef::new("s", "my_table").unwrap());
        for line in sql.lines().filter(|l| l.starts_with("CREATE INDEX")) {
            assert!(line.starts_with("CREATE INDEX \"my_table_"), "{line}");
        }
    }

    #[test]
    fn lock_keys_differ_per_table_and_are_stable() {
        let a = TableRef::new("public", "llm_metrics").unwrap();
        let b = TableRef::new("other", "llm_metrics").unwrap();
        assert_ne!(a.lock_key(), b.lock_key());
        assert_eq!(
            a.lock_key(),
            TableRef::new("public", "llm_metrics").unwrap().lock_key()
        );
    }

    #[test]
    fn migrations_are_strictly_increasing() {
        let v: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(v.first(), Some(&1));
    }
}
