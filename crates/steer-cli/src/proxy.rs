//! `steer proxy`: the OpenAI/Anthropic-wire gateway (crate `steer-proxy`)
//! recording every call into the SQLite store and any extra sinks, with
//! Prometheus metrics on `/metrics`.
//!
//! SIGINT/SIGTERM: stop accepting, let the calls in flight finish, deliver
//! what was recorded (up to `--flush-timeout`), print the delivery report;
//! exit 130 (SIGINT) or 143 (SIGTERM), with a warning when some records
//! were not delivered (6 if the server stopped without a signal). A second
//! signal exits at once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use steer_metrics::{MetricsCollector, SinkOptions};
use steer_proxy::{Proxy, ProxyConfig};
use steer_sink_prometheus::PrometheusSink;

use crate::error::CliError;
use crate::output::{delivery, run_exit};
use crate::signals::Stop;
use crate::{Context, SinkArgs};

/// `steer proxy` arguments.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:4000", value_name = "ADDR")]
    listen: String,
    /// SQLite store (default: the config file's `db`, else ./steer-metrics.db).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    #[command(flatten)]
    sinks: SinkArgs,
    /// Hold the provider keys (OPENAI_API_KEY, ANTHROPIC_API_KEY, XAI_API_KEY)
    /// in the proxy and require clients to present STEER_PROXY_KEY instead
    /// of their own provider key.
    #[arg(long)]
    provider_keys_from_env: bool,
    /// Serve the AWS Bedrock routes (/model/{modelId}/converse, ...) without
    /// a proxy key when STEER_PROXY_KEY is not set: anyone who can reach the
    /// proxy uses its AWS credentials. Without it (and without
    /// STEER_PROXY_KEY) those routes are refused.
    #[arg(long)]
    bedrock_open: bool,
    /// An OpenAI-compatible upstream (repeatable), called as `NAME/model`:
    /// NAME=URL, e.g. ollama=http://127.0.0.1:11434/v1.
    #[arg(long = "openai-compatible", value_name = "NAME=URL")]
    compatible: Vec<String>,
    /// Largest request body accepted (413 beyond).
    #[arg(long, default_value_t = steer_proxy::config::DEFAULT_MAX_BODY_BYTES, value_name = "BYTES")]
    max_body_bytes: usize,
    /// Upstream calls in flight at once; more wait for a slot (up to
    /// --queue-timeout, then 503 with Retry-After).
    #[arg(long, default_value_t = steer_proxy::config::DEFAULT_MAX_CONCURRENT)]
    max_concurrent: usize,
    /// Longest wait for a slot when --max-concurrent calls are in flight
    /// (503 with Retry-After beyond; nothing sent, no record).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    queue_timeout: Duration,
    /// Time for a client to send its request head (the connection is closed
    /// beyond), and again its body (408 beyond).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    client_timeout: Duration,
    /// Time to connect to an upstream.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Time for an upstream to send its response headers (504 beyond).
    #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
    upstream_timeout: Duration,
    /// Longest silence inside an upstream response (the response is cut beyond).
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// At shutdown, wait at most this long for the calls in flight to finish,
    /// then as long again for delivery to the sinks.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    flush_timeout: Duration,
}

