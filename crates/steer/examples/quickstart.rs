//! Quickstart: the simulated provider (no network, no API key), a memory
//! sink, a streamed call, and the summary of what was measured.
//!
//! ```text
//! cargo run -p steer --example quickstart
//! ```
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use steer::metrics::{GroupKey, StatsQuery, SummaryStore};
use steer::sinks::MemorySink;
use steer::{Request, SimConfig, SteerClient, StreamEvent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let memory = MemorySink::new();
    let client = SteerClient::builder()
        .sink(memory.clone())
        .sim(
            SimConfig::default()
                .seed(42)
                .latency(Duration::from_millis(400), 0.5)
                .ttft(Duration::from_millis(120))
                .latency_scale(0.25) // a quick demo: a quarter of realistic waits
                .output_tokens(15, 40)
                .cache_hit_rate(0.3)
                .rate_limit_rate(0.05),
        )
        .build()?;

    // One call.
    let resp = client
        .generate(
            Request::prompt("What does steer measure?")
                .system("Be brief.")
                .tag("team", "docs"),
            "sim/gpt-4o-mini",
        )
        .await?;
    println!("{}: {}", resp.model, resp.text);
    println!(
        "  tokens {} in / {} out, cost {:?} USD, {:.1} ms\n",
        resp.usage.input_tokens, resp.usage.output_tokens, resp.metrics.cost_usd, resp.metrics.latency_ms
    );

    // A streamed call.
    let mut stream = client
        .stream("Stream a short answer", "sim/claude-sonnet-4-5")
        .await?;
    while let Some(item) = stream.next().await {
        match item? {
            StreamEvent::Delta(text) => {
                print!("{text}");
                std::io::stdout().flush()?;
            }
            StreamEvent::Done(resp) => println!("\n  ttft {:.1} ms\n", resp.metrics.ttft_ms.unwrap_or(0.0)),
            _ => {}
        }
    }

    // A few more, across providers; failures are measured too.
    for model in ["sim/gpt-4.1", "sim/claude-haiku-4-5", "sim/grok-4", "sim/o4-mini"] {
        for _ in 0..5 {
            if let Err(e) = client.generate("Hello", model).await {
                println!("{model}: {e}");
            }
        }
    }

    client.metrics().flush().await;
    let report = memory.summary(&StatsQuery::new().by(GroupKey::Provider)).await?;
    let s = report.total;
    println!(
        "{} calls, {} errors, {} input / {} output tokens ({} cached), {:.6} USD",
        s.count, s.errors, s.input_tokens, s.output_tokens, s.cached_tokens, s.cost_usd
    );
    if let Some(l) = s.latency_ms {
        println!("latency ms: p50 {:.1}  p95 {:.1}  max {:.1}", l.p50, l.p95, l.max);
    }
    for (provider, s) in report.groups {
        println!("  {provider:<10} {:>3} calls  {:.6} USD", s.count, s.cost_usd);
    }
    Ok(())
}
