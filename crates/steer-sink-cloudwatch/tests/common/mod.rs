//! Helpers for the tests against moto (through the rpcv2Cbor shim started
//! by scripts/services/cloudwatch.sh).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use steer_metrics::AgentMetrics;
use steer_sink_cloudwatch::aws_sdk_cloudwatch as cw;
use steer_sink_cloudwatch::encode::Metric;

pub const ENDPOINT_VAR: &str = "STEER_TEST_CLOUDWATCH_ENDPOINT";

/// The shim's URL, or `None` (after printing why) when the test should skip.
pub fn endpoint() -> Option<String> {
    match std::env::var(ENDPOINT_VAR) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var_os("STEER_REQUIRE_SERVICES").is_some() || std::env::var_os("CI").is_some() {
                panic!("{ENDPOINT_VAR} is not set: start the CloudWatch emulator (scripts/services/cloudwatch.sh, run by scripts/test.sh)");
            }
            eprintln!(
                "SKIPPED: set {ENDPOINT_VAR} (scripts/services/cloudwatch.sh starts moto and the CBOR shim)"
            );
            None
        }
    }
}

/// An SDK client for the emulator, with fast SDK retries.
pub fn client(endpoint: &str, max_attempts: u32) -> cw::Client {
    let conf = cw::Config::builder()
        .behavior_version_latest()
        .region(cw::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(cw::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .retry_config(
            cw::config::retry::RetryConfig::standard()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(Duration::from_millis(20)),
        )
        .build();
    cw::Client::from_conf(conf)
}

/// A namespace no other test uses.
pub fn namespace(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("steer-test/{test}-{nanos}-{}", fastrand::u32(..))
}

/// SampleCount, Sum, Minimum, Maximum.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Four {
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Four {
    pub fn push(&mut self, v: f64) {
        if self.count == 0.0 {
            self.min = v;
            self.max = v;
        }
        self.count += 1.0;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Equal: counts exactly, min/max exactly, sums within `rel` relative.
    pub fn assert_matches(&self, other: &Four, rel: f64, what: &str) {
        assert_eq!(self.count, other.count, "{what}: SampleCount");
        assert_eq!(self.min, other.min, "{what}: Minimum");
        assert_eq!(self.max, other.max, "{what}: Maximum");
        let tol = rel * self.sum.abs().max(other.sum.abs());
        assert!(
            (self.sum - other.sum).abs() <= tol,
            "{what}: Sum {} vs {} (tolerance {tol})",
            self.sum,
            other.sum
        );
    }
}

/// The four statistics of `metric` for `Model=model` in `ns`, combined over
/// every 60 s datapoint in the last three hours.
pub async fn stats(c: &cw::Client, ns: &str, metric: &str, model: &str) -> Four {
    use cw::types::Statistic;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let out = c
        .get_metric_statistics()
        .namespace(ns)
        .metric_name(metric)
        .dimensions(cw::types::Dimension::builder().name("Model").value(model).build())
        .start_time(cw::primitives::DateTime::from_secs(now - 3 * 3600))
        .end_time(cw::primitives::DateTime::from_secs(now + 3600))
        .period(60)
        .statistics(Statistic::SampleCount)
        .statistics(Statistic::Sum)
        .statistics(Statistic::Minimum)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .unwrap();
    let mut f = Four::default();
    for (i, d) in out.datapoints().iter().enumerate() {
        let (n, s, lo, hi) = (
            d.sample_count().unwrap(),
            d.sum().unwrap(),
            d.minimum().unwrap(),
            d.maximum().unwrap(),
        );
        if i == 0 {
            f.min = lo;
            f.max = hi;
        }
        f.count += n;
        f.sum += s;
        f.min = f.min.min(lo);
        f.max = f.max.max(hi);
    }
    f
}

/// What the records say, per model and metric (the in-memory summary the
/// published statistics must agree with).
pub fn expected(records: &[AgentMetrics]) -> BTreeMap<(String, Metric), Four> {
    let mut out: BTreeMap<(String, Metric), Four> = BTreeMap::new();
    for m in records {
        for metric in Metric::ALL {
            if let Some(v) = metric.value(m) {
                out.entry((m.model.clone(), metric)).or_default().push(v);
            }
        }
    }
    out
}

/// The shim's PutMetricData counters for a namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShimStats {
    pub attempts: u64,
    pub accepted: u64,
    pub datums: u64,
    pub values: u64,
    pub max_datums: u64,
    pub max_body_bytes: u64,
    pub gzip_calls: u64,
}

async fn http(method: &str, url: &str, body: Option<String>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let body = body.unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    body.to_string()
}

pub async fn shim_stats(endpoint: &str, ns: &str) -> ShimStats {
    let enc: String = ns
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = http("GET", &format!("{endpoint}/_shim/stats?namespace={enc}"), None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let g = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    ShimStats {
        attempts: g("attempts"),
        accepted: g("accepted"),
        datums: g("datums"),
        values: g("values"),
        max_datums: g("max_datums"),
        max_body_bytes: g("max_body_bytes"),
        gzip_calls: g("gzip_calls"),
    }
}

/// Ask the shim to misbehave for one namespace.
pub async fn shim_faults(endpoint: &str, spec: serde_json::Value) {
    http(
        "POST",
        &format!("{endpoint}/_shim/faults"),
        Some(spec.to_string()),
    )
    .await;
}

/// Check every metric of every model in `ns` against the records.
pub async fn assert_published(c: &cw::Client, ns: &str, records: &[AgentMetrics]) {
    for ((model, metric), w) in expected(records) {
        let got = stats(c, ns, metric.name(), &model).await;
        // Counts and token sums are integers: exact. Latency, TTFT and
        // cost sums may differ by floating-point summation order only.
        w.assert_matches(&got, 1e-9, &format!("{model} {}", metric.name()));
    }
}

/// The same four statistics read with boto3 straight from moto (not
/// through the shim), when the service script exported the venv python.
pub fn stats_boto3(ns: &str, metric: &str, model: &str) -> Option<Four> {
    let python = std::env::var("STEER_TEST_PYTHON").ok()?;
    let moto = std::env::var("STEER_TEST_MOTO_ENDPOINT").ok()?;
    let script = r#"
import sys, json, datetime, boto3
ep, ns, metric, model = sys.argv[1:5]
c = boto3.client("cloudwatch", endpoint_url=ep, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing")
now = datetime.datetime.now(datetime.timezone.utc)
r = c.get_metric_statistics(Namespace=ns, MetricName=metric,
    Dimensions=[{"Name": "Model", "Value": model}],
    StartTime=now - datetime.timedelta(hours=3), EndTime=now + datetime.timedelta(hours=1),
    Period=60, Statistics=["SampleCount", "Sum", "Minimum", "Maximum"])
d = r["Datapoints"]
print(json.dumps({"count": sum(x["SampleCount"] for x in d), "sum": sum(x["Sum"] for x in d),
                  "min": min(x["Minimum"] for x in d), "max": max(x["Maximum"] for x in d)}))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script, &moto, ns, metric, model])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = |k: &str| v[k].as_f64().unwrap();
    Some(Four {
        count: f("count"),
        sum: f("sum"),
        min: f("min"),
        max: f("max"),
    })
}
