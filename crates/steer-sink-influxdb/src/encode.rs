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

use crate::attribute::{Attribute, Placement, Precision};
pub use crate::escape::{normalize_key, normalize_measurement, normalize_name, MAX_STRING_FIELD_BYTES};
use crate::escape::{push_escaped, push_string_value};

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
mod tests;
