//! [`SteerClient`]: routing, attempts, retries, and exactly one metrics
//! record per logical call.
//!
//! * `builder` — [`SteerClientBuilder`]: settings, keys and base URLs, the providers;
//! * `call` — one logical call: its record, clock, retry budget;
//! * `transport` — sending a request, reading bodies, error answers;
//! * `stream` — streamed attempts and [`ResponseStream`];
//! * this module — routing a call to its target and the attempt loop.

mod builder;
mod call;
mod embed;
mod stream;
mod transport;

pub use builder::SteerClientBuilder;
pub use stream::ResponseStream;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use steer_metrics::{
    AgentMetrics, ErrorClass, Method, MetricsCollector, MetricsConfig, MetricsSink, SinkOptions,
};

use crate::error::{parse_error_body, redact, truncate, AttemptError, ConfigError, FailureKind, SteerError};
use crate::pricing::PriceTable;
use crate::providers::presets::{self, PRESETS};
use crate::providers::sim::{Sim, SimConfig, SimInput, SimOutcome};
use crate::providers::Auth;
use crate::providers::{
    anthropic, api_error, openai, ApiKey, Chunk, Completion, Decoder, Dialect, HttpProvider,
};
use crate::retry::{retry_hint, RetryConfig};
use crate::routing::{route_with, Route, BUILTIN_PROVIDERS};
use crate::sse::{SseEvent, SseParser};
use crate::types::{GenerateResponse, Request, StreamEvent};

use call::Call;
use stream::StreamState;
use transport::{read_limited, send, sleep};

/// Error bodies are read up to this size.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An LLM client in which every call is measured.
///
/// Each logical call ([`generate`](Self::generate) or [`stream`](Self::stream),
/// retries included) produces exactly one [`AgentMetrics`] record, handed to
/// the [`MetricsCollector`] with a single non-blocking `record()` — also when
/// the call fails or the caller drops it (`cancelled`). The record is also
/// returned: [`GenerateResponse::metrics`], [`SteerError::metrics`].
///
/// Cloning is cheap and shares everything.
///
/// ```
/// use steer::{SimConfig, SteerClient, sinks::MemorySink};
/// # #[tokio::main] async fn main() -> Result<(), steer::SteerError> {
/// let memory = MemorySink::new();
/// let client = SteerClient::builder()
///     .sink(memory.clone())
///     .sim(SimConfig::instant().seed(42))
///     .build()?;
/// let resp = client.generate("Hello", "sim/gpt-4o-mini").await?;
/// assert_eq!(resp.metrics.provider, "openai");
/// client.metrics().flush().await;
/// assert_eq!(memory.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SteerClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    collector: MetricsCollector,
    prices: PriceTable,
    providers: HashMap<String, Arc<HttpProvider>>,
    sim: Sim,
    retry: RetryConfig,
    timeout: Duration,
    max_response_bytes: usize,
    /// AWS Bedrock, set up on first use (credentials chain and region).
    #[cfg(feature = "bedrock")]
    bedrock: tokio::sync::OnceCell<crate::providers::bedrock::Bedrock>,
}

impl fmt::Debug for SteerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut providers: Vec<_> = self.inner.providers.values().map(|p| &**p).collect();
        providers.sort_by(|a, b| a.name.cmp(&b.name));
        f.debug_struct("SteerClient")
            .field("providers", &providers)
            .field("sim", &self.inner.sim.config)
            .field("retry", &self.inner.retry)
            .field("timeout", &self.inner.timeout)
            .field("collector", &self.inner.collector)
            .field("priced_models", &self.inner.prices.len())
            .finish()
    }
}

impl Inner {
    /// The Bedrock client: the one given to the builder, else from the AWS
    /// credential chain and region on first use.
    #[cfg(feature = "bedrock")]
    async fn bedrock(&self) -> Result<&crate::providers::bedrock::Bedrock, AttemptError> {
        self.bedrock
            .get_or_try_init(crate::providers::bedrock::Bedrock::from_env)
            .await
            .map_err(|e| {
                let mut a = AttemptError::invalid(e.to_string());
                a.kind = FailureKind::MissingKey;
                a.class = ErrorClass::Authentication;
                a.retryable = false;
                a
            })
    }

