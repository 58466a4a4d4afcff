//! Keys: which credentials go upstream, and the proxy key check.
//!
//! * Pass-through (default): the client's `Authorization` and `x-api-key`
//!   headers are forwarded unchanged; the proxy holds no key.
//! * Provider keys: the client presents the proxy key (`Authorization:
//!   Bearer KEY` or `x-api-key: KEY`), compared in constant time; it is
//!   removed and the provider's key is set instead, in the header the
//!   upstream wants ([`AuthHeader`]: `Authorization: Bearer` for the
//!   OpenAI wire, `x-api-key` for the Anthropic wire, `api-key` for an
//!   Azure key, `x-goog-api-key` for Gemini's native wire).
//!
//! Keys are never logged, stored in records or echoed in errors: a
//! [`Secret`]'s Debug is `[REDACTED]` and the proxy's own error bodies
//! never quote a header.

use std::fmt;

use http::header::{HeaderMap, HeaderValue};
use steer::presets::AuthHeader;

/// The `x-api-key` header (Anthropic).
pub const X_API_KEY: &str = "x-api-key";
/// Every header a client may carry a key in: `Authorization`, `x-api-key`
/// (Anthropic), `api-key` (Azure OpenAI), `x-goog-api-key` (Gemini).
pub const KEY_HEADERS: [&str; 4] = ["authorization", X_API_KEY, "api-key", "x-goog-api-key"];

/// A key. Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A key (trimmed); `None` when empty.
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let k = key.into().trim().to_string();
        (!k.is_empty()).then_some(Secret(k))
    }
    pub(crate) fn empty() -> Self {
        Secret(String::new())
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Compare in time that depends only on the lengths, never on where the
/// bytes first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The keys a client presented: `Authorization: Bearer KEY`, `x-api-key`,
/// `api-key` or `x-goog-api-key`.
fn presented(headers: &HeaderMap) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(2);
    for name in KEY_HEADERS {
        if let Some(v) = headers.get(name) {
            let b = v.as_bytes();
            let key = b
                .strip_prefix(b"Bearer ")
                .or_else(|| b.strip_prefix(b"bearer "))
                .unwrap_or(b);
            out.push(key.trim_ascii());
        }
    }
    out
}

/// Whether the client presented the proxy key.
pub fn check_proxy_key(headers: &HeaderMap, proxy_key: &Secret) -> bool {
    // Every presented key is compared (no early exit on the first one).
    presented(headers).into_iter().fold(false, |ok, k| {
        constant_time_eq(k, proxy_key.expose().as_bytes()) | ok
    })
}

/// The header a client presents the proxy key in on the Bedrock routes,
/// whose `Authorization` header carries the AWS SDK's own signature.
pub const PROXY_KEY_HEADER: &str = "x-steer-proxy-key";

/// Whether a Bedrock client presented the proxy key: `x-steer-proxy-key:
/// KEY`, or any header [`check_proxy_key`] accepts (`Authorization: Bearer
/// KEY`, as an AWS SDK sends a Bedrock API key).
pub fn check_bedrock_key(headers: &HeaderMap, proxy_key: &Secret) -> bool {
    let extra = headers.get(PROXY_KEY_HEADER).map(|v| v.as_bytes().trim_ascii());
    presented(headers).into_iter().chain(extra).fold(false, |ok, k| {
        constant_time_eq(k, proxy_key.expose().as_bytes()) | ok
    })
}

/// Replace the client's credentials by the provider's key, in the `auth` header.
/// Returns false when the key cannot be a header value.
pub fn set_provider_key(headers: &mut HeaderMap, auth: AuthHeader, key: Option<&Secret>) -> bool {
    for name in KEY_HEADERS {
        headers.remove(name);
    }
    let Some(key) = key else { return true };
    match HeaderValue::from_str(&auth.header_value(key.expose())) {
        Ok(mut v) => {
            v.set_sensitive(true);
            headers.insert(http::HeaderName::from_static(auth.header_name()), v);
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::header::AUTHORIZATION;

    #[test]
    fn proxy_key_from_either_header() {
        let k = Secret::new("pk-123").unwrap();
        let mut h = HeaderMap::new();
        assert!(!check_proxy_key(&h, &k));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer pk-123"));
        assert!(check_proxy_key(&h, &k));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer pk-124"));
        assert!(!check_proxy_key(&h, &k));
        h.insert(X_API_KEY, HeaderValue::from_static("pk-123"));
        assert!(check_proxy_key(&h, &k));
        assert!(!constant_time_eq(b"a", b"ab"));
        let mut b = HeaderMap::new();
        b.insert(
            AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=client-key/20250101/us-east-1/bedrock/aws4_request",
            ),
        );
        assert!(!check_bedrock_key(&b, &k));
        b.insert(PROXY_KEY_HEADER, HeaderValue::from_static("pk-123"));
        assert!(check_bedrock_key(&b, &k) && !check_proxy_key(&b, &k));
        assert_eq!(format!("{k:?}"), "[REDACTED]");
    }

    #[test]
    fn provider_key_replaces_client_credentials() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer pk-123"));
        h.insert(X_API_KEY, HeaderValue::from_static("pk-123"));
        let key = Secret::new("sk-ant").unwrap();
        assert!(set_provider_key(&mut h, AuthHeader::Anthropic, Some(&key)));
        assert!(h.get(AUTHORIZATION).is_none());
        assert_eq!(h.get(X_API_KEY).unwrap(), "sk-ant");
        let key = Secret::new("sk-oai").unwrap();
        assert!(set_provider_key(&mut h, AuthHeader::Bearer, Some(&key)));
        assert!(h.get(X_API_KEY).is_none());
        assert_eq!(h.get(AUTHORIZATION).unwrap(), "Bearer sk-oai");
        assert!(h.get(AUTHORIZATION).unwrap().is_sensitive());
        h.insert("x-goog-api-key", HeaderValue::from_static("client"));
        let key = Secret::new("az-key").unwrap();
        assert!(set_provider_key(&mut h, AuthHeader::AzureKey, Some(&key)));
        assert!(h.get(AUTHORIZATION).is_none() && h.get("x-goog-api-key").is_none());
        assert_eq!(h.get("api-key").unwrap(), "az-key");
    }
}
