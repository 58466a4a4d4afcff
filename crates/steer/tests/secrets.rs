//! Secrets never leak: API keys, database passwords and tokens, given as
//! recognisable fake values, must not appear in any log line (TRACE level,
//! every crate, `log` records included), any error's Display or Debug, any
//! Debug of a client, builder, sink or config, any recorded
//! [`AgentMetrics`], or a [`DeliveryReport`](steer::DeliveryReport) —
//! across successful calls, 401 and 500 answers (with providers that echo
//! the key back, as OpenAI does), a timeout, and sinks that cannot connect.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use steer::metrics::RetryPolicy;
use steer::testkit::RecordingSink;
use steer::{AgentMetrics, MetricsCollector, RetryConfig, SinkOptions, SteerClient, SteerError, StreamEvent};
use steer_sink_datadog::DatadogSink;
use steer_sink_influxdb::InfluxSink;
use steer_sink_postgres::PostgresSink;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const OPENAI_KEY: &str = "sk-FAKE-OPENAI-0123456789abcdef";
const ANTHROPIC_KEY: &str = "FAKE-ANTHROPIC-KEY-abcdef";
const XAI_KEY: &str = "FAKE-XAI-KEY";
const COMPAT_KEY: &str = "FAKE-COMPAT-KEY-4242";
const PG_PASSWORD: &str = "FAKEPW-pg-12345";
const INFLUX_TOKEN: &str = "FAKE-INFLUX-TOKEN-9876";
const INFLUX_PASSWORD: &str = "FAKE-INFLUX-PW-5555";
const DD_KEY: &str = "FAKE-DD-KEY-123";

const SECRETS: [&str; 8] = [
    OPENAI_KEY,
    ANTHROPIC_KEY,
    XAI_KEY,
    COMPAT_KEY,
    PG_PASSWORD,
    INFLUX_TOKEN,
    INFLUX_PASSWORD,
    DD_KEY,
];

/// Fails if `text` contains a secret, or a recognisable part of one.
fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} leaks `{s}`:\n{text}");
    }
    for part in [
        "0123456789abcdef",
        "KEY-abcdef",
        "pg-12345",
        "TOKEN-9876",
        "PW-5555",
        "KEY-4242",
    ] {
        assert!(
            !text.contains(part),
            "{what} leaks part of a secret (`{part}`):\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------
// Every log line of the test binary, at TRACE, into one buffer.

#[derive(Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Buffer {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Buffer(Arc::new(Mutex::new(Vec::new())));
        let writer = buf.clone();
        // Global (spawned tasks run on other threads); also captures `log`
        // records (tokio-postgres) through the subscriber's log bridge.
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only subscriber of this test binary");
        buf
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

// ---------------------------------------------------------------------------
// Calls against a local provider.

fn completion() -> serde_json::Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    })
}

fn anthropic_message() -> serde_json::Value {
    json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hi!"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 2}
    })
}

