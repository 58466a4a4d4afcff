//! Line-protocol encoding: pure functions from [`AgentMetrics`] to one
//! line per record.
//!
//! # Escaping and normalisation
//!
//! What a real InfluxDB (1.x, and the same parser in 2.x) stores for a
//! written line is the reference; the encoder writes lines the server
//! parses back to exactly these values:
//!
//! * **Names** — the measurement, tag keys, tag values and field keys — are
//!   first normalised by [`normalize_name`]:
//!   - `\n` and `\r` become a space (a line cannot contain them);
//!   - every run of backslashes directly before a space, a comma, an `=`, a
//!     double quote or the end of the name is removed (the server reads such
//!     a backslash as escaping the character that follows, and rejects or
//!     mangles the line).
//!
//!   Every other character, unicode included, is kept. Then a comma or a
//!   space is escaped with a backslash; in tag keys, tag values and field
//!   keys, `=` is escaped as well (in the measurement `=` needs no escape).
//! * **Keys** (tag and field keys) also go through [`normalize_key`]:
//!   leading tabs and NULs are removed, and the names the server reserves
//!   (`time`, and `_field` / `_measurement` of the 2.x storage engine) get a
//!   trailing `_`. The **measurement** loses leading tabs and NULs too
//!   ([`normalize_measurement`]): the server skips them at the start of a
//!   line.
//! * A tag whose key or value is empty after normalisation is dropped (an
//!   empty tag value is a 400). When two tags end up with the same key, the
//!   first one is kept (built-in attributes before user tags, user tags in
//!   key order) — duplicate tag keys would make the server reject the line.
//! * **String field values** escape `"` and `\` and keep everything else,
//!   newlines included: they round-trip exactly. They are cut (at a
//!   character boundary) to [`MAX_STRING_FIELD_BYTES`].
//! * **Floats** that are NaN or ±Inf are skipped (the field is absent for
//!   that record; the server would reject the whole line). Other floats
//!   are written in their shortest round-trip form.
//! * **Integers** carry the `i` suffix; the `u64` token counts are written
//!   as signed 64-bit integers, saturating at `i64::MAX` (InfluxDB 1.x has
//!   no unsigned type).
//! * **Timestamps** are written in the configured [`Precision`], rounded
//!   down. A timestamp outside what the server accepts
//!   (±9 223 372 036 854 775 806 ns around 1970, i.e. about the years 1677 to
//!   2262) is an [`EncodeError::TimestampOutOfRange`] for that record alone.

use std::borrow::Cow;
use std::fmt;

use steer_metrics::AgentMetrics;

use crate::config::{Attribute, Placement, Precision};

/// The longest string field value written, in bytes (InfluxDB's limit is
/// 64 KiB); longer values are cut at a character boundary.
pub const MAX_STRING_FIELD_BYTES: usize = 64 * 1024 - 1;

/// Smallest and largest timestamp (ns since the epoch) InfluxDB accepts.
const MIN_NANOS: i128 = -9_223_372_036_854_775_806;
const MAX_NANOS: i128 = 9_223_372_036_854_775_806;

/// Why one record could not be encoded. Only that record is affected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The record's timestamp cannot be represented by the server.
    #[error("timestamp {0} is outside the range InfluxDB accepts (years 1677 to 2262)")]
    TimestampOutOfRange(String),
    /// After skipping absent and non-finite values nothing was left to write
    /// (a point needs at least one field).
    #[error("the record has no field to write (all selected fields absent or not finite)")]
    NoFields,
}

