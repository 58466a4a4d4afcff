//! The InfluxDB line-protocol encoder on arbitrary records: arbitrary
//! strings (model, provider, tags, error message, measurement), any f64
//! (NaN, ±Inf, subnormals), any u64, any timestamp.
//!
//! Checks: no panic; a line never contains a raw line break outside a quoted
//! string field value (there the encoder keeps them, as InfluxDB does); the
//! line parses back with an independent line-protocol reader into exactly
//! the documented values (normalised names, escaped strings, finite floats
//! only, saturated integers).
#![no_main]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use steer_metrics::{AgentMetrics, ErrorClass, Method};
use steer_sink_influxdb::encode::MAX_STRING_FIELD_BYTES;
use steer_sink_influxdb::{
    normalize_key, normalize_measurement, normalize_name, Attribute, EncodeError, Encoder, Placement,
    Precision,
};

/// Strings biased towards the characters that matter to line protocol.
fn text(u: &mut Unstructured<'_>) -> Result<String> {
    const SPECIAL: [char; 12] = [
        '\\',
        ' ',
        ',',
        '=',
        '"',
        '\n',
        '\r',
        '\t',
        '\0',
        'é',
        '\u{1F600}',
        'x',
    ];
    if u.ratio(1, 2)? {
        let n = u.int_in_range(0..=12)?;
        let mut s = String::new();
        for _ in 0..n {
            s.push(*u.choose(&SPECIAL)?);
        }
        Ok(s)
    } else {
        u.arbitrary()
    }
}

fn float(u: &mut Unstructured<'_>) -> Result<f64> {
    Ok(match u.int_in_range(0..=7)? {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => -0.0,
        4 => f64::MIN_POSITIVE / 2.0,
        5 => f64::from(u.arbitrary::<u32>()?) / 1000.0,
        _ => f64::from_bits(u.arbitrary()?),
    })
}

fn record(u: &mut Unstructured<'_>) -> Result<AgentMetrics> {
    let mut m = AgentMetrics::new(text(u)?, text(u)?);
    m.timestamp = match u.int_in_range(0..=3)? {
        0 => DateTime::<Utc>::MIN_UTC,
        1 => DateTime::<Utc>::MAX_UTC,
        _ => DateTime::from_timestamp(
            u.int_in_range(-20_000_000_000i64..=20_000_000_000)?,
            u.int_in_range(0..=999_999_999)?,
        )
        .unwrap_or(DateTime::UNIX_EPOCH),
    };
    m.method = if u.arbitrary()? {
        Method::Stream
    } else {
        Method::Generate
    };
    m.latency_ms = float(u)?;
    m.ttft_ms = u.arbitrary::<bool>()?.then(|| float(u)).transpose()?;
    m.input_tokens = u.arbitrary()?;
    m.output_tokens = u.arbitrary()?;
    m.cached_tokens = u.arbitrary()?;
    m.cache_write_tokens = u.arbitrary()?;
    m.reasoning_tokens = u.arbitrary()?;
    m.cost_usd = u.arbitrary::<bool>()?.then(|| float(u)).transpose()?;
    m.retries = u.arbitrary()?;
    if u.arbitrary()? {
        m.error_class = Some(*u.choose(&ErrorClass::ALL)?);
        m.error_message = Some(text(u)?);
    }
    m.response_model = u.arbitrary::<bool>()?.then(|| text(u)).transpose()?;
    m.trace_id = u.arbitrary::<bool>()?.then(|| text(u)).transpose()?;
    m.agent_runtime = u.arbitrary::<bool>()?.then(|| text(u)).transpose()?;
    for _ in 0..u.int_in_range(0..=3)? {
        m.tools_used.push(text(u)?);
    }
    m.tools_invoked = u.arbitrary()?;
    m.agent_loop_iters = u.arbitrary()?;
    for _ in 0..u.int_in_range(0..=5)? {
        let k = if u.ratio(1, 6)? {
            (*u.choose(&["model", "time", "_field", "tags", "status", ""])?).to_string()
        } else {
            text(u)?
        };
        m.tags.insert(k, text(u)?);
    }
    m.sample_weight = float(u)?;
    Ok(m)
}

