//! Attribution: what a request says about who made it.
//!
//! * `x-steer-tag-<key>: <value>` headers become tags (`key` lowercased as
//!   HTTP does; at most [`max_tags`](crate::ProxyConfigBuilder::max_tags)
//!   per request, keys up to 64 and values up to 256 bytes, non-UTF-8
//!   values skipped). These headers are not forwarded upstream.
//! * The OpenAI body field `user` (a string), or the Anthropic
//!   `metadata.user_id`, becomes the tag `user` (a header tag `user` wins).
//! * A W3C `traceparent` header gives the record's `trace_id`; else an
//!   `x-steer-trace-id` header.

use std::collections::BTreeMap;

use http::HeaderMap;

/// Prefix of the tag headers.
pub const TAG_PREFIX: &str = "x-steer-tag-";
/// Header carrying a trace id when there is no `traceparent`.
pub const TRACE_ID_HEADER: &str = "x-steer-trace-id";

const MAX_KEY: usize = 64;
const MAX_VALUE: usize = 256;

/// Tags from the `x-steer-tag-*` headers and the body's user field (the
/// OpenAI `user` or the Anthropic `metadata.user_id`).
pub fn tags(headers: &HeaderMap, user: Option<&str>, max_tags: usize) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    for (name, value) in headers {
        if tags.len() >= max_tags {
            break;
        }
        let Some(key) = name.as_str().strip_prefix(TAG_PREFIX) else {
            continue;
        };
        if key.is_empty() || key.len() > MAX_KEY {
            continue;
        }
        let Ok(v) = value.to_str() else { continue };
        tags.insert(key.to_string(), truncate(v.trim(), MAX_VALUE).to_string());
    }
    if !tags.contains_key("user") && tags.len() < max_tags.max(1) {
        if let Some(u) = user.filter(|u| !u.is_empty()) {
            tags.insert("user".into(), truncate(u, MAX_VALUE).to_string());
        }
    }
    tags
}

/// The trace id of a request, if it carries one.
pub fn trace_id(headers: &HeaderMap) -> Option<String> {
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        // version-traceid-parentid-flags
        let mut parts = tp.trim().split('-');
        if let (Some(_), Some(id)) = (parts.next(), parts.next()) {
            if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(id.to_ascii_lowercase());
            }
        }
    }
    headers
        .get(TRACE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| truncate(s.trim(), 128).to_string())
        .filter(|s| !s.is_empty())
}

use steer_metrics::redact::truncate_str as truncate;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn header_tags_and_user_field() {
        let mut h = HeaderMap::new();
        h.insert("x-steer-tag-team", HeaderValue::from_static("search"));
        h.insert("X-Steer-Tag-Feature", HeaderValue::from_static(" summarise "));
        h.insert("x-other", HeaderValue::from_static("no"));
        let t = tags(&h, Some("u-42"), 32);
        assert_eq!(t.get("team").unwrap(), "search");
        assert_eq!(t.get("feature").unwrap(), "summarise");
        assert_eq!(t.get("user").unwrap(), "u-42");
        assert_eq!(t.len(), 3);
        h.insert("x-steer-tag-user", HeaderValue::from_static("header-wins"));
        assert_eq!(tags(&h, Some("u"), 32).get("user").unwrap(), "header-wins");
        assert_eq!(tags(&h, None, 1).len(), 1);
    }

    #[test]
    fn trace_ids() {
        let mut h = HeaderMap::new();
        assert_eq!(trace_id(&h), None);
        h.insert(TRACE_ID_HEADER, HeaderValue::from_static("abc"));
        assert_eq!(trace_id(&h).as_deref(), Some("abc"));
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(trace_id(&h).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é");
    }
}
