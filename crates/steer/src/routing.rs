//! Which provider serves a model.
//!
//! 1. An explicit `provider/model` (`anthropic/claude-sonnet-4-5`,
//!    `azure/my-deployment`, `ollama/llama3.2`, `sim/gpt-4o`): any known
//!    provider (see the presets: openai, anthropic, xai, gemini, azure,
//!    bedrock, ollama, vllm, lmstudio, groq, deepseek, mistral, openrouter,
//!    together) or a registered custom one;
//! 2. else the provider the price table names for the model;
//! 3. else name rules: `gpt-*`, `chatgpt-*`, `o1*`, `o3*`, `o4*` → openai;
//!    `claude-*` → anthropic; `grok-*` → xai; `gemini-*` → gemini.
//!
//! Anything else is [`SteerError::UnknownModel`], never a silent substitution.

use crate::error::SteerError;
use crate::pricing::PriceTable;

/// Every provider a client knows without configuration (`openai`,
/// `anthropic`, `xai`, `gemini`, `azure`, `ollama`, `vllm`, `lmstudio`,
/// `groq`, `deepseek`, `mistral`, `openrouter`, `together`).
pub use crate::providers::presets::names as known_providers;

/// Built-in provider names.
pub const BUILTIN_PROVIDERS: [&str; 4] = ["openai", "anthropic", "xai", "sim"];

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The provider recorded in the metrics (`openai`, `anthropic`, `xai`,
    /// a registered compatible server, or `sim` for a simulated model no rule knows).
    pub provider: String,
    /// The model without the provider prefix.
    pub model: String,
    /// Whether the simulated provider answers (`sim/<model>`).
    pub simulated: bool,
}

/// The provider the name rules give, if any.
pub fn provider_by_name(model: &str) -> Option<&'static str> {
    if model.starts_with("gpt-")
        || model.starts_with("chatgpt-")
        || model.starts_with("o1")
        || model.starts_with("o3")
        || model.starts_with("o4")
    {
        Some("openai")
    } else if model.starts_with("claude-") {
        Some("anthropic")
    } else if model.starts_with("grok-") {
        Some("xai")
    } else if model.starts_with("gemini-") || model.starts_with("gemma-") {
        Some("gemini")
    } else {
        None
    }
}

fn infer(model: &str, prices: &PriceTable) -> Option<String> {
    prices
        .provider_of(model)
        .map(str::to_string)
        .or_else(|| provider_by_name(model).map(str::to_string))
}

/// Route `model` with the built-in price table and the built-in providers.
///
/// ```
/// let r = steer::route("claude-sonnet-4-5").unwrap();
/// assert_eq!((r.provider.as_str(), r.model.as_str()), ("anthropic", "claude-sonnet-4-5"));
/// let r = steer::route("sim/gpt-4o-mini").unwrap();
/// assert_eq!((r.provider.as_str(), r.simulated), ("openai", true));
/// assert!(steer::route("llama3").is_err());
/// ```
pub fn route(model: &str) -> Result<Route, SteerError> {
    route_with(model, &PriceTable::builtin(), |_| false)
}

/// Route `model` with this price table; `is_custom(name)` says whether a
/// compatible provider of that name is registered.
pub fn route_with(
    model: &str,
    prices: &PriceTable,
    is_custom: impl Fn(&str) -> bool,
) -> Result<Route, SteerError> {
    let unknown = |reason: String| SteerError::UnknownModel {
        model: model.to_string(),
        reason,
    };
    if model.trim().is_empty() {
        return Err(unknown("the model name is empty".into()));
    }
    if let Some((prefix, rest)) = model.split_once('/') {
        if rest.is_empty() {
            return Err(unknown("no model after the provider prefix".into()));
        }
        match prefix {
            "sim" => {
                return Ok(Route {
                    provider: infer(rest, prices).unwrap_or_else(|| "sim".into()),
                    model: rest.to_string(),
                    simulated: true,
                })
            }
            p if crate::providers::presets::preset(p).is_some() || p == "bedrock" => {
                return Ok(Route {
                    provider: prefix.to_string(),
                    model: rest.to_string(),
                    simulated: false,
                })
            }
            p if is_custom(p) => {
                return Ok(Route {
                    provider: p.to_string(),
                    model: rest.to_string(),
                    simulated: false,
                })
            }
            _ => {}
        }
        // A model id that itself contains '/' may still be priced.
        if let Some(p) = prices.provider_of(model) {
            return Ok(Route {
                provider: p.to_string(),
                model: model.to_string(),
                simulated: false,
            });
        }
        return Err(unknown(format!(
            "no provider named `{prefix}`; use a known provider (openai/, anthropic/, xai/, gemini/, azure/, bedrock/, ollama/, vllm/, lmstudio/, groq/, deepseek/, mistral/, openrouter/, together/), sim/, or register a custom one (SteerClientBuilder::custom_provider, `[providers.NAME]` in steer.toml)"
        )));
    }
    match infer(model, prices) {
        Some(provider) => Ok(Route {
            provider,
            model: model.to_string(),
            simulated: false,
        }),
        None => Err(unknown(
            "no provider known for it; prefix it with a provider (`openai/`, `anthropic/`, `xai/`, a registered server's name, or `sim/`)".into(),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn explicit_table_and_rules() {
        let t = PriceTable::builtin();
        let r = |m: &str| route_with(m, &t, |p| p == "ollama");
        assert_eq!(r("gpt-4o-mini").unwrap().provider, "openai");
        assert_eq!(r("o3-mini").unwrap().provider, "openai");
        assert_eq!(r("o4-mini-2099-01-01").unwrap().provider, "openai");
        assert_eq!(r("chatgpt-5-preview").unwrap().provider, "openai");
        assert_eq!(r("claude-new-thing").unwrap().provider, "anthropic");
        assert_eq!(r("grok-9").unwrap().provider, "xai");
        assert_eq!(r("grok-4-0709").unwrap().provider, "xai");
        let x = r("xai/grok-4").unwrap();
        assert_eq!((x.provider.as_str(), x.model.as_str()), ("xai", "grok-4"));
        let o = r("ollama/llama3.2:1b").unwrap();
        assert_eq!(
            (o.provider.as_str(), o.model.as_str(), o.simulated),
            ("ollama", "llama3.2:1b", false)
        );
        let s = r("sim/claude-haiku-4-5").unwrap();
        assert_eq!(
            (s.provider.as_str(), s.model.as_str(), s.simulated),
            ("anthropic", "claude-haiku-4-5", true)
        );
        assert_eq!(r("sim/my-model").unwrap().provider, "sim");
        for (m, p) in [
            ("gemini-2.5-flash", "gemini"),
            ("azure/my-gpt4o-deployment", "azure"),
            ("ollama/llama3.2", "ollama"),
            ("bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", "bedrock"),
            ("groq/llama-3.3-70b-versatile", "groq"),
        ] {
            assert_eq!(r(m).unwrap().provider, p, "{m}");
        }
    }

    #[test]
    fn unknown_models_are_errors() {
        let t = PriceTable::builtin();
        for m in ["llama3", "", "myserver/x", "openai/", "mistral-large"] {
            let e = route_with(m, &t, |_| false).unwrap_err();
            assert!(matches!(e, SteerError::UnknownModel { .. }), "{m}: {e}");
        }
    }
}
