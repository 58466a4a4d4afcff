//! # steer-sink-prometheus
//!
//! A [`MetricsSink`] that keeps steer's LLM call metrics as Prometheus
//! histograms and counters (the OpenTelemetry GenAI instruments in
//! Prometheus naming) and serves them as OpenMetrics text on `/metrics`,
//! or registers them into a `prometheus_client` registry you already
//! serve.
//!
//! | metric | type |
//! |---|---|
//! | `gen_ai_client_operation_duration_seconds` | histogram |
//! | `gen_ai_client_token_usage` | histogram (`gen_ai_token_type` = `input` \| `output`) |
//! | `gen_ai_client_operation_time_to_first_chunk_seconds` | histogram (streamed calls) |
//! | `steer_llm_requests_total` | counter |
//! | `steer_llm_errors_total` | counter |
//! | `steer_llm_cost_usd_total` | counter |
//! | `steer_prometheus_folded_series_total` | counter |
//!
//! Every series carries `gen_ai_response_finish_reasons` (the record's
//! finish reason, when it has one) and a label per record tag you
//! allow-list with [`tag_labels`](PrometheusSinkBuilder::tag_labels) (or
//! `?tags=` in [`PrometheusSink::bind`]). Labels, buckets, sanitising, the
//! series cap and sample weights are in [`instruments`].
//!
//! ## How it fits the collector
//!
//! [`record_batch`](MetricsSink::record_batch) updates in-memory series
//! and returns; Prometheus scrapes whenever it likes. `flush()` has
//! nothing to do. `close()` stops the endpoint (after one more scrape if
//! [`close_grace`](PrometheusSinkBuilder::close_grace) is set).
//!
//! ```no_run
//! use steer_metrics::MetricsCollector;
//! use steer_sink_prometheus::PrometheusSink;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = PrometheusSink::bind("127.0.0.1:9464")?; // scrape http://127.0.0.1:9464/metrics
//! let collector = MetricsCollector::builder().sink(sink).build()?;
//! # let _ = collector; Ok(()) }
//! ```
//!
//! Into your own registry:
//!
//! ```
//! use prometheus_client::registry::Registry;
//! use steer_sink_prometheus::PrometheusSink;
//! let mut registry = Registry::default();
//! let sink = PrometheusSink::builder().register_into(&mut registry);
//! # let _ = sink;
//! ```
#![warn(missing_docs)]

mod config;
pub mod instruments;
mod server;
pub mod spec;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::registry::Registry;
use steer_metrics::{AgentMetrics, MetricsSink, SinkError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{PrometheusSinkBuilder, ServeError};
use instruments::{Instruments, Recorder};
pub use server::{render, CONTENT_TYPE_OPENMETRICS};
pub use steer_metrics::semconv::TagKeyError;

/// Re-exported so users can pass their own registry.
pub use prometheus_client;

/// What the sink has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrometheusStats {
    /// Records recorded.
    pub records: u64,
    /// Records folded into model `other` by the series cap.
    pub folded_records: u64,
    /// Values skipped as negative, not finite or implausible (latency/TTFT
    /// above [`instruments::MAX_DURATION_MS`], cost above
    /// [`instruments::MAX_COST_USD`]).
    pub invalid_values: u64,
    /// Successful scrapes of the sink's own endpoint.
    pub scrapes: u64,
}

/// The Prometheus sink. Cheap to clone (clones share state).
#[derive(Clone)]
pub struct PrometheusSink {
    inner: Arc<Inner>,
}

