//! Shared helpers: a client pointed at a local mock server, with a
//! recording sink, fast retries and a recognisable fake key.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use steer::testkit::RecordingSink;
use steer::{AgentMetrics, RetryConfig, SteerClient, SteerClientBuilder};
use wiremock::MockServer;

/// A fake key that must never show up anywhere but in its request header.
pub const KEY: &str = "sk-test-SECRETKEY-7f3a9c21d4e8b6";

pub fn fast_retry() -> RetryConfig {
    RetryConfig::default()
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(5))
}

pub fn builder(base: &str, sink: &RecordingSink) -> SteerClientBuilder {
    SteerClient::builder()
        .ignore_env()
        .sink(sink.clone())
        .openai_api_key(KEY)
        .anthropic_api_key(KEY)
        .xai_api_key(KEY)
        .openai_base_url(format!("{base}/v1"))
        .anthropic_base_url(format!("{base}/v1"))
        .xai_base_url(format!("{base}/xai/v1"))
        .retry(fast_retry())
        .timeout(Duration::from_secs(10))
}

pub struct Harness {
    pub client: SteerClient,
    pub sink: RecordingSink,
}

impl Harness {
    pub fn new(server: &MockServer) -> Self {
        Self::with(server, |b| b)
    }

    pub fn with(server: &MockServer, f: impl FnOnce(SteerClientBuilder) -> SteerClientBuilder) -> Self {
        Self::with_base(&server.uri(), f)
    }

    pub fn with_base(base: &str, f: impl FnOnce(SteerClientBuilder) -> SteerClientBuilder) -> Self {
        let sink = RecordingSink::new();
        let client = f(builder(base, &sink)).build().unwrap();
        Harness { client, sink }
    }

    /// Every record delivered so far (after a flush).
    pub async fn records(&self) -> Vec<AgentMetrics> {
        self.client.metrics().flush().await;
        self.sink.records()
    }

    /// The single record of the single call made; fails if there is not exactly one.
    pub async fn only_record(&self) -> AgentMetrics {
        let r = self.records().await;
        assert_eq!(r.len(), 1, "exactly one record per call: {r:#?}");
        r.into_iter().next().unwrap()
    }
}

/// The key must not appear in anything the user can see.
pub fn assert_no_key(what: &str, text: &str) {
    assert!(!text.contains(KEY), "{what} leaks the API key: {text}");
    assert!(
        !text.contains("SECRETKEY"),
        "{what} leaks part of the API key: {text}"
    );
}

pub fn sse(events: &[&str]) -> Vec<u8> {
    let mut out = String::new();
    for e in events {
        out.push_str(e);
        out.push_str("\n\n");
    }
    out.into_bytes()
}
