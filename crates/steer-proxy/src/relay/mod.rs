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

mod call;
mod observer;
mod strip;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
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
