//! `steer proxy` end to end: the binary in front of a local fake OpenAI
//! (replaying a recorded answer), a call through it, `/metrics`, SIGTERM
//! with a call in flight (it finishes), the delivery report, exit 143, and
//! the rows in the SQLite store.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn recording(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../steer/tests/recordings")
            .join(name),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_serves_records_and_reports_on_sigterm() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("x-slow", "1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(recording("openai_chat_basic.json"), "application/json")
                .set_delay(Duration::from_millis(1500)),
        )
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(recording("openai_chat_basic.json"), "application/json")
                .insert_header("x-request-id", "req_recorded"),
        )
        .mount(&upstream)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_steer"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .current_dir(dir.path())
        .env("OPENAI_BASE_URL", format!("{}/v1", upstream.uri()))
        .env_remove("STEER_PROXY_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();

    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("authorization", "Bearer sk-cli-test-key-123456")
        .header("x-steer-tag-team", "cli")
        .json(&serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req_recorded");
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("openai_chat_basic.json")
    );

    // /metrics shows the call once the collector has delivered it.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains(r#"gen_ai_request_model="gpt-4o""#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics.contains("steer_llm_requests_total{"), "{metrics}");
    assert!(metrics.contains(r#"gen_ai_request_model="gpt-4o""#), "{metrics}");
    let health = client.get(format!("http://{addr}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // SIGTERM with a call in flight: it finishes, then the delivery
    // report, exit 143 (128 + SIGTERM).
    let in_flight = {
        let client = client.clone();
        let url = format!("http://{addr}/v1/chat/completions");
        tokio::spawn(async move {
            client
                .post(url)
                .header("x-slow", "1")
                .json(&serde_json::json!({"model": "gpt-4o", "messages": []}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(in_flight.await.unwrap(), 200);
    assert_eq!(out.status.code(), Some(143), "stdout: {rest}\nstderr: {stderr}");
    assert!(rest.contains("delivery:"), "{rest}");
    assert!(!rest.contains("sk-cli-test-key") && !stderr.contains("sk-cli-test-key"));

    let conn = rusqlite::Connection::open(&db).unwrap();
    let (n, model, input, output, tags, retries): (i64, String, i64, i64, String, i64) = conn
        .query_row(
            "SELECT count(*), max(model), max(input_tokens), max(output_tokens), max(CASE WHEN tags != '{}' THEN tags END), max(retries) FROM llm_metrics",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap();
    assert_eq!(
        (n, model.as_str(), input, output, retries),
        (2, "gpt-4o", 14, 30, 0)
    );
    assert!(tags.contains(r#""team":"cli""#), "{tags}");
}

#[test]
fn provider_keys_mode_needs_the_proxy_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_steer"))
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--provider-keys-from-env",
            "--db",
        ])
        .arg(dir.path().join("m.db"))
        .current_dir(dir.path())
        .env_remove("STEER_PROXY_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("STEER_PROXY_KEY"));
}