    /// The HTTP provider `name`, ready for a call: registered, and with its
    /// key where it needs one.
    fn http_provider(&self, name: &str) -> Result<Arc<HttpProvider>, AttemptError> {
        let Some(provider) = self.providers.get(name) else {
            // `route()` only yields registered providers.
            return Err(AttemptError::new(
                FailureKind::Api,
                ErrorClass::InvalidRequest,
                format!("provider `{name}` is not registered on this client"),
            ));
        };
        if provider.api_key.is_none() {
            if let Some(env) = provider.key_env {
                let mut e = AttemptError::new(
                    FailureKind::MissingKey,
                    ErrorClass::Authentication,
                    format!(
                        "no API key for {}: set {env} or pass it to the client builder",
                        provider.name
                    ),
                );
                e.retryable = false;
                return Err(e);
            }
        }
        Ok(provider.clone())
    }
}

/// Where one call's attempts go.
pub(super) enum Target {
    Sim(SimInput),
    Http {
        provider: Arc<HttpProvider>,
        url: String,
        body: Vec<u8>,
    },
    /// AWS Bedrock through its SDK (Converse / ConverseStream).
    #[cfg(feature = "bedrock")]
    Bedrock(Box<Request>),
}

impl SteerClient {
    /// Start configuring a client.
    pub fn builder() -> SteerClientBuilder {
        SteerClientBuilder::default()
    }

    /// The metrics collector every call records into: `flush()`, `stats()`, `shutdown()`.
    pub fn metrics(&self) -> &MetricsCollector {
        &self.inner.collector
    }

    /// The price table in use.
    pub fn prices(&self) -> &PriceTable {
        &self.inner.prices
    }

    /// Where `model` would be sent (see [`crate::routing`]).
    pub fn route(&self, model: &str) -> Result<Route, SteerError> {
        let route = route_with(model, &self.inner.prices, |p| {
            self.inner.providers.contains_key(p)
        })?;
        if route.simulated {
            return Ok(route);
        }
        if route.provider == "bedrock" {
            return if cfg!(feature = "bedrock") {
                Ok(route)
            } else {
                Err(SteerError::Config(ConfigError::NotBuilt {
                    what: "AWS Bedrock",
                    feature: "bedrock",
                }))
            };
        }
        match self.inner.providers.get(&route.provider) {
            None => Err(SteerError::UnknownModel {
                model: model.to_string(),
                reason: format!(
                    "the price table names provider `{}`, which is not registered on this client",
                    route.provider
                ),
            }),
            Some(p) if p.base_url.is_empty() => Err(SteerError::Config(ConfigError::MissingEndpoint {
                provider: p.name.clone(),
                env: presets::preset(&p.name).map_or("its base URL", |x| x.url_env),
            })),
            Some(_) => Ok(route),
        }
    }

    /// One request/response call. `request` is a prompt (`&str`, `String`),
    /// messages (`Vec<Message>`) or a [`Request`] with options; `model` is
    /// `model` or `provider/model`.
    pub async fn generate(
        &self,
        request: impl Into<Request>,
        model: &str,
    ) -> Result<GenerateResponse, SteerError> {
        let request = request.into();
        let route = self.route(model)?;
        let mut call = Call::start(self.inner.clone(), route, &request, Method::Generate);
        let target = match self.target(&call.route, &request, false) {
            Ok(t) => t,
            Err(e) => return Err(call.fail(e)),
        };
        loop {
            let result = self.attempt_generate(&target, &mut call).await;
            match result.and_then(check_content) {
                Ok(c) => return Ok(call.succeed(c)),
                Err(e) => match call.retry_wait(&e) {
                    Some(wait) => call.backoff(wait, &e).await,
                    None => return Err(call.fail(e)),
                },
            }
        }
    }

