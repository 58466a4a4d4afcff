//! The shared layer of HTTP sinks (and of the LLM client's retries): one
//! definition each of
//!
//! * [`parse_retry_after`]: `Retry-After` (seconds or an HTTP date), capped
//!   at [`MAX_RETRY_AFTER`];
//! * [`status_kind`]: an HTTP status → [`SinkErrorKind`] (or success);
//! * [`Secret`]: a password / token / API key that never prints;
//! * [`backoff`]: exponential backoff with full jitter, at least a server's hint;
//! * the attempt deadline: the collector runs each delivery attempt under
//!   [`with_deadline`], and a sink sizes its request timeout with
//!   [`request_timeout`], so one timeout (the collector's
//!   [`attempt_timeout`](crate::RetryPolicy::attempt_timeout)) governs an
//!   attempt, not two.
//!
//! URL and message redaction is [`crate::redact`]; char-boundary truncation
//! is [`crate::redact::truncate`] / [`crate::redact::truncate_str`].
//!
//! This module has no HTTP client dependency: it works on status codes
//! and header values, so every client (reqwest, hyper, an SDK's) can use it.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::sink::SinkErrorKind;

/// The longest `Retry-After` honoured (1 hour). A server asking for longer
/// is waited on for an hour at most; the caller's own deadline (a
/// collector's batch deadline, a call's total deadline) usually ends the
/// wait well before.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait on a 429 without a usable `Retry-After` (1 s).
pub const DEFAULT_THROTTLE: Duration = Duration::from_secs(1);