fn config(args: &ProxyArgs, ctx: &Context) -> Result<ProxyConfig, CliError> {
    let mut b = ProxyConfig::builder()
        .prices(ctx.prices.clone())
        .max_body_bytes(args.max_body_bytes)
        .max_concurrent(args.max_concurrent)
        .queue_timeout(args.queue_timeout)
        .client_timeout(args.client_timeout)
        .connect_timeout(args.connect_timeout)
        .response_timeout(args.upstream_timeout)
        .idle_timeout(args.idle_timeout);
    for c in &args.compatible {
        let Some((name, url)) = c.split_once('=') else {
            return Err(CliError::Invalid(
                "--openai-compatible takes NAME=URL (e.g. ollama=http://127.0.0.1:11434/v1)".into(),
            ));
        };
        b = b.openai_compatible(name.trim(), url.trim(), None);
    }
    if args.provider_keys_from_env {
        let key = std::env::var("STEER_PROXY_KEY").unwrap_or_default();
        if key.trim().is_empty() {
            return Err(CliError::Invalid(
                "--provider-keys-from-env needs STEER_PROXY_KEY: the key clients must present".into(),
            ));
        }
        b = b.provider_keys(key);
    } else if let Some(key) = std::env::var("STEER_PROXY_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
    {
        // The Bedrock routes sign with the proxy's own AWS credentials:
        // they always want the proxy key when there is one.
        b = b.bedrock_key(key);
    }
    b.bedrock_open(args.bedrock_open)
        .build()
        .map_err(|e| CliError::Invalid(e.to_string()))
}

/// Run `steer proxy`.
pub async fn run(args: ProxyArgs, ctx: &Context) -> Result<ExitCode, CliError> {
    let stop = Stop::install();
    let config = config(&args, ctx)?;
    let (db, sinks) = crate::sinks::store_and_sinks(args.db.as_deref(), &args.sinks, ctx).await?;

    let options = SinkOptions::default().queue_capacity(100_000).batch_size(500);
    let prometheus = PrometheusSink::builder().name("proxy /metrics").build();
    let mut builder = MetricsCollector::builder().sink_with_options(prometheus.clone(), options.clone());
    for s in sinks {
        builder = builder.sink_with_options(s, options.clone());
    }
    let collector = builder.build().map_err(|e| CliError::Other(e.to_string()))?;
    let proxy = Proxy::new(config, collector.clone())
        .map_err(|e| CliError::Other(e.to_string()))?
        .metrics_endpoint(prometheus);

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| CliError::Invalid(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Other(format!("cannot read the listening address: {e}")))?;
    let keys = if proxy.config().requires_proxy_key() {
        "provider keys held by the proxy; clients present STEER_PROXY_KEY"
    } else {
        "clients' keys passed through"
    };
    outln!("steer proxy listening on http://{addr} ({keys})");
    outln!("  OpenAI:    OPENAI_BASE_URL=http://{addr}/v1");
    outln!("  Anthropic: ANTHROPIC_BASE_URL=http://{addr}");
    outln!("  Azure:     AzureOpenAI(azure_endpoint=\"http://{addr}\") (upstream: AZURE_OPENAI_ENDPOINT)");
    outln!("  Gemini:    google-genai http_options base_url=http://{addr}");
    if cfg!(feature = "bedrock") {
        let access = match proxy.config().bedrock().access() {
            steer_proxy::BedrockAccess::Key(_) => "clients present STEER_PROXY_KEY as x-steer-proxy-key",
            steer_proxy::BedrockAccess::Open => {
                "open: anyone who can reach the proxy uses its AWS credentials"
            }
            _ => "closed: set STEER_PROXY_KEY or pass --bedrock-open",
        };
        outln!("  Bedrock:   endpoint_url=http://{addr} ({access})");
    }
    outln!("  metrics:   http://{addr}/metrics   store: {}", db.display());

    let shutdown = {
        let stop = stop.clone();
        async move { stop.wait().await }
    };
    let mut serving = tokio::spawn(proxy.serve(listener, shutdown));
    // Serve until a signal; then give the calls in flight --flush-timeout.
    let ended = tokio::select! {
        r = &mut serving => Some(r),
        () = stop.wait() => None,
    };
    let ended = match ended {
        Some(r) => Ok(r),
        None => tokio::time::timeout(args.flush_timeout, serving).await,
    };
    match ended {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eoutln!("error: the proxy stopped: {e}"),
        Ok(Err(e)) => eoutln!("error: the proxy task failed: {e}"),
        Err(_) => eoutln!(
            "calls still in flight after {} s: not waiting for them",
            args.flush_timeout.as_secs()
        ),
    }
    let report = collector.shutdown(args.flush_timeout).await;
    outln!("\ndelivery:");
    out!("{}", delivery(&report));
    outln!(
        "\nstore: {}   (try: steer stats --db {})",
        db.display(),
        db.display()
    );
    Ok(run_exit(&report, &stop))
}
