//! Synthetic call history: records spread over a past window with a daily
//! traffic rhythm, several models and providers, tags (`feature`, `team`),
//! errors, TTFT on streamed calls, cached, reasoning and cache-write
//! tokens, and an incident (one model slower and failing more in the last
//! fifth of the window).
//!
//! For the 1,000,000-call benchmark, the screenshot in the README and
//! tests; `steer demo` writes real measured calls (but all "now").

use std::time::Duration;

use chrono::{DateTime, Utc};
use steer_metrics::{AgentMetrics, ErrorClass, Method};

/// `(provider, model, median latency ms, input $/1M, output $/1M, reasoning)`.
const MODELS: [(&str, &str, f64, f64, f64, bool); 7] = [
    ("openai", "gpt-5.2", 1400.0, 1.75, 14.0, true),
    ("openai", "gpt-4o-mini", 450.0, 0.15, 0.6, false),
    ("anthropic", "claude-sonnet-4-6", 1300.0, 3.0, 15.0, false),
    ("anthropic", "claude-haiku-4-5", 520.0, 1.0, 5.0, false),
    ("gemini", "gemini-2.5-flash", 700.0, 0.3, 2.5, true),
    ("xai", "grok-4.3", 1700.0, 1.25, 2.5, true),
    ("xai", "grok-code-fast-1", 600.0, 1.0, 2.0, true),
];
const FEATURES: [&str; 4] = ["search", "chat", "support-bot", "summarize"];
const TEAMS: [&str; 3] = ["growth", "core", "support"];

/// A standard normal variate (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(1e-12);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `n` records started within `span` before `end`, oldest first,
/// deterministic for a `seed`.
pub fn history(n: usize, span: Duration, end: DateTime<Utc>, seed: u64) -> Vec<AgentMetrics> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let span_us = i64::try_from(span.as_micros()).unwrap_or(i64::MAX).max(1);
    let start_us = end.timestamp_micros() - span_us;
    let mut times: Vec<i64> = Vec::with_capacity(n);
    while times.len() < n {
        let t = start_us + (rng.f64() * span_us as f64) as i64;
        // Busier in the (UTC) afternoon than at night.
        let hour = (t.div_euclid(3_600_000_000)).rem_euclid(24) as f64;
        let weight = 0.55 + 0.45 * ((hour - 8.0) / 24.0 * 2.0 * std::f64::consts::PI).sin();
        if rng.f64() <= weight {
            times.push(t);
        }
    }
    times.sort_unstable();
    let incident_from = start_us + span_us / 5 * 4;
    times
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (provider, model, median, pin, pout, reasoning) = MODELS[rng.usize(..MODELS.len())];
            let mut m = AgentMetrics::new(provider, model);
            m.timestamp = DateTime::from_timestamp_micros(t).unwrap_or(end);
            let secs = u64::try_from(t.div_euclid(1_000_000)).unwrap_or(0);
            let nanos = u32::try_from(t.rem_euclid(1_000_000) * 1000).unwrap_or(0);
            m.request_id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos));
            let incident = model == "claude-sonnet-4-6" && t >= incident_from;
            let slow = if incident { 1.8 } else { 1.0 };
            m.latency_ms = median * slow * (0.45 * normal(&mut rng)).exp();
            m.method = if i % 3 == 2 {
                Method::Stream
            } else {
                Method::Generate
            };
            if m.method == Method::Stream {
                m.ttft_ms = Some(m.latency_ms * (0.12 + 0.2 * rng.f64()));
            }
            m.tags
                .insert("feature".into(), FEATURES[rng.usize(..FEATURES.len())].into());
            m.tags
                .insert("team".into(), TEAMS[rng.usize(..TEAMS.len())].into());
            let err_p = if incident { 0.15 } else { 0.05 };
            if rng.f64() < err_p {
                let r = rng.f64();
                m.error_class = Some(if r < 0.55 {
                    ErrorClass::RateLimit
                } else if r < 0.8 {
                    ErrorClass::ServerError
                } else if r < 0.95 {
                    ErrorClass::Timeout
                } else {
                    ErrorClass::Network
                });
                m.retries = 1;
                m.error_message = Some("simulated".into());
                if m.error_class == Some(ErrorClass::RateLimit) {
                    m.latency_ms = m.latency_ms.min(80.0 + 40.0 * rng.f64());
                    m.ttft_ms = None;
                }
                return m;
            }
            m.retries = u32::from(rng.f64() < 0.04);
            m.input_tokens = rng.u64(200..4000);
            m.output_tokens = rng.u64(20..900);
            if rng.f64() < 0.3 {
                m.cached_tokens = m.input_tokens / 2;
            }
            if provider == "anthropic" && rng.f64() < 0.1 {
                m.cache_write_tokens = Some(m.input_tokens / 3);
            }
            if reasoning {
                let r = m.output_tokens / 2;
                m.reasoning_tokens = Some(r);
            }
            m.finish_reason = Some(
                if rng.f64() < 0.04 {
                    "length"
                } else if rng.f64() < 0.1 {
                    "tool_calls"
                } else {
                    "stop"
                }
                .into(),
            );
            let uncached = (m.input_tokens - m.cached_tokens) as f64;
            m.cost_usd = Some(
                (uncached * pin + m.cached_tokens as f64 * pin * 0.1 + m.output_tokens as f64 * pout) / 1e6,
            );
            m
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_deterministic_ordered_and_inside_the_window() {
        let end = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let a = history(2000, Duration::from_secs(86_400), end, 7);
        let b = history(2000, Duration::from_secs(86_400), end, 7);
        assert_eq!(a.len(), 2000);
        assert_eq!(
            a.iter().map(|m| m.latency_ms).collect::<Vec<_>>(),
            b.iter().map(|m| m.latency_ms).collect::<Vec<_>>()
        );
        assert!(a.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(a
            .iter()
            .all(|m| m.timestamp <= end && m.timestamp >= end - chrono::Duration::days(1)));
        assert!(a.iter().any(|m| m.is_error()) && a.iter().any(|m| m.ttft_ms.is_some()));
        let ids: std::collections::HashSet<_> = a.iter().map(|m| m.request_id).collect();
        assert_eq!(ids.len(), a.len());
    }
}
