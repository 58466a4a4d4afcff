//! `steer dashboard`: the local web UI and JSON API over a store
//! (see the `steer-dashboard` crate and docs/dashboard.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::error::CliError;
use crate::Context;

/// `steer dashboard` arguments.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// SQLite store (default: the config file's `db`, else ./steer-metrics.db).
    #[arg(long, value_name = "PATH", conflicts_with = "postgres")]
    db: Option<PathBuf>,
    /// PostgreSQL store URL instead of SQLite (password: in the URL or PGPASSWORD).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Address to listen on (HOST:PORT or a port). Anything but a loopback
    /// address exposes your metrics to the network.
    #[arg(long, value_name = "ADDR", default_value = steer_dashboard::DEFAULT_LISTEN, value_parser = steer_dashboard::parse_listen)]
    listen: SocketAddr,
}

/// Run `steer dashboard` until Ctrl-C / SIGTERM.
pub async fn run(args: DashboardArgs, ctx: &Context) -> Result<ExitCode, CliError> {
    let store = crate::stats::open_store(args.db.clone(), args.postgres.as_deref(), ctx, true).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CliError::Invalid(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Other(format!("cannot read the listening address: {e}")))?;
    if !addr.ip().is_loopback() {
        eoutln!(
            "warning: listening on {addr}, not a loopback address: anyone who can reach it can read these metrics"
        );
    }
    let host = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    outln!(
        "steer dashboard over {} at http://{host}/  (Ctrl-C to stop)",
        store.describe()
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let shutdown = async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = shutdown => {}
            () = term => {}
        }
    };
    steer_dashboard::serve(listener, store, shutdown)
        .await
        .map_err(|e| CliError::Other(format!("dashboard server failed: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
