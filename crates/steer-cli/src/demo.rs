//! `steer demo`: simulated calls through the full client and collector
//! into the SQLite store and any extra sinks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use steer::{SimConfig, SteerClient};
use steer_metrics::summary::breakdown;
use steer_metrics::{AgentMetrics, GroupBy, MetricsCollector, SinkOptions, Summary};

use crate::error::CliError;
use crate::output::{delivery, run_exit, table, SummaryReport};
use crate::signals::Stop;
use crate::{Context, Format, SinkArgs};

/// Models the demo calls by default: OpenAI, Anthropic, xAI, Gemini and Bedrock.
pub fn default_models() -> Vec<String> {
    [
        "gpt-5.2",
        "gpt-4o-mini",
        "o4-mini",
        "claude-opus-4-7",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
        "grok-4.3",
        "grok-code-fast-1",
        "gemini-2.5-flash",
        "gemini-2.5-pro",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "amazon.nova-pro-v1:0",
    ]
    .iter()
    .map(|m| m.to_string())
    .collect()
}

/// The `feature` tags of demo calls.
const DEMO_FEATURES: [&str; 4] = ["support-bot", "search", "summarizer", "code-review"];
/// The `team` tags of demo calls.
const DEMO_TEAMS: [&str; 3] = ["growth", "platform", "research"];

/// `steer demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Simulated calls to make (1 to 10 000 000).
    #[arg(long, default_value_t = 1000, value_parser = crate::limits::requests)]
    requests: usize,
    /// Calls in flight at once (1 to 100 000).
    #[arg(long, default_value_t = 64, value_parser = crate::limits::concurrency)]
    concurrency: usize,
    /// Models to call (comma-separated or repeated), without the `sim/` prefix.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    models: Vec<String>,
    /// Seed: the same seed gives the same calls.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Scale the simulated latencies (1 = realistic, 0 = instant; at most 100).
    #[arg(long, default_value_t = 0.2, value_parser = crate::limits::latency_scale)]
    latency_scale: f64,
    /// SQLite store (default: the config file's `db`, else ./steer-metrics.db).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    #[command(flatten)]
    sinks: SinkArgs,
    /// Wait at most this long for delivery at the end.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    flush_timeout: Duration,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Simulate a perfect world: no rate limits, timeouts or server errors.
    #[arg(long)]
    no_faults: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// A client on the simulated provider, recording into `collector`.
///
/// `faults` makes the simulated providers behave like real ones on a bad
/// day: rate limits with retry hints, timeouts and server errors per
/// attempt (retried once, so some calls fail for good), prompt-cache hits
/// and tool calls.
pub fn sim_client(
    collector: MetricsCollector,
    prices: &steer::pricing::PriceTable,
    seed: u64,
    latency_scale: f64,
    faults: bool,
) -> Result<SteerClient, CliError> {
    let mut sim = SimConfig::default().seed(seed).latency_scale(latency_scale);
    let mut retry = steer::RetryConfig::default();
    if faults {
        sim = sim
            .error_rates(0.06, 0.02, 0.08)
            .cache_hit_rate(0.3)
            .input_tokens(200, 4000)
            .retry_after(Duration::from_millis(500));
        retry = retry.max_retries(1);
    }
    SteerClient::builder()
        .collector(collector)
        .prices(prices.clone())
        .sim(sim)
        .retry(retry)
        .build()
        .map_err(|e| CliError::from_call(&e))
}

