//! The sink spec of this crate: `postgres://USER@HOST:PORT/DB` (or
//! `postgresql://`), the password from the URL or `PGPASSWORD`.

use std::fmt;

use steer_metrics::redact::redact;
use steer_metrics::registry::{invalid, SinkBuildError, SinkFactory, SinkKind, SpecError};
use steer_metrics::{async_trait, MetricsSink};

use crate::PostgresSink;

/// `postgres://...` / `postgresql://...`: the PostgreSQL sink ([`PostgresSink`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct PostgresKind;

impl SinkKind for PostgresKind {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["postgres", "postgresql"]
    }
    fn usage(&self) -> &'static str {
        "postgres://USER@HOST:PORT/DB"
    }
    fn parse(&self, spec: &str) -> Result<Box<dyn SinkFactory>, SpecError> {
        // The driver's own grammar; its error text is not quoted (it could
        // hold a piece of the URL), only the redacted spec.
        let config = spec
            .parse::<tokio_postgres::Config>()
            .map_err(|_| invalid("postgres", format!("not a PostgreSQL URL: `{}`", redact(spec))))?;
        if config.get_hosts().is_empty() {
            return Err(invalid("postgres", format!("no host in `{}`", redact(spec))));
        }
        Ok(Box::new(PostgresSpec(spec.to_string())))
    }
}

/// A parsed PostgreSQL URL (displayed without its password).
#[derive(Clone)]
pub struct PostgresSpec(String);

impl fmt::Display for PostgresSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

#[async_trait]
impl SinkFactory for PostgresSpec {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError> {
        let sink = PostgresSink::builder(&self.0)
            .build()
            .map_err(|e| SinkBuildError::setup(self, &e))?;
        Ok(Box::new(sink))
    }
}
