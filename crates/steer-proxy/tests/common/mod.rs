//! Test kit: a fake upstream speaking the providers' wire formats (replaying
//! real recorded answers from `crates/steer/tests/recordings`), and a proxy
//! in process in front of it, recording into a memory sink.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use steer_metrics::sinks::MemorySink;
use steer_metrics::{AgentMetrics, MetricsCollector};
use steer_proxy::{Proxy, ProxyConfig, ProxyConfigBuilder};
use tokio::net::TcpListener;

/// A recorded answer's bytes.
pub fn recording(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../steer/tests/recordings")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The events of a recorded stream (each with its blank line).
pub fn events(sse: &[u8]) -> Vec<Bytes> {
    let text = sse;
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < text.len() {
        if text[i] == b'\n' && text[i + 1] == b'\n' {
            out.push(Bytes::copy_from_slice(&text[start..i + 2]));
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    if start < text.len() {
        out.push(Bytes::copy_from_slice(&text[start..]));
    }
    out
}

/// An OpenAI stream as OpenAI sends it without `include_usage`: without
/// the usage-only chunk (Azure's `choices: []` chunk of prompt filter
/// results, without usage, stays).
pub fn without_usage_chunk(sse: &[u8]) -> Vec<u8> {
    let has = |e: &[u8], pat: &[u8]| e.windows(pat.len()).any(|w| w == pat);
    events(sse)
        .into_iter()
        .filter(|e| !has(e, b"\"choices\":[]") || !has(e, b"\"usage\":{"))
        .flat_map(|e| e.to_vec())
        .collect()
}

/// What the fake upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// The fake upstream's state.
#[derive(Default)]
pub struct Upstream {
    pub received: Mutex<Vec<Received>>,
    /// Streams whose client (the proxy) went away before the end.
    pub cancelled: AtomicUsize,
    /// Streams sent to the end.
    pub completed: AtomicUsize,
    /// Keep request logs (off for load tests).
    pub log: std::sync::atomic::AtomicBool,
}

pub struct FakeUpstream {
    pub addr: std::net::SocketAddr,
    pub state: Arc<Upstream>,
}

impl FakeUpstream {
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    /// The server root (an Azure resource endpoint).
    pub fn root(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

/// Start the fake upstream on a free port.
pub async fn fake_upstream() -> FakeUpstream {
    let state = Arc::new(Upstream::default());
    state.log.store(true, SeqCst);
    let app = Router::new()
        .route("/v1/chat/completions", post(handle))
        .route("/v1/embeddings", post(handle))
        .route("/v1/messages", post(handle))
        .route("/v1/openai/chat/completions", post(handle))
        .route("/v1/openai/embeddings", post(handle))
        .route("/v1/models/{target}", post(handle))
        .route("/v1beta/openai/chat/completions", post(handle))
        .route("/v1beta/openai/embeddings", post(handle))
        .route("/v1beta/models/{target}", post(handle))
        .route("/openai/deployments/{d}/chat/completions", post(handle))
        .route("/openai/deployments/{d}/embeddings", post(handle))
        .route("/openai/v1/chat/completions", post(handle))
        .route("/openai/v1/embeddings", post(handle))
        .with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    FakeUpstream { addr, state }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn json_response(status: u16, body: Vec<u8>, extra: &[(&str, &str)]) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-request-id", "req_fake_123")
        .header("openai-processing-ms", "7");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body)).unwrap()
}

/// Counts a stream as cancelled unless it reached its end.
struct StreamGuard {
    state: Arc<Upstream>,
    done: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.done {
            self.state.completed.fetch_add(1, SeqCst);
        } else {
            self.state.cancelled.fetch_add(1, SeqCst);
        }
    }
}

/// Send `events` one by one, `delay` apart (and before the first); with
/// `forever`, keep sending keep-alive comments after them until the client
/// goes away.
fn sse_response(state: Arc<Upstream>, events: Vec<Bytes>, delay: Duration, forever: bool) -> Response {
    let stream = async_stream(state, events, delay, forever);
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("x-request-id", "req_fake_stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn async_stream(
    state: Arc<Upstream>,
    events: Vec<Bytes>,
    delay: Duration,
    forever: bool,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let guard = StreamGuard { state, done: false };
    futures::stream::unfold((events.into_iter(), guard), move |(mut it, guard)| async move {
        let mut guard = guard;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match it.next() {
            Some(e) => Some((Ok(e), (it, guard))),
            None if forever => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), (it, guard))),
            None => {
                guard.done = true;
                None
            }
        }
    })
}

