//! Integration tests against a real PostgreSQL (started by
//! scripts/services/postgres.sh, which exports STEER_TEST_POSTGRES_URL and
//! friends). Every test works in a fresh schema so tests run in parallel;
//! the tests that stop the server take an exclusive lock.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use steer_metrics::query::summarize;
use steer_metrics::summary::{Distribution, Summary};
use steer_metrics::testkit::synthetic;
use steer_metrics::{
    AgentMetrics, ErrorClass, GroupKey, Method, MetricsCollector, MetricsSink, RetryPolicy, SinkErrorKind,
    SinkOptions, StatsQuery, SummaryStore,
};
use steer_sink_postgres::{PostgresSink, PostgresStore};
use tokio::sync::RwLock;

/// Tests that stop the server hold it exclusively; the others share it.
static SERVER: RwLock<()> = RwLock::const_new(());

fn env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var_os("STEER_REQUIRE_SERVICES").is_some() || std::env::var_os("CI").is_some() {
                panic!("{var} is not set: start PostgreSQL with scripts/services/postgres.sh (scripts/test.sh does)");
            }
            // Straight to the process's stderr, so the test harness does not swallow it.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "SKIPPED: set {var} (see scripts/services/postgres.sh) to run the PostgreSQL tests\n"
                )
                .as_bytes(),
            );
            None
        }
    }
}

fn url() -> Option<String> {
    env("STEER_TEST_POSTGRES_URL")
}

fn fresh_schema(test: &str) -> String {
    format!("t_{test}_{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn count(c: &tokio_postgres::Client, schema: &str) -> (i64, i64) {
    let row = c
        .query_one(
            &format!("SELECT count(*), count(DISTINCT request_id) FROM \"{schema}\".llm_metrics"),
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(200)
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(300))
        .attempt_timeout(Duration::from_secs(20))
        .batch_deadline(Duration::from_secs(90))
}

fn sink(url: &str, schema: &str) -> PostgresSink {
    PostgresSink::builder(url).schema(schema).build().unwrap()
}

/// PostgreSQL keeps microseconds.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::microseconds(1)).unwrap()
}

/// Stops and starts the shared server; restarts it when dropped.
struct ServerControl {
    pg_ctl: String,
    data: String,
    runas: Option<String>,
    stopped: bool,
}