/// Normalise a measurement, tag key, tag value or field key as documented
/// in the [module docs](self): `\n`/`\r` become a space and every run of
/// backslashes directly before a space, comma, `=`, `"` or the end is
/// removed.
///
/// This is exactly what a name reads back as from the server (for keys,
/// see also [`normalize_key`]).
pub fn normalize_name(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    // Branch-free scan first (vectorises); the exact check only when a
    // backslash or line break is present.
    let suspect = b
        .iter()
        .fold(false, |acc, &c| acc | (c == b'\\') | (c == b'\n') | (c == b'\r'));
    let needs = suspect
        && b.iter().enumerate().any(|(i, &c)| {
            c == b'\n'
                || c == b'\r'
                || (c == b'\\'
                    && matches!(
                        b.get(i + 1),
                        None | Some(b' ' | b',' | b'=' | b'"' | b'\n' | b'\r')
                    ))
        });
    if !needs {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut pending_backslashes = 0usize;
    for c in s.chars() {
        let c = if c == '\n' || c == '\r' { ' ' } else { c };
        if c == '\\' {
            pending_backslashes += 1;
            continue;
        }
        if !matches!(c, ' ' | ',' | '=' | '"') {
            out.extend(std::iter::repeat_n('\\', pending_backslashes));
        }
        pending_backslashes = 0;
        out.push(c);
    }
    Cow::Owned(out)
}

/// Normalise a tag or field key: [`normalize_name`], leading tabs and NUL
/// characters removed (the server skips them where a key can start a
/// section), then a trailing `_` for the names the server reserves
/// (`time`, `_field`, `_measurement`).
pub fn normalize_key(s: &str) -> Cow<'_, str> {
    let n = trim_leading_blanks(normalize_name(s));
    if matches!(&*n, "time" | "_field" | "_measurement") {
        Cow::Owned(format!("{n}_"))
    } else {
        n
    }
}

/// Normalise a measurement name: [`normalize_name`], then leading tabs and
/// NUL characters removed (the server skips them at the start of a line).
pub fn normalize_measurement(s: &str) -> Cow<'_, str> {
    trim_leading_blanks(normalize_name(s))
}

fn trim_leading_blanks(n: Cow<'_, str>) -> Cow<'_, str> {
    let blank = |c: char| c == '\t' || c == '\0';
    if !n.starts_with(blank) {
        return n;
    }
    match n {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim_start_matches(blank)),
        Cow::Owned(o) => Cow::Owned(o.trim_start_matches(blank).to_string()),
    }
}

/// Append `s` (already normalised) escaping commas and spaces, and `=` when
/// `eq` is set.
#[inline]
fn push_escaped(out: &mut Vec<u8>, s: &str, eq: bool) {
    let b = s.as_bytes();
    let special = b.iter().fold(false, |acc, &c| {
        acc | (c == b',') | (c == b' ') | (eq & (c == b'='))
    });
    if !special {
        out.extend_from_slice(b);
        return;
    }
    escape_runs(out, b, |c| c == b',' || c == b' ' || (eq && c == b'='));
}

/// Append `b`, a backslash before every byte for which `special` holds:
/// runs without one are copied whole.
#[inline]
fn escape_runs(out: &mut Vec<u8>, b: &[u8], special: impl Fn(u8) -> bool) {
    out.reserve(b.len() + 8);
    let mut from = 0;
    for (i, &c) in b.iter().enumerate() {
        if special(c) {
            out.extend_from_slice(&b[from..i]);
            out.push(b'\\');
            from = i;
        }
    }
    out.extend_from_slice(&b[from..]);
}

/// Append a quoted string field value, escaping `"` and `\`.
#[inline]
fn push_string_value(out: &mut Vec<u8>, s: &str) {
    let s = steer_metrics::redact::truncate_str(s, MAX_STRING_FIELD_BYTES);
    out.push(b'"');
    let b = s.as_bytes();
    if !b.iter().fold(false, |acc, &c| acc | (c == b'"') | (c == b'\\')) {
        out.extend_from_slice(b);
    } else {
        escape_runs(out, b, |c| c == b'"' || c == b'\\');
    }
    out.push(b'"');
}

/// A record's timestamp in `precision` units, or an error when the server
/// cannot store it.
pub fn timestamp(m: &AgentMetrics, precision: Precision) -> Result<i64, EncodeError> {
    let ts = &m.timestamp;
    let nanos = i128::from(ts.timestamp()) * 1_000_000_000 + i128::from(ts.timestamp_subsec_nanos());
    let unit = precision.nanos_per_unit();
    let t = if unit == 1 { nanos } else { nanos.div_euclid(unit) };
    let back = t * unit;
    if !(MIN_NANOS..=MAX_NANOS).contains(&back) {
        return Err(EncodeError::TimestampOutOfRange(ts.to_rfc3339()));
    }
    i64::try_from(t).map_err(|_| EncodeError::TimestampOutOfRange(ts.to_rfc3339()))
}

