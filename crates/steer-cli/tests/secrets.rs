//! The `steer` binary never prints a secret: API keys and tokens from the
//! environment, passwords in sink specs (command line and `steer.toml`) stay
//! out of stdout and stderr — with every log at TRACE, for calls a provider
//! refuses (echoing the key back), sinks that cannot connect, and specs or
//! config files that are invalid.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const OPENAI_KEY: &str = "sk-FAKE-OPENAI-0123456789abcdef";
const PG_PASSWORD: &str = "FAKEPW-pg-12345";
const INFLUX_TOKEN: &str = "FAKE-INFLUX-TOKEN-9876";
const INFLUX_PASSWORD: &str = "FAKE-INFLUX-PW-5555";
const DD_KEY: &str = "FAKE-DD-KEY-123";

fn assert_clean(what: &str, o: &Output) {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for s in [OPENAI_KEY, PG_PASSWORD, INFLUX_TOKEN, INFLUX_PASSWORD, DD_KEY] {
        assert!(!text.contains(s), "{what}: output leaks `{s}`:\n{text}");
    }
    for part in [
        "0123456789abcdef",
        "pg-12345",
        "TOKEN-9876",
        "PW-5555",
        "DD-KEY-123",
    ] {
        assert!(
            !text.contains(part),
            "{what}: output leaks part of a secret (`{part}`):\n{text}"
        );
    }
}

fn steer(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steer"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "trace")
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .env("INFLUX_TOKEN", INFLUX_TOKEN)
        .env("DD_API_KEY", DD_KEY)
        .env_remove("OPENAI_BASE_URL")
        .output()
        .unwrap()
}

/// A provider answering 401 with the key it was sent in the message (as
/// OpenAI does, partly masked; this one does not mask).
fn refusing_provider() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the body by Content-Length.
            let body_len = loop {
                let Ok(n) = conn.read(&mut buf) else { break None };
                if n == 0 {
                    break None;
                }
                req.extend_from_slice(&buf[..n]);
                if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break Some((end + 4, len));
                }
            };
            let Some((start, len)) = body_len else { continue };
            while req.len() < start + len {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&req[..start]).to_string();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("authorization: Bearer "))
                .unwrap_or("none")
                .trim()
                .to_string();
            let body = format!(
                r#"{{"error":{{"message":"Incorrect API key provided: {key}.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}}}"#
            );
            let _ = write!(
                conn,
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/v1")
}

#[test]
fn generate_refused_by_the_provider_prints_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = refusing_provider();
    let o = Command::new(env!("CARGO_BIN_EXE_steer"))
        .args([
            "-vv",
            "generate",
            "Hello",
            "-m",
            "openai/gpt-4o-mini",
            "--timeout",
            "5s",
        ])
        .current_dir(dir.path())
        .env("RUST_LOG", "trace")
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .env("OPENAI_BASE_URL", &base)
        .output()
        .unwrap();
    assert!(!o.status.success(), "a 401 is a failure");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("401") || err.to_lowercase().contains("authentication"),
        "the refusal is reported:\n{err}"
    );
    assert_clean("generate (401)", &o);

    // Nobody listening.
    let o = Command::new(env!("CARGO_BIN_EXE_steer"))
        .args(["generate", "Hello", "-m", "openai/gpt-4o-mini", "--timeout", "2s"])
        .current_dir(dir.path())
        .env("RUST_LOG", "trace")
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .env("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_clean("generate (connection refused)", &o);
}

#[test]
fn demo_with_unreachable_sinks_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let pg = format!("--sink=postgres://steer:{PG_PASSWORD}@127.0.0.1:1/metrics");
    let influx = format!("--sink=influxdb://steer:{INFLUX_PASSWORD}@127.0.0.1:1/steer");
    let started = Instant::now();
    let o = steer(
        &[
            "-vv",
            "demo",
            "--requests",
            "20",
            "--concurrency",
            "4",
            "--latency-scale",
            "0",
            "--quiet",
            "--flush-timeout",
            "2s",
            &pg,
            &influx,
            "--sink=influxdb2://127.0.0.1:1?org=acme&bucket=llm",
            "--sink=datadog:http://127.0.0.1:1",
        ],
        dir.path(),
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(all.contains("127.0.0.1:1"), "the failing sinks are named:\n{all}");
    assert_clean("demo with unreachable sinks", &o);
}

