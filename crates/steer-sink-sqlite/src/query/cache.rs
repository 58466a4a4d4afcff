//! An in-memory, column-wise copy of a store's summary inputs, kept up to
//! date incrementally, for a long-lived reader (`steer dashboard`).
//!
//! The first query reads every row once; later queries read only the rows
//! inserted since (`id > last id`, a rowid range) and aggregate from
//! memory, so a refresh over a million calls costs tens of milliseconds
//! instead of a scan. Rows deleted or a store replaced (the row count or
//! the last id went down) rebuild the copy. Queries that group or filter
//! by a tag (JSON, not copied) use the scan. About 100 bytes per row;
//! stores above [`MAX_ROWS`] rows are not copied.

use std::collections::HashMap;

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use steer_metrics::query::{Aggregator, GroupKey, QueryError, StatsQuery, NONE_GROUP, NO_ERROR};
use steer_metrics::summary::Sample;

use super::{float, int, store_err};
use crate::error::SqliteError;

/// Stores with more rows than this are scanned, not copied.
pub(crate) const MAX_ROWS: i64 = 5_000_000;

/// Text columns copied as dictionary ids: model, provider, error class,
/// finish reason.
const KEYS: usize = 4;

#[derive(Debug, Default)]
struct Dict {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl Dict {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// The copy.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    last_id: i64,
    dicts: [Dict; KEYS],
    ts: Vec<i64>,
    keys: Vec<[u32; KEYS]>,
    latency: Vec<f64>,
    ttft: Vec<f64>,
    cost: Vec<f64>,
    error: Vec<bool>,
    /// input, output, cached, reasoning, cache write, retries.
    counts: Vec<[u64; 6]>,
}

fn key_index(k: &GroupKey) -> Option<usize> {
    match k {
        GroupKey::Model => Some(0),
        GroupKey::Provider => Some(1),
        GroupKey::Error => Some(2),
        GroupKey::FinishReason => Some(3),
        _ => None,
    }
}

/// Whether the copy can answer `q` (no tag key, nothing unknown).
pub(crate) fn can_answer(q: &StatsQuery) -> bool {
    q.by.as_ref().is_none_or(|k| key_index(k).is_some())
        && q.filters.iter().all(|f| key_index(&f.key).is_some())
}

impl Columns {
    fn len(&self) -> usize {
        self.ts.len()
    }

    /// Bring the copy up to date with the table; `Ok(false)` when the store
    /// is too large to copy.
    pub(crate) fn refresh(&mut self, conn: &Connection, table: &str) -> Result<bool, QueryError> {
        let (count, max_id): (i64, Option<i64>) = conn
            .query_row(&format!("SELECT count(*), max(id) FROM \"{table}\""), [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| store_err(SqliteError::sqlite("counting rows", e)))?;
        if count > MAX_ROWS {
            *self = Columns::default();
            return Ok(false);
        }
        let max_id = max_id.unwrap_or(0);
        if max_id < self.last_id || (count as usize) < self.len() {
            *self = Columns::default(); // rows deleted or the file replaced
        }
        if max_id == self.last_id && count as usize == self.len() {
            return Ok(true);
        }
        let sql = format!(
            "SELECT id, ts, model, provider, COALESCE(error_class, '{NO_ERROR}'), COALESCE(finish_reason, '{NONE_GROUP}'), \
             latency_ms, ttft_ms, cost_usd, input_tokens, output_tokens, cached_tokens, reasoning_tokens, \
             cache_write_tokens, retries FROM \"{table}\" WHERE id > ?1 ORDER BY id"
        );
        let sqlite = |context: &'static str| move |e| store_err(SqliteError::sqlite(context, e));
        let mut stmt = conn.prepare_cached(&sql).map_err(sqlite("preparing the copy"))?;
        let mut rows = stmt.query([self.last_id]).map_err(sqlite("copying rows"))?;
        while let Some(row) = rows.next().map_err(sqlite("copying rows"))? {
            let get = |i: usize| row.get_ref(i).unwrap_or(ValueRef::Null);
            let (ValueRef::Integer(id), ValueRef::Integer(ts)) = (get(0), get(1)) else {
                continue;
            };
            let mut keys = [0u32; KEYS];
            for (k, key) in keys.iter_mut().enumerate() {
                let s = match get(2 + k) {
                    ValueRef::Text(t) => std::str::from_utf8(t).unwrap_or(NONE_GROUP),
                    _ => NONE_GROUP,
                };
                *key = self.dicts[k].id(s);
            }
            let cost = float(get(8));
            self.last_id = id;
            self.ts.push(ts);
            self.keys.push(keys);
            self.latency.push(float(get(6)).unwrap_or(f64::NAN));
            self.ttft.push(float(get(7)).unwrap_or(f64::NAN));
            self.cost.push(cost.unwrap_or(f64::NAN));
            self.error.push(self.dicts[2].names[keys[2] as usize] != NO_ERROR);
            self.counts.push([
                int(get(9)),
                int(get(10)),
                int(get(11)),
                int(get(12)),
                int(get(13)),
                int(get(14)),
            ]);
        }
        // Rows may have been deleted below `last_id` and others added:
        // the count tells.
        if self.len() != count as usize {
            *self = Columns::default();
            return self.refresh(conn, table);
        }
        Ok(true)
    }

    /// Feed the rows selected by `q` into `agg`.
    pub(crate) fn aggregate(&self, q: &StatsQuery, agg: &mut Aggregator) -> Result<(), QueryError> {
        let lo = q.since.map_or(i64::MIN, |t| t.timestamp_micros());
        let hi = q.until.map_or(i64::MAX, |t| t.timestamp_micros());
        // Filters as (column, id); a value never seen matches nothing.
        let mut filters = Vec::new();
        for f in &q.filters {
            let Some(k) = key_index(&f.key) else {
                return Err(QueryError::Invalid("the copy cannot filter by this key".into()));
            };
            match self.dicts[k].index.get(&f.value) {
                Some(&id) => filters.push((k, id)),
                None => return Ok(()),
            }
        }
        let by = q.by.as_ref().and_then(key_index);
        for i in 0..self.len() {
            let ts = self.ts[i];
            if ts < lo || ts >= hi {
                continue;
            }
            let keys = &self.keys[i];
            if !filters.iter().all(|&(k, id)| keys[k] == id) {
                continue;
            }
            let key = by.map_or("", |k| self.dicts[k].names[keys[k] as usize].as_str());
            let c = &self.counts[i];
            let ttft = self.ttft[i];
            let cost = self.cost[i];
            agg.push(
                key,
                ts,
                Sample {
                    latency_ms: self.latency[i],
                    ttft_ms: (!ttft.is_nan()).then_some(ttft),
                    error: self.error[i],
                    input_tokens: c[0],
                    output_tokens: c[1],
                    cached_tokens: c[2],
                    cost_usd: (!cost.is_nan()).then_some(cost),
                    retries: c[5],
                    reasoning_tokens: c[3],
                    cache_write_tokens: c[4],
                },
            )?;
        }
        Ok(())
    }
}
