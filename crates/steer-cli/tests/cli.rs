//! The `steer` binary, run as a user would.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn steer(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steer"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap()
}

fn stdout_json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn close(a: &Value, b: &Value, path: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                "{path}: {x} != {y}"
            );
        }
        (Value::Object(x), Value::Object(y)) => {
            let kx: HashSet<_> = x.keys().collect();
            let ky: HashSet<_> = y.keys().collect();
            assert_eq!(kx, ky, "{path}: keys differ");
            for k in x.keys() {
                close(&x[k], &y[k], &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

#[test]
fn demo_then_stats_agree_with_sql_and_with_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let db_s = db.to_str().unwrap();
    let demo = steer(
        &[
            "demo",
            "--requests",
            "2000",
            "--concurrency",
            "128",
            "--latency-scale",
            "0.01",
            "--db",
            db_s,
            "--format",
            "json",
        ],
        dir.path(),
    );
    let demo = stdout_json(&demo);
    assert_eq!(demo["total"]["count"], 2000);
    let delivery = &demo["delivery"]["sinks"][0];
    assert_eq!(delivery["completed"], true);
    assert_eq!(delivery["stats"]["delivered"], 2000);
    assert!(
        demo["total"]["errors"].as_u64().unwrap() > 0,
        "the demo simulates failures"
    );
    assert!(
        demo["total"]["retries"].as_u64().unwrap() > 0,
        "the demo simulates retries"
    );

    // Exactly the recorded rows, unique request ids.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (rows, distinct): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT request_id) FROM llm_metrics",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, distinct), (2000, 2000));

    // stats agrees with the demo's own summary (computed from the calls' records).
    let stats = stdout_json(&steer(&["stats", "--db", db_s, "--format", "json"], dir.path()));
    close(&stats["total"], &demo["total"], "total");
    close(&stats["groups"], &demo["groups"], "groups");

    // p95 equals percentile_cont(0.95) computed directly in SQL.
    let sql_p95: f64 = conn
        .query_row(
            "WITH o AS (SELECT latency_ms AS v, row_number() OVER (ORDER BY latency_ms) - 1 AS i,
                               count(*) OVER () AS n FROM llm_metrics),
                  p AS (SELECT 0.95 * (max(n) - 1) AS pos FROM o)
             SELECT (SELECT v FROM o, p WHERE i = CAST(pos AS INTEGER))
                  + ((SELECT v FROM o, p WHERE i = CAST(pos AS INTEGER) + (pos > CAST(pos AS INTEGER)))
                     - (SELECT v FROM o, p WHERE i = CAST(pos AS INTEGER)))
                  * (SELECT pos - CAST(pos AS INTEGER) FROM p)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let p95 = stats["total"]["latency_ms"]["p95"].as_f64().unwrap();
    assert!((p95 - sql_p95).abs() < 1e-9, "stats p95 {p95} vs SQL {sql_p95}");

    // By provider and by error class, as a table.
    let out = steer(&["stats", "--db", db_s, "--by", "provider"], dir.path());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for p in ["openai", "anthropic", "xai", "TOTAL"] {
        assert!(text.contains(p), "{text}");
    }
    let by_err = stdout_json(&steer(
        &["stats", "--db", db_s, "--by", "error", "--format", "json"],
        dir.path(),
    ));
    let groups = by_err["groups"].as_object().unwrap();
    assert!(groups.contains_key("none"));
    let total: u64 = groups.values().map(|g| g["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 2000);

    // A window that excludes everything.
    let future = stdout_json(&steer(
        &["stats", "--db", db_s, "--since", "1ms", "--format", "json"],
        dir.path(),
    ));
    assert!(future["total"]["count"].as_u64().unwrap() < 2000);
}

#[test]
fn demo_is_deterministic_under_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let db = dir.path().join(name);
        let o = steer(
            &[
                "demo",
                "--requests",
                "300",
                "--latency-scale",
                "0",
                "--seed",
                seed,
                "--db",
                db.to_str().unwrap(),
                "--format",
                "json",
            ],
            dir.path(),
        );
        let v = stdout_json(&o);
        (
            v["total"]["errors"].clone(),
            v["total"]["output_tokens"].clone(),
            v["total"]["retries"].clone(),
        )
    };
    assert_eq!(run("a.db", "7"), run("b.db", "7"));
    assert_ne!(
        run("c.db", "7"),
        run("d.db", "8"),
        "another seed gives other calls"
    );
}

#[test]
fn extra_sinks_receive_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let jsonl = dir.path().join("calls.jsonl");
    let o = steer(
        &[
            "demo",
            "--requests",
            "200",
            "--latency-scale",
            "0",
            "--db",
            db.to_str().unwrap(),
            "--sink",
            &format!("jsonl:{}", jsonl.display()),
            "--format",
            "json",
        ],
        dir.path(),
    );
    let v = stdout_json(&o);
    assert_eq!(v["delivery"]["sinks"].as_array().unwrap().len(), 2);
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    let ids: HashSet<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 200);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn.prepare("SELECT request_id FROM llm_metrics").unwrap();
    let db_ids: HashSet<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(db_ids, ids);
}