/// Turns records into line-protocol lines. Cheap to clone; built from an
/// [`InfluxConfig`](crate::InfluxConfig) (or with [`Encoder::new`]).
#[derive(Clone)]
pub struct Encoder {
    /// Measurement, normalised and escaped.
    measurement: Vec<u8>,
    /// The measurement as the server stores it (normalised).
    measurement_name: String,
    precision: Precision,
    placement: [Placement; Attribute::COUNT],
    user_tag_prefix: String,
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("measurement", &self.measurement_name)
            .field("precision", &self.precision)
            .finish_non_exhaustive()
    }
}

const MAX_U64_AS_I64: u64 = i64::MAX as u64;

#[inline]
fn int(v: u64) -> i64 {
    // Saturating: InfluxDB 1.x has no unsigned integers.
    v.min(MAX_U64_AS_I64) as i64
}

impl Encoder {
    /// An encoder with the default placement (see
    /// [`Attribute::default_placement`]) and no user tag prefix.
    pub fn new(measurement: &str, precision: Precision) -> Self {
        let mut placement = [Placement::Omit; Attribute::COUNT];
        for a in Attribute::ALL {
            placement[a as usize] = a.default_placement();
        }
        Self::with_placement(measurement, precision, placement, String::new())
    }

    /// The encoder an [`InfluxSink`](crate::InfluxSink) with this
    /// configuration uses.
    pub fn from_config(config: &crate::InfluxConfig) -> Self {
        Self::with_placement(
            &config.measurement,
            config.precision,
            config.placement,
            config.user_tag_prefix.clone(),
        )
    }

    pub(crate) fn with_placement(
        measurement: &str,
        precision: Precision,
        placement: [Placement; Attribute::COUNT],
        user_tag_prefix: String,
    ) -> Self {
        let measurement_name = normalize_measurement(measurement).into_owned();
        let mut m = Vec::with_capacity(measurement_name.len());
        push_escaped(&mut m, &measurement_name, false);
        Encoder {
            measurement: m,
            measurement_name,
            precision,
            placement,
            user_tag_prefix,
        }
    }

    /// The measurement name as the server stores it.
    pub fn measurement(&self) -> &str {
        &self.measurement_name
    }

    /// The timestamp precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Where `attr` goes.
    pub fn placement(&self, attr: Attribute) -> Placement {
        self.placement[attr as usize]
    }

