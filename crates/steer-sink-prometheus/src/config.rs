//! Configuration: the [`PrometheusSinkBuilder`] and its errors.

use std::time::Duration;

/// Builds a [`PrometheusSink`](crate::PrometheusSink).
#[must_use]
#[derive(Debug, Clone)]
pub struct PrometheusSinkBuilder {
    pub(crate) name: String,
    pub(crate) max_series: usize,
    pub(crate) server_address: Option<String>,
    pub(crate) close_grace: Duration,
}

impl Default for PrometheusSinkBuilder {
    fn default() -> Self {
        PrometheusSinkBuilder {
            name: "prometheus".into(),
            max_series: 1000,
            server_address: None,
            close_grace: Duration::ZERO,
        }
    }
}

impl PrometheusSinkBuilder {
    /// The sink's name in collector stats and reports (default `prometheus`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// At most this many (provider, request model, response model) series
    /// (default 1000); records of further ones are folded into
    /// `gen_ai_request_model="other"` and counted in
    /// `steer_prometheus_folded_series_total`.
    pub fn max_series(mut self, n: usize) -> Self {
        self.max_series = n;
        self
    }

    /// The `server_address` label put on every series (default: none).
    pub fn server_address(mut self, address: impl Into<String>) -> Self {
        self.server_address = Some(address.into());
        self
    }

    /// On `close()`, keep serving until one more scrape has happened, for
    /// at most this long (default 0: stop at once). Prometheus pulls, so
    /// what was recorded after its last scrape is only seen if it scrapes
    /// again; set this to about one scrape interval to lose nothing at exit.
    pub fn close_grace(mut self, grace: Duration) -> Self {
        self.close_grace = grace;
        self
    }
}

/// Why the `/metrics` endpoint could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound (in use, not local, malformed).
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Serving needs a Tokio runtime: call from within one.
    #[error("no Tokio runtime: serve the Prometheus endpoint from within a Tokio runtime")]
    NoRuntime,
}
