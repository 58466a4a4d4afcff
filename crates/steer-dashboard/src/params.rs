//! The API's query string → a [`StatsQuery`].
//!
//! | parameter | meaning | default |
//! |---|---|---|
//! | `since` | window start: a duration before now (`15m`, `24h`, `7d`) or an RFC 3339 time | `1h` |
//! | `until` | window end: a duration before now or an RFC 3339 time | now |
//! | `by` | `model`, `provider`, `error`, `finish_reason`, `tag:KEY` (empty: totals only) | none |
//! | `step` | time-series step (`10s` … `30d`) | chosen from the window |
//! | `filter` | `KEY=VALUE`, repeatable (`filter=model=gpt-4o&filter=tag:team=search`) | none |
//! | `top` | most groups returned (1 to 200); the rest fold into `(other)` | 50, 8 for time series |
//!
//! Windows longer than [`MAX_WINDOW`] are refused: every query is bounded
//! in time (and by [`QueryLimits`] in rows, groups, points and run time).

use std::time::Duration;

use chrono::{DateTime, Utc};
use steer_metrics::query::{Filter, GroupKey, QueryError, QueryLimits, StatsQuery};

/// Longest window a query may cover.
pub const MAX_WINDOW: Duration = Duration::from_secs(400 * 86_400);
/// Most groups a client may ask for.
pub const MAX_TOP: usize = 200;

/// What an endpoint is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/api/summary`.
    Summary,
    /// `/api/timeseries`.
    Timeseries,
}

fn time(name: &str, v: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, QueryError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(v).map_err(|_| {
        QueryError::Invalid(format!(
            "`{name}` must be a duration before now (15m, 24h, 7d) or an RFC 3339 time"
        ))
    })?;
    if d > MAX_WINDOW {
        return Err(QueryError::TooLarge(format!(
            "`{name}` reaches back more than {} days",
            MAX_WINDOW.as_secs() / 86_400
        )));
    }
    let d =
        chrono::Duration::from_std(d).map_err(|_| QueryError::Invalid(format!("`{name}` is too large")))?;
    Ok(now - d)
}

/// Parse a query string (without the `?`) for `endpoint`, with `now` as
/// the reference for relative times.
pub fn parse(query: &str, endpoint: Endpoint, now: DateTime<Utc>) -> Result<StatsQuery, QueryError> {
    let mut q = StatsQuery::new();
    let mut since = None;
    let mut until = None;
    let mut top = match endpoint {
        Endpoint::Summary => 50,
        Endpoint::Timeseries => 8,
    };
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "since" => since = Some(time("since", &v, now)?),
            "until" => until = Some(time("until", &v, now)?),
            "by" if !v.is_empty() && v != "none" => q = q.by(v.parse::<GroupKey>()?),
            "step" => {
                let d = humantime::parse_duration(&v).map_err(|_| {
                    QueryError::Invalid("`step` must be a duration like 10s, 5m, 1h, 1d".into())
                })?;
                q = q.step(d);
            }
            "filter" if !v.is_empty() => q = q.filter(v.parse::<Filter>()?),
            "top" => {
                top = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_TOP).contains(n))
                    .ok_or_else(|| QueryError::Invalid(format!("`top` must be 1 to {MAX_TOP}")))?;
            }
            // Unknown parameters (cache busters) are ignored.
            _ => {}
        }
    }
    let since = since.unwrap_or(now - chrono::Duration::hours(1));
    let until = until.unwrap_or(now);
    if until <= since {
        return Err(QueryError::Invalid(
            "the window is empty: `until` must be after `since`".into(),
        ));
    }
    if (until - since).to_std().unwrap_or(Duration::MAX) > MAX_WINDOW {
        return Err(QueryError::TooLarge(format!(
            "the window is longer than {} days",
            MAX_WINDOW.as_secs() / 86_400
        )));
    }
    q = q.since(since).until(until);
    q = q.limits(
        QueryLimits::default()
            .max_groups(top)
            .timeout(Duration::from_secs(20)),
    );
    q.validate()?;
    Ok(q)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_windows_keys_and_filters() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let q = parse(
            "since=24h&by=tag%3Ateam&filter=model%3Dgpt-4o&filter=error=none&step=15m&_=1",
            Endpoint::Timeseries,
            now,
        )
        .unwrap();
        assert_eq!(q.since, Some(now - chrono::Duration::hours(24)));
        assert_eq!(q.until, Some(now));
        assert_eq!(q.by, Some(GroupKey::Tag("team".into())));
        assert_eq!(q.filters.len(), 2);
        assert_eq!(q.step, Some(Duration::from_secs(900)));
        assert_eq!(q.limits.max_groups, 8);
        let q = parse("", Endpoint::Summary, now).unwrap();
        assert_eq!(q.since, Some(now - chrono::Duration::hours(1)));
        assert_eq!(q.by, None);
        let q = parse(
            "since=2027-01-15T08:00:00Z&until=2027-01-15T09:00:00Z",
            Endpoint::Summary,
            now,
        )
        .unwrap();
        assert_eq!(q.since.unwrap().to_rfc3339(), "2027-01-15T08:00:00+00:00");
    }

    #[test]
    fn refuses_unbounded_or_bad_queries() {
        let now = Utc::now();
        for bad in [
            "since=1000d",
            "since=abc",
            "by=nope",
            "by=tag:a%22b",
            "step=1s&since=30d",
            "top=0",
            "top=1000",
            "since=1h&until=2h",
            "filter=model",
        ] {
            assert!(parse(bad, Endpoint::Timeseries, now).is_err(), "{bad}");
        }
    }
}
