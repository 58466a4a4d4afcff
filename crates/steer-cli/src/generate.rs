//! `steer generate`: one real call, its answer and its metrics record.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use steer::{Request, SteerClient};
use steer_metrics::{AgentMetrics, MetricsCollector};

use crate::error::CliError;
use crate::output::delivery;
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
    /// Give up after this long (all retries included).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    #[command(flatten)]
    sinks: SinkArgs,
}

/// Run `steer generate`.
pub async fn run(args: GenerateArgs, ctx: &Context) -> Result<ExitCode, CliError> {
    let mut specs = ctx.config_sinks.clone();
    specs.extend(args.sinks.specs()?);
    let sinks = crate::sinks::build_all(&specs).await?;
    let mut builder = MetricsCollector::builder();
    for s in sinks {
        builder = builder.sink(s);
    }
    let collector = builder.build().map_err(|e| CliError::Other(e.to_string()))?;
    let client = SteerClient::builder()
        .collector(collector.clone())
        .build()
        .map_err(|e| CliError::Call(e.to_string()))?;

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
        req = req.timeout(t);
    }

    let outcome: Result<AgentMetrics, (String, Option<AgentMetrics>)> = if args.stream {
        match client.stream(req, &args.model).await {
            Err(e) => Err((e.to_string(), e.metrics().cloned())),
            Ok(mut s) => {
                let mut result = Err(("stream ended without a final event".to_string(), None));
                while let Some(ev) = s.next().await {
                    match ev {
                        Ok(steer::StreamEvent::Delta(text)) => {
                            use std::io::Write;
                            print!("{text}");
                            let _ = std::io::stdout().flush();
                        }
                        Ok(steer::StreamEvent::Done(resp)) => {
                            println!();
                            result = Ok(resp.metrics.clone());
                        }
                        Ok(_) => {}
                        Err(e) => {
                            println!();
                            result = Err((e.to_string(), e.metrics().cloned()));
                        }
                    }
                }
                result
            }
        }
    } else {
        match client.generate(req, &args.model).await {
            Ok(resp) => {
                println!("{}", resp.text);
                for call in &resp.tool_calls {
                    println!("[tool call] {} {}", call.name, call.arguments);
                }
                Ok(resp.metrics.clone())
            }
            Err(e) => Err((e.to_string(), e.metrics().cloned())),
        }
    };

    let print_record = |m: &AgentMetrics| {
        eprintln!("--- metrics ---");
        match serde_json::to_string_pretty(m) {
            Ok(s) => eprintln!("{s}"),
            Err(e) => eprintln!("(cannot render the record: {e})"),
        }
    };
    let report = collector.shutdown(Duration::from_secs(10)).await;
    if !report.sinks.is_empty() {
        eprintln!("--- delivery ---");
        eprint!("{}", delivery(&report));
    }
    match outcome {
        Ok(m) => {
            print_record(&m);
            Ok(ExitCode::SUCCESS)
        }
        Err((msg, m)) => {
            if let Some(m) = &m {
                print_record(m);
            }
            Err(CliError::Call(msg))
        }
    }
}