struct Server {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Inner {
    name: String,
    recorder: Recorder,
    close_grace: Duration,
    registry: Option<Arc<Registry>>,
    local_addr: Option<SocketAddr>,
    server: Mutex<Option<Server>>,
    scrapes: Arc<AtomicU64>,
    records: AtomicU64,
    invalid: AtomicU64,
    closed: AtomicBool,
}

impl std::fmt::Debug for PrometheusSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSink")
            .field("name", &self.inner.name)
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl PrometheusSinkBuilder {
    fn finish(
        self,
        instruments: Instruments,
        registry: Option<Arc<Registry>>,
        local_addr: Option<SocketAddr>,
        server: Option<Server>,
        scrapes: Arc<AtomicU64>,
    ) -> PrometheusSink {
        PrometheusSink {
            inner: Arc::new(Inner {
                name: self.name,
                recorder: Recorder::new(instruments, self.max_series, self.server_address, self.tag_keys),
                close_grace: self.close_grace,
                registry,
                local_addr,
                server: Mutex::new(server),
                scrapes,
                records: AtomicU64::new(0),
                invalid: AtomicU64::new(0),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// A sink with its own registry and no endpoint: read it with
    /// [`PrometheusSink::encode`].
    pub fn build(self) -> PrometheusSink {
        let instruments = Instruments::new();
        let mut registry = Registry::default();
        instruments.register(&mut registry);
        self.finish(instruments, Some(Arc::new(registry)), None, None, Arc::default())
    }

    /// Register the metrics into your registry (you serve it); the sink
    /// serves nothing.
    pub fn register_into(self, registry: &mut Registry) -> PrometheusSink {
        let instruments = Instruments::new();
        instruments.register(registry);
        self.finish(instruments, None, None, None, Arc::default())
    }

    /// Serve `/metrics` on `addr` (e.g. `127.0.0.1:9464`; port 0 picks a
    /// free one, see [`PrometheusSink::local_addr`]). Must be called from
    /// within a Tokio runtime; the server runs on it until `close()` or
    /// until the last clone of the sink is dropped.
    pub fn serve(self, addr: &str) -> Result<PrometheusSink, ServeError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| ServeError::NoRuntime)?;
        let bind_err = |source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let local_addr = std_listener.local_addr().map_err(bind_err)?;
        let listener = {
            let _guard = handle.enter();
            tokio::net::TcpListener::from_std(std_listener).map_err(bind_err)?
        };
        let instruments = Instruments::new();
        let mut registry = Registry::default();
        instruments.register(&mut registry);
        let registry = Arc::new(registry);
        let scrapes = Arc::new(AtomicU64::new(0));
        let (tx, rx) = watch::channel(false);
        let task = handle.spawn(server::run(listener, registry.clone(), scrapes.clone(), rx));
        tracing::info!(%local_addr, "serving Prometheus metrics on /metrics");
        Ok(self.finish(
            instruments,
            Some(registry),
            Some(local_addr),
            Some(Server { shutdown: tx, task }),
            scrapes,
        ))
    }
}

impl PrometheusSink {
    /// A builder with the defaults.
    pub fn builder() -> PrometheusSinkBuilder {
        PrometheusSinkBuilder::default()
    }

    /// Serve `/metrics` on `addr` with the defaults (the CLI spec
    /// `prometheus:ADDR`). A `tags` query parameter
    /// (`127.0.0.1:9464?tags=user,team`) is the allow-list of
    /// [`tag_labels`](PrometheusSinkBuilder::tag_labels); it is removed
    /// before binding. Any other parameter is refused.
    pub fn bind(addr: &str) -> Result<Self, ServeError> {
        let (addr, tags) = steer_metrics::semconv::take_tags_param(addr.trim());
        if addr.contains('?') {
            return Err(ServeError::UnknownParameter(addr));
        }
        let mut b = Self::builder();
        if let Some(keys) = tags {
            b = b.tag_labels(keys)?;
        }
        b.serve(&addr)
    }

    /// The address the endpoint listens on, when the sink serves one.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// The sink's own registry as OpenMetrics text (`None` when the
    /// metrics live in your registry).
    pub fn encode(&self) -> Option<String> {
        self.inner.registry.as_ref().and_then(|r| render(r).ok())
    }

    /// What the sink has done so far.
    pub fn stats(&self) -> PrometheusStats {
        PrometheusStats {
            records: self.inner.records.load(Relaxed),
            folded_records: self.inner.recorder.instruments().folded(),
            invalid_values: self.inner.invalid.load(Relaxed),
            scrapes: self.inner.scrapes.load(Relaxed),
        }
    }

    fn record_all(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        let i = &self.inner;
        if i.closed.load(Relaxed) {
            return Err(SinkError::permanent("Prometheus sink is closed"));
        }
        for m in batch {
            let invalid = i.recorder.record(m);
            if invalid > 0 {
                i.invalid.fetch_add(invalid, Relaxed);
            }
        }
        i.records.fetch_add(batch.len() as u64, Relaxed);
        Ok(())
    }
}

#[async_trait]
impl MetricsSink for PrometheusSink {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError> {
        self.record_all(std::slice::from_ref(metrics))
    }

    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        self.record_all(batch)
    }

    async fn close(&self) -> Result<(), SinkError> {
        if self.inner.closed.swap(true, Relaxed) {
            return Ok(());
        }
        let server = self.inner.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(server) = server else {
            return Ok(());
        };
        if !self.inner.close_grace.is_zero() {
            let seen = self.inner.scrapes.load(Relaxed);
            let until = Instant::now() + self.inner.close_grace;
            while self.inner.scrapes.load(Relaxed) == seen && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let _ = server.shutdown.send(true);
        if tokio::time::timeout(Duration::from_secs(5), server.task)
            .await
            .is_err()
        {
            tracing::warn!("the Prometheus endpoint did not stop within 5 s");
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> (u16, Option<String>, String) {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        (status, ct, r.text().await.unwrap())
    }

    #[tokio::test]
    async fn serves_openmetrics_on_metrics_only() {
        let sink = PrometheusSink::bind("127.0.0.1:0").unwrap();
        let addr = sink.local_addr().unwrap();
        sink.record_batch(&[AgentMetrics::new("openai", "gpt-4o").with_latency_ms(10.0)])
            .await
            .unwrap();
        let (status, ct, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(ct.as_deref(), Some(CONTENT_TYPE_OPENMETRICS));
        assert!(body.contains("steer_llm_requests_total{"), "{body}");
        assert!(body.ends_with("# EOF\n"));
        assert_eq!(get(addr, "/").await.0, 404);
        let post = reqwest::Client::new()
            .post(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(post.status().as_u16(), 405);
        assert_eq!(sink.stats().scrapes, 1);
        assert_eq!(sink.stats().records, 1);

        sink.close().await.unwrap();
        assert!(
            reqwest::get(format!("http://{addr}/metrics")).await.is_err(),
            "closed endpoint refuses connections"
        );
        assert!(sink
            .record_batch(&[AgentMetrics::new("a", "b")])
            .await
            .unwrap_err()
            .is_permanent());
    }

    #[tokio::test]
    async fn bind_errors_are_typed() {
        let sink = PrometheusSink::bind("127.0.0.1:0").unwrap();
        let taken = sink.local_addr().unwrap().to_string();
        assert!(matches!(
            PrometheusSink::bind(&taken),
            Err(ServeError::Bind { .. })
        ));
        assert!(matches!(
            PrometheusSink::bind("not an address"),
            Err(ServeError::Bind { .. })
        ));
        sink.close().await.unwrap();
    }

    #[tokio::test]
    async fn bind_takes_the_tags_parameter() {
        let sink = PrometheusSink::bind("127.0.0.1:0?tags=user,team").unwrap();
        let mut m = AgentMetrics::new("openai", "gpt-5").with_latency_ms(10.0);
        m.finish_reason = Some("tool_calls".into());
        m.tags.insert("team".into(), "search".into());
        sink.record_batch(&[m]).await.unwrap();
        let text = sink.encode().unwrap();
        assert!(
            text.contains(r#"gen_ai_response_finish_reasons="tool_calls",user="",team="search"} 1.0"#),
            "{text}"
        );
        sink.close().await.unwrap();
        for bad in [
            "127.0.0.1:0?tags=le",
            "127.0.0.1:0?tags=error.type",
            "127.0.0.1:0?tags=9x",
        ] {
            assert!(
                matches!(PrometheusSink::bind(bad), Err(ServeError::TagKey(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            PrometheusSink::bind("127.0.0.1:0?tag=user"),
            Err(ServeError::UnknownParameter(_))
        ));
        assert!(matches!(
            PrometheusSink::builder().tag_labels(["a.b", "a-b"]),
            Err(TagKeyError::Duplicate(..))
        ));
    }

    #[test]
    fn serving_needs_a_runtime() {
        assert!(matches!(
            PrometheusSink::bind("127.0.0.1:0"),
            Err(ServeError::NoRuntime)
        ));
    }

    #[tokio::test]
    async fn registers_into_a_users_registry() {
        let mut registry = Registry::default();
        let sink = PrometheusSink::builder().name("p").register_into(&mut registry);
        assert_eq!(sink.name(), "p");
        assert!(sink.encode().is_none());
        sink.record_batch(&[AgentMetrics::new("anthropic", "claude").with_latency_ms(10.0)])
            .await
            .unwrap();
        let text = render(&registry).unwrap();
        assert!(text.contains(r#"gen_ai_request_model="claude""#), "{text}");
        sink.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_grace_waits_for_one_more_scrape() {
        let sink = PrometheusSink::builder()
            .close_grace(Duration::from_secs(10))
            .serve("127.0.0.1:0")
            .unwrap();
        let addr = sink.local_addr().unwrap();
        let s2 = sink.clone();
        let closing = tokio::spawn(async move { s2.close().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!closing.is_finished(), "waits for a scrape");
        let started = Instant::now();
        assert_eq!(get(addr, "/metrics").await.0, 200);
        closing.await.unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
