//! HTTP: one write request, and what its response means.
//!
//! | status | meaning | outcome |
//! |---|---|---|
//! | 204 (any 2xx) | written | [`Ok`] |
//! | 400 / 422 with a parsable partial-write body | some lines rejected | [`WriteError::Lines`] naming them |
//! | 400 / 422 otherwise | rejected, culprits unknown | [`WriteError::Unmapped`] (the sink bisects) |
//! | 413 | too large | [`WriteError::Unmapped`] (the sink bisects) |
//! | 401 / 403 | credentials | [`WriteError::Fatal`] |
//! | 404 | database / bucket / endpoint missing | [`WriteError::Fatal`] with a clear message |
//! | 429, 5xx, timeouts, connection errors | transient | [`WriteError::Transient`] (with `Retry-After`) |

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use steer_metrics::http::{parse_retry_after, request_timeout};
use steer_metrics::redact::truncate_str;
use url::Url;

use crate::config::{Api, ConfigError, InfluxConfig};
use crate::encode::line_has_field;

/// Longest server message kept in an error.
const MAX_MESSAGE: usize = 1024;

/// What went wrong with one write request.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// Worth retrying, possibly after the server's hint.
    Transient {
        retry_after: Option<Duration>,
        message: String,
    },
    /// These lines (indices into the request) were rejected; every other
    /// line was written.
    Lines { bad: Vec<usize>, message: String },
    /// Rejected, and which lines are at fault is unknown.
    Unmapped { message: String },
    /// Nothing of this request (nor of any later one) can be written:
    /// credentials (401/403), missing database or endpoint (404), an answer
    /// no retry or split can fix. Becomes
    /// [`SinkError::misconfigured`](steer_metrics::SinkError::misconfigured).
    Fatal { message: String },
}

