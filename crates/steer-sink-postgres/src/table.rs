//! Where the metrics live: the schema-qualified table, its derived names
//! and identifier quoting.
//!
//! Only configuration (the schema and table names) is ever interpolated
//! into SQL, always quoted with [`quote_ident`].

use crate::error::ConfigError;

/// Longest table name accepted, so that `<table>_error_class_timestamp_idx`
/// fits PostgreSQL's 63-byte identifiers (longer ones would be silently
/// truncated and could collide).
pub const MAX_TABLE_NAME: usize = 63 - LONGEST_SUFFIX.len();
const LONGEST_SUFFIX: &str = "_error_class_timestamp_idx";

/// Quote an identifier for PostgreSQL: wrap in `"` and double inner `"`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Where the metrics live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    schema: String,
    table: String,
}

impl TableRef {
    /// Validate names.
    pub fn new(schema: &str, table: &str) -> Result<Self, ConfigError> {
        check_identifier("schema", schema, 63)?;
        check_identifier("table", table, MAX_TABLE_NAME)?;
        Ok(TableRef {
            schema: schema.to_string(),
            table: table.to_string(),
        })
    }

    /// The schema name (unquoted).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The table name (unquoted).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }

    /// A name derived from the table (`<table><suffix>`), quoted, unqualified.
    pub fn derived(&self, suffix: &str) -> String {
        quote_ident(&format!("{}{suffix}", self.table))
    }

    /// `"schema"."<table><suffix>"`.
    pub fn qualified_derived(&self, suffix: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), self.derived(suffix))
    }

    /// The migrations bookkeeping table.
    pub fn migrations_table(&self) -> String {
        self.qualified_derived("_migrations")
    }

    /// The per-session staging table used for de-duplicating inserts.
    pub fn staging_table(&self) -> String {
        format!("pg_temp.{}", self.derived("_staging"))
    }

    /// Key of the advisory lock serialising migrations of this table
    /// (FNV-1a of `steer:<schema>.<table>`, stable across versions).
    pub fn lock_key(&self) -> i64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in format!("steer:{}.{}", self.schema, self.table).bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        i64::from_ne_bytes(h.to_ne_bytes())
    }
}

pub(crate) fn check_identifier(what: &'static str, name: &str, max: usize) -> Result<(), ConfigError> {
    let err = |reason: String| ConfigError::InvalidIdentifier { what, reason };
    if name.is_empty() {
        return Err(err("must not be empty".into()));
    }
    if name.len() > max {
        return Err(err(format!("`{name}` is longer than {max} bytes")));
    }
    if name.contains('\0') {
        return Err(err("contains a NUL byte".into()));
    }
    Ok(())
}