#[test]
fn unreachable_backend_still_completes_and_reports_what_was_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let o = steer(
        &[
            "demo",
            "--requests",
            "50",
            "--latency-scale",
            "0",
            "--db",
            dir.path().join("x.db").to_str().unwrap(),
            "--sink",
            "influxdb://127.0.0.1:1/metrics",
            "--flush-timeout",
            "2s",
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(6),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("NOT DELIVERED"), "{stdout}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !stderr.contains('\u{1b}'),
        "no terminal colour codes in logs written to a pipe: {stderr}"
    );
    assert!(stdout.contains("influxdb://127.0.0.1:1/metrics"), "{stdout}");
    // The SQLite store still got everything.
    let line = stdout.lines().find(|l| l.contains("sqlite:")).unwrap();
    assert!(line.contains("delivered 50 of 50"), "{line}");
}

#[test]
fn errors_have_actionable_messages_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    // Bad flag: clap's usage error.
    let o = steer(&["demo", "--requests", "many"], dir.path());
    assert_eq!(o.status.code(), Some(2));

    // Unknown sink.
    let o = steer(&["demo", "--sink", "kafka://h:1"], dir.path());
    assert_eq!(o.status.code(), Some(2), "a bad --sink is a command-line error");
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown sink"));

    // A sink that cannot be set up: a missing key, a bad address. Exit 4, the reason, no secret.
    let o = Command::new(env!("CARGO_BIN_EXE_steer"))
        .args(["demo", "--requests", "1", "--sink", "datadog"])
        .current_dir(dir.path())
        .env_remove("DD_API_KEY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("DD_API_KEY"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = steer(
        &["demo", "--requests", "1", "--sink", "prometheus:not-an-address"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot set up sink prometheus:not-an-address"));

    // Unreadable store: missing file, and a file that is not a store.
    let o = steer(&["stats", "--db", "does-not-exist.db"], dir.path());
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(dir.path().join("text.db"), "this is not a database").unwrap();
    let o = steer(&["stats", "--db", "text.db"], dir.path());
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));

    // Bad config file.
    std::fs::write(dir.path().join("steer.toml"), "sinks = [\"nope\"]\n").unwrap();
    let o = steer(&["stats"], dir.path());
    // An unknown sink in the config file is invalid configuration (issue 18).
    assert_eq!(o.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&o.stderr).contains("steer.toml"));
}

#[test]
fn secrets_in_sink_urls_are_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let o = steer(
        &[
            "demo",
            "--requests",
            "5",
            "--latency-scale",
            "0",
            "--db",
            dir.path().join("x.db").to_str().unwrap(),
            "--sink",
            "postgres://steer:SECRET-pw-1234@127.0.0.1:1/metrics",
            "--flush-timeout",
            "1s",
            "-vv",
        ],
        dir.path(),
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!all.contains("SECRET-pw-1234"), "password leaked:\n{all}");
    assert!(all.contains("postgres://steer:***@127.0.0.1:1/metrics"), "{all}");
}

#[test]
fn generate_on_the_simulator_prints_answer_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let o = steer(
        &["generate", "Hello there", "--model", "sim/gpt-4o-mini"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    let json_start = err.find('{').unwrap();
    let json_end = err.rfind('}').unwrap();
    let record: Value = serde_json::from_str(&err[json_start..=json_end]).unwrap();
    assert_eq!(record["model"], "gpt-4o-mini");
    assert_eq!(record["provider"], "openai");
    assert!(record["cost_usd"].as_f64().unwrap() > 0.0);

    let o = steer(
        &["generate", "Hello", "--model", "sim/gpt-4o-mini", "--stream"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"method\": \"stream\""));

    // An unknown model with no provider is an error, not a substitution.
    let o = steer(&["generate", "Hello", "--model", "mystery-model-9"], dir.path());
    // Configuration, not a failed call (issue 18).
    assert_eq!(o.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&o.stderr)
        .to_lowercase()
        .contains("unknown model"));
}