/// The write endpoint and credentials.
pub(crate) struct Client {
    http: reqwest::Client,
    write_url: Url,
    auth: Option<HeaderValue>,
    gzip: bool,
    target: String,
    measurement: String,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("write_url", &self.write_url.as_str())
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn new(config: &InfluxConfig) -> Result<Self, ConfigError> {
        let mut url = config.url.clone();
        let precision = config.precision;
        let target;
        {
            let path = url.path().trim_end_matches('/').to_string();
            match &config.api {
                Api::V1 {
                    database,
                    retention_policy,
                } => {
                    url.set_path(&format!("{path}/write"));
                    let mut q = url.query_pairs_mut();
                    q.clear().append_pair("db", database);
                    if let Some(rp) = retention_policy {
                        q.append_pair("rp", rp);
                    }
                    q.append_pair("precision", precision.v1_param());
                    target = format!("database \"{database}\"");
                }
                Api::V2 { org, bucket } => {
                    url.set_path(&format!("{path}/api/v2/write"));
                    url.query_pairs_mut()
                        .clear()
                        .append_pair("org", org)
                        .append_pair("bucket", bucket)
                        .append_pair("precision", precision.v2_param());
                    target = format!("bucket \"{bucket}\" of org \"{org}\"");
                }
            }
        }
        let auth = if let Some(token) = &config.token {
            let mut v = HeaderValue::from_str(&format!("Token {}", token.expose()))
                .map_err(|_| ConfigError::InvalidCredential("token"))?;
            v.set_sensitive(true);
            Some(v)
        } else if let Some(user) = &config.username {
            let pw = config.password.as_ref().map(|p| p.expose()).unwrap_or("");
            let encoded = base64_encode(format!("{user}:{pw}").as_bytes());
            let mut v = HeaderValue::from_str(&format!("Basic {encoded}"))
                .map_err(|_| ConfigError::InvalidCredential("user name or password"))?;
            v.set_sensitive(true);
            Some(v)
        } else {
            None
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(ConfigError::Http)?;
        Ok(Client {
            http,
            write_url: url,
            auth,
            gzip: config.gzip,
            target,
            measurement: config.measurement.clone(),
            timeout: config.timeout,
        })
    }

    /// The full write URL (no credentials are ever in it).
    pub(crate) fn write_url(&self) -> &Url {
        &self.write_url
    }

    /// POST `body` (the newline-terminated lines `lines`, as ranges into
    /// `body`) and classify the answer.
    pub(crate) async fn write(
        &self,
        body: Bytes,
        lines: &[std::ops::Range<usize>],
    ) -> Result<(), WriteError> {
        // One timeout: the sink's own, cut to what is left of the
        // collector's attempt (which cancels the attempt then anyway).
        let mut req = self
            .http
            .post(self.write_url.clone())
            .timeout(request_timeout(self.timeout))
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let req = if self.gzip {
            let compressed = gzip(&body).map_err(|e| WriteError::Transient {
                retry_after: None,
                message: format!("gzip failed: {e}"),
            })?;
            req.header(CONTENT_ENCODING, "gzip").body(compressed)
        } else {
            req.body(body.clone())
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Err(WriteError::Transient {
                    retry_after: None,
                    message: format!("request to {} failed: {}", self.write_url, error_chain(&e)),
                })
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let text = resp.text().await.unwrap_or_default();
        let message = server_message(&text);
        Err(self.classify(status, retry_after, message, &body, lines))
    }

    fn classify(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        message: ServerMessage,
        body: &[u8],
        lines: &[std::ops::Range<usize>],
    ) -> WriteError {
        let text = short(&message.text);
        match status.as_u16() {
            400 | 422 => match map_rejected_lines(&message, body, lines, &self.measurement) {
                Some(bad) => WriteError::Lines {
                    bad,
                    message: format!("InfluxDB rejected lines ({status}): {text}"),
                },
                None => WriteError::Unmapped {
                    message: format!("InfluxDB rejected the write ({status}): {text}"),
                },
            },
            413 => WriteError::Unmapped {
                message: format!("request too large for InfluxDB ({status}): {text}"),
            },
            401 | 403 => WriteError::Fatal {
                message: format!("InfluxDB refused the credentials ({status}): {text}"),
            },
            404 => WriteError::Fatal {
                message: if text.contains("not found")
                    && (text.contains("database") || text.contains("bucket"))
                {
                    format!(
                        "{} does not exist on {} (create it first): {text}",
                        self.target,
                        self.write_url.origin().ascii_serialization()
                    )
                } else {
                    format!(
                        "write endpoint {} not found (404; is this the right API version and {}?): {text}",
                        self.write_url.path(),
                        self.target
                    )
                },
            },
            408 | 429 | 500..=599 => WriteError::Transient {
                retry_after,
                message: format!("InfluxDB answered {status}: {text}"),
            },
            _ => WriteError::Fatal {
                message: format!("InfluxDB answered {status}: {text}"),
            },
        }
    }
}

/// The error text of a response body: `{"error": ..}` (1.x, 3.x),
/// `{"message": ..}` (2.x), or the body itself; plus 3.x's per-line data.
#[derive(Debug, Default)]
pub(crate) struct ServerMessage {
    pub(crate) text: String,
    /// 1-based line numbers reported by InfluxDB 3.
    pub(crate) line_numbers: Vec<usize>,
}

pub(crate) fn server_message(body: &str) -> ServerMessage {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return ServerMessage {
            text: body.trim().to_string(),
            line_numbers: Vec::new(),
        };
    };
    let text = ["error", "message"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|m| m.as_str()))
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().to_string());
    let line_numbers = v
        .get("data")
        .and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get("line_number").and_then(|n| n.as_u64()))
                .filter_map(|n| usize::try_from(n).ok())
                .collect()
        })
        .unwrap_or_default();
    ServerMessage { text, line_numbers }
}

