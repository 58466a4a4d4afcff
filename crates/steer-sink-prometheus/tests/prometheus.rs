//! A real Prometheus scrapes the exporter; PromQL must agree with the
//! in-memory summary of the same records.
//!
//! The test binds the exporter on 127.0.0.1:0, writes a prometheus.yml
//! (scrape_interval 1s) naming it into a temp dir, starts the binary named
//! by `STEER_TEST_PROMETHEUS_BIN` (set by scripts/services/prometheus.sh)
//! as a child it kills at the end (also on panic), waits for `/-/ready`,
//! then polls the query API until the first scrape is in.
//!
//! **What agreement means.** Counters and histogram `_count`/`_sum` are
//! compared exactly (sums of floats to 1e-9 relative). A quantile from a
//! bucketed histogram is an estimate: `histogram_quantile(q, ...)` finds
//! the bucket `(l, u]` whose cumulative count first reaches `q * count`
//! and interpolates linearly inside it, so it always lies in `[l, u]`. The
//! exact quantile (linear interpolation between closest ranks, as
//! `Summary` computes it) lies in `(l', u']` for some bucket. The two
//! agree when they name the same bucket: `l <= estimate <= u` where
//! `l < exact <= u`. That holds whenever the order statistics both
//! definitions use (Prometheus: the `ceil(q*n)`-th value; exact: the
//! values around position `q*(n-1)`) fall in one bucket, which the test
//! checks on its workload before asserting the agreement.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use steer_metrics::sinks::MemorySink;
use steer_metrics::{AgentMetrics, ErrorClass, Method, MetricsCollector};
use steer_sink_prometheus::instruments::{DURATION_BUCKETS, TTFC_BUCKETS};
use steer_sink_prometheus::PrometheusSink;

const ENV: &str = "STEER_TEST_PROMETHEUS_BIN";

fn prometheus_bin() -> Option<PathBuf> {
    match std::env::var_os(ENV) {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var_os("STEER_REQUIRE_SERVICES").is_some() || std::env::var_os("CI").is_some() {
                panic!("{ENV} is not set: run scripts/test.sh (it installs Prometheus and sets it)");
            }
            eprintln!("SKIPPED: set {ENV} to the prometheus binary to run the Prometheus integration test");
            None
        }
    }
}

