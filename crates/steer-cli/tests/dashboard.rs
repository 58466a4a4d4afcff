//! `steer stats` (tags, steps, plain output when piped, the hint without a
//! store) and `steer dashboard` over a `steer demo` store: the API answers
//! with the numbers of `steer stats --format json`.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

fn steer(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steer"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .output()
        .unwrap()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// GET `path` from `addr` with a plain HTTP/1.1 request.
fn get(addr: &str, path: &str) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status: u16 = resp[9..12].parse().unwrap();
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    // axum answers with a content-length body (no chunking) for these.
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn stats_and_dashboard_over_a_demo_store() {
    let dir = tempfile::tempdir().unwrap();

    // No store yet: say how to make one.
    let o = steer(&["stats"], dir.path());
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("steer demo"), "{o:?}");

    let o = steer(
        &[
            "demo",
            "--requests",
            "300",
            "--latency-scale",
            "0",
            "--quiet",
            "--db",
            "d.db",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Piped: plain text, no colour, no separators; the new columns.
    let o = steer(&["stats", "--db", "d.db"], dir.path());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains('\x1b'), "{text}");
    for col in ["retries", "ttft p95", "reasoning", "cache wr"] {
        assert!(text.contains(col), "{col}: {text}");
    }
    assert!(text.lines().last().unwrap().starts_with("TOTAL"), "{text}");
    assert!(text.lines().last().unwrap().contains(" 300 "), "{text}");

    // Failed calls cost "-".
    let o = steer(&["stats", "--db", "d.db", "--by", "error"], dir.path());
    let text = String::from_utf8_lossy(&o.stdout);
    for line in text
        .lines()
        .filter(|l| l.starts_with("rate_limit") || l.starts_with("server_error"))
    {
        assert!(line.trim_end().ends_with(" -"), "{line}");
    }

    // Tags and steps.
    let by_tag = json(&steer(
        &[
            "stats",
            "--db",
            "d.db",
            "--by",
            "tag:simulated",
            "--format",
            "json",
        ],
        dir.path(),
    ));
    assert_eq!(by_tag["by"], "tag:simulated");
    assert_eq!(by_tag["groups"]["true"]["count"], 300);
    let series = json(&steer(
        &[
            "stats", "--db", "d.db", "--every", "1h", "--since", "2h", "--format", "json",
        ],
        dir.path(),
    ));
    assert_eq!(series["step_seconds"], 3600);
    let per_step: u64 = series["total"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .sum();
    assert_eq!(per_step, 300);
    let o = steer(&["stats", "--db", "d.db", "--by", "tag:bad key"], dir.path());
    assert_eq!(o.status.code(), Some(2), "a bad key is a usage error");

    // The dashboard over the same store answers with the same numbers.
    let mut child = Command::new(env!("CARGO_BIN_EXE_steer"))
        .args(["dashboard", "--db", "d.db", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _kill = Kill(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let (status, api) = get(&addr, "/api/summary?since=1h&by=model");
    assert_eq!(status, 200, "{api}");
    let cli = json(&steer(
        &[
            "stats", "--db", "d.db", "--since", "1h", "--by", "model", "--format", "json",
        ],
        dir.path(),
    ));
    assert_eq!(api["total"]["count"], 300);
    assert_eq!(api["total"]["count"], cli["total"]["count"]);
    assert_eq!(api["total"]["errors"], cli["total"]["errors"]);
    assert_eq!(
        api["groups"].as_object().unwrap().len(),
        cli["groups"].as_object().unwrap().len()
    );
    for (k, v) in cli["groups"].as_object().unwrap() {
        assert_eq!(api["groups"][k]["count"], v["count"], "{k}");
        assert_eq!(api["groups"][k]["input_tokens"], v["input_tokens"], "{k}");
    }
    let (status, _) = get(&addr, "/api/timeseries?since=15m&by=provider");
    assert_eq!(status, 200);
    let (status, err) = get(&addr, "/api/summary?by=tag:a%22b");
    assert_eq!(status, 400, "{err}");
}
