//! [`SteerClient`]: routing, attempts, retries, and exactly one metrics
//! record per logical call.

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

use crate::error::{parse_error_body, redact, truncate, AttemptError, FailureKind, SteerError};
use crate::pricing::PriceTable;
use crate::providers::sim::{Sim, SimConfig, SimInput, SimOutcome};
use crate::providers::{
    anthropic, api_error, openai, ApiKey, Chunk, Completion, Decoder, Dialect, HttpProvider,
};
use crate::retry::{retry_hint, RetryConfig};
use crate::routing::{route_with, Route, BUILTIN_PROVIDERS};
use crate::sse::{SseEvent, SseParser};
use crate::types::{GenerateResponse, Request, StreamEvent};

const OPENAI_URL: &str = "https://api.openai.com/v1";
const ANTHROPIC_URL: &str = "https://api.anthropic.com/v1";
const XAI_URL: &str = "https://api.x.ai/v1";
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
/// use steer::{SimConfig, SteerClient, sinks::MemorySink, sinks::Query};
/// # #[tokio::main] async fn main() -> Result<(), steer::SteerError> {
/// let memory = MemorySink::new();
/// let client = SteerClient::builder()
///     .sink(memory.clone())
///     .sim(SimConfig::instant().seed(42))
///     .build()?;
/// let resp = client.generate("Hello", "sim/gpt-4o-mini").await?;
/// assert_eq!(resp.metrics.provider, "openai");
/// client.metrics().flush().await;
/// assert_eq!(memory.summary(&Query::all()).count, 1);
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

/// Builds a [`SteerClient`]. Every setting has a default; API keys and base
/// URLs come from the environment unless set here.
#[must_use]
pub struct SteerClientBuilder {
    metrics_config: MetricsConfig,
    sinks: Vec<(Box<dyn MetricsSink>, Option<SinkOptions>)>,
    collector: Option<MetricsCollector>,
    keys: HashMap<&'static str, ApiKey>,
    base_urls: HashMap<&'static str, String>,
    compatible: Vec<(String, String, Option<ApiKey>)>,
    sim: SimConfig,
    retry: RetryConfig,
    timeout: Duration,
    max_response_bytes: usize,
    prices: Option<PriceTable>,
    http: Option<reqwest::Client>,
    use_env: bool,
}

impl fmt::Debug for SteerClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.keys.keys().collect();
        keys.sort();
        f.debug_struct("SteerClientBuilder")
            .field("metrics_config", &self.metrics_config)
            .field(
                "sinks",
                &self
                    .sinks
                    .iter()
                    .map(|(s, _)| s.name().to_string())
                    .collect::<Vec<_>>(),
            )
            .field("collector", &self.collector)
            .field("api_keys_set_for", &keys)
            .field("base_urls", &self.base_urls)
            .field("compatible", &self.compatible)
            .field("sim", &self.sim)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("use_env", &self.use_env)
            .finish()
    }
}

impl Default for SteerClientBuilder {
    fn default() -> Self {
        SteerClientBuilder {
            metrics_config: MetricsConfig::default(),
            sinks: Vec::new(),
            collector: None,
            keys: HashMap::new(),
            base_urls: HashMap::new(),
            compatible: Vec::new(),
            sim: SimConfig::default(),
            retry: RetryConfig::default(),
            timeout: Duration::from_secs(120),
            max_response_bytes: 32 * 1024 * 1024,
            prices: None,
            http: None,
            use_env: true,
        }
    }
}

