use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

use crate::query::StatsQuery;
use crate::record::AgentMetrics;
use crate::sink::{MetricsSink, SinkError};

/// Keeps records in memory, bounded by count and age, and answers queries
/// and summaries. Cloning shares the store, so keep a clone to query while
/// the collector owns another.
#[derive(Clone)]
pub struct MemorySink {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    max_records: usize,
    ttl: Option<Duration>,
    records: Mutex<VecDeque<AgentMetrics>>,
}

/// Builds a [`MemorySink`].
#[must_use]
#[derive(Debug, Clone)]
pub struct MemorySinkBuilder {
    name: String,
    max_records: usize,
    ttl: Option<Duration>,
}

impl MemorySinkBuilder {
    /// Sink name (default `"memory"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Keep at most this many records; older ones are evicted first (default 100 000).
    pub fn max_records(mut self, n: usize) -> Self {
        self.max_records = n.max(1);
        self
    }
    /// Forget records whose timestamp is older than this (default: keep).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Build.
    pub fn build(self) -> MemorySink {
        MemorySink {
            inner: Arc::new(Inner {
                name: self.name,
                max_records: self.max_records,
                ttl: self.ttl,
                records: Mutex::new(VecDeque::new()),
            }),
        }
    }
}

impl Default for MemorySink {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySink {
    /// A sink named `memory` keeping up to 100 000 records.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configure one.
    pub fn builder() -> MemorySinkBuilder {
        MemorySinkBuilder {
            name: "memory".into(),
            max_records: 100_000,
            ttl: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<AgentMetrics>> {
        // A panic while holding the lock cannot leave the deque invalid.
        self.inner.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expire(&self, records: &mut VecDeque<AgentMetrics>) {
        if let Some(ttl) = self.inner.ttl {
            let Ok(ttl) = chrono::Duration::from_std(ttl) else {
                return;
            };
            let cutoff = Utc::now() - ttl;
            records.retain(|m| m.timestamp >= cutoff);
        }
    }

    /// Records stored now.
    pub fn len(&self) -> usize {
        let mut r = self.lock();
        self.expire(&mut r);
        r.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies of every stored record, oldest first.
    pub fn records(&self) -> Vec<AgentMetrics> {
        self.query(&StatsQuery::new())
    }

    /// Copies of the records `q` selects (its window and filters; the
    /// breakdown, step and limits do not apply), oldest first. Summaries
    /// and time series: [`SummaryStore`](crate::query::SummaryStore).
    pub fn query(&self, q: &StatsQuery) -> Vec<AgentMetrics> {
        let mut r = self.lock();
        self.expire(&mut r);
        r.iter().filter(|m| q.matches(m)).cloned().collect()
    }

    /// The record with this id.
    pub fn get(&self, request_id: Uuid) -> Option<AgentMetrics> {
        self.lock().iter().find(|m| m.request_id == request_id).cloned()
    }

    /// Forget everything.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn push_all(&self, batch: &[AgentMetrics]) {
        let mut r = self.lock();
        for m in batch {
            if r.len() >= self.inner.max_records {
                r.pop_front();
            }
            r.push_back(m.clone());
        }
    }
}

#[async_trait]
impl crate::query::SummaryStore for MemorySink {
    fn describe(&self) -> String {
        format!("memory:{}", self.inner.name)
    }

    async fn summary(
        &self,
        q: &crate::query::StatsQuery,
    ) -> Result<crate::query::SummaryReport, crate::query::QueryError> {
        let mut r = self.lock();
        self.expire(&mut r);
        crate::query::summarize(r.iter(), q)
    }

    async fn timeseries(
        &self,
        q: &crate::query::StatsQuery,
    ) -> Result<crate::query::Timeseries, crate::query::QueryError> {
        let mut r = self.lock();
        self.expire(&mut r);
        crate::query::timeseries(r.iter(), q)
    }
}

#[async_trait]
impl MetricsSink for MemorySink {
    fn name(&self) -> &str {
        &self.inner.name
    }
    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError> {
        self.push_all(std::slice::from_ref(metrics));
        Ok(())
    }
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        self.push_all(batch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ErrorClass;

    #[tokio::test]
    async fn bounded_by_count_and_queryable() {
        let sink = MemorySink::builder().max_records(3).build();
        let recs: Vec<_> = (0..5)
            .map(|i| AgentMetrics::new(if i % 2 == 0 { "openai" } else { "anthropic" }, format!("m{i}")))
            .collect();
        sink.record_batch(&recs).await.unwrap();
        assert_eq!(sink.len(), 3);
        let q = |f: &str| StatsQuery::new().filter(f.parse().unwrap());
        assert_eq!(sink.query(&q("provider=openai")).len(), 2);
        assert_eq!(sink.query(&q("model=m3")).len(), 1);
        assert!(sink.get(recs[0].request_id).is_none(), "oldest evicted");
        assert!(sink.get(recs[4].request_id).is_some());
    }

    #[tokio::test]
    async fn ttl_forgets_old_records() {
        let sink = MemorySink::builder().ttl(Duration::from_secs(60)).build();
        let mut old = AgentMetrics::new("sim", "a");
        old.timestamp = Utc::now() - chrono::Duration::minutes(5);
        let new = AgentMetrics::new("sim", "b").with_error(ErrorClass::Timeout);
        sink.record_batch(&[old, new]).await.unwrap();
        assert_eq!(sink.len(), 1);
        let report = crate::query::SummaryStore::summary(&sink, &StatsQuery::new())
            .await
            .unwrap();
        assert_eq!(report.total.errors, 1);
    }
}
