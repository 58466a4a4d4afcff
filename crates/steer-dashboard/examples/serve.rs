//! Serve the dashboard over an SQLite store without building the whole
//! `steer` CLI (handy while working on the page's assets):
//!
//! ```text
//! cargo run -p steer-dashboard --example serve -- history.db 127.0.0.1:8787
//! ```
//! `steer dashboard --db history.db` does the same (and reads PostgreSQL).
#![allow(missing_docs)]

use std::process::ExitCode;
use std::sync::Arc;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let db = args.first().cloned().unwrap_or_else(|| "steer-metrics.db".into());
    let listen = args
        .get(1)
        .map_or(steer_dashboard::DEFAULT_LISTEN, String::as_str);
    let store = match steer_sink_sqlite::SqliteSummaryStore::open(&db) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match steer_dashboard::parse_listen(listen) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("http://{addr}/");
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match steer_dashboard::serve(listener, store, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
