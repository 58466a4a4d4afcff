//! Relaying an upstream response to the client while measuring it.
//!
//! [`Relay`] is the response body the client reads. It hands every
//! upstream chunk on as it arrives (never waiting for the whole body) and
//! gives a copy to an [`Observer`]:
//!
//! * server-sent events go through [`SseParser`] and the provider's
//!   [`StreamDecoder`]: the first event carrying output of any kind sets
//!   TTFT; the decoder's final answer gives usage, finish reason and tools;
//! * a JSON answer is kept (up to a cap) and parsed at the end with
//!   [`wire::parse_response`] (or, for embeddings, its `usage`);
//! * an error answer is classified with [`wire::parse_error`].
//!
//! The [`Call`] owns the record. It is written exactly once: when the body
//! ends, when the upstream fails or goes silent (`network` / `timeout`), or,
//! if the body is dropped first (the client went away), on drop with class
//! `cancelled`. Dropping the relay drops the upstream response, which closes
//! the upstream connection: the provider stops generating.
//!
//! When the proxy asked an OpenAI stream for usage the client did not ask
//! for, the relay cuts the body at event boundaries and leaves out the
//! usage-only chunk (`"choices":[]` with a `usage` object); every other
//! byte passes unchanged.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use serde_json::Value;
use steer::pricing::PriceTable;
use steer::sse::{SseEvent, SseParser};
use steer::wire::{self, Completion, Dialect, StreamDecoder};
use steer_metrics::{AgentMetrics, ErrorClass, MetricsCollector};
use tokio::sync::OwnedSemaphorePermit;

/// Most bytes of a JSON answer kept to measure it.
pub const MAX_OBSERVED_BODY: usize = 64 * 1024 * 1024;
/// Most bytes of an error answer kept to classify it.
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// One measured call: its record, written exactly once.
pub(crate) struct Call {
    collector: MetricsCollector,
    prices: Arc<PriceTable>,
    record: Option<AgentMetrics>,
    started: Instant,
    ttft_ms: Option<f64>,
    /// Keys to mask in error messages (the client's or the provider's).
    keys: Vec<String>,
    _in_flight: crate::InFlightGuard,
}

impl Call {
    pub(crate) fn new(
        collector: MetricsCollector,
        prices: Arc<PriceTable>,
        record: AgentMetrics,
        started: Instant,
        in_flight: &crate::InFlight,
    ) -> Self {
        Call {
            _in_flight: in_flight.enter(),
            collector,
            prices,
            record: Some(record),
            started,
            ttft_ms: None,
            keys: Vec::new(),
        }
    }

    pub(crate) fn request_id(&self) -> Option<uuid::Uuid> {
        self.record.as_ref().map(|m| m.request_id)
    }

    pub(crate) fn mask_key(&mut self, key: &str) {
        let key = key.trim();
        if key.len() >= 8 {
            self.keys.push(key.to_string());
        }
    }

    fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    fn first_output(&mut self) {
        if self.ttft_ms.is_none() {
            self.ttft_ms = Some(self.elapsed_ms());
        }
    }

    fn take(&mut self) -> Option<AgentMetrics> {
        let mut m = self.record.take()?;
        m.latency_ms = self.elapsed_ms();
        m.ttft_ms = self.ttft_ms;
        m.retries = 0;
        Some(m)
    }

    /// The call succeeded with this answer.
    pub(crate) fn succeed(&mut self, c: &Completion) {
        let Some(mut m) = self.take() else { return };
        steer::measure::apply_completion(&mut m, c, &self.prices);
        if m.response_model.is_none() {
            m.response_model = Some(m.model.clone());
        }
        if let Some(class) = wire::content_error(c) {
            m.error_class = Some(class);
            m.error_message = Some(format!(
                "the provider stopped the answer ({})",
                c.finish_reason.as_deref().unwrap_or("content filter")
            ));
        }
        self.collector.record(m);
    }

