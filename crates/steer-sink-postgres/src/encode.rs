//! Record → row: the column list, the PostgreSQL type of each column, the
//! values of one record, and validation of values PostgreSQL cannot store.
//!
//! Pure functions, no I/O.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use steer_metrics::AgentMetrics;
use tokio_postgres::types::{to_sql_checked, IsNull, Json, ToSql, Type};
use uuid::Uuid;

/// The columns written, in COPY order, with their PostgreSQL types. One
/// entry per [`AgentMetrics`] field.
pub const COLUMNS: [(&str, Type); 26] = [
    ("request_id", Type::UUID),
    ("trace_id", Type::TEXT),
    ("timestamp", Type::TIMESTAMPTZ),
    ("model", Type::TEXT),
    ("response_model", Type::TEXT),
    ("provider", Type::TEXT),
    ("method", Type::TEXT),
    ("latency_ms", Type::FLOAT8),
    ("ttft_ms", Type::FLOAT8),
    ("input_tokens", Type::INT8),
    ("output_tokens", Type::INT8),
    ("cached_tokens", Type::INT8),
    ("cache_write_tokens", Type::INT8),
    ("reasoning_tokens", Type::INT8),
    ("cost_usd", Type::NUMERIC),
    ("retries", Type::INT8),
    ("error_class", Type::TEXT),
    ("error_message", Type::TEXT),
    ("tools_used", Type::TEXT_ARRAY),
    ("tools_invoked", Type::INT8),
    ("agent_loop_iters", Type::INT8),
    ("agent_runtime", Type::TEXT),
    ("tags", Type::JSONB),
    ("sample_weight", Type::FLOAT8),
    ("finish_reason", Type::TEXT),
    ("cache_write_1h_tokens", Type::INT8),
];

/// The column types, in [`COLUMNS`] order.
pub fn column_types() -> Vec<Type> {
    COLUMNS.iter().map(|(_, t)| t.clone()).collect()
}

/// `"request_id", "trace_id", ...` for SQL.
pub fn column_list() -> String {
    COLUMNS
        .iter()
        .map(|(n, _)| crate::schema::quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a record cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: Problem,
}

/// The kinds of values PostgreSQL refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A string holds `\0`: PostgreSQL `text` and `jsonb` cannot store it.
    NulByte,
    /// NaN or ±infinity, which would corrupt averages and percentiles.
    NotFinite,
    /// An integer larger than `bigint` (2^63 - 1).
    TooLarge,
    /// A timestamp before PostgreSQL's earliest (4714 BC).
    TimestampOutOfRange,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.problem {
            Problem::NulByte => "contains a NUL byte, which PostgreSQL text cannot store",
            Problem::NotFinite => "is NaN or infinite",
            Problem::TooLarge => "exceeds the bigint range",
            Problem::TimestampOutOfRange => "is outside PostgreSQL's timestamp range",
        };
        write!(f, "field `{}` {what}", self.field)
    }
}

fn text(field: &'static str, s: &str) -> Result<(), Invalid> {
    if s.as_bytes().contains(&0) {
        Err(Invalid {
            field,
            problem: Problem::NulByte,
        })
    } else {
        Ok(())
    }
}

fn opt_text(field: &'static str, s: Option<&String>) -> Result<(), Invalid> {
    s.map_or(Ok(()), |s| text(field, s))
}

fn finite(field: &'static str, v: f64) -> Result<(), Invalid> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Invalid {
            field,
            problem: Problem::NotFinite,
        })
    }
}

fn int(field: &'static str, v: u64) -> Result<i64, Invalid> {
    i64::try_from(v).map_err(|_| Invalid {
        field,
        problem: Problem::TooLarge,
    })
}

/// Microseconds from 2000-01-01 of PostgreSQL's earliest timestamp
/// (4714-11-24 00:00:00 UTC BC).
const PG_MIN_TIMESTAMP_US: i64 = -211_813_488_000_000_000;

fn pg_epoch() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap_or_default()
}

/// Check that every value of `m` can be stored.
pub fn validate(m: &AgentMetrics) -> Result<(), Invalid> {
    opt_text("trace_id", m.trace_id.as_ref())?;
    text("model", &m.model)?;
    opt_text("response_model", m.response_model.as_ref())?;
    text("provider", &m.provider)?;
    finite("latency_ms", m.latency_ms)?;
    if let Some(t) = m.ttft_ms {
        finite("ttft_ms", t)?;
    }
    int("input_tokens", m.input_tokens)?;
    int("output_tokens", m.output_tokens)?;
    int("cached_tokens", m.cached_tokens)?;
    if let Some(v) = m.cache_write_tokens {
        int("cache_write_tokens", v)?;
    }
    if let Some(v) = m.reasoning_tokens {
        int("reasoning_tokens", v)?;
    }
    if let Some(c) = m.cost_usd {
        finite("cost_usd", c)?;
    }
    opt_text("error_message", m.error_message.as_ref())?;
    for t in &m.tools_used {
        text("tools_used", t)?;
    }
    opt_text("agent_runtime", m.agent_runtime.as_ref())?;
    opt_text("finish_reason", m.finish_reason.as_ref())?;
    for (k, v) in &m.tags {
        text("tags", k)?;
        text("tags", v)?;
    }
    finite("sample_weight", m.sample_weight)?;
    let us = (m.timestamp - pg_epoch()).num_microseconds();
    if !matches!(us, Some(us) if us >= PG_MIN_TIMESTAMP_US) {
        return Err(Invalid {
            field: "timestamp",
            problem: Problem::TimestampOutOfRange,
        });
    }
    Ok(())
}

