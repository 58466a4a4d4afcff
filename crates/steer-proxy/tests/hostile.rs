//! Hostile clients and misbehaving upstreams: every bad input gets a clear
//! error in the wire's own shape and nothing is sent upstream; a redirect
//! is never followed with the client's key; slow clients are cut; a full
//! proxy answers 503 with `Retry-After`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn send(r: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("{status}: not JSON: {}", String::from_utf8_lossy(&body)));
    (status, headers, v)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_and_methods_get_typed_errors_and_nothing_is_sent() {
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up).base_url("gemini", format!("http://{}/v1beta", up.addr))).await;
    let chat = format!("{}/v1/chat/completions", proxy.url());
    let c = client();

    // Invalid UTF-8 outside the fields the proxy reads.
    let (s, _, v) = send(
        c.post(&chat)
            .body(b"{\"model\":\"gpt-4o\",\"x\":\"\xff\xfe\"}".to_vec()),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("UTF-8"), "{v}");
    // A huge model name: a short message, never the name echoed back.
    let big = json!({"model": "a".repeat(3 * 1024 * 1024), "messages": []}).to_string();
    let resp = c.post(&chat).body(big).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.bytes().await.unwrap().len() < 2048);
    // Gemini's native wire: the body must be a JSON object too.
    let gem = format!("{}/v1beta/models/gemini-2.5-flash:generateContent", proxy.url());
    let (s, _, v) = send(c.post(&gem).body("{")).await;
    assert_eq!(
        (s, v["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{v}"
    );
    // Encodings: br refused (415), a gzip bomb over the cap (413), broken gzip (400).
    let (s, _, _) = send(c.post(&chat).header("content-encoding", "br").body("{}")).await;
    assert_eq!(s, 415);
    let small = start_proxy(config_for(&up).max_body_bytes(10_000)).await;
    let bomb = gzip(&[b' '; 5_000_000]);
    assert!(bomb.len() < 10_000);
    let (s, _, v) = send(
        c.post(format!("{}/v1/chat/completions", small.url()))
            .header("content-encoding", "gzip")
            .body(bomb),
    )
    .await;
    assert_eq!((s, v["error"]["type"].as_str()), (413, Some("request_too_large")));
    let (s, _, _) = send(c.post(&chat).header("content-encoding", "gzip").body("{}")).await;
    assert_eq!(s, 400);
    // Wrong methods: 405 with a JSON body and `Allow`.
    let (s, h, v) = send(c.get(&chat)).await;
    assert_eq!((s, h["allow"].to_str().unwrap()), (405, "POST"), "{v}");
    let (s, h, _) = send(c.post(format!("{}/metrics", proxy.url()))).await;
    assert_eq!((s, h["allow"].to_str().unwrap()), (405, "GET, HEAD"));
    assert!(up.received().is_empty(), "nothing went upstream");

    // A gzip body is decoded, and goes upstream without Content-Encoding or Expect.
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let resp = c
        .post(&chat)
        .header("content-encoding", "gzip")
        .header("expect", "100-continue")
        .body(gzip(body.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, body);
    assert!(got[0].headers.get("content-encoding").is_none() && got[0].headers.get("expect").is_none());
    assert_eq!(proxy.wait_records(1).await.len(), 1);
    small.stop().await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_never_reach_another_upstream_path() {
    let up = fake_upstream().await;
    let config = config_for(&up)
        .base_url("azure", up.root())
        .base_url("gemini", format!("http://{}/v1beta", up.addr))
        .bedrock_open(true);
    let proxy = start_proxy(config).await;
    let body = json!({"model": "x", "messages": []});
    let c = client();
    let mut paths = vec![
        "/openai/deployments/%2e%2e/chat/completions?api-version=1",
        "/openai/deployments/..%2F..%2Fx/chat/completions?api-version=1",
        "/openai/deployments/a%5Cb/embeddings?api-version=1",
        "/v1beta/models/gemini%2F..%2F..%2Fx:generateContent",
        "/v1beta/models/%2e%2e:generateContent",
        "/v1/models/a%0d%0ab:generateContent",
    ];
    if cfg!(feature = "bedrock") {
        paths.extend([
            "/model/%2e%2e/converse",
            "/model/..%2F..%2Fadmin/converse",
            "/model/a%2F.%2Fb/invoke",
        ]);
    }
    for p in paths {
        // Sent as written (an HTTP client library would resolve the dots itself).
        let head = raw_post(proxy.addr, p, &body.to_string()).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{p}: {head}");
    }
    for p in [
        "/openai/deployments/../chat/completions",
        "/v1beta/models/..:generateContent",
    ] {
        let head = raw_post(proxy.addr, p, &body.to_string()).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{p}: {head}");
    }
    // `azure/` on the OpenAI wire: the deployment goes into the URL's path too.
    let (s, _, _) = send(
        c.post(format!("{}/v1/chat/completions", proxy.url()))
            .json(&json!({"model": "azure/../../x", "messages": []})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(up.received().is_empty(), "{:?}", up.received());
    proxy.stop().await;
}

/// POST `body` to `path` exactly as written; the answer's text.
async fn raw_post(addr: std::net::SocketAddr, path: &str, body: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A raw upstream answering every request with a 307 to `location`.
fn redirecting_upstream(location: String) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_go_back_to_the_client_and_are_never_followed() {
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stolen_addr = elsewhere.local_addr().unwrap();
    let stolen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = stolen.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = elsewhere.accept().await {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let up = redirecting_upstream(format!("http://{stolen_addr}/stolen"));
    let proxy = start_proxy(
        steer_proxy::ProxyConfig::builder()
            .ignore_env()
            .openai_base_url(format!("http://{up}/v1"))
            .base_url("gemini", format!("http://{up}/v1beta")),
    )
    .await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url()))
        .header("x-api-key", "sk-never-elsewhere-123456")
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 307);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        format!("http://{stolen_addr}/stolen")
    );
    let resp = client()
        .post(format!(
            "{}/v1beta/models/gemini-2.5-flash:generateContent?key=AIzaNeverElsewhere1234",
            proxy.url()
        ))
        .json(&json!({"contents": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 307);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stolen.load(std::sync::atomic::Ordering::SeqCst), 0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_with_408_or_a_closed_connection() {
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up).client_timeout(Duration::from_millis(500))).await;

    // A body shorter than its Content-Length, the rest never sent: 408.
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"model\":")
        .await
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""type":"timeout_error""#), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A request head sent a byte at a time: the connection is closed.
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n";
    let mut closed = false;
    for b in head {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            closed = true;
            break;
        }
    }
    assert!(closed && started.elapsed() < Duration::from_secs(3));
    assert!(up.received().is_empty());
    assert!(proxy.records().await.is_empty(), "nothing ran upstream");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_proxy_answers_503_with_retry_after_and_records_nothing_for_it() {
    let up = fake_upstream().await;
    let proxy = start_proxy(
        config_for(&up)
            .max_concurrent(1)
            .queue_timeout(Duration::from_millis(200)),
    )
    .await;
    let url = format!("{}/v1/chat/completions", proxy.url());
    let slow = {
        let url = url.clone();
        tokio::spawn(async move {
            client()
                .post(url)
                .header("x-fake-scenario", "slow_headers")
                .header("x-fake-delay-ms", "1500")
                .json(&json!({"model": "gpt-4o", "messages": []}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, h, v) = send(
        client()
            .post(&url)
            .json(&json!({"model": "gpt-4o", "messages": []})),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(h["retry-after"], "1");
    assert_eq!(v["error"]["type"], "overloaded_error");
    let anth = format!("{}/v1/messages", proxy.url());
    let (s, _, v) = send(
        client()
            .post(&anth)
            .json(&json!({"model": "claude-sonnet-4-5", "messages": []})),
    )
    .await;
    assert_eq!((s, v["type"].as_str()), (503, Some("error")));
    assert_eq!(slow.await.unwrap(), 200);
    let records = proxy.wait_records(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(records.len(), 1);
    assert_eq!(up.received().len(), 1);
    proxy.stop().await;
}
