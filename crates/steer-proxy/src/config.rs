//! Configuration: upstreams, keys and limits, with a builder.
//!
//! The upstreams are steer's provider presets ([`steer::presets`]), resolved
//! from the same environment variables as
//! [`SteerClientBuilder`](steer::SteerClientBuilder): a preset added to
//! steer is routed by the proxy too.
//!
//! | provider | base URL (default) | key |
//! |---|---|---|
//! | `openai` | `OPENAI_BASE_URL` (`https://api.openai.com/v1`) | `OPENAI_API_KEY` |
//! | `anthropic` | `ANTHROPIC_BASE_URL` (`https://api.anthropic.com/v1`) | `ANTHROPIC_API_KEY` |
//! | `xai` | `XAI_BASE_URL` (`https://api.x.ai/v1`) | `XAI_API_KEY` |
//! | `gemini` | `GEMINI_BASE_URL` (`https://generativelanguage.googleapis.com/v1beta`) | `GEMINI_API_KEY` / `GOOGLE_API_KEY` |
//! | `azure` | `AZURE_OPENAI_ENDPOINT` (no default) | `AZURE_OPENAI_API_KEY` or `AZURE_OPENAI_AD_TOKEN`; `OPENAI_API_VERSION` |
//! | `ollama`, `vllm`, `lmstudio`, `groq`, `deepseek`, `mistral`, `openrouter`, `together` | `{NAME}_BASE_URL` (the preset's default) | `{NAME}_API_KEY` |
//!
//! plus any OpenAI-compatible server registered by name
//! ([`ProxyConfigBuilder::openai_compatible`]), addressed as `name/model`.
//!
//! The keys are only used with [`ProxyConfigBuilder::provider_keys`]; by
//! default the client's own credentials are passed through.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use steer::presets::{AuthHeader, ProviderInfo};
use steer::pricing::PriceTable;
use steer::Dialect;

use crate::auth::Secret;

/// Default cap on a request body (32 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Default cap on upstream calls in flight at once.
pub const DEFAULT_MAX_CONCURRENT: usize = 4096;

/// One provider the proxy forwards to.
#[derive(Clone)]
pub struct Upstream {
    info: ProviderInfo,
    /// The key held by the proxy (used only with provider keys).
    pub(crate) key: Option<Secret>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name())
            .field("base_url", &steer::spec::redact(self.base_url()))
            .field("key", &self.key.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

impl Upstream {
    /// The provider name recorded in the metrics (`openai`, `azure`, `ollama`, or a registered name).
    pub fn name(&self) -> &str {
        self.info.name()
    }
    /// The base URL (`https://api.openai.com/v1`; for Azure the resource endpoint).
    pub fn base_url(&self) -> &str {
        self.info.base_url()
    }
    /// The provider's own wire protocol.
    pub fn dialect(&self) -> Dialect {
        self.info.dialect()
    }
    /// The URL of an endpoint below the base URL (`chat/completions`, `messages`, `embeddings`).
    pub fn url(&self, endpoint: &str) -> String {
        format!("{}/{endpoint}", self.base_url().trim_end_matches('/'))
    }
    /// The provider as steer resolves it (URL shapes, key header, Azure `api-version`).
    pub fn info(&self) -> &ProviderInfo {
        &self.info
    }
    /// The header the proxy's key for it goes in, in its own dialect.
    pub(crate) fn auth(&self) -> AuthHeader {
        self.info.auth()
    }
}

/// How clients authenticate.
#[derive(Clone, Default)]
pub enum AuthMode {
    /// Pass the client's `Authorization` / `x-api-key` to the provider (the default).
    #[default]
    Passthrough,
    /// The proxy holds the provider keys; clients must present this key
    /// (as `Authorization: Bearer KEY` or `x-api-key: KEY`), which is
    /// never forwarded.
    ProviderKeys(Secret),
}

impl fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMode::Passthrough => f.write_str("Passthrough"),
            AuthMode::ProviderKeys(_) => f.write_str("ProviderKeys([REDACTED])"),
        }
    }
}