    /// Encode one record as a line (without the trailing newline) appended
    /// to `out`. On error nothing is appended.
    ///
    /// Fields come in a fixed order: the numbers, then text attributes
    /// placed as fields (in key order), then user tags placed as fields.
    /// Tags are sorted by key, as the server prefers.
    pub fn encode(&self, m: &AgentMetrics, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let ts = timestamp(m, self.precision)?;
        let start = out.len();
        out.extend_from_slice(&self.measurement);

        let mut id_buf = [0u8; 36];
        let id: &str = if self.placement(Attribute::RequestId) == Placement::Omit {
            ""
        } else {
            m.request_id.hyphenated().encode_lower(&mut id_buf)
        };
        let tools = (self.placement(Attribute::ToolsUsed) != Placement::Omit && !m.tools_used.is_empty())
            .then(|| m.tools_used.join(","));
        let text = |attr: Attribute| -> Option<&str> {
            match attr {
                Attribute::AgentRuntime => m.agent_runtime.as_deref(),
                Attribute::ErrorClass => m.error_class.map(|c| c.as_str()),
                Attribute::ErrorMessage => m.error_message.as_deref(),
                Attribute::FinishReason => m.finish_reason.as_deref(),
                Attribute::Method => Some(m.method.as_str()),
                Attribute::Model => Some(&m.model),
                Attribute::Provider => Some(&m.provider),
                Attribute::RequestId => Some(id),
                Attribute::ResponseModel => m.response_model.as_deref(),
                Attribute::Status => Some(m.status()),
                Attribute::ToolsUsed => tools.as_deref(),
                Attribute::TraceId => m.trace_id.as_deref(),
                _ => None,
            }
        };
        let user = self.placement(Attribute::UserTags);

        // Tags.
        let simple_user_keys = self.user_tag_prefix.is_empty()
            && m.tags
                .keys()
                .all(|k| matches!(normalize_key(k), Cow::Borrowed(n) if n.len() == k.len()));
        if user == Placement::Tag && !m.tags.is_empty() && simple_user_keys {
            // Fast path: user keys are written as they are, so the map's
            // order is key order: merge with the (sorted) built-ins.
            let mut users = m
                .tags
                .iter()
                .filter(|(k, _)| !k.is_empty() && !Attribute::is_builtin_key(k))
                .peekable();
            let write = |out: &mut Vec<u8>, k: &str, v: &str, builtin: bool| {
                let v = normalize_name(v);
                if !v.is_empty() {
                    out.push(b',');
                    if builtin {
                        out.extend_from_slice(k.as_bytes());
                    } else {
                        push_escaped(out, k, true);
                    }
                    out.push(b'=');
                    push_escaped(out, &v, true);
                }
            };
            for attr in TEXT_BY_KEY {
                if self.placement(attr) != Placement::Tag {
                    continue;
                }
                let Some(v) = text(attr) else { continue };
                while let Some((uk, uv)) = users.next_if(|(uk, _)| uk.as_bytes() < attr.key().as_bytes()) {
                    write(out, uk, uv, false);
                }
                write(out, attr.key(), v, true);
            }
            for (uk, uv) in users {
                write(out, uk, uv, false);
            }
        } else if user == Placement::Tag && !m.tags.is_empty() {
            let mut tags: Vec<(Cow<'_, str>, Cow<'_, str>)> =
                Vec::with_capacity(TEXT_BY_KEY.len() + m.tags.len());
            for attr in TEXT_BY_KEY {
                if self.placement(attr) == Placement::Tag {
                    if let Some(v) = text(attr) {
                        tags.push((Cow::Borrowed(attr.key()), normalize_name(v)));
                    }
                }
            }
            for (k, v) in &m.tags {
                let key = self.user_key(k);
                if !Attribute::is_builtin_key(&key) {
                    tags.push((key, normalize_name(v)));
                }
            }
            tags.retain(|(k, v)| !k.is_empty() && !v.is_empty());
            // Stable: of equal keys the first pushed stays first (built-ins
            // before user tags, user tags in key order).
            tags.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            tags.dedup_by(|later, first| later.0 == first.0);
            for (k, v) in &tags {
                out.push(b',');
                push_escaped(out, k, true);
                out.push(b'=');
                push_escaped(out, v, true);
            }
        } else {
            // Built-in keys are plain ASCII, already in key order.
            for attr in TEXT_BY_KEY {
                if self.placement(attr) == Placement::Tag {
                    if let Some(v) = text(attr) {
                        let v = normalize_name(v);
                        if !v.is_empty() {
                            out.push(b',');
                            out.extend_from_slice(attr.key().as_bytes());
                            out.push(b'=');
                            push_escaped(out, &v, true);
                        }
                    }
                }
            }
        }

        // Fields.
        out.push(b' ');
        let fields_start = out.len();
        let mut w = FieldWriter {
            out,
            start: fields_start,
        };
        let p = |a: Attribute| self.placement(a) == Placement::Field;
        if p(Attribute::LatencyMs) {
            w.float(Attribute::LatencyMs, m.latency_ms);
        }
        if let (true, Some(v)) = (p(Attribute::TtftMs), m.ttft_ms) {
            w.float(Attribute::TtftMs, v);
        }
        if p(Attribute::InputTokens) {
            w.int(Attribute::InputTokens, int(m.input_tokens));
        }
        if p(Attribute::OutputTokens) {
            w.int(Attribute::OutputTokens, int(m.output_tokens));
        }
        if p(Attribute::TotalTokens) {
            w.int(Attribute::TotalTokens, int(m.total_tokens()));
        }
        if p(Attribute::CachedTokens) {
            w.int(Attribute::CachedTokens, int(m.cached_tokens));
        }
        if let (true, Some(v)) = (p(Attribute::CacheWriteTokens), m.cache_write_tokens) {
            w.int(Attribute::CacheWriteTokens, int(v));
        }
        if let (true, Some(v)) = (p(Attribute::CacheWrite1hTokens), m.cache_write_1h_tokens) {
            w.int(Attribute::CacheWrite1hTokens, int(v));
        }
        if let (true, Some(v)) = (p(Attribute::ReasoningTokens), m.reasoning_tokens) {
            w.int(Attribute::ReasoningTokens, int(v));
        }
        if let (true, Some(v)) = (p(Attribute::CostUsd), m.cost_usd) {
            w.float(Attribute::CostUsd, v);
        }
        if p(Attribute::Retries) {
            w.int(Attribute::Retries, i64::from(m.retries));
        }
        if p(Attribute::ToolsInvoked) {
            w.int(Attribute::ToolsInvoked, i64::from(m.tools_invoked));
        }
        if p(Attribute::AgentLoopIters) {
            w.int(Attribute::AgentLoopIters, i64::from(m.agent_loop_iters));
        }
        if p(Attribute::SampleWeight) {
            w.float(Attribute::SampleWeight, m.sample_weight);
        }
        for attr in TEXT_BY_KEY {
            if p(attr) {
                if let Some(v) = text(attr) {
                    w.string(attr.key(), v);
                }
            }
        }
        if user == Placement::Field && !m.tags.is_empty() {
            let mut seen: Vec<Cow<'_, str>> = Vec::with_capacity(m.tags.len());
            for (k, v) in &m.tags {
                let key = self.user_key(k);
                if key.is_empty() || Attribute::is_builtin_key(&key) || seen.contains(&key) {
                    continue;
                }
                let mut escaped = Vec::with_capacity(key.len());
                push_escaped(&mut escaped, &key, true);
                w.string_escaped_key(&escaped, v);
                seen.push(key);
            }
        }

        if out.len() == fields_start {
            out.truncate(start);
            return Err(EncodeError::NoFields);
        }
        out.push(b' ');
        let mut b = itoa::Buffer::new();
        out.extend_from_slice(b.format(ts).as_bytes());
        Ok(())
    }

