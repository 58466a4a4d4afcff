//! The sink contract: what a backend implements.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::record::AgentMetrics;

/// Where metrics go. Implement [`record`](MetricsSink::record) (and usually
/// [`record_batch`](MetricsSink::record_batch)); the
/// [`MetricsCollector`](crate::MetricsCollector) gives every sink a bounded
/// queue, batching, retry with backoff, isolation of bad records and
/// accounting, so a sink only encodes and sends.
///
/// The trait is object safe: sinks live in `Vec<Box<dyn MetricsSink>>` or
/// `Arc<dyn MetricsSink>`. Methods take `&self`, so a sink can be shared
/// (e.g. an `Arc<MemorySink>` you also query); use interior mutability for
/// state.
///
/// The collector calls one method at a time per sink (from one worker
/// task), never concurrently.
#[async_trait]
pub trait MetricsSink: Send + Sync + 'static {
    /// A short name for stats, reports and logs (e.g. `"postgres"`).
    fn name(&self) -> &str;

    /// Deliver one record.
    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError>;

    /// Deliver a batch. The default calls [`record`](MetricsSink::record) for
    /// each and, on the first failure, reports the failing record and every
    /// one after it (those before it were delivered) so the collector retries
    /// or isolates exactly those.
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        for (i, m) in batch.iter().enumerate() {
            if let Err(e) = self.record(m).await {
                return Err(if e.is_misconfigured() {
                    // The sink, not the record, is wrong: the whole batch
                    // stays undelivered (the records before `i` were taken).
                    e.with_records((i..batch.len()).collect())
                } else if e.is_permanent() {
                    // Only record `i` is bad; the rest were never tried.
                    // Report it alone and let the collector resend the rest.
                    SinkError::partial(e, vec![i], (i + 1..batch.len()).collect())
                } else {
                    e.with_records((i..batch.len()).collect())
                });
            }
        }
        Ok(())
    }

    /// Push out anything the sink buffers itself. Called by
    /// [`MetricsCollector::flush`](crate::MetricsCollector::flush) after
    /// every earlier record has been handed to the sink.
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Release resources. Defaults to [`flush`](MetricsSink::flush).
    async fn close(&self) -> Result<(), SinkError> {
        self.flush().await
    }
}

#[async_trait]
impl<S: MetricsSink + ?Sized> MetricsSink for Arc<S> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError> {
        (**self).record(metrics).await
    }
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        (**self).record_batch(batch).await
    }
    async fn flush(&self) -> Result<(), SinkError> {
        (**self).flush().await
    }
    async fn close(&self) -> Result<(), SinkError> {
        (**self).close().await
    }
}

#[async_trait]
impl<S: MetricsSink + ?Sized> MetricsSink for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError> {
        (**self).record(metrics).await
    }
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        (**self).record_batch(batch).await
    }
    async fn flush(&self) -> Result<(), SinkError> {
        (**self).flush().await
    }
    async fn close(&self) -> Result<(), SinkError> {
        (**self).close().await
    }
}

/// Whether and when a failed delivery is worth trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// Transient (timeout, connection error, 5xx): retry with backoff.
    Retryable,
    /// The backend asked us to slow down: retry after at least this long.
    Throttled(Duration),
    /// The record is wrong: retrying the same data will fail again (400,
    /// 413, constraint, bad value). The collector splits the batch to
    /// isolate the bad records; the others get through.
    Permanent,
    /// The sink, not the record, is wrong: no record can get through as
    /// configured (HTTP 401/403, an unknown endpoint (404), PostgreSQL
    /// 28P01 bad password, CloudWatch `AccessDenied`). The collector fails
    /// the batch once, unsplit, counts it `failed.misconfigured`, logs once;
    /// with a disk spool the records stay spooled and are retried with
    /// capped backoff, so fixing the key lets them through.
    Misconfigured,
}

/// A typed delivery failure.
///
/// `records` names the records of the batch the error concerns, as indices
/// into the slice passed to `record_batch`; every other record of the batch
/// counts as delivered. `None` means the whole batch. For a permanent error
/// without `records`, the collector splits the batch to isolate the bad
/// records; with `records`, those are failed and the rest delivered.
///
/// A [`partial`](SinkError::partial) error says some records were rejected for
/// good and some others need another attempt.
#[derive(Debug)]
pub struct SinkError {
    kind: SinkErrorKind,
    message: String,
    records: Option<Vec<usize>>,
    retry: Vec<usize>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SinkError {
    fn new(kind: SinkErrorKind, message: impl Into<String>) -> Self {
        SinkError {
            kind,
            message: message.into(),
            records: None,
            retry: Vec::new(),
            source: None,
        }
    }

    /// A transient failure: retry with backoff.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Retryable, message)
    }

