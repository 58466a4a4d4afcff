//! The proxy benchmark's two halves (driven by scripts/bench-proxy.sh):
//!
//! ```text
//! bench_proxy upstream --listen 127.0.0.1:P
//!     A fake OpenAI: POST /v1/chat/completions answers the recorded
//!     `openai_chat_basic.json` (or, with "stream": true, the recorded
//!     `openai_chat_stream_text_usage.sse`). Model `gpt-4o` waits 50 ms
//!     before answering (before the first event of a stream), like a
//!     provider; model `gpt-4o-mini` answers at once (throughput runs).
//!
//! bench_proxy passthrough --listen 127.0.0.1:P --upstream http://127.0.0.1:U
//!     The floor any proxy on this stack pays: the same server (axum on
//!     hyper) and client (reqwest) as `steer proxy`, forwarding method,
//!     path, body and content type to the upstream and streaming the
//!     answer back, and nothing else (no parsing, no routing, no record).
//!
//! bench_proxy load --url URL --model M [--stream] --concurrency C --seconds S [--warmup S]
//!     C connections, each sending calls back to back for S seconds
//!     (after a warm-up); prints one JSON line: calls, errors, calls/s,
//!     latency p50/p90/p99/max and, for streams, TTFT (first event carrying
//!     output, decoded with steer's own StreamDecoder) p50/p99, in ms.
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use steer::sse::SseParser;
use steer::wire::{Dialect, StreamDecoder};

const BASIC: &[u8] = include_bytes!("../../steer/tests/recordings/openai_chat_basic.json");
const STREAM: &[u8] = include_bytes!("../../steer/tests/recordings/openai_chat_stream_text_usage.sse");

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn events() -> Vec<Bytes> {
    let text = String::from_utf8_lossy(STREAM).to_string();
    text.split_inclusive("\n\n")
        .map(|e| Bytes::from(e.to_string()))
        .collect()
}