impl SteerClientBuilder {
    /// Collector configuration (sampling, default sink options). Ignored when
    /// [`collector`](Self::collector) is given.
    pub fn metrics_config(mut self, config: MetricsConfig) -> Self {
        self.metrics_config = config;
        self
    }
    /// Add a sink (with the config's default options).
    pub fn sink(mut self, sink: impl MetricsSink) -> Self {
        self.sinks.push((Box::new(sink), None));
        self
    }
    /// Add a sink with its own delivery options.
    pub fn sink_with_options(mut self, sink: impl MetricsSink, options: SinkOptions) -> Self {
        self.sinks.push((Box::new(sink), Some(options)));
        self
    }
    /// Use an existing collector (shared with other clients); sinks and
    /// metrics config given to this builder are then an error.
    pub fn collector(mut self, collector: MetricsCollector) -> Self {
        self.collector = Some(collector);
        self
    }
    /// OpenAI API key (default: `OPENAI_API_KEY`).
    pub fn openai_api_key(self, key: impl Into<String>) -> Self {
        self.key("openai", key)
    }
    /// Anthropic API key (default: `ANTHROPIC_API_KEY`).
    pub fn anthropic_api_key(self, key: impl Into<String>) -> Self {
        self.key("anthropic", key)
    }
    /// xAI API key (default: `XAI_API_KEY`).
    pub fn xai_api_key(self, key: impl Into<String>) -> Self {
        self.key("xai", key)
    }
    fn key(mut self, provider: &'static str, key: impl Into<String>) -> Self {
        if let Some(k) = ApiKey::new(key) {
            self.keys.insert(provider, k);
        }
        self
    }
    /// OpenAI base URL (default: `OPENAI_BASE_URL`, else `https://api.openai.com/v1`).
    pub fn openai_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_urls.insert("openai", url.into());
        self
    }
    /// Anthropic base URL (default: `ANTHROPIC_BASE_URL`, else `https://api.anthropic.com/v1`).
    pub fn anthropic_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_urls.insert("anthropic", url.into());
        self
    }
    /// xAI base URL (default: `XAI_BASE_URL`, else `https://api.x.ai/v1`).
    pub fn xai_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_urls.insert("xai", url.into());
        self
    }
    /// Register an OpenAI-compatible server (Ollama, vLLM, llama.cpp server,
    /// ...), addressed as `name/model`. `base_url` is the part before
    /// `/chat/completions` (e.g. `http://localhost:11434/v1`).
    pub fn openai_compatible(
        mut self,
        name: impl Into<String>,
        base_url: impl Into<String>,
        api_key: Option<&str>,
    ) -> Self {
        self.compatible
            .push((name.into(), base_url.into(), api_key.and_then(ApiKey::new)));
        self
    }
    /// Configure the simulated provider (`sim/<model>`).
    pub fn sim(mut self, config: SimConfig) -> Self {
        self.sim = config;
        self
    }
    /// Retry policy (default: [`RetryConfig::default`], 3 retries).
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }
    /// Time budget per attempt (default 120 s); for streams, also the
    /// longest wait for the next piece. [`Request::timeout`] overrides it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Largest response body accepted (default 32 MiB); a larger one is an
    /// [`SteerError::InvalidResponse`].
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n.max(1024);
        self
    }
    /// Price table (default: [`PriceTable::builtin`]); merge your overrides into the built-in one.
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices = Some(prices);
        self
    }
    /// Use this HTTP client (e.g. with a proxy).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }
    /// Do not read API keys and base URLs from the environment.
    pub fn ignore_env(mut self) -> Self {
        self.use_env = false;
        self
    }

    /// Build the client. With sinks this must run inside a Tokio runtime
    /// (the collector spawns a worker per sink).
    pub fn build(self) -> Result<SteerClient, SteerError> {
        let collector = match self.collector {
            Some(c) => {
                if !self.sinks.is_empty() {
                    return Err(SteerError::Config(
                        "give sinks either to the builder or to the existing collector, not both".into(),
                    ));
                }
                c
            }
            None => {
                if self.sinks.is_empty() && tokio::runtime::Handle::try_current().is_err() {
                    MetricsCollector::disabled()
                } else {
                    let mut b = MetricsCollector::builder().config(self.metrics_config);
                    for (sink, options) in self.sinks {
                        b = b.boxed_sink(sink, options);
                    }
                    b.build().map_err(|e| SteerError::Config(e.to_string()))?
                }
            }
        };
        let env = |name: &str| {
            if self.use_env {
                std::env::var(name).ok().filter(|v| !v.trim().is_empty())
            } else {
                None
            }
        };
        let mut providers = HashMap::new();
        for (name, dialect, default_url, key_env, url_env, max_field) in [
            (
                "openai",
                Dialect::OpenAi,
                OPENAI_URL,
                "OPENAI_API_KEY",
                "OPENAI_BASE_URL",
                "max_completion_tokens",
            ),
            (
                "anthropic",
                Dialect::Anthropic,
                ANTHROPIC_URL,
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_BASE_URL",
                "max_tokens",
            ),
            (
                "xai",
                Dialect::OpenAi,
                XAI_URL,
                "XAI_API_KEY",
                "XAI_BASE_URL",
                "max_tokens",
            ),
        ] {
            let base_url = self
                .base_urls
                .get(name)
                .cloned()
                .or_else(|| env(url_env))
                .unwrap_or_else(|| default_url.to_string());
            check_url(name, &base_url)?;
            let api_key = self
                .keys
                .get(name)
                .cloned()
                .or_else(|| env(key_env).and_then(ApiKey::new));
            providers.insert(
                name.to_string(),
                Arc::new(HttpProvider {
                    name: name.to_string(),
                    dialect,
                    base_url,
                    api_key,
                    key_env: Some(key_env),
                    max_tokens_field: max_field,
                }),
            );
        }
        for (name, base_url, api_key) in self.compatible {
            if BUILTIN_PROVIDERS.contains(&name.as_str()) || name.is_empty() || name.contains('/') {
                return Err(SteerError::Config(format!(
                    "`{name}` cannot name an OpenAI-compatible server (reserved, empty or contains '/')"
                )));
            }
            check_url(&name, &base_url)?;
            providers.insert(
                name.clone(),
                Arc::new(HttpProvider {
                    name,
                    dialect: Dialect::OpenAi,
                    base_url,
                    api_key,
                    key_env: None,
                    max_tokens_field: "max_tokens",
                }),
            );
        }
        let http = match self.http {
            Some(h) => h,
            None => reqwest::Client::builder()
                .use_rustls_tls()
                .connect_timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| SteerError::Config(format!("cannot build the HTTP client: {e}")))?,
        };
        Ok(SteerClient {
            inner: Arc::new(Inner {
                http,
                collector,
                prices: self.prices.unwrap_or_else(PriceTable::builtin),
                providers,
                sim: Sim::new(self.sim),
                retry: self.retry,
                timeout: self.timeout,
                max_response_bytes: self.max_response_bytes,
            }),
        })
    }
}

