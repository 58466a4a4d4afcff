//! The page in a real browser: Debian's `chromium`, driven over WebDriver
//! by `chromedriver` (package `chromium-driver`; scripts/test.sh installs
//! both through scripts/services/chromium.sh).
//!
//! Loads the dashboard over a store of recent calls, waits for the charts,
//! checks what they show (series names, point counts, the groups table),
//! clicks a group to filter, checks the page follows new calls written
//! while it is open (live refresh), and saves screenshots under
//! `$CARGO_TARGET_TMPDIR/dashboard/`.
//!
//! Without chromium/chromedriver the test fails under
//! `STEER_REQUIRE_SERVICES=1` (or `CI`), and is skipped with a message
//! otherwise.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use steer_metrics::query::SummaryStore;
use steer_metrics::MetricsSink;
use steer_sink_sqlite::{SqliteSink, SqliteSummaryStore};

fn tool(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    let chromium = tool("STEER_TEST_CHROMIUM", &["chromium", "chromium-browser"]);
    let driver = tool("STEER_TEST_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            assert!(
                std::env::var_os("STEER_REQUIRE_SERVICES").is_none() && std::env::var_os("CI").is_none(),
                "chromium and chromedriver are needed: apt-get install chromium chromium-driver (scripts/test.sh does)"
            );
            eprintln!("SKIPPED: install chromium and chromium-driver to run the browser test");
            None
        }
    }
}

