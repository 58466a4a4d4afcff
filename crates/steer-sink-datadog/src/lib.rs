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

mod aggregate;
mod client;
mod config;
pub mod encode;
pub mod spec;

use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use steer_metrics::{AgentMetrics, MetricsSink, SinkError};

use aggregate::{
    fits_point, invalid_values, valid_duration, Aggregator, CountPoint, Dist, COUNTS_ADDED, LAT_DONE,
    TTFT_DONE,
};

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
use client::Client;
pub use client::{classify, parse_retry_after, Endpoint, Outcome};
pub use config::{
    site_url, ApiKey, Compression, ConfigError, DatadogConfig, DatadogSinkBuilder, Mode, API_KEY_ENV,
    MAX_COMPRESSED_BYTES, MAX_UNCOMPRESSED_BYTES,
};
use encode::{count_entry, distribution_entry, format_significant, pack, Limits};

/// Counters of what the sink sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatadogStats {
    /// HTTP requests that were answered 2xx.
    pub payloads_delivered: u64,
    /// HTTP requests that failed (any reason).
    pub payloads_failed: u64,
    /// Bytes sent in delivered bodies (compressed, as on the wire).
    pub bytes_sent: u64,
    /// The same bodies before compression.
    pub bytes_uncompressed: u64,
    /// Count points delivered.
    pub count_points: u64,
    /// Distribution values delivered.
    pub distribution_values: u64,
    /// Records whose tags were folded into `model:other` by the cardinality cap.
    pub folded_records: u64,
    /// Count points dropped undelivered from the retained window.
    pub lost_points: u64,
    /// Count cells currently held.
    pub cells: u64,
    /// Values left out: latency/TTFT negative, not finite or above
    /// [`MAX_DURATION_MS`]; cost negative, not finite or above
    /// [`MAX_COST_USD`]; count contributions that would push a point past
    /// [`MAX_POINT_VALUE`]. The records themselves are still counted.
    pub invalid_values: u64,
}

#[derive(Debug, Default)]
struct Counters {
    payloads_delivered: AtomicU64,
    payloads_failed: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_uncompressed: AtomicU64,
    count_points: AtomicU64,
    distribution_values: AtomicU64,
}

/// The Datadog sink. Cheap to clone (clones share state).
#[derive(Clone)]
pub struct DatadogSink {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: DatadogConfig,
    client: Client,
    state: Mutex<Aggregator>,
    counters: Counters,
}

impl std::fmt::Debug for DatadogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatadogSink")
            .field("name", &self.inner.cfg.name)
            .field("base_url", &self.inner.cfg.base_url.as_str())
            .field("mode", &self.inner.cfg.mode)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryState {
    Unsent,
    Sent,
    Rejected,
}

/// Called with the entry indices of each accepted body.
type OnSent<'a> = dyn Fn(&[usize]) + Send + Sync + 'a;

/// Result of shipping a list of entries to one endpoint.
struct Shipped {
    states: Vec<EntryState>,
    /// The transient failure that stopped sending, if any.
    stop: Option<Outcome>,
    /// The last permanent failure, if any.
    rejected: Option<String>,
    /// Datadog refused the API key (401/403): the sink, not the data, is wrong.
    unauthorized: bool,
}

impl Shipped {
    fn nothing(n: usize, stop: Option<Outcome>) -> Self {
        Shipped {
            states: vec![EntryState::Unsent; n],
            stop,
            rejected: None,
            unauthorized: false,
        }
    }
}

impl DatadogSink {
    /// A builder with the defaults (site `datadoghq.com`, key from `DD_API_KEY`).
    pub fn builder() -> DatadogSinkBuilder {
        DatadogSinkBuilder::default()
    }

    /// Build from a CLI spec: `datadog` (site from `DD_SITE`, else
    /// `datadoghq.com`) or `datadog:SITE_OR_URL`, given here as the part
    /// after the colon. The key comes from `DD_API_KEY`; without it this is
    /// [`ConfigError::MissingApiKey`].
    pub fn from_spec(site: Option<&str>) -> Result<Self, ConfigError> {
        let env_site = std::env::var("DD_SITE").ok();
        Self::from_spec_with(site, env_site.as_deref(), std::env::var(API_KEY_ENV).ok())
    }

