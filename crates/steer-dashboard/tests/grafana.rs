//! Every query of every panel of the Grafana dashboards in `dashboards/`
//! runs against the real backend, filled by `steer demo --sink ...`, and
//! returns the expected series: one per model the demo called (calls,
//! latency and cost by model), error classes only (errors), the fixed
//! percentile and token series, and a table row per model.
//!
//! Grafana's macros are expanded the way Grafana does
//! (`$__timeFilter`, `$__timeGroupAlias`, `$timeFilter`, `$__interval`,
//! `$__rate_interval`, `$__range`). Backends come from scripts/test.sh
//! (`STEER_TEST_POSTGRES_URL`, `STEER_TEST_INFLUXDB_URL`,
//! `STEER_TEST_PROMETHEUS_BIN`); under `STEER_REQUIRE_SERVICES=1` a
//! missing one fails the test.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use steer_metrics::query::{GroupKey, StatsQuery, SummaryStore};
use steer_sink_sqlite::SqliteSummaryStore;

fn env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var_os("STEER_REQUIRE_SERVICES").is_none() && std::env::var_os("CI").is_none(),
                "{var} is not set: scripts/test.sh starts the backend (scripts/services/)"
            );
            eprintln!("SKIPPED: set {var} to check the Grafana dashboard against it");
            None
        }
    }
}

fn dashboard(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../dashboards")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(panel description id, targets)` of every panel.
fn panels(d: &Value) -> Vec<(String, Vec<Value>)> {
    d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let id = p["description"]
                .as_str()
                .unwrap()
                .split('`')
                .nth(1)
                .unwrap()
                .to_string();
            (id, p["targets"].as_array().unwrap().clone())
        })
        .collect()
}

/// The `steer` binary: `STEER_BIN`, else the workspace's debug build
/// (brought up to date here once; under `cargo test --workspace` it is
/// already built).
fn steer_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("STEER_BIN") {
            return PathBuf::from(p);
        }
        let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../debug/steer");
        let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-q", "-p", "steer-cli", "--bin", "steer"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            bin.is_file(),
            "no steer binary at {} (build failed: {})",
            bin.display(),
            !built
        );
        if !built {
            eprintln!(
                "warning: building steer failed; using the existing {}",
                bin.display()
            );
        }
        bin
    })
    .clone()
}

/// Run `steer demo` into a fresh SQLite store plus `sink`; returns the
/// models it called (from the SQLite store, which got the same records).
fn demo(dir: &Path, sink: &str, extra: &[&str]) -> BTreeSet<String> {
    let db = dir.join("demo.db");
    let out = Command::new(steer_bin())
        .args(["demo", "--requests", "300", "--quiet", "--seed", "7", "--db"])
        .arg(&db)
        .args(["--sink", sink])
        .args(extra)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "steer demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store = SqliteSummaryStore::open(&db).unwrap();
    let r = rt
        .block_on(store.summary(&StatsQuery::new().by(GroupKey::Model)))
        .unwrap();
    assert_eq!(r.total.count, 300);
    r.groups.keys().cloned().collect()
}

