//! Streamed attempts and the [`ResponseStream`] a caller polls.

#[allow(clippy::wildcard_imports)]
use super::*;

/// One streamed attempt.
pub(super) enum AttemptStream {
    Http {
        resp: reqwest::Response,
        parser: SseParser,
        decoder: Box<dyn Decoder>,
        pending: VecDeque<SseEvent>,
        read: usize,
        limit: usize,
        eof: bool,
    },
    Sim {
        deltas: VecDeque<(Duration, String)>,
        completion: Completion,
    },
    #[cfg(feature = "bedrock")]
    Bedrock(Box<crate::providers::bedrock::BedrockStream>),
}

impl AttemptStream {
    /// Whether the next delta is a simulated one due without waiting.
    fn next_is_instant(&self) -> bool {
        match self {
            AttemptStream::Sim { deltas, .. } => deltas.front().is_none_or(|(wait, _)| wait.is_zero()),
            _ => false,
        }
    }

    /// The next model output (text, or output of another kind such as
    /// thinking or a tool-call delta); `None` at the end of the answer.
    async fn next_delta(&mut self, timeout: Duration) -> Result<Option<Chunk>, AttemptError> {
        match self {
            AttemptStream::Sim { deltas, .. } => {
                while let Some((wait, text)) = deltas.pop_front() {
                    sleep(wait).await;
                    if !text.is_empty() {
                        return Ok(Some(Chunk::Text(text)));
                    }
                }
                Ok(None)
            }
            #[cfg(feature = "bedrock")]
            AttemptStream::Bedrock(stream) => stream.next().await,
            AttemptStream::Http {
                resp,
                parser,
                decoder,
                pending,
                read,
                limit,
                eof,
            } => loop {
                while let Some(ev) = pending.pop_front() {
                    let chunk = decoder.on_event(ev)?;
                    if chunk.is_output() {
                        return Ok(Some(chunk));
                    }
                }
                if decoder.is_done() || *eof {
                    return Ok(None);
                }
                match resp.chunk().await {
                    Ok(Some(bytes)) => {
                        *read += bytes.len();
                        if *read > *limit {
                            return Err(AttemptError::invalid(format!(
                                "stream larger than the limit of {limit} bytes"
                            )));
                        }
                        let mut out = Vec::new();
                        parser
                            .feed(&bytes, &mut out)
                            .map_err(|e| AttemptError::invalid(e.to_string()))?;
                        pending.extend(out);
                    }
                    Ok(None) => *eof = true,
                    Err(e) => return Err(AttemptError::from_reqwest(&e, timeout)),
                }
            },
        }
    }

    fn finish(self) -> Result<Completion, AttemptError> {
        match self {
            AttemptStream::Sim { completion, .. } => Ok(completion),
            AttemptStream::Http { decoder, .. } => decoder.finish(),
            #[cfg(feature = "bedrock")]
            AttemptStream::Bedrock(stream) => stream.finish(),
        }
    }
}

pub(super) struct StreamState {
    pub(super) call: Call,
    pub(super) target: Target,
    pub(super) attempt: Option<AttemptStream>,
    pub(super) delivered: bool,
}

enum Step {
    Item(StreamEvent),
    Last(Result<StreamEvent, SteerError>),
}

impl StreamState {
    /// Open an attempt, retrying failures within the budget.
    pub(super) async fn connect(&mut self) -> Result<(), AttemptError> {
        loop {
            match self.open().await {
                Ok(a) => {
                    self.attempt = Some(a);
                    return Ok(());
                }
                Err(e) => match self.call.retry_wait(&e) {
                    Some(wait) => self.call.backoff(wait, &e).await,
                    None => return Err(e),
                },
            }
        }
    }

