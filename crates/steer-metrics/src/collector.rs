//! The collector: fans each record out to every sink through a bounded
//! queue and a worker task per sink.

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::config::{MetricsConfig, OverflowPolicy, RetryPolicy, SinkOptions};
use crate::record::AgentMetrics;
use crate::sink::{MetricsSink, SinkError, SinkErrorKind};
use crate::spool::{Spool, SpoolError};
use crate::stats::{CollectorStats, Counters, DeliveryReport, SinkReport};

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

/// State shared between `record()` and one sink's worker.
struct Shared {
    queue: ArrayQueue<Arc<AgentMetrics>>,
    data: Notify,
    space: Notify,
    blocked_producers: AtomicUsize,
    /// Set by the worker just before it parks with nothing in hand; a
    /// producer that sees it wakes the worker. Otherwise producers wake the
    /// worker only when a full batch is waiting (the linger timer does the
    /// rest), so a busy pipeline costs no wake-up per record.
    idle: AtomicBool,
    batch_size: usize,
    counters: Counters,
    overflow: OverflowPolicy,
    /// The sink's disk spool, if any.
    spool: Option<Arc<dyn Spool>>,
    /// Spooler -> worker: records were appended to (or dropped by) the spool.
    spooled: Notify,
    /// Records taken from the memory queue by the spooler and persisted (or
    /// dropped by the spool's cap), plus those found in the spool at start.
    synced: AtomicU64,
    /// Wakes `sync_spools` waiters after each append.
    synced_notify: Notify,
    /// Set at shutdown (or when the collector is dropped): the spooler
    /// drains the memory queue and stops.
    closing: AtomicBool,
    /// Set by the spooler when it has stopped.
    spooler_done: AtomicBool,
    /// Set by the worker when it has closed the sink and stopped.
    worker_done: AtomicBool,
    /// The sink's last error, redacted (only written on the error path).
    last_error: Mutex<Option<String>>,
}

impl Shared {
    /// Wake the worker if it is parked idle, or if a full batch is waiting.
    #[inline]
    fn wake(&self) {
        // Pairs with the fence in `Worker::park`: either the worker sees the
        // record we pushed, or we see its idle flag.
        fence(SeqCst);
        if self.idle.load(Relaxed) || self.queue.len() >= self.batch_size {
            self.data.notify_one();
        }
    }

    /// Offer a record without blocking.
    #[inline]
    fn offer(&self, m: Arc<AgentMetrics>) {
        match self.overflow {
            OverflowPolicy::DropOldest => {
                if self.queue.force_push(m).is_some() {
                    self.counters.dropped_evicted_oldest.fetch_add(1, Relaxed);
                    self.counters.settled.fetch_add(1, Relaxed);
                }
                self.counters.enqueued.fetch_add(1, Relaxed);
                self.wake();
            }
            OverflowPolicy::DropNewest | OverflowPolicy::Block => match self.queue.push(m) {
                Ok(()) => {
                    self.counters.enqueued.fetch_add(1, Relaxed);
                    self.wake();
                }
                Err(_) => {
                    self.counters.dropped_queue_full.fetch_add(1, Relaxed);
                }
            },
        }
    }

    /// Offer a record, waiting for room under the `Block` policy.
    async fn offer_wait(&self, mut m: Arc<AgentMetrics>) {
        if self.overflow != OverflowPolicy::Block {
            self.offer(m);
            return;
        }
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.blocked_producers.fetch_add(1, Relaxed);
            match self.queue.push(m) {
                Ok(()) => {
                    self.blocked_producers.fetch_sub(1, Relaxed);
                    self.counters.enqueued.fetch_add(1, Relaxed);
                    self.wake();
                    return;
                }
                Err(back) => {
                    m = back;
                    notified.await;
                    self.blocked_producers.fetch_sub(1, Relaxed);
                }
            }
        }
    }

    fn received(&self) -> u64 {
        let c = &self.counters;
        c.enqueued.load(Relaxed) + c.dropped_queue_full.load(Relaxed) + c.refused_closed.load(Relaxed)
    }
}

