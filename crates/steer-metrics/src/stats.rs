//! Per-sink delivery accounting.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Live counters of one sink (atomics; the hot path only increments).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub received: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_evicted_oldest: AtomicU64,
    /// Records refused by `record()` after shutdown (never enqueued).
    pub refused_closed: AtomicU64,
    /// Records still queued when the shutdown deadline hit.
    pub dropped_closed: AtomicU64,
    pub failed_rejected: AtomicU64,
    pub failed_retries_exhausted: AtomicU64,
    /// Records failed at once because the sink itself is wrong (credentials, endpoint).
    pub failed_misconfigured: AtomicU64,
    /// Records the sink accepted whose `flush`/`close` then failed.
    pub failed_flush: AtomicU64,
    /// Records delivered since the sink's last successful `flush`/`close`
    /// (what a failing flush takes back from `delivered`).
    pub unflushed: AtomicU64,
    /// Records dropped by the disk spool to respect its cap.
    pub dropped_spool_full: AtomicU64,
    /// Records found in the spool at start (left by a previous process).
    pub replayed: AtomicU64,
    /// Records left in the spool at a shutdown deadline (pending for the next start).
    pub spooled: AtomicU64,
    /// Records in the spool now (maintained by the spooler and the worker).
    pub spool_depth: AtomicU64,
    /// Records that entered the queue (sequence number of the last push).
    pub enqueued: AtomicU64,
    /// Records that left the pipeline for good after entering the queue
    /// (delivered, failed or evicted).
    pub settled: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self, name: &str, queue_depth: usize) -> SinkStats {
        SinkStats {
            name: name.to_string(),
            received: self.received.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            retried: self.retried.load(Relaxed),
            dropped: DroppedCounts {
                queue_full: self.dropped_queue_full.load(Relaxed),
                evicted_oldest: self.dropped_evicted_oldest.load(Relaxed),
                closed: self.dropped_closed.load(Relaxed) + self.refused_closed.load(Relaxed),
                spool_full: self.dropped_spool_full.load(Relaxed),
            },
            failed: FailedCounts {
                rejected: self.failed_rejected.load(Relaxed),
                retries_exhausted: self.failed_retries_exhausted.load(Relaxed),
                misconfigured: self.failed_misconfigured.load(Relaxed),
                flush: self.failed_flush.load(Relaxed),
            },
            queue_depth,
            in_flight: self
                .enqueued
                .load(Relaxed)
                .saturating_sub(self.settled.load(Relaxed)),
            spool_depth: self.spool_depth.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            spooled: self.spooled.load(Relaxed),
            last_error: None,
        }
    }
}

/// Records dropped before delivery was attempted, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DroppedCounts {
    /// The queue was full (drop-newest policy).
    pub queue_full: u64,
    /// Evicted to make room for newer records (drop-oldest policy).
    pub evicted_oldest: u64,
    /// Recorded after shutdown, or still queued when the shutdown deadline hit.
    pub closed: u64,
    /// Dropped by the sink's disk spool to respect its size cap (under
    /// either of its policies: oldest evicted or newest refused).
    pub spool_full: u64,
}

impl DroppedCounts {
    /// All dropped records.
    pub fn total(&self) -> u64 {
        self.queue_full + self.evicted_oldest + self.closed + self.spool_full
    }
}

/// Records whose delivery was attempted and failed for good, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FailedCounts {
    /// The backend rejected them permanently (bad value, constraint, 400).
    pub rejected: u64,
    /// Transient failures outlasted the retry policy.
    pub retries_exhausted: u64,
    /// The sink itself is wrong (credentials refused, permission missing,
    /// unknown endpoint): failed at once, unsplit, without retry
    /// ([`SinkErrorKind::Misconfigured`](crate::SinkErrorKind::Misconfigured)).
    pub misconfigured: u64,
    /// The sink took them (`record_batch` succeeded) but its `flush` or
    /// `close` then failed, so they may not have reached the backend.
    pub flush: u64,
}

impl FailedCounts {
    /// All failed records.
    pub fn total(&self) -> u64 {
        self.rejected + self.retries_exhausted + self.misconfigured + self.flush
    }
}

