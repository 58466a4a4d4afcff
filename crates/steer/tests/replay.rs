//! Real recorded provider responses (`tests/recordings/`, see its README),
//! replayed by a local HTTP server to the real client: every field of the
//! record, the cost against hand-computed figures, and TTFT against the
//! moment the server sent the first output event.
//!
//! Streams are replayed event by event as they were recorded, with a pause
//! before the first event and between events, so time to first token is
//! measured, not assumed.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "recordings/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Harness, KEY};
use corpus::{check_record, dir, first_output_event, manifest, Recording};
use steer::{AgentMetrics, Request, RetryConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Pause before the first event of a stream.
const FIRST_EVENT_DELAY: Duration = Duration::from_millis(120);
/// Pause between two events of a stream.
const EVENT_GAP: Duration = Duration::from_millis(40);

/// The SSE events of a recorded stream, as the bytes of each event.
fn split_events(body: &str) -> Vec<String> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| format!("{e}\n\n"))
        .collect()
}

/// What the replay server did for one request.
#[derive(Debug, Default, Clone)]
struct Served {
    /// Offsets from the request's arrival at which each event was written.
    sent_at: Vec<Duration>,
}

/// A one-recording HTTP/1.1 server: answers every request with `status`
/// and `body` (as SSE events when `stream`), then closes the connection.
async fn serve(status: u16, body: String, stream: bool) -> (String, Arc<Mutex<Served>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(Mutex::new(Served::default()));
    let log = served.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            let log = log.clone();
            tokio::spawn(async move {
                // Read the request head and its body.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap_or(0));
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let arrived = Instant::now();
                let content_type = if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                };
                let reason = match status {
                    200 => "OK",
                    400 => "Bad Request",
                    401 => "Unauthorized",
                    429 => "Too Many Requests",
                    _ => "Error",
                };
                let mut resp = format!(
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\nconnection: close\r\n"
                );
                if stream {
                    resp.push_str("cache-control: no-cache\r\n\r\n");
                    sock.write_all(resp.as_bytes()).await.unwrap();
                    sock.flush().await.unwrap();
                    for (i, ev) in split_events(&body).into_iter().enumerate() {
                        tokio::time::sleep(if i == 0 { FIRST_EVENT_DELAY } else { EVENT_GAP }).await;
                        log.lock().unwrap().sent_at.push(arrived.elapsed());
                        if sock.write_all(ev.as_bytes()).await.is_err() {
                            return;
                        }
                        let _ = sock.flush().await;
                    }
                } else {
                    resp.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
                    let _ = sock.write_all(resp.as_bytes()).await;
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), served)
}

/// The model to ask for: the one the recording answered as, routed to its
/// provider (for Azure, a deployment: the model is what the answer reports).
fn requested_model(r: &Recording) -> String {
    let model = r.expected["model"].as_str().unwrap_or("gpt-4o");
    match r.provider.as_str() {
        "azure" => "azure/prod-deployment".to_string(),
        "gemini" if r.expected["model"].is_null() => "gemini/gemini-2.5-flash".to_string(),
        p => format!("{p}/{model}"),
    }
}

async fn replay(r: &Recording) -> (AgentMetrics, Option<Duration>) {
    let body = std::fs::read_to_string(dir().join(&r.file)).unwrap();
    let (base, served) = serve(r.status, body.clone(), r.stream).await;
    let h = Harness::with_base(&base, |b| {
        b.xai_base_url(format!("{base}/v1"))
            .base_url("gemini", format!("{base}/v1beta"))
            .gemini_api_key(KEY)
            .azure_openai(base.clone(), KEY)
            .base_url("ollama", format!("{base}/v1"))
            .retry(RetryConfig::default().max_retries(0))
    });
    let req = Request::prompt("replay").max_tokens(1024);
    let model = requested_model(r);
    let _ = if r.stream {
        match h.client.stream(req, &model).await {
            Ok(s) => s.collect_response().await.map(|_| ()),
            Err(e) => Err(e),
        }
    } else {
        h.client.generate(req, &model).await.map(|_| ())
    };
    let m = h.only_record().await;
    let expected_ttft = if r.stream {
        first_output_event(r, &split_events(&body)).map(|i| served.lock().unwrap().sent_at[i])
    } else {
        None
    };
    (m, expected_ttft)
}