/// Kills the child on drop (by its PID, never by name).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Ends the WebDriver session on drop — also when an assertion fails —
/// so chromedriver stops the browser it started (then `Proc` stops
/// chromedriver).
struct Session {
    port: u16,
    id: String,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = std::io::Write::write_all(
                &mut s,
                format!(
                    "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                    self.id, self.port
                )
                .as_bytes(),
            );
            let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal W3C WebDriver client.
struct Driver {
    http: reqwest::Client,
    base: String,
}

impl Driver {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req.send().await.unwrap().json().await.unwrap();
        // A WebDriver error: {"error": "<code>", "message": ..., "stacktrace": ...}
        // (the page's own state has an `error` field too, null when fine).
        if let (Some(err), Some(_)) = (
            resp["value"].get("error").and_then(Value::as_str),
            resp["value"].get("stacktrace"),
        ) {
            panic!("webdriver {path}: {err} {}", resp["value"]["message"]);
        }
        resp["value"].clone()
    }
    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn js(&self, session: &str, script: &str) -> Value {
        self.post(
            &format!("/session/{session}/execute/sync"),
            json!({"script": script, "args": []}),
        )
        .await
    }
    async fn wait_js(&self, session: &str, script: &str, what: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(session, script).await;
            if !v.is_null() && v != json!(false) {
                return v;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; page state: {}",
                self.js(session, "return JSON.stringify(window.steerDashboard || null)")
                    .await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    async fn screenshot(&self, session: &str, to: &Path) {
        let b64 = self
            .call(
                reqwest::Method::GET,
                &format!("/session/{session}/screenshot"),
                None,
            )
            .await;
        let png = base64_decode(b64.as_str().unwrap());
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, png).unwrap();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk.iter().fold(0u32, |acc, &c| (acc << 6) | val(c)) << (6 * (4 - chunk.len()));
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    out
}

async fn write(path: &Path, n: usize, span: Duration, seed: u64) {
    let sink = SqliteSink::open(path).unwrap();
    let recs = steer_dashboard::sample::history(n, span, chrono::Utc::now(), seed);
    sink.record_batch(&recs).await.unwrap();
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_store_filters_on_click_and_follows_new_calls() {
    let Some((chromium, chromedriver)) = tools() else {
        return;
    };
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    write(&db, 3000, Duration::from_secs(3500), 3).await;
    // One call of a model seen once: a value with no neighbour, drawn as a
    // marker (there is no line to draw).
    {
        let mut solo = steer_metrics::AgentMetrics::new("openai", "solo-model");
        solo.timestamp = chrono::Utc::now() - chrono::Duration::minutes(30);
        solo.latency_ms = 5000.0;
        let sink = SqliteSink::open(&db).unwrap();
        sink.record_batch(&[solo]).await.unwrap();
        sink.close().await.unwrap();
    }

    // The dashboard over the store.
    // As `steer dashboard` opens it: with the incrementally refreshed copy.
    let store: Arc<dyn SummaryStore> = Arc::new(SqliteSummaryStore::open(&db).unwrap().cached(true));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(steer_dashboard::serve(listener, store.clone(), async {
        let _ = stop_rx.await;
    }));

    // chromedriver, then a headless chromium session with a fresh profile.
    let port = free_port();
    let _driver_proc = Proc(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let wd = Driver {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let start = Instant::now();
    while wd.http.get(format!("{}/status", wd.base)).send().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let profile = tempfile::tempdir().unwrap();
    let session = wd
        .post(
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--no-first-run", "--window-size=1400,1500", "--force-device-scale-factor=1",
                        format!("--user-data-dir={}", profile.path().display()),
                    ]
                }
            }}}),
        )
        .await;
    let sid = session["sessionId"].as_str().unwrap().to_string();
    let _session = Session {
        port,
        id: sid.clone(),
    };

    wd.post(
        &format!("/session/{sid}/url"),
        json!({"url": format!("http://{addr}/#since=1h&by=model")}),
    )
    .await;
    wd.wait_js(
        &sid,
        "return window.steerDashboard && window.steerDashboard.ready && window.steerDashboard.refreshes >= 1",
        "the first render",
        Duration::from_secs(20),
    )
    .await;
    let state = wd.js(&sid, "return window.steerDashboard").await;
    assert_eq!(state["error"], Value::Null);

    // What the charts show: one series per model (the store's groups), one
    // point per 30 s step of the hour (auto step), the fixed series of the
    // latency / TTFT / token charts, and drawn canvases.
    let direct = store
        .summary(
            &steer_metrics::StatsQuery::new()
                .last(Duration::from_secs(3600))
                .by(steer_metrics::GroupKey::Model),
        )
        .await
        .unwrap();
    let mut models: Vec<&str> = direct.groups.keys().map(String::as_str).collect();
    models.sort_unstable();
    let charts = &state["charts"];
    let mut calls: Vec<&str> = charts["calls"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    calls.sort_unstable();
    assert_eq!(calls, models);
    let points = charts["calls"]["points"].as_u64().unwrap();
    assert!((120..=121).contains(&points), "{points} points for 1h at 30s");
    assert_eq!(charts["latency"]["series"], json!(["p50", "p95", "p99"]));
    assert_eq!(charts["ttft"]["series"], json!(["p50", "p95"]));
    assert_eq!(
        charts["tokens"]["series"],
        json!(["input", "output", "cached", "reasoning"])
    );
    let classes: Vec<String> = serde_json::from_value(charts["errors"]["series"].clone()).unwrap();
    assert!(classes.iter().any(|c| c == "rate_limit"), "{classes:?}");
    assert!(
        !classes.iter().any(|c| c == "none"),
        "successes are not an error class"
    );
    for id in [
        "calls",
        "errors",
        "latency",
        "latency_by",
        "ttft",
        "tokens",
        "cost",
    ] {
        assert_eq!(charts[id]["points"].as_u64(), Some(points), "{id}");
        let canvases = wd
            .js(
                &sid,
                &format!("return document.querySelectorAll('#chart-{id} canvas').length"),
            )
            .await;
        assert_eq!(canvases, json!(1), "{id} drawn");
    }
    // The lone call's p95 is a marker, in its series' colour, on the canvas.
    let markers = wd
        .js(&sid, "return window.steerDashboard.markers.latency_by")
        .await;
    let solo = markers
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["series"] == "solo-model")
        .unwrap_or_else(|| panic!("no marker for the lone call: {markers}"));
    let (x, y) = (solo["x"].as_f64().unwrap(), solo["y"].as_f64().unwrap());
    let pixel = wd
        .js(
            &sid,
            &format!(
                "const d = document.querySelector('#chart-latency_by canvas').getContext('2d')\
                 .getImageData({}, {}, 1, 1).data; return [d[0], d[1], d[2], d[3]]",
                x.round(),
                y.round()
            ),
        )
        .await;
    let hex = solo["color"].as_str().unwrap().trim_start_matches('#');
    let want: Vec<u64> = (0..3)
        .map(|i| u64::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .chain([255])
        .collect();
    assert_eq!(pixel, json!(want), "the marker at ({x}, {y}) of {solo}");
    let kpi = wd
        .js(&sid, "return document.querySelector('#kpis .kpi .v').textContent")
        .await;
    assert_eq!(kpi.as_str().unwrap(), "3,001", "calls with a thousands separator");
    // Units on the y axes (drawn on the canvas by uPlot).
    assert_eq!(charts["latency"]["unit"], "ms");
    assert_eq!(charts["calls"]["unit"], "calls / 30s");
    assert_eq!(charts["cost"]["unit"], "USD / 30s");
    assert_eq!(charts["tokens"]["unit"], "tokens / 30s");
    let rows = wd.js(&sid, "return window.steerDashboard.groups").await;
    assert_eq!(rows.as_array().unwrap().len(), models.len());
    wd.screenshot(&sid, &out.join("overview.png")).await;

    // Click the first group of the table: everything filters to it.
    let target = rows[0].as_str().unwrap().to_string();
    let el = wd
        .post(
            &format!("/session/{sid}/element"),
            json!({"using": "css selector", "value": format!("#groups tbody tr[data-group='{target}']")}),
        )
        .await;
    let eid = el
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    wd.post(&format!("/session/{sid}/element/{eid}/click"), json!({}))
        .await;
    wd.wait_js(
        &sid,
        "return window.steerDashboard.groups.length === 1 && window.steerDashboard.charts.calls.series.length === 1",
        "the filtered view",
        Duration::from_secs(10),
    )
    .await;
    let state = wd.js(&sid, "return window.steerDashboard").await;
    assert_eq!(state["groups"], json!([target.clone()]));
    assert_eq!(state["charts"]["calls"]["series"], json!([target.clone()]));
    let chip = wd
        .js(
            &sid,
            "return document.querySelector('#filters .chip').dataset.filter",
        )
        .await;
    assert_eq!(chip, json!(format!("model={target}")));
    let hash = wd.js(&sid, "return location.hash").await;
    assert!(hash.as_str().unwrap().contains("filter=model"), "{hash}");
    wd.screenshot(&sid, &out.join("filtered.png")).await;

    // Live: calls written now appear without a reload (refresh every 5 s).
    wd.post(
        &format!("/session/{sid}/url"),
        json!({"url": format!("http://{addr}/#since=1h&by=provider")}),
    )
    .await;
    let before = wd
        .wait_js(
            &sid,
            "return window.steerDashboard.ready && location.hash.includes('provider') && window.steerDashboard.groups.length === 4 && document.querySelector('#kpis .kpi .v').textContent",
            "the provider view",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(before, json!("3,001"));
    write(&db, 500, Duration::from_secs(60), 4).await;
    wd.wait_js(
        &sid,
        "return document.querySelector('#kpis .kpi .v').textContent === '3,501'",
        "the live refresh to show the new calls",
        Duration::from_secs(15),
    )
    .await;

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    eprintln!("screenshots in {}", out.display());
}