enum Control {
    Flush {
        target: u64,
        done: oneshot::Sender<Option<String>>,
    },
    Shutdown {
        done: oneshot::Sender<Option<String>>,
    },
}

type SinkEntry = (Box<dyn MetricsSink>, Option<SinkOptions>, Option<Arc<dyn Spool>>);

/// Builds a [`MetricsCollector`].
#[must_use]
#[derive(Default)]
pub struct MetricsCollectorBuilder {
    config: MetricsConfig,
    sinks: Vec<SinkEntry>,
}

impl MetricsCollectorBuilder {
    /// Collector-wide configuration (default: [`MetricsConfig::default`]).
    pub fn config(mut self, config: MetricsConfig) -> Self {
        self.config = config;
        self
    }

    /// Add a sink with the config's default [`SinkOptions`].
    pub fn sink(mut self, sink: impl MetricsSink) -> Self {
        self.sinks.push((Box::new(sink), None, None));
        self
    }

    /// Add a sink with its own options.
    pub fn sink_with_options(mut self, sink: impl MetricsSink, options: SinkOptions) -> Self {
        self.sinks.push((Box::new(sink), Some(options), None));
        self
    }

    /// Add a sink backed by a disk [`Spool`] (write-ahead): records move
    /// from the sink's memory queue to the spool as soon as it can take
    /// them and are delivered from the spool, in order, then acknowledged.
    /// While the backend is down the spool grows (up to its own cap), not
    /// the memory queue; whatever the spool holds at start (left by a
    /// crash or a shutdown deadline) is delivered first.
    ///
    /// With a spool, transient failures never exhaust: the head batch is
    /// retried with backoff (capped at `retry.max_backoff`) until the
    /// backend takes it; `retry.max_attempts` and `retry.batch_deadline`
    /// do not apply. Permanent rejections still fail (counted `rejected`).
    /// See `docs/spool.md`.
    pub fn sink_with_spool(
        mut self,
        sink: impl MetricsSink,
        options: Option<SinkOptions>,
        spool: Arc<dyn Spool>,
    ) -> Self {
        self.sinks.push((Box::new(sink), options, Some(spool)));
        self
    }

    /// Add an already boxed sink, optionally with its own options.
    pub fn boxed_sink(mut self, sink: Box<dyn MetricsSink>, options: Option<SinkOptions>) -> Self {
        self.sinks.push((sink, options, None));
        self
    }