    async fn open(&mut self) -> Result<AttemptStream, AttemptError> {
        let t = self.call.attempt_timeout();
        let inner = self.call.inner.clone();
        match &self.target {
            Target::Sim(input) => match inner.sim.attempt(
                &mut self.call.rng,
                input,
                &self.call.route.provider,
                &self.call.route.model,
            ) {
                SimOutcome::Fail(wait, e) => {
                    sleep(wait.min(t)).await;
                    Err(if wait > t { AttemptError::timeout(t) } else { e })
                }
                SimOutcome::Answer(deltas, completion) => Ok(AttemptStream::Sim { deltas, completion }),
            },
            #[cfg(feature = "bedrock")]
            Target::Bedrock(req) => {
                let bedrock = inner.bedrock().await?;
                let model = self.call.route.model.clone();
                let stream = tokio::time::timeout(t, bedrock.converse_stream(req, &model, t))
                    .await
                    .unwrap_or_else(|_| Err(AttemptError::timeout(t)))?;
                Ok(AttemptStream::Bedrock(Box::new(stream)))
            }
            Target::Http { provider, url, body } => {
                let resp = tokio::time::timeout(t, send(&inner, provider, url, body, t))
                    .await
                    .unwrap_or_else(|_| Err(AttemptError::timeout(t)))?;
                let decoder = provider.dialect.decoder();
                Ok(AttemptStream::Http {
                    resp,
                    parser: SseParser::new(inner.max_response_bytes),
                    decoder,
                    pending: VecDeque::new(),
                    read: 0,
                    limit: inner.max_response_bytes,
                    eof: false,
                })
            }
        }
    }

    async fn step(&mut self) -> Step {
        loop {
            let t = self.call.attempt_timeout();
            let Some(attempt) = self.attempt.as_mut() else {
                return Step::Last(Err(self
                    .call
                    .fail(AttemptError::invalid("stream polled after its end"))));
            };
            // A simulated delta that is due now needs no timer (a timer per
            // delta costs two clock reads; streams have hundreds of deltas).
            let result = if attempt.next_is_instant() {
                attempt.next_delta(t).await
            } else {
                match tokio::time::timeout(t, attempt.next_delta(t)).await {
                    Ok(r) => r,
                    Err(_) => Err(AttemptError::timeout(t)),
                }
            };
            let error = match result {
                Ok(Some(chunk)) => {
                    // Time to first token: the first output of any kind.
                    if self.call.ttft_ms.is_none() {
                        self.call.ttft_ms = Some(self.call.elapsed_ms());
                    }
                    match chunk {
                        Chunk::Text(delta) => {
                            self.delivered = true;
                            return Step::Item(StreamEvent::Delta(delta));
                        }
                        _ => continue,
                    }
                }
                Ok(None) => {
                    let finished = self.attempt.take().map_or_else(
                        || Err(AttemptError::invalid("stream ended twice")),
                        AttemptStream::finish,
                    );
                    match finished.and_then(check_content) {
                        Ok(c) => return Step::Last(Ok(StreamEvent::Done(Box::new(self.call.succeed(c))))),
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            self.attempt = None;
            if !self.delivered {
                if let Some(wait) = self.call.retry_wait(&error) {
                    self.call.backoff(wait, &error).await;
                    match self.connect().await {
                        Ok(()) => continue,
                        Err(e) => return Step::Last(Err(self.call.fail(e))),
                    }
                }
            }
            return Step::Last(Err(self.call.fail(error)));
        }
    }
}

type BoxedEvents = Pin<Box<dyn Stream<Item = Result<StreamEvent, SteerError>> + Send>>;

/// The items of a streamed call: [`StreamEvent::Delta`]s, then one
/// [`StreamEvent::Done`] (or one error), then the end.
///
/// Dropping it before the end records the call as `cancelled`.
#[must_use = "a stream does nothing unless polled; dropping it records the call as cancelled"]
pub struct ResponseStream {
    inner: BoxedEvents,
}

impl fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseStream").finish_non_exhaustive()
    }
}

impl ResponseStream {
    pub(super) fn new(state: StreamState) -> Self {
        // The state is boxed so each step moves a pointer, not the whole call.
        let s = futures::stream::unfold(Some(Box::new(state)), |state| async move {
            let mut state = state?;
            match state.step().await {
                Step::Item(ev) => Some((Ok(ev), Some(state))),
                Step::Last(r) => Some((r, None)),
            }
        });
        ResponseStream { inner: Box::pin(s) }
    }

    /// Read the stream to its end and return the final response (the deltas
    /// are concatenated in its `text`).
    pub async fn collect_response(mut self) -> Result<GenerateResponse, SteerError> {
        use futures::StreamExt;
        while let Some(item) = self.next().await {
            if let StreamEvent::Done(resp) = item? {
                return Ok(*resp);
            }
        }
        Err(SteerError::Config(crate::error::ConfigError::StreamEnded))
    }
}

impl Stream for ResponseStream {
    type Item = Result<StreamEvent, SteerError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
