//! Configuration: the [`PrometheusSinkBuilder`] and its errors.

use std::time::Duration;

use steer_metrics::semconv::{check_tag_keys, TagKeyError};

/// Builds a [`PrometheusSink`](crate::PrometheusSink).
#[must_use]
#[derive(Debug, Clone)]
pub struct PrometheusSinkBuilder {
    pub(crate) name: String,
    pub(crate) max_series: usize,
    pub(crate) server_address: Option<String>,
    pub(crate) close_grace: Duration,
    pub(crate) tag_keys: Vec<String>,
}

impl Default for PrometheusSinkBuilder {
    fn default() -> Self {
        PrometheusSinkBuilder {
            name: "prometheus".into(),
            max_series: 1000,
            server_address: None,
            close_grace: Duration::ZERO,
            tag_keys: Vec::new(),
        }
    }
}

impl PrometheusSinkBuilder {
    /// The sink's name in collector stats and reports (default `prometheus`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// At most this many (provider, request model, response model, finish
    /// reason, allow-listed tag values) series (default 1000); records of
    /// further ones are folded into `gen_ai_request_model="other"` and
    /// counted in `steer_prometheus_folded_series_total`.
    pub fn max_series(mut self, n: usize) -> Self {
        self.max_series = n;
        self
    }

    /// The `server_address` label put on every series (default: none).
    pub fn server_address(mut self, address: impl Into<String>) -> Self {
        self.server_address = Some(address.into());
        self
    }

    /// Export these record tags as labels of every series (default: none),
    /// e.g. `["user", "team"]`: the label name is the key sanitised
    /// (characters other than letters, digits and `_` become `_`), the
    /// value the record's tag value, or empty (Prometheus: absent) when the
    /// record lacks it, so every series carries the same labels. Each
    /// distinct combination is a series under
    /// [`max_series`](Self::max_series). The same as `?tags=user,team` in
    /// [`PrometheusSink::bind`](crate::PrometheusSink::bind). Replaces any
    /// earlier list.
    ///
    /// # Errors
    /// A [`TagKeyError`] for a key that is a built-in label
    /// (`gen_ai_request_model`, `error_type`, `le`, ... in either naming),
    /// not a valid label name after sanitising (empty, a leading digit or
    /// `__`), or two keys that sanitise to the same label.
    pub fn tag_labels<I, S>(mut self, keys: I) -> Result<Self, TagKeyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.tag_keys = check_tag_keys(keys)?;
        Ok(self)
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
    /// A tag key of `?tags=` cannot be a label (see
    /// [`PrometheusSinkBuilder::tag_labels`]).
    #[error("Prometheus tag labels: {0}")]
    TagKey(#[from] TagKeyError),
    /// The spec's query has a parameter other than `tags`.
    #[error("unknown parameter in `{0}`: expected ADDR or ADDR?tags=KEY,KEY")]
    UnknownParameter(String),
}