    /// Start one worker task per sink on the current Tokio runtime.
    pub fn build(self) -> Result<MetricsCollector, BuildError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let mut names = std::collections::HashSet::new();
        for (s, _, _) in &self.sinks {
            if !names.insert(s.name().to_string()) {
                return Err(BuildError::DuplicateSinkName(s.name().to_string()));
            }
        }
        let mut sinks = Vec::with_capacity(self.sinks.len());
        for (sink, options, spool) in self.sinks {
            let options = options.unwrap_or_else(|| self.config.default_sink_options.clone());
            // Records left in the spool by a previous process are delivered
            // first and accounted for as received (and `replayed`).
            let replayed = match &spool {
                Some(sp) => {
                    let err = |source| BuildError::Spool {
                        sink: sink.name().to_string(),
                        source,
                    };
                    sp.bind_sink(sink.name()).map_err(err)?;
                    sp.len().map_err(err)?
                }
                None => 0,
            };
            let shared = Arc::new(Shared {
                queue: ArrayQueue::new(options.queue_capacity.max(1)),
                data: Notify::new(),
                space: Notify::new(),
                blocked_producers: AtomicUsize::new(0),
                idle: AtomicBool::new(false),
                batch_size: options.batch_size.max(1),
                counters: Counters::default(),
                overflow: options.overflow,
                spool: spool.clone(),
                spooled: Notify::new(),
                synced: AtomicU64::new(replayed),
                synced_notify: Notify::new(),
                closing: AtomicBool::new(false),
                spooler_done: AtomicBool::new(spool.is_none()),
                worker_done: AtomicBool::new(false),
                last_error: Mutex::new(None),
            });
            if replayed > 0 {
                let c = &shared.counters;
                c.enqueued.store(replayed, Relaxed);
                c.replayed.store(replayed, Relaxed);
                c.spool_depth.store(replayed, Relaxed);
                tracing::info!(sink = %sink.name(), records = replayed, "delivering records left in the disk spool by a previous run");
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let name = sink.name().to_string();
            let worker = Worker {
                name: name.clone(),
                sink,
                shared: shared.clone(),
                options,
                control: rx,
                log: LogLimiter::default(),
                persistent: spool.is_some(),
                misconfigured_logged: false,
            };
            let (handle, spooler) = match spool {
                Some(sp) => {
                    let spooler = rt.spawn(run_spooler(
                        name.clone(),
                        shared.clone(),
                        sp.clone(),
                        worker.options.retry,
                    ));
                    (rt.spawn(worker.run_spooled(sp)), Some(spooler))
                }
                None => (rt.spawn(worker.run()), None),
            };
            sinks.push(SinkHandle {
                name,
                shared,
                control: tx,
                worker: Mutex::new(Some(handle)),
                spooler: Mutex::new(spooler),
            });
        }
        Ok(MetricsCollector {
            inner: Arc::new(Inner {
                config: self.config,
                sinks,
                recorded: AtomicU64::new(0),
                sampled_out: AtomicU64::new(0),
                closed: AtomicBool::new(false),
            }),
        })
    }
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

impl Shared {
    /// Remember the sink's last error, redacted and bounded.
    fn set_last_error(&self, message: &str) {
        let redacted = crate::redact::redact_truncated(message, 500);
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(redacted);
        }
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

/// Rate-limits warnings: at most one per `every` per kind.
#[derive(Default)]
struct LogLimiter {
    last: Option<Instant>,
    reported_drops: u64,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

struct Worker {
    name: String,
    sink: Box<dyn MetricsSink>,
    shared: Arc<Shared>,
    options: SinkOptions,
    control: mpsc::UnboundedReceiver<Control>,
    log: LogLimiter,
    /// Records are safe in a disk spool: transient failures never exhaust.
    persistent: bool,
    /// A misconfiguration was logged and no delivery succeeded since.
    misconfigured_logged: bool,
}

struct FlushWaiter {
    target: u64,
    done: oneshot::Sender<Option<String>>,
}

impl Worker {
    async fn run(mut self) {
        let batch_size = self.options.batch_size.max(1);
        let mut batch: Vec<Arc<AgentMetrics>> = Vec::with_capacity(batch_size);
        let mut batch_started: Option<tokio::time::Instant> = None;
        let mut flushes: Vec<FlushWaiter> = Vec::new();
        let mut shutdown: Option<oneshot::Sender<Option<String>>> = None;
        let mut control_open = true;

        loop {
            // Take what is queued, up to a batch.
            let before = batch.len();
            while batch.len() < batch_size {
                match self.shared.queue.pop() {
                    Some(m) => batch.push(m),
                    None => break,
                }
            }
            if batch.len() > before {
                if batch_started.is_none() {
                    batch_started = Some(tokio::time::Instant::now());
                }
                if self.shared.blocked_producers.load(Relaxed) > 0 {
                    self.shared.space.notify_waiters();
                }
            }

            let urgent = !flushes.is_empty() || shutdown.is_some() || !control_open;
            let lingered = batch_started.is_some_and(|t| t.elapsed() >= self.options.linger);
            if !batch.is_empty() && (batch.len() >= batch_size || urgent || lingered) {
                let records: Vec<AgentMetrics> = batch.drain(..).map(Arc::unwrap_or_clone).collect();
                batch_started = None;
                self.deliver(records).await;
                self.log_drops();
                continue;
            }

            if batch.is_empty() {
                // Answer flushes whose records have all settled.
                let settled = self.shared.counters.settled.load(Relaxed);
                let queue_empty = self.shared.queue.is_empty();
                if flushes.iter().any(|f| queue_empty || settled >= f.target) {
                    let err = self.call_sink(SinkCall::Flush).await;
                    let (ready, waiting): (Vec<_>, Vec<_>) = flushes
                        .drain(..)
                        .partition(|f| queue_empty || settled >= f.target);
                    flushes = waiting;
                    for f in ready {
                        let _ = f.done.send(err.clone());
                    }
                    continue;
                }
                if queue_empty && (shutdown.is_some() || !control_open) {
                    let err = self.call_sink(SinkCall::Close).await;
                    self.log_drops();
                    self.shared.worker_done.store(true, SeqCst);
                    if let Some(done) = shutdown.take() {
                        let _ = done.send(err);
                    }
                    // Later records are counted as dropped (closed) by record().
                    return;
                }
            }

            // Park. With nothing in hand, announce it so the next record wakes
            // us; then look once more, in case a record raced the announcement.
            let idle = batch.is_empty();
            if idle {
                self.shared.idle.store(true, Relaxed);
                fence(SeqCst);
                if !self.shared.queue.is_empty() {
                    self.shared.idle.store(false, Relaxed);
                    continue;
                }
            }
            let linger_at = batch_started.map(|t| t + self.options.linger);
            tokio::select! {
                biased;
                msg = self.control.recv(), if control_open => match msg {
                    Some(Control::Flush { target, done }) => flushes.push(FlushWaiter { target, done }),
                    Some(Control::Shutdown { done }) => shutdown = Some(done),
                    None => control_open = false,
                },
                _ = self.shared.data.notified() => {}
                _ = sleep_until_opt(linger_at) => {}
            }
            if idle {
                self.shared.idle.store(false, Relaxed);
            }
        }
    }