/// The values of one (validated) record, in [`COLUMNS`] order.
#[derive(Debug)]
pub struct Row<'a> {
    request_id: Uuid,
    trace_id: Option<&'a str>,
    timestamp: DateTime<Utc>,
    model: &'a str,
    response_model: Option<&'a str>,
    provider: &'a str,
    method: &'static str,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    cache_write_tokens: Option<i64>,
    reasoning_tokens: Option<i64>,
    cost_usd: Option<Numeric>,
    retries: i64,
    error_class: Option<&'static str>,
    error_message: Option<&'a str>,
    tools_used: &'a [String],
    tools_invoked: i64,
    agent_loop_iters: i64,
    agent_runtime: Option<&'a str>,
    tags: Json<&'a BTreeMap<String, String>>,
    sample_weight: f64,
    finish_reason: Option<&'a str>,
    cache_write_1h_tokens: Option<i64>,
}

impl<'a> Row<'a> {
    /// Validate and convert a record.
    pub fn new(m: &'a AgentMetrics) -> Result<Self, Invalid> {
        validate(m)?;
        Ok(Row {
            request_id: m.request_id,
            trace_id: m.trace_id.as_deref(),
            timestamp: m.timestamp,
            model: &m.model,
            response_model: m.response_model.as_deref(),
            provider: &m.provider,
            method: m.method.as_str(),
            latency_ms: m.latency_ms,
            ttft_ms: m.ttft_ms,
            input_tokens: int("input_tokens", m.input_tokens)?,
            output_tokens: int("output_tokens", m.output_tokens)?,
            cached_tokens: int("cached_tokens", m.cached_tokens)?,
            cache_write_tokens: m
                .cache_write_tokens
                .map(|v| int("cache_write_tokens", v))
                .transpose()?,
            reasoning_tokens: m
                .reasoning_tokens
                .map(|v| int("reasoning_tokens", v))
                .transpose()?,
            cost_usd: m.cost_usd.map(Numeric),
            retries: i64::from(m.retries),
            error_class: m.error_class.map(|c| c.as_str()),
            error_message: m.error_message.as_deref(),
            tools_used: &m.tools_used,
            tools_invoked: i64::from(m.tools_invoked),
            agent_loop_iters: i64::from(m.agent_loop_iters),
            agent_runtime: m.agent_runtime.as_deref(),
            tags: Json(&m.tags),
            sample_weight: m.sample_weight,
            finish_reason: m.finish_reason.as_deref(),
            cache_write_1h_tokens: m
                .cache_write_1h_tokens
                .map(|v| int("cache_write_1h_tokens", v))
                .transpose()?,
        })
    }

    /// The values for a binary COPY or a parameterised statement.
    pub fn values(&self) -> [&(dyn ToSql + Sync); 26] {
        [
            &self.request_id,
            &self.trace_id,
            &self.timestamp,
            &self.model,
            &self.response_model,
            &self.provider,
            &self.method,
            &self.latency_ms,
            &self.ttft_ms,
            &self.input_tokens,
            &self.output_tokens,
            &self.cached_tokens,
            &self.cache_write_tokens,
            &self.reasoning_tokens,
            &self.cost_usd,
            &self.retries,
            &self.error_class,
            &self.error_message,
            &self.tools_used,
            &self.tools_invoked,
            &self.agent_loop_iters,
            &self.agent_runtime,
            &self.tags,
            &self.sample_weight,
            &self.finish_reason,
            &self.cache_write_1h_tokens,
        ]
    }
}

/// Rows of a batch with their indices in the batch.
pub type IndexedRows<'a> = Vec<(usize, Row<'a>)>;

/// Split a batch into convertible rows (with their indices) and rejected
/// records (index, reason).
pub fn rows(batch: &[AgentMetrics]) -> (IndexedRows<'_>, Vec<(usize, Invalid)>) {
    let mut good = Vec::with_capacity(batch.len());
    let mut bad = Vec::new();
    for (i, m) in batch.iter().enumerate() {
        match Row::new(m) {
            Ok(r) => good.push((i, r)),
            Err(e) => bad.push((i, e)),
        }
    }
    (good, bad)
}