    /// A streamed call. Resolves once the provider accepted the request
    /// (failed attempts before that are retried); then yields
    /// [`StreamEvent::Delta`]s and a final [`StreamEvent::Done`] with usage
    /// and metrics. A failure before the first delta is retried; after it,
    /// the stream yields the error and ends. Dropping the stream before its
    /// end records the call as `cancelled`.
    pub async fn stream(
        &self,
        request: impl Into<Request>,
        model: &str,
    ) -> Result<ResponseStream, SteerError> {
        let request = request.into();
        let route = self.route(model)?;
        let mut call = Call::start(self.inner.clone(), route, &request, Method::Stream);
        let target = match self.target(&call.route, &request, true) {
            Ok(t) => t,
            Err(e) => return Err(call.fail(e)),
        };
        let mut state = StreamState {
            call,
            target,
            attempt: None,
            delivered: false,
        };
        match state.connect().await {
            Ok(()) => Ok(ResponseStream::new(state)),
            Err(e) => Err(state.call.fail(e)),
        }
    }

    fn target(&self, route: &Route, req: &Request, stream: bool) -> Result<Target, AttemptError> {
        if route.simulated {
            return Ok(Target::Sim(SimInput::new(req)));
        }
        #[cfg(feature = "bedrock")]
        if route.provider == "bedrock" {
            return Ok(Target::Bedrock(Box::new(req.clone())));
        }
        let provider = self.inner.http_provider(&route.provider)?;
        let body = serde_json::to_vec(&provider.body(req, &route.model, stream))
            .map_err(|e| AttemptError::invalid(format!("cannot encode the request: {e}")))?;
        Ok(Target::Http {
            provider: provider.clone(),
            url: provider.url(&route.model, stream),
            body,
        })
    }

    async fn attempt_generate(&self, target: &Target, call: &mut Call) -> Result<Completion, AttemptError> {
        let t = call.attempt_timeout();
        match target {
            Target::Sim(input) => {
                let outcome =
                    self.inner
                        .sim
                        .attempt(&mut call.rng, input, &call.route.provider, &call.route.model);
                let play = async move {
                    match outcome {
                        SimOutcome::Fail(wait, e) => {
                            sleep(wait).await;
                            Err(e)
                        }
                        SimOutcome::Answer(deltas, c) => {
                            sleep(deltas.iter().map(|d| d.0).sum()).await;
                            Ok(c)
                        }
                    }
                };
                tokio::time::timeout(t, play)
                    .await
                    .unwrap_or_else(|_| Err(AttemptError::timeout(t)))
            }
            Target::Http { provider, url, body } => {
                let inner = &*self.inner;
                let once = async {
                    let resp = send(inner, provider, url, body, t).await?;
                    let bytes = read_limited(resp, inner.max_response_bytes, t).await?;
                    provider.dialect.parse(&bytes)
                };
                tokio::time::timeout(t, once)
                    .await
                    .unwrap_or_else(|_| Err(AttemptError::timeout(t)))
            }
            #[cfg(feature = "bedrock")]
            Target::Bedrock(req) => {
                let bedrock = self.inner.bedrock().await?;
                tokio::time::timeout(t, bedrock.converse(req, &call.route.model, t))
                    .await
                    .unwrap_or_else(|_| Err(AttemptError::timeout(t)))
            }
        }
    }
}

/// A finish reason that means the provider refused the content.
pub(super) fn check_content(c: Completion) -> Result<Completion, AttemptError> {
    match c.finish_reason.as_deref() {
        Some(r) if crate::providers::is_content_stop(r) => {
            let mut e = AttemptError::new(
                FailureKind::Api,
                ErrorClass::ContentFilter,
                format!("the provider stopped the answer ({r})"),
            );
            e.provider_code = Some(r.to_string());
            e.partial = Some(Box::new(c));
            Err(e)
        }
        _ => Ok(c),
    }
}
