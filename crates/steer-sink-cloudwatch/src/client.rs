//! PutMetricData through the AWS SDK: packing datums into calls under
//! 1000 datums / 1 MB, converting them to SDK types, and classifying
//! failures into what the sink can act on.
//!
//! Request compression (gzip for bodies of 10 KiB and more) and the first
//! line of retries (standard mode: throttling, 5xx, timeouts, with
//! exponential backoff) are the SDK's; what is still failing after them is
//! handed to the collector, whose own backoff takes over.

use std::time::Duration;

use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};

use crate::encode::{Datum, Payload, Unit};

/// Why a PutMetricData call failed, as the sink acts on it.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// CloudWatch asked us to slow down: retry after the hint.
    Throttled(Duration, String),
    /// Transient (5xx, timeout, connection): retry with backoff.
    Retryable(String),
    /// The request was refused for its content (InvalidParameterValue,
    /// InvalidParameterCombination, MissingRequiredParameter, 413).
    /// `member` is the 1-based index of the offending datum when the
    /// message names it (`MetricData.member.N`).
    Invalid {
        /// CloudWatch's message.
        message: String,
        /// The offending datum, when known.
        member: Option<usize>,
    },
    /// Anything else that retrying cannot fix (access denied, bad
    /// credentials, unknown endpoint): the sink, not the data, is wrong;
    /// becomes [`SinkError::misconfigured`](steer_metrics::SinkError::misconfigured).
    Permanent(String),
}

/// Default wait after a throttling answer when CloudWatch gives no hint.
pub const THROTTLE_BACKOFF: Duration = Duration::from_secs(1);

/// Classify an error from its code, HTTP status and message (pure).
pub fn classify(code: Option<&str>, status: Option<u16>, message: &str) -> Failure {
    let msg = match code {
        Some(c) => format!("{c}: {message}"),
        None => message.to_string(),
    };
    match code {
        Some(
            "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "SlowDown"
            | "LimitExceeded"
            | "LimitExceededException",
        ) => return Failure::Throttled(THROTTLE_BACKOFF, msg),
        Some(
            "InvalidParameterValue"
            | "InvalidParameterValueException"
            | "InvalidParameterCombination"
            | "InvalidParameterCombinationException"
            | "MissingRequiredParameter"
            | "MissingRequiredParameterException"
            | "MissingParameter"
            | "RequestEntityTooLarge"
            | "ValidationError"
            | "SerializationException",
        ) => {
            return Failure::Invalid {
                member: member_index(message),
                message: msg,
            }
        }
        Some(
            "InternalServiceError"
            | "InternalServiceFault"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "RequestTimeout"
            | "RequestTimeoutException",
        ) => return Failure::Retryable(msg),
        _ => {}
    }
    match status {
        Some(429) => Failure::Throttled(THROTTLE_BACKOFF, msg),
        Some(413) => Failure::Invalid {
            message: msg,
            member: None,
        },
        Some(408) => Failure::Retryable(msg),
        Some(s) if s >= 500 => Failure::Retryable(msg),
        _ => Failure::Permanent(msg),
    }
}

/// The 1-based datum index in a message like
/// `... parameter MetricData.member.7.Value is invalid`.
pub fn member_index(message: &str) -> Option<usize> {
    let rest = &message[message.find("MetricData.member.")? + "MetricData.member.".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|n| *n > 0)
}

/// Classify an SDK error.
pub(crate) fn classify_sdk(err: &SdkError<PutMetricDataError>) -> Failure {
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let status = se.raw().status().as_u16();
            classify(e.code(), Some(status), e.message().unwrap_or("no message"))
        }
        SdkError::TimeoutError(_) => Failure::Retryable("PutMetricData timed out".into()),
        SdkError::DispatchFailure(d) => {
            if d.is_user() {
                Failure::Permanent(format!("request could not be sent: {}", display_chain(err)))
            } else {
                Failure::Retryable(format!("connection failure: {}", display_chain(err)))
            }
        }
        SdkError::ResponseError(_) => {
            Failure::Retryable(format!("unreadable response: {}", display_chain(err)))
        }
        SdkError::ConstructionFailure(_) => {
            Failure::Permanent(format!("request could not be built: {}", display_chain(err)))
        }
        _ => Failure::Retryable(display_chain(err)),
    }
}