    /// The key a user tag is written under.
    fn user_key<'a>(&self, k: &'a str) -> Cow<'a, str> {
        if self.user_tag_prefix.is_empty() {
            normalize_key(k)
        } else {
            Cow::Owned(normalize_key(&format!("{}{k}", self.user_tag_prefix)).into_owned())
        }
    }

    /// Encode one record as a `String` line (convenience for tests and tools).
    pub fn encode_line(&self, m: &AgentMetrics) -> Result<String, EncodeError> {
        let mut out = Vec::with_capacity(256);
        self.encode(m, &mut out)?;
        // Only valid UTF-8 (the inputs) and ASCII were written.
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// The text attributes, in key order.
const TEXT_BY_KEY: [Attribute; 12] = [
    Attribute::AgentRuntime,
    Attribute::ErrorClass,
    Attribute::ErrorMessage,
    Attribute::FinishReason,
    Attribute::Method,
    Attribute::Model,
    Attribute::Provider,
    Attribute::RequestId,
    Attribute::ResponseModel,
    Attribute::Status,
    Attribute::ToolsUsed,
    Attribute::TraceId,
];

/// Appends `key=value` pairs separated by commas.
struct FieldWriter<'o> {
    out: &'o mut Vec<u8>,
    start: usize,
}

impl FieldWriter<'_> {
    #[inline]
    fn key(&mut self, key: &[u8]) {
        if self.out.len() > self.start {
            self.out.push(b',');
        }
        self.out.extend_from_slice(key);
        self.out.push(b'=');
    }

    #[inline]
    fn float(&mut self, attr: Attribute, v: f64) {
        if v.is_finite() {
            self.key(attr.key().as_bytes());
            // Integral values (weights, whole milliseconds) need no float
            // formatting: a number without `i` is a float to the server.
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                let mut b = itoa::Buffer::new();
                self.out.extend_from_slice(b.format(v as i64).as_bytes());
            } else {
                let mut b = zmij::Buffer::new();
                self.out.extend_from_slice(b.format_finite(v).as_bytes());
            }
        }
    }

    #[inline]
    fn int(&mut self, attr: Attribute, v: i64) {
        self.key(attr.key().as_bytes());
        let mut b = itoa::Buffer::new();
        self.out.extend_from_slice(b.format(v).as_bytes());
        self.out.push(b'i');
    }

    #[inline]
    fn string(&mut self, key: &str, v: &str) {
        self.key(key.as_bytes());
        push_string_value(self.out, v);
    }

    #[inline]
    fn string_escaped_key(&mut self, key: &[u8], v: &str) {
        self.key(key);
        push_string_value(self.out, v);
    }
}