/// A Prometheus child process, killed when dropped (also on panic).
struct PromGuard {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for PromGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn start_prometheus(bin: &PathBuf, target: std::net::SocketAddr) -> PromGuard {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: steer\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    PromGuard {
        child,
        port,
        _dir: dir,
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn ready(&self, within: Duration) {
        let until = Instant::now() + within;
        loop {
            if let Ok(r) = self.http.get(format!("{}/-/ready", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < until, "Prometheus not ready within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The vector result of an instant query.
    async fn query(&self, q: &str) -> Vec<Value> {
        let r: Value = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", q)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["status"], "success", "{q}: {r}");
        r["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of a query that must return one sample.
    async fn scalar(&self, q: &str) -> f64 {
        let v = self.query(q).await;
        assert_eq!(v.len(), 1, "{q} returned {v:?}");
        v[0]["value"][1].as_str().unwrap().parse().unwrap()
    }

    /// Poll until `q` returns a sample (the first scrape is ≈ 6 s away).
    async fn wait_for(&self, q: &str, within: Duration) {
        let until = Instant::now() + within;
        while self.query(q).await.is_empty() {
            assert!(Instant::now() < until, "no sample for {q} within {within:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Index of the bucket `(b[i-1], b[i]]` holding `v` (`len` = +Inf).
fn bucket_of(bounds: &[f64], v: f64) -> usize {
    bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len())
}

fn bucket_range(bounds: &[f64], i: usize) -> (f64, f64) {
    let lo = if i == 0 { 0.0 } else { bounds[i - 1] };
    let hi = bounds.get(i).copied().unwrap_or(f64::INFINITY);
    (lo, hi)
}

/// Check the premise (both definitions' order statistics in one bucket)
/// and the agreement; returns the bucket.
fn assert_quantile_agrees(
    name: &str,
    bounds: &[f64],
    mut values_s: Vec<f64>,
    q: f64,
    exact_s: f64,
    estimate: f64,
) -> (f64, f64) {
    values_s.sort_by(f64::total_cmp);
    let n = values_s.len();
    let prom_rank = (q * n as f64).ceil() as usize; // 1-based
    let pos = q * (n - 1) as f64; // 0-based
    let used = [prom_rank - 1, pos.floor() as usize, pos.ceil() as usize];
    let b = bucket_of(bounds, values_s[used[0]]);
    for i in used {
        assert_eq!(
            bucket_of(bounds, values_s[i]),
            b,
            "{name}: workload premise: order statistics in one bucket"
        );
    }
    assert_eq!(
        bucket_of(bounds, exact_s),
        b,
        "{name}: exact quantile in that bucket"
    );
    let (lo, hi) = bucket_range(bounds, b);
    assert!(
        lo < exact_s && exact_s <= hi,
        "{name}: exact {exact_s} in ({lo}, {hi}]"
    );
    eprintln!("{name} q={q}: exact {exact_s:.4} s, PromQL {estimate:.4} s, bucket ({lo}, {hi}]");
    assert!(
        lo <= estimate && estimate <= hi,
        "{name}: PromQL estimate {estimate} outside the bucket ({lo}, {hi}] of the exact {exact_s}"
    );
    (lo, hi)
}

/// 200 successes of three models (latency 30 ms .. 2 s, some streamed),
/// 12 failures, one odd model name, and 2 records beyond the series cap.
fn workload() -> Vec<AgentMetrics> {
    let models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"];
    let mut v = Vec::new();
    for i in 0..200u64 {
        let model = models[(i % 3) as usize];
        let provider = if model.starts_with("claude") {
            "anthropic"
        } else {
            "openai"
        };
        let lat = 30.0 + ((i * 37) % 200) as f64 * 9.7 + (i % 7) as f64 * 0.31;
        let mut m = AgentMetrics::new(provider, model)
            .with_latency_ms(lat)
            .with_tokens(100 + i * 13, 20 + i % 50);
        if i % 4 == 0 {
            m.method = Method::Stream;
            m.ttft_ms = Some(20.0 + ((i * 53) % 100) as f64 * 4.1);
        }
        if i % 10 != 0 {
            m.cost_usd = Some(0.0001 * (i + 1) as f64);
        }
        v.push(m);
    }
    for i in 0..12u64 {
        let class = if i % 3 == 0 {
            ErrorClass::Timeout
        } else {
            ErrorClass::RateLimit
        };
        v.push(
            AgentMetrics::new("openai", "gpt-4o")
                .with_latency_ms(50.0 + i as f64)
                .with_error(class),
        );
    }
    v.push(
        AgentMetrics::new("openai", ODD)
            .with_latency_ms(10.0)
            .with_tokens(1, 1),
    );
    v.push(AgentMetrics::new("openai", "rare-1").with_latency_ms(10.0));
    v.push(AgentMetrics::new("openai", "rare-2").with_latency_ms(10.0));
    v
}

const ODD: &str = "we\"ird \\ {x=\"1\"} λ\nline";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_and_promql_agrees_with_the_in_memory_summary() {
    let Some(bin) = prometheus_bin() else { return };
    let sink = PrometheusSink::builder()
        .max_series(4)
        .serve("127.0.0.1:0")
        .unwrap();
    let memory = MemorySink::new();
    let collector = MetricsCollector::builder()
        .sink(sink.clone())
        .sink(memory.clone())
        .build()
        .unwrap();
    let records = workload();
    for m in records.clone() {
        collector.record(m);
    }
    let report = collector.flush().await;
    assert!(report.is_complete(), "{report}");
    let summary = steer_metrics::SummaryStore::summary(&memory, &steer_metrics::StatsQuery::new())
        .await
        .unwrap()
        .total;
    assert_eq!(summary.count, 215);

    let prom = start_prometheus(&bin, sink.local_addr().unwrap());
    let api = Api {
        base: format!("http://127.0.0.1:{}", prom.port),
        http: reqwest::Client::new(),
    };
    api.ready(Duration::from_secs(30)).await;
    api.wait_for("steer_llm_requests_total", Duration::from_secs(60))
        .await;

    // Counts: exact.
    assert_eq!(
        api.scalar("sum(steer_llm_requests_total)").await,
        summary.count as f64
    );
    assert_eq!(
        api.scalar("sum(steer_llm_errors_total)").await,
        summary.errors as f64
    );
    assert_eq!(
        api.scalar(r#"sum(steer_llm_errors_total{error_type="timeout"})"#)
            .await,
        4.0
    );
    assert_eq!(
        api.scalar("sum(gen_ai_client_operation_duration_seconds_count)")
            .await,
        summary.count as f64
    );
    assert_eq!(
        api.scalar(r#"sum(gen_ai_client_token_usage_sum{gen_ai_token_type="input"})"#)
            .await,
        summary.input_tokens as f64
    );
    assert_eq!(
        api.scalar(r#"sum(gen_ai_client_token_usage_sum{gen_ai_token_type="output"})"#)
            .await,
        summary.output_tokens as f64
    );
    let ttft = summary.ttft_ms.unwrap();
    assert_eq!(
        api.scalar("sum(gen_ai_client_operation_time_to_first_chunk_seconds_count)")
            .await,
        ttft.count as f64
    );
    // Sums of floats: to 1e-9 relative.
    let lat = summary.latency_ms.unwrap();
    let sum_s = api
        .scalar("sum(gen_ai_client_operation_duration_seconds_sum)")
        .await;
    let want = lat.mean * lat.count as f64 / 1000.0;
    assert!((sum_s - want).abs() <= 1e-9 * want, "{sum_s} vs {want}");
    let cost = api.scalar("sum(steer_llm_cost_usd_total)").await;
    assert!(
        (cost - summary.cost_usd).abs() <= 1e-9 * summary.cost_usd,
        "{cost} vs {}",
        summary.cost_usd
    );

    // The series cap: two records folded into model "other", and counted.
    assert_eq!(api.scalar("steer_prometheus_folded_series_total").await, 2.0);
    assert_eq!(
        api.scalar(r#"sum(steer_llm_requests_total{gen_ai_request_model="other"})"#)
            .await,
        2.0
    );
    assert!(api
        .query(r#"steer_llm_requests_total{gen_ai_request_model=~"rare.*"}"#)
        .await
        .is_empty());

    // The odd model name arrived intact through escaping and parsing.
    let series = api.query("steer_llm_requests_total").await;
    let models: Vec<&str> = series
        .iter()
        .map(|s| s["metric"]["gen_ai_request_model"].as_str().unwrap())
        .collect();
    assert!(models.contains(&ODD), "{models:?}");

    // Quantiles: PromQL's estimate lies in the bucket of the exact value.
    let lat_s: Vec<f64> = records.iter().map(|m| m.latency_ms / 1000.0).collect();
    for (q, exact_ms) in [(0.95, lat.p95), (0.5, lat.p50)] {
        let est = api
            .scalar(&format!(
                "histogram_quantile({q}, sum by (le) (gen_ai_client_operation_duration_seconds_bucket))"
            ))
            .await;
        assert_quantile_agrees(
            "latency",
            &DURATION_BUCKETS,
            lat_s.clone(),
            q,
            exact_ms / 1000.0,
            est,
        );
    }
    let ttft_s: Vec<f64> = records
        .iter()
        .filter_map(|m| m.ttft_ms)
        .map(|t| t / 1000.0)
        .collect();
    let est = api
        .scalar("histogram_quantile(0.95, sum by (le) (gen_ai_client_operation_time_to_first_chunk_seconds_bucket))")
        .await;
    assert_quantile_agrees("ttft", &TTFC_BUCKETS, ttft_s, 0.95, ttft.p95 / 1000.0, est);

    // Prometheus scraped our endpoint, and the scrape was healthy.
    assert_eq!(api.scalar(r#"up{job="steer"}"#).await, 1.0);
    assert!(sink.stats().scrapes >= 1);
    collector.shutdown(Duration::from_secs(5)).await;
    drop(prom);
}

/// The finish reason and allow-listed tags (`?tags=` of the spec) are
/// labels Prometheus stores and PromQL groups by; a record without a tag
/// has no such label on its series; the cap still folds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_reasons_and_tag_labels_are_queryable() {
    let Some(bin) = prometheus_bin() else { return };
    let sink = PrometheusSink::bind("127.0.0.1:0?tags=user,team.id").unwrap();
    let rec = |model: &str, finish: Option<&str>, tags: &[(&str, &str)], w: f64| {
        let mut m = AgentMetrics::new("anthropic", model)
            .with_latency_ms(120.0)
            .with_tokens(10, 3);
        m.finish_reason = finish.map(String::from);
        m.sample_weight = w;
        m.cost_usd = Some(0.25);
        for (k, v) in tags {
            m.tags.insert(k.to_string(), v.to_string());
        }
        m
    };
    let mut batch = vec![
        rec(
            "claude-opus-4-7",
            Some("end_turn"),
            &[("user", "alice"), ("team.id", "search")],
            1.0,
        ),
        rec(
            "claude-opus-4-7",
            Some("end_turn"),
            &[("user", "alice"), ("team.id", "search")],
            2.0,
        ),
        rec(
            "claude-opus-4-7",
            Some("max_tokens"),
            &[("user", "alice"), ("team.id", "search")],
            1.0,
        ),
        rec("claude-opus-4-7", Some("max_tokens"), &[("user", "bob")], 1.0),
        rec(
            "claude-opus-4-7",
            None,
            &[("team.id", "ads"), ("secret", "x")],
            1.0,
        ),
    ];
    let collector = MetricsCollector::builder().sink(sink.clone()).build().unwrap();
    for m in batch.drain(..) {
        collector.record(m);
    }
    assert!(collector.flush().await.is_complete());

    let prom = start_prometheus(&bin, sink.local_addr().unwrap());
    let api = Api {
        base: format!("http://127.0.0.1:{}", prom.port),
        http: reqwest::Client::new(),
    };
    api.ready(Duration::from_secs(30)).await;
    api.wait_for("steer_llm_requests_total", Duration::from_secs(60))
        .await;

    assert_eq!(api.scalar("sum(steer_llm_requests_total)").await, 6.0);
    assert_eq!(
        api.scalar(r#"sum(steer_llm_requests_total{gen_ai_response_finish_reasons="max_tokens"})"#)
            .await,
        2.0,
        "truncated answers are countable"
    );
    assert_eq!(
        api.scalar(r#"sum(steer_llm_requests_total{gen_ai_response_finish_reasons=""})"#)
            .await,
        1.0,
        "a record without a finish reason has no such label"
    );
    assert_eq!(
        api.scalar(r#"sum(steer_llm_cost_usd_total{user="alice"})"#).await,
        1.0,
        "cost per user: 0.25 × (1 + 2 + 1)"
    );
    assert_eq!(
        api.scalar(r#"sum(steer_llm_cost_usd_total{team_id="ads"})"#)
            .await,
        0.25
    );
    assert_eq!(
        api.scalar(r#"sum(gen_ai_client_operation_duration_seconds_count{user="alice",gen_ai_response_finish_reasons="end_turn"})"#)
            .await,
        3.0
    );
    assert_eq!(
        api.scalar(r#"sum(gen_ai_client_token_usage_sum{team_id="search",gen_ai_token_type="input"})"#)
            .await,
        40.0
    );
    // Empty tag values are absent labels; tags not allow-listed never arrive.
    let series = api.query(r#"steer_llm_requests_total{user="bob"}"#).await;
    assert_eq!(series.len(), 1);
    assert!(series[0]["metric"].get("team_id").is_none(), "{series:?}");
    assert!(api
        .query(r#"steer_llm_requests_total{secret!=""}"#)
        .await
        .is_empty());
    assert_eq!(api.scalar(r#"up{job="steer"}"#).await, 1.0);
    collector.shutdown(Duration::from_secs(5)).await;
    drop(prom);
}
