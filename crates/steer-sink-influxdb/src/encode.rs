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
//!   - every run of backslashes directly before a space, a comma, an `=` or
//!     the end of the name is removed (the server reads such a backslash as
//!     escaping the separator that follows, and rejects or mangles the
//!     line).
//!
//!   Every other character, unicode included, is kept. Then a comma or a
//!   space is escaped with a backslash; in tag keys, tag values and field
//!   keys, `=` is escaped as well (in the measurement `=` needs no escape).
//! * **Keys** (tag and field keys) also go through [`normalize_key`]: the
//!   names the server reserves (`time`, and `_field` / `_measurement` of the
//!   2.x storage engine) get a trailing `_`.
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
/// backslashes directly before a space, comma, `=` or the end is removed.
///
/// This is exactly what a name reads back as from the server (for keys,
/// see also [`normalize_key`]).
pub fn normalize_name(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let needs = b.iter().enumerate().any(|(i, &c)| {
        c == b'\n'
            || c == b'\r'
            || (c == b'\\' && matches!(b.get(i + 1), None | Some(b' ' | b',' | b'=' | b'\n' | b'\r')))
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
        if !matches!(c, ' ' | ',' | '=') {
            out.extend(std::iter::repeat_n('\\', pending_backslashes));
        }
        pending_backslashes = 0;
        out.push(c);
    }
    Cow::Owned(out)
}

/// Normalise a tag or field key: [`normalize_name`], then a trailing `_`
/// for the names the server reserves (`time`, `_field`, `_measurement`).
pub fn normalize_key(s: &str) -> Cow<'_, str> {
    let n = normalize_name(s);
    if matches!(&*n, "time" | "_field" | "_measurement") {
        Cow::Owned(format!("{n}_"))
    } else {
        n
    }
}

/// Append `s` (already normalised) escaping commas and spaces, and `=` when
/// `eq` is set.
#[inline]
fn push_escaped(out: &mut Vec<u8>, s: &str, eq: bool) {
    let b = s.as_bytes();
    if !b.iter().any(|&c| c == b',' || c == b' ' || (eq && c == b'=')) {
        out.extend_from_slice(b);
        return;
    }
    for &c in b {
        if c == b',' || c == b' ' || (eq && c == b'=') {
            out.push(b'\\');
        }
        out.push(c);
    }
}

