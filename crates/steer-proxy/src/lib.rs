//! # steer-proxy
//!
//! A gateway speaking the OpenAI, Azure OpenAI, Anthropic, Gemini and
//! (feature `bedrock`) AWS Bedrock Runtime wire APIs: point any
//! application's base URL at it (`OPENAI_BASE_URL=http://127.0.0.1:4000/v1`)
//! and every call is forwarded to the real provider and measured into one
//! [`AgentMetrics`](steer_metrics::AgentMetrics) record, through the same
//! [`MetricsCollector`] and sinks as the Rust client.
//!
//! * [`config`]: upstreams (same environment variables as the client), keys, limits;
//! * [`routes`]: the endpoints and what is forwarded;
//! * [`relay`]: the response body, relayed as it arrives and measured on the way;
//! * [`attribution`]: tags from `x-steer-tag-*` headers and the `user` field;
//! * [`auth`]: key pass-through or provider keys behind a proxy key;
//! * `aws` (feature `bedrock`): the proxy's AWS credentials and SigV4
//!   signing for the Bedrock routes (`/model/{modelId}/converse`, ...).
//!
//! ```no_run
//! use steer_metrics::MetricsCollector;
//! use steer_proxy::{Proxy, ProxyConfig};
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let prometheus = steer_sink_prometheus::PrometheusSink::builder().build();
//! let collector = MetricsCollector::builder().sink(prometheus.clone()).build()?;
//! let proxy = Proxy::new(ProxyConfig::builder().build()?, collector.clone())?
//!     .metrics_endpoint(prometheus);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4000").await?;
//! proxy.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! let report = collector.shutdown(std::time::Duration::from_secs(30)).await;
//! # let _ = report; Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod attribution;
pub mod auth;
#[cfg(feature = "bedrock")]
mod aws;
pub mod config;
pub mod relay;
pub mod routes;
mod serve;

use std::future::Future;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use steer::pricing::PriceTable;
use steer_metrics::MetricsCollector;
use steer_sink_prometheus::PrometheusSink;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use config::{
    AuthMode, BedrockAccess, BedrockConfig, ConfigError, ProxyConfig, ProxyConfigBuilder, Upstream,
};
pub use routes::REQUEST_ID_HEADER;

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The upstream HTTP client could not be built.
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(String),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// State shared by every request.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) prices: Arc<PriceTable>,
    pub(crate) collector: MetricsCollector,
    pub(crate) http: reqwest::Client,
    pub(crate) limit: Arc<Semaphore>,
    pub(crate) prometheus: Option<PrometheusSink>,
    pub(crate) in_flight: InFlight,
    /// The proxy's AWS identity for the Bedrock routes, set up on first use.
    #[cfg(feature = "bedrock")]
    pub(crate) aws: Arc<tokio::sync::OnceCell<aws::Aws>>,
}

/// How many proxied calls are in flight (their record not yet written).
/// Cheap to clone; clones share the count.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    /// Calls started and not yet recorded.
    pub fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub(crate) fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlightGuard(self.clone())
    }
}

/// Counts one call in flight until dropped.
pub(crate) struct InFlightGuard(InFlight);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The gateway: a configuration, a collector, and the upstream client.
#[must_use]
pub struct Proxy {
    shared: Shared,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy recording every call into `collector`.
    pub fn new(config: ProxyConfig, collector: MetricsCollector) -> Result<Self, ProxyError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            // A redirect goes back to the client as it is: following it
            // would send the request (and its key) wherever the upstream says.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build()
            .map_err(|e| ProxyError::Client(e.to_string()))?;
        Ok(Self::with_http_client(config, collector, http))
    }

    /// A proxy using this HTTP client for upstream calls.
    pub fn with_http_client(config: ProxyConfig, collector: MetricsCollector, http: reqwest::Client) -> Self {
        let prices = Arc::new(config.prices.clone());
        let limit = Arc::new(Semaphore::new(config.max_concurrent));
        Proxy {
            shared: Shared {
                config,
                prices,
                collector,
                http,
                limit,
                prometheus: None,
                in_flight: InFlight::default(),
                #[cfg(feature = "bedrock")]
                aws: Arc::new(tokio::sync::OnceCell::new()),
            },
        }
    }

    /// Serve this sink's metrics on `GET /metrics` (add the same sink to
    /// the collector so it receives the records).
    pub fn metrics_endpoint(mut self, sink: PrometheusSink) -> Self {
        self.shared.prometheus = Some(sink);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.shared.config
    }

    /// The count of calls in flight (keep a clone before [`serve`](Self::serve)).
    pub fn in_flight(&self) -> InFlight {
        self.shared.in_flight.clone()
    }

    /// The collector the calls are recorded into.
    pub fn collector(&self) -> &MetricsCollector {
        &self.shared.collector
    }

    /// The routes, to serve with your own server or nest in your app.
    pub fn router(&self) -> Router {
        let router = Router::new();
        #[cfg(feature = "bedrock")]
        let router = router.route("/model/{model}/{operation}", post(routes::bedrock));
        router
            .route("/v1/chat/completions", post(routes::chat_completions))
            .route("/v1/embeddings", post(routes::embeddings))
            .route("/v1/messages", post(routes::messages))
            .route("/v1beta/models/{target}", post(routes::gemini))
            .route("/v1/models/{target}", post(routes::gemini_v1))
            .route(
                "/openai/deployments/{deployment}/chat/completions",
                post(routes::deployment_chat),
            )
            .route(
                "/openai/deployments/{deployment}/embeddings",
                post(routes::deployment_embeddings),
            )
            .route("/openai/v1/chat/completions", post(routes::v1_chat))
            .route("/openai/v1/embeddings", post(routes::v1_embeddings))
            .route("/metrics", get(routes::metrics))
            .route("/healthz", get(routes::healthz))
            .fallback(routes::not_found)
            .method_not_allowed_fallback(routes::method_not_allowed)
            .with_state(Arc::new(self.shared.clone()))
    }

    /// Serve on `listener` until `shutdown` completes; then stop accepting,
    /// let the calls in flight finish (streams included) and return. The
    /// collector is not shut down: do that after (its report says what was
    /// delivered). A client has the configured
    /// [`client_timeout`](ProxyConfigBuilder::client_timeout) to send its
    /// request head, else its connection is closed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ProxyError> {
        let head_timeout = self.shared.config.client_timeout;
        serve::serve(listener, self.router(), shutdown, head_timeout).await?;
        Ok(())
    }
}
