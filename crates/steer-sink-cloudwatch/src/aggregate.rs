//! From a batch of records to *groups*: the datums of one series (dimension
//! set) and interval, together with the records that fed them.
//!
//! A group is the unit of delivery: all datums a record contributes to are
//! in its group, and a group is never split across PutMetricData calls.
//! So when a call succeeds, exactly its groups' records are delivered; when
//! it fails, exactly those records can be retried without counting any of
//! them twice. A group too large for one call is rebuilt from halves of
//! its records.

use std::collections::HashMap;
use std::sync::Arc;

use steer_metrics::semconv::{finish_reason, folded_finish_reason};
use steer_metrics::AgentMetrics;

use crate::config::{CloudWatchConfig, Mode};
use crate::encode::{self, Datum, Dimension, DistAcc, Metric, Payload, Stats};

/// Datums of one series and interval, and the records behind them.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// Indices into the batch.
    pub records: Vec<usize>,
    pub datums: Vec<Datum>,
    /// Per datum, the indices (into the batch) of the records that fed it.
    pub datum_records: Vec<Arc<[usize]>>,
    /// Estimated bytes of the datums.
    pub size: usize,
}

/// The dimension of the record's finish reason.
pub(crate) const FINISH_REASON: &str = "FinishReason";

/// Series key: interval start (ms) and dimensions.
type Key = (i64, Arc<[Dimension]>);

pub(crate) struct Aggregator<'a> {
    cfg: &'a CloudWatchConfig,
    /// Datums per call and bytes per call available for datums.
    max_datums: usize,
    max_bytes: usize,
}

/// The outcome of grouping a batch.
#[derive(Debug, Default)]
pub(crate) struct Grouped {
    pub groups: Vec<Group>,
    /// Records folded into `Model=other` by the series cap.
    pub folded: u64,
}

impl<'a> Aggregator<'a> {
    pub(crate) fn new(cfg: &'a CloudWatchConfig) -> Self {
        Aggregator {
            cfg,
            max_datums: cfg.max_datums_per_call,
            max_bytes: cfg.max_request_bytes - encode::envelope_size(&cfg.namespace),
        }
    }

    /// The dimensions of a record: Model, Provider, FinishReason (unless
    /// turned off; `none` when the record has none, so every datum of a
    /// metric has the same dimension names; on a folded series a finish
    /// reason other than the known ones is `other`), configured fixed ones,
    /// promoted tags.
    pub(crate) fn dimensions_of(&self, m: &AgentMetrics, folded: bool) -> Arc<[Dimension]> {
        let (model, provider) = if folded {
            ("other", "other")
        } else {
            (m.model.as_str(), m.provider.as_str())
        };
        let finish = self.cfg.finish_reason_dimension.then(|| {
            let f = match finish_reason(m) {
                Some(f) if folded => folded_finish_reason(f),
                Some(f) => f,
                None => "none",
            };
            (FINISH_REASON.to_string(), f.to_string())
        });
        let pairs = [
            ("Model".to_string(), model.to_string()),
            ("Provider".to_string(), provider.to_string()),
        ]
        .into_iter()
        .chain(finish)
        .chain(self.cfg.static_dimensions.iter().cloned())
        .chain(self.cfg.tag_dimensions.iter().map(|t| {
            let v = if folded {
                "other"
            } else {
                m.tags.get(t).map_or("none", String::as_str)
            };
            (t.clone(), v.to_string())
        }));
        encode::dimensions(pairs).into()
    }

    fn interval_start_ms(&self, m: &AgentMetrics) -> i64 {
        let ms = m.timestamp.timestamp_millis();
        match self.cfg.mode {
            Mode::Raw => ms,
            Mode::Aggregate => {
                let len = i64::try_from(self.cfg.interval.as_millis())
                    .unwrap_or(60_000)
                    .max(1);
                ms.div_euclid(len) * len
            }
        }
    }

    /// Group the records at `indices` of `batch` (all valid).
    pub(crate) fn group(&self, batch: &[AgentMetrics], indices: &[usize]) -> Grouped {
        let mut out = Grouped::default();
        match self.cfg.mode {
            Mode::Raw => {
                for &i in indices {
                    let key = (
                        self.interval_start_ms(&batch[i]),
                        self.dimensions_of(&batch[i], false),
                    );
                    out.groups.extend(self.build(batch, &key, vec![i]));
                }
            }
            Mode::Aggregate => {
                let mut series: HashMap<Arc<[Dimension]>, ()> = HashMap::new();
                let mut by_key: HashMap<Key, Vec<usize>> = HashMap::new();
                let mut order: Vec<Key> = Vec::new();
                for &i in indices {
                    let m = &batch[i];
                    let mut dims = self.dimensions_of(m, false);
                    if !series.contains_key(&dims) {
                        if series.len() >= self.cfg.max_series {
                            dims = self.dimensions_of(m, true);
                            out.folded += 1;
                        }
                        series.entry(dims.clone()).or_insert(());
                    }
                    let key = (self.interval_start_ms(m), dims);
                    by_key
                        .entry(key.clone())
                        .or_insert_with(|| {
                            order.push(key);
                            Vec::new()
                        })
                        .push(i);
                }
                for key in order {
                    if let Some(records) = by_key.remove(&key) {
                        out.groups.extend(self.build(batch, &key, records));
                    }
                }
            }
        }
        out
    }

