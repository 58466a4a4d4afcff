//! The builder: connection string parsing, redaction, table location and
//! pool settings.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::Host;

use crate::table::TableRef;

pub use crate::error::ConfigError;

/// Connection settings shared by [`PostgresSink`](crate::PostgresSink) and
/// [`PostgresStore`](crate::PostgresStore).
#[derive(Clone)]
pub(crate) struct ConnSettings {
    pub pg: tokio_postgres::Config,
    pub table: TableRef,
    pub pool_size: usize,
    pub write_concurrency: usize,
    pub connect_timeout: Duration,
    pub ca_certs_pem: Vec<Vec<u8>>,
}

impl fmt::Debug for ConnSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnSettings")
            .field("url", &redacted(&self.pg))
            .field("table", &self.table)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Parse a `postgres://` URL or a `key=value` connection string.
pub(crate) fn parse_url(url: &str) -> Result<tokio_postgres::Config, ConfigError> {
    tokio_postgres::Config::from_str(url).map_err(|e| ConfigError::InvalidUrl {
        // tokio-postgres names the offending option, never its value.
        reason: e.to_string(),
    })
}

/// A display form of a connection config without the password:
/// `postgres://user:***@host:port/dbname`.
pub fn redacted(pg: &tokio_postgres::Config) -> String {
    let mut s = String::from("postgres://");
    if let Some(user) = pg.get_user() {
        s.push_str(user);
        if pg.get_password().is_some() {
            s.push_str(":***");
        }
        s.push('@');
    } else if pg.get_password().is_some() {
        s.push_str(":***@");
    }
    let ports = pg.get_ports();
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]"),
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match ports.get(i).or(ports.first()) {
                Some(p) => format!("{host}:{p}"),
                None => host,
            }
        })
        .collect();
    s.push_str(&hosts.join(","));
    if let Some(db) = pg.get_dbname() {
        s.push('/');
        s.push_str(db);
    }
    s
}

/// Builds a [`PostgresSink`](crate::PostgresSink) (or a
/// [`PostgresStore`](crate::PostgresStore)).
///
/// Building never connects: a database that is down when the application
/// starts does not prevent the sink from being created. The schema is
/// migrated on the first write (and retried on later writes until it
/// succeeds).
///
/// ```no_run
/// use steer_sink_postgres::PostgresSink;
/// let sink = PostgresSink::builder("postgres://app:secret@127.0.0.1:5432/metrics")
///     .schema("public")
///     .table("llm_metrics")
///     .pool_size(4)
///     .build()?;
/// # Ok::<(), steer_sink_postgres::ConfigError>(())
/// ```
#[must_use]
pub struct PostgresSinkBuilder {
    pg: Result<tokio_postgres::Config, ConfigError>,
    schema: String,
    table: String,
    name: String,
    pool_size: usize,
    write_concurrency: usize,
    connect_timeout: Duration,
    migrate: bool,
    ca_certs_pem: Vec<Vec<u8>>,
    password: Option<String>,
}

impl fmt::Debug for PostgresSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSinkBuilder")
            .field(
                "url",
                &self
                    .pg
                    .as_ref()
                    .map(redacted)
                    .unwrap_or_else(|_| "<invalid>".into()),
            )
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("name", &self.name)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PostgresSinkBuilder {
    /// From a connection string: a `postgres://user:password@host:port/db?sslmode=...`
    /// URL or a `host=... user=... password=...` string. A parse error is
    /// reported by [`build`](Self::build).
    pub fn new(url: &str) -> Self {
        Self::with_parsed(parse_url(url))
    }

    /// From an already built `tokio_postgres::Config`.
    pub fn from_config(config: tokio_postgres::Config) -> Self {
        Self::with_parsed(Ok(config))
    }

    fn with_parsed(pg: Result<tokio_postgres::Config, ConfigError>) -> Self {
        PostgresSinkBuilder {
            pg,
            schema: "public".into(),
            table: "llm_metrics".into(),
            name: "postgres".into(),
            pool_size: 4,
            write_concurrency: 2,
            connect_timeout: Duration::from_secs(5),
            migrate: true,
            ca_certs_pem: Vec::new(),
            password: None,
        }
    }

    /// The password, when it is not in the connection string (overrides
    /// one that is). Without either, `PGPASSWORD` is used if set. Never
    /// shown in `Debug`, errors or logs.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The schema holding the table (default `public`); created if missing
    /// and the role may.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The table (default `llm_metrics`). At most 37 bytes, so that the
    /// index and helper-table names derived from it fit PostgreSQL's 63-byte
    /// identifiers.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The sink's name in collector stats and logs (default `postgres`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Connections in the pool (default 4, at least 1).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// Connections one batch is spread over, in chunks of at least 1000
    /// rows, each chunk its own transaction (default 2; at most
    /// `pool_size`). 1 writes each batch in a single transaction.
    pub fn write_concurrency(mut self, n: usize) -> Self {
        self.write_concurrency = n.max(1);
        self
    }

    /// Time allowed to open a connection (default 5 s), unless the
    /// connection string sets `connect_timeout`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether the sink creates / upgrades its table itself (default true).
    /// Turn off when a DBA applies the schema (`schema::migration_sql`) and
    /// the application role may only insert.
    pub fn migrate(mut self, on: bool) -> Self {
        self.migrate = on;
        self
    }

    /// Trust this CA (PEM, one or more certificates) for TLS, in addition
    /// to the public web roots. Needs the `tls` feature to have an effect.
    pub fn ca_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certs_pem.push(pem.into());
        self
    }

    pub(crate) fn settings(self) -> Result<(ConnSettings, String, bool), ConfigError> {
        let mut pg = self.pg?;
        let table = TableRef::new(&self.schema, &self.table)?;
        if let Some(pw) = self.password {
            pg.password(pw);
        } else if pg.get_password().is_none() {
            if let Ok(pw) = std::env::var("PGPASSWORD") {
                pg.password(pw);
            }
        }
        if pg.get_user().is_none() {
            match std::env::var("PGUSER") {
                Ok(user) if !user.is_empty() => {
                    pg.user(user);
                }
                _ => {
                    return Err(ConfigError::InvalidUrl {
                        reason:
                            "no user name (give one in the URL, e.g. postgres://USER@host/db, or set PGUSER)"
                                .into(),
                    })
                }
            }
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(self.connect_timeout);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("steer-sink-postgres");
        }
        #[cfg(not(feature = "tls"))]
        if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(ConfigError::TlsNotEnabled);
        }
        Ok((
            ConnSettings {
                pg,
                table,
                pool_size: self.pool_size,
                write_concurrency: self.write_concurrency,
                connect_timeout: self.connect_timeout,
                ca_certs_pem: self.ca_certs_pem,
            },
            self.name,
            self.migrate,
        ))
    }

    /// Build the sink. Does not connect; fails only on invalid
    /// configuration.
    pub fn build(self) -> Result<crate::PostgresSink, ConfigError> {
        let (settings, name, migrate) = self.settings()?;
        crate::PostgresSink::from_settings(settings, name, migrate)
    }

    /// Build a [`PostgresStore`](crate::PostgresStore) for the same table
    /// (does not connect).
    pub fn build_store(self) -> Result<crate::PostgresStore, ConfigError> {
        let (settings, _, _) = self.settings()?;
        crate::PostgresStore::from_settings(settings)
    }
}

