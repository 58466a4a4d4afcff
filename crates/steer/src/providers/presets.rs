//! The providers a client knows without configuration: the built-in ones,
//! and named presets for local and hosted OpenAI-compatible servers.
//!
//! | provider | dialect | base URL (env override) | key |
//! |---|---|---|---|
//! | `openai` | OpenAI | `https://api.openai.com/v1` (`OPENAI_BASE_URL`) | `OPENAI_API_KEY` |
//! | `anthropic` | Anthropic | `https://api.anthropic.com/v1` (`ANTHROPIC_BASE_URL`) | `ANTHROPIC_API_KEY` |
//! | `xai` | OpenAI | `https://api.x.ai/v1` (`XAI_BASE_URL`) | `XAI_API_KEY` |
//! | `gemini` | Gemini | `https://generativelanguage.googleapis.com/v1beta` (`GEMINI_BASE_URL`) | `GEMINI_API_KEY` or `GOOGLE_API_KEY` |
//! | `azure` | Azure OpenAI | `AZURE_OPENAI_ENDPOINT` (required) | `AZURE_OPENAI_API_KEY`, or an Entra token in `AZURE_OPENAI_AD_TOKEN`; `OPENAI_API_VERSION` |
//! | `ollama` | OpenAI | `http://localhost:11434/v1` (`OLLAMA_BASE_URL`, or `OLLAMA_HOST`) | none |
//! | `vllm` | OpenAI | `http://localhost:8000/v1` (`VLLM_BASE_URL`) | `VLLM_API_KEY` (optional) |
//! | `lmstudio` | OpenAI | `http://localhost:1234/v1` (`LMSTUDIO_BASE_URL`) | none |
//! | `groq` | OpenAI | `https://api.groq.com/openai/v1` (`GROQ_BASE_URL`) | `GROQ_API_KEY` |
//! | `deepseek` | OpenAI | `https://api.deepseek.com/v1` (`DEEPSEEK_BASE_URL`) | `DEEPSEEK_API_KEY` |
//! | `mistral` | OpenAI | `https://api.mistral.ai/v1` (`MISTRAL_BASE_URL`) | `MISTRAL_API_KEY` |
//! | `openrouter` | OpenAI | `https://openrouter.ai/api/v1` (`OPENROUTER_BASE_URL`) | `OPENROUTER_API_KEY` |
//! | `together` | OpenAI | `https://api.together.xyz/v1` (`TOGETHER_BASE_URL`) | `TOGETHER_API_KEY` |

use std::fmt;

use super::{ApiKey, Auth, Dialect, HttpProvider};

/// Azure OpenAI `api-version` when `OPENAI_API_VERSION` is not set (the
/// current GA version of the data-plane inference API).
pub(crate) const AZURE_API_VERSION: &str = "2024-10-21";

/// A provider known by name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Preset {
    /// The name used as `name/model` and recorded as the provider.
    pub name: &'static str,
    pub dialect: Dialect,
    /// Default base URL; `None` when it must be configured (Azure).
    pub base_url: Option<&'static str>,
    /// Environment variable overriding the base URL.
    pub url_env: &'static str,
    /// Environment variables holding the key, in order of preference.
    pub key_env: &'static [&'static str],
    /// Whether a call without a key is refused up front (hosted services).
    pub key_required: bool,
    /// The field limiting the answer's length.
    pub max_tokens_field: &'static str,
}

const fn compatible(
    name: &'static str,
    base_url: &'static str,
    url_env: &'static str,
    key_env: &'static [&'static str],
    key_required: bool,
) -> Preset {
    Preset {
        name,
        dialect: Dialect::OpenAi,
        base_url: Some(base_url),
        url_env,
        key_env,
        key_required,
        max_tokens_field: "max_tokens",
    }
}

