//! `steer bench`: the throughput harness every sink is measured with.
//!
//! Pushes records through a real `MetricsCollector` into one sink and
//! reports records/s (first `record()` to `flush()` complete), what was
//! delivered and dropped, requests made, and peak RSS.

use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Serialize;
use steer_metrics::{DeliveryReport, MetricsCollector, SinkOptions, SinkReport, SinkStats};

use crate::error::CliError;
use crate::output::run_exit;
use crate::signals::Stop;
use crate::{Context, Format};
use steer_sinks::SinkSpec;

/// Where the records come from.
#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum Source {
    /// Pre-generated synthetic records recorded directly (measures the pipeline and the sink).
    #[default]
    Synthetic,
    /// Calls through `SteerClient` to a zero-latency simulated model (measures client + pipeline + sink).
    Sim,
}

/// `steer bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The sink to measure.
    #[arg(long, value_name = "SPEC")]
    sink: String,
    /// Records to push (1 to 1 000 000 000; memory stays flat).
    #[arg(long, default_value_t = 100_000, value_parser = crate::limits::records)]
    records: usize,
    /// Target records per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Batch size handed to the sink (1 to 1 000 000).
    #[arg(long, default_value_t = 5000, value_parser = crate::limits::batch)]
    batch: usize,
    /// Queue capacity, 1 to 10 000 000 (default: the number of records up to
    /// 1 000 000, so a normal run drops nothing for lack of room).
    #[arg(long, value_parser = crate::limits::queue)]
    queue: Option<usize>,
    /// Record source.
    #[arg(long, value_enum, default_value_t = Source::Synthetic)]
    source: Source,
    /// Concurrent calls for `--source sim` (1 to 100 000).
    #[arg(long, default_value_t = 64, value_parser = crate::limits::concurrency)]
    concurrency: usize,
    /// Put a disk spool (SQLite file) between the queue and the sink: an outage fills the spool, not memory.
    #[arg(long, value_name = "PATH")]
    spool: Option<std::path::PathBuf>,
    /// Spool size cap in MiB.
    #[arg(long, default_value_t = 256)]
    spool_max_mib: u64,
    /// Seed for the synthetic records.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Give up waiting for delivery after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    flush_timeout: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// The harness's result.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// The sink (redacted spec).
    pub sink: String,
    /// Records pushed.
    pub records: usize,
    /// Seconds from the first record to flush complete.
    pub seconds: f64,
    /// Delivered records per second.
    pub records_per_sec: f64,
    /// `record_batch` calls.
    pub requests: u64,
    /// Records handed to the sink, retries included.
    pub records_sent: u64,
    /// Resident memory when the records were ready and the clock started, in MiB (Linux).
    pub start_rss_mib: Option<f64>,
    /// Peak resident memory of this process, in MiB (Linux).
    pub peak_rss_mib: Option<f64>,
    /// Whether flush finished in time.
    pub completed: bool,
    /// The sink's flush error, or why the flush did not complete.
    pub error: Option<String>,
    /// Set when a signal (SIGINT/SIGTERM) stopped the run early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
    /// The sink's accounting.
    pub stats: SinkStats,
}

