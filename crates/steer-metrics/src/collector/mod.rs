//! The collector: fans each record out to every sink through a bounded
//! queue and a worker task per sink.
//!
//! Laid out by concern, after tracing-appender's `non_blocking` / `worker`
//! split:
//!
//! * this module: the [`MetricsCollector`] handle (`record`, `stats`,
//!   `flush`, `shutdown`);
//! * `builder`: [`MetricsCollectorBuilder`], which starts one worker per sink;
//! * `queue`: the bounded queue `record()` offers to, with its overflow
//!   policies and wake-up protocol;
//! * `worker`: the task that batches, delivers, retries and splits, and
//!   answers flush and shutdown requests;
//! * `spool_worker`: the worker and spooler of a sink backed by a disk spool;
//! * `isolate`: panic isolation, so a faulty sink cannot kill its worker.

mod builder;
mod isolate;
mod queue;
mod spool_worker;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use builder::MetricsCollectorBuilder;
use queue::Shared;
use worker::Control;

use crate::config::MetricsConfig;
#[cfg(doc)]
use crate::config::OverflowPolicy;
use crate::record::AgentMetrics;
#[cfg(doc)]
use crate::spool::Spool;
use crate::spool::SpoolError;
use crate::stats::{CollectorStats, DeliveryReport, SinkReport};
/// Errors building a collector.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `build()` must run inside a Tokio runtime: it spawns one worker task per sink.
    #[error("MetricsCollector::build() must be called within a Tokio runtime")]
    NoRuntime,
    /// Two sinks share a name; stats and reports are keyed by name.
    #[error("two sinks are named `{0}`; give each sink a distinct name")]
    DuplicateSinkName(String),
    /// A sink's disk spool could not be read at start, or holds another
    /// sink's records ([`Spool::bind_sink`]).
    #[error("the disk spool of sink `{sink}` cannot be used: {source}")]
    Spool {
        /// The sink's name.
        sink: String,
        /// What the spool reported.
        #[source]
        source: SpoolError,
    },
}

