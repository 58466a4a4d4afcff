//! # steer-dashboard
//!
//! `steer dashboard`: a local, read-only web UI and JSON API over a steer
//! metrics store, served by the binary with every asset embedded (no CDN:
//! it works offline).
//!
//! * `GET /` — the page (plain HTML + JS modules, charts by
//!   [uPlot](https://github.com/leeoniya/uPlot), vendored from the npm
//!   registry by `scripts/build-dashboard.sh`).
//! * `GET /api/summary?since=..&by=..&filter=..` — a
//!   [`SummaryReport`](steer_metrics::SummaryReport): the JSON of `steer
//!   stats --format json`.
//! * `GET /api/timeseries?since=..&step=..&by=..&filter=..` — a
//!   [`Timeseries`](steer_metrics::Timeseries).
//! * `GET /api/meta` — what is being read.
//!
//! Parameters are described in [`params`]. The API reads through the
//! [`SummaryStore`] trait, so the page shows the same numbers for the
//! SQLite store, PostgreSQL and the in-memory sink, and the same numbers as
//! `steer stats`.
//!
//! Safety: only `GET`/`HEAD` routes exist (the store is opened read-only);
//! every query is bounded in time, rows, groups, points and run time; when
//! bound to a loopback address, requests whose `Host` is not a loopback
//! name are refused (a web page elsewhere cannot read the API through DNS
//! rebinding).
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod assets;
pub mod params;
pub mod sample;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use serde::Serialize;
use steer_metrics::query::{QueryError, SummaryStore};

use crate::params::Endpoint;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

#[derive(Clone)]
struct AppState {
    store: Arc<dyn SummaryStore>,
    /// Only loopback `Host` names are accepted.
    loopback_only: bool,
}

/// The dashboard's routes over `store`. `loopback_only` refuses requests
/// whose `Host` header is not `localhost`, `127.0.0.1` or `[::1]` (set it
/// when listening on a loopback address).
pub fn router(store: Arc<dyn SummaryStore>, loopback_only: bool) -> Router {
    let state = AppState { store, loopback_only };
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{*path}", get(assets::asset))
        .route("/api/summary", get(summary))
        .route("/api/timeseries", get(timeseries))
        .route("/api/meta", get(meta))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Serve the dashboard on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<dyn SummaryStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let loopback = listener.local_addr()?.ip().is_loopback();
    let app = router(store, loopback);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

fn host_is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn guard(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.loopback_only {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !host_is_loopback(host) {
            return error(
                StatusCode::FORBIDDEN,
                "this dashboard answers only to localhost".into(),
            );
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, message: String) -> Response {
    let body = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

fn query_error(e: QueryError) -> Response {
    let status = match &e {
        QueryError::Invalid(_) => StatusCode::BAD_REQUEST,
        QueryError::TooLarge(_) => StatusCode::UNPROCESSABLE_ENTITY,
        QueryError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        QueryError::Store { retryable: true, .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, "dashboard query failed");
    }
    error(status, e.to_string())
}

fn json<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            (headers, body).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn summary(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let q = match params::parse(q.as_deref().unwrap_or(""), Endpoint::Summary, Utc::now()) {
        Ok(q) => q,
        Err(e) => return query_error(e),
    };
    match state.store.summary(&q).await {
        Ok(r) => json(&r),
        Err(e) => query_error(e),
    }
}

async fn timeseries(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let q = match params::parse(q.as_deref().unwrap_or(""), Endpoint::Timeseries, Utc::now()) {
        Ok(q) => q,
        Err(e) => return query_error(e),
    };
    match state.store.timeseries(&q).await {
        Ok(r) => json(&r),
        Err(e) => query_error(e),
    }
}

#[derive(Serialize)]
struct Meta {
    store: String,
    version: &'static str,
    now: chrono::DateTime<Utc>,
}

async fn meta(State(state): State<AppState>) -> Response {
    json(&Meta {
        store: state.store.describe(),
        version: env!("CARGO_PKG_VERSION"),
        now: Utc::now(),
    })
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found".into())
}

/// Where the dashboard listens, parsed from `--listen` (`HOST:PORT`, or a
/// bare port meaning `127.0.0.1:PORT`).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let s = s
        .strip_prefix("localhost:")
        .map_or_else(|| s.to_string(), |p| format!("127.0.0.1:{p}"));
    s.parse::<SocketAddr>()
        .map_err(|_| format!("`{s}` is not an address like 127.0.0.1:8787"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost:8787",
            "127.0.0.1:8787",
            "[::1]:8787",
            "localhost",
            "127.0.0.2",
        ] {
            assert!(host_is_loopback(ok), "{ok}");
        }
        for bad in ["evil.example:8787", "", "localhost.evil.example", "[::2]:1"] {
            assert!(!host_is_loopback(bad), "{bad}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("8787").unwrap().to_string(), "127.0.0.1:8787");
        assert_eq!(
            parse_listen("localhost:9000").unwrap().to_string(),
            "127.0.0.1:9000"
        );
        assert_eq!(parse_listen("0.0.0.0:80").unwrap().to_string(), "0.0.0.0:80");
        assert!(parse_listen("nope").is_err());
    }
}