/// Every provider known without configuration.
pub(crate) const PRESETS: &[Preset] = &[
    Preset {
        name: "openai",
        dialect: Dialect::OpenAi,
        base_url: Some("https://api.openai.com/v1"),
        url_env: "OPENAI_BASE_URL",
        key_env: &["OPENAI_API_KEY"],
        key_required: true,
        max_tokens_field: "max_completion_tokens",
    },
    Preset {
        name: "anthropic",
        dialect: Dialect::Anthropic,
        base_url: Some("https://api.anthropic.com/v1"),
        url_env: "ANTHROPIC_BASE_URL",
        key_env: &["ANTHROPIC_API_KEY"],
        key_required: true,
        max_tokens_field: "max_tokens",
    },
    compatible(
        "xai",
        "https://api.x.ai/v1",
        "XAI_BASE_URL",
        &["XAI_API_KEY"],
        true,
    ),
    Preset {
        name: "gemini",
        dialect: Dialect::Gemini,
        base_url: Some("https://generativelanguage.googleapis.com/v1beta"),
        url_env: "GEMINI_BASE_URL",
        key_env: &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        key_required: true,
        max_tokens_field: "maxOutputTokens",
    },
    Preset {
        name: "azure",
        dialect: Dialect::AzureOpenAi,
        base_url: None,
        url_env: "AZURE_OPENAI_ENDPOINT",
        key_env: &["AZURE_OPENAI_API_KEY"],
        key_required: true,
        max_tokens_field: "max_completion_tokens",
    },
    compatible(
        "ollama",
        "http://localhost:11434/v1",
        "OLLAMA_BASE_URL",
        &[],
        false,
    ),
    compatible(
        "vllm",
        "http://localhost:8000/v1",
        "VLLM_BASE_URL",
        &["VLLM_API_KEY"],
        false,
    ),
    compatible(
        "lmstudio",
        "http://localhost:1234/v1",
        "LMSTUDIO_BASE_URL",
        &[],
        false,
    ),
    compatible(
        "groq",
        "https://api.groq.com/openai/v1",
        "GROQ_BASE_URL",
        &["GROQ_API_KEY"],
        true,
    ),
    compatible(
        "deepseek",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_BASE_URL",
        &["DEEPSEEK_API_KEY"],
        true,
    ),
    compatible(
        "mistral",
        "https://api.mistral.ai/v1",
        "MISTRAL_BASE_URL",
        &["MISTRAL_API_KEY"],
        true,
    ),
    compatible(
        "openrouter",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_BASE_URL",
        &["OPENROUTER_API_KEY"],
        true,
    ),
    compatible(
        "together",
        "https://api.together.xyz/v1",
        "TOGETHER_BASE_URL",
        &["TOGETHER_API_KEY"],
        true,
    ),
];

/// The preset of this name.
pub(crate) fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The names of every preset (`openai`, `anthropic`, ..., `together`).
pub fn names() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|p| p.name)
}

/// `OLLAMA_HOST` (`host:port` or a URL without `/v1`) as a base URL.
pub(crate) fn ollama_host(host: &str) -> String {
    let h = host.trim().trim_end_matches('/');
    let h = if h.contains("://") {
        h.to_string()
    } else {
        format!("http://{h}")
    };
    if h.ends_with("/v1") {
        h
    } else {
        format!("{h}/v1")
    }
}

/// A provider known by name, resolved from the environment: what a program
/// relaying provider traffic (such as a gateway) needs to call it the way
/// [`SteerClient`](crate::SteerClient) does — its dialect, base URL, key and
/// key header, Azure `api-version`, and the URL of a call.
///
/// ```
/// use steer::presets::{resolve_with, AuthHeader};
/// let env = |k: &str| match k {
///     "AZURE_OPENAI_ENDPOINT" => Some("https://res.openai.azure.com/".to_string()),
///     "AZURE_OPENAI_API_KEY" => Some("k-123".to_string()),
///     _ => None,
/// };
/// let azure = resolve_with("azure", env).unwrap();
/// assert_eq!(azure.auth(), AuthHeader::AzureKey);
/// assert_eq!(
///     azure.chat_url("my-gpt4o", false),
///     "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
/// );
/// let ollama = resolve_with("ollama", |_| None).unwrap();
/// assert_eq!(ollama.chat_url("llama3.2", true), "http://localhost:11434/v1/chat/completions");
/// ```
#[derive(Clone)]
pub struct ProviderInfo {
    http: HttpProvider,
    /// `None` for a custom provider.
    preset: Option<&'static Preset>,
}

