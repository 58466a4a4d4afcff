//! Pure encoding: Datadog tag normalisation, value rounding, the JSON of
//! series v2 (`/api/v2/series`) and distribution points
//! (`/api/v1/distribution_points`) entries, and packing entries into
//! compressed bodies within the size limits.

use std::io::Write;

/// Body compression. Datadog accepts gzip and deflate on both endpoints used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// `Content-Encoding: gzip` (the default).
    #[default]
    Gzip,
    /// `Content-Encoding: deflate` (zlib).
    Deflate,
    /// No compression (the 5 MB limit then applies to the body as sent).
    None,
}

/// Longest tag Datadog keeps.
pub const MAX_TAG_LEN: usize = 200;

/// Normalise a tag (`key:value` or a bare value) by Datadog's rules:
/// lowercase; must start with a letter (leading non-letters are removed);
/// letters, digits, `_`, `-`, `:`, `.` and `/` kept, anything else becomes
/// `_`; runs of `_` collapse; trailing `_` removed; at most 200 characters.
/// Returns `None` when nothing is left.
pub fn normalize_tag(tag: &str) -> Option<String> {
    let mut out = String::with_capacity(tag.len().min(MAX_TAG_LEN));
    let mut chars = 0usize;
    for c in tag.chars().flat_map(char::to_lowercase) {
        if chars >= MAX_TAG_LEN {
            break;
        }
        let mapped = if c.is_alphabetic() {
            c
        } else if out.is_empty() {
            continue; // must start with a letter
        } else if c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | '/') || c.is_numeric() && !c.is_ascii()
        {
            c
        } else {
            '_'
        };
        if mapped == '_' && out.ends_with('_') {
            continue;
        }
        out.push(mapped);
        chars += 1;
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

/// A `key:value` tag, normalised; `None` if nothing is left of it.
pub fn tag(key: &str, value: &str) -> Option<String> {
    normalize_tag(&format!("{key}:{value}"))
}

/// `v` rounded to `digits` significant digits, in the shortest decimal
/// form (relative error ≤ 0.5·10^(1-digits), e.g. 0.5 % for 3 digits).
/// Non-finite values give `None`; zero and negative zero give `"0"`.
pub fn format_significant(v: f64, digits: u32) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    if v == 0.0 {
        return Some("0".into());
    }
    let digits = digits.clamp(1, 17) as i32;
    let exp = v.abs().log10().floor() as i32;
    let decimals = digits - 1 - exp;
    if decimals <= 0 {
        let scale = 10f64.powi(-decimals);
        let r = (v / scale).round() * scale;
        if r.abs() < 9.0e15 {
            return Some(format!("{}", r as i64));
        }
        let mut buf = ryu::Buffer::new();
        return Some(buf.format(r).to_string());
    }
    let mut s = format!("{:.*}", decimals as usize, v);
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    Some(s)
}

/// A finite number as JSON (integers without a fraction).
pub(crate) fn json_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        let mut buf = ryu::Buffer::new();
        buf.format_finite(v).to_string()
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json escaping of a &str never fails.
    out.push_str(&serde_json::Value::String(s.to_string()).to_string());
}

fn push_tags(out: &mut String, tags: &[String]) {
    out.push('[');
    for (i, t) in tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, t);
    }
    out.push(']');
}

/// One count point of a series v2 entry (`type` 1 with its `interval`).
pub fn count_entry(
    metric: &str,
    tags: &[String],
    host: Option<&str>,
    timestamp: i64,
    value: f64,
    interval: u64,
) -> String {
    let mut s = String::with_capacity(128 + tags.len() * 24);
    s.push_str("{\"metric\":");
    push_json_str(&mut s, metric);
    s.push_str(",\"type\":1,\"interval\":");
    s.push_str(&interval.to_string());
    s.push_str(",\"points\":[{\"timestamp\":");
    s.push_str(&timestamp.to_string());
    s.push_str(",\"value\":");
    s.push_str(&json_number(value));
    s.push_str("}],\"tags\":");
    push_tags(&mut s, tags);
    if let Some(h) = host {
        s.push_str(",\"resources\":[{\"name\":");
        push_json_str(&mut s, h);
        s.push_str(",\"type\":\"host\"}]");
    }
    s.push('}');
    s
}