#[test]
fn bench_reports_throughput_into_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let o = steer(
        &[
            "bench",
            "--sink",
            &format!("sqlite:{}", db.display()),
            "--records",
            "20000",
            "--format",
            "json",
        ],
        dir.path(),
    );
    let v = stdout_json(&o);
    assert_eq!(v["stats"]["delivered"], 20000);
    assert!(v["records_per_sec"].as_f64().unwrap() > 0.0);
    assert!(v["requests"].as_u64().unwrap() >= 4);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM llm_metrics", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 20000);
}

/// The PostgreSQL URL of the test server, or a loud skip (a failure under CI).
fn postgres_url() -> Option<String> {
    match std::env::var("STEER_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("STEER_REQUIRE_SERVICES").is_some() || std::env::var_os("CI").is_some() => {
            panic!("STEER_TEST_POSTGRES_URL is not set: run the tests through scripts/test.sh")
        }
        _ => {
            eprintln!(
                "SKIPPED: set STEER_TEST_POSTGRES_URL (scripts/test.sh does) to run the PostgreSQL CLI test"
            );
            None
        }
    }
}

#[test]
fn demo_into_postgres_then_stats_from_postgres_agree() {
    let Some(base) = postgres_url() else { return };
    // A database of our own, so parallel tests and reruns do not interfere.
    let db = format!("steer_cli_{}", std::process::id());
    let psql = std::env::var("STEER_TEST_PG_BIN")
        .map(|b| format!("{b}/psql"))
        .unwrap_or_else(|_| "psql".into());
    let run_sql = |sql: &str| {
        let st = Command::new(&psql)
            .args([base.as_str(), "-q", "-c", sql])
            .status()
            .unwrap();
        assert!(st.success(), "{sql}");
    };
    run_sql(&format!("DROP DATABASE IF EXISTS {db}"));
    run_sql(&format!("CREATE DATABASE {db}"));
    let url = base.replacen("/steer_test", &format!("/{db}"), 1);
    assert_ne!(url, base);
    let dir = tempfile::tempdir().unwrap();
    let demo = stdout_json(&steer(
        &[
            "demo",
            "--requests",
            "500",
            "--latency-scale",
            "0",
            "--db",
            dir.path().join("x.db").to_str().unwrap(),
            "--sink",
            &url,
            "--format",
            "json",
        ],
        dir.path(),
    ));
    let pg = demo["delivery"]["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stats"]["name"].as_str().unwrap().starts_with("postgres"))
        .unwrap()
        .clone();
    assert_eq!(pg["stats"]["delivered"], 500, "{pg}");
    let stats = stdout_json(&steer(
        &["stats", "--postgres", &url, "--format", "json"],
        dir.path(),
    ));
    close(&stats["total"], &demo["total"], "total");
    close(&stats["groups"], &demo["groups"], "groups");
    let by_provider = stdout_json(&steer(
        &[
            "stats",
            "--postgres",
            &url,
            "--by",
            "provider",
            "--format",
            "json",
        ],
        dir.path(),
    ));
    // The demo's default models: OpenAI, Anthropic, xAI, Gemini and Bedrock.
    assert_eq!(by_provider["groups"].as_object().unwrap().len(), 5);
    run_sql(&format!("DROP DATABASE {db}"));
}

#[test]
fn bench_through_a_disk_spool_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let spool = dir.path().join("spool.db");
    let o = steer(
        &[
            "bench",
            "--sink",
            &format!("sqlite:{}", db.display()),
            "--records",
            "5000",
            "--batch",
            "500",
            "--spool",
            spool.to_str().unwrap(),
            "--format",
            "json",
        ],
        dir.path(),
    );
    let v = stdout_json(&o);
    assert_eq!(v["stats"]["delivered"], 5000, "{v}");
    assert!(spool.exists());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(DISTINCT request_id) FROM llm_metrics", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 5000);
}
