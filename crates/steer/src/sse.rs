//! A server-sent events parser that takes bytes as they arrive.
//!
//! Follows the WHATWG event-stream rules: lines end with CRLF, LF or CR
//! (also when split across chunks); `data:` fields accumulate (joined by
//! `\n`); `event:` names the event; `id:` sets the id; lines starting with
//! `:` are comments; a blank line dispatches. Invalid UTF-8 is replaced, never
//! a panic; a line longer than the limit is an error rather than unbounded
//! memory.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` name, if one was given (`message` by default per the spec).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The last `id:` seen.
    pub id: Option<String>,
}

/// A line exceeded the parser's limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server-sent event line longer than {0} bytes")]
pub struct LineTooLong(pub usize);

/// Incremental parser. Feed chunks with [`feed`](SseParser::feed).
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    pending_cr: bool,
    started: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    max_line: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(16 * 1024 * 1024)
    }
}

impl SseParser {
    /// A parser refusing lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        SseParser {
            line: Vec::new(),
            pending_cr: false,
            started: false,
            data: String::new(),
            has_data: false,
            event: None,
            id: None,
            max_line,
        }
    }

    /// Parse a chunk, appending complete events to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), LineTooLong> {
        if self.pending_cr {
            self.pending_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    self.push_line_bytes(&chunk[..i])?;
                    let was_cr = chunk[i] == b'\r';
                    chunk = &chunk[i + 1..];
                    if was_cr {
                        if chunk.is_empty() {
                            self.pending_cr = true;
                        } else if chunk[0] == b'\n' {
                            chunk = &chunk[1..];
                        }
                    }
                    self.end_line(out);
                }
                None => {
                    self.push_line_bytes(chunk)?;
                    chunk = &[];
                }
            }
        }
        Ok(())
    }

    /// Whether bytes of an unfinished event are buffered (the stream ended
    /// mid-event if it stops here).
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn push_line_bytes(&mut self, b: &[u8]) -> Result<(), LineTooLong> {
        if self.line.len() + b.len() > self.max_line {
            self.line.clear();
            return Err(LineTooLong(self.max_line));
        }
        self.line.extend_from_slice(b);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let mut line: &[u8] = &self.line;
        if !self.started {
            self.started = true;
            if let Some(rest) = line.strip_prefix(b"\xEF\xBB\xBF") {
                line = rest;
            }
        }
        if line.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                if data.ends_with('\n') {
                    data.pop();
                }
                out.push(SseEvent {
                    event: self.event.take(),
                    data,
                    id: self.id.clone(),
                });
                self.has_data = false;
            } else {
                self.event = None;
            }
            self.line.clear();
            return;
        }
        if line[0] != b':' {
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &b""[..]),
            };
            match name {
                b"data" => {
                    self.data.push_str(&String::from_utf8_lossy(value));
                    self.data.push('\n');
                    self.has_data = true;
                }
                b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
                b"id" if !value.contains(&0) => self.id = Some(String::from_utf8_lossy(value).into_owned()),
                _ => {}
            }
        }
        self.line.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
            id: None,
        }
    }

    #[test]
    fn basic_events_names_comments_and_multiline_data() {
        let out = parse_all(&[b": comment\nevent: message_start\ndata: {\"a\":1}\n\ndata: line1\ndata: line2\n\ndata:no-space\n\n"]);
        assert_eq!(
            out,
            vec![
                ev(Some("message_start"), "{\"a\":1}"),
                ev(None, "line1\nline2"),
                ev(None, "no-space")
            ]
        );
    }

    #[test]
    fn crlf_cr_and_splits_anywhere() {
        let text = b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\n";
        let expected = vec![ev(Some("a"), "1"), ev(Some("b"), "2"), ev(None, "3")];
        assert_eq!(parse_all(&[text]), expected);
        for split in 0..text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(parse_all(&[a, b]), expected, "split at {split}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(parse_all(&bytes), expected);
    }

    #[test]
    fn partial_events_are_not_dispatched() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        p.feed(b"data: {\"trunc", &mut out).unwrap();
        assert!(out.is_empty());
        assert!(p.has_partial());
        p.feed(b"ated\"}\n", &mut out).unwrap();
        assert!(out.is_empty());
        assert!(p.has_partial());
        p.feed(b"\n", &mut out).unwrap();
        assert_eq!(out, vec![ev(None, "{\"truncated\"}")]);
        assert!(!p.has_partial());
    }

    #[test]
    fn bom_ids_empty_data_and_unknown_fields() {
        let out = parse_all(&[b"\xEF\xBB\xBFid: 7\nretry: 10\nfoo: bar\ndata\n\nevent: lonely\n\n"]);
        assert_eq!(
            out,
            vec![SseEvent {
                event: None,
                data: String::new(),
                id: Some("7".into())
            }]
        );
    }

    #[test]
    fn long_lines_are_refused() {
        let mut p = SseParser::new(8);
        let mut out = Vec::new();
        assert_eq!(p.feed(b"data: 0123456789", &mut out), Err(LineTooLong(8)));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut p = SseParser::new(256);
            let mut out = Vec::new();
            for c in &chunks {
                let _ = p.feed(c, &mut out);
            }
            let _ = p.has_partial();
        }

        #[test]
        fn chunking_does_not_change_the_events(text in "(data: [a-z{}\":]{0,8}\r?\n|event: [a-z_]{1,6}\n|: c\n|\r?\n){0,20}", cut in 0usize..200) {
            let bytes = text.as_bytes();
            let whole = parse_all(&[bytes]);
            let cut = cut.min(bytes.len());
            let (a, b) = bytes.split_at(cut);
            prop_assert_eq!(parse_all(&[a, b]), whole);
        }
    }
}