    /// The datums of one group; split by records while it does not fit one call.
    fn build(&self, batch: &[AgentMetrics], key: &Key, records: Vec<usize>) -> Vec<Group> {
        let g = self.build_one(batch, key, records);
        if (g.datums.len() <= self.max_datums && g.size <= self.max_bytes) || g.records.len() <= 1 {
            return vec![g];
        }
        let mut left = g.records;
        let right = left.split_off(left.len() / 2);
        let mut out = self.build(batch, key, left);
        out.extend(self.build(batch, key, right));
        out
    }

    fn build_one(&self, batch: &[AgentMetrics], key: &Key, records: Vec<usize>) -> Group {
        let (ts, dims) = key;
        let res = self.cfg.resolution.seconds();
        let mut datums = Vec::new();
        let mut datum_records = Vec::new();
        let datum = |metric: Metric, payload: Payload| Datum {
            metric,
            dimensions: dims.clone(),
            timestamp_ms: *ts,
            storage_resolution: res,
            payload,
        };
        for metric in Metric::ALL {
            let fed: Vec<usize> = records
                .iter()
                .copied()
                .filter(|&i| metric.value(&batch[i]).is_some())
                .collect();
            if fed.is_empty() {
                continue;
            }
            let fed: Arc<[usize]> = fed.into();
            let raw_single = self.cfg.mode == Mode::Raw;
            if metric.is_distribution() && !raw_single {
                let mut acc = DistAcc::new(self.cfg.relative_error);
                for &i in fed.iter() {
                    if let Some(v) = metric.value(&batch[i]) {
                        acc.add(v, batch[i].sample_weight);
                    }
                }
                for p in acc.payloads(self.cfg.max_values_per_datum) {
                    datums.push(datum(metric, p));
                    datum_records.push(fed.clone());
                }
            } else {
                let mut stats: Option<Stats> = None;
                for &i in fed.iter() {
                    if let Some(v) = metric.value(&batch[i]) {
                        let w = batch[i].sample_weight;
                        match &mut stats {
                            Some(s) => s.add(v, w),
                            None => stats = Some(Stats::one(v, w)),
                        }
                    }
                }
                if let Some(s) = stats {
                    let payload = if raw_single && s.sample_count == 1.0 {
                        Payload::Value(s.sum)
                    } else {
                        Payload::Stats(s)
                    };
                    datums.push(datum(metric, payload));
                    datum_records.push(fed.clone());
                }
            }
        }
        let size = datums.iter().map(Datum::estimated_size).sum();
        Group {
            records,
            datums,
            datum_records,
            size,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::CloudWatchSinkBuilder;
    use std::time::Duration;

    fn cfg(mode: Mode) -> CloudWatchConfig {
        CloudWatchSinkBuilder::default()
            .mode(mode)
            .dimension("Service", "chat")
            .tag_dimension("team")
            .cfg
    }

    fn at(m: AgentMetrics, secs: i64) -> AgentMetrics {
        let mut m = m;
        m.timestamp = chrono::DateTime::from_timestamp(secs, 0).unwrap();
        m
    }

    #[test]
    fn the_finish_reason_is_a_dimension_of_the_series() {
        let mut c = cfg(Mode::Aggregate);
        c.max_series = 2;
        let a = Aggregator::new(&c);
        let r = |model: &str, f: Option<&str>| {
            let mut m = at(AgentMetrics::new("anthropic", model).with_latency_ms(10.0), 120);
            m.finish_reason = f.map(String::from);
            m
        };
        let batch = vec![
            r("claude-opus-4-7", Some("max_tokens")),
            r("claude-opus-4-7", Some("end_turn")),
            r("claude-opus-4-7", Some("max_tokens")),
            r("m2", Some("refusal")),
            r("m3", Some("made-up")),
        ];
        let g = a.group(&batch, &[0, 1, 2, 3, 4]);
        assert_eq!(g.folded, 2);
        let finish = |grp: &Group| {
            grp.datums[0]
                .dimensions
                .iter()
                .find(|(k, _)| k == FINISH_REASON)
                .map(|(_, v)| v.clone())
        };
        let got: Vec<(Vec<usize>, Option<String>)> =
            g.groups.iter().map(|x| (x.records.clone(), finish(x))).collect();
        assert_eq!(
            got,
            vec![
                (vec![0, 2], Some("max_tokens".into())),
                (vec![1], Some("end_turn".into())),
                (vec![3], Some("refusal".into())),
                (vec![4], Some("other".into())),
            ],
            "one series per finish reason; folded ones keep a known reason only"
        );
        // Turned off: no such dimension.
        let mut off = cfg(Mode::Aggregate);
        off.finish_reason_dimension = false;
        let g = Aggregator::new(&off).group(&batch, &[0, 1]);
        assert_eq!(g.groups.len(), 1);
        assert_eq!(finish(&g.groups[0]), None);
    }

    #[test]
    fn one_group_per_series_and_interval() {
        let c = cfg(Mode::Aggregate);
        let a = Aggregator::new(&c);
        let batch = vec![
            at(
                AgentMetrics::new("openai", "gpt-4o")
                    .with_latency_ms(10.0)
                    .with_tokens(5, 6),
                120,
            ),
            at(
                AgentMetrics::new("openai", "gpt-4o")
                    .with_latency_ms(30.0)
                    .with_tokens(1, 2),
                179,
            ),
            at(AgentMetrics::new("openai", "gpt-4o").with_latency_ms(20.0), 180),
            at(
                AgentMetrics::new("xai", "grok-4")
                    .with_latency_ms(20.0)
                    .with_tag("team", "a"),
                150,
            ),
        ];
        let g = a.group(&batch, &[0, 1, 2, 3]).groups;
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].records, vec![0, 1]);
        assert_eq!(g[0].datums[0].timestamp_ms, 120_000);
        let dims: Vec<_> = g[2].datums[0].dimensions.iter().cloned().collect();
        assert_eq!(
            dims,
            vec![
                ("Model".into(), "grok-4".into()),
                ("Provider".into(), "xai".into()),
                ("FinishReason".into(), "none".into()),
                ("Service".into(), "chat".into()),
                ("team".into(), "a".into())
            ]
        );
        let tokens = g[0]
            .datums
            .iter()
            .find(|d| d.metric == Metric::TotalTokens)
            .unwrap();
        assert_eq!(
            tokens.payload,
            Payload::Stats(Stats {
                sample_count: 2.0,
                sum: 14.0,
                min: 3.0,
                max: 11.0
            })
        );
        // No usage reported: no token datums, but requests and latency.
        assert!(g[1].datums.iter().all(|d| d.metric != Metric::InputTokens));
        assert!(g[1].datums.iter().any(|d| d.metric == Metric::Latency));
        assert!(g[1].datums.iter().all(|d| d.metric != Metric::Ttft));
    }

