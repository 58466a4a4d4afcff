//! The hourly rollup (schema v3): what lets a summary or a time series over
//! a month of calls read a few tens of thousands of rows instead of every
//! call, with exactly the numbers a scan of the calls gives.
//!
//! `<table>_hourly` holds, per Unix hour and per combination of the group
//! keys a query can break down or filter by without reading JSON (model,
//! provider, error class, finish reason, stored as the query's key values:
//! `none` for a success, `(none)` for a missing finish reason):
//!
//! * the number of calls and errors, the sums of every token count and of
//!   the retries, the sum of the known costs and the count of unknown and
//!   unpriced ones (the [`Totals`] a summary adds up);
//! * the finite latencies and TTFTs themselves, as little-endian `f64`
//!   BLOBs (the table's precision), so percentiles, min and max come out
//!   identical to a scan; only float sums (cost, means) may differ in the
//!   last bits, by summation order.
//!
//! `<table>_hourly_tags` (schema v4) holds the same per Unix hour, tag key,
//! tag value and the four keys above, one row per tag of a call, so
//! queries by `tag:KEY` or filtered to a tag value (alone or with the other
//! keys) read it too. A call without the key is in no row of that key; the
//! `(none)` group is what `<table>_hourly` holds minus what the tag rollup
//! holds for the key, per hour and group (sums subtracted, the values
//! removed from the multiset).
//!
//! The sink maintains both in the transaction that inserts the rows: the
//! batch's inserted rows are grouped by hour and key, and each group is
//! added to the key's open part with one upsert (sums added, values
//! appended). An open part that reaches [`PART_CALLS`] calls is sealed and
//! the next group starts a new one, so a busy hour costs each batch a
//! bounded rewrite instead of one that grows with the hour. Sums saturate
//! at `i64::MAX` per hour and key (a scan's `u64` sums would differ only
//! beyond 9.2 × 10^18 tokens in one hour of one model).
//!
//! Rows changed or deleted by other means (an SQL `DELETE` to keep a
//! retention window, a manual `UPDATE`) mark their hour in
//! `<table>_hourly_stale` through triggers; queries scan the rows for a
//! window touching a stale hour, and the sink rebuilds up to
//! [`REPAIR_HOURS_PER_BATCH`] stale hours per batch it writes. Rows
//! inserted by something other than the sink (a bulk import) reach no
//! trigger: a query whose complete hours hold another number of rows than
//! the rollup counts scans the rows instead, and the sink, when it opens
//! the store, marks the hours that disagree stale ([`reconcile`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use rusqlite::types::{ToSql, ValueRef};
use rusqlite::{Connection, Transaction};
use steer_metrics::query::{NONE_GROUP, NO_ERROR};
use steer_metrics::summary::{Sample, Totals};

use crate::query::{float, int, sample_at, SAMPLE_COLUMNS};

/// One hour in microseconds: the rollup's bucket.
pub(crate) const HOUR_US: i64 = 3_600_000_000;

/// Calls a part takes before the next batch starts a new part.
pub(crate) const PART_CALLS: u64 = 512;

/// Stale hours a batch write rebuilds at most (bounds the batch's time).
pub(crate) const REPAIR_HOURS_PER_BATCH: usize = 24;

/// The rollup table of `t`.
pub(crate) fn hourly(t: &str) -> String {
    format!("{t}_hourly")
}

/// The tag rollup table of `t` (schema v4).
pub(crate) fn hourly_tags(t: &str) -> String {
    format!("{t}_hourly_tags")
}

/// The stale-hours table of `t`.
pub(crate) fn stale(t: &str) -> String {
    format!("{t}_hourly_stale")
}

/// The Unix hour of a start time.
pub(crate) fn hour_of(ts_us: i64) -> i64 {
    ts_us.div_euclid(HOUR_US)
}

/// SQL for the Unix hour of an integer microsecond expression (floor, also
/// before 1970, like [`hour_of`]).
fn hour_sql(expr: &str) -> String {
    format!("(({expr}) - ((({expr}) % {HOUR_US}) + {HOUR_US}) % {HOUR_US}) / {HOUR_US}")
}

/// The summed columns then the two value BLOBs, in the order
/// [`read_part`] reads them.
pub(crate) const TOTALS_COLUMNS: &str = "calls, errors, input_tokens, output_tokens, cached_tokens, \
     reasoning_tokens, cache_write_tokens, retries, cost_usd, cost_unknown, unpriced, latency_ms, ttft_ms";

