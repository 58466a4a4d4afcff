//! The bounded queue between `record()` and a sink's worker: overflow
//! policies, the wake-up protocol, and the state both sides share.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

use crate::config::OverflowPolicy;
use crate::record::AgentMetrics;
use crate::spool::Spool;
use crate::stats::Counters;

/// State shared between `record()` and one sink's worker.
pub(super) struct Shared {
    pub(super) queue: ArrayQueue<Arc<AgentMetrics>>,
    pub(super) data: Notify,
    pub(super) space: Notify,
    pub(super) blocked_producers: AtomicUsize,
    /// Set by the worker just before it parks with nothing in hand; a
    /// producer that sees it wakes the worker. Otherwise producers wake the
    /// worker only when a full batch is waiting (the linger timer does the
    /// rest), so a busy pipeline costs no wake-up per record.
    pub(super) idle: AtomicBool,
    pub(super) batch_size: usize,
    pub(super) counters: Counters,
    pub(super) overflow: OverflowPolicy,
    /// The sink's disk spool, if any.
    pub(super) spool: Option<Arc<dyn Spool>>,
    /// Spooler -> worker: records were appended to (or dropped by) the spool.
    pub(super) spooled: Notify,
    /// Records taken from the memory queue by the spooler and persisted (or
    /// dropped by the spool's cap), plus those found in the spool at start.
    pub(super) synced: AtomicU64,
    /// Wakes `sync_spools` waiters after each append.
    pub(super) synced_notify: Notify,
    /// Set at shutdown (or when the collector is dropped): the spooler
    /// drains the memory queue and stops.
    pub(super) closing: AtomicBool,
    /// Set by the spooler when it has stopped.
    pub(super) spooler_done: AtomicBool,
    /// Set by the worker when it has closed the sink and stopped.
    pub(super) worker_done: AtomicBool,
    /// The sink's last error, redacted (only written on the error path).
    pub(super) last_error: Mutex<Option<String>>,
}

impl Shared {
    /// Wake the worker if it is parked idle, or if a full batch is waiting.
    #[inline]
    pub(super) fn wake(&self) {
        // Pairs with the fence in `Worker::park`: either the worker sees the
        // record we pushed, or we see its idle flag.
        fence(SeqCst);
        if self.idle.load(Relaxed) || self.queue.len() >= self.batch_size {
            self.data.notify_one();
        }
    }

    /// Offer a record without blocking.
    #[inline]
    pub(super) fn offer(&self, m: Arc<AgentMetrics>) {
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
    pub(super) async fn offer_wait(&self, mut m: Arc<AgentMetrics>) {
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

    pub(super) fn received(&self) -> u64 {
        let c = &self.counters;
        c.enqueued.load(Relaxed) + c.dropped_queue_full.load(Relaxed) + c.refused_closed.load(Relaxed)
    }
}

impl Shared {
    /// Remember the sink's last error, redacted and bounded.
    pub(super) fn set_last_error(&self, message: &str) {
        let redacted = crate::redact::redact_truncated(message, 500);
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(redacted);
        }
    }
}
