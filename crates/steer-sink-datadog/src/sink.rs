//! The sink: [`DatadogSink`] (configuration, HTTP client and aggregation
//! state together), its [`DatadogStats`], and the [`MetricsSink`]
//! implementation that hands each batch to the aggregate or raw path in
//! `ship`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use steer_metrics::{AgentMetrics, MetricsSink, SinkError};

use crate::aggregate::Aggregator;
use crate::client::Client;
use crate::config::{ConfigError, DatadogConfig, DatadogSinkBuilder, Mode, API_KEY_ENV};
use crate::encode::Limits;
#[cfg(doc)]
use crate::{MAX_COST_USD, MAX_DURATION_MS, MAX_POINT_VALUE};

/// Counters of what the sink sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatadogStats {
    /// HTTP requests that were answered 2xx.
    pub payloads_delivered: u64,
    /// HTTP requests that failed (any reason).
    pub payloads_failed: u64,
    /// Bytes sent in delivered bodies (compressed, as on the wire).
    pub bytes_sent: u64,
    /// The same bodies before compression.
    pub bytes_uncompressed: u64,
    /// Count points delivered.
    pub count_points: u64,
    /// Distribution values delivered.
    pub distribution_values: u64,
    /// Records whose tags were folded into `model:other` by the cardinality cap.
    pub folded_records: u64,
    /// Count points dropped undelivered from the retained window.
    pub lost_points: u64,
    /// Count cells currently held.
    pub cells: u64,
    /// Values left out: latency/TTFT negative, not finite or above
    /// [`MAX_DURATION_MS`]; cost negative, not finite or above
    /// [`MAX_COST_USD`]; count contributions that would push a point past
    /// [`MAX_POINT_VALUE`]. The records themselves are still counted.
    pub invalid_values: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) payloads_delivered: AtomicU64,
    pub(crate) payloads_failed: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_uncompressed: AtomicU64,
    pub(crate) count_points: AtomicU64,
    pub(crate) distribution_values: AtomicU64,
}

/// The Datadog sink. Cheap to clone (clones share state).
#[derive(Clone)]
pub struct DatadogSink {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: DatadogConfig,
    pub(crate) client: Client,
    pub(crate) state: Mutex<Aggregator>,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for DatadogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatadogSink")
            .field("name", &self.inner.cfg.name)
            .field("base_url", &self.inner.cfg.base_url.as_str())
            .field("mode", &self.inner.cfg.mode)
            .finish_non_exhaustive()
    }
}

impl DatadogSink {
    /// A builder with the defaults (site `datadoghq.com`, key from `DD_API_KEY`).
    pub fn builder() -> DatadogSinkBuilder {
        DatadogSinkBuilder::default()
    }

    /// Build from a CLI spec: `datadog` (site from `DD_SITE`, else
    /// `datadoghq.com`) or `datadog:SITE_OR_URL`, given here as the part
    /// after the colon. The key comes from `DD_API_KEY`; without it this is
    /// [`ConfigError::MissingApiKey`].
    pub fn from_spec(site: Option<&str>) -> Result<Self, ConfigError> {
        let env_site = std::env::var("DD_SITE").ok();
        Self::from_spec_with(site, env_site.as_deref(), std::env::var(API_KEY_ENV).ok())
    }

    fn from_spec_with(
        site: Option<&str>,
        env_site: Option<&str>,
        key: Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut b = Self::builder();
        if let Some(s) = site.map(str::trim).filter(|s| !s.is_empty()).or(env_site) {
            b = b.site(s);
        }
        Self::from_config(b.into_config(key)?)
    }

    pub(crate) fn from_config(cfg: DatadogConfig) -> Result<Self, ConfigError> {
        let client = Client::new(&cfg)?;
        let state = Aggregator::new(
            cfg.flush_interval.as_secs(),
            cfg.max_tag_sets,
            cfg.retained_intervals,
            cfg.static_tags.clone(),
            cfg.record_tags.clone(),
        );
        Ok(DatadogSink {
            inner: Arc::new(Inner {
                cfg,
                client,
                state: Mutex::new(state),
                counters: Counters::default(),
            }),
        })
    }

    /// The configuration in use (the API key prints as `***`).
    pub fn config(&self) -> &DatadogConfig {
        &self.inner.cfg
    }

    /// What was sent so far.
    pub fn stats(&self) -> DatadogStats {
        let c = &self.inner.counters;
        let (agg, cells) = {
            let s = self.state();
            (s.counters, s.cells() as u64)
        };
        DatadogStats {
            payloads_delivered: c.payloads_delivered.load(Relaxed),
            payloads_failed: c.payloads_failed.load(Relaxed),
            bytes_sent: c.bytes_sent.load(Relaxed),
            bytes_uncompressed: c.bytes_uncompressed.load(Relaxed),
            count_points: c.count_points.load(Relaxed),
            distribution_values: c.distribution_values.load(Relaxed),
            folded_records: agg.folded,
            lost_points: agg.lost_points,
            cells,
            invalid_values: agg.invalid_values,
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, Aggregator> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_sent: self.inner.cfg.max_compressed_bytes,
            max_raw: self.inner.cfg.max_uncompressed_bytes,
            compression: self.inner.client.compression(),
        }
    }

    pub(crate) fn host(&self) -> Option<&str> {
        self.inner.cfg.host.as_deref()
    }
}

#[async_trait]
impl MetricsSink for DatadogSink {
    fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(metrics)).await
    }

    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        match self.inner.cfg.mode {
            Mode::Aggregate => self.record_aggregate(batch).await,
            Mode::Raw => self.record_raw(batch).await,
        }
    }

    /// Ship every count total still waiting (after an earlier failure).
    /// Errors when some could not be delivered.
    async fn flush(&self) -> Result<(), SinkError> {
        if self.inner.cfg.mode == Mode::Raw {
            return Ok(());
        }
        self.flush_counts().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn from_spec_requires_a_key_and_maps_the_site() {
        assert!(matches!(
            DatadogSink::from_spec_with(Some("eu"), None, None),
            Err(ConfigError::MissingApiKey)
        ));
        let s = DatadogSink::from_spec_with(Some("eu"), None, Some("k".into())).unwrap();
        assert_eq!(s.config().base_url().as_str(), "https://api.datadoghq.eu/");
        let s = DatadogSink::from_spec_with(None, Some("us5"), Some("k".into())).unwrap();
        assert_eq!(s.config().base_url().as_str(), "https://api.us5.datadoghq.com/");
        let s = DatadogSink::from_spec_with(None, None, Some("k".into())).unwrap();
        assert_eq!(s.config().base_url().as_str(), "https://api.datadoghq.com/");
        assert!(matches!(
            DatadogSink::from_spec_with(Some("mars"), None, Some("k".into())),
            Err(ConfigError::UnknownSite(_))
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        let key = "fake-dd-key-RECOGNISABLE-42";
        let s = DatadogSink::builder().api_key(key).build().unwrap();
        assert!(!format!("{s:?}").contains(key));
        assert!(!format!("{:?}", s.config()).contains(key));
    }
}