/// Make `n` calls across `models` with `concurrency` in flight (a third of
/// them streamed), at most `rate` per second (0 = unpaced). Returns the
/// record of every call. When `stop` is signalled, no new call starts and
/// those in flight are cancelled (each is recorded as `cancelled`).
pub async fn drive(
    client: &SteerClient,
    n: usize,
    concurrency: usize,
    models: &[String],
    rate: u64,
    progress: Option<&indicatif::ProgressBar>,
    stop: Option<&Stop>,
) -> Vec<AgentMetrics> {
    let start = Instant::now();
    let calls = futures::stream::iter(0..n)
        .map(|i| {
            let model = format!("sim/{}", models[i % models.len()]);
            async move {
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let prompt = format!("Demo request {i}: summarise the benefits of measuring every LLM call.");
                // Attribution as an application would set it: per feature, team and user.
                let req = steer::Request::prompt(prompt)
                    .tag("feature", DEMO_FEATURES[i % DEMO_FEATURES.len()])
                    .tag("team", DEMO_TEAMS[(i / 7) % DEMO_TEAMS.len()])
                    .tag("user", format!("user-{:02}", (i * 7) % 40));
                // Every model gets streamed calls, whatever the number of models.
                if (i + i / models.len()) % 3 == 2 {
                    stream_once(client, req, &model).await
                } else {
                    match client.generate(req, &model).await {
                        Ok(r) => Some(r.metrics),
                        Err(e) => e.metrics().cloned(),
                    }
                }
            }
        })
        .buffer_unordered(concurrency.max(1));
    futures::pin_mut!(calls);
    let mut records = Vec::with_capacity(n.min(1 << 16));
    let stopped = async {
        match stop {
            Some(s) => s.wait().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stopped);
    loop {
        let r = tokio::select! {
            biased;
            () = &mut stopped => break,
            r = calls.next() => match r {
                Some(r) => r,
                None => break,
            },
        };
        if let Some(m) = r {
            records.push(m);
        }
        if let Some(p) = progress {
            p.inc(1);
        }
    }
    records
}

async fn stream_once(client: &SteerClient, req: steer::Request, model: &str) -> Option<AgentMetrics> {
    let mut s = match client.stream(req, model).await {
        Ok(s) => s,
        Err(e) => return e.metrics().cloned(),
    };
    while let Some(ev) = s.next().await {
        match ev {
            Ok(steer::StreamEvent::Done(resp)) => return Some(resp.metrics.clone()),
            Ok(_) => {}
            Err(e) => return e.metrics().cloned(),
        }
    }
    None
}

/// Run `steer demo`.
pub async fn run(args: DemoArgs, ctx: &Context) -> Result<ExitCode, CliError> {
    let stop = Stop::install();
    let models = if args.models.is_empty() {
        default_models()
    } else {
        args.models.clone()
    };
    for m in &models {
        steer::route(&format!("sim/{m}")).map_err(|e| CliError::Invalid(e.to_string()))?;
    }
    let (db, sinks) = crate::sinks::store_and_sinks(args.db.as_deref(), &args.sinks, ctx).await?;

    let mut builder = MetricsCollector::builder();
    for s in sinks {
        builder = builder.sink_with_options(
            s,
            SinkOptions::default()
                .queue_capacity(args.requests.clamp(1000, 1_000_000))
                .batch_size(500),
        );
    }
    let collector = builder.build().map_err(|e| CliError::Other(e.to_string()))?;
    let client = sim_client(
        collector.clone(),
        &ctx.prices,
        args.seed,
        args.latency_scale,
        !args.no_faults,
    )?;

    let bar = if args.quiet || args.format == Format::Json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(args.requests as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} calls {pos}/{len} [{bar:40}] {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    };
    let started = Instant::now();
    let records = drive(
        &client,
        args.requests,
        args.concurrency,
        &models,
        0,
        Some(&bar),
        Some(&stop),
    )
    .await;
    bar.finish_and_clear();
    let elapsed = started.elapsed();

    // Deliver what is queued, close every sink, and account for every record.
    let report = collector.shutdown(args.flush_timeout).await;
    let total = Summary::from_records(&records);
    let groups = breakdown(&records, GroupBy::Model);
    match args.format {
        Format::Json => {
            let out = SummaryReport {
                total: &total,
                by: GroupBy::Model,
                groups: &groups,
                delivery: Some(&report),
            };
            outln!(
                "{}",
                serde_json::to_string_pretty(&out).map_err(|e| CliError::Other(e.to_string()))?
            );
        }
        Format::Table => {
            if stop.signal().is_some() {
                outln!("interrupted after {} of {} calls\n", records.len(), args.requests);
            }
            outln!(
                "{} simulated calls in {:.1} s (up to {} in flight), seed {}\n",
                records.len(),
                elapsed.as_secs_f64(),
                args.concurrency.min(args.requests),
                args.seed
            );
            out!("{}", table(&total, GroupBy::Model, &groups));
            outln!("\ndelivery:");
            out!("{}", delivery(&report));
            outln!(
                "\nstore: {}   (try: steer stats --db {} --by provider)",
                db.display(),
                db.display()
            );
        }
    }
    Ok(run_exit(&report, &stop))
}