/// Append a quoted string field value, escaping `"` and `\`.
#[inline]
fn push_string_value(out: &mut Vec<u8>, s: &str) {
    let s = truncate_at_char_boundary(s, MAX_STRING_FIELD_BYTES);
    out.push(b'"');
    let b = s.as_bytes();
    if !b.iter().any(|&c| c == b'"' || c == b'\\') {
        out.extend_from_slice(b);
    } else {
        for &c in b {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
    }
    out.push(b'"');
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A field value.
enum Value<'a> {
    Float(f64),
    Int(i64),
    Str(Cow<'a, str>),
}

/// A record's timestamp in `precision` units, or an error when the server
/// cannot store it.
pub fn timestamp(m: &AgentMetrics, precision: Precision) -> Result<i64, EncodeError> {
    let ts = &m.timestamp;
    let nanos = i128::from(ts.timestamp()) * 1_000_000_000 + i128::from(ts.timestamp_subsec_nanos());
    let unit = precision.nanos_per_unit();
    let t = nanos.div_euclid(unit);
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

    pub(crate) fn with_placement(
        measurement: &str,
        precision: Precision,
        placement: [Placement; Attribute::COUNT],
        user_tag_prefix: String,
    ) -> Self {
        let measurement_name = normalize_name(measurement).into_owned();
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
    pub fn encode(&self, m: &AgentMetrics, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let ts = timestamp(m, self.precision)?;
        let start = out.len();
        out.extend_from_slice(&self.measurement);

        // Tags: (key as stored, value as stored), first one wins per key.
        let mut tags: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::with_capacity(8 + m.tags.len());
        let mut fields: Vec<(Cow<'_, str>, Value<'_>)> = Vec::with_capacity(24);
        self.collect(m, &mut tags, &mut fields);

        tags.retain(|(k, v)| !k.is_empty() && !v.is_empty());
        // Stable sort keeps the first-pushed of equal keys first; the server
        // prefers tags sorted by key.
        tags.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        tags.dedup_by(|later, first| later.0 == first.0);
        for (k, v) in &tags {
            out.push(b',');
            push_escaped(out, k, true);
            out.push(b'=');
            push_escaped(out, v, true);
        }

        out.push(b' ');
        let fields_start = out.len();
        let mut seen_keys: Vec<&str> = Vec::new();
        for (k, v) in &fields {
            if k.is_empty() {
                continue;
            }
            if let Value::Float(f) = v {
                if !f.is_finite() {
                    continue;
                }
            }
            if seen_keys.contains(&&**k) {
                continue;
            }
            seen_keys.push(k);
            if out.len() > fields_start {
                out.push(b',');
            }
            push_escaped(out, k, true);
            out.push(b'=');
            match v {
                Value::Float(f) => {
                    let mut b = ryu::Buffer::new();
                    out.extend_from_slice(b.format_finite(*f).as_bytes());
                }
                Value::Int(i) => {
                    let mut b = itoa::Buffer::new();
                    out.extend_from_slice(b.format(*i).as_bytes());
                    out.push(b'i');
                }
                Value::Str(s) => push_string_value(out, s),
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

    /// Encode one record as a `String` line (convenience for tests and tools).
    pub fn encode_line(&self, m: &AgentMetrics) -> Result<String, EncodeError> {
        let mut out = Vec::with_capacity(256);
        self.encode(m, &mut out)?;
        // Only valid UTF-8 (the inputs) and ASCII were written.
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn collect<'a>(
        &'a self,
        m: &'a AgentMetrics,
        tags: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>,
        fields: &mut Vec<(Cow<'a, str>, Value<'a>)>,
    ) {
        let mut text = |attr: Attribute, value: Option<&'a str>| {
            let Some(v) = value else { return };
            match self.placement[attr as usize] {
                Placement::Tag => tags.push((Cow::Borrowed(attr.key()), normalize_name(v))),
                Placement::Field => fields.push((Cow::Borrowed(attr.key()), Value::Str(Cow::Borrowed(v)))),
                Placement::Omit => {}
            }
        };
        text(Attribute::Model, Some(&m.model));
        text(Attribute::Provider, Some(&m.provider));
        text(Attribute::Method, Some(m.method.as_str()));
        text(Attribute::Status, Some(m.status()));
        text(Attribute::ErrorClass, m.error_class.map(|c| c.as_str()));
        text(Attribute::ResponseModel, m.response_model.as_deref());
        text(Attribute::AgentRuntime, m.agent_runtime.as_deref());
        text(Attribute::TraceId, m.trace_id.as_deref());
        text(Attribute::ErrorMessage, m.error_message.as_deref());

        // User tags: skipped when their key collides with a built-in name.
        let user = self.placement[Attribute::UserTags as usize];
        if user != Placement::Omit {
            for (k, v) in &m.tags {
                let key: Cow<'a, str> = if self.user_tag_prefix.is_empty() {
                    normalize_key(k)
                } else {
                    Cow::Owned(normalize_key(&format!("{}{k}", self.user_tag_prefix)).into_owned())
                };
                if Attribute::is_builtin_key(&key) {
                    continue;
                }
                match user {
                    Placement::Tag => tags.push((key, normalize_name(v))),
                    Placement::Field => fields.push((key, Value::Str(Cow::Borrowed(v)))),
                    Placement::Omit => {}
                }
            }
        }

        let mut num = |attr: Attribute, v: Option<Value<'a>>| {
            if let Some(v) = v {
                if self.placement[attr as usize] == Placement::Field {
                    fields.push((Cow::Borrowed(attr.key()), v));
                }
            }
        };
        num(Attribute::LatencyMs, Some(Value::Float(m.latency_ms)));
        num(Attribute::TtftMs, m.ttft_ms.map(Value::Float));
        num(Attribute::InputTokens, Some(Value::Int(int(m.input_tokens))));
        num(Attribute::OutputTokens, Some(Value::Int(int(m.output_tokens))));
        num(Attribute::TotalTokens, Some(Value::Int(int(m.total_tokens()))));
        num(Attribute::CachedTokens, Some(Value::Int(int(m.cached_tokens))));
        num(
            Attribute::CacheWriteTokens,
            m.cache_write_tokens.map(|v| Value::Int(int(v))),
        );
        num(
            Attribute::ReasoningTokens,
            m.reasoning_tokens.map(|v| Value::Int(int(v))),
        );
        num(Attribute::CostUsd, m.cost_usd.map(Value::Float));
        num(Attribute::Retries, Some(Value::Int(i64::from(m.retries))));
        num(Attribute::ToolsInvoked, Some(Value::Int(i64::from(m.tools_invoked))));
        num(
            Attribute::AgentLoopIters,
            Some(Value::Int(i64::from(m.agent_loop_iters))),
        );
        num(Attribute::SampleWeight, Some(Value::Float(m.sample_weight)));

        // Strings that need building last (they borrow nothing).
        let id_place = self.placement[Attribute::RequestId as usize];
        let tools_place = self.placement[Attribute::ToolsUsed as usize];
        if id_place != Placement::Omit {
            let id = Cow::Owned(m.request_id.hyphenated().to_string());
            push_owned(tags, fields, Attribute::RequestId, id_place, id);
        }
        if tools_place != Placement::Omit && !m.tools_used.is_empty() {
            push_owned(
                tags,
                fields,
                Attribute::ToolsUsed,
                tools_place,
                Cow::Owned(m.tools_used.join(",")),
            );
        }
    }
}

/// Push an owned string attribute (its value is built per record).
fn push_owned<'a>(
    tags: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>,
    fields: &mut Vec<(Cow<'a, str>, Value<'a>)>,
    attr: Attribute,
    place: Placement,
    value: Cow<'a, str>,
) {
    match place {
        Placement::Tag => {
            let v = Cow::Owned(normalize_name(&value).into_owned());
            tags.push((Cow::Borrowed(attr.key()), v));
        }
        Placement::Field => fields.push((Cow::Borrowed(attr.key()), Value::Str(value))),
        Placement::Omit => {}
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
