//! Issue 18, "honest under failure", against the real binary: nothing
//! silently lost, every exit code true, no secret printed, limits enforced.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

fn cmd(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_steer"));
    c.args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("INFLUX_TOKEN")
        .env_remove("DD_API_KEY");
    c
}

fn steer(args: &[&str], cwd: &Path) -> Output {
    cmd(args, cwd).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// An HTTP server answering every request with `status` and `body`,
/// counting requests.
fn http_server(status: u16, body: &'static str) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let h = h.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = Vec::new();
                let mut buf = [0u8; 16384];
                let (start, len) = loop {
                    let Ok(n) = conn.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, len);
                    }
                };
                while req.len() < start + len {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, SeqCst);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (format!("127.0.0.1:{}", addr.port()), hits)
}

// ---------------------------------------------------------------- data loss

#[cfg(target_os = "linux")]
#[test]
fn jsonl_on_a_full_device_is_not_delivered_and_exits_6() {
    let dir = tempfile::tempdir().unwrap();
    let o = steer(
        &[
            "demo",
            "--requests",
            "5",
            "--latency-scale",
            "0",
            "--db",
            "x.db",
            "--sink",
            "jsonl:/dev/full",
            "--quiet",
        ],
        dir.path(),
    );
    let t = text(&o);
    assert_eq!(code(&o), 6, "{t}");
    let line = t.lines().find(|l| l.contains("jsonl:/dev/full")).unwrap();
    assert!(
        line.contains("NOT DELIVERED") && line.contains("delivered 0 of 5"),
        "{t}"
    );
    assert!(t.contains("No space left on device"), "the report says why:\n{t}");
}

#[test]
fn jsonl_repairs_a_torn_tail_before_appending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.jsonl");
    std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"request_id\":\"torn").unwrap();
    let o = steer(
        &[
            "demo",
            "--requests",
            "30",
            "--latency-scale",
            "0",
            "--db",
            "x.db",
            "--sink",
            "jsonl:calls.jsonl",
            "--quiet",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let content = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines.len(), 2 + 30, "{content}");
    for l in &lines {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    assert!(content.ends_with('\n'));
}

#[test]
fn jsonl_into_a_missing_directory_fails_at_setup() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let o = steer(
        &[
            "demo",
            "--requests",
            "5",
            "--db",
            "x.db",
            "--sink",
            "jsonl:no/such/dir/x.jsonl",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 4, "{}", text(&o));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "found at setup, not after retries"
    );
    assert!(text(&o).contains("does not exist"), "{}", text(&o));
}

#[test]
fn empty_db_in_the_config_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("steer.toml"), "db = \"\"\n").unwrap();
    let o = steer(&["demo", "--requests", "5", "--latency-scale", "0"], dir.path());
    assert_eq!(code(&o), 7, "{}", text(&o));
    assert!(text(&o).contains("`db` is empty"), "{}", text(&o));
    let o = steer(&["demo", "--requests", "5", "--db", ""], dir.path());
    assert_ne!(code(&o), 0, "{}", text(&o));
}

#[test]
fn another_applications_sqlite_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other-app.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers (name) VALUES ('a');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let o = steer(
        &[
            "demo",
            "--requests",
            "5",
            "--latency-scale",
            "0",
            "--db",
            "other-app.db",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 4, "{}", text(&o));
    assert!(text(&o).contains("not created by steer"), "{}", text(&o));
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file was modified");
    let c = rusqlite::Connection::open(&path).unwrap();
    let app: i64 = c.query_row("PRAGMA application_id", [], |r| r.get(0)).unwrap();
    assert_eq!(app, 0);
}

// ---------------------------------------------------------------- signals

#[cfg(unix)]
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