/// Whether a line written by [`Encoder`] has a field named `key` (as the
/// server reports it, i.e. unescaped). Used to map a server's "field type
/// conflict" back to the lines it concerns.
pub fn line_has_field(line: &[u8], key: &str) -> bool {
    let Some(start) = fields_start(line) else {
        return false;
    };
    let mut i = start;
    let n = line.len();
    let mut k = Vec::with_capacity(32);
    while i < n {
        // Key, unescaped, up to an unescaped '='.
        k.clear();
        while i < n && line[i] != b'=' {
            if line[i] == b'\\' && i + 1 < n && matches!(line[i + 1], b',' | b' ' | b'=') {
                i += 1;
            }
            k.push(line[i]);
            i += 1;
        }
        if k == key.as_bytes() {
            return true;
        }
        i += 1; // '='
        if i < n && line[i] == b'"' {
            i += 1;
            while i < n && line[i] != b'"' {
                if line[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1; // closing quote
        } else {
            while i < n && line[i] != b',' && line[i] != b' ' {
                i += 1;
            }
        }
        if i >= n || line[i] == b' ' {
            return false;
        }
        i += 1; // ','
    }
    false
}

/// Offset of the field section of a line written by [`Encoder`]: after the
/// first space not escaped by a backslash.
fn fields_start(line: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b' ' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use steer_metrics::{ErrorClass, Method};

    fn base() -> AgentMetrics {
        let mut m = AgentMetrics::new("openai", "gpt-4o-mini");
        m.request_id = "0190b1c2-0000-7000-8000-000000000001".parse().unwrap();
        m.timestamp = chrono::Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        m.latency_ms = 812.5;
        m.input_tokens = 1200;
        m.output_tokens = 300;
        m
    }

    #[test]
    fn golden_success_line() {
        let e = Encoder::new("llm_request", Precision::Nanoseconds);
        assert_eq!(
            e.encode_line(&base()).unwrap(),
            "llm_request,method=generate,model=gpt-4o-mini,provider=openai,status=success \
             latency_ms=812.5,input_tokens=1200i,output_tokens=300i,total_tokens=1500i,cached_tokens=0i,\
             retries=0i,tools_invoked=0i,agent_loop_iters=0i,sample_weight=1,\
             request_id=\"0190b1c2-0000-7000-8000-000000000001\" 1700000000123456789"
        );
    }

    #[test]
    fn golden_error_line_with_every_optional_field() {
        let mut m = base()
            .with_error(ErrorClass::RateLimit)
            .with_tag("team", "search");
        m.method = Method::Stream;
        m.ttft_ms = Some(120.0);
        m.cached_tokens = 1000;
        m.cache_write_tokens = Some(10);
        m.cache_write_1h_tokens = Some(4);
        m.finish_reason = Some("length".into());
        m.reasoning_tokens = Some(5);
        m.cost_usd = Some(0.0123);
        m.retries = 2;
        m.error_message = Some("too \"many\" \\ requests\nslow down".into());
        m.response_model = Some("gpt-4o-mini-2024-07-18".into());
        m.trace_id = Some("t1".into());
        m.agent_runtime = Some("loop".into());
        m.tools_used = vec!["search".into(), "calc".into()];
        m.tools_invoked = 2;
        m.agent_loop_iters = 3;
        m.sample_weight = 4.0;
        let e = Encoder::new("llm_request", Precision::Milliseconds);
        assert_eq!(
            e.encode_line(&m).unwrap(),
            "llm_request,error_class=rate_limit,finish_reason=length,method=stream,model=gpt-4o-mini,provider=openai,status=error,team=search \
             latency_ms=812.5,ttft_ms=120,input_tokens=1200i,output_tokens=300i,total_tokens=1500i,\
             cached_tokens=1000i,cache_write_tokens=10i,cache_write_1h_tokens=4i,reasoning_tokens=5i,cost_usd=0.0123,retries=2i,\
             tools_invoked=2i,agent_loop_iters=3i,sample_weight=4,agent_runtime=\"loop\",\
             error_message=\"too \\\"many\\\" \\\\ requests\nslow down\",\
             request_id=\"0190b1c2-0000-7000-8000-000000000001\",response_model=\"gpt-4o-mini-2024-07-18\",\
             tools_used=\"search,calc\",trace_id=\"t1\" 1700000000123"
        );
    }

    #[test]
    fn escapes_names_and_normalises_what_cannot_be_written() {
        let m = base()
            .with_tag("a b", "c,d=e")
            .with_tag("empty", "")
            .with_tag("nl", "x\ny\rz")
            .with_tag("trail", "v\\")
            .with_tag("only", "\\\\")
            .with_tag("time", "t")
            .with_tag("model", "shadowed")
            .with_tag("uni", "héllo ✓");
        let mut m = m;
        m.model = "my model,v=2\\".into();
        let mut e = Encoder::new("m e,a=s", Precision::Seconds);
        e.placement[Attribute::RequestId as usize] = Placement::Omit;
        let line = e.encode_line(&m).unwrap();
        assert!(line.starts_with("m\\ e\\,a=s,"), "{line}");
        assert!(line.contains(",a\\ b=c\\,d\\=e,"), "{line}");
        assert!(!line.contains("empty"), "{line}");
        assert!(!line.contains("only"), "{line}");
        assert!(line.contains(",nl=x\\ y\\ z,"), "{line}");
        assert!(line.contains(",trail=v,"), "{line}");
        assert!(line.contains(",time_=t,"), "{line}");
        assert!(line.contains(",model=my\\ model\\,v\\=2,"), "{line}");
        assert!(!line.contains("shadowed"), "{line}");
        assert!(line.contains(",uni=héllo\\ ✓ "), "{line}");
        assert!(line.ends_with(" 1700000000"), "{line}");
    }

    #[test]
    fn normalisation_rules() {
        assert_eq!(normalize_name("plain"), "plain");
        assert!(matches!(normalize_name("a\\b"), Cow::Borrowed(_)));
        assert_eq!(normalize_name("a\\b\\\\c"), "a\\b\\\\c");
        assert_eq!(normalize_name("a\\,b"), "a,b");
        assert_eq!(normalize_name("a\\\\\\ b"), "a b");
        assert_eq!(normalize_name("a\\=b"), "a=b");
        assert_eq!(normalize_name("q\\\"x"), "q\"x");
        assert_eq!(normalize_name("end\\\\"), "end");
        assert_eq!(normalize_name("x\\\ny"), "x y");
        assert_eq!(normalize_name("\r\n"), "  ");
        assert_eq!(normalize_key("time"), "time_");
        assert_eq!(normalize_key("_field"), "_field_");
        assert_eq!(normalize_key("times"), "times");
    }

    #[test]
    fn non_finite_floats_are_skipped_and_integers_saturate() {
        let mut m = base();
        m.latency_ms = f64::NAN;
        m.ttft_ms = Some(f64::INFINITY);
        m.cost_usd = Some(f64::NEG_INFINITY);
        m.sample_weight = 1e300;
        m.input_tokens = u64::MAX;
        let line = Encoder::new("m", Precision::Nanoseconds).encode_line(&m).unwrap();
        assert!(!line.contains("latency_ms"), "{line}");
        assert!(!line.contains("ttft_ms"), "{line}");
        assert!(!line.contains("cost_usd"), "{line}");
        assert!(line.contains("sample_weight=1e+300"), "{line}");
        assert!(line.contains("input_tokens=9223372036854775807i"), "{line}");
        assert!(line.contains("total_tokens=9223372036854775807i"), "{line}");
        assert!(!line.contains("NaN") && !line.contains("inf"), "{line}");
    }

    #[test]
    fn a_record_with_no_field_left_is_an_error_and_writes_nothing() {
        let mut placement = Attribute::ALL.map(Attribute::default_placement);
        for a in Attribute::ALL {
            if a != Attribute::LatencyMs && a.default_placement() == Placement::Field {
                placement[a as usize] = Placement::Omit;
            }
        }
        let e = Encoder::with_placement("m", Precision::Nanoseconds, placement, String::new());
        let mut m = base();
        m.latency_ms = f64::NAN;
        let mut out = b"keep".to_vec();
        assert_eq!(e.encode(&m, &mut out), Err(EncodeError::NoFields));
        assert_eq!(out, b"keep");
        m.latency_ms = 1.0;
        e.encode(&m, &mut out).unwrap();
        assert!(out.ends_with(b" latency_ms=1 1700000000123456789"));
    }

    #[test]
    fn timestamps_in_every_precision_and_out_of_range() {
        let mut m = base();
        assert_eq!(
            timestamp(&m, Precision::Nanoseconds),
            Ok(1_700_000_000_123_456_789)
        );
        assert_eq!(timestamp(&m, Precision::Microseconds), Ok(1_700_000_000_123_456));
        assert_eq!(timestamp(&m, Precision::Milliseconds), Ok(1_700_000_000_123));
        assert_eq!(timestamp(&m, Precision::Seconds), Ok(1_700_000_000));
        // Before 1970: rounded down, not toward zero.
        m.timestamp = chrono::Utc.timestamp_opt(-2, 500_000_000).unwrap();
        assert_eq!(timestamp(&m, Precision::Seconds), Ok(-2));
        assert_eq!(timestamp(&m, Precision::Milliseconds), Ok(-1500));
        for year in [1600, 2300, 9999, -5000] {
            m.timestamp = chrono::Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
            for p in [
                Precision::Nanoseconds,
                Precision::Microseconds,
                Precision::Seconds,
            ] {
                assert!(matches!(
                    timestamp(&m, p),
                    Err(EncodeError::TimestampOutOfRange(_))
                ));
            }
            let mut out = Vec::new();
            assert!(Encoder::new("m", p_any()).encode(&m, &mut out).is_err());
            assert!(out.is_empty());
        }
        m.timestamp = chrono::Utc.with_ymd_and_hms(2262, 1, 1, 0, 0, 0).unwrap();
        assert!(timestamp(&m, Precision::Seconds).is_ok());
    }

    fn p_any() -> Precision {
        Precision::Milliseconds
    }

    #[test]
    fn line_has_field_reads_the_field_section_only() {
        let l = br#"m,latency_ms=tag a="x,latency_ms=1",b\ c=2i,d=3 1"#;
        assert!(!line_has_field(l, "latency_ms"));
        assert!(line_has_field(l, "a"));
        assert!(line_has_field(l, "b c"));
        assert!(line_has_field(l, "d"));
        assert!(!line_has_field(l, "x"));
    }

    proptest! {
        /// Records whose user-tag keys need no normalisation take a
        /// merge-without-buffer path; a prefix forces the general path.
        /// Both must write the same line.
        #[test]
        fn fast_and_general_tag_paths_agree(
            tags in prop::collection::btree_map("[a-z_]{1,12}", "[a-z ,=\\\\]{0,6}", 0..6),
            error in any::<bool>(),
        ) {
            let mut plain = base();
            let mut prefixed = base();
            for (k, v) in &tags {
                plain.tags.insert(format!("p{k}"), v.clone());
                prefixed.tags.insert(k.clone(), v.clone());
            }
            if error {
                plain.error_class = Some(ErrorClass::Timeout);
                prefixed.error_class = Some(ErrorClass::Timeout);
            }
            let placement = Attribute::ALL.map(Attribute::default_placement);
            let fast = Encoder::with_placement("m", Precision::Nanoseconds, placement, String::new());
            let general = Encoder::with_placement("m", Precision::Nanoseconds, placement, "p".into());
            prop_assert_eq!(fast.encode_line(&plain).unwrap(), general.encode_line(&prefixed).unwrap());
        }

        #[test]
        fn normalised_names_never_hold_a_backslash_before_a_separator(s in "[a-z\\\\ ,=\n\r\"é]{0,16}") {
            let n = normalize_name(&s);
            let b = n.as_bytes();
            prop_assert!(!b.contains(&b'\n') && !b.contains(&b'\r'));
            prop_assert!(b.last() != Some(&b'\\'));
            for w in b.windows(2) {
                prop_assert!(!(w[0] == b'\\' && matches!(w[1], b' ' | b',' | b'=' | b'"')));
            }
            // Idempotent.
            prop_assert_eq!(normalize_name(&n), n.clone());
        }

        #[test]
        fn every_line_is_one_line_with_one_unescaped_space_before_fields_and_time(
            model in "\\PC{0,12}", key in "[a-z\\\\ ,=\n\"]{1,6}", value in "\\PC{0,8}",
            msg in "(\\PC|\n){0,20}",
        ) {
            let mut m = base().with_tag(key, value);
            m.model = model;
            m.error_message = Some(msg);
            let line = Encoder::new("m", Precision::Nanoseconds).encode_line(&m).unwrap();
            let start = fields_start(line.as_bytes()).unwrap();
            prop_assert!(!line[..start].contains('\n'));
            prop_assert!(line_has_field(line.as_bytes(), "latency_ms"));
            prop_assert!(line_has_field(line.as_bytes(), "error_message"));
            prop_assert!(line.ends_with(" 1700000000123456789"));
        }
    }
}
