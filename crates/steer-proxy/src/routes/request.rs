//! What goes upstream: the request headers, and the request body read
//! without a JSON tree and edited in place.
//!
//! Only the fields the proxy needs are read (`model`, `stream`,
//! `stream_options`, `user`, `metadata`), borrowed from the body. The body
//! goes upstream byte for byte unless the model had a `provider/` prefix
//! or an OpenAI stream did not ask for usage; then only those bytes are
//! replaced ([`splice`]).

use std::borrow::Cow;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::Endpoint;

/// Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Headers to send upstream: all but hop-by-hop ones, `Host`,
/// `Content-Length`, `x-steer-*`, `Expect` (the proxy answered it) and
/// `Content-Encoding` (the body goes decoded); `Accept-Encoding: identity`.
pub(crate) fn upstream_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        let n = name.as_str();
        if is_hop_by_hop(name)
            || n == "host"
            || n == "content-length"
            || n == "accept-encoding"
            || n == "content-encoding"
            || n == "expect"
            || n.starts_with("x-steer-")
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    out
}

/// The fields of a request body the proxy reads, borrowed from it: the
/// rest of the body is checked to be JSON but not built into a tree.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

/// A JSON string's value (`None` when it is not a string).
fn json_str(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = raw?.get();
    if let Ok(s) = serde_json::from_str::<&str>(raw) {
        return Some(Cow::Borrowed(s));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// The byte range of `part` (a slice of `whole`) in `whole`.
fn span(whole: &[u8], part: &RawValue) -> (usize, usize) {
    let start = (part.get().as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    (start, start + part.get().len())
}

/// `body` with the byte ranges replaced (ranges sorted, not overlapping).
fn splice(body: &[u8], mut edits: Vec<(usize, usize, String)>) -> Bytes {
    edits.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(body.len() + edits.iter().map(|e| e.2.len()).sum::<usize>());
    let mut at = 0;
    for (start, end, text) in edits {
        out.extend_from_slice(&body[at..start]);
        out.extend_from_slice(text.as_bytes());
        at = end;
    }
    out.extend_from_slice(&body[at..]);
    Bytes::from(out)
}

/// What the proxy learnt from the request: the model, whether it streams,
/// whether it asked the upstream for usage the client did not, the user;
/// and the edits the body needs.
pub(super) struct Prepared {
    pub(super) model: String,
    pub(super) stream: bool,
    pub(super) strip_usage: bool,
    pub(super) user: Option<String>,
    edits: Vec<(usize, usize, String)>,
    /// Where the model string is, to remove a `provider/` prefix.
    model_span: Option<(usize, usize)>,
}

impl Prepared {
    /// A call whose model and method are in the path (Gemini's native
    /// wire): the body goes as it is.
    pub(super) fn from_path(model: String, stream: bool) -> Self {
        Prepared {
            model,
            stream,
            strip_usage: false,
            user: None,
            edits: Vec::new(),
            model_span: None,
        }
    }

    /// Check that a body that goes as it is (Gemini's native wire) is a
    /// JSON object; `Err` is the 400's message.
    pub(super) fn check_object(raw: &[u8]) -> Result<(), String> {
        if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err("the request body must be a JSON object".into());
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(raw)
            .map(|_| ())
            .map_err(|e| format!("the request body is not valid JSON: {e}"))
    }

    /// Read the request body of `endpoint`; `Err` is the 400's message.
    pub(super) fn parse(endpoint: Endpoint, raw: &[u8]) -> Result<Self, String> {
        Self::parse_with(endpoint, raw, None)
    }

    /// Read the request body of an Azure OpenAI path: the model is
    /// `azure/{deployment}`, the deployment named in the path (the body's
    /// `model`, if any, goes as it is), else the body's `model` (the v1
    /// form, whose `model` is the deployment).
    pub(super) fn parse_azure(
        endpoint: Endpoint,
        raw: &[u8],
        deployment: Option<&str>,
    ) -> Result<Self, String> {
        let mut p = Self::parse_with(endpoint, raw, deployment)?;
        p.model = format!("azure/{}", p.model);
        p.model_span = None;
        Ok(p)
    }

    /// Read the body; the model is `path_model` when given, else the body's.
    fn parse_with(endpoint: Endpoint, raw: &[u8], path_model: Option<&str>) -> Result<Self, String> {
        if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err("the request body must be a JSON object".into());
        }
        let head: Head<'_> =
            serde_json::from_slice(raw).map_err(|e| format!("the request body is not valid JSON: {e}"))?;
        let model = match (path_model, json_str(head.model)) {
            (Some(m), _) => Cow::Borrowed(m),
            (None, Some(m)) => m,
            (None, _) => return Err("the request body has no `model` string".into()),
        };
        let stream = endpoint != Endpoint::Embeddings && head.stream.is_some_and(|v| v.get() == "true");
        let include_usage = head
            .stream_options
            .and_then(|o| serde_json::from_str::<Value>(o.get()).ok());
        let strip_usage = endpoint == Endpoint::ChatCompletions
            && stream
            && include_usage
                .as_ref()
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                != Some(true);
        let mut edits = Vec::new();
        if strip_usage {
            // Ask for usage: add `stream_options`, or `include_usage` to it.
            match (head.stream_options, include_usage) {
                (Some(raw_opts), Some(Value::Object(mut o))) => {
                    o.insert("include_usage".into(), Value::Bool(true));
                    let (a, b) = span(raw, raw_opts);
                    edits.push((a, b, Value::Object(o).to_string()));
                }
                (Some(raw_opts), _) => {
                    let (a, b) = span(raw, raw_opts);
                    edits.push((a, b, r#"{"include_usage":true}"#.to_string()));
                }
                (None, _) => {
                    let open = raw.iter().position(|&b| b == b'{').map_or(0, |i| i + 1);
                    edits.push((
                        open,
                        open,
                        r#""stream_options":{"include_usage":true},"#.to_string(),
                    ));
                }
            }
        }
        let user = json_str(head.user)
            .or_else(|| {
                head.metadata.and_then(|m| {
                    serde_json::from_str::<Value>(m.get()).ok().and_then(|v| {
                        v.get("user_id")
                            .and_then(Value::as_str)
                            .map(|u| Cow::Owned(u.to_string()))
                    })
                })
            })
            .map(Cow::into_owned);
        Ok(Prepared {
            model_span: head.model.map(|m| span(raw, m)),
            model: model.into_owned(),
            stream,
            strip_usage,
            user,
            edits,
        })
    }

    /// The body to send upstream for the model as routed (`routed`, the
    /// model without its `provider/` prefix).
    pub(super) fn body(&mut self, raw: Bytes, routed: &str) -> Result<Bytes, String> {
        let mut edits = std::mem::take(&mut self.edits);
        if let Some((a, b)) = self.model_span.filter(|_| routed != self.model) {
            let m = serde_json::to_string(routed).map_err(|_| "the request body cannot be re-encoded")?;
            edits.push((a, b, m));
        }
        Ok(if edits.is_empty() {
            raw
        } else {
            splice(&raw, edits)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn upstream_headers_drop_hop_by_hop_and_steer_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive"));
        h.insert("host", HeaderValue::from_static("127.0.0.1:4000"));
        h.insert("x-steer-tag-team", HeaderValue::from_static("a"));
        h.insert("accept-encoding", HeaderValue::from_static("gzip"));
        h.insert("authorization", HeaderValue::from_static("Bearer sk-x"));
        h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        let out = upstream_headers(&h);
        assert!(out.get("connection").is_none() && out.get("host").is_none());
        assert!(out.get("x-steer-tag-team").is_none());
        assert_eq!(out.get("accept-encoding").unwrap(), "identity");
        assert_eq!(out.get("authorization").unwrap(), "Bearer sk-x");
        assert_eq!(out.get("anthropic-version").unwrap(), "2023-06-01");
    }

    #[test]
    fn body_edits_only_the_prefix_and_stream_options() {
        let raw = Bytes::from_static(br#"{"model":"openai/gpt-4o","stream":true,"messages":[]}"#);
        let mut p = Prepared::parse(Endpoint::ChatCompletions, &raw).unwrap();
        assert!(p.stream && p.strip_usage);
        let body = p.body(raw, "gpt-4o").unwrap();
        assert_eq!(
            &body[..],
            br#"{"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true,"messages":[]}"#
        );
        let raw = Bytes::from_static(br#"{"model":"gpt-4o","messages":[]}"#);
        let mut p = Prepared::parse(Endpoint::ChatCompletions, &raw).unwrap();
        assert_eq!(p.body(raw.clone(), "gpt-4o").unwrap(), raw);
    }

    #[test]
    fn azure_bodies_keep_their_model_and_route_by_deployment() {
        // The deployment from the path; the body's model (or none) untouched.
        let raw = Bytes::from_static(br#"{"model":"gpt-4o","stream":true,"user":"u1","messages":[]}"#);
        let mut p = Prepared::parse_azure(Endpoint::ChatCompletions, &raw, Some("my-dep")).unwrap();
        assert_eq!(
            (p.model.as_str(), p.stream, p.strip_usage),
            ("azure/my-dep", true, true)
        );
        assert_eq!(p.user.as_deref(), Some("u1"));
        assert_eq!(
            &p.body(raw, "my-dep").unwrap()[..],
            br#"{"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true,"user":"u1","messages":[]}"#
        );
        let raw = Bytes::from_static(br#"{"input":"x"}"#);
        let mut p = Prepared::parse_azure(Endpoint::Embeddings, &raw, Some("emb")).unwrap();
        assert_eq!(p.model, "azure/emb");
        assert_eq!(p.body(raw.clone(), "emb").unwrap(), raw);
        // The v1 form: the body's model is the deployment.
        let raw = Bytes::from_static(br#"{"model":"my-dep","messages":[]}"#);
        let mut p = Prepared::parse_azure(Endpoint::ChatCompletions, &raw, None).unwrap();
        assert_eq!(p.model, "azure/my-dep");
        assert_eq!(p.body(raw.clone(), "my-dep").unwrap(), raw);
        assert!(Prepared::parse_azure(Endpoint::ChatCompletions, br#"{"messages":[]}"#, None).is_err());
    }
}