/// One distribution points entry: `[[timestamp, [values...]]]`; values are
/// already formatted numbers.
pub fn distribution_entry(
    metric: &str,
    tags: &[String],
    host: Option<&str>,
    timestamp: i64,
    values: &[String],
) -> String {
    let mut s = String::with_capacity(96 + tags.len() * 24 + values.len() * 6);
    s.push_str("{\"metric\":");
    push_json_str(&mut s, metric);
    s.push_str(",\"points\":[[");
    s.push_str(&timestamp.to_string());
    s.push_str(",[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(v);
    }
    s.push_str("]]],\"tags\":");
    push_tags(&mut s, tags);
    if let Some(h) = host {
        s.push_str(",\"host\":");
        push_json_str(&mut s, h);
    }
    s.push_str(",\"type\":\"distribution\"}");
    s
}

const PREFIX: &str = "{\"series\":[";
const SUFFIX: &str = "]}";

/// The JSON body `{"series":[entries...]}` for these entries.
pub fn body_json(entries: &[String], ids: &[usize]) -> String {
    let len = PREFIX.len() + SUFFIX.len() + ids.iter().map(|&i| entries[i].len() + 1).sum::<usize>();
    let mut s = String::with_capacity(len);
    s.push_str(PREFIX);
    for (n, &i) in ids.iter().enumerate() {
        if n > 0 {
            s.push(',');
        }
        s.push_str(&entries[i]);
    }
    s.push_str(SUFFIX);
    s
}

/// Compress a body.
pub fn compress(raw: &[u8], c: Compression) -> Vec<u8> {
    fn finish<W: Write>(mut w: W, raw: &[u8]) -> std::io::Result<W> {
        w.write_all(raw)?;
        Ok(w)
    }
    let level = flate2::Compression::new(6);
    let out = match c {
        Compression::None => return raw.to_vec(),
        Compression::Gzip => {
            finish(flate2::write::GzEncoder::new(Vec::new(), level), raw).and_then(|w| w.finish())
        }
        Compression::Deflate => {
            finish(flate2::write::ZlibEncoder::new(Vec::new(), level), raw).and_then(|w| w.finish())
        }
    };
    // Writing into a Vec cannot fail.
    out.unwrap_or_default()
}

/// A body ready to send: which entries it carries, its uncompressed size
/// and the bytes as sent.
#[derive(Debug, Clone)]
pub struct Packed {
    /// Indices of the entries in this body.
    pub ids: Vec<usize>,
    /// Size before compression.
    pub raw_len: usize,
    /// The body as sent.
    pub body: Vec<u8>,
}

/// Size limits of one body.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body as sent.
    pub max_sent: usize,
    /// Largest body before compression.
    pub max_raw: usize,
    /// Compression used.
    pub compression: Compression,
}

impl Limits {
    fn raw_cap(&self) -> usize {
        match self.compression {
            Compression::None => self.max_raw.min(self.max_sent),
            _ => self.max_raw,
        }
    }
}

