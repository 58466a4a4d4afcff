//! Where a call goes: the upstream URL of an endpoint for a routed model.

use steer::presets::AuthHeader;
use steer::wire::Dialect;

use super::Endpoint;
use crate::config::Upstream;

/// Where a call goes: the upstream URL, the dialect its answer is measured
/// in, and the header the proxy's key goes in.
pub(super) struct Target {
    pub(super) url: String,
    pub(super) dialect: Dialect,
    pub(super) auth: AuthHeader,
}

/// The upstream URL of `endpoint` for a call of `model` on `up`.
pub(super) fn target(endpoint: Endpoint, up: &Upstream, model: &str, stream: bool) -> Result<Target, String> {
    let openai = |path: &str| Target {
        url: up.url(path),
        dialect: Dialect::OpenAi,
        auth: AuthHeader::Bearer,
    };
    if up.base_url().is_empty() {
        let var = if up.name() == "azure" {
            "AZURE_OPENAI_ENDPOINT"
        } else {
            "its base URL"
        };
        return Err(format!(
            "provider `{}` has no endpoint configured: set {var}",
            up.name()
        ));
    }
    let dialect = up.dialect();
    let wrong = |wire: &str| {
        Err(format!(
            "provider `{}` is not served on {wire}; use {}",
            up.name(),
            match dialect {
                Dialect::Gemini => "/v1/chat/completions or /v1beta/models/{model}:generateContent",
                _ => "/v1/chat/completions",
            }
        ))
    };
    Ok(match (endpoint, dialect) {
        (Endpoint::ChatCompletions, Dialect::AzureOpenAi) => Target {
            url: up.info().chat_url(model, stream),
            dialect: Dialect::OpenAi,
            auth: up.auth(),
        },
        (Endpoint::Embeddings, Dialect::AzureOpenAi) => Target {
            url: up.info().embeddings_url(model).unwrap_or_default(),
            dialect: Dialect::OpenAi,
            auth: up.auth(),
        },
        // Gemini's OpenAI-compatible endpoint.
        (Endpoint::ChatCompletions, Dialect::Gemini) => openai("openai/chat/completions"),
        (Endpoint::Embeddings, Dialect::Gemini) => openai("openai/embeddings"),
        (Endpoint::Embeddings, Dialect::Anthropic) => return wrong("/v1/embeddings"),
        // Anthropic's OpenAI-compatible endpoint, and OpenAI-compatible servers.
        (Endpoint::ChatCompletions, _) => openai("chat/completions"),
        (Endpoint::Embeddings, _) => openai("embeddings"),
        (Endpoint::Messages, Dialect::Gemini | Dialect::AzureOpenAi) => return wrong("/v1/messages"),
        (Endpoint::Messages, _) => Target {
            url: up.url("messages"),
            dialect: Dialect::Anthropic,
            auth: AuthHeader::Anthropic,
        },
        (Endpoint::Gemini, Dialect::Gemini) => Target {
            url: up.info().chat_url(model, stream),
            dialect: Dialect::Gemini,
            auth: AuthHeader::Google,
        },
        (Endpoint::Gemini, _) => {
            return Err(format!(
                "/v1beta/models/... is Gemini's API; `{model}` is a model of `{}`",
                up.name()
            ))
        }
    })
}

/// The longest model name, deployment or model id accepted (a Bedrock
/// ARN is at most 2048 bytes).
pub(super) const MAX_MODEL_LEN: usize = 2048;

/// The 400 of a model, deployment or model id that could leave its path segment.
pub(super) const BAD_PATH_ID: &str = "the model, deployment or model id in the path is empty, longer than 2048 bytes, a `.` or `..` segment, or contains `/`, `\\`, `%`, `?`, `#` or a control character";

/// Whether a name that goes into an upstream URL path (a Gemini model, an
/// Azure deployment, a Bedrock model id; decoded) stays where it is put:
/// not empty, no dot segment, no separator, escape or control character
/// (`/` allowed between non-empty segments when `slash_ok`, for ARNs).
pub(super) fn path_id_ok(id: &str, slash_ok: bool) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MODEL_LEN
        && !id
            .chars()
            .any(|c| c.is_control() || matches!(c, '\\' | '%' | '?' | '#') || (c == '/' && !slash_ok))
        && !id
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
}

/// A Gemini URL below `base` with the API version the client's path named:
/// a base ending in a version segment (`/v1beta`, Gemini's default, or
/// `/v1`) has it replaced; any other base is used as it is.
pub(super) fn with_version(url: String, base: &str, version: &str) -> String {
    let base = base.trim_end_matches('/');
    let Some((root, last)) = base.rsplit_once('/') else {
        return url;
    };
    if !matches!(last, "v1" | "v1beta") || last == version {
        return url;
    }
    match url.strip_prefix(base) {
        Some(rest) => format!("{root}/{version}{rest}"),
        None => url,
    }
}

/// The decoded pairs of a request's query string.
pub(super) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return Vec::new();
    };
    reqwest::Url::parse(&format!("http://q/?{q}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_ids_stay_in_their_segment() {
        for ok in ["gpt-4o", "my-dep_1.2", "anthropic.claude-v2:1"] {
            assert!(path_id_ok(ok, false), "{ok}");
        }
        assert!(path_id_ok(
            "arn:aws:bedrock:us-east-1:1:inference-profile/us.nova",
            true
        ));
        for bad in [
            "", ".", "..", "a/b", "../x", "a\\b", "a%2Fb", "a?b", "a#b", "a\nb", "a\u{0}",
        ] {
            assert!(!path_id_ok(bad, false), "{bad:?}");
        }
        for bad in ["..", "a/../b", "a/./b", "/a", "a/", "a//b"] {
            assert!(!path_id_ok(bad, true), "{bad:?}");
        }
        assert!(!path_id_ok(&"a".repeat(MAX_MODEL_LEN + 1), true));
    }

    #[test]
    fn gemini_urls_take_the_path_s_api_version() {
        let base = "https://generativelanguage.googleapis.com/v1beta";
        let url = format!("{base}/models/gemini-2.5-flash:generateContent");
        assert_eq!(
            with_version(url.clone(), base, "v1"),
            "https://generativelanguage.googleapis.com/v1/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(with_version(url.clone(), base, "v1beta"), url);
        let other = "http://gateway.local/gemini";
        let url = format!("{other}/models/m:generateContent");
        assert_eq!(with_version(url.clone(), other, "v1"), url);
    }
}
