//! [`SteerClientBuilder`]: settings, keys and base URLs, and the providers they make.

#[allow(clippy::wildcard_imports)]
use super::*;

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

pub(super) fn check_url(name: &str, url: &str) -> Result<(), SteerError> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        _ => Err(SteerError::Config(format!(
            "base URL of `{name}` is not an http(s) URL: {}",
            crate::spec::redact(url)
        ))),
    }
}