    #[test]
    fn weights_multiply_counts() {
        let c = cfg(Mode::Aggregate);
        let a = Aggregator::new(&c);
        let mut m = at(
            AgentMetrics::new("p", "m")
                .with_latency_ms(10.0)
                .with_tokens(3, 0),
            60,
        );
        m.sample_weight = 4.0;
        let g = a.group(&[m], &[0]).groups;
        let req = g[0].datums.iter().find(|d| d.metric == Metric::Requests).unwrap();
        assert_eq!(
            req.payload,
            Payload::Stats(Stats {
                sample_count: 4.0,
                sum: 4.0,
                min: 1.0,
                max: 1.0
            })
        );
        let lat = g[0].datums.iter().find(|d| d.metric == Metric::Latency).unwrap();
        assert_eq!(lat.payload, Payload::Values(vec![10.0], vec![4.0]));
    }

    #[test]
    fn series_cap_folds_into_other() {
        let mut c = cfg(Mode::Aggregate);
        c.max_series = 2;
        let a = Aggregator::new(&c);
        let batch: Vec<_> = (0..5)
            .map(|i| at(AgentMetrics::new("p", format!("m{i}")).with_latency_ms(1.0), 60))
            .collect();
        let out = a.group(&batch, &[0, 1, 2, 3, 4]);
        assert_eq!(out.folded, 3);
        assert_eq!(out.groups.len(), 3);
        assert_eq!(out.groups[2].records, vec![2, 3, 4]);
        assert_eq!(out.groups[2].datums[0].dimensions[0].1, "other");
    }

    #[test]
    fn oversized_groups_split_by_records() {
        let mut c = cfg(Mode::Aggregate);
        c.max_request_bytes = 16_384;
        c.relative_error = 0.0001;
        let a = Aggregator::new(&c);
        let batch: Vec<_> = (0..3000)
            .map(|i| {
                at(
                    AgentMetrics::new("p", "m").with_latency_ms(1.0 + f64::from(i)),
                    60,
                )
            })
            .collect();
        let idx: Vec<usize> = (0..batch.len()).collect();
        let g = a.group(&batch, &idx).groups;
        assert!(g.len() > 1);
        assert!(g.iter().all(|g| g.size <= a.max_bytes));
        let mut all: Vec<usize> = g.iter().flat_map(|g| g.records.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, idx);
    }

    #[test]
    fn raw_mode_one_group_per_record_with_single_values() {
        let c = cfg(Mode::Raw);
        let a = Aggregator::new(&c);
        let mut m = AgentMetrics::new("p", "m")
            .with_latency_ms(12.5)
            .with_tokens(1, 1);
        m.timestamp = chrono::DateTime::from_timestamp_millis(61_234).unwrap();
        let g = a.group(&[m.clone(), m], &[0, 1]).groups;
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].datums[0].timestamp_ms, 61_234);
        let lat = g[0].datums.iter().find(|d| d.metric == Metric::Latency).unwrap();
        assert_eq!(lat.payload, Payload::Value(12.5));
        let _ = Duration::from_secs(1);
    }
}
