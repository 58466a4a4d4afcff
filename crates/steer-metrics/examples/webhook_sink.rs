//! A complete custom sink in a few lines: POST each batch as JSON to a
//! webhook. The collector gives it batching, retry with backoff (honouring
//! `Retry-After`) and isolation of bad records.
//!
//! Runs against a local server that answers 503, then 429, then 200, and
//! checks that every record arrived exactly once:
//!
//! ```sh
//! cargo run -p steer-metrics --example webhook_sink
//! ```

use std::collections::HashSet;
use std::time::Duration;

use steer_metrics::{async_trait, AgentMetrics, MetricsCollector, MetricsSink, SinkError, SinkOptions};

/// Posts each batch as a JSON array to a URL.
pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
}

#[async_trait]
impl MetricsSink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn record(&self, m: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(m)).await
    }

    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        let resp = self
            .client
            .post(&self.url)
            .json(batch)
            .send()
            .await
            .map_err(|e| SinkError::retryable(format!("webhook unreachable: {e}")))?;
        let status = resp.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            429 => {
                let after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs);
                Err(SinkError::throttled(after, "webhook throttled"))
            }
            408 | 500..=599 => Err(SinkError::retryable(format!("webhook answered {status}"))),
            _ => Err(SinkError::permanent(format!(
                "webhook refused the batch: {status}"
            ))),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    // A webhook that is down, then throttles, then accepts.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;

    let collector = MetricsCollector::builder()
        .sink_with_options(
            WebhookSink {
                client: reqwest::Client::new(),
                url: format!("{}/llm", server.uri()),
            },
            SinkOptions::default()
                .batch_size(200)
                .linger(Duration::from_millis(50)),
        )
        .build()?;

    let records = steer_metrics::testkit::synthetic(1000, 42);
    for m in records.clone() {
        collector.record(m);
    }
    let report = collector.shutdown(Duration::from_secs(30)).await;
    print!("{report}");

    // What the webhook accepted (only 2xx answers count).
    let mut accepted = Vec::new();
    let requests = server.received_requests().await.unwrap_or_default();
    for (i, req) in requests.iter().enumerate() {
        if i >= 2 {
            let batch: Vec<AgentMetrics> = serde_json::from_slice(&req.body)?;
            accepted.extend(batch.into_iter().map(|m| m.request_id));
        }
    }
    let unique: HashSet<_> = accepted.iter().collect();
    println!(
        "webhook requests: {} (1 x 503, 1 x 429, {} accepted); records accepted: {} unique: {}",
        requests.len(),
        requests.len().saturating_sub(2),
        accepted.len(),
        unique.len()
    );
    assert_eq!(accepted.len(), records.len(), "every record exactly once");
    assert_eq!(unique.len(), records.len());
    assert!(report.is_complete());
    Ok(())
}