/// Hand-computed costs (USD): tokens x USD per 1M tokens of the built-in
/// table (the community map snapshot), / 1e6.
fn hand_computed_costs() -> BTreeMap<&'static str, f64> {
    BTreeMap::from([
        // gpt-4o-2024-08-06: 2.50 in, 10.00 out. 14*2.5 + 30*10 = 335
        ("openai_chat_basic.json", 335.0e-6),
        // o3-mini-2025-01-31: 1.10 in, 4.40 out (reasoning inside output). 7*1.1 + 87*4.4 = 390.5
        ("openai_chat_o3_mini_reasoning.json", 390.5e-6),
        // gpt-4o-2024-08-06: 68*2.5 + 11*10 = 280
        ("openai_chat_tool_calls.json", 280.0e-6),
        // gpt-4o-mini-2024-07-18: 0.15 in, 0.60 out. 53*0.15 + 15*0.6 = 16.95
        ("openai_chat_stream_tool_call_usage.sse", 16.95e-6),
        // 78*0.15 + 9*0.6 = 17.1
        ("openai_chat_stream_text_usage.sse", 17.1e-6),
        // grok-3-mini: 0.30 in, 0.075 cached, 0.50 out; reasoning (189) outside completion_tokens.
        // (291-244)*0.3 + 244*0.075 + (26+189)*0.5 = 14.1 + 18.3 + 107.5 = 139.9
        ("xai_chat_tool_call_reasoning.json", 139.9e-6),
        // (12-11)*0.3 + 11*0.075 + (1+290)*0.5 = 0.3 + 0.825 + 145.5 = 146.625
        // (the response itself says cost_in_usd_ticks 1466250 = $0.000146625)
        ("xai_chat_stream_reasoning_usage.sse", 146.625e-6),
        // claude-sonnet-4-5: 3 in, 0.30 cache read, 3.75 5-minute write, 15 out.
        // 3*3 + 1111*0.3 + 418*3.75 + 33*15 = 9 + 333.3 + 1567.5 + 495 = 2404.8
        ("anthropic_cache_write_and_read.json", 2404.8e-6),
        // claude-sonnet-4-6: 1-hour writes at 6.00 (2x input).
        // 13*3 + 3913*6 + 4*15 = 39 + 23478 + 60 = 23577 (at the 5-minute rate: 14772.75, 37% less)
        ("anthropic_stream_cache_write_1h.sse", 23577.0e-6),
        // claude-sonnet-4-20250514 (claude-sonnet-4): 43*3 + 277*15 = 129 + 4155 = 4284
        ("anthropic_stream_thinking.sse", 4284.0e-6),
        // 711*3 + 23*15 = 2133 + 345 = 2478
        ("anthropic_tool_use.json", 2478.0e-6),
        // 565*3 + 48*15 = 1695 + 720 = 2415
        ("anthropic_stream_tool_use.sse", 2415.0e-6),
        // claude-opus-5: 5 in, 25 out. 51*5 + 1699*25 = 255 + 42475 = 42730
        ("anthropic_thinking_opus5.json", 42730.0e-6),
        // claude-fable-5: 10 in, 50 out. 18*10 + 5*50 = 430 (refused, still billed)
        ("anthropic_refusal.json", 430.0e-6),
        ("anthropic_stream_refusal.sse", 430.0e-6),
        // gemini-2.5-flash: 0.30 in, 2.50 out. 15*0.3 + 5*2.5 = 4.5 + 12.5 = 17
        ("gemini_max_tokens.json", 17.0e-6),
        // thoughts are billed as output: 18*0.3 + (80+35)*2.5 = 5.4 + 287.5 = 292.9
        ("gemini_stream_text_usage.sse", 292.9e-6),
        // a blocked prompt is billed for its input: 14*0.3 = 4.2
        ("gemini_safety_blocked.json", 4.2e-6),
        // Azure deployment answering as gpt-4o-mini-2024-07-18 (azure/ entry: 0.15 in, 0.60 out):
        // 149*0.15 + 39*0.6 = 22.35 + 23.4 = 45.75
        ("azure_chat_text.json", 45.75e-6),
        // 75*0.15 + 54*0.6 = 11.25 + 32.4 = 43.65
        ("azure_chat_tool_calls.json", 43.65e-6),
        // answering as gpt-4, no azure/ entry: OpenAI's gpt-4 (30 in, 60 out): 15*30 + 5*60 = 750
        ("azure_chat_stream_usage.sse", 750.0e-6),
        // Server-side compaction, claude-sonnet-4-6: both samplings are billed.
        // (100 + 180)*3 + 55096*3.75 (5-minute write) + (82 + 8)*15 = 840 + 206610 + 1350 = 208800
        ("anthropic_compaction_iterations.json", 208800.0e-6),
        // (100 + 181)*3 + 55096*0.30 (cache read) + (83 + 8)*15 = 843 + 16528.8 + 1365 = 18736.8
        ("anthropic_stream_compaction_iterations.sse", 18736.8e-6),
        // claude-sonnet-5: 2 in, 10 out; the advisor's own tokens (another model) not included.
        // 2390*2 + 121*10 = 4780 + 1210 = 5990
        ("anthropic_advisor_iterations.json", 5990.0e-6),
        // claude-sonnet-4-5-20250929: 92*3 + 189*15 = 276 + 2835 = 3111
        ("anthropic_stream_redacted_thinking.sse", 3111.0e-6),
        // gpt-5-2025-08-07: 1.25 in, 10 out. 13*1.25 + 11*10 = 16.25 + 110 = 126.25
        ("openai_chat_stream_moderation_after_usage.sse", 126.25e-6),
        // gemini-2.5-pro: 1.25 in, 10 out; thoughts are the whole output. 15*1.25 + 2*10 = 38.75
        ("gemini_max_tokens_thoughts_only.json", 38.75e-6),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recording_gives_the_exact_record() {
    let costs = hand_computed_costs();
    let recordings = manifest();
    assert!(recordings.len() >= 15, "the corpus shrank");
    let mut costed = 0;
    for r in &recordings {
        let (m, expected_ttft) = replay(r).await;
        let what = &r.file;
        let body = std::fs::read(dir().join(&r.file)).unwrap();
        if check_record(r, &m, &body, KEY).is_none() {
            continue;
        }
        if let Some(want) = costs.get(r.file.as_str()) {
            let got = m.cost_usd.unwrap_or_else(|| panic!("{what}: no cost"));
            assert!(
                (got - want).abs() < 1e-12,
                "{what}: cost {got} != hand-computed {want}"
            );
            costed += 1;
        }
        if let Some(want) = expected_ttft {
            let got =
                Duration::from_secs_f64(m.ttft_ms.unwrap_or_else(|| panic!("{what}: no TTFT")) / 1000.0);
            assert!(
                got + Duration::from_millis(2) >= want && got <= want + Duration::from_millis(25),
                "{what}: TTFT {got:?}, first output event sent at {want:?}"
            );
        } else {
            assert_eq!(m.ttft_ms, None, "{what}: no TTFT without a streamed output");
        }
    }
    assert!(costed >= 10, "only {costed} costs checked");
}