    /// The worker of a spool-backed sink: deliver from the spool head, in
    /// order, and acknowledge; the spooler task fills the spool.
    async fn run_spooled(mut self, spool: Arc<dyn Spool>) {
        let batch_size = self.options.batch_size.max(1);
        let shared = self.shared.clone();
        let c = &shared.counters;
        let mut flushes: Vec<FlushWaiter> = Vec::new();
        let mut shutdown: Option<oneshot::Sender<Option<String>>> = None;
        let mut control_open = true;
        let mut spool_failures: u32 = 0;

        loop {
            // Take control messages without waiting: under steady load the
            // spool is never empty and the select below is not reached.
            while control_open {
                match self.control.try_recv() {
                    Ok(Control::Flush { target, done }) => flushes.push(FlushWaiter { target, done }),
                    Ok(Control::Shutdown { done }) => shutdown = Some(done),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => control_open = false,
                }
            }
            // Answer flushes whose records have all settled.
            let settled = c.settled.load(Relaxed);
            if flushes.iter().any(|f| settled >= f.target) {
                let err = self.call_sink(SinkCall::Flush).await;
                let (ready, waiting): (Vec<_>, Vec<_>) = flushes.drain(..).partition(|f| settled >= f.target);
                flushes = waiting;
                for f in ready {
                    let _ = f.done.send(err.clone());
                }
            }
            let closing = shutdown.is_some() || !control_open;
            if closing && !shared.closing.load(Relaxed) {
                shared.closing.store(true, SeqCst);
                shared.data.notify_one();
            }
            // Read before peeking: if the spooler had stopped and the spool
            // is empty, nothing more will come.
            let spooler_done = shared.spooler_done.load(SeqCst);
            let mut retry_at = None;
            match blocking(&spool, move |sp| sp.peek(batch_size)).await {
                Ok(head) if !head.is_empty() => {
                    spool_failures = 0;
                    let last = head.last().map_or(0, |(seq, _)| *seq);
                    let n = head.len() as u64;
                    let records: Vec<AgentMetrics> = head.into_iter().map(|(_, m)| m).collect();
                    self.deliver(records).await;
                    // Acknowledge; until it succeeds the records would be
                    // delivered (and counted) again, so insist.
                    let mut ack_failures: u32 = 0;
                    while let Err(e) = blocking(&spool, move |sp| sp.ack(last)).await {
                        ack_failures += 1;
                        if self.should_log() {
                            tracing::warn!(sink = %self.name, error = %e, "cannot acknowledge delivered records in the disk spool; retrying");
                        }
                        tokio::time::sleep(self.options.retry.backoff(ack_failures, None)).await;
                    }
                    let _ = c
                        .spool_depth
                        .fetch_update(Relaxed, Relaxed, |d| Some(d.saturating_sub(n)));
                    self.log_drops();
                    continue;
                }
                Ok(_) => spool_failures = 0,
                Err(e) => {
                    spool_failures += 1;
                    if self.should_log() {
                        tracing::warn!(sink = %self.name, error = %e, "cannot read the disk spool; retrying");
                    }
                    retry_at =
                        Some(tokio::time::Instant::now() + self.options.retry.backoff(spool_failures, None));
                }
            }

            if retry_at.is_none() {
                // The spool is empty.
                if flushes.iter().any(|f| c.settled.load(Relaxed) >= f.target) {
                    continue;
                }
                if closing && spooler_done {
                    let err = self.call_sink(SinkCall::Close).await;
                    self.log_drops();
                    shared.worker_done.store(true, SeqCst);
                    for f in flushes.drain(..) {
                        let _ = f.done.send(err.clone());
                    }
                    if let Some(done) = shutdown.take() {
                        let _ = done.send(err);
                    }
                    return;
                }
            }

            // Re-check now and then while someone waits: records evicted from
            // the memory queue settle without waking us.
            let recheck = if retry_at.is_some() {
                retry_at
            } else if !flushes.is_empty() || closing {
                Some(tokio::time::Instant::now() + Duration::from_millis(50))
            } else {
                None
            };
            tokio::select! {
                biased;
                msg = self.control.recv(), if control_open => match msg {
                    Some(Control::Flush { target, done }) => flushes.push(FlushWaiter { target, done }),
                    Some(Control::Shutdown { done }) => shutdown = Some(done),
                    None => control_open = false,
                },
                _ = shared.spooled.notified() => {}
                _ = sleep_until_opt(recheck) => {}
            }
        }
    }

