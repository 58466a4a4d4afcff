//! Record <-> row, as pure functions.
//!
//! Value rules (the same for every column):
//! * `request_id`: the UUID as hyphenated lower-case text (sorts like the
//!   UUID, so v7 ids sort by time).
//! * `ts`: unix **microseconds** (UTC); sub-microsecond precision is
//!   truncated.
//! * Counts (`u64`/`u32`): SQLite integers are signed 64-bit, so a count
//!   above `i64::MAX` is stored as `i64::MAX` (saturated, never wrapped to a
//!   negative number, never a failed batch). No real token count comes
//!   near it.
//! * Floats: a non-finite value (NaN, +-Inf) is stored as `NULL`, meaning
//!   "unknown". It reads back as `NaN` for `latency_ms` and `sample_weight`
//!   and as `None` for the optional fields. Summaries ignore non-finite
//!   latencies and count non-finite costs as unknown either way, so the
//!   numbers agree with the in-memory summary.
//! * `cost_usd`: `NULL` when unknown, never 0.
//! * `tools_used` / `tags`: JSON text (an array of strings / an object of
//!   strings), so SQLite's JSON functions can query them.
//! * `error_class`: the stable snake_case name; a name this version does not
//!   know reads back as [`ErrorClass::Unknown`].

use std::collections::BTreeMap;

use chrono::DateTime;
use rusqlite::types::FromSql;
use steer_metrics::query::{NONE_GROUP, NO_ERROR};
use steer_metrics::summary::Sample;
use steer_metrics::{AgentMetrics, ErrorClass, Method};
use uuid::Uuid;

use crate::error::SqliteError;
use crate::schema::COLUMNS;

/// One record as the values bound to the insert statement (owned, so it
/// can be moved to the blocking writer thread).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    request_id: String,
    ts: i64,
    model: String,
    response_model: Option<String>,
    provider: String,
    method: &'static str,
    latency_ms: Option<f64>,
    ttft_ms: Option<f64>,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    cache_write_tokens: Option<i64>,
    reasoning_tokens: Option<i64>,
    cost_usd: Option<f64>,
    retries: i64,
    error_class: Option<&'static str>,
    error_message: Option<String>,
    tools_used: String,
    tools_invoked: i64,
    agent_loop_iters: i64,
    agent_runtime: Option<String>,
    tags: String,
    /// The tags themselves, for the tag rollup.
    tag_pairs: Vec<(String, String)>,
    sample_weight: Option<f64>,
    trace_id: Option<String>,
    finish_reason: Option<String>,
    cache_write_1h_tokens: Option<i64>,
}

/// A finite float, or `None` (stored as NULL).
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// A count as an SQLite integer, saturating at `i64::MAX`.
pub(crate) fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The row for a record.
pub(crate) fn encode(m: &AgentMetrics) -> Result<Row, serde_json::Error> {
    Ok(Row {
        request_id: m.request_id.hyphenated().to_string(),
        ts: m.timestamp.timestamp_micros(),
        model: m.model.clone(),
        response_model: m.response_model.clone(),
        provider: m.provider.clone(),
        method: m.method.as_str(),
        latency_ms: finite(m.latency_ms),
        ttft_ms: m.ttft_ms.and_then(finite),
        input_tokens: count(m.input_tokens),
        output_tokens: count(m.output_tokens),
        cached_tokens: count(m.cached_tokens),
        cache_write_tokens: m.cache_write_tokens.map(count),
        reasoning_tokens: m.reasoning_tokens.map(count),
        cost_usd: m.cost_usd.and_then(finite),
        retries: i64::from(m.retries),
        error_class: m.error_class.map(ErrorClass::as_str),
        error_message: m.error_message.clone(),
        tools_used: serde_json::to_string(&m.tools_used)?,
        tools_invoked: i64::from(m.tools_invoked),
        agent_loop_iters: i64::from(m.agent_loop_iters),
        agent_runtime: m.agent_runtime.clone(),
        tags: serde_json::to_string(&m.tags)?,
        tag_pairs: m.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        sample_weight: finite(m.sample_weight),
        trace_id: m.trace_id.clone(),
        finish_reason: m.finish_reason.clone(),
        cache_write_1h_tokens: m.cache_write_1h_tokens.map(count),
    })
}

