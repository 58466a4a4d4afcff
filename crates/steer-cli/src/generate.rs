//! `steer generate`: one real call, its answer and its metrics record.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use steer::{Request, RetryConfig, SteerClient};
use steer_metrics::{AgentMetrics, MetricsCollector};

use crate::error::CliError;
use crate::output::{delivery, run_exit};
use crate::signals::Stop;
use crate::{Context, SinkArgs};

/// `steer generate` arguments.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The prompt.
    prompt: String,
    /// Model: `gpt-4o-mini`, `claude-haiku-4-5`, `grok-4`, `provider/model`, or `sim/<model>`.
    #[arg(long, short)]
    model: String,
    /// Stream the answer as it is generated.
    #[arg(long)]
    stream: bool,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    /// Maximum output tokens.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature.
    #[arg(long)]
    temperature: Option<f64>,
    /// Give up after this long (all retries and their waits included; also
    /// the longest wait for one attempt).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Retries of a failed attempt (rate limit, server error, timeout,
    /// network) after the first one; 0 = never retry.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=20))]
    retries: u32,
    /// Wait at most this long for the metrics to reach the sinks at the end.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    flush_timeout: Duration,
    #[command(flatten)]
    sinks: SinkArgs,
}

/// Run `steer generate`.
pub async fn run(args: GenerateArgs, ctx: &Context) -> Result<ExitCode, CliError> {
    let stop = Stop::install();
    let mut specs = ctx.config_sinks.clone();
    specs.extend(args.sinks.specs()?);
    let sinks = crate::sinks::build_all(&specs).await?;
    let mut builder = MetricsCollector::builder();
    for s in sinks {
        builder = builder.sink(s);
    }
    let collector = builder.build().map_err(|e| CliError::Other(e.to_string()))?;
    let mut builder = SteerClient::builder()
        .collector(collector.clone())
        .retry(RetryConfig::default().max_retries(args.retries))
        .prices(ctx.prices.clone());
    for (name, p) in &ctx.config.providers {
        builder = p.register(name, builder).map_err(CliError::Invalid)?;
    }
    let client = builder.build().map_err(|e| CliError::from_call(&e))?;

    let mut req = Request::prompt(args.prompt.clone());
    if let Some(s) = &args.system {
        req = req.system(s.clone());
    }
    if let Some(n) = args.max_tokens {
        req = req.max_tokens(n);
    }
    if let Some(t) = args.temperature {
        req = req.temperature(t);
    }
    if let Some(t) = args.timeout {
        req = req.timeout(t).deadline(t);
    }

    let call = async { call(&client, req, &args).await };
    let outcome = tokio::select! {
        biased;
        () = stop.wait() => Err((CliError::Call("interrupted before the call finished".into()), None)),
        o = call => o,
    };

    let print_record = |m: &AgentMetrics| {
        eoutln!("--- metrics ---");
        match serde_json::to_string_pretty(m) {
            Ok(s) => eoutln!("{s}"),
            Err(e) => eoutln!("(cannot render the record: {e})"),
        }
    };
    let report = collector.shutdown(args.flush_timeout).await;
    if !report.sinks.is_empty() {
        eoutln!("--- delivery ---");
        eout!("{}", delivery(&report));
    }
    if let Some(m) = match &outcome {
        Ok(m) => Some(m),
        Err((_, m)) => m.as_ref(),
    } {
        print_record(m);
    }
    match outcome {
        Ok(_) => Ok(run_exit(&report, &stop)),
        Err(_) if stop.signal().is_some() => Ok(run_exit(&report, &stop)),
        Err((e, _)) => Err(e),
    }
}

type Outcome = Result<AgentMetrics, (CliError, Option<AgentMetrics>)>;

/// Make the call, printing the answer as it comes.
async fn call(client: &SteerClient, req: Request, args: &GenerateArgs) -> Outcome {
    let fail = |e: &steer::SteerError| (CliError::from_call(e), e.metrics().cloned());
    if args.stream {
        match client.stream(req, &args.model).await {
            Err(e) => Err(fail(&e)),
            Ok(mut s) => {
                let mut result = Err((CliError::Call("stream ended without a final event".into()), None));
                while let Some(ev) = s.next().await {
                    match ev {
                        Ok(steer::StreamEvent::Delta(text)) => {
                            use std::io::Write;
                            out!("{text}");
                            let _ = std::io::stdout().flush();
                        }
                        Ok(steer::StreamEvent::Done(resp)) => {
                            outln!();
                            result = Ok(resp.metrics.clone());
                        }
                        Ok(_) => {}
                        Err(e) => {
                            outln!();
                            result = Err(fail(&e));
                        }
                    }
                }
                result
            }
        }
    } else {
        match client.generate(req, &args.model).await {
            Ok(resp) => {
                outln!("{}", resp.text);
                for call in &resp.tool_calls {
                    outln!("[tool call] {} {}", call.name, call.arguments);
                }
                Ok(resp.metrics.clone())
            }
            Err(e) => Err(fail(&e)),
        }
    }
}
