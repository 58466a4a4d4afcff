use async_trait::async_trait;

use crate::record::AgentMetrics;
use crate::sink::{MetricsSink, SinkError};

/// Logs each record as one `tracing` event (target `steer::metrics`, level
/// INFO for successes, WARN for failures).
#[derive(Debug, Clone)]
pub struct LogSink {
    name: String,
}

impl Default for LogSink {
    fn default() -> Self {
        Self::new()
    }
}

impl LogSink {
    /// A sink named `log`.
    pub fn new() -> Self {
        LogSink { name: "log".into() }
    }
}

#[async_trait]
impl MetricsSink for LogSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn record(&self, m: &AgentMetrics) -> Result<(), SinkError> {
        let error_class = m.error_class.map(|c| c.as_str());
        if m.is_error() {
            tracing::warn!(
                target: "steer::metrics",
                request_id = %m.request_id, provider = %m.provider, model = %m.model,
                method = %m.method, latency_ms = m.latency_ms, retries = m.retries,
                input_tokens = m.input_tokens, output_tokens = m.output_tokens,
                error_class, "llm call failed"
            );
        } else {
            tracing::info!(
                target: "steer::metrics",
                request_id = %m.request_id, provider = %m.provider, model = %m.model,
                method = %m.method, latency_ms = m.latency_ms, ttft_ms = m.ttft_ms,
                input_tokens = m.input_tokens, output_tokens = m.output_tokens,
                cached_tokens = m.cached_tokens, cost_usd = m.cost_usd, retries = m.retries,
                "llm call"
            );
        }
        Ok(())
    }
}