    fn from_spec_with(
        site: Option<&str>,
        env_site: Option<&str>,
        key: Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut b = Self::builder();
        if let Some(s) = site.map(str::trim).filter(|s| !s.is_empty()).or(env_site) {
            b = b.site(s);
        }
        Self::from_config(b.into_config(key)?)
    }

    pub(crate) fn from_config(cfg: DatadogConfig) -> Result<Self, ConfigError> {
        let client = Client::new(&cfg)?;
        let state = Aggregator::new(
            cfg.flush_interval.as_secs(),
            cfg.max_tag_sets,
            cfg.retained_intervals,
            cfg.static_tags.clone(),
            cfg.record_tags.clone(),
        );
        Ok(DatadogSink {
            inner: Arc::new(Inner {
                cfg,
                client,
                state: Mutex::new(state),
                counters: Counters::default(),
            }),
        })
    }

    /// The configuration in use (the API key prints as `***`).
    pub fn config(&self) -> &DatadogConfig {
        &self.inner.cfg
    }

    /// What was sent so far.
    pub fn stats(&self) -> DatadogStats {
        let c = &self.inner.counters;
        let (agg, cells) = {
            let s = self.state();
            (s.counters, s.cells() as u64)
        };
        DatadogStats {
            payloads_delivered: c.payloads_delivered.load(Relaxed),
            payloads_failed: c.payloads_failed.load(Relaxed),
            bytes_sent: c.bytes_sent.load(Relaxed),
            bytes_uncompressed: c.bytes_uncompressed.load(Relaxed),
            count_points: c.count_points.load(Relaxed),
            distribution_values: c.distribution_values.load(Relaxed),
            folded_records: agg.folded,
            lost_points: agg.lost_points,
            cells,
            invalid_values: agg.invalid_values,
        }
    }