/// `Retry-After`: delay seconds (integer or decimal) or an HTTP date,
/// relative to `now`; a date in the past is zero. Capped at
/// [`MAX_RETRY_AFTER`]. `None` for anything else (negative, NaN, text).
///
/// ```
/// use std::time::Duration;
/// use steer_metrics::http::parse_retry_after;
/// let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().to_utc();
/// assert_eq!(parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
/// assert_eq!(parse_retry_after("999999", now), Some(Duration::from_secs(3600)));
/// ```
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs.min(MAX_RETRY_AFTER.as_secs()))
    } else if let Ok(secs) = v.parse::<f64>() {
        if !(secs.is_finite() && secs >= 0.0) {
            return None;
        }
        Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64()))
    } else {
        let at = DateTime::parse_from_rfc2822(v).ok()?;
        (at.with_timezone(&Utc) - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// What an HTTP status means for a delivery: `None` for 2xx, else
///
/// | status | kind |
/// |---|---|
/// | 429 | [`Throttled`](SinkErrorKind::Throttled) (`retry_after`, else [`DEFAULT_THROTTLE`]) |
/// | 408, 5xx | [`Retryable`](SinkErrorKind::Retryable), or `Throttled` when a `Retry-After` came |
/// | 401, 403, 404 | [`Misconfigured`](SinkErrorKind::Misconfigured): the key or the endpoint is wrong |
/// | 1xx, 3xx | `Misconfigured` (a redirect is not followed: the URL is wrong) |
/// | any other 4xx (400, 413, 422, ...) | [`Permanent`](SinkErrorKind::Permanent): the data is refused; split to isolate it |
pub fn status_kind(status: u16, retry_after: Option<Duration>) -> Option<SinkErrorKind> {
    Some(match status {
        200..=299 => return None,
        429 => SinkErrorKind::Throttled(retry_after.unwrap_or(DEFAULT_THROTTLE)),
        408 | 500..=599 => match retry_after {
            Some(d) => SinkErrorKind::Throttled(d),
            None => SinkErrorKind::Retryable,
        },
        401 | 403 | 404 => SinkErrorKind::Misconfigured,
        400..=499 => SinkErrorKind::Permanent,
        _ => SinkErrorKind::Misconfigured,
    })
}

/// A secret (password, token, API key): `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it (a header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::redact::MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::redact::MASK)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

/// The wait before retry number `failures` (1-based): a random time in
/// `[0, min(max, initial * 2^(failures-1))]` (full jitter), but at least
/// the server's `hint`.
pub fn backoff(initial: Duration, max: Duration, failures: u32, hint: Option<Duration>) -> Duration {
    let exp = initial
        .saturating_mul(
            1u32.checked_shl(failures.saturating_sub(1).min(20))
                .unwrap_or(u32::MAX),
        )
        .min(max);
    let jittered = exp.mul_f64(fastrand::f64());
    match hint {
        Some(h) => h.max(jittered),
        None => jittered,
    }
}

tokio::task_local! {
    static ATTEMPT_DEADLINE: Instant;
}

/// Run `fut` (one delivery attempt) with `deadline` visible to the sink
/// through [`attempt_deadline`] and [`request_timeout`]. The collector does
/// this around every `record_batch`/`flush` it bounds by `attempt_timeout`.
pub async fn with_deadline<F: Future>(deadline: Instant, fut: F) -> F::Output {
    ATTEMPT_DEADLINE.scope(deadline, fut).await
}

/// Run one delivery attempt bounded by `timeout`, with its deadline
/// visible to the sink ([`with_deadline`]): the collector's one timeout.
pub async fn attempt_within<F: Future>(
    timeout: Duration,
    fut: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    match Instant::now().checked_add(timeout) {
        Some(deadline) => tokio::time::timeout_at(deadline, with_deadline(deadline, fut)).await,
        None => Ok(fut.await),
    }
}

/// The deadline of the current delivery attempt, when it runs under
/// [`with_deadline`].
pub fn attempt_deadline() -> Option<Instant> {
    ATTEMPT_DEADLINE.try_with(|d| *d).ok()
}

/// The timeout for a request made now: the sink's own setting (`own`),
/// but never longer than what is left of the attempt's deadline when there
/// is one (the collector cancels the attempt then anyway: a longer request
/// timeout could never fire, and the request would end as a bare
/// "attempt timed out" instead of the sink's own error).
pub fn request_timeout(own: Duration) -> Duration {
    match attempt_deadline() {
        Some(d) => own.min(d.saturating_duration_since(Instant::now())),
        None => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms_and_cap() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Fri, 21 Oct 2016 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("99999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("1e300", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn statuses() {
        use SinkErrorKind::*;
        let s = Some(Duration::from_secs(4));
        assert_eq!(status_kind(204, None), None);
        assert_eq!(status_kind(429, None), Some(Throttled(DEFAULT_THROTTLE)));
        assert_eq!(status_kind(429, s), Some(Throttled(Duration::from_secs(4))));
        assert_eq!(status_kind(503, None), Some(Retryable));
        assert_eq!(status_kind(503, s), Some(Throttled(Duration::from_secs(4))));
        assert_eq!(status_kind(408, None), Some(Retryable));
        for c in [401, 403, 404, 301, 100] {
            assert_eq!(status_kind(c, None), Some(Misconfigured), "{c}");
        }
        for c in [400, 413, 422, 409] {
            assert_eq!(status_kind(c, None), Some(Permanent), "{c}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn backoff_is_bounded_and_honours_hints() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..100 {
            assert!(backoff(i, m, 1, None) <= i);
            assert!(backoff(i, m, 3, None) <= Duration::from_millis(400));
            assert!(backoff(i, m, 40, None) <= m);
            assert!(backoff(i, m, 1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_attempt_deadline_sizes_the_request_timeout() {
        let fallback = Duration::from_secs(30);
        assert_eq!(request_timeout(fallback), fallback);
        let deadline = Instant::now() + Duration::from_secs(10);
        let t = with_deadline(deadline, async { request_timeout(fallback) }).await;
        assert_eq!(t, Duration::from_secs(10));
        let t = with_deadline(deadline, async { request_timeout(Duration::from_secs(2)) }).await;
        assert_eq!(t, Duration::from_secs(2));
        assert_eq!(attempt_deadline(), None);
        let t = attempt_within(Duration::from_secs(5), async { request_timeout(fallback) }).await;
        assert_eq!(t.ok(), Some(Duration::from_secs(5)));
        let slow = attempt_within(Duration::from_secs(1), tokio::time::sleep(Duration::from_secs(2))).await;
        assert!(slow.is_err());
        let unbounded = attempt_within(Duration::MAX, async { request_timeout(fallback) }).await;
        assert_eq!(unbounded.ok(), Some(fallback));
    }
}