fn invalid_specs() -> Vec<String> {
    vec![
        format!("postgres://steer:{PG_PASSWORD}@[::1/metrics"),
        format!("postgres://steer:{PG_PASSWORD}@/metrics"),
        format!("influxdb://steer:{INFLUX_PASSWORD}@127.0.0.1:1"),
        format!("influxdb2://steer:{INFLUX_PASSWORD}@127.0.0.1:1?org=acme"),
        format!("mysql://steer:{PG_PASSWORD}@127.0.0.1/db"),
    ]
}

/// Known leak: clap's error for a `--sink` value its parser refuses quotes
/// the raw argument (`invalid value 'postgres://steer:PASSWORD@...' for
/// '--sink <SPEC>'`) before our redacted reason. Fix in the CLI: take the
/// specs as strings and parse them after clap (or map the clap error).
#[test]
fn invalid_sink_flags_print_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    for spec in invalid_specs() {
        let o = steer(
            &["demo", "--requests", "1", "--quiet", "--sink", &spec],
            dir.path(),
        );
        assert!(!o.status.success(), "{spec} is refused");
        assert!(!o.stderr.is_empty(), "{spec}: an error is printed");
        assert_clean(&format!("--sink {spec}"), &o);
    }
}

#[test]
fn invalid_config_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("steer.toml");
    for spec in invalid_specs() {
        std::fs::write(&config, format!("sinks = [\"log\", \"{spec}\"]\n")).unwrap();
        let o = steer(&["demo", "--requests", "1", "--quiet"], dir.path());
        assert!(!o.status.success(), "{spec} is refused");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("steer.toml"),
            "{spec}: the error names the file:\n{err}"
        );
        assert_clean(&format!("steer.toml with {spec}"), &o);
    }
    std::fs::write(
        &config,
        format!("password = \"{PG_PASSWORD}\"\nsinks = [\"log\"]\n"),
    )
    .unwrap();
    let o = steer(&["demo", "--requests", "1", "--quiet"], dir.path());
    assert!(!o.status.success(), "an unknown key is an error");
    assert_clean("steer.toml with an unknown key", &o);
    std::fs::write(&config, format!("sinks = [\"{PG_PASSWORD}\"\n")).unwrap();
    let o = steer(&["demo", "--requests", "1", "--quiet"], dir.path());
    assert!(!o.status.success(), "a syntax error is an error");
    assert_clean("steer.toml with a syntax error", &o);
    std::fs::write(&config, format!("db = 5\nsinks = \"{PG_PASSWORD}\"\n")).unwrap();
    let o = steer(&["demo", "--requests", "1", "--quiet"], dir.path());
    assert!(!o.status.success(), "a type error is an error");
    assert_clean("steer.toml with a type error", &o);
}

/// Known leak found by fuzzing (fuzz/artifacts-found/README.md):
/// `otlp://u:PASSWORD@host` is taken as `otlp:` + `//u:PASSWORD@host`, whose
/// Display `redact` cannot parse, so the password is printed.
#[test]
fn otlp_spec_without_scheme_prints_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("--sink=otlp://steer:{PG_PASSWORD}@127.0.0.1:1");
    let o = steer(
        &[
            "-vv",
            "demo",
            "--requests",
            "2",
            "--latency-scale",
            "0",
            "--quiet",
            "--flush-timeout",
            "1s",
            &spec,
        ],
        dir.path(),
    );
    assert_clean("demo with otlp://user:password@host", &o);
}
