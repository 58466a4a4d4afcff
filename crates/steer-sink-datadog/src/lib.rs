//! # steer-sink-datadog
//!
//! A [`MetricsSink`] that ships steer's LLM call metrics to Datadog the way
//! Datadog wants them: aggregated per flush interval, counts as `count`
//! (type 1) points with their `interval` on `/api/v2/series`, latency and
//! time-to-first-token as *distributions* on `/api/v1/distribution_points`
//! (so percentiles stay right across hosts), gzip-compressed bodies split
//! under Datadog's limits (512 000 bytes sent, 5 242 880 bytes
//! uncompressed).
//!
//! | metric | type | tags beyond the common ones |
//! |---|---|---|
//! | `steer.llm.requests` | count | |
//! | `steer.llm.errors` | count | |
//! | `steer.llm.tokens` | count | `token_type:input\|output\|cached` |
//! | `steer.llm.retries` | count | |
//! | `steer.llm.cost_usd` | count (USD) | |
//! | `steer.llm.latency` | distribution (milliseconds) | |
//! | `steer.llm.ttft` | distribution (milliseconds) | |
//!
//! Common tags: `model`, `provider`, `method`, `status`, `error_class` (on
//! errors), `finish_reason` (the provider's own value, when the record has
//! one), plus `service`, `env` and any configured tags; normalised by
//! Datadog's rules and sorted. Counts are multiplied by each record's
//! `sample_weight`; a sampled record's latency is repeated `round(weight)`
//! times.
//!
//! ## Delivery without loss or double counting
//!
//! Every [`record_batch`](MetricsSink::record_batch) call ships what it was
//! given before it returns, so a record the collector counts as delivered
//! has reached Datadog:
//!
//! * Datadog keeps the **last** value written for a point (metric, tags,
//!   host, timestamp). The sink therefore keeps, per series, the running
//!   total of each interval and ships that total; a later batch in the same
//!   interval ships the new total, which replaces the old one. A failed
//!   attempt leaves the total marked for resending.
//! * Distribution values add up on Datadog's side, so each is sent once.
//! * When a call fails part-way (a 503 after the counts went out), the
//!   records concerned are returned to the collector as retryable and the
//!   sink remembers, by `request_id`, what of them is already done, so the
//!   retry ships only the rest.
//! * A 413 splits the body; a 400 bisects it until the refused series is
//!   alone; the records that fed that series are reported as rejected, all
//!   others are delivered. 408, 429 and 5xx are retryable, with the
//!   `Retry-After` hint passed on to the collector's backoff.
//!
//! Memory is bounded: at most `max_tag_sets` tag sets per interval (the
//! rest fold into `model:other`), `retained_intervals` intervals of count
//! state, and 100 000 resume marks.
//!
//! Give each process its own identity (`host`, or a tag such as
//! `instance:...`): two processes writing the same series and timestamp
//! overwrite each other's totals, as with any direct API submission.
//!
//! ```no_run
//! use std::time::Duration;
//! use steer_metrics::{MetricsCollector, SinkOptions};
//! use steer_sink_datadog::DatadogSink;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = DatadogSink::builder().site("datadoghq.eu").service("chat").env("prod").host("web-1").build()?;
//! // One large batch per interval keeps the number of requests low.
//! let opts = SinkOptions::default().batch_size(10_000).linger(Duration::from_secs(10));
//! let collector = MetricsCollector::builder().sink_with_options(sink, opts).build()?;
//! # let _ = collector; Ok(()) }
//! ```
#![warn(missing_docs)]

#[cfg(doc)]
use steer_metrics::MetricsSink;

mod aggregate;
mod client;
mod config;
pub mod encode;
mod ship;
mod sink;
pub mod spec;

/// Bounds beyond which a cost (USD per call) or a latency/TTFT (ms) is not
/// plausible: the value is left out (the rest of the record still counted)
/// and counted in [`DatadogStats::invalid_values`]. Shared by every
/// aggregating sink.
pub use steer_metrics::semconv::{MAX_COST_USD, MAX_DURATION_MS};

/// Largest value a count point carries. A contribution that would push a
/// point's running total (or a raw point) past it, or to a non-finite
/// value, is left out and counted in [`DatadogStats::invalid_values`]; so
/// every number in a body is far inside the double range.
pub const MAX_POINT_VALUE: f64 = 1e300;
pub use client::{classify, parse_retry_after, Endpoint, Outcome};
pub use config::{
    site_url, ApiKey, ConfigError, DatadogConfig, DatadogSinkBuilder, Mode, API_KEY_ENV,
    MAX_COMPRESSED_BYTES, MAX_UNCOMPRESSED_BYTES,
};
pub use encode::Compression;
pub use sink::{DatadogSink, DatadogStats};
