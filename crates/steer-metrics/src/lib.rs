//! # steer-metrics
//!
//! The measuring half of the steer LLM SDK: the [`AgentMetrics`] record
//! written for every LLM call, the [`MetricsSink`] contract a backend
//! implements, and the [`MetricsCollector`] that delivers records to any
//! number of sinks without ever slowing or failing the call that produced
//! them.
//!
//! ```text
//! record(m) ─ sampling ─┬─► bounded queue ─► worker: batch ─► sink ─► retry / split ─► delivered | failed(reason)
//!                       └─► bounded queue ─► worker ...              (dropped(reason) when a queue is full)
//! ```
//!
//! * [`MetricsCollector::record`] is synchronous and never blocks.
//! * Each sink has its own queue and worker: a slow or dead sink never
//!   affects the others.
//! * Every record is accounted for in [`MetricsCollector::stats`]:
//!   delivered, dropped or failed, with a reason.
//! * [`MetricsCollector::flush`] and [`MetricsCollector::shutdown`] report
//!   per sink what was and was not delivered.
//!
//! Built-in sinks are in [`sinks`]; helpers to test your own sinks are in
//! `testkit` (behind the `testing` feature: enable it in your
//! `[dev-dependencies]`). See `docs/custom-sinks.md` for writing a sink.
//!
//! A sink can be backed by a disk [`Spool`]
//! ([`MetricsCollectorBuilder::sink_with_spool`]) so that an outage or a
//! crash loses nothing; the `steer-spool` crate provides one on SQLite
//! (see `docs/spool.md`).
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod collector;
mod config;
pub mod http;
pub mod query;
mod record;
pub mod redact;
pub mod registry;
pub mod semconv;
mod sink;
pub mod sinks;
mod spool;
mod stats;
pub mod summary;
#[cfg(any(feature = "testing", test))]
pub mod testkit;

pub use collector::{BuildError, MetricsCollector, MetricsCollectorBuilder};
pub use config::{MetricsConfig, OverflowPolicy, RetryPolicy, SinkOptions};
pub use query::{GroupKey, QueryError, StatsQuery, SummaryReport, SummaryStore, Timeseries};
pub use record::{AgentMetrics, ErrorClass, Method, UnknownName};
pub use sink::{MetricsSink, SinkError, SinkErrorKind};
pub use spool::{Spool, SpoolError};
pub use stats::{CollectorStats, DeliveryReport, DroppedCounts, FailedCounts, SinkReport, SinkStats};
pub use summary::{Distribution, GroupBy, Summary};

/// `docs/custom-sinks.md`, compiled: every Rust block of the guide is a
/// doctest of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/custom-sinks.md")]
mod custom_sinks_guide {}

/// Re-exported so sink authors need not add it themselves.
pub use async_trait::async_trait;