/// A finite `f64` sent as an exact PostgreSQL `numeric`: the shortest
/// decimal that reads back as the same `f64` (Rust's `Display`), so
/// `cost_usd::float8` returns the original value bit for bit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Numeric(pub f64);

/// The binary `numeric` wire form: (weight, sign, dscale, base-10000 digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumericParts {
    /// Power of 10000 of the first digit.
    pub weight: i16,
    /// 0x0000 positive, 0x4000 negative.
    pub sign: u16,
    /// Decimal digits after the point.
    pub dscale: u16,
    /// Base-10000 digits, no leading or trailing zero digit.
    pub digits: Vec<i16>,
}

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;

impl Numeric {
    /// Decompose into the wire form; `None` for NaN / infinity.
    pub fn parts(self) -> Option<NumericParts> {
        if !self.0.is_finite() {
            return None;
        }
        let sign = if self.0 < 0.0 { NUMERIC_NEG } else { NUMERIC_POS };
        // Display never uses exponent notation and round-trips exactly.
        let s = format!("{}", self.0.abs());
        let (int_part, frac_part) = s.split_once('.').unwrap_or((&s, ""));
        let int_part = int_part.trim_start_matches('0');
        let frac_part = frac_part.trim_end_matches('0');
        let dscale = u16::try_from(frac_part.len()).ok()?;
        // Left-pad the integer part and right-pad the fraction to whole groups of 4.
        let int_pad = (4 - int_part.len() % 4) % 4;
        let frac_pad = (4 - frac_part.len() % 4) % 4;
        let mut all = String::with_capacity(int_pad + int_part.len() + frac_part.len() + frac_pad);
        all.push_str(&"0".repeat(int_pad));
        all.push_str(int_part);
        let int_groups = all.len() / 4;
        all.push_str(frac_part);
        all.push_str(&"0".repeat(frac_pad));
        let mut digits: Vec<i16> = all
            .as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
            .collect();
        let mut weight = i16::try_from(int_groups).ok()? - 1;
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..leading);
        weight -= i16::try_from(leading).ok()?;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(NumericParts {
                weight: 0,
                sign: NUMERIC_POS,
                dscale,
                digits,
            });
        }
        Some(NumericParts {
            weight,
            sign,
            dscale,
            digits,
        })
    }
}