impl ServerControl {
    /// `None` (skip) when the variables are missing outside CI.
    fn from_env() -> Option<Self> {
        Some(ServerControl {
            pg_ctl: env("STEER_TEST_PG_CTL")?,
            data: env("STEER_TEST_PG_DATA")?,
            runas: std::env::var("STEER_TEST_PG_RUNAS")
                .ok()
                .filter(|s| !s.is_empty()),
            stopped: false,
        })
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut cmd = match &self.runas {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", &self.pg_ctl]);
                c
            }
            None => Command::new(&self.pg_ctl),
        };
        let out = cmd
            .args(["-D", &self.data, "-w", "-t", "30"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&mut self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
        self.stopped = true;
    }

    fn start(&mut self) {
        let log = format!("{}/restart.log", self.data);
        self.pg_ctl(&["-l", &log, "start"]);
        self.stopped = false;
    }
}

impl Drop for ServerControl {
    fn drop(&mut self) {
        if self.stopped {
            self.start();
        }
    }
}

async fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn full_record(i: u32) -> AgentMetrics {
    let mut m = AgentMetrics::new("anthropic", "claude-sonnet-4-5")
        .with_latency_ms(812.5 + f64::from(i))
        .with_tokens(1200, 300)
        .with_tag("team", "search")
        .with_tag("quote'\"; DROP TABLE llm_metrics; --", "ünï☃ \\ back\\slash");
    m.trace_id = Some(format!("trace-{i}"));
    m.response_model = Some("claude-sonnet-4-5-20250929".into());
    m.method = Method::Stream;
    m.ttft_ms = Some(120.25);
    m.cached_tokens = 1000;
    m.cache_write_tokens = Some(10);
    m.reasoning_tokens = Some(5);
    m.cost_usd = Some(0.012_345_678_9 * f64::from(i + 1));
    m.retries = 2;
    m.error_class = Some(ErrorClass::ALL[i as usize % ErrorClass::ALL.len()]);
    m.error_message = Some("429 from provider: {\"quota\": 'x'}".into());
    m.tools_used = vec![
        "search".into(),
        "calc,ulator".into(),
        "{braces}".into(),
        "\"q\"".into(),
    ];
    m.tools_invoked = 4;
    m.agent_loop_iters = u32::MAX;
    m.agent_runtime = Some("loop".into());
    m.sample_weight = 4.0;
    m.input_tokens = i64::MAX as u64;
    m
}

#[tokio::test]
async fn every_field_round_trips_and_the_schema_is_as_documented() {
    let Some(url) = url() else { return };
    let _shared = SERVER.read().await;
    let schema = fresh_schema("roundtrip");
    let sink = sink(&url, &schema);
    let mut records: Vec<AgentMetrics> = (0..20).map(full_record).collect();
    // And a minimal one: every optional field empty.
    let mut minimal = AgentMetrics::new("openai", "gpt-4o-mini");
    minimal.cost_usd = None;
    records.push(minimal);
    let mut neg = AgentMetrics::new("xai", "grok-4").with_latency_ms(-0.0);
    neg.cost_usd = Some(0.0);
    neg.ttft_ms = Some(1e-300);
    records.push(neg);
    sink.record_batch(&records).await.unwrap();

    let back = sink.store().records(None, 1000).await.unwrap();
    let mut expected: Vec<AgentMetrics> = records
        .iter()
        .cloned()
        .map(|mut m| {
            m.timestamp = micros(m.timestamp);
            m
        })
        .collect();
    expected.sort_by_key(|m| (m.timestamp, m.request_id));
    assert_eq!(back.len(), expected.len());
    for (got, want) in back.iter().zip(&expected) {
        assert_eq!(got, want);
    }

    // The columns and indexes users query.
    let c = admin(&url).await;
    let types: Vec<(String, String)> = c
        .query(
            "SELECT column_name::text, udt_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'llm_metrics' ORDER BY ordinal_position",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want = |col: &str, ty: &str| {
        assert!(
            types.iter().any(|(c, t)| c == col && t == ty),
            "column {col} {ty} in {types:?}"
        )
    };
    want("request_id", "uuid");
    want("timestamp", "timestamptz");
    want("tags", "jsonb");
    want("tools_used", "_text");
    want("cost_usd", "numeric");
    want("method", "text");
    want("error_class", "text");
    want("finish_reason", "text");
    want("cache_write_1h_tokens", "int8");
    assert_eq!(types.len(), 26, "a column per AgentMetrics field");
    let indexes: Vec<String> = c
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename = 'llm_metrics'",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(indexes.len(), 5, "{indexes:?}");
    assert!(
        indexes.iter().all(|i| i.starts_with("llm_metrics_")),
        "{indexes:?}"
    );
    let unique: bool = c
        .query_one(
            "SELECT bool_or(indisunique) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass(format('%I.llm_metrics', $1::text)) AND a.attname = 'request_id' AND i.indnatts = 1",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert!(unique, "request_id is unique");
    // Tags are JSON, tools an array: queryable as such.
    let team: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".llm_metrics WHERE tags->>'team' = 'search' AND 'calc,ulator' = ANY(tools_used)"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(team, 20);
    c.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn migrations_run_once_under_concurrent_starts_in_a_custom_table() {
    let Some(url) = url() else { return };
    let _shared = SERVER.read().await;
    let schema = fresh_schema("migrate");
    let table = "My \"Metrics\" Table";
    let sinks: Vec<PostgresSink> = (0..8)
        .map(|_| {
            PostgresSink::builder(&url)
                .schema(&schema)
                .table(table)
                .build()
                .unwrap()
        })
        .collect();
    let results = futures::future::join_all(sinks.iter().map(|s| s.migrate())).await;
    let mut applied: Vec<i32> = results.into_iter().flat_map(|r| r.unwrap()).collect();
    applied.sort_unstable();
    let every: Vec<i32> = steer_sink_postgres::schema::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(applied, every, "each migration applied exactly once");
    let c = admin(&url).await;
    let versions: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".\"My \"\"Metrics\"\" Table_migrations\""),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, every.len() as i64);
    sinks[3].record_batch(&synthetic(10, 1)).await.unwrap();
    let n: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".\"My \"\"Metrics\"\" Table\""),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
    c.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_retried_batch_never_duplicates() {
    let Some(url) = url() else { return };
    let _shared = SERVER.read().await;
    let schema = fresh_schema("retry");
    let sink = sink(&url, &schema);
    let batch = synthetic(2000, 3);
    sink.record_batch(&batch).await.unwrap();
    sink.record_batch(&batch).await.unwrap();
    // A retry that overlaps: half old, half new.
    let more = synthetic(1000, 4);
    let overlap: Vec<AgentMetrics> = batch[1000..].iter().chain(&more).cloned().collect();
    sink.record_batch(&overlap).await.unwrap();
    let c = admin(&url).await;
    assert_eq!(count(&c, &schema).await, (3000, 3000));
    c.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_byte_records_are_rejected_while_their_batch_mates_land() {
    let Some(url) = url() else { return };
    let _shared = SERVER.read().await;
    let schema = fresh_schema("nul");
    let collector = MetricsCollector::builder()
        .sink_with_options(
            sink(&url, &schema),
            SinkOptions::default().batch_size(500).retry(fast_retry()),
        )
        .build()
        .unwrap();
    let mut records = synthetic(1000, 5);
    records[10].model = "gpt\0-4o".into();
    records[500].tags.insert("k".into(), "v\0".into());
    records[999].error_message = Some("\0".into());
    let bad: HashSet<uuid::Uuid> = [10, 500, 999].iter().map(|&i| records[i].request_id).collect();
    for r in records {
        collector.record(r);
    }
    let report = collector.flush().await;
    let s = report.sinks[0].stats.clone();
    assert_eq!(s.delivered, 997, "{s}");
    assert_eq!(s.failed.rejected, 3, "{s}");
    assert_eq!(s.failed.retries_exhausted, 0, "{s}");
    assert_eq!(s.retried, 0, "a rejected record is not retried: {s}");
    let c = admin(&url).await;
    assert_eq!(count(&c, &schema).await, (997, 997));
    let ids: Vec<uuid::Uuid> = bad.into_iter().collect();
    let found: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".llm_metrics WHERE request_id = ANY($1)"),
            &[&ids],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 0);
    c.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

/// `n` records in one collector batch, one of which breaks a CHECK
/// constraint only the database knows (23514); optionally one more holds a
/// NUL byte (rejected before sending). Everything else must land.
async fn refused_record_case(url: &str, n: usize, with_nul: bool) {
    let schema = fresh_schema("check");
    let sink = sink(url, &schema);
    sink.migrate().await.unwrap();
    let c = admin(url).await;
    c.batch_execute(&format!(
        "ALTER TABLE \"{schema}\".llm_metrics ADD CONSTRAINT latency_not_negative CHECK (latency_ms >= 0)"
    ))
    .await
    .unwrap();
    let collector = MetricsCollector::builder()
        .sink_with_options(sink, SinkOptions::default().batch_size(n).retry(fast_retry()))
        .build()
        .unwrap();
    let mut records = synthetic(n, 6);
    records[n / 8].latency_ms = -1.0;
    let mut bad = vec![records[n / 8].request_id];
    if with_nul {
        records[n - 3].provider = "open\0ai".into();
        bad.push(records[n - 3].request_id);
    }
    for r in records {
        collector.record(r);
    }
    let s = collector.flush().await.sinks[0].stats.clone();
    let rejected = bad.len() as u64;
    assert_eq!(
        (s.delivered, s.failed.rejected, s.retried),
        (n as u64 - rejected, rejected, 0),
        "{s}"
    );
    let stored = (n as i64) - rejected as i64;
    assert_eq!(count(&c, &schema).await, (stored, stored));
    let found: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".llm_metrics WHERE request_id = ANY($1)"),
            &[&bad],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 0);
    c.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_server_refuses_is_isolated_by_splitting() {
    let Some(url) = url() else { return };
    let _shared = SERVER.read().await;
    // One transaction per batch.
    refused_record_case(&url, 1000, false).await;
    // A batch written as two concurrent chunks, with an invalid record too.
    refused_record_case(&url, 4000, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_privileges_fail_permanently_without_retrying() {
    let Some(url) = url() else { return };
    let Some(nopriv) = env("STEER_TEST_POSTGRES_NOPRIV_URL") else {
        return;
    };
    let _shared = SERVER.read().await;
    let schema = fresh_schema("nopriv");
    sink(&url, &schema).migrate().await.unwrap();
    let c = admin(&url).await;
    // May see the schema, but not write the table.
    c.batch_execute(&format!("GRANT USAGE ON SCHEMA \"{schema}\" TO steer_nopriv"))
        .await
        .unwrap();

    let denied = sink(&nopriv, &schema);
    let err = denied.record_batch(&synthetic(3, 7)).await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Misconfigured, "{err}");
    assert!(err.message().contains("42501"), "{err}");
    assert!(err.message().contains("permission denied"), "{err}");
    assert_eq!(
        err.records(),
        Some(&[0, 1, 2][..]),
        "the whole batch, no splitting"
    );

    let started = Instant::now();
    let collector = MetricsCollector::builder()
        .sink_with_options(denied, SinkOptions::default().batch_size(100))
        .build()
        .unwrap();
    for r in synthetic(250, 8) {
        collector.record(r);
    }
    let s = collector.flush().await.sinks[0].stats.clone();
    assert_eq!(
        (s.delivered, s.failed.misconfigured, s.failed.rejected, s.retried),
        (0, 250, 0, 0),
        "{s}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not retried: {:?}",
        started.elapsed()
    );
    assert_eq!(count(&c, &schema).await, (0, 0));
    c.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn password_auth_works_and_the_password_never_shows() {
    let Some(url) = url() else { return };
    let Some(pw_url) = env("STEER_TEST_POSTGRES_PASSWORD_URL") else {
        return;
    };
    let Some(password) = env("STEER_TEST_POSTGRES_PASSWORD") else {
        return;
    };
    let _shared = SERVER.read().await;
    let schema = fresh_schema("password");
    let sink = sink(&pw_url, &schema);
    assert!(!format!("{sink:?}").contains(&password));
    assert!(!format!("{:?}", sink.store()).contains(&password));
    assert!(format!("{sink:?}").contains("steer_pw:***@"));
    sink.record_batch(&synthetic(10, 9)).await.unwrap();
    assert_eq!(sink.store().count(None).await.unwrap(), 10);

    // The password given to the builder instead of in the URL.
    let no_pw_url = pw_url.replace(&format!(":{password}@"), "@");
    assert!(!no_pw_url.contains(&password));
    let builder_pw = PostgresSink::builder(&no_pw_url)
        .schema(&schema)
        .password(password.clone())
        .build()
        .unwrap();
    assert!(!format!("{builder_pw:?}").contains(&password));
    builder_pw.record_batch(&synthetic(5, 16)).await.unwrap();
    assert_eq!(sink.store().count(None).await.unwrap(), 15);

    let wrong = pw_url.replace(&password, "not-the-password");
    let bad_sink = PostgresSink::builder(&wrong).schema(&schema).build().unwrap();
    let err = bad_sink.record_batch(&synthetic(2, 10)).await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Misconfigured, "{err}");
    assert!(err.message().contains("28P01"), "{err}");
    let shown = format!("{err} {err:?} {bad_sink:?}");
    assert!(
        !shown.contains("not-the-password") && !shown.contains(&password),
        "{shown}"
    );
    let err = PostgresStore::connect(&wrong).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("not-the-password"), "{shown}");
    assert!(!err.is_retryable());
    admin(&url)
        .await
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_connections_are_encrypted_and_verified() {
    let Some(url) = url() else { return };
    let Some(ca) = env("STEER_TEST_POSTGRES_TLS_CA") else {
        return;
    };
    let _shared = SERVER.read().await;
    let schema = fresh_schema("tls");
    let app = format!("steer_tls_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let tls_url = format!(
        "{}&application_name={app}",
        url.replace("sslmode=disable", "sslmode=require")
    );
    assert!(tls_url.contains("sslmode=require"));
    let sink = PostgresSink::builder(&tls_url)
        .schema(&schema)
        .ca_cert_pem(std::fs::read(&ca).unwrap())
        .build()
        .unwrap();
    sink.record_batch(&synthetic(10, 11)).await.unwrap();
    let c = admin(&url).await;
    let row = c
        .query_one(
            "SELECT count(*), bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i64>(0) >= 1);
    assert_eq!(row.get::<_, Option<bool>>(1), Some(true));
    // Without our CA the server's certificate is not trusted.
    let untrusted = PostgresSink::builder(&tls_url).schema(&schema).build().unwrap();
    let err = untrusted.store().ping().await.unwrap_err();
    assert!(
        !err.is_retryable(),
        "an untrusted certificate is a permanent error: {err}"
    );
    c.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

fn close(a: f64, b: f64, what: &str) {
    let tol = 1e-9 * a.abs().max(b.abs()).max(1e-12);
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
}

fn same_distribution(a: Option<Distribution>, b: Option<Distribution>, what: &str) {
    match (a, b) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            assert_eq!(a.count, b.count, "{what} count");
            close(a.mean, b.mean, &format!("{what} mean"));
            close(a.min, b.min, &format!("{what} min"));
            close(a.max, b.max, &format!("{what} max"));
            close(a.p50, b.p50, &format!("{what} p50"));
            close(a.p95, b.p95, &format!("{what} p95"));
            close(a.p99, b.p99, &format!("{what} p99"));
        }
        (a, b) => panic!("{what}: {a:?} vs {b:?}"),
    }
}

fn same_summary(db: &Summary, mem: &Summary, what: &str) {
    assert_eq!(db.count, mem.count, "{what} count");
    assert_eq!(db.errors, mem.errors, "{what} errors");
    close(db.error_rate, mem.error_rate, &format!("{what} error_rate"));
    assert_eq!(
        (
            db.input_tokens,
            db.output_tokens,
            db.cached_tokens,
            db.retries,
            db.cost_unknown
        ),
        (
            mem.input_tokens,
            mem.output_tokens,
            mem.cached_tokens,
            mem.retries,
            mem.cost_unknown
        ),
        "{what} sums"
    );
    close(db.cost_usd, mem.cost_usd, &format!("{what} cost"));
    same_distribution(db.latency_ms, mem.latency_ms, &format!("{what} latency"));
    same_distribution(db.ttft_ms, mem.ttft_ms, &format!("{what} ttft"));
}

#[tokio::test]
async fn summaries_equal_the_in_memory_summary() {
    let Some(url) = url() else { return };
    let _shared = SERVER.read().await;
    let schema = fresh_schema("summary");
    let sink = sink(&url, &schema);
    let store = sink.store();
    // Empty table: defined, zero.
    sink.migrate().await.unwrap();
    let total = |q: StatsQuery| {
        let store = store.clone();
        async move { SummaryStore::summary(&store, &q).await.unwrap() }
    };
    let empty = total(StatsQuery::new()).await.total;
    assert_eq!(empty.count, 0);
    assert!(empty.latency_ms.is_none());
    assert!(total(StatsQuery::new().by(GroupKey::Model))
        .await
        .groups
        .is_empty());

    let mut records = synthetic(20_000, 12);
    for m in &mut records {
        m.timestamp = micros(m.timestamp);
    }
    for chunk in records.chunks(5000) {
        sink.record_batch(chunk).await.unwrap();
    }
    same_summary(
        &total(StatsQuery::new()).await.total,
        &Summary::from_records(&records),
        "all",
    );
    same_summary(
        &total(StatsQuery::new().last(Duration::from_secs(3600)))
            .await
            .total,
        &Summary::from_records(&records),
        "last hour",
    );
    for by in [GroupKey::Model, GroupKey::Provider, GroupKey::Error] {
        let q = StatsQuery::new().by(by.clone());
        let db = total(q.clone()).await.groups;
        let mem = summarize(&records, &q).unwrap().groups;
        assert_eq!(
            db.keys().collect::<Vec<_>>(),
            mem.keys().collect::<Vec<_>>(),
            "{by:?}"
        );
        for (k, v) in &mem {
            same_summary(&db[k], v, &format!("{by:?}={k}"));
        }
    }
    // A window.
    let since = records[12_345].timestamp;
    let inside: Vec<&AgentMetrics> = records.iter().filter(|m| m.timestamp >= since).collect();
    same_summary(
        &total(StatsQuery::new().since(since)).await.total,
        &Summary::from_records(inside.iter().copied()),
        "window",
    );
    let q = StatsQuery::new().since(since).by(GroupKey::Provider);
    let db = total(q.clone()).await.groups;
    let mem = summarize(inside.iter().copied(), &q).unwrap().groups;
    for (k, v) in &mem {
        same_summary(&db[k], v, &format!("window provider={k}"));
    }
    let future = StatsQuery::new().since(Utc::now() + chrono::Duration::hours(1));
    assert_eq!(total(future).await.total.count, 0);
    admin(&url)
        .await
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_at_start_then_everything_is_delivered_with_bounded_memory() {
    let Some(url) = url() else { return };
    let Some(mut server) = ServerControl::from_env() else {
        return;
    };
    let _exclusive = SERVER.write().await;
    let schema = fresh_schema("down");
    server.stop();

    // The sink builds and the collector starts with the database down.
    let collector = MetricsCollector::builder()
        .sink_with_options(
            sink(&url, &schema),
            SinkOptions::default()
                .batch_size(1000)
                .queue_capacity(10_000)
                .retry(fast_retry()),
        )
        .build()
        .unwrap();
    let first = synthetic(5000, 13);
    let first_ids: Vec<uuid::Uuid> = first.iter().map(|m| m.request_id).collect();
    for r in first {
        collector.record(r);
    }
    wait_until("a failed attempt", 20, || collector.stats().sinks[0].retried > 0).await;
    // While down, memory is bounded by the queue: the excess is dropped and counted.
    for r in synthetic(20_000, 14) {
        collector.record(r);
    }
    let s = collector.stats().sinks[0].clone();
    assert!(s.queue_depth <= 10_000, "{s}");
    assert!(s.dropped.queue_full >= 10_000, "{s}");
    assert_eq!(s.delivered, 0);

    server.start();
    let report = collector.flush().await;
    let s = report.sinks[0].stats.clone();
    assert!(report.is_complete(), "{report}");
    assert_eq!(s.failed.total(), 0, "{s}");
    assert_eq!(s.delivered + s.dropped.total(), 25_000, "{s}");
    let c = admin(&url).await;
    let (n, distinct) = count(&c, &schema).await;
    assert_eq!((n as u64, distinct as u64), (s.delivered, s.delivered));
    let first_found: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".llm_metrics WHERE request_id = ANY($1)"),
            &[&first_ids],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        first_found, 5000,
        "everything recorded while down and queued is delivered"
    );
    c.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_run_loses_and_duplicates_nothing() {
    let Some(url) = url() else { return };
    let Some(mut server) = ServerControl::from_env() else {
        return;
    };
    let _exclusive = SERVER.write().await;
    let schema = fresh_schema("restart");
    let sink = sink(&url, &schema);
    sink.migrate().await.unwrap();
    let collector = MetricsCollector::builder()
        .sink_with_options(
            sink,
            SinkOptions::default()
                .batch_size(5000)
                .queue_capacity(200_000)
                .retry(fast_retry()),
        )
        .build()
        .unwrap();
    let records = synthetic(100_000, 15);
    let mut restarted = false;
    for (i, chunk) in records.chunks(10_000).enumerate() {
        for r in chunk {
            collector.record(r.clone());
        }
        if i == 2 {
            wait_until("some deliveries", 60, || {
                collector.stats().sinks[0].delivered >= 10_000
            })
            .await;
            server.stop();
            tokio::time::sleep(Duration::from_millis(300)).await;
            server.start();
            restarted = true;
        }
    }
    assert!(restarted);
    let report = collector.flush().await;
    let s = report.sinks[0].stats.clone();
    assert!(report.is_complete(), "{report}");
    assert_eq!((s.delivered, s.lost()), (100_000, 0), "{s}");
    assert!(s.retried > 0, "the restart interrupted deliveries: {s}");
    let c = admin(&url).await;
    assert_eq!(count(&c, &schema).await, (100_000, 100_000));
    c.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn costs_are_sent_as_exact_numerics() {
    let Some(url) = url() else { return };
    let _shared = SERVER.read().await;
    let c = admin(&url).await;
    let stmt = c
        .prepare("SELECT $1::numeric::float8, $1::numeric::text")
        .await
        .unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut values = vec![
        0.0,
        -0.0,
        1.0,
        -2.5,
        0.1,
        0.012_345_678_9,
        1e-9,
        123_456.789,
        1e20,
        1e300,
        -1e-300,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        9_999.999_9,
        10_000.0,
    ];
    for _ in 0..2000 {
        // xorshift: arbitrary finite bit patterns
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let v = f64::from_bits(rng);
        if v.is_finite() {
            values.push(v);
        }
    }
    for v in values {
        let row = c
            .query_one(&stmt, &[&steer_sink_postgres::encode::Numeric(v)])
            .await
            .unwrap_or_else(|e| panic!("{v:e}: {e}"));
        let back: f64 = row.get(0);
        assert_eq!(back, v, "{v:e} came back as {back:e}");
        let text: String = row.get(1);
        let want = format!("{}", if v == 0.0 { 0.0 } else { v });
        assert_eq!(text, want);
    }
}
