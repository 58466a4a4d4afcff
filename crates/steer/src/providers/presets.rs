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

use super::Dialect;

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

#[cfg(test)]
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
}