/// The DDL of the summed columns and value BLOBs both rollup tables share
/// ([`TOTALS_COLUMNS`]).
const TOTALS_DDL: &str = "
    calls              INTEGER NOT NULL,
    errors             INTEGER NOT NULL,
    input_tokens       INTEGER NOT NULL,   -- sums, saturating at 2^63 - 1
    output_tokens      INTEGER NOT NULL,
    cached_tokens      INTEGER NOT NULL,
    reasoning_tokens   INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    retries            INTEGER NOT NULL,
    cost_usd           REAL    NOT NULL,   -- sum of known costs
    cost_unknown       INTEGER NOT NULL,
    unpriced           INTEGER NOT NULL,   -- successes with unknown cost
    -- finite latencies and TTFTs, f64 little-endian
    latency_ms         BLOB    NOT NULL,
    ttft_ms            BLOB    NOT NULL";

/// The DDL of [`MAIN`]'s keys, which [`TAGS`] keys by too (as the queries'
/// key expressions give them: `none` for a success, `(none)` without a
/// finish reason).
const KEYS_DDL: &str = "    model              TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    error_class        TEXT    NOT NULL,
    finish_reason      TEXT    NOT NULL";

/// One rollup table: the key columns its rows are grouped by (after the
/// hour), and the table's name from the calls table's.
#[derive(Debug)]
pub(crate) struct Dims<const N: usize> {
    columns: [&'static str; N],
    table: fn(&str) -> String,
}

/// `<table>_hourly`: per hour, model, provider, error class and finish
/// reason (schema v3).
pub(crate) const MAIN: Dims<4> = Dims {
    columns: ["model", "provider", "error_class", "finish_reason"],
    table: hourly,
};

/// `<table>_hourly_tags`: per hour, tag key and tag value, and [`MAIN`]'s
/// keys, one row per tag of a call (schema v4). A call without a tag key
/// is in no row of that key: queries get it as the difference from
/// [`MAIN`]'s rows.
pub(crate) const TAGS: Dims<6> = Dims {
    columns: [
        "tag_key",
        "tag_value",
        "model",
        "provider",
        "error_class",
        "finish_reason",
    ],
    table: hourly_tags,
};

/// A `u64` sum as an SQLite integer, saturating at `i64::MAX`.
fn stored(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A row selected with [`TOTALS_COLUMNS`] from column `first`: its
/// [`Totals`], and its latency and TTFT values.
pub(crate) fn read_part<'r>(
    row: &'r rusqlite::Row<'_>,
    first: usize,
) -> (
    Totals,
    impl Iterator<Item = f64> + 'r,
    impl Iterator<Item = f64> + 'r,
) {
    let get = |i: usize| row.get_ref(first + i).unwrap_or(ValueRef::Null);
    let totals = Totals {
        count: int(get(0)),
        errors: int(get(1)),
        input_tokens: int(get(2)),
        output_tokens: int(get(3)),
        cached_tokens: int(get(4)),
        reasoning_tokens: int(get(5)),
        cache_write_tokens: int(get(6)),
        retries: int(get(7)),
        cost_usd: float(get(8)).unwrap_or(0.0),
        cost_unknown: int(get(9)),
        unpriced: int(get(10)),
    };
    (totals, values(get(11)), values(get(12)))
}

/// The values of a latency or TTFT BLOB.
fn values(v: ValueRef<'_>) -> impl Iterator<Item = f64> + '_ {
    let bytes = match v {
        ValueRef::Blob(b) => b,
        _ => &[],
    };
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
}

/// Append a value to a BLOB when it is finite (what a summary keeps).
/// `-0.0` is kept as `0.0`, as SQLite stores it in a REAL column.
fn put(blob: &mut Vec<u8>, v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        blob.extend_from_slice(&(v + 0.0).to_le_bytes());
    }
}

/// Version 3: the rollup, its stale-hours table and triggers; every hour
/// with rows is marked stale, for [`v4`] to fill.
pub(crate) fn v3(tx: &Transaction<'_>, t: &crate::schema::Table) -> rusqlite::Result<()> {
    let t = t.name();
    let (h, s) = (hourly(t), stale(t));
    let old_hour = hour_sql("old.ts");
    let new_hour = hour_sql("new.ts");
    tx.execute_batch(&format!(
        r#"
CREATE TABLE "{h}" (
    hour               INTEGER NOT NULL,   -- unix hours (UTC): ts div 3600 s
{keys},
    part               INTEGER NOT NULL,   -- 0: open; 1, 2, ...: sealed at {PART_CALLS} calls
{TOTALS_DDL}
);
CREATE UNIQUE INDEX "{h}_key" ON "{h}" (hour, model, provider, error_class, finish_reason, part);
CREATE TABLE "{s}" (hour INTEGER PRIMARY KEY);
CREATE TRIGGER "{h}_on_delete" AFTER DELETE ON "{t}" BEGIN
    INSERT OR IGNORE INTO "{s}" (hour) VALUES ({old_hour});
END;
CREATE TRIGGER "{h}_on_update" AFTER UPDATE ON "{t}" BEGIN
    INSERT OR IGNORE INTO "{s}" (hour) VALUES ({old_hour});
    INSERT OR IGNORE INTO "{s}" (hour) VALUES ({new_hour});
END;
INSERT OR IGNORE INTO "{s}" (hour) SELECT DISTINCT {ts_hour} FROM "{t}";
"#,
        keys = KEYS_DDL,
        ts_hour = hour_sql("ts"),
    ))
}

/// Version 4: the tag rollup; both rollups are (re)built from the rows of
/// every hour.
pub(crate) fn v4(tx: &Transaction<'_>, t: &crate::schema::Table) -> rusqlite::Result<()> {
    let t = t.name();
    let (g, s) = (hourly_tags(t), stale(t));
    tx.execute_batch(&format!(
        r#"
CREATE TABLE "{g}" (
    hour               INTEGER NOT NULL,   -- unix hours (UTC): ts div 3600 s
    tag_key            TEXT    NOT NULL,
    tag_value          TEXT    NOT NULL,
{keys},
    part               INTEGER NOT NULL,   -- 0: open; 1, 2, ...: sealed at {PART_CALLS} calls
{TOTALS_DDL},
    -- Clustered by key and hour: a query reads one key's rows in order.
    PRIMARY KEY (tag_key, hour, tag_value, model, provider, error_class, finish_reason, part)
) WITHOUT ROWID;
INSERT OR IGNORE INTO "{s}" (hour) SELECT DISTINCT {ts_hour} FROM "{t}";
"#,
        keys = KEYS_DDL,
        ts_hour = hour_sql("ts"),
    ))?;
    let rebuilt = repair(tx, t, usize::MAX)?;
    if rebuilt > 0 {
        tracing::info!(
            table = t,
            hours = rebuilt,
            "sqlite store: filled the hourly rollups"
        );
    }
    Ok(())
}

/// One group of a batch: an hour and the keys.
#[derive(Debug)]
struct Part<const N: usize> {
    hour: i64,
    key: [String; N],
    totals: Totals,
    latency: Vec<u8>,
    ttft: Vec<u8>,
}

/// Rows grouped by hour and key, to be added to the rollup table `dims`.
#[derive(Debug)]
pub(crate) struct Partials<const N: usize> {
    dims: &'static Dims<N>,
    parts: Vec<Part<N>>,
    /// Hash of (hour, keys) -> indexes into `parts` with that hash, so a
    /// row finds its group without allocating its keys.
    index: HashMap<u64, Vec<usize>>,
}

fn hash_key<const N: usize>(hour: i64, key: [&str; N]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    hour.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}

impl<const N: usize> Partials<N> {
    /// Nothing yet, for the table `dims`.
    pub(crate) fn new(dims: &'static Dims<N>) -> Self {
        Partials {
            dims,
            parts: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Add a row: its start time, its keys (for [`MAIN`]:
    /// [`crate::encode::Row::rollup_key`]) and its summary inputs.
    pub(crate) fn push(&mut self, ts_us: i64, key: [&str; N], s: &Sample) {
        let hour = hour_of(ts_us);
        let same = |p: &Part<N>| p.hour == hour && p.key.iter().zip(key).all(|(a, b)| a == b);
        let slot = self.index.entry(hash_key(hour, key)).or_default();
        let i = match slot.iter().copied().find(|&i| same(&self.parts[i])) {
            Some(i) => i,
            None => {
                self.parts.push(Part {
                    hour,
                    key: key.map(str::to_string),
                    totals: Totals::default(),
                    latency: Vec::new(),
                    ttft: Vec::new(),
                });
                slot.push(self.parts.len() - 1);
                self.parts.len() - 1
            }
        };
        let p = &mut self.parts[i];
        p.totals.push(s);
        put(&mut p.latency, Some(s.latency_ms));
        put(&mut p.ttft, s.ttft_ms);
    }

    /// Add every group to the rollup of table `t`, one statement per group:
    /// an upsert into the key's open part (part 0), which is sealed (given
    /// the next part number) once it holds [`PART_CALLS`] calls.
    pub(crate) fn write(self, tx: &Transaction<'_>, t: &str) -> rusqlite::Result<()> {
        if self.parts.is_empty() {
            return Ok(());
        }
        let h = (self.dims.table)(t);
        let keys = self.dims.columns.join(", ");
        // `?2 .. ?N+1`: the key values; the sums follow.
        let key_params: Vec<String> = (2..N + 2).map(|i| format!("?{i}")).collect();
        let total_params: Vec<String> = (N + 2..N + 15).map(|i| format!("?{i}")).collect();
        let same_key: String = self
            .dims
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!(" AND {c} = ?{}", i + 2))
            .collect();
        // Sums saturate at i64::MAX; the BLOBs are appended to (`||` keeps
        // the bytes, the cast keeps the type).
        let add = |c: &str| format!("{c} = MIN({c} + excluded.{c}, {})", i64::MAX);
        let sums = [
            "calls",
            "errors",
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "reasoning_tokens",
            "cache_write_tokens",
            "retries",
            "cost_unknown",
            "unpriced",
        ]
        .map(add)
        .join(", ");
        let mut upsert = tx.prepare_cached(&format!(
            "INSERT INTO \"{h}\" (hour, {keys}, part, {TOTALS_COLUMNS}) \
             VALUES (?1, {}, 0, {}) \
             ON CONFLICT (hour, {keys}, part) DO UPDATE SET {sums}, \
             cost_usd = cost_usd + excluded.cost_usd, \
             latency_ms = CAST(latency_ms || excluded.latency_ms AS BLOB), \
             ttft_ms = CAST(ttft_ms || excluded.ttft_ms AS BLOB) \
             RETURNING calls",
            key_params.join(", "),
            total_params.join(", "),
        ))?;
        let mut seal = tx.prepare_cached(&format!(
            "UPDATE \"{h}\" SET part = (SELECT max(part) + 1 FROM \"{h}\" WHERE hour = ?1{same_key}) \
             WHERE hour = ?1{same_key} AND part = 0"
        ))?;
        for p in &self.parts {
            let t = &p.totals;
            // Bound by reference in TOTALS_COLUMNS order; the hour and keys
            // first, which the seal takes too.
            let sums = [
                t.count,
                t.errors,
                t.input_tokens,
                t.output_tokens,
                t.cached_tokens,
                t.reasoning_tokens,
                t.cache_write_tokens,
                t.retries,
                t.cost_unknown,
                t.unpriced,
            ]
            .map(stored);
            let mut args: Vec<&dyn ToSql> = Vec::with_capacity(N + 14);
            args.push(&p.hour);
            args.extend(p.key.iter().map(|k| k as &dyn ToSql));
            args.extend(sums[..8].iter().map(|v| v as &dyn ToSql));
            args.extend([&t.cost_usd as &dyn ToSql, &sums[8], &sums[9], &p.latency, &p.ttft]);
            let calls: i64 = upsert.query_row(&*args, |r| r.get(0))?;
            if u64::try_from(calls).unwrap_or(u64::MAX) >= PART_CALLS {
                seal.execute(&args[..=N])?;
            }
        }
        Ok(())
    }
}

/// The tags of a stored `tags` column as a query's `tag:KEY` reads them
/// (`json_extract`): string values as they are, numbers as their text;
/// other values, and text that is not a JSON object, count as absent.
fn tag_pairs(v: ValueRef<'_>) -> Vec<(String, String)> {
    let ValueRef::Text(t) = v else {
        return Vec::new();
    };
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(t) {
        Ok(map) => map
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Mark stale every hour whose rows and rollup disagree: rows written by
/// something other than the sink (a bulk `INSERT`, an import) reach no
/// trigger. The writes that follow rebuild them. Cheap when they agree
/// (two counts); a per-hour comparison otherwise.
pub(crate) fn reconcile(conn: &Connection, t: &str) -> rusqlite::Result<()> {
    let (h, s) = (hourly(t), stale(t));
    let rows: i64 = conn.query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0))?;
    let rolled: i64 = conn.query_row(&format!("SELECT coalesce(sum(calls), 0) FROM \"{h}\""), [], |r| {
        r.get(0)
    })?;
    if rows == rolled {
        return Ok(());
    }
    let marked = conn.execute(
        &format!(
            "INSERT OR IGNORE INTO \"{s}\" (hour) \
             SELECT r.hour FROM (SELECT {ts_hour} AS hour, count(*) AS n FROM \"{t}\" GROUP BY 1) AS r \
             LEFT JOIN (SELECT hour, sum(calls) AS c FROM \"{h}\" GROUP BY hour) AS x ON x.hour = r.hour \
             WHERE x.c IS NULL OR x.c != r.n \
             UNION SELECT x.hour FROM (SELECT DISTINCT hour FROM \"{h}\") AS x \
             WHERE NOT EXISTS (SELECT 1 FROM \"{t}\" WHERE ts >= x.hour * {HOUR_US} AND ts < (x.hour + 1) * {HOUR_US})",
            ts_hour = hour_sql("ts"),
        ),
        [],
    )?;
    tracing::warn!(
        table = t,
        rows,
        rollup = rolled,
        hours = marked,
        "sqlite store: rows written outside steer's sink; their hours are rebuilt from the rows"
    );
    Ok(())
}

/// Rebuild up to `max_hours` stale hours of table `t` from its rows;
/// returns how many were rebuilt.
pub(crate) fn repair(tx: &Transaction<'_>, t: &str, max_hours: usize) -> rusqlite::Result<usize> {
    let (h, g, s) = (hourly(t), hourly_tags(t), stale(t));
    let hours: Vec<i64> = {
        let mut stmt = tx.prepare_cached(&format!("SELECT hour FROM \"{s}\" ORDER BY hour LIMIT ?1"))?;
        let limit = i64::try_from(max_hours).unwrap_or(i64::MAX);
        let rows = stmt.query_map([limit], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    if hours.is_empty() {
        return Ok(0);
    }
    let mut select = tx.prepare_cached(&format!(
        "SELECT ts, model, provider, COALESCE(error_class, '{NO_ERROR}'), COALESCE(finish_reason, '{NONE_GROUP}'), \
         tags, {SAMPLE_COLUMNS} FROM \"{t}\" WHERE ts >= ?1 AND ts < ?2 ORDER BY id"
    ))?;
    for &hour in &hours {
        tx.execute(&format!("DELETE FROM \"{h}\" WHERE hour = ?1"), [hour])?;
        tx.execute(&format!("DELETE FROM \"{g}\" WHERE hour = ?1"), [hour])?;
        let (mut main, mut tags) = (Partials::new(&MAIN), Partials::new(&TAGS));
        let start = hour.saturating_mul(HOUR_US);
        let mut rows = select.query([start, start.saturating_add(HOUR_US)])?;
        while let Some(r) = rows.next()? {
            let get = |i: usize| r.get_ref(i).unwrap_or(ValueRef::Null);
            let text = |i: usize| match get(i) {
                ValueRef::Text(t) => std::str::from_utf8(t).unwrap_or(NONE_GROUP),
                _ => NONE_GROUP,
            };
            let ValueRef::Integer(ts) = get(0) else {
                continue;
            };
            let sample = sample_at(r, 6);
            let [model, provider, error, finish] = [text(1), text(2), text(3), text(4)];
            main.push(ts, [model, provider, error, finish], &sample);
            for (k, v) in tag_pairs(get(5)) {
                tags.push(ts, [&k, &v, model, provider, error, finish], &sample);
            }
        }
        main.write(tx, t)?;
        tags.write(tx, t)?;
        tx.execute(&format!("DELETE FROM \"{s}\" WHERE hour = ?1"), [hour])?;
    }
    tracing::debug!(
        table = t,
        hours = hours.len(),
        "sqlite store: rebuilt stale rollup hours"
    );
    Ok(hours.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_floor_before_and_after_1970() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(HOUR_US - 1), 0);
        assert_eq!(hour_of(HOUR_US), 1);
        assert_eq!(hour_of(-1), -1);
        assert_eq!(hour_of(-HOUR_US), -1);
        assert_eq!(hour_of(-HOUR_US - 1), -2);
    }

    #[test]
    fn the_sql_hour_is_the_rust_hour() {
        let conn = rusqlite::Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
        for ts in [
            0,
            1,
            HOUR_US - 1,
            HOUR_US,
            -1,
            -HOUR_US,
            -HOUR_US - 1,
            1_789_999_200_000_000,
        ] {
            let sql = format!("SELECT {}", hour_sql(&ts.to_string()));
            let got: i64 = conn
                .query_row(&sql, [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, hour_of(ts), "{ts}");
        }
    }

    #[test]
    fn sums_saturate_at_i64_max() {
        for v in [0, 1, u64::from(u32::MAX), i64::MAX as u64] {
            assert_eq!(int(ValueRef::Integer(stored(v))), v);
        }
        assert_eq!(int(ValueRef::Integer(stored(u64::MAX))), i64::MAX as u64);
    }

    #[test]
    fn blobs_keep_finite_values_only() {
        let mut b = Vec::new();
        for v in [
            Some(1.5),
            None,
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(-0.0),
            Some(1e-300),
        ] {
            put(&mut b, v);
        }
        let back: Vec<f64> = values(ValueRef::Blob(&b)).collect();
        assert_eq!(back, [1.5, 0.0, 1e-300]);
        assert!(back[1].is_sign_positive());
    }
}