/// OpenAI's real 401 echoes (part of) the key; a careless server echoes it all.
fn unauthorized(key: &str) -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(json!({"error": {
        "message": format!("Incorrect API key provided: {key}. You can find your API key at https://example.invalid."),
        "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}))
}

fn openai_stream() -> String {
    let mut s = String::new();
    for c in [
        json!({"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
        json!({"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}),
        json!({"model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    ] {
        s.push_str(&format!("data: {c}\n\n"));
    }
    s.push_str("data: [DONE]\n\n");
    s
}

fn client(base: &str, sink: &RecordingSink) -> SteerClient {
    SteerClient::builder()
        .ignore_env()
        .sink(sink.clone())
        .openai_api_key(OPENAI_KEY)
        .anthropic_api_key(ANTHROPIC_KEY)
        .xai_api_key(XAI_KEY)
        .openai_base_url(format!("{base}/openai/v1"))
        .anthropic_base_url(format!("{base}/anthropic/v1"))
        .xai_base_url(format!("{base}/xai/v1"))
        .openai_compatible("local", format!("{base}/local/v1"), Some(COMPAT_KEY))
        .retry(
            RetryConfig::default()
                .max_retries(1)
                .initial_backoff(Duration::from_millis(1))
                .max_backoff(Duration::from_millis(5)),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn check_error(what: &str, e: &SteerError) {
    assert_clean(&format!("{what}: error Display"), &e.to_string());
    assert_clean(&format!("{what}: error Debug"), &format!("{e:?}"));
    assert_clean(&format!("{what}: error Debug (pretty)"), &format!("{e:#?}"));
    if let Some(m) = e.metrics() {
        assert_clean(
            &format!("{what}: error's record"),
            &serde_json::to_string(m).unwrap(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_calls_never_leak_keys() {
    logs();
    let server = MockServer::start().await;
    let ok = |p: &'static str, key: &str, body: serde_json::Value| {
        Mock::given(method("POST"))
            .and(path(p))
            .and(body_string_contains("scn-ok"))
            .and(header(
                if p.starts_with("/anthropic") {
                    "x-api-key"
                } else {
                    "authorization"
                },
                if p.starts_with("/anthropic") {
                    key.to_string()
                } else {
                    format!("Bearer {key}")
                }
                .as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
    };
    ok("/openai/v1/chat/completions", OPENAI_KEY, completion())
        .mount(&server)
        .await;
    ok("/xai/v1/chat/completions", XAI_KEY, completion())
        .mount(&server)
        .await;
    ok("/local/v1/chat/completions", COMPAT_KEY, completion())
        .mount(&server)
        .await;
    ok("/anthropic/v1/messages", ANTHROPIC_KEY, anthropic_message())
        .mount(&server)
        .await;
    for (p, key) in [
        ("/openai/v1/chat/completions", OPENAI_KEY),
        ("/xai/v1/chat/completions", XAI_KEY),
        ("/local/v1/chat/completions", COMPAT_KEY),
    ] {
        Mock::given(method("POST"))
            .and(path(p))
            .and(body_string_contains("scn-stream"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(openai_stream(), "text/event-stream"))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(p))
            .and(body_string_contains("scn-401"))
            .respond_with(unauthorized(key))
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/anthropic/v1/messages"))
        .and(body_string_contains("scn-401"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"type": "error", "error": {
            "type": "authentication_error", "message": format!("invalid x-api-key {ANTHROPIC_KEY}")}})),
        )
        .mount(&server)
        .await;
    // A 500 whose body echoes the key the server received.
    for (p, key) in [
        ("/openai/v1/chat/completions", OPENAI_KEY),
        ("/xai/v1/chat/completions", XAI_KEY),
        ("/local/v1/chat/completions", COMPAT_KEY),
        ("/anthropic/v1/messages", ANTHROPIC_KEY),
    ] {
        Mock::given(method("POST"))
            .and(path(p))
            .and(body_string_contains("scn-500"))
            .respond_with(ResponseTemplate::new(500).set_body_string(format!(
                "internal error; request had credentials {key} (debug dump)"
            )))
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(body_string_contains("scn-slow"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion())
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;

    let sink = RecordingSink::new();
    let c = client(&server.uri(), &sink);
    assert_clean("client Debug", &format!("{c:?} {c:#?}"));
    let b = SteerClient::builder()
        .ignore_env()
        .openai_api_key(OPENAI_KEY)
        .anthropic_api_key(ANTHROPIC_KEY)
        .xai_api_key(XAI_KEY)
        .openai_compatible("local", "http://127.0.0.1:1/v1", Some(COMPAT_KEY));
    assert_clean("builder Debug", &format!("{b:?} {b:#?}"));

    let models = [
        "openai/gpt-4o-mini",
        "anthropic/claude-sonnet-4-5",
        "xai/grok-3-mini",
        "local/llama3",
    ];
    let req = |scenario: &str| {
        let r = steer::Request::prompt(format!("Hello scn-{scenario}")).tag("team", "secrets");
        // The slow answer comes after 3 s: a timeout.
        if scenario == "slow" {
            r.timeout(Duration::from_millis(300))
        } else {
            r
        }
    };
    let started = Instant::now();
    let mut calls = 0;
    for model in models {
        let resp = c
            .generate(req("ok"), model)
            .await
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        assert_eq!(resp.text, "Hi!");
        assert_clean("response Debug", &format!("{resp:?}"));
        calls += 1;
        for scenario in ["401", "500", "slow"] {
            let e = c.generate(req(scenario), model).await.unwrap_err();
            check_error(&format!("{model} {scenario}"), &e);
            calls += 1;
        }
        if !model.starts_with("anthropic") {
            let mut s = c.stream(req("stream"), model).await.unwrap();
            assert_clean("stream Debug", &format!("{s:?}"));
            let mut done = false;
            while let Some(ev) = s.next().await {
                if let StreamEvent::Done { .. } = ev.unwrap() {
                    done = true;
                }
            }
            assert!(done, "{model}: the stream completed");
            calls += 1;
            let e = c.stream(req("401"), model).await.unwrap_err();
            check_error(&format!("{model} stream 401"), &e);
            calls += 1;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );

    c.metrics().flush().await;
    let records: Vec<AgentMetrics> = sink.records();
    assert_eq!(records.len(), calls, "one record per call");
    assert!(records
        .iter()
        .any(|r| r.error_class == Some(steer::ErrorClass::Authentication)));
    assert!(records
        .iter()
        .any(|r| r.error_class == Some(steer::ErrorClass::Timeout)));
    assert!(records
        .iter()
        .any(|r| r.error_class == Some(steer::ErrorClass::ServerError)));
    for r in &records {
        assert_clean("recorded AgentMetrics", &serde_json::to_string(r).unwrap());
        assert_clean("recorded AgentMetrics Debug", &format!("{r:?}"));
    }
    // What was sent did carry the keys (so the scan above means something).
    let sent = server.received_requests().await.unwrap();
    let auth: Vec<String> = sent
        .iter()
        .flat_map(|r| {
            ["authorization", "x-api-key"]
                .into_iter()
                .filter_map(|h| r.headers.get(h).map(|v| v.to_str().unwrap().to_string()))
        })
        .collect();
    for k in [OPENAI_KEY, ANTHROPIC_KEY, XAI_KEY, COMPAT_KEY] {
        assert!(auth.iter().any(|a| a.contains(k)), "{k} was sent");
    }

    let logs = log_text();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "the subscriber captured logs"
    );
    assert_clean("logs", &logs);
}

// ---------------------------------------------------------------------------
// Sinks with secrets pointing at a closed port.

fn quick() -> SinkOptions {
    SinkOptions::default().linger(Duration::from_millis(5)).retry(
        RetryPolicy::default()
            .max_attempts(3)
            .initial_backoff(Duration::from_millis(10))
            .max_backoff(Duration::from_millis(50))
            .attempt_timeout(Duration::from_millis(500))
            .batch_deadline(Duration::from_secs(2)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_that_cannot_connect_never_leak_secrets() {
    logs();
    let pg_url = format!("postgres://steer:{PG_PASSWORD}@127.0.0.1:1/metrics?connect_timeout=1");
    let pg_builder = PostgresSink::builder(&pg_url).connect_timeout(Duration::from_millis(500));
    assert_clean(
        "PostgresSinkBuilder Debug",
        &format!("{pg_builder:?} {pg_builder:#?}"),
    );
    let pg = pg_builder.build().unwrap();
    let pg2 = PostgresSink::builder("postgres://steer@127.0.0.1:1/metrics")
        .password(PG_PASSWORD)
        .connect_timeout(Duration::from_millis(500))
        .name("postgres-2")
        .build()
        .unwrap();

    let influx_v1_builder = InfluxSink::builder("http://127.0.0.1:1")
        .database("steer")
        .credentials("steer", INFLUX_PASSWORD)
        .timeout(Duration::from_millis(500))
        .name("influx-v1");
    assert_clean(
        "InfluxConfigBuilder Debug",
        &format!("{influx_v1_builder:?} {influx_v1_builder:#?}"),
    );
    let cfg = influx_v1_builder.build().unwrap();
    assert_clean("InfluxConfig Debug", &format!("{cfg:?}"));
    let influx_v1 = InfluxSink::new(cfg).unwrap();
    let influx_v2 = InfluxSink::new(
        InfluxSink::builder("http://127.0.0.1:1")
            .org("acme")
            .bucket("llm")
            .token(INFLUX_TOKEN)
            .timeout(Duration::from_millis(500))
            .name("influx-v2")
            .build()
            .unwrap(),
    )
    .unwrap();
    let influx_url =
        InfluxSink::from_url(&format!("influxdb://steer:{INFLUX_PASSWORD}@127.0.0.1:1/steer")).unwrap();

    let dd_builder = DatadogSink::builder()
        .site("http://127.0.0.1:1")
        .api_key(DD_KEY)
        .host("test-host")
        .timeout(Duration::from_millis(500));
    assert_clean(
        "DatadogSinkBuilder Debug",
        &format!("{dd_builder:?} {dd_builder:#?}"),
    );
    let dd = dd_builder.build().unwrap();
    assert_clean("DatadogConfig Debug", &format!("{:?}", dd.config()));

    for (what, dbg) in [
        ("PostgresSink", format!("{pg:?} {pg2:?} {:?}", pg.store())),
        (
            "InfluxSink",
            format!(
                "{influx_v1:?} {influx_v2:?} {influx_url:?} {}",
                influx_url.write_url()
            ),
        ),
        ("DatadogSink", format!("{dd:?}")),
    ] {
        assert_clean(&format!("{what} Debug"), &dbg);
    }

    let collector = MetricsCollector::builder()
        .sink_with_options(pg, quick())
        .sink_with_options(pg2, quick())
        .sink_with_options(influx_v1, quick())
        .sink_with_options(influx_v2, quick())
        .sink_with_options(influx_url, quick())
        .sink_with_options(dd, quick())
        .build()
        .unwrap();
    assert_clean("collector Debug", &format!("{collector:?}"));
    for i in 0..5 {
        let mut m = AgentMetrics::new("openai", "gpt-4o-mini").with_tokens(10, i);
        m.latency_ms = 12.5;
        collector.record(m);
    }
    let started = Instant::now();
    let report = collector.flush_timeout(Duration::from_secs(4)).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "flush took {:?}",
        started.elapsed()
    );
    let shown = format!("{report}");
    assert_clean("DeliveryReport Display", &shown);
    assert_clean("DeliveryReport Debug", &format!("{report:?}"));
    assert_clean("CollectorStats Debug", &format!("{:?}", collector.stats()));
    assert!(
        shown.contains("influx-v1") && shown.contains("postgres-2"),
        "every sink reported:\n{shown}"
    );
    let report = collector.shutdown(Duration::from_secs(2)).await;
    assert_clean("shutdown DeliveryReport", &format!("{report} {report:?}"));

    // Invalid configurations: the error names the problem, not the secret.
    let errors = [
        PostgresSink::builder(&format!("postgres://steer:{PG_PASSWORD}@[::1/metrics"))
            .build()
            .map(|_| ())
            .map_err(|e| format!("{e} {e:?}")),
        InfluxSink::from_url(&format!("influxdb://steer:{INFLUX_PASSWORD}@[::1/db"))
            .map(|_| ())
            .map_err(|e| format!("{e} {e:?}")),
        InfluxSink::from_url(&format!("ftp://steer:{INFLUX_PASSWORD}@127.0.0.1/db"))
            .map(|_| ())
            .map_err(|e| format!("{e} {e:?}")),
        InfluxSink::builder(format!("ftp://steer:{INFLUX_PASSWORD}@127.0.0.1:1"))
            .database("d")
            .build()
            .map(|_| ())
            .map_err(|e| format!("{e} {e:?}")),
        DatadogSink::builder()
            .site("http://[::1")
            .api_key(DD_KEY)
            .build()
            .map(|_| ())
            .map_err(|e| format!("{e} {e:?}")),
    ];
    for (i, r) in errors.iter().enumerate() {
        let e = r.as_ref().expect_err("an invalid configuration is an error");
        assert_clean(&format!("configuration error #{i}"), e);
    }

    let logs = log_text();
    assert!(
        logs.contains("127.0.0.1:1") || logs.contains("onnection refused"),
        "the failures were logged"
    );
    assert_clean("logs", &logs);
}

/// Formerly known leaks (see docs/fuzzing.md): a password in the URL
/// userinfo of an InfluxDB base URL (`http://user:password@host:8086`) is
/// shown by `InfluxSink`'s Debug and `write_url()`, and by every delivery
/// error ("request to http://user:password@.../write failed"), hence in logs
/// and the DeliveryReport; a password in a Datadog site URL (a proxy) is
/// shown by `DatadogSink`'s and `DatadogConfig`'s Debug. Fix in the sink
/// crates: strip or redact the userinfo (InfluxDB: turn it into the
/// credentials) before keeping or printing the URL. Both fixed: InfluxDB
/// moves URL credentials into basic auth and strips them from the URL;
/// Datadog refuses a site URL with credentials without repeating them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_in_sink_url_userinfo_are_not_shown() {
    logs();
    let influx = InfluxSink::new(
        InfluxSink::builder(format!("http://steer:{INFLUX_PASSWORD}@127.0.0.1:1"))
            .database("steer")
            .timeout(Duration::from_millis(500))
            .name("influx-userinfo")
            .build()
            .unwrap(),
    )
    .unwrap();
    assert_clean("InfluxSink Debug", &format!("{influx:?}"));
    assert_clean("InfluxSink::write_url", influx.write_url());
    // A Datadog site URL with credentials is refused, and the refusal
    // does not repeat them.
    let err = DatadogSink::builder()
        .site(format!("http://proxy:{DD_KEY}@127.0.0.1:1"))
        .api_key("not-the-secret")
        .host("test-host")
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap_err();
    assert_clean("Datadog site error", &format!("{err} {err:?}"));
    let err = DatadogSink::builder()
        .site(format!("weird:{DD_KEY}@site"))
        .api_key("k")
        .build()
        .unwrap_err();
    assert_clean("Datadog unknown site error", &format!("{err} {err:?}"));
    let collector = MetricsCollector::builder()
        .sink_with_options(influx, quick())
        .build()
        .unwrap();
    collector.record(AgentMetrics::new("openai", "gpt-4o-mini").with_tokens(1, 1));
    let report = collector.flush_timeout(Duration::from_secs(3)).await;
    assert_clean("DeliveryReport", &format!("{report} {report:?}"));
    assert_clean("logs", &log_text());
}
