//! Shipping: encoding the aggregator's points into entries, packing them
//! into bodies within Datadog's limits, sending them to an endpoint, and
//! settling which records got through (the aggregate and raw paths).

use std::sync::atomic::Ordering::Relaxed;

use steer_metrics::{AgentMetrics, SinkError};

use crate::aggregate::{
    fits_point, invalid_values, valid_duration, CountPoint, Dist, COUNTS_ADDED, LAT_DONE, TTFT_DONE,
};
use crate::client::{Endpoint, Outcome};
use crate::encode::{count_entry, distribution_entry, format_significant, pack};
use crate::sink::DatadogSink;
use crate::{aggregate, encode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryState {
    Unsent,
    Sent,
    Rejected,
}

/// Called with the entry indices of each accepted body.
type OnSent<'a> = dyn Fn(&[usize]) + Send + Sync + 'a;

/// Result of shipping a list of entries to one endpoint.
pub(crate) struct Shipped {
    pub(crate) states: Vec<EntryState>,
    /// The transient failure that stopped sending, if any.
    pub(crate) stop: Option<Outcome>,
    /// The last permanent failure, if any.
    pub(crate) rejected: Option<String>,
    /// Datadog refused the API key (401/403): the sink, not the data, is wrong.
    pub(crate) unauthorized: bool,
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
    /// Ship every count total still waiting (the sink's `flush`); errors
    /// when some could not be delivered.
    pub(crate) async fn flush_counts(&self) -> Result<(), SinkError> {
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

    pub(crate) async fn ship_counts(&self) -> (Vec<CountPoint>, Shipped) {
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

    pub(crate) fn stop_error(stop: Option<&Outcome>, fallback: &str) -> SinkError {
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

    pub(crate) async fn record_aggregate(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
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

    pub(crate) async fn record_raw(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
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
