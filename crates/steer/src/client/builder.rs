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
    keys: HashMap<String, ApiKey>,
    base_urls: HashMap<String, String>,
    custom: Vec<(String, Dialect, String, Option<ApiKey>)>,
    azure_api_version: Option<String>,
    azure_ad_token: Option<ApiKey>,
    #[cfg(feature = "bedrock")]
    bedrock: Option<crate::providers::bedrock::Bedrock>,
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
            .field("custom", &self.custom)
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
            custom: Vec::new(),
            azure_api_version: None,
            azure_ad_token: None,
            #[cfg(feature = "bedrock")]
            bedrock: None,
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
    /// Gemini API key (default: `GEMINI_API_KEY`, else `GOOGLE_API_KEY`).
    pub fn gemini_api_key(self, key: impl Into<String>) -> Self {
        self.key("gemini", key)
    }
    /// Azure OpenAI: the resource endpoint (`https://NAME.openai.azure.com`;
    /// default `AZURE_OPENAI_ENDPOINT`) and its key (default
    /// `AZURE_OPENAI_API_KEY`). Models are addressed as `azure/<deployment>`.
    pub fn azure_openai(self, endpoint: impl Into<String>, api_key: impl Into<String>) -> Self {
        self.base_url("azure", endpoint).key("azure", api_key)
    }
    /// Azure OpenAI with a Microsoft Entra ID bearer token instead of a key
    /// (default `AZURE_OPENAI_AD_TOKEN`).
    pub fn azure_ad_token(mut self, token: impl Into<String>) -> Self {
        self.azure_ad_token = crate::providers::api_key(token);
        self
    }
    /// Azure OpenAI `api-version` (default `OPENAI_API_VERSION`, else a current GA version).
    pub fn azure_api_version(mut self, version: impl Into<String>) -> Self {
        self.azure_api_version = Some(version.into());
        self
    }
    /// AWS Bedrock at `endpoint` (a local server, a VPC endpoint) in
    /// `region` with static credentials, instead of the AWS credential chain
    /// and region (the default, set up on the first `bedrock/` call;
    /// `BEDROCK_ENDPOINT_URL` overrides the endpoint there).
    #[cfg(feature = "bedrock")]
    pub fn bedrock_endpoint(
        mut self,
        endpoint: &str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Self {
        self.bedrock = Some(crate::providers::bedrock::Bedrock::with_endpoint(
            endpoint,
            region,
            (access_key_id, secret_access_key, None),
        ));
        self
    }
    /// The API key of any known provider (`openai`, `gemini`, `groq`, ...),
    /// instead of its environment variable.
    pub fn api_key(self, provider: &str, key: impl Into<String>) -> Self {
        self.key(provider, key)
    }
    /// The base URL of any known provider (`ollama`, `vllm`, `azure`, ...),
    /// instead of its environment variable or default.
    pub fn base_url(mut self, provider: &str, url: impl Into<String>) -> Self {
        self.base_urls.insert(provider.to_string(), url.into());
        self
    }
    fn key(mut self, provider: &str, key: impl Into<String>) -> Self {
        if let Some(k) = crate::providers::api_key(key) {
            self.keys.insert(provider.to_string(), k);
        }
        self
    }
    /// OpenAI base URL (default: `OPENAI_BASE_URL`, else `https://api.openai.com/v1`).
    pub fn openai_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_urls.insert("openai".into(), url.into());
        self
    }
    /// Anthropic base URL (default: `ANTHROPIC_BASE_URL`, else `https://api.anthropic.com/v1`).
    pub fn anthropic_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_urls.insert("anthropic".into(), url.into());
        self
    }
    /// xAI base URL (default: `XAI_BASE_URL`, else `https://api.x.ai/v1`).
    pub fn xai_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_urls.insert("xai".into(), url.into());
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
        self.custom.push((
            name.into(),
            Dialect::OpenAi,
            base_url.into(),
            api_key.and_then(crate::providers::api_key),
        ));
        self
    }
    /// Register a provider of any dialect (e.g. an Anthropic-compatible
    /// gateway), addressed as `name/model`.
    pub fn custom_provider(
        mut self,
        name: impl Into<String>,
        dialect: Dialect,
        base_url: impl Into<String>,
        api_key: Option<&str>,
    ) -> Self {
        self.custom.push((
            name.into(),
            dialect,
            base_url.into(),
            api_key.and_then(crate::providers::api_key),
        ));
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
                    return Err(SteerError::Config(ConfigError::SinksAndCollector));
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
                    b.build().map_err(|e| SteerError::Config(e.into()))?
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
        for preset in PRESETS {
            let name = preset.name;
            // The builder's settings stand in for the environment variables
            // they override; the resolution rules are the presets' own.
            let overrides = |var: &str| -> Option<String> {
                if var == preset.url_env {
                    return self.base_urls.get(name).cloned();
                }
                match var {
                    "OPENAI_API_VERSION" => self.azure_api_version.clone(),
                    "AZURE_OPENAI_AD_TOKEN" => self.azure_ad_token.as_ref().map(|k| k.expose().to_string()),
                    _ => None,
                }
            };
            let lookup = |var: &str| overrides(var).or_else(|| env(var));
            let Some(mut info) = presets::resolve_with(name, lookup) else {
                continue;
            };
            if let Some(k) = self.keys.get(name) {
                info = info.with_key(k.expose());
            }
            if !info.base_url().is_empty() {
                check_url(name, info.base_url())?;
            }
            providers.insert(name.to_string(), Arc::new(info.into_http()));
        }
        for (name, dialect, base_url, api_key) in self.custom {
            // A custom server may take a preset's name (`vllm`, `ollama`, ...),
            // replacing it; not a built-in provider's.
            if BUILTIN_PROVIDERS.contains(&name.as_str())
                || matches!(name.as_str(), "gemini" | "azure" | "bedrock")
                || name.is_empty()
                || name.contains('/')
            {
                return Err(SteerError::Config(ConfigError::ReservedProviderName(name)));
            }
            check_url(&name, &base_url)?;
            providers.insert(
                name.clone(),
                Arc::new(HttpProvider::new(name, dialect, base_url, api_key)),
            );
        }
        let http = match self.http {
            Some(h) => h,
            None => reqwest::Client::builder()
                .use_rustls_tls()
                .connect_timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| SteerError::Config(ConfigError::HttpClient(e.to_string())))?,
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
                #[cfg(feature = "bedrock")]
                bedrock: match self.bedrock {
                    Some(b) => tokio::sync::OnceCell::new_with(Some(b)),
                    None => tokio::sync::OnceCell::new(),
                },
            }),
        })
    }
}

pub(super) fn check_url(name: &str, url: &str) -> Result<(), SteerError> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        _ => Err(SteerError::Config(ConfigError::BadBaseUrl {
            provider: name.to_string(),
            url: crate::spec::redact(url),
        })),
    }
}