    fn state(&self) -> MutexGuard<'_, Aggregator> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn limits(&self) -> Limits {
        Limits {
            max_sent: self.inner.cfg.max_compressed_bytes,
            max_raw: self.inner.cfg.max_uncompressed_bytes,
            compression: self.inner.client.compression(),
        }
    }

    fn host(&self) -> Option<&str> {
        self.inner.cfg.host.as_deref()
    }

    fn count_tags(tags: &[String], extra: Option<&'static str>) -> Vec<String> {
        let mut t = tags.to_vec();
        if let Some(e) = extra {
            let pos = t.binary_search_by(|x| x.as_str().cmp(e)).unwrap_or_else(|p| p);
            t.insert(pos, e.to_string());
        }
        t
    }

    fn encode_counts(&self, points: &[CountPoint]) -> Vec<String> {
        let interval = self.inner.cfg.flush_interval.as_secs();
        points
            .iter()
            .map(|p| {
                let tags = Self::count_tags(&p.key.2, p.key.1.extra_tag());
                count_entry(p.key.1.metric(), &tags, self.host(), p.key.0, p.value, interval)
            })
            .collect()
    }

    /// Split `values` into entries whose JSON stays well under the limits.
    fn encode_dist(
        &self,
        metric: &str,
        tags: &[String],
        ts: i64,
        values: &[f64],
        out: &mut Vec<String>,
        ranges: &mut Vec<(usize, usize)>,
    ) {
        let limits = self.limits();
        let cap = (limits.max_raw.min(limits.max_sent) / 2).max(512);
        let digits = self.inner.cfg.significant_digits;
        let formatted: Vec<String> = values
            .iter()
            .map(|v| format_significant(*v, digits).unwrap_or_else(|| "0".into()))
            .collect();
        let base = 160 + tags.iter().map(|t| t.len() + 3).sum::<usize>();
        let mut start = 0;
        let mut len = base;
        for (i, f) in formatted.iter().enumerate() {
            if len + f.len() + 1 > cap && i > start {
                out.push(distribution_entry(
                    metric,
                    tags,
                    self.host(),
                    ts,
                    &formatted[start..i],
                ));
                ranges.push((start, i));
                start = i;
                len = base;
            }
            len += f.len() + 1;
        }
        if start < formatted.len() {
            out.push(distribution_entry(
                metric,
                tags,
                self.host(),
                ts,
                &formatted[start..],
            ));
            ranges.push((start, formatted.len()));
        }
    }

    /// POST entries in as few bodies as the limits allow; split on 413,
    /// bisect on 400, stop at the first transient failure.
    async fn ship(&self, endpoint: Endpoint, entries: &[String], on_sent: Option<&OnSent<'_>>) -> Shipped {
        let mut shipped = Shipped::nothing(entries.len(), None);
        if entries.is_empty() {
            return shipped;
        }
        let limits = self.limits();
        let ids: Vec<usize> = (0..entries.len()).collect();
        let (packed, oversize) = pack(entries, &ids, limits);
        for i in oversize {
            shipped.states[i] = EntryState::Rejected;
            shipped.rejected = Some(format!(
                "a series is larger than the payload limit ({} bytes)",
                limits.max_sent
            ));
        }
        let c = &self.inner.counters;
        let mut work: std::collections::VecDeque<encode::Packed> = packed.into();
        while let Some(p) = work.pop_front() {
            let (sent, raw) = (p.body.len() as u64, p.raw_len as u64);
            let outcome = self.inner.client.post(endpoint, p.body).await;
            if outcome == Outcome::Delivered {
                c.payloads_delivered.fetch_add(1, Relaxed);
                c.bytes_sent.fetch_add(sent, Relaxed);
                c.bytes_uncompressed.fetch_add(raw, Relaxed);
                for &i in &p.ids {
                    shipped.states[i] = EntryState::Sent;
                }
                if let Some(f) = on_sent {
                    f(&p.ids);
                }
                continue;
            }
            c.payloads_failed.fetch_add(1, Relaxed);
            match outcome {
                Outcome::Delivered => {}
                Outcome::Retryable(ref m) | Outcome::Throttled(_, ref m) => {
                    tracing::debug!(endpoint = endpoint.path(), error = %m, "datadog: transient failure");
                    shipped.stop = Some(outcome);
                    return shipped;
                }
                Outcome::TooLarge(m) | Outcome::Rejected(m) => {
                    if p.ids.len() > 1 {
                        let mut left = p.ids;
                        let right = left.split_off(left.len() / 2);
                        for half in [right, left] {
                            let (parts, over) = pack(entries, &half, limits);
                            for i in over {
                                shipped.states[i] = EntryState::Rejected;
                            }
                            for part in parts.into_iter().rev() {
                                work.push_front(part);
                            }
                        }
                    } else {
                        tracing::warn!(endpoint = endpoint.path(), error = %m, "datadog refused a series");
                        for &i in &p.ids {
                            shipped.states[i] = EntryState::Rejected;
                        }
                        shipped.rejected = Some(m);
                    }
                }
                Outcome::Unauthorized(m) => {
                    tracing::error!(endpoint = endpoint.path(), error = %m, "datadog refused the API key");
                    for &i in p.ids.iter().chain(work.iter().flat_map(|w| w.ids.iter())) {
                        shipped.states[i] = EntryState::Rejected;
                    }
                    shipped.rejected = Some(m);
                    shipped.unauthorized = true;
                    return shipped;
                }
            }
        }
        shipped
    }

    /// Ship every count total not yet delivered; returns the outcome and
    /// the points' final states.
    async fn ship_counts(&self) -> (Vec<CountPoint>, Shipped) {
        let points = self.state().dirty();
        let entries = self.encode_counts(&points);
        let shipped = self.ship(Endpoint::Series, &entries, None).await;
        let mut s = self.state();
        let mut delivered = 0u64;
        for (p, st) in points.iter().zip(&shipped.states) {
            match st {
                EntryState::Sent => {
                    s.delivered(p);
                    delivered += 1;
                }
                EntryState::Rejected => s.rejected(p),
                EntryState::Unsent => {}
            }
        }
        drop(s);
        self.inner.counters.count_points.fetch_add(delivered, Relaxed);
        (points, shipped)
    }

    fn stop_error(stop: Option<&Outcome>, fallback: &str) -> SinkError {
        match stop {
            Some(Outcome::Throttled(d, m)) => SinkError::throttled(*d, m.clone()),
            Some(Outcome::Retryable(m)) => SinkError::retryable(m.clone()),
            _ => SinkError::retryable(fallback.to_string()),
        }
    }

    fn settle(
        rejected: Vec<usize>,
        retry: Vec<usize>,
        reject_msg: Option<String>,
        stop: Option<&Outcome>,
        unauthorized: bool,
    ) -> Result<(), SinkError> {
        if rejected.is_empty() && retry.is_empty() {
            return Ok(());
        }
        if unauthorized {
            // The key was refused: no record can get through as configured.
            let mut failed = rejected;
            failed.extend(retry);
            failed.sort_unstable();
            failed.dedup();
            let msg = reject_msg.unwrap_or_else(|| "Datadog refused the API key".into());
            return Err(SinkError::misconfigured(msg).with_records(failed));
        }
        if rejected.is_empty() {
            return Err(Self::stop_error(stop, "not all points were delivered").with_records(retry));
        }
        let msg = reject_msg.unwrap_or_else(|| "Datadog refused these records".into());
        Err(SinkError::partial(SinkError::permanent(msg), rejected, retry))
    }

    fn too_old(&self, batch: &[AgentMetrics]) -> Vec<bool> {
        let now = chrono::Utc::now();
        let max_age =
            chrono::Duration::from_std(self.inner.cfg.max_age).unwrap_or(chrono::Duration::hours(1));
        let future = chrono::Duration::minutes(10);
        batch
            .iter()
            .map(|m| m.timestamp < now - max_age || m.timestamp > now + future)
            .collect()
    }

    async fn record_aggregate(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        let skip = self.too_old(batch);
        let (touched, mut dists) = self.state().add_batch(batch, &skip);

        // Distribution entries and, per entry, the records it carries.
        let mut dist_entries = Vec::new();
        let mut dist_records: Vec<(u8, Vec<usize>)> = Vec::new();
        for s in &mut dists {
            // Order does not matter to a distribution; sorted values
            // compress several times better.
            let mut order: Vec<usize> = (0..s.values.len()).collect();
            order.sort_by(|&a, &b| s.values[a].total_cmp(&s.values[b]));
            s.values = order.iter().map(|&i| s.values[i]).collect();
            s.records = order.iter().map(|&i| s.records[i]).collect();
            let mut ranges = Vec::new();
            self.encode_dist(
                s.dist.metric(),
                &s.tags,
                s.ts,
                &s.values,
                &mut dist_entries,
                &mut ranges,
            );
            let bit = if s.dist == Dist::Latency {
                LAT_DONE
            } else {
                TTFT_DONE
            };
            for (a, b) in ranges {
                dist_records.push((bit, s.records[a..b].to_vec()));
            }
        }

        let (points, counts) = self.ship_counts().await;
        // Mark values as shipped as soon as their body is accepted, so a
        // call cancelled half-way (the collector's attempt timeout) never
        // sends them again.
        let mark_sent = |ids: &[usize]| {
            let mut s = self.state();
            for &e in ids {
                let (bit, recs) = &dist_records[e];
                for &r in recs {
                    let id = batch[r].request_id;
                    let bits = s.resume_bits(&id);
                    s.mark(id, bits | *bit);
                }
            }
        };
        let dshipped = match &counts.stop {
            Some(stop) => Shipped::nothing(dist_entries.len(), Some(stop.clone())),
            None => {
                self.ship(Endpoint::Distributions, &dist_entries, Some(&mark_sent))
                    .await
            }
        };
        let mut sent_values = 0u64;
        // Per record: distribution bits sent, and whether anything was refused.
        let mut sent_bits = vec![0u8; batch.len()];
        let mut refused = vec![false; batch.len()];
        let mut unsent = vec![false; batch.len()];
        for ((bit, recs), st) in dist_records.iter().zip(&dshipped.states) {
            for &r in recs {
                match st {
                    EntryState::Sent => {
                        sent_bits[r] |= bit;
                        sent_values += 1;
                    }
                    EntryState::Rejected => refused[r] = true,
                    EntryState::Unsent => unsent[r] = true,
                }
            }
        }
        self.inner
            .counters
            .distribution_values
            .fetch_add(sent_values, Relaxed);
        let refused_cells: std::collections::HashSet<&aggregate::CellKey> = points
            .iter()
            .zip(&counts.states)
            .filter(|(_, st)| **st == EntryState::Rejected)
            .map(|(p, _)| &p.key)
            .collect();

        let mut rejected = Vec::new();
        let mut retry = Vec::new();
        {
            let mut s = self.state();
            for (i, (m, t)) in batch.iter().zip(&touched).enumerate() {
                if skip[i] {
                    rejected.push(i);
                    continue;
                }
                let bad = refused[i] || t.cells.iter().any(|k| refused_cells.contains(k));
                let pending = unsent[i] || t.cells.iter().any(|k| s.is_dirty(k));
                if bad {
                    rejected.push(i);
                    s.mark(m.request_id, 0);
                } else if pending {
                    retry.push(i);
                    let bits = s.resume_bits(&m.request_id);
                    s.mark(m.request_id, bits | t.bits_before | COUNTS_ADDED | sent_bits[i]);
                } else {
                    s.mark(m.request_id, 0);
                }
            }
        }
        let reject_msg = counts.rejected.or(dshipped.rejected).or_else(|| {
            skip.iter().any(|s| *s).then(|| {
                "record timestamp outside Datadog's accepted window (older than max_age or >10 min ahead)"
                    .into()
            })
        });
        let stop = counts.stop.as_ref().or(dshipped.stop.as_ref());
        let unauthorized = counts.unauthorized || dshipped.unauthorized;
        Self::settle(rejected, retry, reject_msg, stop, unauthorized)
    }

    async fn record_raw(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        let skip = self.too_old(batch);
        let mut count_entries = Vec::new();
        let mut count_rec = Vec::new();
        let mut dist_entries = Vec::new();
        let mut dist_rec: Vec<(usize, u8)> = Vec::new();
        let bits: Vec<u8> = {
            let s = self.state();
            batch.iter().map(|m| s.resume_bits(&m.request_id)).collect()
        };
        let digits = self.inner.cfg.significant_digits;
        for (i, m) in batch.iter().enumerate() {
            if skip[i] {
                continue;
            }
            let tags = self.state().tags_of(m);
            let ts = m.timestamp.timestamp();
            let weight = if m.sample_weight.is_finite() && m.sample_weight > 0.0 {
                m.sample_weight
            } else {
                1.0
            };
            let mut invalid = if bits[i] == 0 { invalid_values(m) } else { 0 };
            for c in aggregate::Count::ALL {
                if let Some(v) = c.amount(m) {
                    let v = v * weight;
                    if !fits_point(v) {
                        invalid += 1;
                        continue;
                    }
                    let t = Self::count_tags(&tags, c.extra_tag());
                    count_entries.push(count_entry(c.metric(), &t, self.host(), ts, v, 1));
                    count_rec.push(i);
                }
            }
            if invalid > 0 {
                self.state().counters.invalid_values += invalid;
            }
            for (d, v, bit) in [
                (Dist::Latency, Some(m.latency_ms), LAT_DONE),
                (Dist::Ttft, m.ttft_ms, TTFT_DONE),
            ] {
                let Some(v) = v.filter(|v| valid_duration(*v)) else {
                    continue;
                };
                if bits[i] & bit != 0 {
                    continue;
                }
                let f = format_significant(v, digits).unwrap_or_else(|| "0".into());
                let copies = weight.round().clamp(1.0, 1000.0) as usize;
                dist_entries.push(distribution_entry(
                    d.metric(),
                    &tags,
                    self.host(),
                    ts,
                    &vec![f; copies],
                ));
                dist_rec.push((i, bit));
            }
        }
        let counts = self.ship(Endpoint::Series, &count_entries, None).await;
        let mark_sent = |ids: &[usize]| {
            let mut s = self.state();
            for &e in ids {
                let (r, bit) = dist_rec[e];
                let id = batch[r].request_id;
                let bits = s.resume_bits(&id);
                s.mark(id, bits | bit);
            }
        };
        let dists = match &counts.stop {
            Some(stop) => Shipped::nothing(dist_entries.len(), Some(stop.clone())),
            None => {
                self.ship(Endpoint::Distributions, &dist_entries, Some(&mark_sent))
                    .await
            }
        };
        let c = &self.inner.counters;
        let mut refused = vec![false; batch.len()];
        let mut unsent = vec![false; batch.len()];
        let mut sent_bits = vec![0u8; batch.len()];
        for (&i, st) in count_rec.iter().zip(&counts.states) {
            match st {
                EntryState::Sent => {
                    c.count_points.fetch_add(1, Relaxed);
                }
                EntryState::Rejected => refused[i] = true,
                EntryState::Unsent => unsent[i] = true,
            }
        }
        for (&(i, bit), st) in dist_rec.iter().zip(&dists.states) {
            match st {
                EntryState::Sent => {
                    sent_bits[i] |= bit;
                    c.distribution_values.fetch_add(1, Relaxed);
                }
                EntryState::Rejected => refused[i] = true,
                EntryState::Unsent => unsent[i] = true,
            }
        }
        let mut rejected = Vec::new();
        let mut retry = Vec::new();
        {
            let mut s = self.state();
            for (i, m) in batch.iter().enumerate() {
                if skip[i] || refused[i] {
                    rejected.push(i);
                    s.mark(m.request_id, 0);
                } else if unsent[i] {
                    retry.push(i);
                    // Count points are idempotent (last write wins); only
                    // distribution values must not be sent twice.
                    let now = s.resume_bits(&m.request_id);
                    s.mark(m.request_id, now | bits[i] | sent_bits[i]);
                } else {
                    s.mark(m.request_id, 0);
                }
            }
        }
        let stop = counts.stop.as_ref().or(dists.stop.as_ref());
        let msg = counts.rejected.or(dists.rejected).or_else(|| {
            skip.iter()
                .any(|s| *s)
                .then(|| "record timestamp outside Datadog's accepted window".into())
        });
        let unauthorized = counts.unauthorized || dists.unauthorized;
        Self::settle(rejected, retry, msg, stop, unauthorized)
    }
}