impl ToSql for Numeric {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let p = self
            .parts()
            .ok_or("numeric value is NaN or infinite (rejected before sending)")?;
        let n = i16::try_from(p.digits.len())?;
        out.put_i16(n);
        out.put_i16(p.weight);
        out.put_u16(p.sign);
        out.put_u16(p.dscale);
        for d in p.digits {
            out.put_i16(d);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use steer_metrics::ErrorClass;

    fn parts(v: f64) -> (i16, u16, u16, Vec<i16>) {
        let p = Numeric(v).parts().unwrap();
        (p.weight, p.sign, p.dscale, p.digits)
    }

    /// Rebuild the decimal text PostgreSQL would print from the wire form.
    fn to_text(p: &NumericParts) -> String {
        if p.digits.is_empty() {
            return if p.dscale == 0 {
                "0".into()
            } else {
                format!("0.{}", "0".repeat(p.dscale as usize))
            };
        }
        let mut int = String::new();
        let mut frac = String::new();
        for i in 0..=p.weight.max(0) {
            let d = p.digits.get(i as usize).copied().unwrap_or(0);
            if p.weight >= 0 {
                int.push_str(&format!("{d:04}"));
            }
        }
        let first_frac = (p.weight + 1).max(0) as usize;
        if p.weight < -1 {
            frac.push_str(&"0000".repeat((-p.weight - 1) as usize));
        }
        for d in p.digits.iter().skip(first_frac) {
            frac.push_str(&format!("{d:04}"));
        }
        let int = int.trim_start_matches('0');
        let int = if int.is_empty() { "0" } else { int };
        frac.truncate(p.dscale as usize);
        while frac.len() < p.dscale as usize {
            frac.push('0');
        }
        let sign = if p.sign == NUMERIC_NEG { "-" } else { "" };
        if frac.is_empty() {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        }
    }

    #[test]
    fn numeric_golden() {
        assert_eq!(parts(0.0), (0, 0, 0, vec![]));
        assert_eq!(parts(-0.0), (0, 0, 0, vec![]));
        assert_eq!(parts(1.0), (0, 0, 0, vec![1]));
        assert_eq!(parts(12345.678), (1, 0, 3, vec![1, 2345, 6780]));
        assert_eq!(parts(0.0123), (-1, 0, 4, vec![123]));
        assert_eq!(parts(0.00001), (-2, 0, 5, vec![1000]));
        assert_eq!(parts(-2.5), (0, NUMERIC_NEG, 1, vec![2, 5000]));
        assert_eq!(parts(10000.0), (1, 0, 0, vec![1]));
        assert_eq!(parts(1e20), (5, 0, 0, vec![1]));
        assert!(Numeric(f64::NAN).parts().is_none());
        assert!(Numeric(f64::INFINITY).parts().is_none());
        let tiny = Numeric(5e-324).parts().unwrap();
        assert_eq!(tiny.dscale, 324);
    }

    proptest! {
        #[test]
        fn numeric_text_round_trips(v in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL) {
            let p = Numeric(v).parts().unwrap();
            let text = to_text(&p);
            let back: f64 = text.parse().unwrap();
            prop_assert_eq!(back, if v == 0.0 { 0.0 } else { v });
            prop_assert!(p.digits.iter().all(|d| (0..10000).contains(d)));
            prop_assert!(p.digits.first() != Some(&0) && p.digits.last() != Some(&0));
        }
    }

    #[test]
    fn nul_bytes_are_found_in_every_text_field() {
        type Set = fn(&mut AgentMetrics);
        let cases: [(&str, Set); 10] = [
            ("trace_id", |m| m.trace_id = Some("a\0b".into())),
            ("model", |m| m.model = "gpt\0".into()),
            ("response_model", |m| m.response_model = Some("\0".into())),
            ("provider", |m| m.provider = "\0x".into()),
            ("error_message", |m| m.error_message = Some("x\0".into())),
            ("tools_used", |m| m.tools_used = vec!["ok".into(), "b\0d".into()]),
            ("agent_runtime", |m| m.agent_runtime = Some("\0".into())),
            ("tags", |m| {
                m.tags.insert("k\0".into(), "v".into());
            }),
            ("tags", |m| {
                m.tags.insert("k".into(), "v\0".into());
            }),
            ("model", |m| m.model = "\0".into()),
        ];
        for (field, set) in cases {
            let mut m = AgentMetrics::new("openai", "gpt-4o");
            set(&mut m);
            assert_eq!(
                validate(&m),
                Err(Invalid {
                    field,
                    problem: Problem::NulByte
                })
            );
        }
    }

    #[test]
    fn non_finite_large_and_ancient_values_are_rejected() {
        let base = || AgentMetrics::new("openai", "gpt-4o");
        let mut m = base();
        m.latency_ms = f64::NAN;
        assert_eq!(validate(&m).unwrap_err().field, "latency_ms");
        let mut m = base();
        m.ttft_ms = Some(f64::INFINITY);
        assert_eq!(validate(&m).unwrap_err().problem, Problem::NotFinite);
        let mut m = base();
        m.cost_usd = Some(f64::NEG_INFINITY);
        assert_eq!(validate(&m).unwrap_err().field, "cost_usd");
        let mut m = base();
        m.sample_weight = f64::NAN;
        assert_eq!(validate(&m).unwrap_err().field, "sample_weight");
        let mut m = base();
        m.output_tokens = u64::MAX;
        assert_eq!(validate(&m).unwrap_err().problem, Problem::TooLarge);
        let mut m = base();
        m.reasoning_tokens = Some(1 << 63);
        assert_eq!(validate(&m).unwrap_err().field, "reasoning_tokens");
        let mut m = base();
        m.timestamp = DateTime::<Utc>::MIN_UTC;
        assert_eq!(validate(&m).unwrap_err().problem, Problem::TimestampOutOfRange);
        let mut m = base();
        m.timestamp = DateTime::<Utc>::MAX_UTC;
        assert!(validate(&m).is_ok());
    }

    #[test]
    fn rows_split_good_and_bad_and_keep_indices() {
        let mut batch: Vec<AgentMetrics> = (0..5).map(|_| AgentMetrics::new("xai", "grok-4")).collect();
        batch[1].model = "bad\0".into();
        batch[3].latency_ms = f64::NAN;
        let (good, bad) = rows(&batch);
        assert_eq!(good.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 2, 4]);
        assert_eq!(bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(
            bad[0].1.to_string(),
            "field `model` contains a NUL byte, which PostgreSQL text cannot store"
        );
    }

    #[test]
    fn every_value_matches_its_column_type() {
        let mut m = AgentMetrics::new("openai", "gpt-4o").with_error(ErrorClass::Timeout);
        m.cost_usd = Some(0.25);
        m.ttft_ms = Some(1.0);
        let row = Row::new(&m).unwrap();
        let mut buf = BytesMut::new();
        for (v, (name, ty)) in row.values().iter().zip(COLUMNS.iter()) {
            v.to_sql_checked(ty, &mut buf)
                .unwrap_or_else(|e| panic!("column {name}: {e}"));
        }
        assert_eq!(column_list().split(", ").count(), 26);
    }
}