    /// Call the sink's `flush` or `close`: panics caught, each attempt
    /// bounded by `attempt_timeout`, transient `flush` failures retried
    /// under the retry policy (`close` is called once). When it fails for good, the records delivered since
    /// the last successful flush are taken back from `delivered` and
    /// counted `failed.flush`: the sink may not have passed them on.
    async fn call_sink(&mut self, call: SinkCall) -> Option<String> {
        let policy = self.options.retry;
        let started = Instant::now();
        let mut failures: u32 = 0;
        let c = &self.shared.counters;
        let error = loop {
            let fut = match call {
                SinkCall::Flush => self.sink.flush(),
                SinkCall::Close => self.sink.close(),
            };
            let err = match tokio::time::timeout(policy.attempt_timeout, CatchPanic(fut)).await {
                Ok(Ok(Ok(()))) => break None,
                Ok(Ok(Err(e))) => e,
                Ok(Err(panic)) => {
                    tracing::error!(sink = %self.name, panic = %panic, "sink panicked in {}", call.name());
                    break Some(format!("sink panicked in {}: {panic}", call.name()));
                }
                Err(_) => SinkError::retryable(format!(
                    "{} did not finish within {}",
                    call.name(),
                    human(policy.attempt_timeout)
                )),
            };
            failures += 1;
            // `close` is called once: a sink may not survive a second one.
            let transient = matches!(call, SinkCall::Flush)
                && matches!(err.kind(), SinkErrorKind::Retryable | SinkErrorKind::Throttled(_));
            let wait = policy.backoff(failures, err.retry_after());
            if !transient
                || failures >= policy.max_attempts
                || started.elapsed() + wait > policy.batch_deadline
            {
                break Some(format!("{} failed: {err}", call.name()));
            }
            tracing::debug!(sink = %self.name, attempt = failures, ?wait, error = %err, "sink {} failed; retrying", call.name());
            tokio::time::sleep(wait).await;
        };
        match error {
            None => {
                c.unflushed.store(0, Relaxed);
                None
            }
            Some(message) => {
                let message = crate::redact::redact(&message);
                let unconfirmed = c.unflushed.swap(0, Relaxed);
                let _ = c
                    .delivered
                    .fetch_update(Relaxed, Relaxed, |d| Some(d.saturating_sub(unconfirmed)));
                c.failed_flush.fetch_add(unconfirmed, Relaxed);
                tracing::warn!(sink = %self.name, unconfirmed, error = %message, "sink {} failed; records it took since its last flush counted failed", call.name());
                self.shared.set_last_error(&message);
                Some(message)
            }
        }
    }

