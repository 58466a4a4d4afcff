//! Escaping and normalisation of line-protocol names and string values,
//! exactly as documented in the [`encode`](crate::encode) module: what a
//! name reads back as from the server, and the bytes that write it.

use std::borrow::Cow;

/// The longest string field value written, in bytes (InfluxDB's limit is
/// 64 KiB); longer values are cut at a character boundary.
pub const MAX_STRING_FIELD_BYTES: usize = 64 * 1024 - 1;

/// Normalise a measurement, tag key, tag value or field key as documented
/// in the [module docs](crate::encode): `\n`/`\r` become a space and every run of
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
pub(crate) fn push_escaped(out: &mut Vec<u8>, s: &str, eq: bool) {
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
pub(crate) fn push_string_value(out: &mut Vec<u8>, s: &str) {
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