fn check_url(name: &str, url: &str) -> Result<(), SteerError> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        _ => Err(SteerError::Config(format!(
            "base URL of `{name}` is not an http(s) URL: {}",
            crate::spec::redact(url)
        ))),
    }
}

/// Where one call's attempts go.
enum Target {
    Sim(SimInput),
    Http {
        provider: Arc<HttpProvider>,
        body: Vec<u8>,
    },
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
        if !route.simulated && !self.inner.providers.contains_key(&route.provider) {
            return Err(SteerError::UnknownModel {
                model: model.to_string(),
                reason: format!(
                    "the price table names provider `{}`, which is not registered on this client",
                    route.provider
                ),
            });
        }
        Ok(route)
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
        let Some(provider) = self.inner.providers.get(&route.provider) else {
            // `route()` only yields registered providers.
            return Err(AttemptError::new(
                FailureKind::Api,
                ErrorClass::InvalidRequest,
                format!("provider `{}` is not registered on this client", route.provider),
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
        let body = match provider.dialect {
            Dialect::OpenAi => openai::body(req, &route.model, stream, provider.max_tokens_field),
            Dialect::Anthropic => anthropic::body(req, &route.model, stream),
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| AttemptError::invalid(format!("cannot encode the request: {e}")))?;
        Ok(Target::Http {
            provider: provider.clone(),
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
            Target::Http { provider, body } => {
                let inner = &*self.inner;
                let once = async {
                    let resp = send(inner, provider, body, t).await?;
                    let bytes = read_limited(resp, inner.max_response_bytes, t).await?;
                    match provider.dialect {
                        Dialect::OpenAi => openai::parse(&bytes),
                        Dialect::Anthropic => anthropic::parse(&bytes),
                    }
                };
                tokio::time::timeout(t, once)
                    .await
                    .unwrap_or_else(|_| Err(AttemptError::timeout(t)))
            }
        }
    }
}

/// A finish reason that means the provider refused the content.
fn check_content(c: Completion) -> Result<Completion, AttemptError> {
    match c.finish_reason.as_deref() {
        Some(r @ ("content_filter" | "refusal")) => {
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

async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// Send a request; a non-2xx answer becomes a classified error.
async fn send(
    inner: &Inner,
    p: &HttpProvider,
    body: &[u8],
    timeout: Duration,
) -> Result<reqwest::Response, AttemptError> {
    let mut rb = inner
        .http
        .post(p.url())
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    let bad_key = || {
        let mut e = AttemptError::new(
            FailureKind::MissingKey,
            ErrorClass::Authentication,
            format!(
                "the API key of {} contains characters not allowed in an HTTP header",
                p.name
            ),
        );
        e.retryable = false;
        e
    };
    match p.dialect {
        Dialect::OpenAi => {
            if let Some(k) = &p.api_key {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", k.expose())).map_err(|_| bad_key())?;
                v.set_sensitive(true);
                rb = rb.header(AUTHORIZATION, v);
            }
        }
        Dialect::Anthropic => {
            if let Some(k) = &p.api_key {
                let mut v = HeaderValue::from_str(k.expose()).map_err(|_| bad_key())?;
                v.set_sensitive(true);
                rb = rb.header("x-api-key", v);
            }
            rb = rb.header("anthropic-version", anthropic::API_VERSION);
        }
    }
    let resp = rb
        .send()
        .await
        .map_err(|e| AttemptError::from_reqwest(&e, timeout))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let headers = resp.headers();
    let hint = retry_hint(headers, chrono::Utc::now());
    // The providers' own "retry this?" verdict, where sent.
    let should_retry = headers
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| match v.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        });
    let provider_request_id = ["x-request-id", "request-id"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(|v| truncate(v.to_string(), 80));
    let body = read_prefix(resp, MAX_ERROR_BODY).await;
    let (t, c, m) = parse_error_body(&body);
    let m = m.or_else(|| {
        let text = String::from_utf8_lossy(&body).trim().to_string();
        (!text.is_empty() && !text.starts_with('<')).then_some(text)
    });
    let mut e = api_error(Some(status.as_u16()), t, c, m);
    e.retry_after = hint;
    if let Some(r) = should_retry {
        e.retryable = r;
    }
    if let Some(id) = provider_request_id {
        e.message = format!("{} (provider request id {id})", e.message);
    }
    tracing::debug!(provider = %p.name, status = status.as_u16(), class = %e.class, "provider answered with an error");
    Err(e)
}

/// The whole body, refused beyond `limit` bytes.
async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, AttemptError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(AttemptError::invalid(format!(
            "response larger than the limit of {limit} bytes"
        )));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| AttemptError::from_reqwest(&e, timeout))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(AttemptError::invalid(format!(
                "response larger than the limit of {limit} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Up to `limit` bytes of the body (for error messages); errors end it early.
async fn read_prefix(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= limit {
            break;
        }
    }
    buf
}

/// One logical call: its record, clock and retry budget. Dropping it before
/// it finished records the call as `cancelled`.
struct Call {
    inner: Arc<Inner>,
    record: Option<AgentMetrics>,
    route: Route,
    start: Instant,
    deadline: Instant,
    per_attempt: Duration,
    retries: u32,
    ttft_ms: Option<f64>,
    rng: fastrand::Rng,
}

impl Call {
    fn start(inner: Arc<Inner>, route: Route, req: &Request, method: Method) -> Self {
        let mut m = AgentMetrics::new(route.provider.clone(), route.model.clone());
        m.method = method;
        if let Some(id) = req.request_id {
            m.request_id = id;
        }
        m.trace_id.clone_from(&req.trace_id);
        m.tags.clone_from(&req.tags);
        if route.simulated {
            m.tags.insert("simulated".into(), "true".into());
        }
        let rng = if route.simulated {
            inner.sim.call_rng()
        } else {
            fastrand::Rng::with_seed(0)
        };
        let start = Instant::now();
        let per_attempt = req.timeout.unwrap_or(inner.timeout);
        let budget = req.deadline.unwrap_or(inner.retry.total_deadline);
        // A user may pass Duration::MAX for "no deadline".
        let deadline = start
            .checked_add(budget)
            .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 86_400));
        Call {
            inner,
            record: Some(m),
            route,
            start,
            deadline,
            per_attempt,
            retries: 0,
            ttft_ms: None,
            rng,
        }
    }

    fn elapsed_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    /// This attempt's budget: the per-attempt timeout, within the deadline.
    fn attempt_timeout(&self) -> Duration {
        self.per_attempt
            .min(self.deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1))
    }

    /// How long to wait before retrying after `e`, or `None` to give up.
    fn retry_wait(&self, e: &AttemptError) -> Option<Duration> {
        let r = &self.inner.retry;
        if !e.retryable || self.retries >= r.max_retries {
            return None;
        }
        let wait = r.backoff(self.retries + 1, e.retry_after);
        Instant::now()
            .checked_add(wait)
            .is_some_and(|t| t < self.deadline)
            .then_some(wait)
    }

    async fn backoff(&mut self, wait: Duration, e: &AttemptError) {
        tracing::debug!(
            provider = %self.route.provider,
            model = %self.route.model,
            class = %e.class,
            retry = self.retries + 1,
            wait_ms = wait.as_millis() as u64,
            "retrying LLM call"
        );
        sleep(wait).await;
        self.retries += 1;
    }

    fn take_record(&mut self) -> AgentMetrics {
        let mut m = self
            .record
            .take()
            .unwrap_or_else(|| AgentMetrics::new(self.route.provider.clone(), self.route.model.clone()));
        m.latency_ms = self.elapsed_ms();
        m.ttft_ms = self.ttft_ms;
        m.retries = self.retries;
        m
    }

    fn succeed(&mut self, c: Completion) -> GenerateResponse {
        let mut m = self.take_record();
        crate::measure::apply_completion(&mut m, &c, &self.inner.prices);
        let model = c.response_model.unwrap_or_else(|| self.route.model.clone());
        m.response_model = Some(model.clone());
        self.inner.collector.record(m.clone());
        GenerateResponse {
            text: c.text,
            tool_calls: c.tool_calls,
            finish_reason: c.finish_reason,
            usage: c.usage,
            provider: m.provider.clone(),
            model,
            metrics: m,
        }
    }

    fn fail(&mut self, mut e: AttemptError) -> SteerError {
        let key = self
            .inner
            .providers
            .get(&self.route.provider)
            .and_then(|p| p.api_key.as_ref().map(ApiKey::expose));
        // Redact first, then truncate: never the other way round.
        e.message = truncate(redact(&e.message, key), 300);
        let mut m = self.take_record();
        if let Some(p) = &e.partial {
            crate::measure::apply_completion(&mut m, p, &self.inner.prices);
        }
        m.error_class = Some(e.class);
        m.error_message = Some(truncate(e.message.clone(), 200));
        tracing::debug!(provider = %m.provider, model = %m.model, class = %e.class, retries = m.retries, "LLM call failed");
        self.inner.collector.record(m.clone());
        e.into_steer(m)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.record.is_some() {
            let mut m = self.take_record();
            m.error_class = Some(ErrorClass::Cancelled);
            m.error_message = Some("the caller dropped the call before it finished".into());
            self.inner.collector.record(m);
        }
    }
}

/// One streamed attempt.
enum AttemptStream {
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
}

impl AttemptStream {
    /// Whether the next delta is a simulated one due without waiting.
    fn next_is_instant(&self) -> bool {
        match self {
            AttemptStream::Sim { deltas, .. } => deltas.front().is_none_or(|(wait, _)| wait.is_zero()),
            AttemptStream::Http { .. } => false,
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
        }
    }
}

struct StreamState {
    call: Call,
    target: Target,
    attempt: Option<AttemptStream>,
    delivered: bool,
}

enum Step {
    Item(StreamEvent),
    Last(Result<StreamEvent, SteerError>),
}

impl StreamState {
    /// Open an attempt, retrying failures within the budget.
    async fn connect(&mut self) -> Result<(), AttemptError> {
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
            Target::Http { provider, body } => {
                let resp = tokio::time::timeout(t, send(&inner, provider, body, t))
                    .await
                    .unwrap_or_else(|_| Err(AttemptError::timeout(t)))?;
                let decoder: Box<dyn Decoder> = match provider.dialect {
                    Dialect::OpenAi => Box::<openai::StreamDecoder>::default(),
                    Dialect::Anthropic => Box::<anthropic::StreamDecoder>::default(),
                };
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
    fn new(state: StreamState) -> Self {
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
        Err(SteerError::Config(
            "the stream ended without a final response".into(),
        ))
    }
}

impl Stream for ResponseStream {
    type Item = Result<StreamEvent, SteerError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