    /// The backend is throttling: retry after `after`.
    pub fn throttled(after: Duration, message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Throttled(after), message)
    }

    /// A failure that will not go away by retrying the same data: the
    /// record is bad (see [`SinkErrorKind::Permanent`]).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Permanent, message)
    }

    /// The sink, not the record, is wrong: credentials refused, permission
    /// missing, endpoint unknown (see [`SinkErrorKind::Misconfigured`]).
    pub fn misconfigured(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Misconfigured, message)
    }

    /// Some records (`rejected`) failed permanently, others (`retry`) need
    /// another attempt; the rest of the batch was delivered.
    pub fn partial(rejected_error: SinkError, rejected: Vec<usize>, retry: Vec<usize>) -> Self {
        SinkError {
            kind: SinkErrorKind::Permanent,
            message: rejected_error.message,
            records: Some(rejected),
            retry,
            source: rejected_error.source,
        }
    }

    /// Restrict the error to these records of the batch (indices); the other
    /// records of the batch were delivered.
    #[must_use]
    pub fn with_records(mut self, records: Vec<usize>) -> Self {
        self.records = Some(records);
        self
    }

    /// Attach the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> SinkErrorKind {
        self.kind
    }

    /// Whether the record is bad: retrying the same data cannot help
    /// ([`SinkErrorKind::Permanent`]).
    pub fn is_permanent(&self) -> bool {
        self.kind == SinkErrorKind::Permanent
    }

    /// Whether the sink itself is wrong (credentials, permission, endpoint):
    /// no record can get through as configured
    /// ([`SinkErrorKind::Misconfigured`]).
    pub fn is_misconfigured(&self) -> bool {
        self.kind == SinkErrorKind::Misconfigured
    }

    /// The backend's throttle hint, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            SinkErrorKind::Throttled(d) => Some(d),
            _ => None,
        }
    }

    /// The records (indices into the batch) this error concerns; `None` = all.
    pub fn records(&self) -> Option<&[usize]> {
        self.records.as_deref()
    }

    /// For a partial error: records to try again.
    pub fn retry_records(&self) -> &[usize] {
        &self.retry
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SinkErrorKind::Retryable => write!(f, "retryable sink error: {}", self.message),
            SinkErrorKind::Throttled(d) => {
                write!(f, "sink throttled (retry after {d:?}): {}", self.message)
            }
            SinkErrorKind::Permanent => write!(f, "permanent sink error: {}", self.message),
            SinkErrorKind::Misconfigured => {
                write!(
                    f,
                    "sink misconfigured (no record can get through): {}",
                    self.message
                )
            }
        }
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Picky {
        bad: usize,
        transient_at: Option<usize>,
        seen: Mutex<Vec<u64>>,
    }

    #[async_trait]
    impl MetricsSink for Picky {
        fn name(&self) -> &str {
            "picky"
        }
        async fn record(&self, m: &AgentMetrics) -> Result<(), SinkError> {
            if m.input_tokens as usize == self.bad {
                return Err(SinkError::permanent("bad"));
            }
            if Some(m.input_tokens as usize) == self.transient_at {
                return Err(SinkError::retryable("down"));
            }
            self.seen.lock().unwrap().push(m.input_tokens);
            Ok(())
        }
    }

    fn batch(n: u64) -> Vec<AgentMetrics> {
        (0..n)
            .map(|i| AgentMetrics::new("sim", "m").with_tokens(i, 0))
            .collect()
    }

    #[tokio::test]
    async fn default_batch_reports_the_bad_record_and_the_untried_rest() {
        let sink = Picky {
            bad: 2,
            transient_at: None,
            seen: Mutex::new(vec![]),
        };
        let err = sink.record_batch(&batch(5)).await.unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.records(), Some(&[2][..]));
        assert_eq!(err.retry_records(), &[3, 4]);
        assert_eq!(*sink.seen.lock().unwrap(), vec![0, 1]);
    }

    #[tokio::test]
    async fn default_batch_transient_failure_names_the_undelivered_suffix() {
        let sink = Picky {
            bad: 99,
            transient_at: Some(3),
            seen: Mutex::new(vec![]),
        };
        let err = sink.record_batch(&batch(5)).await.unwrap_err();
        assert_eq!(err.kind(), SinkErrorKind::Retryable);
        assert_eq!(err.records(), Some(&[3, 4][..]));
    }
}
