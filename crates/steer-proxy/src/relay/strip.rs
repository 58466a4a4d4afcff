//! Leaving out the usage-only chunk of an OpenAI stream the proxy asked
//! usage for (the client did not).

use bytes::{Bytes, BytesMut};
use serde_json::Value;

/// Cuts a byte stream at server-sent event boundaries and leaves out the
/// usage-only chunks of an OpenAI stream.
#[derive(Default)]
pub(crate) struct UsageStripper {
    buf: BytesMut,
    /// Bytes of `buf` already scanned (no boundary in them).
    scanned: usize,
    /// Whether the line being scanned is empty so far.
    line_empty: bool,
    started: bool,
}

impl UsageStripper {
    /// Add a chunk; returns the complete events to send on.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.buf.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while let Some(end) = self.next_boundary() {
            let event = self.buf.split_to(end).freeze();
            self.scanned = 0;
            if !is_usage_only(&event) {
                out.extend_from_slice(&event);
            }
        }
        out.freeze()
    }

    /// The end of the first complete event in `buf` (after its blank line).
    fn next_boundary(&mut self) -> Option<usize> {
        if !self.started {
            self.started = true;
            self.line_empty = true;
        }
        let b = &self.buf;
        let mut i = self.scanned;
        while i < b.len() {
            match b[i] {
                b'\n' | b'\r' => {
                    let mut end = i + 1;
                    if b[i] == b'\r' {
                        if end == b.len() {
                            // A CR at the end: wait to see whether LF follows.
                            self.scanned = i;
                            return None;
                        }
                        if b[end] == b'\n' {
                            end += 1;
                        }
                    }
                    if self.line_empty {
                        self.line_empty = true;
                        return Some(end);
                    }
                    self.line_empty = true;
                    i = end;
                }
                _ => {
                    self.line_empty = false;
                    i += 1;
                }
            }
        }
        self.scanned = i;
        None
    }

    /// What is left when the stream ends (an unterminated event).
    pub(super) fn rest(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

/// Whether an event block is an OpenAI usage-only chunk.
fn is_usage_only(event: &[u8]) -> bool {
    const MARK: &[u8] = b"\"choices\":[]";
    if !event.windows(MARK.len()).any(|w| w == MARK) {
        return false;
    }
    let mut data = Vec::new();
    for line in event.split(|&b| b == b'\n' || b == b'\r') {
        if let Some(d) = line.strip_prefix(b"data:") {
            data.extend_from_slice(d.strip_prefix(b" ").unwrap_or(d));
        }
    }
    let Ok(v) = serde_json::from_slice::<Value>(&data) else {
        return false;
    };
    v.get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && v.get("usage").is_some_and(Value::is_object)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn strip_all(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = UsageStripper::default();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&s.push(c));
        }
        out.extend_from_slice(&s.rest());
        out
    }

    const STREAM: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn strips_only_the_usage_chunk_whatever_the_chunking() {
        let want: &[u8] =
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\ndata: [DONE]\n\n";
        assert_eq!(strip_all(&[STREAM]), want);
        for cut in 0..STREAM.len() {
            let (a, b) = STREAM.split_at(cut);
            assert_eq!(strip_all(&[a, b]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(strip_all(&bytes), want);
    }

    #[test]
    fn crlf_events_and_unterminated_tails_pass() {
        let s = b"data: {\"choices\":[],\"usage\":{\"a\":1}}\r\n\r\ndata: x\r\n\r\ndata: tail";
        assert_eq!(strip_all(&[s]), b"data: x\r\n\r\ndata: tail");
        // A choices-less chunk without usage is not usage-only.
        let s = b"data: {\"choices\":[],\"usage\":null}\n\n";
        assert_eq!(strip_all(&[s]), s);
    }
}