/// The longest table name accepted (bytes).
pub use crate::table::MAX_TABLE_NAME;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn redaction_hides_passwords_in_urls_and_key_value_strings() {
        for url in [
            "postgres://app:s3cret-pw@db.example:6543/metrics?sslmode=prefer",
            "postgresql://app@db.example/metrics?password=s3cret-pw",
            "host=db.example user=app password=s3cret-pw dbname=metrics",
            "host=db.example user=app password='s3cret-pw' dbname=metrics port=6543",
        ] {
            let pg = parse_url(url).unwrap();
            let shown = redacted(&pg);
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains(":***@"), "{shown}");
            assert!(shown.contains("db.example"), "{shown}");
            let b = PostgresSinkBuilder::new(url);
            let dbg = format!("{b:?}");
            assert!(!dbg.contains("s3cret"), "{dbg}");
            let (settings, _, _) = b.settings().unwrap();
            assert!(!format!("{settings:?}").contains("s3cret"));
        }
        let pg = parse_url("postgres://app:pw@[::1]:5433/db").unwrap();
        assert_eq!(redacted(&pg), "postgres://app:***@[::1]:5433/db");
        let b = PostgresSinkBuilder::new("postgres://app@db.example/metrics").password("s3cret-pw");
        assert!(!format!("{b:?}").contains("s3cret"));
        let (settings, _, _) = b.settings().unwrap();
        assert_eq!(settings.pg.get_password(), Some(&b"s3cret-pw"[..]));
        assert!(!format!("{settings:?}").contains("s3cret"));
        assert!(redacted(&settings.pg).contains("app:***@"));
    }

    #[test]
    fn parse_errors_do_not_echo_the_string() {
        let err = PostgresSinkBuilder::new("postgres://app:s3cret@host:notaport/db")
            .build()
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(matches!(err, ConfigError::InvalidUrl { .. }));
    }

    #[test]
    fn identifiers_are_checked() {
        let long = "t".repeat(MAX_TABLE_NAME + 1);
        assert!(matches!(
            PostgresSinkBuilder::new("postgres://a@h/d").table(long).build(),
            Err(ConfigError::InvalidIdentifier { what: "table", .. })
        ));
        assert!(PostgresSinkBuilder::new("postgres://a@h/d")
            .schema("")
            .build()
            .is_err());
        assert!(PostgresSinkBuilder::new("postgres://a@h/d")
            .table("we\"ird; DROP TABLE x")
            .build()
            .is_ok());
    }

    #[test]
    fn a_missing_user_is_a_config_error_not_a_retry_loop() {
        if std::env::var_os("PGUSER").is_none() {
            assert!(matches!(
                PostgresSinkBuilder::new("postgres://127.0.0.1/db").build(),
                Err(ConfigError::InvalidUrl { .. })
            ));
        }
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn require_tls_without_the_feature_is_a_config_error() {
        assert!(matches!(
            PostgresSinkBuilder::new("postgres://a@h/d?sslmode=require").build(),
            Err(ConfigError::TlsNotEnabled)
        ));
    }
}
