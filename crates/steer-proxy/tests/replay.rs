//! The proxy's record equals the client's record for the same provider
//! answer: every recording of the replay corpus (`crates/steer/tests/recordings`,
//! see its README) whose wire the proxy speaks — OpenAI, xAI, Ollama, Azure
//! OpenAI, Anthropic and Gemini, streamed or not, errors included (Bedrock
//! has its own tests) — is replayed by a fake upstream behind the proxy,
//! the matching request sent on the provider's own route.
//!
//! For each: the client receives exactly the upstream's bytes (for an OpenAI
//! stream whose client did not ask for usage, the documented stripping of
//! the usage chunk), the store holds exactly one record, every field the
//! manifest's `expected` names is in it, the cost is the price table's cost
//! of the expected usage, TTFT is the moment the first output event left the
//! upstream; and the record equals the steer client's record of the same
//! answer, field by field (all but the error message, which the proxy masks
//! harder).
//!
//! Streams are replayed event by event, with a pause before the first event
//! and between events, so time to first token is measured, not assumed.
//! Each answer is replayed again cut at awkward places (after an event's
//! first byte, in its middle, inside its closing line break; a JSON body
//! in pieces, without a length), and Azure's and Gemini's answers on their
//! other routes (Azure's v1 form and `azure/<deployment>` on the OpenAI
//! wire; Gemini below `/v1/`).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../steer/tests/recordings/corpus.rs"]
mod corpus;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request as HttpRequest, State};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use common::{crlf_events, recording, start_proxy, without_usage_chunk, TestProxy};
use corpus::{check_record, first_output_event, manifest, Recording};
use serde_json::{json, Value};
use steer::pricing::PriceTable;
use steer::{Request, RetryConfig, SteerClient, Usage};
use steer_metrics::sinks::MemorySink;
use steer_metrics::{AgentMetrics, Method};
use steer_proxy::ProxyConfig;
use tokio::net::TcpListener;

/// Pause before the first event of a stream.
const FIRST_EVENT_DELAY: Duration = Duration::from_millis(60);
/// Pause between two events of a stream.
const EVENT_GAP: Duration = Duration::from_millis(4);
/// How long after the first output event left the upstream the proxy may
/// see it (its way through the proxy, on a busy machine).
const TTFT_ABOVE: Duration = Duration::from_millis(20);
/// Rounding of the record's milliseconds.
const CLOCK_SLACK: Duration = Duration::from_millis(1);

/// The key the test clients send (never in a record).
const KEY: &str = "sk-replay-test-key-0123456789";
/// The Azure deployment the requests name.
const DEPLOYMENT: &str = "prod-deployment";
const API_VERSION: &str = "api-version=2024-10-21";

/// The wires this proxy speaks (Bedrock has its own tests).
fn proxied(r: &Recording) -> bool {
    matches!(
        r.provider.as_str(),
        "openai" | "xai" | "ollama" | "azure" | "anthropic" | "gemini"
    )
}

// ---------------------------------------------------------------------------
// The fake upstream: one recording, for every request.

/// A request header asking the fake upstream to cut its answer at awkward
/// places (see [`pieces`]).
const CUT: &str = "x-replay-cut";
/// Pause between two pieces of one event.
const PIECE_GAP: Duration = Duration::from_millis(1);

/// What the fake upstream saw and did.
#[derive(Default)]
struct Log {
    /// The body of each request.
    bodies: Vec<Value>,
    /// What was served for each request.
    served: Vec<Served>,
}

/// When one request arrived and each piece of its answer left.
#[derive(Debug, Clone)]
struct Served {
    arrived: Instant,
    pieces: Vec<Sent>,
}

/// A piece of the answer, as the upstream writes it.
#[derive(Debug, Clone)]
struct Piece {
    bytes: Bytes,
    /// The index of its event.
    event: usize,
    /// Whether its event is complete with it: it holds the end of the
    /// event's last line and of its blank line (a `\r` ends a line; the
    /// `\n` of a CRLF after it adds nothing).
    completes: bool,
}

/// When a piece left the upstream.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    event: usize,
    completes: bool,
}

struct Replay {
    status: u16,
    stream: bool,
    body: Vec<u8>,
    log: Mutex<Log>,
}

impl Replay {
    /// The request count so far, and what the last request was served.
    fn last(&self) -> (usize, Served) {
        let log = self.log.lock().unwrap();
        (log.bodies.len(), log.served.last().cloned().unwrap())
    }

    fn body(&self, i: usize) -> Value {
        self.log.lock().unwrap().bodies[i].clone()
    }
}