/// A memory figure from /proc/self/status (`VmHWM:` peak, `VmRSS:` now), in MiB.
fn status_mib(key: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Peak RSS of this process, in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

/// Run `steer bench`.
pub async fn run(args: BenchArgs, ctx: &Context) -> Result<ExitCode, CliError> {
    let stop = Stop::install();
    let spec: SinkSpec = steer_sinks::parse(&args.sink)?;
    let sink = crate::sinks::build(&spec).await?;
    let traffic = sink.traffic();
    let options = SinkOptions::default()
        .batch_size(args.batch)
        .queue_capacity(args.queue.unwrap_or(args.records.min(1_000_000)))
        .linger(Duration::from_millis(50));
    let builder = match &args.spool {
        Some(path) => {
            let spool = steer_spool::SqliteSpool::open(
                path,
                steer_spool::SpoolConfig::default().max_bytes(args.spool_max_mib.saturating_mul(1 << 20)),
            )
            .map_err(|e| CliError::SinkSetup {
                spec: format!("spool {}", path.display()),
                message: e.to_string(),
            })?;
            MetricsCollector::builder().sink_with_spool(sink, Some(options), std::sync::Arc::new(spool))
        }
        None => MetricsCollector::builder().sink_with_options(sink, options),
    };
    let collector = builder.build().map_err(|e| match e {
        // The spool cannot be read, or holds another sink's records.
        steer_metrics::BuildError::Spool { .. } => CliError::SinkSetup {
            spec: spec.to_string(),
            message: e.to_string(),
        },
        other => CliError::Other(other.to_string()),
    })?;

    let start;
    let start_rss;
    match args.source {
        Source::Synthetic => {
            // Up to POOL records are generated before the clock starts; longer
            // runs cycle through them with fresh request ids, so memory stays
            // flat however many records are pushed (what an outage test needs).
            const POOL: usize = 100_000;
            let pool = steer_metrics::testkit::synthetic(args.records.min(POOL), args.seed);
            start_rss = status_mib("VmRSS:");
            start = Instant::now();
            if args.records <= POOL {
                pace(pool.into_iter(), args.rate, start, &stop, |m| collector.record(m)).await;
            } else {
                let items = (0..args.records).map(|i| {
                    let mut m = pool[i % POOL].clone();
                    m.request_id = uuid::Uuid::now_v7();
                    m
                });
                pace(items, args.rate, start, &stop, |m| collector.record(m)).await;
            }
        }
        Source::Sim => {
            let client = crate::demo::sim_client(collector.clone(), &ctx.prices, args.seed, 0.0, false)?;
            start_rss = status_mib("VmRSS:");
            start = Instant::now();
            crate::demo::drive(
                &client,
                args.records,
                args.concurrency,
                &crate::demo::default_models(),
                args.rate,
                None,
                Some(&stop),
            )
            .await;
        }
    }
    let flushed = collector.flush_timeout(args.flush_timeout).await;
    let seconds = start.elapsed().as_secs_f64();
    // Close too, and account for it: an error at close is a delivery failure.
    let closed = collector.shutdown(Duration::from_secs(5)).await;
    let first = |r: DeliveryReport| {
        r.sinks
            .into_iter()
            .next()
            .ok_or_else(|| CliError::Other("no sink".into()))
    };
    let flushed = first(flushed)?;
    let mut sink_report = first(closed)?;
    sink_report.completed &= flushed.completed;
    sink_report.error = flushed.error.or(sink_report.error);
    let stats = sink_report.stats;
    let out = BenchReport {
        sink: spec.to_string(),
        records: args.records,
        seconds,
        records_per_sec: stats.delivered as f64 / seconds,
        requests: traffic.requests.load(Relaxed),
        records_sent: traffic.records.load(Relaxed),
        start_rss_mib: start_rss,
        peak_rss_mib: peak_rss_mib(),
        completed: sink_report.completed,
        error: sink_report.error,
        interrupted: stop.signal().map(|s| format!("{s:?}")),
        stats,
    };
    match args.format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| CliError::Other(e.to_string()))?
        ),
        Format::Table => {
            if out.interrupted.is_some() {
                outln!(
                    "interrupted     after {} records were recorded",
                    out.stats.received
                );
            }
            outln!("sink            {}", out.sink);
            outln!("records         {}", out.records);
            outln!("elapsed         {:.3} s", out.seconds);
            outln!("throughput      {:.0} records/s", out.records_per_sec);
            outln!(
                "delivered       {} (dropped {}, failed {}, retried {})",
                out.stats.delivered,
                out.stats.dropped.total(),
                out.stats.failed.total(),
                out.stats.retried
            );
            outln!(
                "requests        {} ({} records sent)",
                out.requests,
                out.records_sent
            );
            if let Some(rss) = out.peak_rss_mib {
                outln!(
                    "peak RSS        {rss:.1} MiB (at start {:.1} MiB)",
                    out.start_rss_mib.unwrap_or(f64::NAN)
                );
            }
        }
    }
    if let Some(e) = &out.stats.last_error {
        if !out.completed || out.stats.lost() > 0 || out.stats.in_flight > 0 {
            eoutln!("last error of the sink: {}", steer_metrics::redact::redact(e));
        }
    }
    let flushed = DeliveryReport {
        sinks: vec![SinkReport {
            stats: out.stats.clone(),
            completed: out.completed,
            error: out.error.clone(),
        }],
    };
    Ok(run_exit(&flushed, &stop))
}

/// Feed items at `rate` per second (0 = unpaced), yielding now and then;
/// stop early when a signal arrived.
pub async fn pace<T>(
    items: impl Iterator<Item = T>,
    rate: u64,
    start: Instant,
    stop: &Stop,
    mut f: impl FnMut(T),
) {
    for (i, item) in items.enumerate() {
        if i % 1024 == 0 && stop.signal().is_some() {
            return;
        }
        if rate > 0 && i % 100 == 0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        } else if i % 4096 == 0 {
            tokio::task::yield_now().await;
        }
        f(item);
    }
}
