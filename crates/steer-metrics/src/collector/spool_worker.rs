//! The two tasks of a sink backed by a disk spool: the spooler moves
//! records from the memory queue to the spool; the worker delivers from the
//! spool head, in order, and acknowledges.

use std::sync::atomic::{fence, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::Shared;
use super::worker::{sleep_until_opt, Worker, LOG_EVERY};
use crate::config::RetryPolicy;
use crate::record::AgentMetrics;
use crate::spool::{Spool, SpoolError};

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
pub(super) async fn run_spooler(
    name: String,
    shared: Arc<Shared>,
    spool: Arc<dyn Spool>,
    retry: RetryPolicy,
) {
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

impl Worker {
    /// The worker of a spool-backed sink: deliver from the spool head, in
    /// order, and acknowledge; the spooler task fills the spool.
    pub(super) async fn run_spooled(mut self, spool: Arc<dyn Spool>) {
        let batch_size = self.options.batch_size.max(1);
        let shared = self.shared.clone();
        let c = &shared.counters;
        let mut spool_failures: u32 = 0;

        loop {
            // Take control messages without waiting: under steady load the
            // spool is never empty and the select below is not reached.
            self.requests.poll_now();
            // Answer flushes whose records have all settled.
            let settled = c.settled.load(Relaxed);
            self.answer_flushes(|target| settled >= target).await;
            let closing = self.requests.closing();
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
                let settled = c.settled.load(Relaxed);
                if self.requests.any_flush(|target| settled >= target) {
                    continue;
                }
                if closing && spooler_done {
                    return self.close().await;
                }
            }

            // Re-check now and then while someone waits: records evicted from
            // the memory queue settle without waking us.
            let recheck = if retry_at.is_some() {
                retry_at
            } else if self.requests.flush_waiting() || closing {
                Some(tokio::time::Instant::now() + Duration::from_millis(50))
            } else {
                None
            };
            tokio::select! {
                biased;
                _ = self.requests.recv() => {}
                _ = shared.spooled.notified() => {}
                _ = sleep_until_opt(recheck) => {}
            }
        }
    }
}