/// Who may use the Bedrock Runtime routes. They sign with the proxy's own
/// AWS credentials, so they are never open by accident.
#[derive(Clone, Default)]
pub enum BedrockAccess {
    /// Refused (403): no proxy key configured and no explicit opt-in.
    #[default]
    Closed,
    /// Clients present this key (`x-steer-proxy-key: KEY`, or
    /// `Authorization: Bearer KEY`), compared in constant time.
    Key(Secret),
    /// Anyone who can reach the proxy uses its AWS credentials.
    Open,
}

impl fmt::Debug for BedrockAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BedrockAccess::Closed => f.write_str("Closed"),
            BedrockAccess::Key(_) => f.write_str("Key([REDACTED])"),
            BedrockAccess::Open => f.write_str("Open"),
        }
    }
}

/// Static AWS credentials given to the builder (else the standard chain).
#[derive(Clone)]
#[cfg_attr(not(feature = "bedrock"), allow(dead_code))]
pub(crate) struct AwsKeys {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: Secret,
    pub(crate) session_token: Option<Secret>,
}

/// The Bedrock Runtime upstream: endpoint, region, credentials, access.
#[derive(Clone, Default)]
pub struct BedrockConfig {
    /// Endpoint override (else `https://bedrock-runtime.{region}.amazonaws.com`).
    pub(crate) endpoint: Option<String>,
    /// Region (else the AWS chain's: `AWS_REGION`, `AWS_DEFAULT_REGION`, profile, ...).
    pub(crate) region: Option<String>,
    /// Static credentials (else the AWS credential chain).
    pub(crate) keys: Option<AwsKeys>,
    pub(crate) access: BedrockAccess,
}

impl fmt::Debug for BedrockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockConfig")
            .field("endpoint", &self.endpoint.as_deref().map(steer::spec::redact))
            .field("region", &self.region)
            .field("keys", &self.keys.as_ref().map(|_| "[REDACTED]"))
            .field("access", &self.access)
            .finish()
    }
}

impl BedrockConfig {
    /// Who may use the Bedrock routes.
    pub fn access(&self) -> &BedrockAccess {
        &self.access
    }
}

/// The proxy's configuration. Build with [`ProxyConfig::builder`].
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub(crate) upstreams: HashMap<String, Upstream>,
    pub(crate) auth: AuthMode,
    pub(crate) max_body_bytes: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_concurrent: usize,
    pub(crate) queue_timeout: Duration,
    pub(crate) client_timeout: Duration,
    pub(crate) prices: PriceTable,
    pub(crate) max_tags: usize,
    pub(crate) bedrock: BedrockConfig,
}

impl ProxyConfig {
    /// A builder with the defaults.
    pub fn builder() -> ProxyConfigBuilder {
        ProxyConfigBuilder::default()
    }

