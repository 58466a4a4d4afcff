//! Write a store of synthetic history to look at with `steer dashboard`
//! (several models and providers, `feature` and `team` tags, errors, an
//! incident in the last fifth of the window).
//!
//! ```text
//! cargo run --release -p steer-dashboard --example sample_store -- history.db 200000 7d
//! steer dashboard --db history.db        # then pick 7d
//! ```
#![allow(missing_docs)]

use std::process::ExitCode;

use steer_metrics::MetricsSink;
use steer_sink_sqlite::SqliteSink;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().cloned().unwrap_or_else(|| "history.db".into());
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let span = args
        .get(2)
        .and_then(|s| humantime::parse_duration(s).ok())
        .unwrap_or(std::time::Duration::from_secs(7 * 86_400));
    let sink = match SqliteSink::open(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let records = steer_dashboard::sample::history(n, span, chrono::Utc::now(), 42);
    for chunk in records.chunks(10_000) {
        if let Err(e) = sink.record_batch(chunk).await {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = sink.close().await {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    println!("{n} calls over {} in {path}", humantime::format_duration(span));
    ExitCode::SUCCESS
}
