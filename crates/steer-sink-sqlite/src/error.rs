//! Errors opening and querying a store.

use std::path::PathBuf;

/// What went wrong opening, writing or querying an SQLite metrics store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The file does not exist (read-only open).
    #[error("no metrics store at {}: the file does not exist", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The directory the store should be created in does not exist.
    #[error("cannot create the metrics store {}: directory {} does not exist", path.display(), dir.display())]
    MissingDirectory {
        /// The path given.
        path: PathBuf,
        /// Its missing parent directory.
        dir: PathBuf,
    },
    /// The file exists but is not a steer metrics store (not SQLite, corrupt,
    /// another application's database, or without the requested table).
    #[error("{} is not a steer metrics store: {reason}", path.display())]
    NotAStore {
        /// The path given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The store was written by a newer steer with a schema this version
    /// does not know.
    #[error(
        "{} has schema version {found}; this steer supports up to {supported}: upgrade steer to read it",
        path.display()
    )]
    SchemaTooNew {
        /// The path given.
        path: PathBuf,
        /// The file's schema version.
        found: i64,
        /// The newest version this crate knows.
        supported: i64,
    },
    /// The store has an older schema; opening it for writing (with
    /// [`SqliteSink`](crate::SqliteSink)) migrates it.
    #[error(
        "{} has schema version {found}, older than {supported}: open it for writing once to migrate it",
        path.display()
    )]
    SchemaTooOld {
        /// The path given.
        path: PathBuf,
        /// The file's schema version.
        found: i64,
        /// The version this crate reads.
        supported: i64,
    },
    /// A table name that is not a plain SQL identifier.
    #[error(
        "invalid table name `{0}`: use ASCII letters, digits and `_` (not starting with a digit), at most 48 characters"
    )]
    InvalidTableName(String),
    /// A stored row could not be turned back into a record.
    #[error("row {row_id}, column `{column}`: {reason}")]
    Decode {
        /// The row's `id`.
        row_id: i64,
        /// The column.
        column: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// The file system refused an operation on the store's path.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Any other SQLite error.
    #[error("sqlite error while {context}: {source}")]
    Sqlite {
        /// What was being done.
        context: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
}

impl SqliteError {
    pub(crate) fn sqlite(context: &'static str, source: rusqlite::Error) -> Self {
        SqliteError::Sqlite { context, source }
    }
}

/// `.ctx("doing x")` on rusqlite results.
pub(crate) trait SqliteResultExt<T> {
    fn ctx(self, context: &'static str) -> Result<T, SqliteError>;
}

impl<T> SqliteResultExt<T> for rusqlite::Result<T> {
    fn ctx(self, context: &'static str) -> Result<T, SqliteError> {
        self.map_err(|e| SqliteError::sqlite(context, e))
    }
}
