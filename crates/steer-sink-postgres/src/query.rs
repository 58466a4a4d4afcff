//! [`StatsQuery`] in PostgreSQL: [`PostgresStore`] is a [`SummaryStore`].
//!
//! Everything is aggregated in the database with the definitions of
//! [`steer_metrics::summary`] (`percentile_cont`, unknown costs counted),
//! in one statement per answer: the selected rows (window and filters),
//! the `max_groups` groups with the most calls, and
//! `GROUP BY GROUPING SETS` for the groups and the total at once (per
//! step for a time series). The statement runs in a read-only transaction
//! with `statement_timeout` set to the query's timeout.
//!
//! Only the table name (quoted) and fixed SQL fragments are interpolated;
//! tag keys, filter values, times and the step travel as parameters.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use steer_metrics::query::{
    GroupKey, QueryError, StatsQuery, SummaryReport, SummaryStore, Timeseries, NONE_GROUP, NO_ERROR,
    OTHER_GROUP,
};
use steer_metrics::Summary;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::client::{Class, DbError};
use crate::store::{col, summary_from_row, u, PostgresStore, StoreError, SUMMARY_COLUMNS};

type Param = Box<dyn ToSql + Sync + Send>;

fn key_sql(key: &GroupKey, params: &mut Vec<Param>) -> String {
    match key {
        GroupKey::Model => "model".into(),
        GroupKey::Provider => "provider".into(),
        GroupKey::Error => format!("coalesce(error_class, '{NO_ERROR}')"),
        GroupKey::FinishReason => format!("coalesce(finish_reason, '{NONE_GROUP}')"),
        GroupKey::Tag(k) => {
            params.push(Box::new(k.clone()));
            format!("coalesce(tags ->> ${}::text, '{NONE_GROUP}')", params.len())
        }
        _ => "NULL::text".into(),
    }
}

/// The `sel` CTE (selected rows with their group key `k`) and the `top`
/// CTE (kept group keys), and their parameters.
fn selection(table: &str, q: &StatsQuery, extra: &str) -> (String, Vec<Param>) {
    let mut params: Vec<Param> = Vec::new();
    let key =
        q.by.as_ref()
            .map_or_else(|| "''::text".to_string(), |k| key_sql(k, &mut params));
    let mut conds = vec!["TRUE".to_string()];
    if let Some(t) = q.since {
        params.push(Box::new(t));
        conds.push(format!("\"timestamp\" >= ${}::timestamptz", params.len()));
    }
    if let Some(t) = q.until {
        params.push(Box::new(t));
        conds.push(format!("\"timestamp\" < ${}::timestamptz", params.len()));
    }
    for f in &q.filters {
        let expr = key_sql(&f.key, &mut params);
        params.push(Box::new(f.value.clone()));
        conds.push(format!("{expr} = ${}::text", params.len()));
    }
    params.push(Box::new(i64::try_from(q.limits.max_groups).unwrap_or(i64::MAX)));
    let limit = params.len();
    (
        format!(
            "WITH sel AS MATERIALIZED (SELECT {key} AS k{extra}, * FROM {table} WHERE {}),
             top AS (SELECT k FROM sel GROUP BY k ORDER BY count(*) DESC, k LIMIT ${limit}::int8)",
            conds.join(" AND ")
        ),
        params,
    )
}

fn db_err(e: DbError) -> QueryError {
    if e.sqlstate.as_deref() == Some("57014") {
        // query_canceled: statement_timeout fired.
        return QueryError::Timeout(Duration::ZERO);
    }
    QueryError::store(&e, e.class == Class::Retryable)
}

fn store_err(e: StoreError) -> QueryError {
    let retryable = e.is_retryable();
    match e {
        StoreError::Db(d) => db_err(d),
        other => QueryError::store(other, retryable),
    }
}

impl PostgresStore {
    /// Run `sql` in a read-only transaction bounded by the query timeout.
    async fn run(&self, q: &StatsQuery, sql: &str, params: &[Param]) -> Result<Vec<Row>, QueryError> {
        let mut c = self
            .pool()
            .get()
            .await
            .map_err(|e| db_err(DbError::from_pool(e)))?;
        let tx = c
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| db_err(DbError::from_pg("starting a read-only transaction", &e)))?;
        let ms = q.limits.timeout.as_millis().clamp(1, i32::MAX as u128);
        tx.batch_execute(&format!("SET LOCAL statement_timeout = {ms}"))
            .await
            .map_err(|e| db_err(DbError::from_pg("setting the statement timeout", &e)))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
        let rows = tx.query(sql, &refs).await.map_err(|e| {
            let e = db_err(DbError::from_pg("running a stats query", &e));
            match e {
                QueryError::Timeout(_) => QueryError::Timeout(q.limits.timeout),
                e => e,
            }
        })?;
        tx.commit()
            .await
            .map_err(|e| db_err(DbError::from_pg("ending the read-only transaction", &e)))?;
        Ok(rows)
    }

    fn check_rows(q: &StatsQuery, total: &Summary) -> Result<(), QueryError> {
        if total.count > q.limits.max_rows {
            return Err(QueryError::TooLarge(format!(
                "more than {} records selected: choose a shorter window",
                q.limits.max_rows
            )));
        }
        Ok(())
    }
}

/// `g` (the group, `(other)` beyond the top ones), and `GROUPING(g) = 1`
/// on the total rows.
const GROUP_EXPR: &str = "CASE WHEN k IN (SELECT k FROM top) THEN k ELSE '(other)' END";