/// Receives [`AgentMetrics`] and delivers them to every sink without ever
/// blocking the caller.
///
/// `record()` is synchronous and lock-free: it applies sampling, wraps the
/// record in an `Arc` and offers it to each sink's bounded queue (a few
/// atomic operations per sink). One worker task per sink batches (by size
/// and linger time), retries transient failures with backoff and jitter,
/// isolates permanently bad records by splitting batches, and counts every
/// record it could not deliver, by reason. A slow or dead sink only fills
/// its own queue.
///
/// Cloning is cheap; all clones share the pipeline.
///
/// ```
/// use steer_metrics::{AgentMetrics, MetricsCollector, MetricsConfig, sinks::MemorySink};
/// # #[tokio::main] async fn main() {
/// let memory = MemorySink::new();
/// let collector = MetricsCollector::builder()
///     .config(MetricsConfig::default())
///     .sink(memory.clone())
///     .build()
///     .expect("inside a runtime");
/// collector.record(AgentMetrics::new("openai", "gpt-4o-mini").with_latency_ms(420.0));
/// collector.flush().await;
/// assert_eq!(memory.len(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct MetricsCollector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MetricsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsCollector")
            .field("enabled", &self.inner.config.enabled)
            .field(
                "sinks",
                &self.inner.sinks.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

struct Inner {
    config: MetricsConfig,
    sinks: Vec<SinkHandle>,
    recorded: AtomicU64,
    sampled_out: AtomicU64,
    closed: AtomicBool,
}

struct SinkHandle {
    name: String,
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// The task moving records from the memory queue to the disk spool.
    spooler: Mutex<Option<JoinHandle<()>>>,
}

impl MetricsCollector {
    /// Start building a collector.
    pub fn builder() -> MetricsCollectorBuilder {
        MetricsCollectorBuilder::default()
    }

    /// A collector with no sinks and recording disabled (every call a no-op).
    /// Needs no runtime.
    pub fn disabled() -> Self {
        MetricsCollector {
            inner: Arc::new(Inner {
                config: MetricsConfig::default().enabled(false),
                sinks: Vec::new(),
                recorded: AtomicU64::new(0),
                sampled_out: AtomicU64::new(0),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &MetricsConfig {
        &self.inner.config
    }

    /// Whether recording is on.
    pub fn is_enabled(&self) -> bool {
        self.inner.config.enabled
    }

    /// Sampling decision; returns the record with its weight set, or `None`.
    #[inline]
    fn admit(&self, mut m: AgentMetrics) -> Option<Arc<AgentMetrics>> {
        let inner = &*self.inner;
        if !inner.config.enabled {
            return None;
        }
        inner.recorded.fetch_add(1, Relaxed);
        let rate = if m.is_error() {
            inner.config.error_sample_rate
        } else {
            inner.config.success_sample_rate
        };
        if rate < 1.0 {
            if rate <= 0.0 || fastrand::f64() >= rate {
                inner.sampled_out.fetch_add(1, Relaxed);
                return None;
            }
            m.sample_weight /= rate;
        }
        if inner.closed.load(Relaxed) {
            for s in &inner.sinks {
                s.shared.counters.refused_closed.fetch_add(1, Relaxed);
            }
            return None;
        }
        Some(Arc::new(m))
    }

    /// Record one call. Never blocks, never awaits, never panics: a full
    /// queue drops (or, under `DropOldest`, evicts) and counts.
    #[inline]
    pub fn record(&self, metrics: AgentMetrics) {
        if let Some(m) = self.admit(metrics) {
            let sinks = &self.inner.sinks;
            if let Some((last, rest)) = sinks.split_last() {
                for s in rest {
                    s.shared.offer(m.clone());
                }
                last.shared.offer(m);
            }
        }
    }

    /// Record one call, waiting for queue room on sinks whose overflow
    /// policy is [`OverflowPolicy::Block`]; other sinks behave as in
    /// [`record`](Self::record).
    pub async fn record_async(&self, metrics: AgentMetrics) {
        if let Some(m) = self.admit(metrics) {
            for s in &self.inner.sinks {
                s.shared.offer_wait(m.clone()).await;
            }
        }
    }

    /// Per-sink accounting now.
    pub fn stats(&self) -> CollectorStats {
        CollectorStats {
            recorded: self.inner.recorded.load(Relaxed),
            sampled_out: self.inner.sampled_out.load(Relaxed),
            sinks: self.inner.sinks.iter().map(sink_stats).collect(),
        }
    }

    /// Wait until every record recorded before this call has been delivered
    /// to every sink or failed for good, then call each sink's `flush()`.
    /// Bounded only by the sinks' retry policies; see
    /// [`flush_timeout`](Self::flush_timeout) for a hard deadline.
    ///
    /// For a sink with a disk spool this includes the spool's content
    /// (records replayed from a previous run too), and it waits while the
    /// backend is down (spooled records are retried until delivered).
    pub async fn flush(&self) -> DeliveryReport {
        self.flush_inner(None).await
    }

    /// Like [`flush`](Self::flush), but returns at `deadline` at the latest;
    /// sinks that had not finished are reported with `completed: false`.
    pub async fn flush_timeout(&self, deadline: Duration) -> DeliveryReport {
        self.flush_inner(Some(deadline)).await
    }

    /// Wait until every record recorded before this call has reached the
    /// disk spool of every spool-backed sink (persisted under the spool's
    /// sync policy, or dropped by its cap and counted), or until the spool
    /// has stopped. Sinks without a spool are not waited for. After this
    /// returns, a crash of the process no longer loses those records.
    ///
    /// Waits as long as a spool refuses writes (disk full, I/O error); wrap
    /// it in `tokio::time::timeout` for a bound.
    pub async fn sync_spools(&self) {
        for s in &self.inner.sinks {
            let sh = &s.shared;
            if sh.spool.is_none() {
                continue;
            }
            let target = sh.counters.enqueued.load(Relaxed);
            loop {
                let notified = sh.synced_notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let out = sh.synced.load(Relaxed) + sh.counters.dropped_evicted_oldest.load(Relaxed);
                if out >= target || sh.spooler_done.load(Relaxed) {
                    break;
                }
                // Evictions from the memory queue do not notify: re-check now and then.
                let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
            }
        }
    }

    async fn flush_inner(&self, deadline: Option<Duration>) -> DeliveryReport {
        let waits = self.inner.sinks.iter().map(|s| {
            let target = s.shared.counters.enqueued.load(Relaxed);
            let (tx, rx) = oneshot::channel();
            let sent = s.control.send(Control::Flush { target, done: tx }).is_ok();
            async move {
                if !sent {
                    return (false, Some("sink worker has stopped".to_string()));
                }
                let outcome = match deadline {
                    Some(d) => tokio::time::timeout(d, rx).await.ok(),
                    None => Some(rx.await),
                };
                match outcome {
                    Some(Ok(err)) => (true, err),
                    Some(Err(_)) => (false, Some("sink worker has stopped".to_string())),
                    None => (
                        false,
                        deadline.map(|d| format!("flush did not finish within {}", human(d))),
                    ),
                }
            }
        });
        let results = futures_join_all(waits).await;
        DeliveryReport {
            sinks: self
                .inner
                .sinks
                .iter()
                .zip(results)
                .map(|(s, (completed, error))| SinkReport {
                    stats: sink_stats(s),
                    completed,
                    error,
                })
                .collect(),
        }
    }

    /// Stop accepting records, deliver what is queued, close every sink and
    /// report per sink what was and was not delivered. Returns by `deadline`
    /// at the latest: records still queued then are counted as dropped
    /// (`closed`) and the sink is reported as not completed.
    ///
    /// For a sink with a disk spool, records still in the spool at the
    /// deadline are not lost: they are reported as `spooled` and delivered
    /// at the next start on the same spool.
    pub async fn shutdown(&self, deadline: Duration) -> DeliveryReport {
        self.inner.closed.store(true, Relaxed);
        for s in &self.inner.sinks {
            s.shared.closing.store(true, SeqCst);
            s.shared.data.notify_one();
        }
        let waits = self.inner.sinks.iter().map(|s| {
            let (tx, rx) = oneshot::channel();
            let sent = s.control.send(Control::Shutdown { done: tx }).is_ok();
            let shared = s.shared.clone();
            async move {
                // A worker that closed its sink and stopped (an earlier
                // shutdown) completed; one that vanished otherwise did not.
                let stopped = || {
                    if shared.worker_done.load(SeqCst) {
                        (true, None)
                    } else {
                        (false, Some("sink worker has stopped".to_string()))
                    }
                };
                if !sent {
                    return stopped();
                }
                match tokio::time::timeout(deadline, rx).await {
                    Ok(Ok(err)) => (true, err),
                    Ok(Err(_)) => stopped(),
                    Err(_) => (
                        false,
                        Some(format!(
                            "shutdown deadline ({}) reached before the sink finished and closed",
                            human(deadline)
                        )),
                    ),
                }
            }
        });
        let results = futures_join_all(waits).await;
        let mut reports = Vec::with_capacity(results.len());
        for (s, (completed, error)) in self.inner.sinks.iter().zip(results) {
            let handle = s.worker.lock().ok().and_then(|mut g| g.take());
            let spooler = s.spooler.lock().ok().and_then(|mut g| g.take());
            if !completed {
                for h in [handle, spooler].into_iter().flatten() {
                    h.abort();
                    let _ = h.await;
                }
                // Whatever was not settled is now lost, unless it is in the
                // disk spool: count it.
                let c = &s.shared.counters;
                while s.shared.queue.pop().is_some() {}
                let outstanding = c.enqueued.load(Relaxed).saturating_sub(c.settled.load(Relaxed));
                let in_spool = match &s.shared.spool {
                    Some(sp) => {
                        let sp = sp.clone();
                        match tokio::task::spawn_blocking(move || sp.len()).await {
                            Ok(Ok(n)) => n,
                            _ => c.spool_depth.load(Relaxed),
                        }
                    }
                    None => 0,
                };
                let spooled = outstanding.min(in_spool);
                let lost = outstanding - spooled;
                c.spooled.fetch_add(spooled, Relaxed);
                c.spool_depth.store(in_spool, Relaxed);
                c.dropped_closed.fetch_add(lost, Relaxed);
                c.settled.fetch_add(outstanding, Relaxed);
                if lost > 0 {
                    tracing::warn!(sink = %s.name, lost, "shutdown deadline reached before the sink finished; records not delivered");
                }
                if spooled > 0 {
                    tracing::warn!(sink = %s.name, spooled, "shutdown deadline reached; records kept in the disk spool for the next start");
                }
            } else {
                for h in [handle, spooler].into_iter().flatten() {
                    let _ = h.await;
                }
            }
            reports.push(SinkReport {
                stats: sink_stats(s),
                completed,
                error,
            });
        }
        DeliveryReport { sinks: reports }
    }
}

fn sink_stats(s: &SinkHandle) -> crate::stats::SinkStats {
    let mut st = s.shared.counters.snapshot(&s.name, s.shared.queue.len());
    st.received = s.shared.received();
    st.last_error = s.shared.last_error.lock().ok().and_then(|g| g.clone());
    st
}

/// A duration as people write it (`0s`, `250ms`, `10s`).
fn human(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// Join futures concurrently without pulling in the `futures` crate.
async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}