    /// Deliver one batch: retry transient failures, split to isolate
    /// permanent ones, and settle every record exactly once.
    async fn deliver(&mut self, records: Vec<AgentMetrics>) {
        let policy = self.options.retry;
        let started = Instant::now();
        let mut failures: u32 = 0;
        let mut work: VecDeque<Vec<AgentMetrics>> = VecDeque::from([records]);
        let shared = self.shared.clone();
        let c = &shared.counters;

        while let Some(chunk) = work.pop_front() {
            if chunk.is_empty() {
                continue;
            }
            let attempt = CatchPanic(self.sink.record_batch(&chunk));
            let outcome = match tokio::time::timeout(policy.attempt_timeout, attempt).await {
                Ok(Ok(r)) => r,
                // A sink that panics is treated like one that refuses the
                // batch: split until the record that triggers it is alone,
                // then count it rejected. The worker lives on.
                Ok(Err(panic)) => {
                    tracing::error!(sink = %self.name, panic = %panic, batch = chunk.len(), "sink panicked in record_batch");
                    Err(SinkError::permanent(format!("sink panicked: {panic}")))
                }
                Err(_) => Err(SinkError::retryable(format!(
                    "record_batch did not finish within {:?}",
                    policy.attempt_timeout
                ))),
            };
            let err = match outcome {
                Ok(()) => {
                    let n = chunk.len() as u64;
                    c.delivered.fetch_add(n, Relaxed);
                    c.unflushed.fetch_add(n, Relaxed);
                    c.settled.fetch_add(n, Relaxed);
                    self.misconfigured_logged = false;
                    continue;
                }
                Err(e) => e,
            };
            self.shared.set_last_error(&err.to_string());

            let len = chunk.len();
            let mut concerned: Vec<usize> = match err.records() {
                Some(r) => r.iter().copied().filter(|&i| i < len).collect(),
                None => (0..len).collect(),
            };
            concerned.sort_unstable();
            concerned.dedup();
            let mut retry: Vec<usize> = err
                .retry_records()
                .iter()
                .copied()
                .filter(|&i| i < len && concerned.binary_search(&i).is_err())
                .collect();
            retry.sort_unstable();
            retry.dedup();
            let delivered = (len - concerned.len() - retry.len()) as u64;
            c.delivered.fetch_add(delivered, Relaxed);
            c.unflushed.fetch_add(delivered, Relaxed);
            c.settled.fetch_add(delivered, Relaxed);

            let mut slots: Vec<Option<AgentMetrics>> = chunk.into_iter().map(Some).collect();
            let mut take = |idx: &[usize]| -> Vec<AgentMetrics> {
                idx.iter().filter_map(|&i| slots[i].take()).collect()
            };
            let retry_now = take(&retry);
            if !retry_now.is_empty() {
                work.push_front(retry_now);
            }

            if err.is_misconfigured() {
                // The sink, not the record, is wrong: no split, no retry of
                // this batch (without a spool); one log line per episode.
                let pending = take(&concerned);
                let log = !self.misconfigured_logged;
                self.misconfigured_logged = true;
                if !self.persistent {
                    let mut n = pending.len() as u64;
                    for rest in work.drain(..) {
                        n += rest.len() as u64;
                    }
                    c.failed_misconfigured.fetch_add(n, Relaxed);
                    c.settled.fetch_add(n, Relaxed);
                    if log {
                        tracing::error!(sink = %self.name, failed = n, error = %err, "the sink is misconfigured (credentials, permission or endpoint): batch failed without retry; fix the sink's configuration");
                    }
                    return;
                }
                if log {
                    tracing::error!(sink = %self.name, pending = pending.len(), error = %err, "the sink is misconfigured (credentials, permission or endpoint): records kept in the disk spool and retried slowly until it is fixed");
                }
                failures += 1;
                let wait = policy.backoff(failures, None).max(policy.max_backoff / 2);
                c.retried.fetch_add(pending.len() as u64, Relaxed);
                work.push_front(pending);
                tokio::time::sleep(wait).await;
                continue;
            }

            if err.is_permanent() {
                if err.records().is_some() || concerned.len() == 1 {
                    let bad = take(&concerned);
                    let n = bad.len() as u64;
                    c.failed_rejected.fetch_add(n, Relaxed);
                    c.settled.fetch_add(n, Relaxed);
                    if self.should_log() {
                        tracing::warn!(sink = %self.name, rejected = n, error = %err, "records rejected by the sink");
                    }
                } else {
                    // Unknown culprit: split and try each half on its own.
                    let mut all = take(&concerned);
                    let right = all.split_off(all.len() / 2);
                    work.push_front(right);
                    work.push_front(all);
                }
                continue;
            }

            // Transient: back off, then retry the concerned records.
            failures += 1;
            let wait = policy.backoff(failures, err.retry_after());
            let pending = take(&concerned);
            let exhausted =
                failures >= policy.max_attempts || started.elapsed() + wait > policy.batch_deadline;
            if exhausted && !self.persistent {
                let mut n = pending.len() as u64;
                for rest in work.drain(..) {
                    n += rest.len() as u64;
                }
                c.failed_retries_exhausted.fetch_add(n, Relaxed);
                c.settled.fetch_add(n, Relaxed);
                tracing::warn!(sink = %self.name, lost = n, attempts = failures, error = %err, "giving up on a batch after retries");
                return;
            }
            if exhausted && self.should_log() {
                tracing::warn!(sink = %self.name, attempts = failures, pending = pending.len(), error = %err, "backend still failing; records kept in the disk spool, retrying");
            } else {
                tracing::debug!(sink = %self.name, attempt = failures, ?wait, error = %err, "delivery failed; retrying");
            }
            c.retried.fetch_add(pending.len() as u64, Relaxed);
            work.push_front(pending);
            tokio::time::sleep(wait).await;
        }
    }