/// A snapshot of one sink's accounting.
///
/// Invariant: `received == delivered + dropped.total() + failed.total() + in_flight + spooled`.
///
/// For a sink with a disk spool, `received` includes the records found in
/// the spool at start (`replayed`), and `spooled` counts the records still
/// in the spool when a shutdown deadline hit: they are not lost, the next
/// start delivers them. `spooled` is 0 for sinks without a spool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// The sink's name.
    pub name: String,
    /// Records offered to the sink (after sampling).
    pub received: u64,
    /// Records the sink accepted.
    pub delivered: u64,
    /// Record deliveries re-attempted after a transient failure.
    pub retried: u64,
    /// Records dropped, by reason.
    pub dropped: DroppedCounts,
    /// Records failed, by reason.
    pub failed: FailedCounts,
    /// Records waiting in the queue now.
    pub queue_depth: usize,
    /// Records queued, spooled or being delivered now.
    pub in_flight: u64,
    /// Records in the sink's disk spool now (0 without a spool).
    pub spool_depth: u64,
    /// Records found in the disk spool at start, left by a previous
    /// process; included in `received`.
    pub replayed: u64,
    /// Records left in the disk spool when the shutdown deadline hit:
    /// pending for the next start, not lost.
    pub spooled: u64,
    /// The sink's last error (delivery, flush or close), redacted with
    /// [`redact`](crate::redact::redact): why records were retried, failed
    /// or are still pending. `None` when the sink never failed.
    pub last_error: Option<String>,
}

impl SinkStats {
    /// Records that will never reach the sink.
    pub fn lost(&self) -> u64 {
        self.dropped.total() + self.failed.total()
    }
}

impl fmt::Display for SinkStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: received {} delivered {} retried {} dropped {} (queue_full {}, evicted {}, closed {}{}) failed {} (rejected {}, retries_exhausted {}{}) in_flight {}",
            self.name,
            self.received,
            self.delivered,
            self.retried,
            self.dropped.total(),
            self.dropped.queue_full,
            self.dropped.evicted_oldest,
            self.dropped.closed,
            if self.dropped.spool_full > 0 {
                format!(", spool_full {}", self.dropped.spool_full)
            } else {
                String::new()
            },
            self.failed.total(),
            self.failed.rejected,
            self.failed.retries_exhausted,
            {
                let mut more = String::new();
                if self.failed.misconfigured > 0 {
                    more.push_str(&format!(", misconfigured {}", self.failed.misconfigured));
                }
                if self.failed.flush > 0 {
                    more.push_str(&format!(", flush {}", self.failed.flush));
                }
                more
            },
            self.in_flight
        )?;
        if self.spool_depth > 0 || self.replayed > 0 || self.spooled > 0 {
            write!(
                f,
                " spool_depth {} replayed {} spooled {}",
                self.spool_depth, self.replayed, self.spooled
            )?;
        }
        if let Some(e) = &self.last_error {
            write!(f, " last_error: {e}")?;
        }
        Ok(())
    }
}

/// The collector's accounting: per sink, plus sampling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollectorStats {
    /// Records passed to `record()` while enabled.
    pub recorded: u64,
    /// Records not kept by sampling (intended, not a loss).
    pub sampled_out: u64,
    /// One entry per sink, in the order they were added.
    pub sinks: Vec<SinkStats>,
}

impl CollectorStats {
    /// Stats of the sink named `name`.
    pub fn sink(&self, name: &str) -> Option<&SinkStats> {
        self.sinks.iter().find(|s| s.name == name)
    }
}

/// What a flush or shutdown achieved for one sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkReport {
    /// Stats at the end of the operation.
    pub stats: SinkStats,
    /// Whether every record recorded before the call was settled and the
    /// sink's own flush/close returned in time.
    pub completed: bool,
    /// The sink's flush/close error, if any.
    pub error: Option<String>,
}

/// The result of [`MetricsCollector::flush_timeout`](crate::MetricsCollector::flush_timeout)
/// or [`MetricsCollector::shutdown`](crate::MetricsCollector::shutdown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    /// One entry per sink.
    pub sinks: Vec<SinkReport>,
}

impl DeliveryReport {
    /// Whether every sink completed.
    pub fn is_complete(&self) -> bool {
        self.sinks.iter().all(|s| s.completed)
    }

    /// Sinks that did not complete, or lost records.
    pub fn problems(&self) -> impl Iterator<Item = &SinkReport> {
        self.sinks
            .iter()
            .filter(|s| !s.completed || s.stats.lost() > 0 || s.error.is_some())
    }
}

impl fmt::Display for DeliveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.sinks {
            write!(f, "{}", s.stats)?;
            if !s.completed {
                write!(f, " [NOT COMPLETE]")?;
            }
            if let Some(e) = &s.error {
                write!(f, " [error: {e}]")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
