//! The collector: fans each record out to every sink through a bounded
//! queue and a worker task per sink.

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::config::{MetricsConfig, OverflowPolicy, SinkOptions};
use crate::record::AgentMetrics;
use crate::sink::{MetricsSink, SinkError};
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

/// Builds a [`MetricsCollector`].
#[must_use]
#[derive(Default)]
pub struct MetricsCollectorBuilder {
    config: MetricsConfig,
    sinks: Vec<(Box<dyn MetricsSink>, Option<SinkOptions>)>,
}

impl MetricsCollectorBuilder {
    /// Collector-wide configuration (default: [`MetricsConfig::default`]).
    pub fn config(mut self, config: MetricsConfig) -> Self {
        self.config = config;
        self
    }

    /// Add a sink with the config's default [`SinkOptions`].
    pub fn sink(mut self, sink: impl MetricsSink) -> Self {
        self.sinks.push((Box::new(sink), None));
        self
    }

    /// Add a sink with its own options.
    pub fn sink_with_options(mut self, sink: impl MetricsSink, options: SinkOptions) -> Self {
        self.sinks.push((Box::new(sink), Some(options)));
        self
    }

    /// Add an already boxed sink, optionally with its own options.
    pub fn boxed_sink(mut self, sink: Box<dyn MetricsSink>, options: Option<SinkOptions>) -> Self {
        self.sinks.push((sink, options));
        self
    }

    /// Start one worker task per sink on the current Tokio runtime.
    pub fn build(self) -> Result<MetricsCollector, BuildError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let mut names = std::collections::HashSet::new();
        for (s, _) in &self.sinks {
            if !names.insert(s.name().to_string()) {
                return Err(BuildError::DuplicateSinkName(s.name().to_string()));
            }
        }
        let mut sinks = Vec::with_capacity(self.sinks.len());
        for (sink, options) in self.sinks {
            let options = options.unwrap_or_else(|| self.config.default_sink_options.clone());
            let shared = Arc::new(Shared {
                queue: ArrayQueue::new(options.queue_capacity.max(1)),
                data: Notify::new(),
                space: Notify::new(),
                blocked_producers: AtomicUsize::new(0),
                idle: AtomicBool::new(false),
                batch_size: options.batch_size.max(1),
                counters: Counters::default(),
                overflow: options.overflow,
            });
            let (tx, rx) = mpsc::unbounded_channel();
            let name = sink.name().to_string();
            let worker = Worker {
                name: name.clone(),
                sink,
                shared: shared.clone(),
                options,
                control: rx,
                log: LogLimiter::default(),
            };
            let handle = rt.spawn(worker.run());
            sinks.push(SinkHandle {
                name,
                shared,
                control: tx,
                worker: Mutex::new(Some(handle)),
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
    pub async fn flush(&self) -> DeliveryReport {
        self.flush_inner(None).await
    }

    /// Like [`flush`](Self::flush), but returns at `deadline` at the latest;
    /// sinks that had not finished are reported with `completed: false`.
    pub async fn flush_timeout(&self, deadline: Duration) -> DeliveryReport {
        self.flush_inner(Some(deadline)).await
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
                    None => (false, None),
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
    pub async fn shutdown(&self, deadline: Duration) -> DeliveryReport {
        self.inner.closed.store(true, Relaxed);
        let waits = self.inner.sinks.iter().map(|s| {
            let (tx, rx) = oneshot::channel();
            let sent = s.control.send(Control::Shutdown { done: tx }).is_ok();
            async move {
                if !sent {
                    return (true, None);
                }
                match tokio::time::timeout(deadline, rx).await {
                    Ok(Ok(err)) => (true, err),
                    Ok(Err(_)) => (true, None),
                    Err(_) => (false, None),
                }
            }
        });
        let results = futures_join_all(waits).await;
        let mut reports = Vec::with_capacity(results.len());
        for (s, (completed, error)) in self.inner.sinks.iter().zip(results) {
            let handle = s.worker.lock().ok().and_then(|mut g| g.take());
            if !completed {
                if let Some(h) = handle {
                    h.abort();
                    let _ = h.await;
                }
                // Whatever was not settled is now lost: count it.
                let c = &s.shared.counters;
                while s.shared.queue.pop().is_some() {}
                let outstanding = c.enqueued.load(Relaxed).saturating_sub(c.settled.load(Relaxed));
                c.dropped_closed.fetch_add(outstanding, Relaxed);
                c.settled.fetch_add(outstanding, Relaxed);
                tracing::warn!(sink = %s.name, lost = outstanding, "shutdown deadline reached before the sink finished; records not delivered");
            } else if let Some(h) = handle {
                let _ = h.await;
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
    st
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

    async fn call_sink(&self, call: SinkCall) -> Option<String> {
        let timeout = self.options.retry.attempt_timeout;
        let fut = async {
            match call {
                SinkCall::Flush => self.sink.flush().await,
                SinkCall::Close => self.sink.close().await,
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                tracing::warn!(sink = %self.name, error = %e, "sink {} failed", call.name());
                Some(e.to_string())
            }
            Err(_) => {
                tracing::warn!(sink = %self.name, ?timeout, "sink {} timed out", call.name());
                Some(format!("{} timed out after {timeout:?}", call.name()))
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
            let outcome =
                match tokio::time::timeout(policy.attempt_timeout, self.sink.record_batch(&chunk)).await {
                    Ok(r) => r,
                    Err(_) => Err(SinkError::retryable(format!(
                        "record_batch did not finish within {:?}",
                        policy.attempt_timeout
                    ))),
                };
            let err = match outcome {
                Ok(()) => {
                    let n = chunk.len() as u64;
                    c.delivered.fetch_add(n, Relaxed);
                    c.settled.fetch_add(n, Relaxed);
                    continue;
                }
                Err(e) => e,
            };

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
            c.settled.fetch_add(delivered, Relaxed);

            let mut slots: Vec<Option<AgentMetrics>> = chunk.into_iter().map(Some).collect();
            let mut take = |idx: &[usize]| -> Vec<AgentMetrics> {
                idx.iter().filter_map(|&i| slots[i].take()).collect()
            };
            let retry_now = take(&retry);
            if !retry_now.is_empty() {
                work.push_front(retry_now);
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
            if failures >= policy.max_attempts || started.elapsed() + wait > policy.batch_deadline {
                let mut n = pending.len() as u64;
                for rest in work.drain(..) {
                    n += rest.len() as u64;
                }
                c.failed_retries_exhausted.fetch_add(n, Relaxed);
                c.settled.fetch_add(n, Relaxed);
                tracing::warn!(sink = %self.name, lost = n, attempts = failures, error = %err, "giving up on a batch after retries");
                return;
            }
            tracing::debug!(sink = %self.name, attempt = failures, ?wait, error = %err, "delivery failed; retrying");
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