impl fmt::Debug for ProviderInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderInfo")
            .field("name", &self.http.name)
            .field("dialect", &self.http.dialect)
            .field("base_url", &crate::spec::redact(&self.http.base_url))
            .field("key", &self.http.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("auth", &self.http.auth)
            .field("api_version", &self.http.api_version)
            .finish()
    }
}

/// The header a provider's key goes in.
pub use super::Auth as AuthHeader;

impl ProviderInfo {
    /// The provider as the client uses it.
    pub(crate) fn into_http(self) -> HttpProvider {
        self.http
    }
    /// The provider's name (`openai`, `azure`, `ollama`, ...), recorded as the record's provider.
    pub fn name(&self) -> &str {
        &self.http.name
    }
    /// Its wire protocol.
    pub fn dialect(&self) -> Dialect {
        self.http.dialect
    }
    /// The base URL (empty for Azure when `AZURE_OPENAI_ENDPOINT` is not set).
    pub fn base_url(&self) -> &str {
        &self.http.base_url
    }
    /// The key (or, for Azure, the Entra token) found for it, if any.
    pub fn key(&self) -> Option<&str> {
        self.http.api_key.as_ref().map(ApiKey::expose)
    }
    /// The header the key goes in.
    pub fn auth(&self) -> AuthHeader {
        self.http.auth
    }
    /// Azure OpenAI's `api-version` (`OPENAI_API_VERSION`, else the default); `None` for others.
    pub fn api_version(&self) -> Option<&str> {
        (self.http.dialect == Dialect::AzureOpenAi)
            .then(|| self.http.api_version.as_deref().unwrap_or(AZURE_API_VERSION))
    }
    /// The environment variables the key is read from, in order of preference.
    pub fn key_env(&self) -> &'static [&'static str] {
        self.preset.map_or(&[], |p| p.key_env)
    }
    /// Whether the hosted service refuses calls without a key.
    pub fn key_required(&self) -> bool {
        self.preset.is_some_and(|p| p.key_required)
    }
    /// A provider that is not a preset (an OpenAI-compatible server, an
    /// Anthropic-compatible gateway), with the dialect's usual key header.
    pub fn custom(
        name: impl Into<String>,
        dialect: Dialect,
        base_url: impl Into<String>,
        key: Option<&str>,
    ) -> Self {
        let mut http = HttpProvider::new(name, dialect, base_url, key.and_then(crate::providers::api_key));
        if dialect == Dialect::AzureOpenAi {
            http.base_url = azure_endpoint(&http.base_url);
        }
        ProviderInfo { http, preset: None }
    }
    /// The same provider at another base URL.
    #[must_use]
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.http.base_url = if self.http.dialect == Dialect::AzureOpenAi {
            azure_endpoint(&url)
        } else {
            url
        };
        self
    }
    /// The same provider with this key (for Azure: an `api-key` key).
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.http.api_key = crate::providers::api_key(key);
        if self.http.dialect == Dialect::AzureOpenAi {
            self.http.auth = Auth::AzureKey;
        }
        self
    }
    /// Where a chat call of `model` goes in the provider's own dialect (for
    /// Azure `model` is the deployment; for Gemini the stream URL asks for SSE).
    pub fn chat_url(&self, model: &str, stream: bool) -> String {
        self.http.url(model, stream)
    }
    /// Where an embeddings call of `model` goes, if the dialect has one.
    pub fn embeddings_url(&self, model: &str) -> Option<String> {
        self.http.embeddings_url(model)
    }
}

impl Auth {
    /// The header's name (`authorization`, `x-api-key`, `api-key`, `x-goog-api-key`).
    pub fn header_name(self) -> &'static str {
        match self {
            Auth::Bearer => "authorization",
            Auth::Anthropic => "x-api-key",
            Auth::AzureKey => "api-key",
            Auth::Google => "x-goog-api-key",
        }
    }
    /// The header's value for `key` (`Bearer KEY` or the key itself).
    pub fn header_value(self, key: &str) -> String {
        match self {
            Auth::Bearer => format!("Bearer {key}"),
            _ => key.to_string(),
        }
    }
}

