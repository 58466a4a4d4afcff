//! The sink spec of this crate: `sqlite:PATH`.

use std::fmt;
use std::path::PathBuf;

use steer_metrics::registry::{required_arg, SinkBuildError, SinkFactory, SinkKind, SpecError};
use steer_metrics::{async_trait, MetricsSink};

use crate::SqliteSink;

/// `sqlite:PATH`: the embedded store ([`SqliteSink`]); the file and its
/// schema are created when missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteKind;

impl SinkKind for SqliteKind {
    fn name(&self) -> &'static str {
        "sqlite"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["sqlite"]
    }
    fn usage(&self) -> &'static str {
        "sqlite:PATH"
    }
    fn parse(&self, spec: &str) -> Result<Box<dyn SinkFactory>, SpecError> {
        Ok(Box::new(SqliteSpec::new(required_arg("sqlite", spec, "PATH")?)))
    }
}

/// A parsed `sqlite:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteSpec {
    path: PathBuf,
}

impl SqliteSpec {
    /// The store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteSpec { path: path.into() }
    }
}

impl fmt::Display for SqliteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sqlite:{}", self.path.display())
    }
}

#[async_trait]
impl SinkFactory for SqliteSpec {
    fn kind(&self) -> &'static str {
        "sqlite"
    }
    async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError> {
        let sink = SqliteSink::open(&self.path).map_err(|e| SinkBuildError::setup(self, &e))?;
        Ok(Box::new(sink))
    }
}