/// The answer's pieces as the upstream writes them, each with the index of
/// its event: whole events (a JSON body is one), or, with `cut`, each event
/// in pieces: after its first byte, in its middle (which may fall inside a
/// UTF-8 character) and inside its closing line break (between `\r` and
/// `\n` for Gemini's CRLF events).
fn pieces(body: &[u8], stream: bool, cut: bool) -> Vec<Piece> {
    let events = if stream {
        crlf_events(body)
    } else {
        vec![Bytes::copy_from_slice(body)]
    };
    let mut out = Vec::new();
    for (event, ev) in events.into_iter().enumerate() {
        // The event is complete once this many of its bytes arrived.
        let complete_at = if ev.ends_with(b"\r\n") {
            ev.len() - 1
        } else {
            ev.len()
        };
        let cuts: &[usize] = if cut && ev.len() >= 4 {
            &[1, ev.len() / 2, ev.len() - 1]
        } else {
            &[]
        };
        let mut start = 0;
        for end in cuts.iter().copied().chain([ev.len()]) {
            if end > start {
                out.push(Piece {
                    bytes: ev.slice(start..end),
                    event,
                    completes: start < complete_at && complete_at <= end,
                });
                start = end;
            }
        }
    }
    out
}

async fn replay_handler(State(r): State<Arc<Replay>>, req: HttpRequest) -> Response {
    let cut = req.headers().contains_key(CUT);
    let bytes = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap();
    let i = {
        let mut log = r.log.lock().unwrap();
        log.bodies
            .push(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        log.served.push(Served {
            arrived: Instant::now(),
            pieces: Vec::new(),
        });
        log.served.len() - 1
    };
    let content_type = if r.stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    if !r.stream && !cut {
        // One piece, with its length.
        return Response::builder()
            .status(r.status)
            .header("content-type", content_type)
            .body(Body::from(r.body.clone()))
            .unwrap();
    }
    let pieces = pieces(&r.body, r.stream, cut);
    let log = r.clone();
    let body = futures::stream::unfold((0usize, pieces), move |(n, pieces)| {
        let log = log.clone();
        async move {
            let piece = pieces.get(n)?.clone();
            let wait = match n {
                0 if log.stream => FIRST_EVENT_DELAY,
                _ if n > 0 && pieces[n - 1].event == piece.event => PIECE_GAP,
                _ => EVENT_GAP,
            };
            tokio::time::sleep(wait).await;
            log.log.lock().unwrap().served[i].pieces.push(Sent {
                at: Instant::now(),
                event: piece.event,
                completes: piece.completes,
            });
            Some((Ok::<Bytes, std::io::Error>(piece.bytes), (n + 1, pieces)))
        }
    });
    Response::builder()
        .status(r.status)
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .body(Body::from_stream(body))
        .unwrap()
}

/// Start a fake upstream answering every request with the recording.
async fn replay_upstream(r: &Recording) -> (String, Arc<Replay>) {
    let state = Arc::new(Replay {
        status: r.status,
        stream: r.stream,
        body: recording(&r.file),
        log: Mutex::new(Log::default()),
    });
    let app = Router::new().fallback(replay_handler).with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), state)
}

// ---------------------------------------------------------------------------
// What to ask, and where.

/// The model the request names: the one the recording answered as (an
/// error names a model of its provider).
fn model(r: &Recording) -> String {
    match (r.provider.as_str(), r.expected["model"].as_str()) {
        ("azure", _) => DEPLOYMENT.to_string(),
        (_, Some(m)) => m.to_string(),
        ("anthropic", None) => "claude-sonnet-4-5".to_string(),
        ("gemini", None) => "gemini-2.5-flash".to_string(),
        (_, None) => "gpt-4o".to_string(),
    }
}

/// Whether an OpenAI-wire stream has the usage-only chunk that
/// `stream_options.include_usage` adds.
fn has_usage_chunk(body: &[u8]) -> bool {
    without_usage_chunk(body) != body
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The provider's own route: OpenAI's `/v1/chat/completions` (xAI and
    /// Ollama by their prefix), Azure's deployment path, Anthropic's
    /// `/v1/messages`, Gemini's `/v1beta/models/...`.
    Native,
    /// Azure's v1 form, `/openai/v1/chat/completions`, the deployment in the
    /// body.
    AzureV1,
    /// `azure/<deployment>` on the OpenAI wire.
    AzurePrefix,
    /// Gemini's native wire below `/v1/`.
    GeminiV1,
}

/// Every route a recording's answer can come back on.
fn routes(r: &Recording) -> &'static [Route] {
    match r.provider.as_str() {
        "azure" => &[Route::Native, Route::AzureV1, Route::AzurePrefix],
        "gemini" => &[Route::Native, Route::GeminiV1],
        _ => &[Route::Native],
    }
}

