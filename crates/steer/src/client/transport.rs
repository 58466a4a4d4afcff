//! Sending a request to an HTTP provider and reading its answer.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// Send a request; a non-2xx answer becomes a classified error.
pub(super) async fn send(
    inner: &Inner,
    p: &HttpProvider,
    url: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<reqwest::Response, AttemptError> {
    let mut rb = inner
        .http
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    let bad_key = || {
        let mut e = AttemptError::new(
            FailureKind::MissingKey,
            ErrorClass::Authentication,
            format!(
                "the API key of {} contains characters not allowed in an HTTP header",
                p.name
            ),
        );
        e.retryable = false;
        e
    };
    if let Some(k) = &p.api_key {
        let (name, value) = match p.auth {
            Auth::Bearer => (AUTHORIZATION.as_str(), format!("Bearer {}", k.expose())),
            Auth::Anthropic => ("x-api-key", k.expose().to_string()),
            Auth::AzureKey => ("api-key", k.expose().to_string()),
            Auth::Google => ("x-goog-api-key", k.expose().to_string()),
        };
        let mut v = HeaderValue::from_str(&value).map_err(|_| bad_key())?;
        v.set_sensitive(true);
        rb = rb.header(name, v);
    }
    if p.auth == Auth::Anthropic {
        rb = rb.header("anthropic-version", anthropic::API_VERSION);
    }
    let resp = rb
        .send()
        .await
        .map_err(|e| AttemptError::from_reqwest(&e, timeout))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let headers = resp.headers();
    let hint = retry_hint(headers, chrono::Utc::now());
    // The providers' own "retry this?" verdict, where sent.
    let should_retry = headers
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| match v.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        });
    let provider_request_id = ["x-request-id", "request-id"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(|v| truncate(v.to_string(), 80));
    let body = read_prefix(resp, MAX_ERROR_BODY).await;
    let (t, c, m) = parse_error_body(&body);
    let m = m.or_else(|| {
        let text = String::from_utf8_lossy(&body).trim().to_string();
        (!text.is_empty() && !text.starts_with('<')).then_some(text)
    });
    let mut e = api_error(Some(status.as_u16()), t, c, m);
    e.retry_after = hint.or_else(|| crate::error::body_retry_delay(&body));
    if let Some(r) = should_retry {
        e.retryable = r;
    }
    if let Some(id) = provider_request_id {
        e.message = format!("{} (provider request id {id})", e.message);
    }
    tracing::debug!(provider = %p.name, status = status.as_u16(), class = %e.class, "provider answered with an error");
    Err(e)
}

/// The whole body, refused beyond `limit` bytes.
pub(super) async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, AttemptError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(AttemptError::invalid(format!(
            "response larger than the limit of {limit} bytes"
        )));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| AttemptError::from_reqwest(&e, timeout))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(AttemptError::invalid(format!(
                "response larger than the limit of {limit} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Up to `limit` bytes of the body (for error messages); errors end it early.
pub(super) async fn read_prefix(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= limit {
            break;
        }
    }
    buf
}