fn error_classes() -> BTreeSet<String> {
    steer_metrics::ErrorClass::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// What each panel must show.
fn check(backend: &str, panel: &str, series: &BTreeSet<String>, models: &BTreeSet<String>) {
    let what = format!("{backend} panel {panel}: {series:?}");
    match panel {
        "calls" | "latency_by" | "cost" | "top" => assert_eq!(series, models, "{what}"),
        "errors" => {
            assert!(!series.is_empty(), "{what}: the demo's faults give errors");
            assert!(series.is_subset(&error_classes()), "{what}");
        }
        "latency" => assert_eq!(series, &set(&["p50", "p95", "p99"]), "{what}"),
        "ttft" => assert_eq!(series, &set(&["p50", "p95"]), "{what}"),
        "tokens" if backend == "prometheus" => assert_eq!(series, &set(&["input", "output"]), "{what}"),
        "tokens" => assert_eq!(
            series,
            &set(&["input", "output", "cached", "reasoning"]),
            "{what}"
        ),
        other => panic!("no expectation for panel {other}"),
    }
}

// ---------------------------------------------------------------- PostgreSQL

fn pg_expand(sql: &str) -> String {
    sql.replace(
        "$__timeGroupAlias(\"timestamp\", $__interval, 0)",
        "to_timestamp(floor(extract(epoch FROM \"timestamp\") / 60) * 60) AS \"time\"",
    )
    .replace(
        "$__timeFilter(\"timestamp\")",
        "\"timestamp\" BETWEEN now() - interval '1 hour' AND now() + interval '1 minute'",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dashboard_queries_return_the_demo_series() {
    let Some(url) = env("STEER_TEST_POSTGRES_URL") else {
        return;
    };
    // A database of its own: the dashboard reads public.llm_metrics.
    let name = format!("grafana_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, query) = url.split_once('?').map_or((url.as_str(), ""), |(b, q)| (b, q));
    let db_url = format!("{}/{name}?{query}", &base[..base.rfind('/').unwrap()]);

    let dir = tempfile::tempdir().unwrap();
    let models = tokio::task::block_in_place(|| demo(dir.path(), &db_url, &[]));
    let (c, conn) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let d = dashboard("steer-postgres.json");
    for (panel, targets) in panels(&d) {
        for t in targets {
            let sql = pg_expand(t["rawSql"].as_str().unwrap());
            assert!(!sql.contains('$'), "unexpanded macro in {sql}");
            let rows = c
                .query(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{panel}: {e}\n{sql}"));
            assert!(!rows.is_empty(), "{panel}: no rows");
            let cols: Vec<String> = rows[0].columns().iter().map(|c| c.name().to_string()).collect();
            let series: BTreeSet<String> = match t["format"].as_str().unwrap() {
                "table" => rows.iter().map(|r| r.get::<_, String>(0)).collect(),
                _ if cols.contains(&"metric".to_string()) => {
                    rows.iter().map(|r| r.get::<_, String>("metric")).collect()
                }
                _ => cols.into_iter().filter(|c| c != "time").collect(),
            };
            check("postgres", &panel, &series, &models);
        }
    }
    drop(c);
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

// ---------------------------------------------------------------- InfluxDB

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_dashboard_queries_return_the_demo_series() {
    let Some(base) = env("STEER_TEST_INFLUXDB_URL") else {
        return;
    };
    let db = format!("grafana_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let http = reqwest::Client::new();
    let q = |db: Option<&str>, q: String| {
        let mut params = vec![("q", q), ("epoch", "s".to_string())];
        if let Some(db) = db {
            params.push(("db", db.to_string()));
        }
        http.post(format!("{base}/query")).form(&params).send()
    };
    assert!(q(None, format!("CREATE DATABASE {db}"))
        .await
        .unwrap()
        .status()
        .is_success());
    let hostport = base.trim_start_matches("http://");
    let dir = tempfile::tempdir().unwrap();
    let models =
        tokio::task::block_in_place(|| demo(dir.path(), &format!("influxdb://{hostport}/{db}"), &[]));
    let d = dashboard("steer-influxdb.json");
    for (panel, targets) in panels(&d) {
        let mut series = BTreeSet::new();
        for t in &targets {
            let query = t["query"]
                .as_str()
                .unwrap()
                .replace("$timeFilter", "time > now() - 1h")
                .replace("$__interval", "1m");
            let body: Value = q(Some(&db), query.clone()).await.unwrap().json().await.unwrap();
            let result = &body["results"][0];
            assert!(result.get("error").is_none(), "{panel}: {result}\n{query}");
            let got = result["series"]
                .as_array()
                .unwrap_or_else(|| panic!("{panel}: no series\n{query}"));
            if t["refId"] == "B" {
                // the table's errors column: only models with errors
                continue;
            }
            let alias = t["alias"].as_str().unwrap_or("");
            for s in got {
                let tags = s.get("tags");
                match (alias.strip_prefix("$tag_"), tags) {
                    (Some(tag), Some(tags)) => {
                        series.insert(tags[tag].as_str().unwrap().to_string());
                    }
                    _ if t["resultFormat"] == "table" => {
                        series.insert(tags.unwrap()["model"].as_str().unwrap().to_string());
                    }
                    _ => {
                        for c in s["columns"].as_array().unwrap().iter().skip(1) {
                            series.insert(c.as_str().unwrap().to_string());
                        }
                    }
                }
            }
        }
        check("influxdb", &panel, &series, &models);
    }
    let _ = q(None, format!("DROP DATABASE {db}")).await;
}

// ---------------------------------------------------------------- Prometheus

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_dashboard_queries_return_the_demo_series() {
    let Some(bin) = env("STEER_TEST_PROMETHEUS_BIN") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (exporter, web) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: steer\n    static_configs:\n      - targets: ['127.0.0.1:{exporter}']\n"
        ),
    )
    .unwrap();
    let _prom = Kill(
        Command::new(&bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{web}");
    let start = Instant::now();
    while !http
        .get(format!("{api}/-/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "prometheus did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Slow enough calls (about 8 s in all) that the exporter is scraped
    // several times while the demo runs: `increase()` needs two samples.
    let begin = chrono::Utc::now();
    let models = tokio::task::block_in_place(|| {
        demo(
            dir.path(),
            &format!("prometheus:127.0.0.1:{exporter}"),
            &["--latency-scale", "1", "--concurrency", "12"],
        )
    });
    let end = chrono::Utc::now();
    let d = dashboard("steer-prometheus.json");
    let range_secs = (end - begin).num_seconds().max(1) + 5;
    // Grafana's `$__rate_interval` is at least four scrapes; on a loaded
    // machine scrapes come late, so the test takes the whole run as the
    // window: every evaluation then sees the demo's samples.
    let expand = |e: &str| {
        e.replace("$__rate_interval", &format!("{range_secs}s"))
            .replace("$__range", &format!("{range_secs}s"))
    };
    // Wait until the demo's scrapes are queryable. (The exporter stops
    // with the demo, so Prometheus marks its series stale afterwards:
    // query at the demo's end, as a dashboard over that time would.)
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = http
            .get(format!("{api}/api/v1/query"))
            .query(&[
                ("query", "sum(steer_llm_requests_total)".to_string()),
                ("time", end.timestamp().to_string()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let seen: f64 = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        if seen >= 150.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not see the demo's calls: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let at = end;
    for (panel, targets) in panels(&d) {
        let mut series = BTreeSet::new();
        for t in &targets {
            let expr = expand(t["expr"].as_str().unwrap());
            let instant = t["instant"].as_bool().unwrap_or(false);
            let resp = if instant {
                http.get(format!("{api}/api/v1/query"))
                    .query(&[("query", expr.clone()), ("time", at.timestamp().to_string())])
            } else {
                http.get(format!("{api}/api/v1/query_range")).query(&[
                    ("query", expr.clone()),
                    ("start", begin.timestamp().to_string()),
                    ("end", at.timestamp().to_string()),
                    ("step", "2".to_string()),
                ])
            };
            let v: Value = resp.send().await.unwrap().json().await.unwrap();
            assert_eq!(v["status"], "success", "{panel}: {v}\n{expr}");
            let result = v["data"]["result"].as_array().unwrap();
            assert!(!result.is_empty(), "{panel}: no series\n{expr}");
            let legend = t["legendFormat"].as_str().unwrap();
            for s in result {
                let name = if let Some(label) = legend.strip_prefix("{{").and_then(|l| l.strip_suffix("}}")) {
                    s["metric"][label].as_str().unwrap().to_string()
                } else if instant {
                    s["metric"]["gen_ai_request_model"].as_str().unwrap().to_string()
                } else {
                    legend.to_string()
                };
                if panel == "top" && t["refId"] != "A" {
                    continue; // errors / p95 / cost columns: the calls column names the rows
                }
                series.insert(name);
            }
        }
        check("prometheus", &panel, &series, &models);
    }
}