    /// The upstream of this provider name, if configured.
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.get(name)
    }

    /// Whether clients must present the proxy key.
    pub fn requires_proxy_key(&self) -> bool {
        matches!(self.auth, AuthMode::ProviderKeys(_))
    }

    /// The Bedrock Runtime upstream and who may use it.
    pub fn bedrock(&self) -> &BedrockConfig {
        &self.bedrock
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A base URL is not an http(s) URL.
    #[error("base URL of `{name}` is not an http(s) URL: {url}")]
    BadUrl {
        /// The provider.
        name: String,
        /// The URL (credentials redacted).
        url: String,
    },
    /// A compatible upstream's name is reserved, empty or contains '/'.
    #[error("`{0}` cannot name an OpenAI-compatible upstream (reserved, empty or contains '/')")]
    BadName(String),
    /// Provider keys were asked for but the proxy key is empty.
    #[error("the proxy key is empty: set STEER_PROXY_KEY")]
    EmptyProxyKey,
    /// Static AWS credentials were given with an empty secret key.
    #[error("the AWS secret access key is empty")]
    EmptyAwsSecret,
    /// A limit is zero.
    #[error("{0} must be greater than zero")]
    ZeroLimit(&'static str),
}

/// Builder of [`ProxyConfig`].
#[must_use]
#[derive(Debug, Clone)]
pub struct ProxyConfigBuilder {
    use_env: bool,
    base_urls: HashMap<String, String>,
    keys: HashMap<String, Secret>,
    compatible: Vec<(String, String, Option<Secret>)>,
    proxy_key: Option<Secret>,
    max_body_bytes: usize,
    connect_timeout: Duration,
    response_timeout: Duration,
    idle_timeout: Duration,
    max_concurrent: usize,
    queue_timeout: Duration,
    client_timeout: Duration,
    prices: Option<PriceTable>,
    max_tags: usize,
    bedrock: BedrockConfig,
    bedrock_key: Option<Secret>,
    bedrock_open: bool,
}

impl Default for ProxyConfigBuilder {
    fn default() -> Self {
        ProxyConfigBuilder {
            use_env: true,
            base_urls: HashMap::new(),
            keys: HashMap::new(),
            compatible: Vec::new(),
            proxy_key: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(300),
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            queue_timeout: Duration::from_secs(30),
            client_timeout: Duration::from_secs(60),
            prices: None,
            max_tags: 32,
            bedrock: BedrockConfig::default(),
            bedrock_key: None,
            bedrock_open: false,
        }
    }
}

impl ProxyConfigBuilder {
    /// Ignore the environment variables (base URLs and keys only from the builder).
    pub fn ignore_env(mut self) -> Self {
        self.use_env = false;
        self
    }
    /// The base URL of a preset provider (default: its `*_BASE_URL`
    /// variable, else the preset's; for `azure`, the resource endpoint,
    /// default `AZURE_OPENAI_ENDPOINT`). Unknown names are ignored.
    pub fn base_url(mut self, provider: &str, url: impl Into<String>) -> Self {
        self.base_urls.insert(provider.to_string(), url.into());
        self
    }
    /// OpenAI base URL (default: `OPENAI_BASE_URL`, else `https://api.openai.com/v1`).
    pub fn openai_base_url(self, url: impl Into<String>) -> Self {
        self.base_url("openai", url)
    }
    /// Anthropic base URL (default: `ANTHROPIC_BASE_URL`, else `https://api.anthropic.com/v1`).
    pub fn anthropic_base_url(self, url: impl Into<String>) -> Self {
        self.base_url("anthropic", url)
    }
    /// xAI base URL (default: `XAI_BASE_URL`, else `https://api.x.ai/v1`).
    pub fn xai_base_url(self, url: impl Into<String>) -> Self {
        self.base_url("xai", url)
    }
    /// The key the proxy holds for a preset provider (default: its key
    /// variable, e.g. `OPENAI_API_KEY`; for `azure` an `api-key` key).
    /// Used only with [`provider_keys`](Self::provider_keys).
    pub fn provider_key(mut self, provider: &str, key: impl Into<String>) -> Self {
        if let Some(k) = Secret::new(key) {
            self.keys.insert(provider.to_string(), k);
        }
        self
    }
    /// An OpenAI-compatible upstream (a local server, another gateway),
    /// addressed by clients as `name/model`. It may take a compatible
    /// preset's name (`vllm`, `ollama`, ...), replacing it.
    pub fn openai_compatible(
        mut self,
        name: impl Into<String>,
        base_url: impl Into<String>,
        key: Option<String>,
    ) -> Self {
        self.compatible
            .push((name.into(), base_url.into(), key.and_then(Secret::new)));
        self
    }
    /// Hold the provider keys in the proxy and require clients to present
    /// `proxy_key` (default: pass the client's key through).
    pub fn provider_keys(mut self, proxy_key: impl Into<String>) -> Self {
        self.proxy_key = Some(Secret::new(proxy_key).unwrap_or_else(Secret::empty));
        self
    }
    /// Largest request body accepted (default 32 MiB; larger gets 413).
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }
    /// Time to connect to an upstream (default 10 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }
    /// Time for an upstream to send its response headers (default 600 s;
    /// beyond: 504 to the client, record class `timeout`).
    pub fn response_timeout(mut self, t: Duration) -> Self {
        self.response_timeout = t;
        self
    }
    /// Longest silence within an upstream response body (default 300 s;
    /// beyond: the response is cut, record class `timeout`).
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }
    /// Upstream calls in flight at once (default 4096); more wait for a
    /// slot, up to [`queue_timeout`](Self::queue_timeout).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n;
        self
    }
    /// Longest wait for a slot when `max_concurrent` calls are in flight
    /// (default 30 s; beyond: 503 with `Retry-After`, nothing sent, no record).
    pub fn queue_timeout(mut self, t: Duration) -> Self {
        self.queue_timeout = t;
        self
    }
    /// Time for a client to send its request head, and again its whole
    /// body (default 60 s; beyond: the connection is closed, or 408).
    pub fn client_timeout(mut self, t: Duration) -> Self {
        self.client_timeout = t;
        self
    }
    /// The price table for costs (default: the built-in table).
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices = Some(prices);
        self
    }
    /// Most `x-steer-tag-*` tags taken from one request (default 32; the rest are ignored).
    pub fn max_tags(mut self, n: usize) -> Self {
        self.max_tags = n;
        self
    }

    /// The Bedrock Runtime endpoint (default: `BEDROCK_ENDPOINT_URL`, else
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, else
    /// `https://bedrock-runtime.{region}.amazonaws.com`), as for the client.
    pub fn bedrock_endpoint(mut self, url: impl Into<String>) -> Self {
        self.bedrock.endpoint = Some(url.into());
        self
    }
    /// The AWS region of the Bedrock routes (default: the AWS chain's,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION` / the profile's).
    pub fn bedrock_region(mut self, region: impl Into<String>) -> Self {
        self.bedrock.region = Some(region.into());
        self
    }
    /// Static AWS credentials to sign Bedrock calls with (default: the
    /// standard AWS credential chain: environment, profile, SSO, web
    /// identity, container and instance roles).
    pub fn bedrock_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        self.bedrock.keys = Some(AwsKeys {
            access_key_id: access_key_id.into(),
            secret_access_key: Secret::new(secret_access_key).unwrap_or_else(Secret::empty),
            session_token: session_token.and_then(Secret::new),
        });
        self
    }
    /// The key clients present on the Bedrock routes (default: the proxy
    /// key of [`provider_keys`](Self::provider_keys), if any).
    pub fn bedrock_key(mut self, key: impl Into<String>) -> Self {
        self.bedrock_key = Some(Secret::new(key).unwrap_or_else(Secret::empty));
        self
    }
    /// Serve the Bedrock routes without a proxy key when none is
    /// configured: anyone who can reach the proxy uses its AWS credentials
    /// (default: refused with 403 until a key is configured).
    pub fn bedrock_open(mut self, open: bool) -> Self {
        self.bedrock_open = open;
        self
    }

    /// Check and build the configuration.
    pub fn build(self) -> Result<ProxyConfig, ConfigError> {
        let use_env = self.use_env;
        let env = |name: &str| {
            if use_env {
                std::env::var(name).ok()
            } else {
                None
            }
        };
        let mut upstreams = HashMap::new();
        for name in steer::presets::names() {
            let Some(mut info) = steer::presets::resolve_with(name, env) else {
                continue;
            };
            if let Some(url) = self.base_urls.get(name) {
                info = info.with_base_url(url.clone());
            }
            // Azure without an endpoint stays unconfigured: its calls get a 400 naming the variable.
            if !info.base_url().is_empty() {
                check_url(name, info.base_url())?;
            }
            let mut key = info.key().and_then(Secret::new);
            if let Some(k) = self.keys.get(name) {
                info = info.with_key(k.expose());
                key = Some(k.clone());
            }
            upstreams.insert(name.to_string(), Upstream { info, key });
        }
        for (name, base_url, key) in self.compatible {
            if steer::routing::BUILTIN_PROVIDERS.contains(&name.as_str())
                || matches!(name.as_str(), "gemini" | "azure" | "bedrock")
                || name.is_empty()
                || name.contains('/')
            {
                return Err(ConfigError::BadName(name));
            }
            check_url(&name, &base_url)?;
            let info = ProviderInfo::custom(name.clone(), Dialect::OpenAi, base_url, None);
            upstreams.insert(name, Upstream { info, key });
        }
        let auth = match self.proxy_key {
            None => AuthMode::Passthrough,
            Some(k) if k.is_empty() => return Err(ConfigError::EmptyProxyKey),
            Some(k) => AuthMode::ProviderKeys(k),
        };
        let mut bedrock = self.bedrock;
        if bedrock.endpoint.is_none() {
            bedrock.endpoint = ["BEDROCK_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"]
                .iter()
                .find_map(|k| env(k))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty());
        }
        if let Some(url) = &bedrock.endpoint {
            check_url("bedrock", url)?;
        }
        if bedrock
            .keys
            .as_ref()
            .is_some_and(|k| k.secret_access_key.is_empty())
        {
            return Err(ConfigError::EmptyAwsSecret);
        }
        bedrock.access = match (self.bedrock_key.as_ref(), &auth) {
            (Some(k), _) if k.is_empty() => return Err(ConfigError::EmptyProxyKey),
            (Some(k), _) | (None, AuthMode::ProviderKeys(k)) => BedrockAccess::Key(k.clone()),
            (None, AuthMode::Passthrough) if self.bedrock_open => BedrockAccess::Open,
            (None, AuthMode::Passthrough) => BedrockAccess::Closed,
        };
        if self.max_body_bytes == 0 {
            return Err(ConfigError::ZeroLimit("max_body_bytes"));
        }
        if self.max_concurrent == 0 {
            return Err(ConfigError::ZeroLimit("max_concurrent"));
        }
        if self.client_timeout.is_zero() {
            return Err(ConfigError::ZeroLimit("client_timeout"));
        }
        Ok(ProxyConfig {
            upstreams,
            auth,
            max_body_bytes: self.max_body_bytes,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            idle_timeout: self.idle_timeout,
            max_concurrent: self.max_concurrent,
            queue_timeout: self.queue_timeout,
            client_timeout: self.client_timeout,
            prices: self.prices.unwrap_or_else(PriceTable::builtin),
            max_tags: self.max_tags,
            bedrock,
        })
    }
}