/// The provider `name` (a preset), with its base URL, key and Azure
/// settings from the process environment, resolved like
/// [`SteerClientBuilder`](crate::SteerClientBuilder) does. `None` for a
/// name that is not a preset.
pub fn resolve(name: &str) -> Option<ProviderInfo> {
    resolve_with(name, |k| std::env::var(k).ok())
}

/// [`resolve`] with `env` in place of the process environment (blank values count as unset).
pub fn resolve_with(name: &str, env: impl Fn(&str) -> Option<String>) -> Option<ProviderInfo> {
    let preset = preset(name)?;
    let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let base_url = env(preset.url_env)
        .or_else(|| {
            (name == "ollama")
                .then(|| env("OLLAMA_HOST").map(|h| ollama_host(&h)))
                .flatten()
        })
        .or_else(|| preset.base_url.map(str::to_string))
        .unwrap_or_default();
    let mut http = HttpProvider::new(name, preset.dialect, base_url, None);
    let mut key = preset
        .key_env
        .iter()
        .find_map(|k| env(k))
        .and_then(crate::providers::api_key);
    if preset.dialect == Dialect::AzureOpenAi {
        http.base_url = azure_endpoint(&http.base_url);
        http.api_version = env("OPENAI_API_VERSION");
        if key.is_none() {
            // A Microsoft Entra ID token instead of a key.
            key = env("AZURE_OPENAI_AD_TOKEN").and_then(crate::providers::api_key);
            if key.is_some() {
                http.auth = Auth::Bearer;
            }
        }
    }
    http.api_key = key;
    http.key_env = preset
        .key_required
        .then(|| preset.key_env.first().copied())
        .flatten();
    http.max_tokens_field = preset.max_tokens_field;
    Some(ProviderInfo {
        http,
        preset: Some(preset),
    })
}

/// An Azure OpenAI resource endpoint without a trailing `/` or `/openai...` path.
pub(crate) fn azure_endpoint(url: &str) -> String {
    let u = url.trim().trim_end_matches('/');
    match u.find("/openai") {
        Some(i) => u[..i].to_string(),
        None => u.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_ollama_host_forms() {
        let mut n: Vec<_> = names().collect();
        let len = n.len();
        n.sort_unstable();
        n.dedup();
        assert_eq!(n.len(), len);
        assert_eq!(ollama_host("127.0.0.1:11434"), "http://127.0.0.1:11434/v1");
        assert_eq!(ollama_host("http://gpu:11434/"), "http://gpu:11434/v1");
    }

    #[test]
    fn resolve_every_preset_and_azure_entra() {
        for name in names() {
            let p = resolve_with(name, |_| None).unwrap();
            assert_eq!(p.name(), name);
            assert!(p.key().is_none());
        }
        assert!(resolve_with("bedrock", |_| None).is_none());
        let env = |k: &str| match k {
            "AZURE_OPENAI_ENDPOINT" => Some("https://r.openai.azure.com/openai/v1/".to_string()),
            "AZURE_OPENAI_AD_TOKEN" => Some("tok-123".to_string()),
            "OPENAI_API_VERSION" => Some("2025-01-01-preview".to_string()),
            "OLLAMA_HOST" => Some("gpu:11434".to_string()),
            _ => None,
        };
        let a = resolve_with("azure", env).unwrap();
        assert_eq!(a.base_url(), "https://r.openai.azure.com");
        assert_eq!((a.auth(), a.key()), (Auth::Bearer, Some("tok-123")));
        assert_eq!(a.api_version(), Some("2025-01-01-preview"));
        assert_eq!(
            a.embeddings_url("emb").unwrap(),
            "https://r.openai.azure.com/openai/deployments/emb/embeddings?api-version=2025-01-01-preview"
        );
        assert!(!format!("{a:?}").contains("tok-123"));
        let a = a.with_key("k");
        assert_eq!(a.auth().header_name(), "api-key");
        assert_eq!(
            resolve_with("ollama", env).unwrap().base_url(),
            "http://gpu:11434/v1"
        );
        let g = resolve_with("gemini", |k| (k == "GOOGLE_API_KEY").then(|| "g".to_string())).unwrap();
        assert_eq!(g.key(), Some("g"));
        assert_eq!(
            g.chat_url("gemini-2.5-flash", true),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(Auth::Bearer.header_value("k"), "Bearer k");
    }
}
