//! The configuration error shared by the builder, the table reference and
//! the TLS setup.

/// Errors in the sink's or the store's configuration. Never contains the
/// password: connection strings appear only in redacted form.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The connection string could not be parsed.
    #[error("invalid PostgreSQL connection string: {reason}")]
    InvalidUrl {
        /// What was wrong (names the option, never its value).
        reason: String,
    },
    /// A schema or table name cannot be used.
    #[error("invalid {what} name: {reason}")]
    InvalidIdentifier {
        /// `schema` or `table`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// `sslmode=require` was asked for, but the crate was built without the
    /// `tls` feature.
    #[error("the connection string asks for TLS (sslmode=require) but steer-sink-postgres was built without its `tls` feature")]
    TlsNotEnabled,
    /// A CA certificate given with `ca_cert_pem` could not be used.
    #[error("invalid CA certificate: {0}")]
    InvalidCaCert(String),
    /// The connection pool could not be built.
    #[error("could not build the connection pool: {0}")]
    Pool(String),
}
