//! Retry policy of calls to providers, and parsing of the providers' retry hints.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;

/// How failed attempts of a call are retried.
///
/// Rate limits (429, Anthropic 529), 5xx, timeouts and connection errors are
/// retried; 4xx validation errors never. The wait before retry *n* is a
/// random time in `[0, min(max_backoff, initial_backoff * 2^(n-1))]` (full
/// jitter), but at least the provider's hint (`Retry-After`, OpenAI
/// `x-ratelimit-reset-*`, Anthropic `anthropic-ratelimit-*-reset`). A retry
/// that cannot start before `total_deadline` is not made. A stream is not
/// retried once its first delta was delivered.
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct RetryConfig {
    /// Retries after the first attempt (default 3).
    pub max_retries: u32,
    /// Base of the exponential backoff (default 250 ms).
    pub initial_backoff: Duration,
    /// Largest jittered backoff (default 20 s).
    pub max_backoff: Duration,
    /// Budget for the whole call, retries and waits included (default 180 s).
    pub total_deadline: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(20),
            total_deadline: Duration::from_secs(180),
        }
    }
}

impl RetryConfig {
    /// No retries.
    pub fn none() -> Self {
        RetryConfig {
            max_retries: 0,
            ..Self::default()
        }
    }
    /// Set the number of retries.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }
    /// Set the initial backoff.
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }
    /// Set the largest backoff.
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }
    /// Set the total deadline of a call.
    pub fn total_deadline(mut self, d: Duration) -> Self {
        self.total_deadline = d;
        self
    }

    /// The wait before retry number `retry` (1-based), given the provider's
    /// hint ([`steer_metrics::http::backoff`]).
    pub fn backoff(&self, retry: u32, hint: Option<Duration>) -> Duration {
        steer_metrics::http::backoff(self.initial_backoff, self.max_backoff, retry, hint)
    }
}

/// The provider's retry hint from response headers: `Retry-After` (seconds
/// or HTTP date), `retry-after-ms`, OpenAI `x-ratelimit-reset-{requests,tokens}`
/// (`1s`, `6m0s`, `20ms`) and Anthropic `anthropic-ratelimit-*-reset`
/// (RFC 3339). Rate-limit resets are taken from the limits that are
/// exhausted (`remaining` = 0) when that is known, else the longest.
pub fn retry_hint(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    if let Some(d) = get("retry-after").and_then(|v| parse_retry_after(v, now)) {
        return Some(d);
    }
    let mut exhausted = Vec::new();
    let mut all = Vec::new();
    for kind in ["requests", "tokens"] {
        if let Some(d) = get(&format!("x-ratelimit-reset-{kind}")).and_then(parse_go_duration) {
            all.push(d);
            if get(&format!("x-ratelimit-remaining-{kind}")) == Some("0") {
                exhausted.push(d);
            }
        }
    }
    for kind in ["requests", "tokens", "input-tokens", "output-tokens"] {
        if let Some(d) = get(&format!("anthropic-ratelimit-{kind}-reset")).and_then(|v| until_rfc3339(v, now))
        {
            all.push(d);
            if get(&format!("anthropic-ratelimit-{kind}-remaining")) == Some("0") {
                exhausted.push(d);
            }
        }
    }
    let pick = if exhausted.is_empty() { all } else { exhausted };
    pick.into_iter().max()
}

/// `Retry-After`: delay seconds (integer or decimal) or an HTTP date,
/// capped at [`MAX_RETRY_AFTER`](steer_metrics::http::MAX_RETRY_AFTER) (the
/// one parser of every steer crate).
pub use steer_metrics::http::parse_retry_after;

fn until_rfc3339(v: &str, now: DateTime<Utc>) -> Option<Duration> {
    let t = DateTime::parse_from_rfc3339(v).ok()?;
    Some((t.with_timezone(&Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

/// A Go-style duration as OpenAI sends it: `1s`, `6m0s`, `20ms`, `1h2m3.5s`, `250us`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total <= 86_400.0).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(parse_go_duration("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration("9999999h"), None);
    }

    #[test]
    fn provider_headers() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // Retry-After wins.
        let h = headers(&[("retry-after", "3"), ("x-ratelimit-reset-requests", "1m0s")]);
        assert_eq!(retry_hint(&h, now), Some(Duration::from_secs(3)));
        // OpenAI: the exhausted limit's reset.
        let h = headers(&[
            ("x-ratelimit-reset-requests", "20ms"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
            ("x-ratelimit-remaining-tokens", "1200"),
        ]);
        assert_eq!(retry_hint(&h, now), Some(Duration::from_millis(20)));
        // Unknown remaining: the longest.
        let h = headers(&[
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-reset-tokens", "2s"),
        ]);
        assert_eq!(retry_hint(&h, now), Some(Duration::from_secs(2)));
        // Anthropic RFC 3339 resets.
        let h = headers(&[
            ("anthropic-ratelimit-requests-reset", "2025-01-01T00:00:07Z"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-tokens-reset", "2025-01-01T00:01:00Z"),
        ]);
        assert_eq!(retry_hint(&h, now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_hint(&headers(&[("retry-after-ms", "150")]), now),
            Some(Duration::from_millis(150))
        );
        assert_eq!(retry_hint(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_is_bounded_and_honours_hints() {
        let r = RetryConfig::default()
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(1));
        for _ in 0..100 {
            assert!(r.backoff(1, None) <= Duration::from_millis(100));
            assert!(r.backoff(3, None) <= Duration::from_millis(400));
            assert!(r.backoff(40, None) <= Duration::from_secs(1));
            assert!(r.backoff(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
    }
}