/// Map a 400's message back to the request's lines (indices), or `None`
/// when that cannot be done exactly.
///
/// * InfluxDB 3 lists `line_number`s: exact.
/// * 1.x/2.x quote each unparsable line (`unable to parse 'LINE': why`).
/// * 1.x names a type conflict (`input field "F" on measurement "M" is
///   type T ...`) and the number of points dropped for conflicts
///   (`dropped=N`): the lines with field F conflict; the mapping is exact
///   only if their count is N.
pub(crate) fn map_rejected_lines(
    msg: &ServerMessage,
    body: &[u8],
    lines: &[std::ops::Range<usize>],
    measurement: &str,
) -> Option<Vec<usize>> {
    if !msg.line_numbers.is_empty() {
        let mut bad: Vec<usize> = msg
            .line_numbers
            .iter()
            .filter(|&&n| n >= 1 && n <= lines.len())
            .map(|n| n - 1)
            .collect();
        bad.sort_unstable();
        bad.dedup();
        return (bad.len() == msg.line_numbers.len()).then_some(bad);
    }
    let text = &msg.text;
    let line_text = |i: usize| {
        let r = &lines[i];
        let end = if r.end > r.start && body.get(r.end - 1) == Some(&b'\n') {
            r.end - 1
        } else {
            r.end
        };
        &body[r.start..end]
    };

    // Unparsable lines, quoted by the server.
    let mut parse_bad = Vec::new();
    const PREFIX: &str = "unable to parse '";
    if text.contains(PREFIX) {
        let by_text: HashMap<&[u8], usize> = (0..lines.len()).map(|i| (line_text(i), i)).collect();
        let bytes = text.as_bytes();
        let mut from = 0;
        while let Some(p) = text[from..].find(PREFIX) {
            let start = from + p + PREFIX.len();
            // The line may itself contain "': ": try every candidate end.
            let mut found = None;
            let mut search = start;
            while let Some(q) = text[search..].find("':") {
                let end = search + q;
                if let Some(&i) = by_text.get(&bytes[start..end]) {
                    found = Some((i, end));
                    break;
                }
                search = end + 2;
            }
            match found {
                Some((i, end)) => {
                    parse_bad.push(i);
                    from = end;
                }
                None => return None,
            }
        }
    }

    // Field type conflicts.
    let partial = text.contains("partial write");
    let dropped = text
        .rsplit_once("dropped=")
        .and_then(|(_, n)| n.trim().split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok());
    let mut conflict_bad = Vec::new();
    let mut rest = text.as_str();
    let mut conflicts = 0;
    while let Some(p) = rest.find("input field \"") {
        conflicts += 1;
        let after = &rest[p + "input field \"".len()..];
        let (field, after) = split_quoted(after)?;
        let after = after.strip_prefix(" on measurement \"")?;
        let (meas, after) = split_quoted(after)?;
        rest = after;
        if meas != measurement {
            return None;
        }
        for i in 0..lines.len() {
            if line_has_field(line_text(i), &field) && !conflict_bad.contains(&i) {
                conflict_bad.push(i);
            }
        }
    }
    if conflicts == 0 && text.contains("conflict") {
        return None;
    }
    if partial {
        // 1.x: `dropped=` counts the points refused by the storage layer
        // (type conflicts and the like), not the unparsable ones.
        // 2.x: `partial write error (N written)`.
        let written = text
            .split_once("error (")
            .and_then(|(_, r)| r.split_once(" written)"))
            .and_then(|(n, _)| n.trim().parse::<usize>().ok());
        match (dropped, written) {
            (Some(d), _) if d == conflict_bad.len() => {}
            (None, Some(w)) if conflicts == 0 && w + parse_bad.len() == lines.len() => {}
            _ => return None,
        }
    } else if conflicts > 0 || parse_bad.len() != lines.len() {
        // Not a partial write: nothing was written. Exact only if every
        // line is accounted for as unparsable.
        return None;
    }
    let mut bad = parse_bad;
    bad.extend(conflict_bad);
    bad.sort_unstable();
    bad.dedup();
    if bad.is_empty() {
        return None;
    }
    Some(bad)
}

/// Split `F" rest` on the first unescaped quote (`\"` is a quote inside).
fn split_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
            }
            '"' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