/// A parsed line.
#[derive(Debug)]
struct Line {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: BTreeMap<String, Value>,
    timestamp: i64,
}

#[derive(Debug, PartialEq)]
enum Value {
    Str(String),
    Int(i64),
    Float(f64),
}

/// Scan up to an unescaped byte in `stops` (a backslash skips the next
/// byte, as InfluxDB's scanner does); returns the raw token.
fn scan<'a>(b: &'a [u8], i: &mut usize, stops: &[u8]) -> &'a [u8] {
    let start = *i;
    while *i < b.len() {
        if b[*i] == b'\\' && *i + 1 < b.len() {
            *i += 2;
            continue;
        }
        if stops.contains(&b[*i]) {
            break;
        }
        *i += 1;
    }
    &b[start..(*i).min(b.len())]
}

/// Remove the backslash before the escapable bytes (InfluxDB's unescape).
fn unescape(t: &[u8], escapable: &[u8]) -> String {
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        if t[i] == b'\\' && i + 1 < t.len() && escapable.contains(&t[i + 1]) {
            out.push(t[i + 1]);
            i += 2;
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("the line is valid UTF-8")
}

fn parse(line: &[u8]) -> std::result::Result<Line, String> {
    let mut i = 0;
    let m = scan(line, &mut i, b", \n\r");
    let measurement = unescape(m, b", ");
    let mut tags = Vec::new();
    while i < line.len() && line[i] == b',' {
        i += 1;
        let k = scan(line, &mut i, b"=, \n\r");
        if line.get(i) != Some(&b'=') {
            return Err(format!("tag without `=` at {i}"));
        }
        i += 1;
        let v = scan(line, &mut i, b", \n\r");
        if k.is_empty() || v.is_empty() {
            return Err("empty tag key or value".into());
        }
        tags.push((unescape(k, b", ="), unescape(v, b", =")));
    }
    if line.get(i) != Some(&b' ') {
        return Err(format!("expected a space before the fields at {i}"));
    }
    i += 1;
    let mut fields = BTreeMap::new();
    loop {
        let k = scan(line, &mut i, b"=, \n\r");
        if line.get(i) != Some(&b'=') || k.is_empty() {
            return Err(format!("field without key or `=` at {i}"));
        }
        i += 1;
        let key = unescape(k, b", =");
        let value = if line.get(i) == Some(&b'"') {
            i += 1;
            let start = i;
            while i < line.len() && line[i] != b'"' {
                i += if line[i] == b'\\' { 2 } else { 1 };
            }
            if i >= line.len() {
                return Err("unterminated string".into());
            }
            let v = unescape(&line[start..i], b"\"\\");
            i += 1;
            Value::Str(v)
        } else {
            let t = scan(line, &mut i, b", \n\r");
            let t = std::str::from_utf8(t).map_err(|e| e.to_string())?;
            if let Some(n) = t.strip_suffix('i') {
                Value::Int(n.parse().map_err(|e| format!("int `{t}`: {e}"))?)
            } else {
                let f: f64 = t.parse().map_err(|e| format!("float `{t}`: {e}"))?;
                if !f.is_finite() {
                    return Err(format!("non-finite float `{t}`"));
                }
                Value::Float(f)
            }
        };
        if fields.insert(key.clone(), value).is_some() {
            return Err(format!("duplicate field `{key}`"));
        }
        match line.get(i) {
            Some(b',') => i += 1,
            Some(b' ') => break,
            other => return Err(format!("after field `{key}`: {other:?}")),
        }
    }
    i += 1;
    let ts = std::str::from_utf8(&line[i..]).map_err(|e| e.to_string())?;
    let timestamp = ts.parse().map_err(|e| format!("timestamp `{ts}`: {e}"))?;
    Ok(Line {
        measurement,
        tags,
        fields,
        timestamp,
    })
}

fn check(enc: &Encoder, m: &AgentMetrics, user_tags_as_tags: bool) {
    let mut out = Vec::new();
    match enc.encode(m, &mut out) {
        Err(EncodeError::TimestampOutOfRange(_)) | Err(EncodeError::NoFields) => {
            assert!(out.is_empty(), "bytes appended on error");
            return;
        }
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(()) => {}
    }
    // InfluxDB skips lines starting with `#` (comments).
    assert_ne!(
        out.first(),
        Some(&b'#'),
        "line reads as a comment: {:?}",
        String::from_utf8_lossy(&out)
    );
    let line = match parse(&out) {
        Ok(l) => l,
        Err(e) => panic!(
            "line does not parse back ({e}): {:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    // No raw line break outside quoted strings: `parse` stops at one, so it
    // must have consumed the whole line (the timestamp parse would fail).
    assert_eq!(line.measurement, enc.measurement(), "measurement");
    assert!(
        line.tags.windows(2).all(|w| w[0].0 < w[1].0),
        "tags sorted and unique: {:?}",
        line.tags
    );
    let tag = |k: &str| line.tags.iter().find(|(tk, _)| tk == k).map(|(_, v)| v.as_str());
    for (k, v) in [("model", &m.model), ("provider", &m.provider)] {
        let n = normalize_name(v);
        if n.is_empty() {
            assert_eq!(tag(k), None, "{k}");
        } else {
            assert_eq!(tag(k), Some(&*n), "{k}");
        }
    }
    assert_eq!(tag("method"), Some(m.method.as_str()));
    assert_eq!(tag("status"), Some(m.status()));
    if user_tags_as_tags {
        // User tags whose normalised key is unique, not built in, with a
        // non-empty value, read back exactly.
        let mut by_key: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (k, v) in &m.tags {
            by_key.entry(normalize_key(k).into_owned()).or_default().push(v);
        }
        for (k, vs) in &by_key {
            if k.is_empty() || Attribute::is_builtin_key(k) {
                continue;
            }
            let n = normalize_name(vs[0]);
            if vs.len() == 1 && !n.is_empty() {
                assert_eq!(tag(k), Some(&*n), "user tag {k:?}");
            }
        }
    }
    match &m.error_message {
        Some(msg) => {
            let mut cut = MAX_STRING_FIELD_BYTES.min(msg.len());
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            assert_eq!(
                line.fields.get("error_message"),
                Some(&Value::Str(msg[..cut].to_string()))
            );
        }
        None => assert!(!line.fields.contains_key("error_message")),
    }
    match line.fields.get("latency_ms") {
        Some(Value::Float(f)) => assert!(*f == m.latency_ms, "latency {f} != {}", m.latency_ms),
        Some(other) => panic!("latency_ms {other:?}"),
        None => assert!(!m.latency_ms.is_finite(), "finite latency dropped"),
    }
    let sat = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    assert_eq!(
        line.fields.get("input_tokens"),
        Some(&Value::Int(sat(m.input_tokens)))
    );
    assert_eq!(
        line.fields.get("total_tokens"),
        Some(&Value::Int(sat(m.input_tokens.saturating_add(m.output_tokens))))
    );
    let _ = line.timestamp;
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(measurement) = text(&mut u) else { return };
    let Ok(m) = record(&mut u) else { return };

    // The default placement.
    let enc = Encoder::new(&measurement, Precision::Nanoseconds);
    assert_eq!(enc.measurement(), normalize_measurement(&measurement));
    if enc.measurement().is_empty() || enc.measurement().starts_with('#') {
        // `Encoder::new` takes the name as given (the config builder rejects
        // these two: no measurement, or a line read as a comment).
        return;
    }
    check(&enc, &m, true);
    for p in [
        Precision::Microseconds,
        Precision::Milliseconds,
        Precision::Seconds,
    ] {
        check(&Encoder::new(&measurement, p), &m, true);
    }

    // Another placement: user tags as fields with a prefix, text as tags.
    let Ok(prefix) = text(&mut u) else { return };
    let cfg = steer_sink_influxdb::InfluxConfig::builder("http://127.0.0.1:8086")
        .database("db")
        .measurement(measurement.clone())
        .place(Attribute::ErrorMessage, Placement::Field)
        .place(Attribute::TraceId, Placement::Tag)
        .place(Attribute::UserTags, Placement::Field)
        .user_tag_prefix(prefix)
        .build();
    if let Ok(cfg) = cfg {
        check(&Encoder::from_config(&cfg), &m, false);
    }
});