async fn upstream(listen: &str) {
    let events = Arc::new(events());
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |req: Request| {
            let events = events.clone();
            async move {
                let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if body["model"].as_str().is_some_and(|m| m == "gpt-4o") {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if body["stream"].as_bool() == Some(true) {
                    let include_usage = body
                        .pointer("/stream_options/include_usage")
                        .and_then(Value::as_bool)
                        == Some(true);
                    let evs: Vec<Result<Bytes, std::io::Error>> = events
                        .iter()
                        .filter(|e| {
                            include_usage
                                || !e.starts_with(b"data: {")
                                || !e.windows(12).any(|w| w == b"\"choices\":[]")
                        })
                        .cloned()
                        .map(Ok)
                        .collect();
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(Body::from_stream(futures::stream::iter(evs)))
                        .unwrap()
                } else {
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Body::from(BASIC))
                        .unwrap()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    eprintln!("fake upstream on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

async fn passthrough(listen: &str, upstream: String) {
    let client = reqwest::Client::new();
    let app = Router::new().fallback(move |req: Request| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 32 << 20).await.unwrap_or_default();
            let mut out = client
                .request(parts.method, format!("{upstream}{}", parts.uri.path()))
                .body(body);
            for name in ["content-type", "authorization"] {
                if let Some(v) = parts.headers.get(name) {
                    out = out.header(name, v);
                }
            }
            match out.send().await {
                Ok(resp) => {
                    let mut b = Response::builder().status(resp.status());
                    if let Some(v) = resp.headers().get("content-type") {
                        b = b.header("content-type", v);
                    }
                    b.body(Body::from_stream(resp.bytes_stream())).unwrap()
                }
                Err(_) => Response::builder().status(502).body(Body::empty()).unwrap(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    eprintln!("pass-through proxy on http://{}", listener.local_addr().unwrap());
    // As `steer proxy` does: no Nagle delay on small writes (stream events).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.unwrap();
}

struct Sample {
    latency_ms: f64,
    ttft_ms: Option<f64>,
    ok: bool,
}

async fn one_call(client: &reqwest::Client, url: &str, body: &Value, stream: bool) -> Sample {
    let start = Instant::now();
    let resp = match client
        .post(url)
        .bearer_auth("sk-bench-0123456789")
        .json(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(_) => {
            return Sample {
                latency_ms: start.elapsed().as_secs_f64() * 1e3,
                ttft_ms: None,
                ok: false,
            }
        }
    };
    let ok = resp.status().is_success();
    let mut ttft = None;
    if stream {
        let mut parser = SseParser::default();
        let mut decoder = StreamDecoder::new(Dialect::OpenAi);
        let mut evs = Vec::new();
        let mut body = resp.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            let _ = parser.feed(&chunk, &mut evs);
            for ev in evs.drain(..) {
                if ev.data == "[DONE]" {
                    continue;
                }
                if let Ok(c) = decoder.on_event(ev) {
                    if ttft.is_none() && c.is_output() {
                        ttft = Some(start.elapsed().as_secs_f64() * 1e3);
                    }
                }
            }
        }
    } else {
        let _ = resp.bytes().await;
    }
    Sample {
        latency_ms: start.elapsed().as_secs_f64() * 1e3,
        ttft_ms: ttft,
        ok,
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn load(args: &[String]) {
    let url = arg(args, "--url").expect("--url");
    let model = arg(args, "--model").unwrap_or_else(|| "gpt-4o".into());
    let stream = args.iter().any(|a| a == "--stream");
    let concurrency: usize = arg(args, "--concurrency")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let seconds: f64 = arg(args, "--seconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let warmup: f64 = arg(args, "--warmup").and_then(|v| v.parse().ok()).unwrap_or(2.0);
    let label = arg(args, "--label").unwrap_or_default();
    let mut body =
        json!({"model": model, "messages": [{"role": "user", "content": "What is the capital of the UK?"}]});
    if stream {
        body["stream"] = json!(true);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let end = measure_from + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let t = Instant::now();
                    if t >= end {
                        break;
                    }
                    let s = one_call(&client, &url, &body, stream).await;
                    if t >= measure_from && Instant::now() <= end {
                        out.push(s);
                    }
                }
                out
            })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.unwrap());
    }
    let errors = samples.iter().filter(|s| !s.ok).count();
    let mut lat: Vec<f64> = samples.iter().filter(|s| s.ok).map(|s| s.latency_ms).collect();
    let mut ttft: Vec<f64> = samples
        .iter()
        .filter(|s| s.ok)
        .filter_map(|s| s.ttft_ms)
        .collect();
    lat.sort_by(f64::total_cmp);
    ttft.sort_by(f64::total_cmp);
    let out = json!({
        "label": label,
        "url": url,
        "model": model,
        "stream": stream,
        "concurrency": concurrency,
        "seconds": seconds,
        "calls": samples.len(),
        "errors": errors,
        "calls_per_s": samples.len() as f64 / seconds,
        "latency_ms": {"p50": pct(&lat, 50.0), "p90": pct(&lat, 90.0), "p99": pct(&lat, 99.0), "max": lat.last().copied().unwrap_or(f64::NAN)},
        "ttft_ms": if stream { json!({"p50": pct(&ttft, 50.0), "p99": pct(&ttft, 99.0)}) } else { Value::Null },
    });
    println!("{out}");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("upstream") => upstream(&arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into())).await,
        Some("passthrough") => {
            passthrough(
                &arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into()),
                arg(&args, "--upstream").expect("--upstream"),
            )
            .await
        }
        Some("load") => load(&args).await,
        _ => eprintln!("usage: bench_proxy upstream --listen ADDR | passthrough --listen ADDR --upstream URL | load --url URL [--model M] [--stream] [--concurrency C] [--seconds S] [--warmup S] [--label L]"),
    }
}
