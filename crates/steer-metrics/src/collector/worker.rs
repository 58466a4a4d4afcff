//! A sink's worker task: takes records from its queue in batches (by size
//! and linger time), delivers them with retries and backoff, splits batches
//! to isolate bad records, settles every record exactly once, and answers
//! the collector's flush and shutdown requests.

use std::collections::VecDeque;
use std::sync::atomic::{fence, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::human;
use super::isolate::CatchPanic;
use super::queue::Shared;
use crate::config::SinkOptions;
use crate::record::AgentMetrics;
use crate::sink::{MetricsSink, SinkError, SinkErrorKind};

/// A request from the collector to a sink's worker.
pub(super) enum Control {
    /// Answer once every record enqueued before the request (`target`) has
    /// settled and the sink has been flushed.
    Flush {
        target: u64,
        done: oneshot::Sender<Option<String>>,
    },
    /// Deliver what is queued, close the sink and stop.
    Shutdown { done: oneshot::Sender<Option<String>> },
}

/// The worker's side of the control channel: the flushes waiting for their
/// records to settle and the pending shutdown. One place for both workers
/// (memory queue and disk spool) to take requests and answer them.
pub(super) struct Requests {
    rx: mpsc::UnboundedReceiver<Control>,
    flushes: Vec<FlushWaiter>,
    shutdown: Option<oneshot::Sender<Option<String>>>,
    /// Every collector handle is gone: treated like a shutdown.
    disconnected: bool,
}

struct FlushWaiter {
    target: u64,
    done: oneshot::Sender<Option<String>>,
}

impl Requests {
    pub(super) fn new(rx: mpsc::UnboundedReceiver<Control>) -> Self {
        Requests {
            rx,
            flushes: Vec::new(),
            shutdown: None,
            disconnected: false,
        }
    }

    fn accept(&mut self, msg: Option<Control>) {
        match msg {
            Some(Control::Flush { target, done }) => self.flushes.push(FlushWaiter { target, done }),
            Some(Control::Shutdown { done }) => self.shutdown = Some(done),
            None => self.disconnected = true,
        }
    }

    /// Wait for the next request (forever once disconnected). Cancel-safe:
    /// use it as a `select!` branch.
    pub(super) async fn recv(&mut self) {
        if self.disconnected {
            return std::future::pending().await;
        }
        let msg = self.rx.recv().await;
        self.accept(msg);
    }

    /// Take the requests already sent, without waiting.
    pub(super) fn poll_now(&mut self) {
        while !self.disconnected {
            match self.rx.try_recv() {
                Ok(msg) => self.accept(Some(msg)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.disconnected = true,
            }
        }
    }

    /// A shutdown was requested or every collector handle is gone.
    pub(super) fn closing(&self) -> bool {
        self.shutdown.is_some() || self.disconnected
    }

    /// Someone waits: a flush or the end.
    pub(super) fn urgent(&self) -> bool {
        !self.flushes.is_empty() || self.closing()
    }

    pub(super) fn flush_waiting(&self) -> bool {
        !self.flushes.is_empty()
    }

    /// Whether some flush is ready to be answered.
    pub(super) fn any_flush(&self, ready: impl Fn(u64) -> bool) -> bool {
        self.flushes.iter().any(|f| ready(f.target))
    }

    /// Answer the ready flushes with the sink's flush outcome.
    fn answer_flushes(&mut self, ready: impl Fn(u64) -> bool, err: &Option<String>) {
        let (answered, waiting): (Vec<_>, Vec<_>) = self.flushes.drain(..).partition(|f| ready(f.target));
        self.flushes = waiting;
        for f in answered {
            let _ = f.done.send(err.clone());
        }
    }

    /// Answer everyone still waiting with the sink's close outcome.
    fn answer_all(&mut self, err: Option<String>) {
        for f in self.flushes.drain(..) {
            let _ = f.done.send(err.clone());
        }
        if let Some(done) = self.shutdown.take() {
            let _ = done.send(err);
        }
    }
}

/// Rate-limits warnings: at most one per `every` per kind.
#[derive(Default)]
pub(super) struct LogLimiter {
    last: Option<Instant>,
    reported_drops: u64,
}

pub(super) const LOG_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Worker {
    pub(super) name: String,
    pub(super) sink: Box<dyn MetricsSink>,
    pub(super) shared: Arc<Shared>,
    pub(super) options: SinkOptions,
    pub(super) requests: Requests,
    pub(super) log: LogLimiter,
    /// Records are safe in a disk spool: transient failures never exhaust.
    pub(super) persistent: bool,
    /// A misconfiguration was logged and no delivery succeeded since.
    pub(super) misconfigured_logged: bool,
}

impl Worker {
    /// The worker of a sink without a spool: deliver from the memory queue.
    pub(super) async fn run(mut self) {
        let batch_size = self.options.batch_size.max(1);
        let mut batch: Vec<Arc<AgentMetrics>> = Vec::with_capacity(batch_size);
        let mut batch_started: Option<tokio::time::Instant> = None;

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

            let urgent = self.requests.urgent();
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
                if self
                    .answer_flushes(|target| queue_empty || settled >= target)
                    .await
                {
                    continue;
                }
                if queue_empty && self.requests.closing() {
                    // Later records are counted as dropped (closed) by record().
                    return self.close().await;
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
                _ = self.requests.recv() => {}
                _ = self.shared.data.notified() => {}
                _ = sleep_until_opt(linger_at) => {}
            }
            if idle {
                self.shared.idle.store(false, Relaxed);
            }
        }
    }

    /// If some flush is ready (`ready(target)`), flush the sink and answer
    /// the ready ones; returns whether it did.
    pub(super) async fn answer_flushes(&mut self, ready: impl Fn(u64) -> bool) -> bool {
        if !self.requests.any_flush(&ready) {
            return false;
        }
        let err = self.call_sink(SinkCall::Flush).await;
        self.requests.answer_flushes(ready, &err);
        true
    }

    /// Close the sink, answer everyone waiting, and mark the worker done.
    pub(super) async fn close(mut self) {
        let err = self.call_sink(SinkCall::Close).await;
        self.log_drops();
        self.shared.worker_done.store(true, SeqCst);
        self.requests.answer_all(err);
    }

    /// Call the sink's `flush` or `close`: panics caught, each attempt
    /// bounded by `attempt_timeout`, transient `flush` failures retried
    /// under the retry policy (`close` is called once). When it fails for good, the records delivered since
    /// the last successful flush are taken back from `delivered` and
    /// counted `failed.flush`: the sink may not have passed them on.
    pub(super) async fn call_sink(&mut self, call: SinkCall) -> Option<String> {
        let policy = self.options.retry;
        let started = Instant::now();
        let mut failures: u32 = 0;
        let c = &self.shared.counters;
        let error = loop {
            let fut = match call {
                SinkCall::Flush => self.sink.flush(),
                SinkCall::Close => self.sink.close(),
            };
            let err = match crate::http::attempt_within(policy.attempt_timeout, CatchPanic(fut)).await {
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
    pub(super) async fn deliver(&mut self, records: Vec<AgentMetrics>) {
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
            let outcome = match crate::http::attempt_within(policy.attempt_timeout, attempt).await {
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

    pub(super) fn should_log(&mut self) -> bool {
        let now = Instant::now();
        if self.log.last.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            self.log.last = Some(now);
            true
        } else {
            false
        }
    }

    pub(super) fn log_drops(&mut self) {
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
pub(super) enum SinkCall {
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

pub(super) async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