    fn should_log(&mut self) -> bool {
        let now = Instant::now();
        if self.log.last.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            self.log.last = Some(now);
            true
        } else {
            false
        }
    }

    fn log_drops(&mut self) {
        let c = &self.shared.counters;
        let dropped = c.dropped_queue_full.load(Relaxed) + c.dropped_evicted_oldest.load(Relaxed);
        if dropped > self.log.reported_drops {
            let new = dropped - self.log.reported_drops;
            if self.should_log() {
                tracing::warn!(sink = %self.name, dropped = new, total_dropped = dropped, "sink queue full; records dropped");
                self.log.reported_drops = dropped;
            }
        }
    }
}

/// Run a spool operation on a blocking thread.
async fn blocking<T: Send + 'static>(
    spool: &Arc<dyn Spool>,
    f: impl FnOnce(&dyn Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    let sp = spool.clone();
    match tokio::task::spawn_blocking(move || f(&*sp)).await {
        Ok(r) => r,
        Err(e) => Err(SpoolError::new(format!(
            "spool operation panicked or was cancelled: {e}"
        ))),
    }
}

/// Move records from a sink's memory queue to its disk spool, a batch (one
/// append, one sync) at a time, as soon as they arrive.
async fn run_spooler(name: String, shared: Arc<Shared>, spool: Arc<dyn Spool>, retry: RetryPolicy) {
    let c = &shared.counters;
    let mut last_log: Option<Instant> = None;
    loop {
        let mut batch: Vec<AgentMetrics> = Vec::with_capacity(shared.batch_size.min(1024));
        while batch.len() < shared.batch_size {
            match shared.queue.pop() {
                Some(m) => batch.push(Arc::unwrap_or_clone(m)),
                None => break,
            }
        }
        if !batch.is_empty() {
            if shared.blocked_producers.load(Relaxed) > 0 {
                shared.space.notify_waiters();
            }
            let n = batch.len() as u64;
            let batch = Arc::new(batch);
            let mut failures: u32 = 0;
            let dropped = loop {
                let b = batch.clone();
                match blocking(&spool, move |sp| sp.append(&b)).await {
                    Ok(dropped) => break dropped.min(n + c.spool_depth.load(Relaxed)),
                    Err(e) => {
                        // Keep the batch; the memory queue buffers (and, when
                        // full, drops and counts) meanwhile.
                        failures += 1;
                        if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                            last_log = Some(Instant::now());
                            tracing::warn!(sink = %name, error = %e, "cannot write to the disk spool; retrying");
                        }
                        tokio::time::sleep(retry.backoff(failures, None)).await;
                    }
                }
            };
            if dropped > 0 {
                c.dropped_spool_full.fetch_add(dropped, Relaxed);
                c.settled.fetch_add(dropped, Relaxed);
                if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    last_log = Some(Instant::now());
                    tracing::warn!(sink = %name, dropped, total_dropped = c.dropped_spool_full.load(Relaxed), "disk spool full; records dropped");
                }
            }
            let _ = c
                .spool_depth
                .fetch_update(Relaxed, Relaxed, |d| Some((d + n).saturating_sub(dropped)));
            shared.synced.fetch_add(n, SeqCst);
            shared.synced_notify.notify_waiters();
            shared.spooled.notify_one();
            continue;
        }
        if shared.closing.load(SeqCst) {
            shared.spooler_done.store(true, SeqCst);
            shared.synced_notify.notify_waiters();
            shared.spooled.notify_one();
            return;
        }
        // Park until a producer wakes us (same protocol as the worker).
        shared.idle.store(true, Relaxed);
        fence(SeqCst);
        if !shared.queue.is_empty() || shared.closing.load(SeqCst) {
            shared.idle.store(false, Relaxed);
            continue;
        }
        shared.data.notified().await;
        shared.idle.store(false, Relaxed);
    }
}

#[derive(Clone, Copy)]
enum SinkCall {
    Flush,
    Close,
}

impl SinkCall {
    fn name(self) -> &'static str {
        match self {
            SinkCall::Flush => "flush",
            SinkCall::Close => "close",
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Polls a future, turning a panic inside it into an `Err` with the panic
/// message, so a faulty sink cannot kill its worker and leave records
/// unaccounted for.
struct CatchPanic<F>(F);

impl<F: std::future::Future + Unpin> std::future::Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(inner).poll(cx)
        })) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_string());
                std::task::Poll::Ready(Err(msg))
            }
        }
    }
}
