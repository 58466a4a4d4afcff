//! [`MetricsCollectorBuilder`]: collects sinks and their options, then
//! starts one worker task (and, for a spool-backed sink, one spooler task)
//! per sink.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crossbeam_queue::ArrayQueue;
use tokio::sync::{mpsc, Notify};

use super::queue::Shared;
use super::spool_worker::run_spooler;
use super::worker::{LogLimiter, Requests, Worker};
use super::{BuildError, Inner, MetricsCollector, SinkHandle};
use crate::config::{MetricsConfig, SinkOptions};
use crate::sink::MetricsSink;
use crate::spool::Spool;
use crate::stats::Counters;

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
                requests: Requests::new(rx),
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
