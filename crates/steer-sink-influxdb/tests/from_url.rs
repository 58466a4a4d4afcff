//! Sink specs (`influxdb://`, `influxdb2://`) and the `INFLUX_TOKEN`
//! fallback. Its own test binary: it sets an environment variable.
#![allow(clippy::unwrap_used)]

use steer_metrics::{AgentMetrics, MetricsSink};
use steer_sink_influxdb::{Api, InfluxConfig, InfluxSink, Precision};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn specs_parse_and_the_v2_token_comes_from_the_environment() {
    let c = InfluxConfig::from_url("influxdb://10.1.2.3:8087/llm?rp=week&precision=s&gzip=true").unwrap();
    assert_eq!(
        c.api(),
        &Api::V1 {
            database: "llm".into(),
            retention_policy: Some("week".into())
        }
    );
    assert_eq!(c.url().as_str(), "http://10.1.2.3:8087/");
    let c = InfluxConfig::from_url("influxdbs://u:p%40ss@db.example:443/llm").unwrap();
    assert_eq!(c.url().scheme(), "https");
    assert!(!format!("{c:?}").contains("p@ss"));
    assert!(InfluxConfig::from_url("influxdb://h:1/").is_err());
    assert!(InfluxConfig::from_url("influxdb2://h:1?org=o").is_err());
    assert!(InfluxConfig::from_url("influxdb://h:1/db?precision=minutes").is_err());
    assert!(InfluxConfig::from_url("influxdb://h:1/db?bogus=1").is_err());
    assert!(InfluxConfig::from_url("postgres://h:1/db").is_err());
    let err = InfluxConfig::from_url("ftp://user:secret@h/x").unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let addr = server.address();
    // SAFETY-free: this binary has only this test, nothing else reads the env concurrently.
    std::env::set_var("INFLUX_TOKEN", "from-env-token");
    let sink = InfluxSink::from_url(&format!(
        "influxdb2://{}:{}?org=acme&bucket=llm&precision=us",
        addr.ip(),
        addr.port()
    ))
    .unwrap();
    std::env::remove_var("INFLUX_TOKEN");
    assert_eq!(sink.encoder().precision(), Precision::Microseconds);
    sink.record(&AgentMetrics::new("openai", "gpt-4o")).await.unwrap();
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].url.path(), "/api/v2/write");
    assert_eq!(reqs[0].url.query(), Some("org=acme&bucket=llm&precision=us"));
    assert_eq!(
        reqs[0].headers.get("authorization").unwrap(),
        "Token from-env-token"
    );
    assert!(!format!("{sink:?}").contains("from-env-token"));
}
