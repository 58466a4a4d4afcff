//! Builder paths: shared collectors, sink options, metrics config, routing API.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use steer::metrics::StatsQuery;
use steer::sinks::MemorySink;
use steer::testkit::RecordingSink;
use steer::{MetricsCollector, MetricsConfig, SimConfig, SinkOptions, SteerClient, SteerError};

#[tokio::test]
async fn two_clients_share_one_collector() {
    let memory = MemorySink::new();
    let collector = MetricsCollector::builder().sink(memory.clone()).build().unwrap();
    let a = SteerClient::builder()
        .ignore_env()
        .collector(collector.clone())
        .sim(SimConfig::instant().seed(1))
        .build()
        .unwrap();
    let b = SteerClient::builder()
        .ignore_env()
        .collector(collector.clone())
        .sim(SimConfig::instant().seed(2))
        .build()
        .unwrap();
    a.generate("x", "sim/gpt-4o").await.unwrap();
    b.generate("x", "sim/claude-sonnet-4-5").await.unwrap();
    collector.flush().await;
    assert_eq!(memory.len(), 2);
    let anthropic = StatsQuery::new().filter("provider=anthropic".parse().unwrap());
    assert_eq!(memory.query(&anthropic).len(), 1);
    let r = SteerClient::builder()
        .collector(collector)
        .sink(RecordingSink::new())
        .build();
    assert!(matches!(r, Err(SteerError::Config(_))));
}

#[tokio::test]
async fn sink_options_and_metrics_config_are_applied() {
    let kept = RecordingSink::named("kept");
    let client = SteerClient::builder()
        .ignore_env()
        .metrics_config(MetricsConfig::default().success_sample_rate(0.0))
        .sink_with_options(
            kept.clone(),
            SinkOptions::default().linger(Duration::from_millis(1)),
        )
        .sim(SimConfig::instant().seed(3))
        .build()
        .unwrap();
    let resp = client.generate("x", "sim/gpt-4o").await.unwrap();
    assert_eq!(
        resp.metrics.provider, "openai",
        "the caller still gets the record"
    );
    client.metrics().flush().await;
    assert!(kept.is_empty(), "successes sampled out");
    let stats = client.metrics().stats();
    assert_eq!((stats.recorded, stats.sampled_out), (1, 1));
    assert!(stats.sink("kept").is_some());

    let off = SteerClient::builder()
        .ignore_env()
        .metrics_config(MetricsConfig::default().enabled(false))
        .sink(RecordingSink::new())
        .sim(SimConfig::instant())
        .build()
        .unwrap();
    off.generate("x", "sim/gpt-4o").await.unwrap();
    assert_eq!(off.metrics().stats().recorded, 0);
}

#[test]
fn built_outside_a_runtime_without_sinks() {
    let client = SteerClient::builder().ignore_env().build().unwrap();
    assert!(!client.metrics().is_enabled());
    assert!(matches!(
        SteerClient::builder()
            .ignore_env()
            .sink(RecordingSink::new())
            .build(),
        Err(SteerError::Config(_))
    ));
}

#[test]
fn routing_api_is_public() {
    let client = SteerClient::builder()
        .ignore_env()
        .openai_compatible("vllm", "http://127.0.0.1:8000/v1", Some("tok-SECRET-vllm-91"))
        .build()
        .unwrap();
    let r = client.route("vllm/meta-llama/Llama-3.1-8B-Instruct").unwrap();
    assert_eq!(
        (r.provider.as_str(), r.model.as_str()),
        ("vllm", "meta-llama/Llama-3.1-8B-Instruct")
    );
    assert_eq!(client.route("gpt-5-nano").unwrap().provider, "openai");
    assert!(matches!(
        client.route("llama3"),
        Err(SteerError::UnknownModel { .. })
    ));
    assert_eq!(steer::route("grok-code-fast-1").unwrap().provider, "xai");
    assert!(client.prices().contains("claude-opus-4-1-20250805"));
    assert!(
        !format!("{client:?}").contains("tok-SECRET-vllm-91"),
        "compatible keys are redacted too"
    );
}