/// Pack `ids` into as few bodies as fit the limits. Entries that alone
/// exceed a limit are returned in the second list.
pub fn pack(entries: &[String], ids: &[usize], limits: Limits) -> (Vec<Packed>, Vec<usize>) {
    let cap = limits.raw_cap();
    let overhead = PREFIX.len() + SUFFIX.len();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut oversize = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut cur_len = overhead;
    for &i in ids {
        let l = entries[i].len() + 1;
        if overhead + l > cap {
            oversize.push(i);
            continue;
        }
        if cur_len + l > cap && !cur.is_empty() {
            groups.push(std::mem::take(&mut cur));
            cur_len = overhead;
        }
        cur.push(i);
        cur_len += l;
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    let mut out = Vec::new();
    let mut work: Vec<Vec<usize>> = groups.into_iter().rev().collect();
    while let Some(g) = work.pop() {
        let raw = body_json(entries, &g);
        let body = compress(raw.as_bytes(), limits.compression);
        if body.len() <= limits.max_sent {
            out.push(Packed {
                ids: g,
                raw_len: raw.len(),
                body,
            });
        } else if g.len() == 1 {
            oversize.extend(g);
        } else {
            let mut left = g;
            let right = left.split_off(left.len() / 2);
            work.push(right);
            work.push(left);
        }
    }
    (out, oversize)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tags_follow_datadog_rules() {
        assert_eq!(normalize_tag("Model:GPT-4o").as_deref(), Some("model:gpt-4o"));
        assert_eq!(
            normalize_tag("model:claude 3.5 sonnet!").as_deref(),
            Some("model:claude_3.5_sonnet")
        );
        assert_eq!(normalize_tag("9lives:x").as_deref(), Some("lives:x"));
        assert_eq!(normalize_tag("a  &&  b").as_deref(), Some("a_b"));
        assert_eq!(normalize_tag("path:/v1/chat").as_deref(), Some("path:/v1/chat"));
        assert_eq!(normalize_tag("123"), None);
        assert_eq!(normalize_tag("__"), None);
        assert_eq!(normalize_tag("Émoji:😀x").as_deref(), Some("émoji:_x"));
        let long = format!("k:{}", "v".repeat(500));
        assert_eq!(normalize_tag(&long).unwrap().chars().count(), 200);
    }

    #[test]
    fn significant_digits() {
        assert_eq!(format_significant(612.345, 3).unwrap(), "612");
        assert_eq!(format_significant(61.2345, 3).unwrap(), "61.2");
        assert_eq!(format_significant(0.061_26, 3).unwrap(), "0.0613");
        assert_eq!(format_significant(12_345.0, 3).unwrap(), "12300");
        assert_eq!(format_significant(100.0, 3).unwrap(), "100");
        assert_eq!(format_significant(99.96, 3).unwrap(), "100");
        assert_eq!(format_significant(0.0, 3).unwrap(), "0");
        assert_eq!(format_significant(f64::NAN, 3), None);
    }

    #[test]
    fn golden_entries() {
        let tags = vec!["env:prod".to_string(), "model:gpt-4o".to_string()];
        assert_eq!(
            count_entry(
                "steer.llm.requests",
                &tags,
                Some("web-1"),
                1_700_000_000,
                42.0,
                10
            ),
            r#"{"metric":"steer.llm.requests","type":1,"interval":10,"points":[{"timestamp":1700000000,"value":42}],"tags":["env:prod","model:gpt-4o"],"resources":[{"name":"web-1","type":"host"}]}"#
        );
        assert_eq!(
            distribution_entry(
                "steer.llm.latency",
                &tags,
                None,
                1_700_000_000,
                &["612".into(), "61.2".into()]
            ),
            r#"{"metric":"steer.llm.latency","points":[[1700000000,[612,61.2]]],"tags":["env:prod","model:gpt-4o"],"type":"distribution"}"#
        );
        assert_eq!(json_number(0.25), "0.25");
    }

    #[test]
    fn pack_respects_limits_and_keeps_every_entry() {
        let entries: Vec<String> = (0..500)
            .map(|i| count_entry("m", &[format!("k:{i}")], None, 1, i as f64, 10))
            .collect();
        let ids: Vec<usize> = (0..entries.len()).collect();
        for compression in [Compression::Gzip, Compression::Deflate, Compression::None] {
            let limits = Limits {
                max_sent: 2000,
                max_raw: 6000,
                compression,
            };
            let (packed, over) = pack(&entries, &ids, limits);
            assert!(over.is_empty());
            assert!(packed.len() > 1);
            let mut seen: Vec<usize> = packed.iter().flat_map(|p| p.ids.clone()).collect();
            seen.sort_unstable();
            assert_eq!(seen, ids);
            for p in &packed {
                assert!(p.body.len() <= 2000 && p.raw_len <= 6000);
                let v: serde_json::Value = serde_json::from_str(&body_json(&entries, &p.ids)).unwrap();
                assert_eq!(v["series"].as_array().unwrap().len(), p.ids.len());
            }
        }
        let big = vec!["x".repeat(10_000)];
        let (p, over) = pack(
            &big,
            &[0],
            Limits {
                max_sent: 2000,
                max_raw: 6000,
                compression: Compression::Gzip,
            },
        );
        assert!(p.is_empty());
        assert_eq!(over, vec![0]);
    }

    proptest! {
        #[test]
        fn normalized_tags_are_valid_and_stable(s in "\\PC{0,300}") {
            if let Some(t) = normalize_tag(&s) {
                prop_assert!(t.chars().count() <= MAX_TAG_LEN);
                prop_assert!(t.chars().next().unwrap().is_alphabetic());
                prop_assert!(!t.contains("__"));
                prop_assert!(!t.ends_with('_'));
                prop_assert!(t.chars().all(|c| c.is_alphanumeric() || "_-:./".contains(c)));
                prop_assert_eq!(t.to_lowercase(), t.clone());
                prop_assert_eq!(normalize_tag(&t), Some(t));
            }
        }

        #[test]
        fn rounding_error_below_one_percent(v in 1e-6f64..1e9) {
            let s = format_significant(v, 3).unwrap();
            let back: f64 = s.parse().unwrap();
            prop_assert!(((back - v) / v).abs() <= 0.005 + 1e-12, "{} -> {}", v, s);
            let json: serde_json::Value = serde_json::from_str(&s).unwrap();
            prop_assert!(json.is_number());
        }
    }
}