#[async_trait]
impl SummaryStore for PostgresStore {
    fn describe(&self) -> String {
        format!("postgres:{}", self.table().qualified())
    }

    async fn summary(&self, q: &StatsQuery) -> Result<SummaryReport, QueryError> {
        q.validate()?;
        let (cte, params) = selection(&self.table().qualified(), q, "");
        let sql = format!(
            "{cte}
             SELECT GROUPING(g)::int4, g, (SELECT count(DISTINCT k) FROM sel)::int8, {SUMMARY_COLUMNS}
             FROM (SELECT {GROUP_EXPR} AS g, * FROM sel) s
             GROUP BY GROUPING SETS ((g), ())"
        );
        let rows = self.run(q, &sql, &params).await?;
        let mut total = None;
        let mut groups = BTreeMap::new();
        let mut distinct = 0;
        for r in &rows {
            let is_total: i32 = col(r, 0).map_err(store_err)?;
            distinct = u(col(r, 2).map_err(store_err)?);
            let s = summary_from_row(r, 3).map_err(store_err)?;
            if is_total == 1 {
                total = Some(s);
            } else if q.by.is_some() {
                groups.insert(col::<String>(r, 1).map_err(store_err)?, s);
            }
        }
        let total = total.unwrap_or_else(|| steer_metrics::summary::SummaryBuilder::default().finish());
        Self::check_rows(q, &total)?;
        let kept = q.limits.max_groups as u64;
        let folded = if q.by.is_some() {
            distinct.saturating_sub(kept)
        } else {
            0
        };
        if folded == 0 {
            groups.remove(OTHER_GROUP);
        }
        Ok(SummaryReport::new(q, total, groups, folded))
    }

    async fn timeseries(&self, q: &StatsQuery) -> Result<Timeseries, QueryError> {
        q.validate()?;
        let step = q.effective_step(Utc::now()).max(Duration::from_secs(1));
        let (cte, mut params) = selection(
            &self.table().qualified(),
            q,
            ", floor(extract(epoch FROM \"timestamp\") / $1::float8)::int8 AS b",
        );
        // $1 is the step: shift the other parameters' numbers by one.
        let cte = renumber(&cte);
        params.insert(0, Box::new(step.as_secs() as f64));
        let sql = format!(
            "{cte}
             SELECT GROUPING(g)::int4, g, b, (SELECT count(DISTINCT k) FROM sel)::int8, {SUMMARY_COLUMNS}
             FROM (SELECT {GROUP_EXPR} AS g, * FROM sel) s
             GROUP BY GROUPING SETS ((b, g), (b))"
        );
        let rows = self.run(q, &sql, &params).await?;
        let mut total = BTreeMap::new();
        let mut groups: BTreeMap<String, BTreeMap<i64, Summary>> = BTreeMap::new();
        let mut distinct = 0;
        let mut count = 0;
        for r in &rows {
            let is_total: i32 = col(r, 0).map_err(store_err)?;
            let b: i64 = col(r, 2).map_err(store_err)?;
            distinct = u(col(r, 3).map_err(store_err)?);
            let s = summary_from_row(r, 4).map_err(store_err)?;
            if is_total == 1 {
                count += s.count;
                total.insert(b, s);
            } else if q.by.is_some() {
                groups
                    .entry(col::<String>(r, 1).map_err(store_err)?)
                    .or_default()
                    .insert(b, s);
            }
        }
        if count > q.limits.max_rows {
            return Err(QueryError::TooLarge(format!(
                "more than {} records selected: choose a shorter window",
                q.limits.max_rows
            )));
        }
        let folded = if q.by.is_some() {
            distinct.saturating_sub(q.limits.max_groups as u64)
        } else {
            0
        };
        if folded == 0 {
            groups.remove(OTHER_GROUP);
        }
        Timeseries::from_buckets(q, step, total, groups, folded)
    }
}

/// `$n` → `$(n+1)` for every placeholder except the literal `$1` of the
/// bucket expression (written before renumbering as `$1::float8`).
fn renumber(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            if end > start {
                let n: usize = sql[start..end].parse().unwrap_or(0);
                let is_step = sql[end..].starts_with("::float8)");
                out.push('$');
                out.push_str(&(if is_step { n } else { n + 1 }).to_string());
                i = end;
                continue;
            }
        }
        out.push(char::from(bytes[i]));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parameters_are_numbered_in_order_and_tags_are_bound() {
        let q = StatsQuery::new()
            .by("tag:team".parse().unwrap())
            .filter("model=gpt-4o".parse().unwrap())
            .since(chrono::DateTime::from_timestamp(1, 0).unwrap());
        let (sql, params) = selection("\"public\".\"t\"", &q, "");
        assert_eq!(params.len(), 4);
        assert!(sql.contains("tags ->> $1::text"), "{sql}");
        assert!(sql.contains("\"timestamp\" >= $2::timestamptz"), "{sql}");
        assert!(sql.contains("model = $3::text"), "{sql}");
        assert!(sql.contains("LIMIT $4::int8"), "{sql}");
        let (sql, _) = selection(
            "t",
            &q,
            ", floor(extract(epoch FROM \"timestamp\") / $1::float8)::int8 AS b",
        );
        let sql = renumber(&sql);
        assert!(sql.contains("/ $1::float8"), "{sql}");
        assert!(sql.contains("tags ->> $2::text"), "{sql}");
        assert!(sql.contains("LIMIT $5::int8"), "{sql}");
    }
}
