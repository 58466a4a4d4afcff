//! The record of one proxied call, written exactly once.

use std::sync::Arc;
use std::time::Instant;

use steer::pricing::PriceTable;
use steer::wire::{self, Completion};
use steer_metrics::{AgentMetrics, ErrorClass, MetricsCollector};

/// One measured call: its record, written exactly once.
pub(crate) struct Call {
    collector: MetricsCollector,
    prices: Arc<PriceTable>,
    record: Option<AgentMetrics>,
    started: Instant,
    ttft_ms: Option<f64>,
    /// Keys to mask in error messages (the client's or the provider's).
    keys: Vec<String>,
    _in_flight: crate::InFlightGuard,
}

impl Call {
    pub(crate) fn new(
        collector: MetricsCollector,
        prices: Arc<PriceTable>,
        record: AgentMetrics,
        started: Instant,
        in_flight: &crate::InFlight,
    ) -> Self {
        Call {
            _in_flight: in_flight.enter(),
            collector,
            prices,
            record: Some(record),
            started,
            ttft_ms: None,
            keys: Vec::new(),
        }
    }

    pub(crate) fn request_id(&self) -> Option<uuid::Uuid> {
        self.record.as_ref().map(|m| m.request_id)
    }

    pub(crate) fn mask_key(&mut self, key: &str) {
        let key = key.trim();
        if key.len() >= 8 {
            self.keys.push(key.to_string());
        }
    }

    fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Whether output was seen (time to first token is known).
    pub(super) fn output_seen(&self) -> bool {
        self.ttft_ms.is_some()
    }

    pub(super) fn first_output(&mut self) {
        if self.ttft_ms.is_none() {
            self.ttft_ms = Some(self.elapsed_ms());
        }
    }

    fn take(&mut self) -> Option<AgentMetrics> {
        let mut m = self.record.take()?;
        m.latency_ms = self.elapsed_ms();
        m.ttft_ms = self.ttft_ms;
        m.retries = 0;
        Some(m)
    }

    /// The call succeeded with this answer.
    pub(crate) fn succeed(&mut self, c: &Completion) {
        let Some(mut m) = self.take() else { return };
        steer::measure::apply_completion(&mut m, c, &self.prices);
        if m.response_model.is_none() {
            m.response_model = Some(m.model.clone());
        }
        if let Some(class) = wire::content_error(c) {
            m.error_class = Some(class);
            m.error_message = Some(format!(
                "the provider stopped the answer ({})",
                c.finish_reason.as_deref().unwrap_or("content filter")
            ));
        }
        self.collector.record(m);
    }

    /// The call failed; `partial` is what was measured of the answer.
    pub(crate) fn fail(&mut self, class: ErrorClass, message: &str, partial: Option<&Completion>) {
        let Some(mut m) = self.take() else { return };
        if let Some(c) = partial {
            steer::measure::apply_completion(&mut m, c, &self.prices);
        }
        m.error_class = Some(class);
        m.error_message = Some(truncate(&mask_keys(message, &self.keys), 200));
        tracing::debug!(provider = %m.provider, model = %m.model, %class, "proxied call failed");
        self.collector.record(m);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.record.is_some() {
            self.fail(
                ErrorClass::Cancelled,
                "the client went away before the answer was complete",
                None,
            );
        }
    }
}

/// Mask the given keys and anything shaped like a provider key
/// (`sk-...`, `xai-...`) in a provider's message.
pub(crate) fn mask_keys(message: &str, keys: &[String]) -> String {
    let mut s = message.to_string();
    for k in keys {
        if !k.is_empty() {
            s = s.replace(k.as_str(), "***");
        }
    }
    s.split(' ')
        .map(|w| {
            if (w.starts_with("sk-") || w.starts_with("xai-")) && w.len() > 8 {
                "***"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn masks_keys_in_messages() {
        let m = mask_keys(
            "Incorrect API key provided: sk-VKMIs1234567. Or my-key-12345678",
            &["my-key-12345678".into()],
        );
        assert_eq!(m, "Incorrect API key provided: *** Or ***");
    }
}