fn check_url(name: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        _ => Err(ConfigError::BadUrl {
            name: name.to_string(),
            url: steer::spec::redact(url),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_builder_and_errors() {
        let c = ProxyConfig::builder()
            .ignore_env()
            .openai_base_url("http://127.0.0.1:1/v1/")
            .openai_compatible("ollama", "http://127.0.0.1:11434/v1", None)
            .build()
            .unwrap();
        assert_eq!(
            c.upstream("openai").unwrap().url("chat/completions"),
            "http://127.0.0.1:1/v1/chat/completions"
        );
        assert_eq!(
            c.upstream("anthropic").unwrap().base_url(),
            "https://api.anthropic.com/v1"
        );
        assert_eq!(
            c.upstream("ollama").unwrap().base_url(),
            "http://127.0.0.1:11434/v1"
        );
        for name in steer::presets::names() {
            assert!(c.upstream(name).is_some(), "{name}");
        }
        assert_eq!(c.upstream("azure").unwrap().base_url(), "");
        assert!(!c.requires_proxy_key());
        assert!(matches!(
            ProxyConfig::builder()
                .ignore_env()
                .openai_base_url("ftp://x")
                .build(),
            Err(ConfigError::BadUrl { .. })
        ));
        assert!(matches!(
            ProxyConfig::builder()
                .ignore_env()
                .openai_compatible("openai", "http://x", None)
                .build(),
            Err(ConfigError::BadName(_))
        ));
        assert_eq!(
            ProxyConfig::builder()
                .ignore_env()
                .provider_keys(" ")
                .build()
                .unwrap_err(),
            ConfigError::EmptyProxyKey
        );
    }

    #[test]
    fn debug_never_shows_keys() {
        let c = ProxyConfig::builder()
            .ignore_env()
            .provider_key("openai", "sk-secret-123")
            .provider_keys("proxy-secret-456")
            .build()
            .unwrap();
        let d = format!("{c:?}");
        assert!(
            !d.contains("sk-secret-123") && !d.contains("proxy-secret-456"),
            "{d}"
        );
    }
}
