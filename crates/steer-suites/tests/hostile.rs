//! Hostile-input suite: the deterministic corpus of `steer_suites::hostile_corpus`
//! (1000 records, half of them hostile: NaN, ±Inf, negative and huge numbers,
//! u64::MAX tokens, 1 MB strings, NUL, newlines, quotes, backslashes,
//! separators, RTL text and emoji, SQL injection, 10 000 tags, an empty
//! model; the other half ordinary, interleaved so they share batches)
//! through every sink against its real backend or a capture server.
//!
//! For each sink: no panic; exact accounting (delivered + failed + dropped
//! == 1000, nothing dropped, nothing exhausted by retries); every ordinary
//! record arrives; every record is stored faithfully after the sink's
//! documented normalisation or rejected (counted as `failed.rejected`).
//! Each test prints a per-category outcome table (the source of
//! docs/suites.md).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DurationRound, Utc};
use steer_metrics::sinks::{JsonLinesSink, MemorySink};
use steer_metrics::{AgentMetrics, MetricsCollector, MetricsSink, RetryPolicy, SinkOptions, SinkStats};
use steer_suites::{hostile_corpus, service_env, Case, Category, CORPUS_SIZE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

// ------------------------------------------------------------ shared driver

fn corpus(seed: u64) -> Vec<Case> {
    // Recent (CloudWatch and Datadog refuse old points), whole milliseconds.
    let base = (Utc::now() - chrono::Duration::seconds(30))
        .duration_trunc(chrono::Duration::milliseconds(1))
        .unwrap();
    hostile_corpus(seed, base)
}

fn options() -> SinkOptions {
    SinkOptions::default()
        .queue_capacity(CORPUS_SIZE * 2)
        .batch_size(100)
        .linger(Duration::from_millis(20))
        .retry(
            RetryPolicy::default()
                .max_attempts(5)
                .initial_backoff(Duration::from_millis(10))
                .max_backoff(Duration::from_millis(200))
                .attempt_timeout(Duration::from_secs(30))
                .batch_deadline(Duration::from_secs(60)),
        )
}

/// The corpus without some categories (those a sink has a known bug with:
/// each is covered by an `#[ignore = "bug: ..."]` test of its own).
fn corpus_without(seed: u64, skip: &[Category]) -> Vec<Case> {
    corpus(seed)
        .into_iter()
        .filter(|c| !skip.contains(&c.category))
        .collect()
}

/// Only the ordinary records and those of `keep`.
fn corpus_only(seed: u64, keep: &[Category]) -> Vec<Case> {
    corpus(seed)
        .into_iter()
        .filter(|c| c.category == Category::Ordinary || keep.contains(&c.category))
        .collect()
}

/// Records the corpus through a collector with `sink`, flushes, checks the
/// accounting and returns the sink's stats (and the collector, still open).
async fn drive(sink: impl MetricsSink, cases: &[Case]) -> (SinkStats, MetricsCollector) {
    let collector = MetricsCollector::builder()
        .sink_with_options(sink, options())
        .build()
        .unwrap();
    for c in cases {
        collector.record(c.record.clone());
    }
    let report = collector.flush_timeout(Duration::from_secs(60)).await;
    let s = collector.stats().sinks[0].clone();
    let n = cases.len() as u64;
    eprintln!("[{}] flush complete={} stats {s:?}", s.name, report.is_complete());
    assert_eq!(s.received, n, "[{}] received: {s:?}", s.name);
    assert_eq!(s.dropped.total(), 0, "[{}] nothing may be dropped: {s:?}", s.name);
    assert_eq!(
        s.delivered + s.failed.total() + s.dropped.total(),
        n,
        "[{}] accounting: delivered + failed + dropped must equal the records: {s:?}",
        s.name
    );
    let ordinary = cases.iter().filter(|c| c.category == Category::Ordinary).count() as u64;
    assert!(
        s.failed.rejected <= n - ordinary,
        "[{}] more rejections than hostile records: {s:?}",
        s.name
    );
    (s, collector)
}

fn assert_no_exhaustion(s: &SinkStats) {
    assert_eq!(
        s.failed.retries_exhausted, 0,
        "[{}] a hostile record must be rejected as permanent, not retried until exhausted: {s:?}",
        s.name
    );
}

/// Per category: (stored, total). Prints the table, checks every ordinary
/// record is stored and that the missing ones are exactly the rejected ones.
fn outcome(
    sink: &str,
    cases: &[Case],
    stored: &HashSet<Uuid>,
    s: &SinkStats,
) -> BTreeMap<Category, (usize, usize)> {
    let mut t: BTreeMap<Category, (usize, usize)> = BTreeMap::new();
    for c in cases {
        let e = t.entry(c.category).or_default();
        e.1 += 1;
        if stored.contains(&c.record.request_id) {
            e.0 += 1;
        }
    }
    let mut line = format!("[{sink}] outcome (stored/total):");
    for (c, (k, n)) in &t {
        line.push_str(&format!(" {}={k}/{n}", c.name()));
    }
    eprintln!("{line}");
    assert_no_exhaustion(s);
    let (ok, all) = t[&Category::Ordinary];
    assert_eq!(
        ok, all,
        "[{sink}] every ordinary batch-mate of a hostile record must be stored"
    );
    let missing = cases.len() - stored.len();
    assert_eq!(
        missing as u64, s.failed.rejected,
        "[{sink}] records missing from the backend must be exactly the rejected ones: {s:?}"
    );
    assert_eq!(
        stored.len() as u64,
        s.delivered,
        "[{sink}] stored rows vs delivered: {s:?}"
    );
    t
}

fn of(t: &BTreeMap<Category, (usize, usize)>, c: Category) -> (usize, usize) {
    t.get(&c).copied().unwrap_or((0, 0))
}

/// Categories whose records a sink must store all / none of.
fn expect_all(sink: &str, t: &BTreeMap<Category, (usize, usize)>, cats: &[Category]) {
    for &c in cats {
        let (k, n) = of(t, c);
        assert_eq!(k, n, "[{sink}] category {} must be stored ({k}/{n})", c.name());
    }
}

fn expect_none(sink: &str, t: &BTreeMap<Category, (usize, usize)>, cats: &[Category]) {
    for &c in cats {
        let (k, n) = of(t, c);
        assert_eq!(
            k,
            0,
            "[{sink}] category {} must be rejected ({k}/{n} stored)",
            c.name()
        );
    }
}

fn by_id(cases: &[Case]) -> HashMap<Uuid, &Case> {
    cases.iter().map(|c| (c.record.request_id, c)).collect()
}

// ------------------------------------------------------------ memory, jsonl

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stores_every_record_as_is() {
    let cases = corpus(1);
    let sink = MemorySink::builder().max_records(CORPUS_SIZE * 2).build();
    let (s, _collector) = drive(sink.clone(), &cases).await;
    let got: HashMap<Uuid, AgentMetrics> = sink.records().into_iter().map(|m| (m.request_id, m)).collect();
    let stored: HashSet<Uuid> = got.keys().copied().collect();
    let t = outcome("memory", &cases, &stored, &s);
    expect_all("memory", &t, &Category::HOSTILE);
    for c in &cases {
        // Debug also compares NaN with NaN.
        assert_eq!(
            format!("{:?}", got[&c.record.request_id]),
            format!("{:?}", c.record),
            "[memory] {} changed",
            c.category.name()
        );
    }
}

async fn jsonl(cases: Vec<Case>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.jsonl");
    let (s, _collector) = drive(JsonLinesSink::new(&path), &cases).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let ids = by_id(&cases);
    let mut stored = HashSet::new();
    for line in text.lines() {
        let m: AgentMetrics = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "[jsonl] a stored line does not read back as a record ({e}): {:.300}",
                line
            )
        });
        let c = ids[&m.request_id];
        assert_eq!(
            format!("{m:?}"),
            format!("{:?}", c.record),
            "[jsonl] {} changed",
            c.category.name()
        );
        assert!(
            stored.insert(m.request_id),
            "[jsonl] duplicate line for {}",
            m.request_id
        );
    }
    let t = outcome("jsonl", &cases, &stored, &s);
    expect_none("jsonl", &t, &[Category::NanLatency, Category::InfLatency]);
    let others: Vec<Category> = Category::HOSTILE
        .into_iter()
        .filter(|c| !matches!(c, Category::NanLatency | Category::InfLatency))
        .collect();
    expect_all("jsonl", &t, &others);
}

