//! `CloudWatchSink::from_namespace` takes credentials, region and endpoint
//! from the standard AWS environment (the CLI's `cloudwatch:NAMESPACE`).
//! Its own test binary: it sets process environment variables.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use steer_metrics::testkit::synthetic;
use steer_metrics::MetricsSink;
use steer_sink_cloudwatch::{CloudWatchSink, Error};

#[tokio::test]
async fn from_namespace_uses_the_standard_environment() {
    let Some(ep) = endpoint() else { return };
    for k in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"] {
        std::env::remove_var(k);
    }
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/steer-test-config");
    std::env::set_var(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/steer-test-credentials",
    );
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing-secret-RECOGNISABLE");

    // No region anywhere: a typed error, not a failure at the first call.
    std::env::remove_var("AWS_REGION");
    assert!(matches!(
        CloudWatchSink::from_namespace("LLM/Metrics").await,
        Err(Error::MissingRegion)
    ));

    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ENDPOINT_URL", &ep);
    let ns = namespace("from-env");
    let sink = CloudWatchSink::from_namespace(&ns).await.unwrap();
    assert_eq!(sink.config().namespace(), ns);
    assert!(!format!("{sink:?}").contains("RECOGNISABLE"));
    let records = synthetic(200, 3);
    sink.record_batch(&records).await.unwrap();
    assert_published(&client(&ep, 3), &ns, &records).await;
}