#[async_trait]
impl MetricsSink for DatadogSink {
    fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(metrics)).await
    }

    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        match self.inner.cfg.mode {
            Mode::Aggregate => self.record_aggregate(batch).await,
            Mode::Raw => self.record_raw(batch).await,
        }
    }

    /// Ship every count total still waiting (after an earlier failure).
    /// Errors when some could not be delivered.
    async fn flush(&self) -> Result<(), SinkError> {
        if self.inner.cfg.mode == Mode::Raw {
            return Ok(());
        }
        let (points, shipped) = self.ship_counts().await;
        let unsent = shipped
            .states
            .iter()
            .filter(|s| **s == EntryState::Unsent)
            .count();
        let refused = shipped
            .states
            .iter()
            .filter(|s| **s == EntryState::Rejected)
            .count();
        if unsent > 0 {
            return Err(Self::stop_error(
                shipped.stop.as_ref(),
                &format!("{unsent} of {} count points not delivered", points.len()),
            ));
        }
        if shipped.unauthorized {
            return Err(SinkError::misconfigured(format!(
                "Datadog refused the API key: {}",
                shipped.rejected.unwrap_or_default()
            )));
        }
        if refused > 0 {
            return Err(SinkError::permanent(format!(
                "Datadog refused {refused} count points: {}",
                shipped.rejected.unwrap_or_default()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn from_spec_requires_a_key_and_maps_the_site() {
        assert!(matches!(
            DatadogSink::from_spec_with(Some("eu"), None, None),
            Err(ConfigError::MissingApiKey)
        ));
        let s = DatadogSink::from_spec_with(Some("eu"), None, Some("k".into())).unwrap();
        assert_eq!(s.config().base_url().as_str(), "https://api.datadoghq.eu/");
        let s = DatadogSink::from_spec_with(None, Some("us5"), Some("k".into())).unwrap();
        assert_eq!(s.config().base_url().as_str(), "https://api.us5.datadoghq.com/");
        let s = DatadogSink::from_spec_with(None, None, Some("k".into())).unwrap();
        assert_eq!(s.config().base_url().as_str(), "https://api.datadoghq.com/");
        assert!(matches!(
            DatadogSink::from_spec_with(Some("mars"), None, Some("k".into())),
            Err(ConfigError::UnknownSite(_))
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        let key = "fake-dd-key-RECOGNISABLE-42";
        let s = DatadogSink::builder().api_key(key).build().unwrap();
        assert!(!format!("{s:?}").contains(key));
        assert!(!format!("{:?}", s.config()).contains(key));
    }
}
