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
//! Until the first output event has passed, every chunk goes to the
//! client at once. After it, chunks that arrive together leave together:
//! the upstream connection hands its body over one chunk (one SSE event)
//! per poll, so after a chunk the relay yields up to [`MAX_YIELDS`] times
//! while more keeps coming, holding at most [`MAX_HELD`] bytes, and the
//! server then writes the burst at once — one write per burst rather than
//! one per event, which costs the proxy and its client less CPU. Events
//! the upstream sends apart are relayed apart.
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

mod call;
mod observer;
mod strip;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use steer_metrics::ErrorClass;
use tokio::sync::OwnedSemaphorePermit;

pub(crate) use call::Call;
pub(crate) use observer::Observer;
pub use observer::MAX_OBSERVED_BODY;
use strip::UsageStripper;

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
    /// Bytes received and not yet handed to the server.
    held: Held,
    /// How often the relay yielded since the last chunk, holding bytes.
    yielded: u8,
    /// The error to end the body with, once the held bytes are sent.
    error: Option<io::Error>,
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
            held: Held::default(),
            yielded: 0,
            error: None,
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

/// Most bytes held back to join a burst of chunks into one write.
const MAX_HELD: usize = 64 * 1024;
/// Most yields, with bytes held, waiting for the next chunk of a burst.
const MAX_YIELDS: u8 = 3;

/// Chunks received together, joined (a single chunk is not copied).
#[derive(Default)]
struct Held {
    one: Option<Bytes>,
    joined: BytesMut,
}

impl Held {
    fn push(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        match self.one.take() {
            None if self.joined.is_empty() => self.one = Some(b),
            first => {
                if let Some(f) = first {
                    self.joined.extend_from_slice(&f);
                }
                self.joined.extend_from_slice(&b);
            }
        }
    }

    fn len(&self) -> usize {
        self.one.as_ref().map_or(self.joined.len(), Bytes::len)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take(&mut self) -> Option<Bytes> {
        if let Some(b) = self.one.take() {
            return Some(b);
        }
        (!self.joined.is_empty()).then(|| self.joined.split().freeze())
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
                if let Some(b) = this.held.take() {
                    return Poll::Ready(Some(Ok(b)));
                }
                return Poll::Ready(this.error.take().map(Err));
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
                    this.held.push(out);
                    this.yielded = 0;
                    if this.held.len() >= MAX_HELD {
                        if let Some(b) = this.held.take() {
                            return Poll::Ready(Some(Ok(b)));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let (class, what) = if e.is_timeout() {
                        (ErrorClass::Timeout, "the upstream response timed out")
                    } else {
                        (ErrorClass::Network, "the upstream response was cut short")
                    };
                    // Without the URL: a Gemini URL may carry the client's `key`.
                    tracing::debug!(error = %e.without_url(), "upstream body failed");
                    this.error = Some(this.fail(class, what));
                }
                Poll::Ready(None) => {
                    if let Some(rest) = this.strip.as_mut().map(UsageStripper::rest) {
                        this.held.push(rest);
                    }
                    this.end();
                }
                Poll::Pending => {
                    if this.idle.as_mut().poll(cx).is_ready() {
                        let msg = format!(
                            "the upstream sent nothing for {} ms",
                            this.idle_timeout.as_millis()
                        );
                        this.error = Some(this.fail(ErrorClass::Timeout, &msg));
                        continue;
                    }
                    if this.held.is_empty() {
                        return Poll::Pending;
                    }
                    if this.yielded < MAX_YIELDS && this.call.output_seen() {
                        // Let the upstream connection hand over what it
                        // has already read before the server writes.
                        this.yielded += 1;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    this.yielded = 0;
                    if let Some(b) = this.held.take() {
                        return Poll::Ready(Some(Ok(b)));
                    }
                }
            }
        }
    }
}