// ------------------------------------------------------------ sqlite

/// What SQLite reads back (docs: crates/steer-sink-sqlite/src/encode.rs):
/// non-finite floats NULL (latency/weight NaN, optional ones None), counts
/// saturated at i64::MAX, timestamps at microsecond precision, and -0.0
/// reads back as 0.0.
fn sqlite_normalised(m: &AgentMetrics) -> AgentMetrics {
    let mut e = m.clone();
    let sat = |v: u64| v.min(i64::MAX as u64);
    // SQLite stores a REAL with an integral value as an integer: -0.0 reads back as 0.0.
    let unsign_zero = |v: f64| if v == 0.0 { 0.0 } else { v };
    e.latency_ms = if e.latency_ms.is_finite() {
        unsign_zero(e.latency_ms)
    } else {
        f64::NAN
    };
    e.ttft_ms = e.ttft_ms.filter(|v| v.is_finite()).map(unsign_zero);
    e.cost_usd = e.cost_usd.filter(|v| v.is_finite()).map(unsign_zero);
    e.input_tokens = sat(e.input_tokens);
    e.output_tokens = sat(e.output_tokens);
    e.cached_tokens = sat(e.cached_tokens);
    e.reasoning_tokens = e.reasoning_tokens.map(sat);
    e.cache_write_tokens = e.cache_write_tokens.map(sat);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stores_every_record_normalised() {
    let cases = corpus(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let sink = steer_sink_sqlite::SqliteSink::open(&path).unwrap();
    let (s, _collector) = drive(sink, &cases).await;
    let store = steer_sink_sqlite::SqliteStore::open_read_only(&path).unwrap();
    let rows = store.records(&steer_sink_sqlite::Filter::all()).unwrap();
    let ids = by_id(&cases);
    let mut stored = HashSet::new();
    for m in rows {
        let c = ids[&m.request_id];
        assert_eq!(
            format!("{m:?}"),
            format!("{:?}", sqlite_normalised(&c.record)),
            "[sqlite] {} not stored as documented",
            c.category.name()
        );
        assert!(stored.insert(m.request_id));
    }
    let t = outcome("sqlite", &cases, &stored, &s);
    expect_all("sqlite", &t, &Category::HOSTILE);
}

// ------------------------------------------------------------ postgres

async fn postgres(cases: Vec<Case>) {
    let Some(url) = service_env("STEER_TEST_POSTGRES_URL", "scripts/services/postgres.sh") else {
        return;
    };
    let schema = format!("hostile_{}", &Uuid::now_v7().simple().to_string()[20..]);
    let sink = steer_sink_postgres::PostgresSink::builder(&url)
        .schema(&schema)
        .build()
        .unwrap();
    let (s, _collector) = drive(sink, &cases).await;

    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let rows = client
        .query(
            &format!(
                "SELECT request_id, model, provider, latency_ms, input_tokens, output_tokens, cost_usd::float8, \
                 tags::text, error_message, trace_id, \"timestamp\" FROM \"{schema}\".llm_metrics"
            ),
            &[],
        )
        .await
        .unwrap();
    let ids = by_id(&cases);
    let mut stored = HashSet::new();
    for r in &rows {
        let id: Uuid = r.get(0);
        let c = ids[&id];
        let m = &c.record;
        let what = c.category.name();
        assert_eq!(r.get::<_, String>(1), m.model, "[postgres] {what}: model");
        assert_eq!(r.get::<_, String>(2), m.provider, "[postgres] {what}: provider");
        assert_eq!(
            r.get::<_, f64>(3).to_bits(),
            m.latency_ms.to_bits(),
            "[postgres] {what}: latency"
        );
        assert_eq!(
            r.get::<_, i64>(4) as u64,
            m.input_tokens,
            "[postgres] {what}: input tokens"
        );
        assert_eq!(
            r.get::<_, i64>(5) as u64,
            m.output_tokens,
            "[postgres] {what}: output tokens"
        );
        assert_eq!(r.get::<_, Option<f64>>(6), m.cost_usd, "[postgres] {what}: cost");
        let tags: BTreeMap<String, String> = serde_json::from_str(&r.get::<_, String>(7)).unwrap();
        assert_eq!(tags, m.tags, "[postgres] {what}: tags");
        assert_eq!(
            r.get::<_, Option<String>>(8),
            m.error_message,
            "[postgres] {what}: error message"
        );
        assert_eq!(
            r.get::<_, Option<String>>(9),
            m.trace_id,
            "[postgres] {what}: trace id"
        );
        assert_eq!(
            r.get::<_, chrono::DateTime<Utc>>(10),
            m.timestamp,
            "[postgres] {what}: timestamp"
        );
        assert!(stored.insert(id));
    }
    let t = outcome("postgres", &cases, &stored, &s);
    // Documented rejections (docs/backends/postgres.md, encode::validate).
    expect_none(
        "postgres",
        &t,
        &[
            Category::NanLatency,
            Category::InfLatency,
            Category::MaxTokens,
            Category::NulBytes,
        ],
    );
    expect_all(
        "postgres",
        &t,
        &[
            Category::NegativeNumbers,
            Category::HugeFloats,
            Category::Newlines,
            Category::Quotes,
            Category::Backslashes,
            Category::Separators,
            Category::Unicode,
            Category::SqlInjection,
            Category::TenThousandTags,
            Category::EmptyModel,
        ],
    );
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

// ------------------------------------------------------------ influxdb

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_stores_normalised_or_rejects() {
    use steer_sink_influxdb::{normalize_name, InfluxSink};
    let Some(url) = service_env("STEER_TEST_INFLUXDB_URL", "scripts/services/influxdb.sh") else {
        return;
    };
    let url = url.trim_end_matches('/').to_string();
    let cases = corpus(5);
    let http = reqwest::Client::new();
    let db = format!("hostile_{}", &Uuid::now_v7().simple().to_string()[20..]);
    let q = |db: Option<String>, q: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let mut form = vec![("q", q.clone()), ("epoch", "ns".to_string())];
            if let Some(db) = db {
                form.push(("db", db));
            }
            let resp = http
                .post(format!("{url}/query"))
                .form(&form)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{q}: {}", resp.status());
            let v: serde_json::Value = resp.json().await.unwrap();
            assert!(v["results"][0].get("error").is_none(), "{q}: {v}");
            v
        }
    };
    q(None, format!("CREATE DATABASE \"{db}\"")).await;
    let sink = InfluxSink::new(InfluxSink::builder(url.as_str()).database(&db).build().unwrap()).unwrap();
    let (s, _collector) = drive(sink, &cases).await;

    let v = q(
        Some(db.clone()),
        "SELECT \"request_id\", \"latency_ms\", \"input_tokens\", \"model\", \"provider\" FROM llm_request"
            .into(),
    )
    .await;
    let ids = by_id(&cases);
    let mut stored = HashSet::new();
    let empty = vec![];
    let series = v["results"][0]["series"].as_array().unwrap_or(&empty);
    for ser in series {
        let cols: Vec<&str> = ser["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let col = |name: &str| cols.iter().position(|c| *c == name).unwrap();
        for row in ser["values"].as_array().unwrap() {
            let id: Uuid = row[col("request_id")].as_str().unwrap().parse().unwrap();
            let c = ids[&id];
            let m = &c.record;
            let what = c.category.name();
            assert!(stored.insert(id), "[influxdb] {what}: point stored twice");
            assert_eq!(
                row[col("model")].as_str().unwrap_or(""),
                normalize_name(&m.model),
                "[influxdb] {what}: model"
            );
            assert_eq!(
                row[col("provider")].as_str().unwrap_or(""),
                normalize_name(&m.provider),
                "[influxdb] {what}: provider"
            );
            if m.latency_ms.is_finite() {
                assert_eq!(
                    row[col("latency_ms")].as_f64(),
                    Some(m.latency_ms),
                    "[influxdb] {what}: latency"
                );
            } else {
                assert!(
                    row[col("latency_ms")].is_null(),
                    "[influxdb] {what}: non-finite latency is skipped"
                );
            }
            let want = m.input_tokens.min(i64::MAX as u64);
            assert_eq!(
                row[col("input_tokens")].as_u64(),
                Some(want),
                "[influxdb] {what}: tokens (saturated)"
            );
        }
    }
    let t = outcome("influxdb", &cases, &stored, &s);
    expect_all(
        "influxdb",
        &t,
        &[
            Category::NanLatency,
            Category::InfLatency,
            Category::NegativeNumbers,
            Category::HugeFloats,
            Category::MaxTokens,
            Category::NulBytes,
            Category::Newlines,
            Category::Quotes,
            Category::Backslashes,
            Category::Separators,
            Category::Unicode,
            Category::SqlInjection,
            Category::EmptyModel,
        ],
    );
    q(None, format!("DROP DATABASE \"{db}\"")).await;
}

// ------------------------------------------------------------ capture server

#[derive(Debug, Clone)]
struct Req {
    path: String,
    /// Decompressed body.
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 server that keeps every request and answers
/// `status` with `reply` as body.
#[derive(Clone)]
struct CaptureServer {
    url: String,
    requests: Arc<Mutex<Vec<Req>>>,
}

impl CaptureServer {
    async fn start(status: u16, content_type: &'static str, reply: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cap = CaptureServer {
            url: format!("http://{}", listener.local_addr().unwrap()),
            requests: Arc::default(),
        };
        let requests = cap.requests.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let requests = requests.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let head_end = loop {
                            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                            let mut chunk = [0u8; 65536];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                        let mut lines = head.split("\r\n");
                        let path = lines
                            .next()
                            .unwrap_or("")
                            .split(' ')
                            .nth(1)
                            .unwrap_or("")
                            .to_string();
                        let mut headers = BTreeMap::new();
                        for l in lines.filter(|l| !l.is_empty()) {
                            if let Some((k, v)) = l.split_once(':') {
                                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                            }
                        }
                        let len: usize = headers
                            .get("content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        while buf.len() < head_end + len {
                            let mut chunk = [0u8; 65536];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let raw: Vec<u8> = buf[head_end..head_end + len].to_vec();
                        buf.drain(..head_end + len);
                        let body = match headers.get("content-encoding").map(String::as_str) {
                            Some("gzip") => {
                                let mut out = Vec::new();
                                flate2::read::GzDecoder::new(&raw[..])
                                    .read_to_end(&mut out)
                                    .unwrap();
                                out
                            }
                            Some("deflate") => {
                                let mut out = Vec::new();
                                flate2::read::ZlibDecoder::new(&raw[..])
                                    .read_to_end(&mut out)
                                    .unwrap();
                                out
                            }
                            _ => raw,
                        };
                        requests.lock().unwrap().push(Req { path, body });
                        let resp = format!(
                            "HTTP/1.1 {status} OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{reply}",
                            reply.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        cap
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

// ------------------------------------------------------------ datadog

async fn datadog(cases: Vec<Case>) {
    let validator = service_env("STEER_TEST_DD_VALIDATOR", "scripts/services/datadog.sh");
    let cap = CaptureServer::start(202, "application/json", "{\"errors\":[]}").await;
    let sink = steer_sink_datadog::DatadogSink::builder()
        .site(cap.url.clone())
        .api_key("fake-key")
        .host("suite-host")
        .service("steer-suites")
        .record_tag("team")
        .build()
        .unwrap();
    let (s, _collector) = drive(sink, &cases).await;

    // Count points: last write wins per (metric, tags, host, timestamp).
    let mut counts: HashMap<(String, Vec<String>, String, i64), f64> = HashMap::new();
    let mut bodies = Vec::new();
    for r in cap.requests() {
        let json = String::from_utf8(r.body.clone()).expect("[datadog] body is UTF-8");
        let v: serde_json::Value = match serde_json::from_str(&json) {
            Ok(v) => v,
            Err(e) => {
                let col = e.column().saturating_sub(1);
                let lo = json.floor_char_boundary(col.saturating_sub(300));
                let hi = json.ceil_char_boundary((col + 100).min(json.len()));
                panic!(
                    "[datadog] body {} is not valid JSON ({e}): ...{}...",
                    r.path,
                    &json[lo..hi]
                );
            }
        };
        if r.path == "/api/v2/series" {
            for ser in v["series"].as_array().unwrap() {
                let tags: Vec<String> = ser["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect();
                for t in &tags {
                    assert!(t.len() <= 200, "[datadog] tag longer than 200: {}", t.len());
                    assert!(
                        !t.contains(['\0', '\n', ' ', ',']),
                        "[datadog] tag {t:?} not normalised"
                    );
                }
                let host = ser["resources"][0]["name"].as_str().unwrap_or("").to_string();
                for p in ser["points"].as_array().unwrap() {
                    let val = p["value"].as_f64().unwrap();
                    assert!(val.is_finite(), "[datadog] non-finite value in {json:.200}");
                    counts.insert(
                        (
                            ser["metric"].as_str().unwrap().to_string(),
                            tags.clone(),
                            host.clone(),
                            p["timestamp"].as_i64().unwrap(),
                        ),
                        val,
                    );
                }
            }
            bodies.push(("series", json));
        } else {
            bodies.push(("distribution", json));
        }
    }
    let requests: f64 = counts
        .iter()
        .filter(|(k, _)| k.0 == "steer.llm.requests")
        .map(|(_, v)| v)
        .sum();
    // Per model series, with the sink's own tag normalisation.
    let mut got_models: BTreeMap<Option<String>, f64> = BTreeMap::new();
    for (k, v) in counts.iter().filter(|(k, _)| k.0 == "steer.llm.requests") {
        let model = k.1.iter().find(|t| t.starts_with("model:")).cloned();
        *got_models.entry(model).or_default() += v;
    }
    let mut want_models: BTreeMap<Option<String>, f64> = BTreeMap::new();
    for c in &cases {
        *want_models
            .entry(steer_sink_datadog::encode::tag("model", &c.record.model))
            .or_default() += 1.0;
    }
    if s.failed.total() == 0 {
        assert_eq!(got_models, want_models, "[datadog] requests per model series");
    }
    eprintln!(
        "[datadog] steer.llm.requests total {requests}, {} bodies",
        bodies.len()
    );
    assert_no_exhaustion(&s);
    assert_eq!(
        requests, s.delivered as f64,
        "[datadog] the request counts add up to the delivered records: {s:?}"
    );
    let ordinary = cases.iter().filter(|c| c.category == Category::Ordinary).count() as u64;
    assert!(s.delivered >= ordinary, "[datadog] {s:?}");
    for model in ["gpt-4o-mini", "claude-sonnet-4-5", "grok-4"] {
        let want = cases
            .iter()
            .filter(|c| c.category == Category::Ordinary && c.record.model == model)
            .count() as f64;
        let mt = format!("model:{model}");
        let got: f64 = counts
            .iter()
            .filter(|(k, _)| k.0 == "steer.llm.requests" && k.1.contains(&mt))
            .map(|(_, v)| v)
            .sum();
        assert!(
            got >= want,
            "[datadog] {model}: {got} requests counted, {want} ordinary records sent"
        );
    }

    if let Some(cmd) = validator {
        let dir = tempfile::tempdir().unwrap();
        let mut args = Vec::new();
        for (i, (kind, json)) in bodies.iter().enumerate() {
            let p = dir.path().join(format!("body-{i}.json"));
            std::fs::write(&p, json).unwrap();
            args.push(format!("{kind}:{}", p.display()));
        }
        let mut parts = cmd.split_whitespace();
        let out = std::process::Command::new(parts.next().unwrap())
            .args(parts)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "[datadog] schema validation failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ------------------------------------------------------------ otlp

async fn otlp(cases: Vec<Case>) {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    use prost::Message;
    let cap = CaptureServer::start(200, "application/x-protobuf", "").await;
    let sink = steer_sink_otlp::OtlpSink::builder()
        .endpoint(&cap.url)
        .export_interval(Duration::from_secs(3600))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (s, _collector) = drive(sink, &cases).await;
    let reqs = cap.requests();
    assert!(!reqs.is_empty(), "[otlp] no export arrived");
    // Cumulative temporality: the last export holds the totals.
    let last =
        ExportMetricsServiceRequest::decode(&reqs.last().unwrap().body[..]).expect("[otlp] valid protobuf");
    use opentelemetry_proto::tonic::common::v1::any_value;
    let mut requests = 0.0;
    let mut models = HashSet::new();
    let mut got_models: BTreeMap<String, f64> = BTreeMap::new();
    for rm in &last.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                if m.name == "steer.llm.cost" {
                    if let Some(Data::Sum(sum)) = &m.data {
                        for p in &sum.data_points {
                            if let Some(Value::AsDouble(d)) = p.value {
                                assert!(d.is_finite(), "[otlp] a cost counter is no longer a number: {d}");
                            }
                        }
                    }
                }
                if m.name != "steer.llm.requests" {
                    continue;
                }
                let Some(Data::Sum(sum)) = &m.data else {
                    panic!("[otlp] requests is not a sum")
                };
                for p in &sum.data_points {
                    requests += match p.value {
                        Some(Value::AsDouble(d)) => d,
                        Some(Value::AsInt(i)) => i as f64,
                        None => 0.0,
                    };
                    let v = match p.value {
                        Some(Value::AsDouble(d)) => d,
                        Some(Value::AsInt(i)) => i as f64,
                        None => 0.0,
                    };
                    for kv in &p.attributes {
                        if kv.key == "gen_ai.request.model" {
                            models.insert(format!("{:?}", kv.value));
                            if let Some(any_value::Value::StringValue(m)) =
                                kv.value.as_ref().and_then(|v| v.value.as_ref())
                            {
                                *got_models.entry(m.clone()).or_default() += v;
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "[otlp] steer.llm.requests total {requests}, {} distinct models",
        models.len()
    );
    assert_no_exhaustion(&s);
    assert_eq!(
        requests, s.delivered as f64,
        "[otlp] request counter vs delivered: {s:?}"
    );
    let mut want_models: BTreeMap<String, f64> = BTreeMap::new();
    for c in &cases {
        *want_models
            .entry(steer_sink_otlp::instruments::attribute_value(&c.record.model))
            .or_default() += 1.0;
    }
    assert_eq!(
        got_models, want_models,
        "[otlp] requests per gen_ai.request.model"
    );
    assert_eq!(
        s.delivered,
        cases.len() as u64,
        "[otlp] in-memory instruments accept every record: {s:?}"
    );
}

// ------------------------------------------------------------ prometheus

/// The unescaped value of label `name` in one exposition line.
fn prom_label(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Tolerant OpenMetrics parsing: the sum of the samples of `metric`
/// (the value is the first token after the label set's closing brace).
fn prom_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .map(|l| {
            let rest = l.rfind('}').map_or_else(|| &l[metric.len()..], |p| &l[p + 1..]);
            rest.split_whitespace().next().unwrap().parse::<f64>().unwrap()
        })
        .sum()
}

async fn prometheus(cases: Vec<Case>) {
    let sink = steer_sink_prometheus::PrometheusSink::builder()
        .serve("127.0.0.1:0")
        .unwrap();
    let addr = sink.local_addr().unwrap();
    let (s, _collector) = drive(sink.clone(), &cases).await;
    let _keep = sink;
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "[prometheus] exposition must end with # EOF"
    );
    for l in text.lines() {
        assert!(!l.contains('\0'), "[prometheus] raw NUL in the exposition");
    }
    let requests = prom_sum(&text, "steer_llm_requests_total");
    let mut got_models: BTreeMap<String, f64> = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with("steer_llm_requests_total{"))
    {
        let model = prom_label(l, "gen_ai_request_model").unwrap_or_default();
        *got_models.entry(model).or_default() += prom_sum(l, "steer_llm_requests_total");
    }
    let mut want_models: BTreeMap<String, f64> = BTreeMap::new();
    for c in &cases {
        *want_models
            .entry(steer_sink_prometheus::instruments::label_value(&c.record.model))
            .or_default() += 1.0;
    }
    assert_eq!(
        got_models, want_models,
        "[prometheus] requests per gen_ai_request_model"
    );
    let folded = prom_sum(&text, "steer_prometheus_folded_series_total");
    eprintln!(
        "[prometheus] requests {requests}, folded {folded}, {} bytes",
        text.len()
    );
    assert_no_exhaustion(&s);
    assert_eq!(
        requests, s.delivered as f64,
        "[prometheus] request counter vs delivered: {s:?}"
    );
    assert_eq!(s.delivered, cases.len() as u64, "[prometheus] {s:?}");
    for l in text.lines().filter(|l| l.starts_with("steer_llm_cost_usd_total")) {
        let v = prom_sum(l, "steer_llm_cost_usd_total");
        assert!(
            v.is_finite(),
            "[prometheus] a cost counter is no longer a number: {l:.300}"
        );
    }
    for model in ["gpt-4o-mini", "claude-sonnet-4-5", "grok-4"] {
        assert!(
            text.contains(&format!("gen_ai_request_model=\"{model}\"")),
            "[prometheus] ordinary model {model} missing"
        );
    }
}

// ------------------------------------------------------------ cloudwatch

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_publishes_or_rejects_and_counts_add_up() {
    use steer_sink_cloudwatch::aws_sdk_cloudwatch as cw;
    let Some(ep) = service_env("STEER_TEST_CLOUDWATCH_ENDPOINT", "scripts/services/cloudwatch.sh") else {
        return;
    };
    let cases = corpus(9);
    let conf = cw::Config::builder()
        .behavior_version_latest()
        .region(cw::config::Region::new("us-east-1"))
        .endpoint_url(&ep)
        .credentials_provider(cw::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    let client = cw::Client::from_conf(conf);
    let ns = format!("steer-suites/hostile-{}", Uuid::now_v7().simple());
    let sink = steer_sink_cloudwatch::CloudWatchSink::builder()
        .namespace(&ns)
        .client(client.clone())
        .tag_dimension("team")
        .build()
        .await
        .unwrap();
    let (s, _collector) = drive(sink, &cases).await;

    // Every series of `Requests`, then the sum of its samples.
    let mut dims_sets = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .list_metrics()
            .namespace(&ns)
            .metric_name("Requests")
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        for m in out.metrics() {
            let mut d = m.dimensions().to_vec();
            d.sort_by(|a, b| a.name().cmp(&b.name()));
            if !dims_sets.contains(&d) {
                dims_sets.push(d);
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let now = Utc::now().timestamp();
    let mut total = 0.0;
    let mut got_models: BTreeMap<String, f64> = BTreeMap::new();
    for dims in &dims_sets {
        let out = client
            .get_metric_statistics()
            .namespace(&ns)
            .metric_name("Requests")
            .set_dimensions(Some(dims.clone()))
            .start_time(cw::primitives::DateTime::from_secs(now - 3 * 3600))
            .end_time(cw::primitives::DateTime::from_secs(now + 3600))
            .period(60)
            .statistics(cw::types::Statistic::Sum)
            .send()
            .await
            .unwrap();
        let sum = out
            .datapoints()
            .iter()
            .map(|d| d.sum().unwrap_or(0.0))
            .sum::<f64>();
        total += sum;
        let model = dims
            .iter()
            .find(|d| d.name() == Some("Model"))
            .and_then(|d| d.value())
            .unwrap_or("")
            .to_string();
        *got_models.entry(model).or_default() += sum;
        for d in dims {
            let v = d.value().unwrap_or("");
            assert!(
                !v.is_empty() && v.len() <= 255,
                "[cloudwatch] dimension value length {}",
                v.len()
            );
            assert!(
                !v.contains(['\0', '\n']),
                "[cloudwatch] control character in dimension {v:?}"
            );
        }
    }
    eprintln!("[cloudwatch] {} Requests series, total {total}", dims_sets.len());
    assert_no_exhaustion(&s);
    assert_eq!(
        total, s.delivered as f64,
        "[cloudwatch] published requests vs delivered: {s:?}"
    );
    let ordinary = cases.iter().filter(|c| c.category == Category::Ordinary).count() as u64;
    assert!(s.delivered >= ordinary, "[cloudwatch] {s:?}");
    // Per Model dimension, with the sink's own normalisation and validity rule.
    let mut want_models: BTreeMap<String, f64> = BTreeMap::new();
    let mut invalid = 0;
    for c in &cases {
        if steer_sink_cloudwatch::encode::invalid_reason(&c.record).is_some() {
            invalid += 1;
            continue;
        }
        *want_models
            .entry(steer_sink_cloudwatch::encode::normalize(
                &c.record.model,
                "none",
                false,
            ))
            .or_default() += 1.0;
    }
    assert_eq!(
        s.failed.rejected, invalid,
        "[cloudwatch] rejected vs the sink's own validity rule"
    );
    assert_eq!(
        got_models, want_models,
        "[cloudwatch] Requests per Model dimension"
    );
    // Documented rejections: NaN, ±Inf, negative and out-of-range values.
    let hostile_numbers = cases
        .iter()
        .filter(|c| {
            matches!(
                c.category,
                Category::NanLatency
                    | Category::InfLatency
                    | Category::NegativeNumbers
                    | Category::HugeFloats
            )
        })
        .count() as u64;
    assert_eq!(
        s.failed.rejected, hostile_numbers,
        "[cloudwatch] exactly the records with values CloudWatch refuses are rejected: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_stores_or_rejects_non_finite_floats() {
    jsonl(corpus_without(2, &[Category::NanLatency, Category::InfLatency])).await;
}

/// Was bug 1: NaN/Inf were written as `null`, so the line no longer read
/// back and a -Inf cost silently became unknown. Now rejected alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_rejects_nan_and_inf_instead_of_writing_null() {
    jsonl(corpus_only(2, &[Category::NanLatency, Category::InfLatency])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_or_rejects_each_record_alone() {
    postgres(corpus_without(4, &[Category::MegaStrings])).await;
}

/// Was bug 2: a 1 MB model exceeds the btree index row limit (SQLSTATE
/// 54000), which was classified retryable, so the batch was retried until
/// exhausted and its ordinary batch-mates were lost. Now isolated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_isolates_oversized_index_rows() {
    postgres(corpus_only(4, &[Category::MegaStrings])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_counts_every_delivered_record_and_bodies_validate() {
    datadog(corpus(6)).await;
}

/// Was bug 3: two 1e308 costs in one series summed past f64::MAX and the
/// body carried 1.797693134862316e308, a JSON number out of the double range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_huge_costs_never_leave_the_double_range() {
    datadog(corpus_only(6, &[Category::HugeFloats])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_counts_every_record_and_exports_valid_protobuf() {
    otlp(corpus(7)).await;
}

/// Was bug 4: u64::MAX token counts overflowed the SDK's u64 histogram sum
/// (a panic in debug builds that killed the collector worker, a wrapped sum
/// in release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_max_tokens_never_overflow_the_sdk_histogram() {
    otlp(corpus_only(7, &[Category::MaxTokens])).await;
}

/// Was bug 5: two 1e308 costs in one series summed to +Inf and the
/// steer.llm.cost counter stayed +Inf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_huge_costs_keep_the_cost_counter_finite() {
    otlp(corpus_only(7, &[Category::HugeFloats])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counts_every_record_and_exposition_parses() {
    prometheus(corpus(8)).await;
}

/// Was bug 5: two 1e308 costs in one series summed to +Inf and
/// steer_llm_cost_usd_total read `inf`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_huge_costs_keep_the_cost_counter_finite() {
    prometheus(corpus_only(8, &[Category::HugeFloats])).await;
}

// ------------------------------------------------------------ property: arbitrary hostile values

mod props {
    use super::*;
    use proptest::prelude::*;

    fn hostile_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9 =,\"'\\\\\n\r\t\u{0}{}]{0,24}",
            ".{0,24}",
            Just(String::new()),
            Just("'); DROP TABLE llm_metrics;--".to_string()),
        ]
    }

    fn any_float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-1.0),
            Just(1e308)
        ]
    }

    prop_compose! {
        fn record()(
            model in hostile_string(),
            provider in hostile_string(),
            tags in proptest::collection::btree_map(hostile_string(), hostile_string(), 0..6),
            latency in any_float(),
            cost in proptest::option::of(any_float()),
            input in any::<u64>(),
            output in any::<u64>(),
            message in proptest::option::of(hostile_string()),
        ) -> AgentMetrics {
            let mut m = AgentMetrics::new(provider, model).with_latency_ms(latency).with_tokens(input, output);
            m.timestamp = m.timestamp.duration_trunc(chrono::Duration::microseconds(1)).unwrap();
            m.tags = tags;
            m.cost_usd = cost;
            m.error_message = message;
            m
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Arbitrary hostile records through memory and SQLite: exact
        /// accounting, memory keeps them as-is, SQLite as documented.
        #[test]
        fn arbitrary_records_are_stored_as_documented(records in proptest::collection::vec(record(), 1..40)) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("p.db");
                let mem = MemorySink::builder().max_records(1000).build();
                let collector = MetricsCollector::builder()
                    .sink_with_options(mem.clone(), options())
                    .sink_with_options(steer_sink_sqlite::SqliteSink::open(&path).unwrap(), options())
                    .build()
                    .unwrap();
                for m in &records {
                    collector.record(m.clone());
                }
                collector.flush_timeout(Duration::from_secs(30)).await;
                let n = records.len() as u64;
                for s in collector.stats().sinks {
                    prop_assert_eq!(s.delivered + s.failed.total() + s.dropped.total(), n, "{:?}", s);
                    prop_assert_eq!(s.delivered, n, "{:?}", s);
                }
                let got: HashMap<Uuid, AgentMetrics> = mem.records().into_iter().map(|m| (m.request_id, m)).collect();
                let rows: HashMap<Uuid, AgentMetrics> = steer_sink_sqlite::SqliteStore::open_read_only(&path)
                    .unwrap()
                    .records(&steer_sink_sqlite::Filter::all())
                    .unwrap()
                    .into_iter()
                    .map(|m| (m.request_id, m))
                    .collect();
                for m in &records {
                    prop_assert_eq!(format!("{:?}", got[&m.request_id]), format!("{m:?}"));
                    prop_assert_eq!(format!("{:?}", rows[&m.request_id]), format!("{:?}", sqlite_normalised(m)));
                }
                collector.shutdown(Duration::from_secs(5)).await;
                Ok(())
            })?;
        }
    }
}