/// How to ask.
#[derive(Debug, Clone, Copy)]
struct Ask {
    route: Route,
    /// `stream_options.include_usage` on an OpenAI-wire stream.
    include_usage: bool,
    /// The upstream cuts its answer at awkward places.
    cut: bool,
}

const PLAIN: Ask = Ask {
    route: Route::Native,
    include_usage: true,
    cut: false,
};

/// The proxy URL, body and headers of the request for the recording.
fn proxy_request(r: &Recording, proxy: &str, ask: Ask) -> (String, Value, Vec<(&'static str, String)>) {
    let messages = json!([{"role": "user", "content": "replay"}]);
    let m = model(r);
    let mut openai = json!({"messages": messages, "max_tokens": 1024});
    if r.stream {
        openai["stream"] = json!(true);
        if ask.include_usage {
            openai["stream_options"] = json!({"include_usage": true});
        }
    }
    let bearer = vec![("authorization", format!("Bearer {KEY}"))];
    let api_key = vec![("api-key", KEY.to_string())];
    match (r.provider.as_str(), ask.route) {
        (_, Route::AzureV1) => {
            openai["model"] = json!(m);
            (format!("{proxy}/openai/v1/chat/completions"), openai, api_key)
        }
        (_, Route::AzurePrefix) => {
            openai["model"] = json!(format!("azure/{m}"));
            (format!("{proxy}/v1/chat/completions"), openai, api_key)
        }
        ("azure", _) => (
            format!("{proxy}/openai/deployments/{m}/chat/completions?{API_VERSION}"),
            openai,
            api_key,
        ),
        ("anthropic", _) => {
            let mut body = json!({"model": m, "max_tokens": 1024, "messages": messages});
            if r.stream {
                body["stream"] = json!(true);
            }
            (
                format!("{proxy}/v1/messages"),
                body,
                vec![
                    ("x-api-key", KEY.to_string()),
                    ("anthropic-version", "2023-06-01".to_string()),
                ],
            )
        }
        ("gemini", route) => {
            let op = if r.stream {
                "streamGenerateContent?alt=sse"
            } else {
                "generateContent"
            };
            let version = if route == Route::GeminiV1 { "v1" } else { "v1beta" };
            (
                format!("{proxy}/{version}/models/{m}:{op}"),
                json!({"contents": [{"role": "user", "parts": [{"text": "replay"}]}]}),
                vec![("x-goog-api-key", KEY.to_string())],
            )
        }
        // OpenAI's own models by name, the others by their prefix.
        ("openai", _) => {
            openai["model"] = json!(m);
            (format!("{proxy}/v1/chat/completions"), openai, bearer)
        }
        (p, _) => {
            openai["model"] = json!(format!("{p}/{m}"));
            (format!("{proxy}/v1/chat/completions"), openai, bearer)
        }
    }
}

/// A proxy in front of the fake upstream: every provider's base URL on it.
async fn proxy_for(base: &str) -> TestProxy {
    start_proxy(
        ProxyConfig::builder()
            .ignore_env()
            .openai_base_url(format!("{base}/v1"))
            .anthropic_base_url(format!("{base}/v1"))
            .xai_base_url(format!("{base}/v1"))
            .base_url("ollama", format!("{base}/v1"))
            .base_url("azure", base)
            .base_url("gemini", format!("{base}/v1beta")),
    )
    .await
}

/// One call through the proxy: the status and bytes the client got, the
/// one record, and when the client sent the request.
async fn through_proxy(r: &Recording, base: &str, ask: Ask) -> (u16, Vec<u8>, AgentMetrics, Instant) {
    let proxy = proxy_for(base).await;
    let (url, body, headers) = proxy_request(r, &proxy.url(), ask);
    let mut req = reqwest::Client::new().post(&url).json(&body);
    if ask.cut {
        req = req.header(CUT, "1");
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let sent = Instant::now();
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap().to_vec();
    proxy.wait_records(1).await;
    // Anything more would have been written by now.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut records = proxy.records().await;
    assert_eq!(records.len(), 1, "{}: exactly one record: {records:#?}", r.file);
    proxy.stop().await;
    let m = records.remove(0);
    (status, bytes, m, sent)
}

/// The same answer measured by the steer client.
async fn through_client(r: &Recording, base: &str) -> AgentMetrics {
    let memory = MemorySink::new();
    let client = SteerClient::builder()
        .ignore_env()
        .sink(memory.clone())
        .openai_api_key(KEY)
        .anthropic_api_key(KEY)
        .xai_api_key(KEY)
        .gemini_api_key(KEY)
        .openai_base_url(format!("{base}/v1"))
        .anthropic_base_url(format!("{base}/v1"))
        .xai_base_url(format!("{base}/v1"))
        .base_url("ollama", format!("{base}/v1"))
        .base_url("gemini", format!("{base}/v1beta"))
        .azure_openai(base, KEY)
        .retry(RetryConfig::default().max_retries(0))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let req = Request::prompt("replay").max_tokens(1024);
    let model = format!("{}/{}", r.provider, model(r));
    let _ = if r.stream {
        match client.stream(req, &model).await {
            Ok(s) => s.collect_response().await.map(|_| ()),
            Err(e) => Err(e),
        }
    } else {
        client.generate(req, &model).await.map(|_| ())
    };
    client.metrics().flush().await;
    let mut records = memory.records();
    assert_eq!(records.len(), 1, "{}: the client's records: {records:#?}", r.file);
    records.remove(0)
}

// ---------------------------------------------------------------------------
// What the record must hold.

/// The price table's cost of the expected usage, for the model the
/// provider answered as (an answer without usage has no known cost).
fn expected_cost(r: &Recording, m: &AgentMetrics, usage: &Usage) -> Option<f64> {
    if usage.input_tokens == 0 && usage.output_tokens == 0 {
        return None;
    }
    let prices = PriceTable::builtin();
    steer::measure::price_for(&prices, &r.provider, &m.model, r.expected["model"].as_str())
        .map(|p| p.cost(usage))
}

/// Every field the manifest's `expected` names, and the cost.
fn check_expected(r: &Recording, m: &AgentMetrics, body: &[u8]) {
    let what = &r.file;
    assert_eq!(m.model, model(r), "{what}: model");
    let method = if r.stream {
        Method::Stream
    } else {
        Method::Generate
    };
    assert_eq!(m.method, method, "{what}: method");
    let Some(u) = check_record(r, m, body, KEY) else {
        return;
    };
    match (m.cost_usd, expected_cost(r, m, &u)) {
        (Some(got), Some(want)) => assert!(
            (got - want).abs() < 1e-12,
            "{what}: cost {got} != the price table's {want}"
        ),
        (got, want) => assert_eq!(got, want, "{what}: cost"),
    }
}

/// TTFT: the moment the first output event was complete (the piece that
/// completed it left the upstream); none without streamed output. The
/// proxy starts its clock between the moment the client sent its request
/// and the moment the upstream got it, so TTFT is at least the event's time
/// after the upstream got the request, and at most (plus its way through
/// the proxy) its time after the client sent it. Latency: at least until
/// the last piece left.
fn check_times(r: &Recording, m: &AgentMetrics, body: &[u8], sent: Instant, served: &Served) {
    let what = &r.file;
    let ms =
        |d: Option<f64>| Duration::from_secs_f64(d.unwrap_or_else(|| panic!("{what}: no TTFT")) / 1000.0);
    let latency = ms(Some(m.latency_ms));
    if let Some(last) = served.pieces.last() {
        let min = last.at.duration_since(served.arrived);
        assert!(
            latency + CLOCK_SLACK >= min,
            "{what}: latency {latency:?}, the last piece left {min:?} after the request arrived"
        );
    }
    let first = r
        .stream
        .then(|| first_output_event(r, &crlf_events(body)))
        .flatten();
    let Some(i) = first else {
        assert_eq!(m.ttft_ms, None, "{what}: no TTFT without a streamed output");
        return;
    };
    let at = served
        .pieces
        .iter()
        .find(|p| p.event == i && p.completes)
        .map(|p| p.at)
        .unwrap();
    let (min, max) = (
        at.duration_since(served.arrived),
        at.duration_since(sent) + TTFT_ABOVE,
    );
    let got = ms(m.ttft_ms);
    assert!(
        got + CLOCK_SLACK >= min && got <= max,
        "{what}: TTFT {got:?}, first output event (#{i}) sent {min:?} after the request arrived, {:?} after it was sent",
        max - TTFT_ABOVE
    );
    assert!(latency >= got, "{what}: latency {latency:?} < TTFT {got:?}");
}

/// The measured fields of the proxy's record equal the client's.
fn check_same_as_client(r: &Recording, proxy: &AgentMetrics, client: &AgentMetrics) {
    let what = &r.file;
    let fields = |m: &AgentMetrics| {
        json!({
            "provider": m.provider,
            "model": m.model,
            "response_model": m.response_model,
            "method": m.method,
            "input_tokens": m.input_tokens,
            "output_tokens": m.output_tokens,
            "cached_tokens": m.cached_tokens,
            "cache_write_tokens": m.cache_write_tokens,
            "cache_write_1h_tokens": m.cache_write_1h_tokens,
            "reasoning_tokens": m.reasoning_tokens,
            "finish_reason": m.finish_reason,
            "tools_used": m.tools_used,
            "tools_invoked": m.tools_invoked,
            "error_class": m.error_class,
            "cost_usd": m.cost_usd,
            "ttft": m.ttft_ms.is_some(),
        })
    };
    assert_eq!(
        fields(proxy),
        fields(client),
        "{what}: the proxy's record (left) differs from the client's (right)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recording_gives_the_clients_record() {
    let recordings: Vec<_> = manifest().into_iter().filter(proxied).collect();
    assert!(recordings.len() >= 40, "the corpus shrank: {}", recordings.len());
    let (mut calls, mut stripped) = (0, 0);
    for r in &recordings {
        let what = &r.file;
        let body = recording(what);
        let (base, upstream) = replay_upstream(r).await;
        let openai_stream = r.stream && !matches!(r.provider.as_str(), "anthropic" | "gemini");
        let mut proxied = |ask: Ask| {
            calls += 1;
            through_proxy(r, &base, ask)
        };

        // Exactly the upstream's bytes (an OpenAI-wire stream asked with
        // include_usage, so the usage chunk is the client's too).
        let (status, got, m, sent) = proxied(PLAIN).await;
        assert_eq!(status, r.status, "{what}: status");
        assert!(
            got == body,
            "{what}: the client did not get the upstream's bytes:\n{}",
            String::from_utf8_lossy(&got)
        );
        check_expected(r, &m, &body);
        let (n, served) = upstream.last();
        check_times(r, &m, &body, sent, &served);
        if openai_stream {
            let asked = upstream.body(n - 1);
            assert_eq!(asked["stream_options"]["include_usage"], true, "{what}");
        }

        // The steer client's record of the same answer: the same.
        let client = through_client(r, &base).await;
        check_same_as_client(r, &m, &client);

        // The provider's other routes.
        for &route in &routes(r)[1..] {
            let ask = Ask { route, ..PLAIN };
            let (status, got, m, sent) = proxied(ask).await;
            assert_eq!(status, r.status, "{what} on {route:?}: status");
            assert!(got == body, "{what} on {route:?}: not the upstream's bytes");
            let (_, served) = upstream.last();
            check_expected(r, &m, &body);
            check_times(r, &m, &body, sent, &served);
            check_same_as_client(r, &m, &client);
        }

        // An OpenAI-wire stream whose client did not ask for usage: usage
        // asked upstream, its chunk left out, the same record; then the
        // same answer cut at awkward places (after a first byte, inside a
        // UTF-8 character or a CRLF; a JSON body without a length).
        let asks = [
            Ask {
                include_usage: false,
                ..PLAIN
            },
            Ask {
                include_usage: false,
                cut: true,
                ..PLAIN
            },
        ];
        for ask in asks {
            if !ask.cut && !openai_stream {
                continue;
            }
            let (status, got, m, sent) = proxied(ask).await;
            let (n, served) = upstream.last();
            assert_eq!(status, r.status, "{what} {ask:?}: status");
            if openai_stream {
                let asked = upstream.body(n - 1);
                assert_eq!(asked["stream_options"]["include_usage"], true, "{what}");
                assert!(
                    got == without_usage_chunk(&body),
                    "{what} {ask:?}: not the stream without its usage chunk:\n{}",
                    String::from_utf8_lossy(&got)
                );
                stripped += usize::from(has_usage_chunk(&body));
            } else {
                assert!(got == body, "{what} {ask:?}: not the upstream's bytes");
            }
            check_expected(r, &m, &body);
            check_times(r, &m, &body, sent, &served);
            check_same_as_client(r, &m, &client);
        }
    }
    assert!(stripped >= 10, "only {stripped} usage chunks stripped");
    // Each recording plain and cut, streams and other routes more often.
    assert!(calls >= 2 * recordings.len() + 20, "only {calls} calls");
}
