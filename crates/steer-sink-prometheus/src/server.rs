//! The `/metrics` endpoint: Tokio listener + hyper 1 (HTTP/1.1).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encode the registry as OpenMetrics text.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, registry)?;
    Ok(s)
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn handle(req: &Request<Incoming>, registry: &Registry, scrapes: &AtomicU64) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return respond(StatusCode::NOT_FOUND, "not found; metrics are on /metrics\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, "");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match render(registry) {
        Ok(text) => {
            scrapes.fetch_add(1, Relaxed);
            let mut r = respond(StatusCode::OK, text);
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS));
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "encoding the Prometheus exposition failed");
            respond(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")
        }
    }
}

/// Accept connections until `shutdown` turns true (or its sender is
/// dropped); then stop accepting and close every connection gracefully.
pub async fn run(
    listener: TcpListener,
    registry: Arc<Registry>,
    scrapes: Arc<AtomicU64>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a scrape connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let registry = registry.clone();
                let scrapes = scrapes.clone();
                let mut sd = shutdown.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let r = handle(&req, &registry, &scrapes);
                        async move { Ok::<_, Infallible>(r) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        r = conn.as_mut() => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "scrape connection ended with an error");
                            }
                        }
                        () = async { let _ = sd.wait_for(|stop| *stop).await; } => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break; // the sink is gone
                }
            }
        }
    }
}