impl Row {
    /// Execute the insert statement (parameters in [`COLUMNS`] order) for
    /// this row. Returns 0 when the `request_id` was already stored.
    pub(crate) fn insert(&self, stmt: &mut rusqlite::Statement<'_>) -> rusqlite::Result<usize> {
        stmt.execute(rusqlite::params![
            self.request_id,
            self.ts,
            self.model,
            self.response_model,
            self.provider,
            self.method,
            self.latency_ms,
            self.ttft_ms,
            self.input_tokens,
            self.output_tokens,
            self.cached_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.cost_usd,
            self.retries,
            self.error_class,
            self.error_message,
            self.tools_used,
            self.tools_invoked,
            self.agent_loop_iters,
            self.agent_runtime,
            self.tags,
            self.sample_weight,
            self.trace_id,
            self.finish_reason,
            self.cache_write_1h_tokens,
        ])
    }
}

impl Row {
    /// Start time, unix microseconds.
    pub(crate) fn ts(&self) -> i64 {
        self.ts
    }

    /// The group keys the hourly rollup keeps (model, provider, error class
    /// or `none`, finish reason or `(none)`): what a query's key
    /// expressions give for this row once stored.
    pub(crate) fn rollup_key(&self) -> [&str; 4] {
        [
            &self.model,
            &self.provider,
            self.error_class.unwrap_or(NO_ERROR),
            self.finish_reason.as_deref().unwrap_or(NONE_GROUP),
        ]
    }

    /// The keys of the tag rollup, one per tag: its key and value, then
    /// [`rollup_key`](Self::rollup_key).
    pub(crate) fn tag_keys(&self) -> impl Iterator<Item = [&str; 6]> {
        let [model, provider, error, finish] = self.rollup_key();
        self.tag_pairs
            .iter()
            .map(move |(k, v)| [k.as_str(), v.as_str(), model, provider, error, finish])
    }

    /// The summary inputs of this row as a scan reads them back from the
    /// table (stored values: NULL floats are unknown, counts saturated).
    pub(crate) fn sample(&self) -> Sample {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Sample {
            latency_ms: self.latency_ms.unwrap_or(f64::NAN),
            ttft_ms: self.ttft_ms,
            error: self.error_class.is_some(),
            input_tokens: n(self.input_tokens),
            output_tokens: n(self.output_tokens),
            cached_tokens: n(self.cached_tokens),
            reasoning_tokens: self.reasoning_tokens.map_or(0, n),
            cache_write_tokens: self.cache_write_tokens.map_or(0, n),
            cost_usd: self.cost_usd,
            retries: n(self.retries),
        }
    }
}

/// Reads typed columns of one result row, naming the row and column in
/// errors.
pub(crate) struct Reader<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    row_id: i64,
}

impl<'r, 's> Reader<'r, 's> {
    /// `row` has the row id in column 0.
    pub(crate) fn new(row: &'r rusqlite::Row<'s>) -> Result<Self, SqliteError> {
        let row_id = row.get(0).map_err(|e| SqliteError::Decode {
            row_id: -1,
            column: "id",
            reason: e.to_string(),
        })?;
        Ok(Reader { row, row_id })
    }

