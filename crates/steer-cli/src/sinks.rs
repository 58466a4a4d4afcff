//! Turning sink specs into sinks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use steer_metrics::{async_trait, AgentMetrics, MetricsSink, SinkError};

use crate::error::CliError;
use steer_sinks::{SinkBuildError, SinkSpec};

/// Counts what a sink was asked to do (for `bench` and reports).
#[derive(Debug, Default)]
pub struct Traffic {
    /// `record_batch` calls (one request per batch for network sinks).
    pub requests: AtomicU64,
    /// Records handed to the sink, retries included.
    pub records: AtomicU64,
}

/// A sink named after its (redacted) spec, counting its traffic.
pub struct Tracked {
    name: String,
    inner: Box<dyn MetricsSink>,
    traffic: Arc<Traffic>,
}

impl Tracked {
    /// The traffic counters.
    pub fn traffic(&self) -> Arc<Traffic> {
        self.traffic.clone()
    }
}

#[async_trait]
impl MetricsSink for Tracked {
    fn name(&self) -> &str {
        &self.name
    }
    async fn record(&self, m: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(m)).await
    }
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        self.traffic.requests.fetch_add(1, Relaxed);
        self.traffic.records.fetch_add(batch.len() as u64, Relaxed);
        self.inner.record_batch(batch).await
    }
    async fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush().await
    }
    async fn close(&self) -> Result<(), SinkError> {
        self.inner.close().await
    }
}

/// Build the sink a spec names, wrapped to carry the spec as its name.
pub async fn build(spec: &SinkSpec) -> Result<Tracked, CliError> {
    let inner = spec.build().await.map_err(|e| match e {
        SinkBuildError::NotBuilt(kind) => CliError::SinkNotBuilt(kind),
        SinkBuildError::Setup { spec, message } => CliError::SinkSetup { spec, message },
        other => CliError::SinkSetup {
            spec: spec.to_string(),
            message: other.to_string(),
        },
    })?;
    Ok(Tracked {
        name: spec.to_string(),
        inner,
        traffic: Arc::default(),
    })
}

/// The SQLite store (`--db`, else the config's `db`, else
/// `./steer-metrics.db`) first, then the config file's sinks and the
/// `--sink`s, built: what `demo` and `proxy` record into.
pub async fn store_and_sinks(
    db: Option<&std::path::Path>,
    args: &crate::SinkArgs,
    ctx: &crate::Context,
) -> Result<(std::path::PathBuf, Vec<Tracked>), CliError> {
    let db = db.map_or_else(|| crate::stats::default_db(ctx), std::path::Path::to_path_buf);
    if db.as_os_str().is_empty() {
        return Err(CliError::Invalid(
            "--db is empty: give the SQLite store's path".into(),
        ));
    }
    let mut specs = vec![steer_sinks::sqlite(db.clone())];
    specs.extend(ctx.config_sinks.iter().cloned());
    specs.extend(args.specs()?);
    Ok((db, build_all(&specs).await?))
}

/// Build every sink, refusing duplicates (the same spec twice).
pub async fn build_all(specs: &[SinkSpec]) -> Result<Vec<Tracked>, CliError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for s in specs {
        if !seen.insert(s.to_string()) {
            continue;
        }
        out.push(build(s).await?);
    }
    Ok(out)
}

/// `steer sinks`: the sink kinds this build knows, or check specs.
#[derive(Debug, clap::Args)]
pub struct SinksArgs {
    /// Specs to check (parsed as `--sink` would; nothing is built or
    /// connected). Without any: list the sink kinds.
    #[arg(value_name = "SPEC")]
    pub specs: Vec<String>,
}

/// Run `steer sinks`.
pub async fn run(args: SinksArgs, _ctx: &crate::Context) -> Result<std::process::ExitCode, CliError> {
    if args.specs.is_empty() {
        for kind in steer_sinks::registry().kinds() {
            outln!(
                "{:<12} {:<44} {}",
                kind.name(),
                kind.schemes().join(","),
                kind.usage()
            );
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    for s in &args.specs {
        let spec = steer_sinks::parse(s)?;
        outln!("{}\t{spec}", spec.kind());
    }
    Ok(std::process::ExitCode::SUCCESS)
}