/// The fake's embeddings answer for `n` inputs (OpenAI's documented shape).
pub fn embeddings_body(n: usize) -> Vec<u8> {
    let data: Vec<Value> = (0..n)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.0023064255, -0.009327292, 0.015797347]}))
        .collect();
    json!({"object": "list", "data": data, "model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}})
        .to_string()
        .into_bytes()
}

/// The fake's OpenAI 429 body (OpenAI's documented error shape).
pub fn openai_429_body() -> Vec<u8> {
    json!({"error": {"message": "Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
        .to_string()
        .into_bytes()
}

/// The fake's Azure OpenAI 401 body (Azure's documented error shape).
pub fn azure_401_body() -> Vec<u8> {
    json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}})
        .to_string()
        .into_bytes()
}

/// The events of a recorded stream whose events end with `\r\n\r\n`
/// (Gemini's), each with its blank line; else as [`events`].
pub fn crlf_events(sse: &[u8]) -> Vec<Bytes> {
    const END: &[u8] = b"\r\n\r\n";
    if !sse.windows(END.len()).any(|w| w == END) {
        return events(sse);
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + END.len() <= sse.len() {
        if &sse[i..i + END.len()] == END {
            out.push(Bytes::copy_from_slice(&sse[start..i + END.len()]));
            start = i + END.len();
            i = start;
        } else {
            i += 1;
        }
    }
    if start < sse.len() {
        out.push(Bytes::copy_from_slice(&sse[start..]));
    }
    out
}

/// The fake's Anthropic 401 body (Anthropic's documented error shape).
pub fn anthropic_401_body() -> Vec<u8> {
    json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
        .to_string()
        .into_bytes()
}

async fn handle(State(state): State<Arc<Upstream>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let headers = req.headers().clone();
    let bytes = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if state.log.load(SeqCst) {
        state.received.lock().unwrap().push(Received {
            path: path.clone(),
            query: query.clone(),
            headers: headers.clone(),
            body: body.clone(),
        });
    }
    let delay = Duration::from_millis(
        header(&headers, "x-fake-delay-ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let anthropic = path.ends_with("/messages");
    let gemini = path.contains(":generateContent") || path.contains(":streamGenerateContent");
    let azure = path.starts_with("/openai/");
    match header(&headers, "x-fake-scenario") {
        Some("rate_limit") if gemini => {
            return json_response(429, recording("gemini_error_429_resource_exhausted.json"), &[])
        }
        Some("auth") if gemini => {
            return json_response(400, recording("gemini_error_400_api_key_invalid.json"), &[])
        }
        Some("auth") if azure => return json_response(401, azure_401_body(), &[]),
        Some("content_filter") => {
            return json_response(400, recording("azure_error_400_content_filter.json"), &[])
        }
        Some("rate_limit") if anthropic => {
            return json_response(
                429,
                recording("anthropic_error_429_rate_limit.json"),
                &[("retry-after", "7")],
            )
        }
        Some("rate_limit") => {
            return json_response(429, openai_429_body(), &[("retry-after", "20")]);
        }
        Some("auth") if anthropic => {
            return json_response(401, anthropic_401_body(), &[]);
        }
        Some("auth") => return json_response(401, recording("openai_error_401_invalid_api_key.json"), &[]),
        Some("hang") => {
            // A stream that starts and never ends.
            let first = events(&recording("openai_chat_stream_text_usage.sse"));
            return sse_response(state, first.into_iter().take(2).collect(), delay, true);
        }
        Some("slow_headers") => {
            tokio::time::sleep(delay).await;
        }
        _ => {}
    }
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let tools = body.get("tools").is_some();
    if path.ends_with("/embeddings") {
        let n = match body.get("input") {
            Some(Value::Array(a)) => a.len(),
            _ => 1,
        };
        return json_response(200, embeddings_body(n), &[]);
    }
    if path.ends_with(":generateContent") {
        let file = if tools {
            "gemini_function_call.json"
        } else {
            "gemini_generate_thinking.json"
        };
        return json_response(200, recording(file), &[]);
    }
    if path.ends_with(":streamGenerateContent") {
        let file = if tools {
            "gemini_stream_function_call.sse"
        } else {
            "gemini_stream_text_usage.sse"
        };
        return sse_response(state, crlf_events(&recording(file)), delay, false);
    }
    if azure {
        // Azure OpenAI: deployments and the v1 form.
        let include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        return match (stream, tools) {
            (true, true) => sse_response(
                state,
                events(&recording("azure_chat_stream_tool_calls.sse")),
                delay,
                false,
            ),
            (true, false) => {
                let sse = recording("azure_chat_stream_usage.sse");
                let sse = if include_usage {
                    sse
                } else {
                    without_usage_chunk(&sse)
                };
                sse_response(state, events(&sse), delay, false)
            }
            (false, true) => json_response(200, recording("azure_chat_tool_calls.json"), &[]),
            (false, false) => json_response(200, recording("azure_chat_text.json"), &[]),
        };
    }
    if anthropic {
        return match (stream, tools) {
            (true, true) => sse_response(
                state,
                events(&recording("anthropic_stream_tool_use.sse")),
                delay,
                false,
            ),
            (true, false) => sse_response(
                state,
                events(&recording("anthropic_stream_thinking.sse")),
                delay,
                false,
            ),
            (false, true) => json_response(200, recording("anthropic_tool_use.json"), &[]),
            (false, false) => json_response(200, recording("anthropic_cache_write_and_read.json"), &[]),
        };
    }
    if stream {
        let include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        let file = if tools {
            "openai_chat_stream_tool_call_usage.sse"
        } else {
            "openai_chat_stream_text_usage.sse"
        };
        let sse = recording(file);
        let sse = if include_usage {
            sse
        } else {
            without_usage_chunk(&sse)
        };
        return sse_response(state, events(&sse), delay, false);
    }
    if tools {
        json_response(200, recording("openai_chat_tool_calls.json"), &[])
    } else {
        json_response(200, recording("openai_chat_basic.json"), &[])
    }
}

/// A proxy in process in front of `upstream`, recording into a memory sink.
pub struct TestProxy {
    pub addr: std::net::SocketAddr,
    pub memory: MemorySink,
    pub collector: MetricsCollector,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every record delivered so far (after a flush).
    pub async fn records(&self) -> Vec<AgentMetrics> {
        self.collector.flush().await;
        self.memory.records()
    }

    /// Wait until `n` records were delivered (or 10 s).
    pub async fn wait_records(&self, n: usize) -> Vec<AgentMetrics> {
        for _ in 0..200 {
            let r = self.records().await;
            if r.len() >= n {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.records().await
    }

    /// Stop accepting, let calls in flight finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

pub fn config_for(upstream: &FakeUpstream) -> ProxyConfigBuilder {
    ProxyConfig::builder()
        .ignore_env()
        .openai_base_url(upstream.url())
        .anthropic_base_url(upstream.url())
        .xai_base_url(upstream.url())
}

pub async fn start_proxy(config: ProxyConfigBuilder) -> TestProxy {
    let memory = MemorySink::new();
    let collector = MetricsCollector::builder()
        .sink_with_options(
            memory.clone(),
            steer_metrics::SinkOptions::default()
                .queue_capacity(100_000)
                .linger(Duration::from_millis(5)),
        )
        .build()
        .unwrap();
    let proxy = Proxy::new(config.build().unwrap(), collector.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        proxy
            .serve(listener, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    TestProxy {
        addr,
        memory,
        collector,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// The Python with the `openai` and `anthropic` SDKs: `STEER_TEST_PYSDK_PYTHON`.
/// Without it the test is skipped, unless `STEER_REQUIRE_SERVICES` or `CI`
/// is set: then it fails.
pub fn pysdk_python() -> Option<PathBuf> {
    match std::env::var("STEER_TEST_PYSDK_PYTHON") {
        Ok(p) if !p.trim().is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var_os("STEER_REQUIRE_SERVICES").is_some() || std::env::var_os("CI").is_some() {
                panic!(
                    "STEER_TEST_PYSDK_PYTHON is not set: run scripts/test.sh (scripts/services/pysdk.sh makes the venv with the openai, anthropic, google-genai and boto3 SDKs)"
                );
            }
            eprintln!("skipping: STEER_TEST_PYSDK_PYTHON not set (scripts/test.sh sets it)");
            None
        }
    }
}

/// Resident memory of this process, in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