#[cfg(unix)]
fn wait_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(unix)]
fn demo_interrupted_by(sig: &str, want: i32) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = cmd(
        &[
            "demo",
            "--requests",
            "100000",
            "--concurrency",
            "16",
            "--latency-scale",
            "0.5",
            "--db",
            "x.db",
            "--sink",
            "jsonl:calls.jsonl",
            "--format",
            "json",
        ],
        dir.path(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    signal(child.id(), sig);
    let status = wait_timeout(&mut child, Duration::from_secs(40));
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(want), "{out}\n{err}");
    // The report was printed, and says every record recorded was delivered.
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let sinks = report["delivery"]["sinks"].as_array().unwrap();
    assert_eq!(sinks.len(), 2);
    let received = sinks[0]["stats"]["received"].as_u64().unwrap();
    assert!(received > 0 && received < 100_000, "stopped early: {received}");
    for s in sinks {
        assert_eq!(s["completed"], true, "{s}");
        assert_eq!(s["stats"]["delivered"].as_u64().unwrap(), received, "{s}");
    }
    let lines = std::fs::read_to_string(dir.path().join("calls.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(lines, received);
    let c = rusqlite::Connection::open(dir.path().join("x.db")).unwrap();
    let rows: i64 = c
        .query_row("SELECT count(*) FROM llm_metrics", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows as u64, received);
}

#[cfg(unix)]
#[test]
fn sigint_during_demo_stops_flushes_reports_and_exits_130() {
    demo_interrupted_by("INT", 130);
}

#[cfg(unix)]
#[test]
fn sigterm_during_demo_stops_flushes_reports_and_exits_143() {
    demo_interrupted_by("TERM", 143);
}

#[cfg(unix)]
#[test]
fn sigterm_during_bench_reports_and_exits_143() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = cmd(
        &[
            "bench",
            "--sink",
            "jsonl:b.jsonl",
            "--records",
            "100000000",
            "--rate",
            "2000",
            "--format",
            "json",
        ],
        dir.path(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    signal(child.id(), "TERM");
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(status.code(), Some(143), "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let delivered = report["stats"]["delivered"].as_u64().unwrap();
    assert!(delivered > 0 && delivered < 100_000_000);
    assert_eq!(report["stats"]["received"].as_u64().unwrap(), delivered);
    let lines = std::fs::read_to_string(dir.path().join("b.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(lines, delivered);
}

#[cfg(unix)]
#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9: delivery would be retried for a long time.
    let mut child = cmd(
        &[
            "demo",
            "--requests",
            "100000",
            "--latency-scale",
            "0.5",
            "--db",
            "x.db",
            "--sink",
            "postgres://steer@127.0.0.1:9/m",
            "--flush-timeout",
            "10m",
            "--quiet",
        ],
        dir.path(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    signal(child.id(), "INT");
    std::thread::sleep(Duration::from_millis(700));
    let second = Instant::now();
    signal(child.id(), "INT");
    let status = wait_timeout(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "{:?}",
        second.elapsed()
    );
}

// ---------------------------------------------------------------- exit codes

#[test]
fn generate_exits_6_when_a_sink_did_not_get_the_record_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // An OTLP endpoint that is down: the error only shows at flush/close.
    let o = steer(
        &[
            "generate",
            "hi",
            "-m",
            "sim/gpt-4o-mini",
            "--sink",
            "otlp:http://127.0.0.1:9",
        ],
        dir.path(),
    );
    let t = text(&o);
    assert_eq!(code(&o), 6, "{t}");
    let line = t
        .lines()
        .find(|l| l.contains("otlp:http://127.0.0.1:9") && l.contains("delivered"))
        .unwrap();
    assert!(
        line.contains("NOT DELIVERED") && line.contains("delivered 0 of 1"),
        "{t}"
    );
    assert!(
        t.to_lowercase().contains("connect"),
        "the cause is in the report:\n{t}"
    );
}

#[test]
fn configuration_errors_exit_7() {
    let dir = tempfile::tempdir().unwrap();
    let o = steer(&["generate", "hi", "-m", "no-such-model-xyz"], dir.path());
    assert_eq!(code(&o), 7, "{}", text(&o));
    let o = cmd(&["generate", "hi", "-m", "gpt-4o-mini"], dir.path())
        .env(
            "OPENAI_BASE_URL",
            "ftp://user:CFGSECRET@example.invalid/v1?token=CFGTOKEN",
        )
        .output()
        .unwrap();
    assert_eq!(code(&o), 7, "{}", text(&o));
    assert!(
        !text(&o).contains("CFGSECRET") && !text(&o).contains("CFGTOKEN"),
        "{}",
        text(&o)
    );
    std::fs::write(dir.path().join("steer.toml"), "sinks = [\"kafka:x\"]\n").unwrap();
    let o = steer(&["demo", "--requests", "5"], dir.path());
    assert_eq!(code(&o), 7, "{}", text(&o));
    // A bad --sink on the command line stays a usage error.
    std::fs::remove_file(dir.path().join("steer.toml")).unwrap();
    let o = steer(&["demo", "--requests", "5", "--sink", "kafka:x"], dir.path());
    assert_eq!(code(&o), 2, "{}", text(&o));
}

#[test]
fn a_zero_flush_timeout_prints_no_contradiction() {
    let dir = tempfile::tempdir().unwrap();
    let o = steer(
        &[
            "demo",
            "--requests",
            "50",
            "--latency-scale",
            "0",
            "--db",
            "x.db",
            "--flush-timeout",
            "0s",
            "--quiet",
        ],
        dir.path(),
    );
    let t = text(&o);
    for line in t.lines().filter(|l| l.contains("NOT DELIVERED")) {
        // "delivered N of N" under NOT DELIVERED would contradict itself.
        let nums: Vec<u64> = line
            .split("delivered ")
            .nth(1)
            .unwrap()
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .take(2)
            .map(|s| s.parse().unwrap())
            .collect();
        assert_ne!(nums[0], nums[1], "{t}");
    }
    assert!([0, 6].contains(&code(&o)), "{t}");
    if code(&o) == 6 {
        assert!(t.contains("UNCONFIRMED") || t.contains("NOT DELIVERED"), "{t}");
    }
}

// ---------------------------------------------------------------- secrets

#[test]
fn a_key_straddling_the_message_cut_is_never_printed_in_part() {
    const KEY: &str = "sk-STRADDLE-0123456789abcdefghijKLMN";
    for pad in [270usize, 280, 290, 295, 299] {
        let body: &'static str = Box::leak(
            format!(
                r#"{{"error":{{"message":"{}Incorrect API key provided: {KEY}.","type":"invalid_request_error","code":"invalid_api_key"}}}}"#,
                "x".repeat(pad)
            )
            .into_boxed_str(),
        );
        let (addr, _) = http_server(401, body);
        let dir = tempfile::tempdir().unwrap();
        let o = cmd(&["-vv", "generate", "hi", "-m", "openai/gpt-4o-mini"], dir.path())
            .env("RUST_LOG", "trace")
            .env("OPENAI_API_KEY", KEY)
            .env("OPENAI_BASE_URL", format!("http://{addr}/v1"))
            .output()
            .unwrap();
        let t = text(&o);
        assert_eq!(code(&o), 5, "{t}");
        // No 10-character piece of the key anywhere.
        for i in 0..=KEY.len() - 10 {
            assert!(
                !t.contains(&KEY[i..i + 10]),
                "pad {pad}: part of the key leaked:\n{t}"
            );
        }
    }
}

#[test]
fn secrets_in_url_query_parameters_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    for (spec, secret) in [
        (
            "postgres://steer@127.0.0.1:9/m?password=QPW-SECRET-1&sslmode=disable",
            "QPW-SECRET-1",
        ),
        (
            "influxdb2://127.0.0.1:9?org=o&bucket=b&token=QTOKEN-SECRET-2",
            "QTOKEN-SECRET-2",
        ),
        (
            "otlp:http://127.0.0.1:9/v1?api_key=QKEY-SECRET-3",
            "QKEY-SECRET-3",
        ),
        ("otlp:http://u:QPW-SECRET-4@127.0.0.1:9/v1", "QPW-SECRET-4"),
    ] {
        let o = cmd(
            &[
                "-vv",
                "demo",
                "--requests",
                "3",
                "--latency-scale",
                "0",
                "--db",
                "x.db",
                "--flush-timeout",
                "2s",
                "--sink",
                spec,
            ],
            dir.path(),
        )
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
        let t = text(&o);
        assert!(!t.contains(secret), "{spec} leaks {secret}:\n{t}");
        assert!(t.contains("***"), "{spec}: the (redacted) sink is named:\n{t}");
    }
}

// ---------------------------------------------------------------- the sink is wrong

#[test]
fn a_backend_refusing_the_credentials_fails_each_batch_once() {
    let (addr, hits) = http_server(401, r#"{"code":"unauthorized","message":"unauthorized access"}"#);
    let dir = tempfile::tempdir().unwrap();
    let o = steer(
        &[
            "bench",
            "--sink",
            &format!("influxdb://{addr}/llm"),
            "--records",
            "5000",
            "--batch",
            "5000",
            "--format",
            "json",
        ],
        dir.path(),
    );
    let t = text(&o);
    assert_eq!(code(&o), 6, "{t}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["stats"]["failed"]["misconfigured"], 5000, "{t}");
    assert_eq!(r["stats"]["failed"]["rejected"], 0, "{t}");
    assert!(r["requests"].as_u64().unwrap() <= 1, "{t}");
    assert!(
        hits.load(SeqCst) <= 2,
        "{} HTTP requests for one refused batch",
        hits.load(SeqCst)
    );
    assert!(r["stats"]["last_error"].as_str().unwrap().contains("401"), "{t}");
}

// ---------------------------------------------------------------- limits

#[test]
fn absurd_numbers_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["demo", "--requests", "1000000000000"][..],
        &["demo", "--requests", "0"],
        &["demo", "--concurrency", "0"],
        &["demo", "--latency-scale", "1e300"],
        &["bench", "--sink", "log", "--queue", "1000000000000"],
        &["bench", "--sink", "log", "--queue", "1e12"],
        &["bench", "--sink", "log", "--records", "100000000000000"],
        &["bench", "--sink", "log", "--batch", "1000000000000"],
        &["bench", "--sink", "log", "--source", "sim", "--concurrency", "0"],
    ] {
        let started = Instant::now();
        let o = steer(args, dir.path());
        assert_eq!(code(&o), 2, "{args:?}: {}", text(&o));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[cfg(unix)]
#[test]
fn config_file_limits_and_a_dangling_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let o = steer(&["--config", "/dev/zero", "demo", "--requests", "1"], dir.path());
    assert_eq!(code(&o), 7, "{}", text(&o));
    assert!(started.elapsed() < Duration::from_secs(5));
    std::os::unix::fs::symlink(dir.path().join("gone.toml"), dir.path().join("steer.toml")).unwrap();
    let o = steer(&["demo", "--requests", "1", "--latency-scale", "0"], dir.path());
    assert_eq!(code(&o), 7, "{}", text(&o));
    assert!(text(&o).contains("symbolic link"), "{}", text(&o));
}

#[cfg(unix)]
#[test]
fn stats_reads_a_read_only_store() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let o = steer(
        &[
            "demo",
            "--requests",
            "40",
            "--latency-scale",
            "0",
            "--db",
            "ro/m.db",
            "--quiet",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    std::fs::set_permissions(ro.join("m.db"), std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let o = steer(&["stats", "--db", "ro/m.db", "--format", "json"], dir.path());
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["total"]["count"], 40);
}

#[test]
fn a_spool_refuses_another_sinks_records() {
    let dir = tempfile::tempdir().unwrap();
    // The backend is down: the records stay in the spool.
    let o = steer(
        &[
            "bench",
            "--sink",
            "postgres://steer@127.0.0.1:9/m",
            "--records",
            "200",
            "--spool",
            "s.spool",
            "--flush-timeout",
            "1s",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 6, "{}", text(&o));
    let o = steer(
        &[
            "bench",
            "--sink",
            "jsonl:other.jsonl",
            "--records",
            "10",
            "--spool",
            "s.spool",
        ],
        dir.path(),
    );
    let t = text(&o);
    assert_eq!(code(&o), 4, "{t}");
    assert!(
        t.contains("holds") && t.contains("postgres://steer@127.0.0.1:9/m"),
        "{t}"
    );
    assert!(
        !dir.path().join("other.jsonl").exists()
            || std::fs::read(dir.path().join("other.jsonl")).unwrap().is_empty()
    );
}

/// Runs `args` with stdout and stderr pipes whose reading ends are closed at
/// once (`steer demo | head -0`): every print fails with a broken pipe.
fn steer_closed_output(args: &[&str], cwd: &Path) -> std::process::ExitStatus {
    let mut child = cmd(args, cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    child.wait().unwrap()
}

#[test]
fn a_closed_stdout_or_stderr_neither_panics_nor_loses_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let st = steer_closed_output(
        &["demo", "--requests", "30", "--db", "m.db", "--seed", "1"],
        dir.path(),
    );
    assert_eq!(st.code(), Some(0), "demo with a closed stdout: {st:?}");
    let o = steer(&["stats", "--db", "m.db", "--format", "json"], dir.path());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["total"]["count"], 30, "{}", text(&o));

    for args in [
        &["prices", "--format", "json"][..],
        &["prices"][..],
        &["stats", "--db", "m.db", "--every", "1m", "--since", "1h"][..],
        &[
            "generate",
            "hello",
            "--model",
            "sim/gpt-4o-mini",
            "--sink",
            "sqlite:m.db",
        ][..],
        &["sinks"][..],
    ] {
        let st = steer_closed_output(args, dir.path());
        assert_eq!(st.code(), Some(0), "steer {args:?} with a closed stdout: {st:?}");
    }
    let o = steer(&["stats", "--db", "m.db", "--format", "json"], dir.path());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["total"]["count"],
        31,
        "the generate call was stored: {}",
        text(&o)
    );
}

#[test]
fn an_endless_price_file_is_refused_not_read_forever() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let o = steer(&["--prices", "/dev/zero", "prices"], dir.path());
    let t = text(&o);
    assert_eq!(code(&o), 7, "{t}");
    assert!(t.contains("larger than"), "{t}");
    assert!(started.elapsed() < Duration::from_secs(30), "{t}");
}

#[test]
fn generate_timeout_bounds_the_whole_call_and_retries_can_be_set() {
    let dir = tempfile::tempdir().unwrap();
    // Gemini's 429 asks for a 30 s wait in its body (RetryInfo): with a 3 s
    // budget the call gives up at once instead of waiting and retrying.
    let (addr, hits) = http_server(
        429,
        r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}}"#,
    );
    let started = Instant::now();
    let o = cmd(
        &[
            "generate",
            "hi",
            "--model",
            "gemini-2.5-flash",
            "--timeout",
            "3s",
            "--sink",
            "jsonl:g.jsonl",
        ],
        dir.path(),
    )
    .env("GEMINI_API_KEY", "test-key")
    .env("GEMINI_BASE_URL", format!("http://{addr}"))
    .output()
    .unwrap();
    assert_eq!(code(&o), 5, "{}", text(&o));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(hits.load(SeqCst), 1, "no retry can fit the budget");

    // A server error is retried `--retries` times: 0 means one attempt.
    let (addr, hits) = http_server(500, r#"{"error":{"message":"boom","type":"server_error"}}"#);
    let o = cmd(
        &[
            "generate",
            "hi",
            "--model",
            "gpt-4o-mini",
            "--retries",
            "0",
            "--sink",
            "jsonl:o.jsonl",
        ],
        dir.path(),
    )
    .env("OPENAI_API_KEY", "sk-test")
    .env("OPENAI_BASE_URL", format!("http://{addr}/v1"))
    .output()
    .unwrap();
    assert_eq!(code(&o), 5, "{}", text(&o));
    assert_eq!(hits.load(SeqCst), 1);
    let rec: Value = serde_json::from_str(
        std::fs::read_to_string(dir.path().join("o.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(rec["retries"], 0);
    assert_eq!(rec["error_class"], "server_error");
}