fn short(s: &str) -> String {
    let t = truncate_str(s.trim(), MAX_MESSAGE);
    if t.len() < s.trim().len() {
        format!("{t}...")
    } else {
        t.to_string()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(data)?;
    enc.finish()
}

fn base64_encode(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(lines: &[&str]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let mut body = Vec::new();
        let mut ranges = Vec::new();
        for l in lines {
            let s = body.len();
            body.extend_from_slice(l.as_bytes());
            body.push(b'\n');
            ranges.push(s..body.len());
        }
        (body, ranges)
    }

    fn msg(json: &str) -> ServerMessage {
        server_message(json)
    }

    #[test]
    fn maps_a_v1_type_conflict_to_the_lines_with_that_field() {
        let (body, lines) = req(&[
            "m,model=a latency_ms=1,input_tokens=1i 1",
            "m,model=b latency_ms=2 2",
            "m,model=c latency_ms=3,input_tokens=3i 3",
        ]);
        let m = msg(
            r#"{"error":"partial write: field type conflict: input field \"input_tokens\" on measurement \"m\" is type integer, already exists as type float dropped=2"}"#,
        );
        assert_eq!(map_rejected_lines(&m, &body, &lines, "m"), Some(vec![0, 2]));
        // Count mismatch (another conflict not named): unknown.
        let m = msg(
            r#"{"error":"partial write: field type conflict: input field \"input_tokens\" on measurement \"m\" is type integer, already exists as type float dropped=3"}"#,
        );
        assert_eq!(map_rejected_lines(&m, &body, &lines, "m"), None);
        // Another measurement: not ours to map.
        let m = msg(
            r#"{"error":"partial write: field type conflict: input field \"input_tokens\" on measurement \"x\" is type integer, already exists as type float dropped=2"}"#,
        );
        assert_eq!(map_rejected_lines(&m, &body, &lines, "m"), None);
    }

    #[test]
    fn maps_quoted_unparsable_lines() {
        let (body, lines) = req(&["a f=1 1", "a f=bad': x 2", "a f=3 3", "a g=worse 4"]);
        let m = msg(
            r#"{"error":"partial write: unable to parse 'a f=bad': x 2': invalid boolean\nunable to parse 'a g=worse 4': invalid boolean dropped=0"}"#,
        );
        assert_eq!(map_rejected_lines(&m, &body, &lines, "a"), Some(vec![1, 3]));
        // Not partial and not every line listed: unknown.
        let m = msg(r#"{"error":"unable to parse 'a g=worse 4': invalid boolean"}"#);
        assert_eq!(map_rejected_lines(&m, &body, &lines, "a"), None);
        // Not partial, every line listed: all bad.
        let (body, lines) = req(&["a g=worse 4"]);
        assert_eq!(map_rejected_lines(&m, &body, &lines, "a"), Some(vec![0]));
    }

    #[test]
    fn unknown_conflicts_and_v3_line_numbers() {
        let (body, lines) = req(&["a f=1 1", "a f=2 2"]);
        assert_eq!(
            map_rejected_lines(&msg(r#"{"error":"field type conflict"}"#), &body, &lines, "a"),
            None
        );
        let m = msg(
            r#"{"error":"partial write of line protocol occurred","data":[{"original_line":"a f=2 2","line_number":2,"error_message":"x"}]}"#,
        );
        assert_eq!(map_rejected_lines(&m, &body, &lines, "a"), Some(vec![1]));
        let m = msg(
            r#"{"code":"invalid","message":"partial write error (1 written): unable to parse 'a f=2 2': bad"}"#,
        );
        assert_eq!(map_rejected_lines(&m, &body, &lines, "a"), Some(vec![1]));
        let m = msg(
            r#"{"code":"invalid","message":"partial write error (0 written): unable to parse 'a f=2 2': bad"}"#,
        );
        assert_eq!(map_rejected_lines(&m, &body, &lines, "a"), None);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            parse_retry_after("3", chrono::Utc::now()),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("0.5", chrono::Utc::now()),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", chrono::Utc::now()),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", chrono::Utc::now()), None);
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }
}