    /// The call failed; `partial` is what was measured of the answer.
    pub(crate) fn fail(&mut self, class: ErrorClass, message: &str, partial: Option<&Completion>) {
        let Some(mut m) = self.take() else { return };
        if let Some(c) = partial {
            steer::measure::apply_completion(&mut m, c, &self.prices);
        }
        m.error_class = Some(class);
        m.error_message = Some(truncate(&mask_keys(message, &self.keys), 200));
        tracing::debug!(provider = %m.provider, model = %m.model, %class, "proxied call failed");
        self.collector.record(m);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.record.is_some() {
            self.fail(
                ErrorClass::Cancelled,
                "the client went away before the answer was complete",
                None,
            );
        }
    }
}

/// Mask the given keys and anything shaped like a provider key
/// (`sk-...`, `xai-...`) in a provider's message.
pub(crate) fn mask_keys(message: &str, keys: &[String]) -> String {
    let mut s = message.to_string();
    for k in keys {
        if !k.is_empty() {
            s = s.replace(k.as_str(), "***");
        }
    }
    s.split(' ')
        .map(|w| {
            if (w.starts_with("sk-") || w.starts_with("xai-")) && w.len() > 8 {
                "***"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// What kind of answer the body is.
pub(crate) enum Observer {
    /// Server-sent events.
    Sse {
        parser: SseParser,
        decoder: Option<StreamDecoder>,
        events: Vec<SseEvent>,
        /// The first error the stream carried.
        error: Option<wire::WireError>,
    },
    /// A JSON answer (2xx).
    Json {
        dialect: Dialect,
        embeddings: bool,
        buf: Vec<u8>,
        overflow: bool,
    },
    /// An error answer (status >= 400).
    Error { status: u16, buf: Vec<u8> },
}

impl Observer {
    pub(crate) fn sse(dialect: Dialect) -> Self {
        Observer::Sse {
            parser: SseParser::default(),
            decoder: Some(StreamDecoder::new(dialect)),
            events: Vec::new(),
            error: None,
        }
    }

    pub(crate) fn json(dialect: Dialect, embeddings: bool) -> Self {
        Observer::Json {
            dialect,
            embeddings,
            buf: Vec::new(),
            overflow: false,
        }
    }

    pub(crate) fn error(status: u16) -> Self {
        Observer::Error {
            status,
            buf: Vec::new(),
        }
    }

    fn feed(&mut self, chunk: &[u8], call: &mut Call) {
        match self {
            Observer::Sse {
                parser,
                decoder,
                events,
                error,
            } => {
                if parser.feed(chunk, events).is_err() {
                    // A line beyond the parser's cap: stop measuring, keep relaying.
                    if error.is_none() {
                        *error = Some(wire::parse_error(502, b"{}"));
                    }
                    *decoder = None;
                }
                for ev in events.drain(..) {
                    let Some(d) = decoder.as_mut() else { break };
                    match d.on_event(ev) {
                        Ok(c) if c.is_output() => call.first_output(),
                        Ok(_) => {}
                        Err(e) => {
                            *error = Some(e);
                            *decoder = None;
                        }
                    }
                }
            }
            Observer::Json { buf, overflow, .. } => {
                if buf.len() + chunk.len() > MAX_OBSERVED_BODY {
                    *overflow = true;
                } else if !*overflow {
                    buf.extend_from_slice(chunk);
                }
            }
            Observer::Error { buf, .. } => {
                let room = MAX_ERROR_BODY.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
        }
    }

    /// The body ended: write the record.
    fn finish(self, call: &mut Call) {
        match self {
            Observer::Sse { decoder, error, .. } => {
                if let Some(e) = error {
                    return call.fail(e.class, &e.message, None);
                }
                match decoder.map(StreamDecoder::finish) {
                    Some(Ok(c)) => call.succeed(&c),
                    Some(Err(e)) => call.fail(e.class, &e.message, None),
                    None => call.fail(ErrorClass::Unknown, "the stream could not be decoded", None),
                }
            }
            Observer::Json {
                dialect,
                embeddings,
                buf,
                overflow,
            } => {
                if overflow {
                    tracing::warn!(
                        limit = MAX_OBSERVED_BODY,
                        "answer too large to measure; recorded without usage"
                    );
                    return call.succeed(&Completion::default());
                }
                if embeddings {
                    return call.succeed(&embeddings_completion(dialect, &buf));
                }
                match wire::parse_response(dialect, &buf) {
                    Ok(c) => call.succeed(&c),
                    Err(e) => call.fail(e.class, &e.message, None),
                }
            }
            Observer::Error { status, buf } => {
                let e = wire::parse_error(status, &buf);
                call.fail(e.class, &e.message, None);
            }
        }
    }
}

/// The measured part of an embeddings answer: its usage and model.
fn embeddings_completion(dialect: Dialect, body: &[u8]) -> Completion {
    let mut c = Completion::default();
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(u) = v.get("usage") {
            c.usage = wire::usage(dialect, u);
        }
        c.response_model = v.get("model").and_then(Value::as_str).map(str::to_string);
    }
    c
}

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
    fn push(&mut self, chunk: &[u8]) -> Bytes {
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
    fn rest(&mut self) -> Bytes {
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

type Upstream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The response body the client reads: upstream bytes as they arrive,
/// measured on the way.
pub(crate) struct Relay {
    upstream: Upstream,
    idle: Pin<Box<tokio::time::Sleep>>,
    idle_timeout: Duration,
    observer: Option<Observer>,
    strip: Option<UsageStripper>,
    call: Call,
    done: bool,
    /// Bytes still to come when the upstream announced a length: the
    /// server stops polling a body once that many bytes were sent.
    remaining: Option<u64>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Relay {
    pub(crate) fn new(
        resp: reqwest::Response,
        observer: Observer,
        strip_usage: bool,
        call: Call,
        idle_timeout: Duration,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        let remaining = (!strip_usage).then(|| resp.content_length()).flatten();
        Relay {
            remaining,
            upstream: Box::pin(resp.bytes_stream()),
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
            observer: Some(observer),
            strip: strip_usage.then(UsageStripper::default),
            call,
            done: false,
            _permit: permit,
        }
    }

    fn observe(&mut self, chunk: &[u8]) {
        if let Some(o) = self.observer.as_mut() {
            o.feed(chunk, &mut self.call);
        }
    }

    fn end(&mut self) {
        self.done = true;
        if let Some(o) = self.observer.take() {
            o.finish(&mut self.call);
        }
    }

    fn fail(&mut self, class: ErrorClass, message: &str) -> io::Error {
        self.done = true;
        self.observer = None;
        self.call.fail(class, message, None);
        io::Error::other(message.to_string())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Dropped after the provider's final event (e.g. the server had
        // sent everything): the answer is complete, not cancelled.
        if !self.done {
            if let Some(Observer::Sse { decoder: Some(d), .. }) = &self.observer {
                if d.is_done() {
                    self.end();
                }
            }
        }
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let deadline = tokio::time::Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    this.observe(&chunk);
                    if let Some(r) = this.remaining.as_mut() {
                        *r = r.saturating_sub(chunk.len() as u64);
                        if *r == 0 {
                            // The whole announced body: measure now (the
                            // server will not ask for the end).
                            this.end();
                        }
                    }
                    let out = match this.strip.as_mut() {
                        Some(s) => s.push(&chunk),
                        None => chunk,
                    };
                    if out.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(out)));
                }
                Poll::Ready(Some(Err(e))) => {
                    let (class, what) = if e.is_timeout() {
                        (ErrorClass::Timeout, "the upstream response timed out")
                    } else {
                        (ErrorClass::Network, "the upstream response was cut short")
                    };
                    tracing::debug!(error = %e, "upstream body failed");
                    return Poll::Ready(Some(Err(this.fail(class, what))));
                }
                Poll::Ready(None) => {
                    let rest = this.strip.as_mut().map(UsageStripper::rest);
                    this.end();
                    return match rest {
                        Some(r) if !r.is_empty() => Poll::Ready(Some(Ok(r))),
                        _ => Poll::Ready(None),
                    };
                }
                Poll::Pending => {
                    if this.idle.as_mut().poll(cx).is_ready() {
                        let msg = format!(
                            "the upstream sent nothing for {} ms",
                            this.idle_timeout.as_millis()
                        );
                        return Poll::Ready(Some(Err(this.fail(ErrorClass::Timeout, &msg))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
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

    #[test]
    fn masks_keys_in_messages() {
        let m = mask_keys(
            "Incorrect API key provided: sk-VKMIs1234567. Or my-key-12345678",
            &["my-key-12345678".into()],
        );
        assert_eq!(m, "Incorrect API key provided: *** Or ***");
    }
}