fn display_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Pack items of (datums, bytes) into calls of at most `max_datums`
/// datums and `max_bytes` bytes, in order; an item never spans calls. An
/// item alone over a limit gets a call of its own (the caller splits such
/// items before).
pub fn pack(items: &[(usize, usize)], max_datums: usize, max_bytes: usize) -> Vec<Vec<usize>> {
    let mut calls: Vec<Vec<usize>> = Vec::new();
    let (mut n, mut b) = (0usize, 0usize);
    for (i, &(d, s)) in items.iter().enumerate() {
        let fits = n + d <= max_datums && b + s <= max_bytes;
        match calls.last_mut() {
            Some(cur) if fits => cur.push(i),
            _ => {
                calls.push(vec![i]);
                n = 0;
                b = 0;
            }
        }
        n += d;
        b += s;
    }
    calls
}

fn unit(u: Unit) -> StandardUnit {
    match u {
        Unit::Count => StandardUnit::Count,
        Unit::Milliseconds => StandardUnit::Milliseconds,
        Unit::None => StandardUnit::None,
    }
}

/// The SDK form of a datum.
pub(crate) fn to_sdk(d: &Datum) -> MetricDatum {
    let dims: Vec<Dimension> = d
        .dimensions
        .iter()
        .map(|(n, v)| Dimension::builder().name(n).value(v).build())
        .collect();
    let b = MetricDatum::builder()
        .metric_name(d.metric.name())
        .set_dimensions(Some(dims))
        .timestamp(DateTime::from_millis(d.timestamp_ms))
        .unit(unit(d.metric.unit()))
        .storage_resolution(d.storage_resolution);
    match &d.payload {
        Payload::Value(v) => b.value(*v),
        Payload::Stats(s) => b.statistic_values(
            StatisticSet::builder()
                .sample_count(s.sample_count)
                .sum(s.sum)
                .minimum(s.min)
                .maximum(s.max)
                .build(),
        ),
        Payload::Values(v, c) => b.set_values(Some(v.clone())).set_counts(Some(c.clone())),
    }
    .build()
}

/// The CloudWatch client of a sink.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    sdk: aws_sdk_cloudwatch::Client,
    namespace: String,
}

impl Client {
    pub(crate) fn new(sdk: aws_sdk_cloudwatch::Client, namespace: String) -> Self {
        Client { sdk, namespace }
    }

    /// One PutMetricData call.
    pub(crate) async fn put(&self, datums: Vec<MetricDatum>) -> Result<(), Failure> {
        match self
            .sdk
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(datums))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(classify_sdk(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(matches!(
            classify(Some("Throttling"), Some(400), "Rate exceeded"),
            Failure::Throttled(..)
        ));
        assert!(matches!(classify(None, Some(429), ""), Failure::Throttled(..)));
        assert!(matches!(
            classify(Some("InternalServiceError"), Some(500), ""),
            Failure::Retryable(_)
        ));
        assert!(matches!(classify(None, Some(503), ""), Failure::Retryable(_)));
        assert_eq!(
            classify(
                Some("InvalidParameterValue"),
                Some(400),
                "The value NaN for parameter MetricData.member.12.Value is invalid."
            ),
            Failure::Invalid {
                message: "InvalidParameterValue: The value NaN for parameter MetricData.member.12.Value is invalid."
                    .into(),
                member: Some(12)
            }
        );
        assert!(matches!(
            classify(Some("InvalidParameterCombination"), Some(400), "x"),
            Failure::Invalid { member: None, .. }
        ));
        assert!(matches!(
            classify(Some("MissingRequiredParameter"), Some(400), "x"),
            Failure::Invalid { .. }
        ));
        assert!(matches!(
            classify(Some("AccessDenied"), Some(403), "x"),
            Failure::Permanent(_)
        ));
        assert!(matches!(classify(None, Some(413), "x"), Failure::Invalid { .. }));
    }

    #[test]
    fn member_index_parsing() {
        assert_eq!(
            member_index("parameter MetricData.member.3.Dimensions.member.1.Value"),
            Some(3)
        );
        assert_eq!(member_index("no index"), None);
        assert_eq!(member_index("MetricData.member.x"), None);
    }

    #[test]
    fn packing_respects_both_limits_and_order() {
        let items = vec![(400, 10), (400, 10), (400, 10), (10, 900), (10, 200), (1, 1)];
        let calls = pack(&items, 1000, 1000);
        assert_eq!(calls, vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
        assert!(pack(&[], 1000, 1000).is_empty());
        // An oversized item still gets a call.
        assert_eq!(pack(&[(2000, 1)], 1000, 1000), vec![vec![0]]);
    }
}