    fn err(&self, column: &'static str, reason: impl ToString) -> SqliteError {
        SqliteError::Decode {
            row_id: self.row_id,
            column,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn get<T: FromSql>(&self, idx: usize, column: &'static str) -> Result<T, SqliteError> {
        self.row.get(idx).map_err(|e| self.err(column, e))
    }

    fn count(&self, idx: usize, column: &'static str) -> Result<u64, SqliteError> {
        let v: i64 = self.get(idx, column)?;
        u64::try_from(v).map_err(|_| self.err(column, format!("negative count {v}")))
    }

    fn opt_count(&self, idx: usize, column: &'static str) -> Result<Option<u64>, SqliteError> {
        let v: Option<i64> = self.get(idx, column)?;
        v.map(|v| u64::try_from(v).map_err(|_| self.err(column, format!("negative count {v}"))))
            .transpose()
    }

    fn small(&self, idx: usize, column: &'static str) -> Result<u32, SqliteError> {
        let v: i64 = self.get(idx, column)?;
        u32::try_from(v).map_err(|_| self.err(column, format!("{v} is not a 32-bit count")))
    }

    fn float_or_nan(&self, idx: usize, column: &'static str) -> Result<f64, SqliteError> {
        Ok(self.get::<Option<f64>>(idx, column)?.unwrap_or(f64::NAN))
    }
}

/// Select list for [`decode`]: `id` then every column.
pub(crate) fn record_columns() -> String {
    format!("id, {}", COLUMNS.join(", "))
}

/// A record from a row selected with [`record_columns`].
pub(crate) fn decode(row: &rusqlite::Row<'_>) -> Result<AgentMetrics, SqliteError> {
    let r = Reader::new(row)?;
    // Column i of COLUMNS is at index i + 1.
    let provider: String = r.get(5, "provider")?;
    let model: String = r.get(3, "model")?;
    let mut m = AgentMetrics::new(provider, model);

    let id: String = r.get(1, "request_id")?;
    m.request_id = Uuid::parse_str(&id).map_err(|e| r.err("request_id", e))?;
    let ts: i64 = r.get(2, "ts")?;
    m.timestamp =
        DateTime::from_timestamp_micros(ts).ok_or_else(|| r.err("ts", format!("{ts} is out of range")))?;
    m.response_model = r.get(4, "response_model")?;
    let method: String = r.get(6, "method")?;
    m.method = method.parse::<Method>().map_err(|e| r.err("method", e))?;
    m.latency_ms = r.float_or_nan(7, "latency_ms")?;
    m.ttft_ms = r.get(8, "ttft_ms")?;
    m.input_tokens = r.count(9, "input_tokens")?;
    m.output_tokens = r.count(10, "output_tokens")?;
    m.cached_tokens = r.count(11, "cached_tokens")?;
    m.cache_write_tokens = r.opt_count(12, "cache_write_tokens")?;
    m.reasoning_tokens = r.opt_count(13, "reasoning_tokens")?;
    m.cost_usd = r.get(14, "cost_usd")?;
    m.retries = r.small(15, "retries")?;
    m.error_class = r
        .get::<Option<String>>(16, "error_class")?
        .map(|s| s.parse().unwrap_or(ErrorClass::Unknown));
    m.error_message = r.get(17, "error_message")?;
    let tools: String = r.get(18, "tools_used")?;
    m.tools_used = serde_json::from_str(&tools).map_err(|e| r.err("tools_used", e))?;
    m.tools_invoked = r.small(19, "tools_invoked")?;
    m.agent_loop_iters = r.small(20, "agent_loop_iters")?;
    m.agent_runtime = r.get(21, "agent_runtime")?;
    let tags: String = r.get(22, "tags")?;
    m.tags = serde_json::from_str::<BTreeMap<String, String>>(&tags).map_err(|e| r.err("tags", e))?;
    m.sample_weight = r.float_or_nan(23, "sample_weight")?;
    m.trace_id = r.get(24, "trace_id")?;
    m.finish_reason = r.get(25, "finish_reason")?;
    m.cache_write_1h_tokens = r.opt_count(26, "cache_write_1h_tokens")?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        assert_eq!(count(0), 0);
        assert_eq!(count(i64::MAX as u64), i64::MAX);
        assert_eq!(count(i64::MAX as u64 + 1), i64::MAX);
        assert_eq!(count(u64::MAX), i64::MAX);
    }

    #[test]
    fn non_finite_floats_become_null_and_unknown_cost_stays_null() {
        let mut m = AgentMetrics::new("sim", "m").with_latency_ms(f64::NAN);
        m.ttft_ms = Some(f64::INFINITY);
        m.sample_weight = f64::NEG_INFINITY;
        let row = encode(&m).unwrap();
        assert_eq!(row.latency_ms, None);
        assert_eq!(row.ttft_ms, None);
        assert_eq!(row.sample_weight, None);
        assert_eq!(row.cost_usd, None);
        m.cost_usd = Some(0.0);
        assert_eq!(
            encode(&m).unwrap().cost_usd,
            Some(0.0),
            "a known zero cost stays 0"
        );
    }

    #[test]
    fn golden_row() {
        let mut m = AgentMetrics::new("openai", "gpt-4o")
            .with_latency_ms(12.5)
            .with_tokens(10, 5)
            .with_error(ErrorClass::RateLimit)
            .with_tag("team", "a\"b");
        m.request_id = Uuid::parse_str("0190f0e0-0000-7000-8000-000000000001").unwrap();
        m.timestamp = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        m.tools_used = vec!["search".into()];
        let row = encode(&m).unwrap();
        assert_eq!(row.request_id, "0190f0e0-0000-7000-8000-000000000001");
        assert_eq!(row.ts, 1_700_000_000_123_456);
        assert_eq!(row.method, "generate");
        assert_eq!(row.error_class, Some("rate_limit"));
        assert_eq!(row.tools_used, r#"["search"]"#);
        assert_eq!(row.tags, r#"{"team":"a\"b"}"#);
        assert_eq!(row.sample_weight, Some(1.0));
        assert_eq!(row.input_tokens, 10);
    }
}
