//! AWS Bedrock: the fake endpoint (`tests/bedrock/fake.rs`) is faithful to
//! the wire format — the real SDK, pointed at it with an endpoint override
//! and static test credentials, reads its Converse answers, ConverseStream
//! frames, exception frames and `x-amzn-ErrorType` errors — and Bedrock
//! calls are priced from the community map with cache tokens.
//!
//! The provider itself (`src/providers/bedrock`) is tested through this same
//! fake in its unit tests: usage with cache tokens, stop reasons, tool use,
//! streaming TTFT order, throttling (429) and access denied (403).
#![cfg(feature = "bedrock")]
#![allow(clippy::unwrap_used)]

#[path = "bedrock/fake.rs"]
mod fake;

use aws_sdk_bedrockruntime::config::{retry::RetryConfig, BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ConversationRole, ConverseOutput, ConverseStreamOutput, Message,
    StopReason,
};
use serde_json::json;
use steer::pricing::PriceTable;
use steer::Usage;

use fake::{error, event, exception, stream, Fake, Reply};

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn sdk(f: &Fake) -> aws_sdk_bedrockruntime::Client {
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&f.url)
        .credentials_provider(Credentials::new("AKIDTEST", "test-secret", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

fn hi() -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("hi".into()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_sdk_reads_the_fake_converse_answer_and_errors() {
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "Hello!"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 3015,
                  "cacheReadInputTokens": 1800, "cacheWriteInputTokens": 1200},
        "metrics": {"latencyMs": 410}
    });
    let f = Fake::start(vec![
        fake::json(&answer),
        error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
    ])
    .await;
    let c = sdk(&f);
    let out = c.converse().model_id(MODEL).messages(hi()).send().await.unwrap();
    assert_eq!(out.stop_reason(), &StopReason::EndTurn);
    let u = out.usage().unwrap();
    assert_eq!(
        (
            u.input_tokens(),
            u.cache_read_input_tokens(),
            u.cache_write_input_tokens()
        ),
        (12, Some(1800), Some(1200))
    );
    match out.output() {
        Some(ConverseOutput::Message(m)) => assert_eq!(m.content()[0].as_text().unwrap(), "Hello!"),
        other => panic!("{other:?}"),
    }
    let e = c
        .converse()
        .model_id(MODEL)
        .messages(hi())
        .send()
        .await
        .unwrap_err();
    let se = e.as_service_error().unwrap();
    assert!(se.is_throttling_exception());
    assert_eq!(se.code(), Some("ThrottlingException"));
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 429);
    assert_eq!(
        f.requests()[0].path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
}

#[tokio::test]
async fn the_sdk_decodes_the_fake_event_stream_frames() {
    let f = Fake::start(vec![stream(vec![
        event("messageStart", &json!({"role": "assistant", "p": "abcdef"})),
        event("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}, "p": "ab"})),
        event("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "lo"}})),
        event("contentBlockStop", &json!({"contentBlockIndex": 0})),
        event("messageStop", &json!({"stopReason": "end_turn"})),
        event(
            "metadata",
            &json!({"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}, "metrics": {"latencyMs": 99}}),
        ),
        exception("throttlingException", "Too many tokens, please wait before trying again."),
    ])])
    .await;
    let mut out = sdk(&f)
        .converse_stream()
        .model_id(MODEL)
        .messages(hi())
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    let mut kinds = Vec::new();
    let err = loop {
        match out.stream.recv().await {
            Ok(Some(ev)) => {
                if let ConverseStreamOutput::ContentBlockDelta(d) = &ev {
                    if let Some(ContentBlockDelta::Text(t)) = d.delta() {
                        text.push_str(t);
                    }
                }
                kinds.push(match ev {
                    ConverseStreamOutput::MessageStart(_) => "messageStart",
                    ConverseStreamOutput::ContentBlockDelta(_) => "contentBlockDelta",
                    ConverseStreamOutput::ContentBlockStop(_) => "contentBlockStop",
                    ConverseStreamOutput::MessageStop(_) => "messageStop",
                    ConverseStreamOutput::Metadata(m) => {
                        assert_eq!(m.usage().unwrap().total_tokens(), 7);
                        "metadata"
                    }
                    _ => "other",
                });
            }
            Ok(None) => panic!("the exception frame was not read"),
            Err(e) => break e,
        }
    };
    assert_eq!(text, "Hello");
    assert_eq!(
        kinds,
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    assert!(err.as_service_error().unwrap().is_throttling_exception());
}

#[test]
fn bedrock_models_are_priced_with_cache_tokens() {
    let t = PriceTable::builtin();
    for m in [
        MODEL,
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "amazon.titan-embed-text-v2:0",
        "cohere.embed-english-v3",
    ] {
        assert_eq!(t.provider_of(m), Some("bedrock"), "{m}");
    }
    // Claude 3.5 Sonnet on Bedrock: $3 input, $15 output, $0.30 cache reads,
    // $3.75 cache writes per 1M tokens. The normalised usage of a call with
    // inputTokens 12, cacheRead 1800, cacheWrite 1200, outputTokens 17:
    let usage = Usage {
        input_tokens: 3012,
        output_tokens: 17,
        cached_tokens: 1800,
        cache_write_tokens: Some(1200),
        ..Usage::default()
    };
    let want = (12.0 * 3.0 + 1800.0 * 0.30 + 1200.0 * 3.75 + 17.0 * 15.0) / 1e6;
    let got = t.cost(MODEL, &usage).unwrap();
    assert!((got - want).abs() < 1e-12, "{got} != {want}");
    // Titan text embeddings v2: $0.02 per 1M input tokens.
    let emb = Usage {
        input_tokens: 1_000_000,
        ..Usage::default()
    };
    assert!((t.cost("amazon.titan-embed-text-v2:0", &emb).unwrap() - 0.02).abs() < 1e-12);
}

// ---- Through the client: `bedrock/<model>` with `SteerClientBuilder::bedrock_endpoint`.

fn client(f: &Fake, sink: &steer::testkit::RecordingSink) -> steer::SteerClient {
    steer::SteerClient::builder()
        .ignore_env()
        .sink(sink.clone())
        .bedrock_endpoint(&f.url, "us-east-1", "AKIDTEST", "test-secret")
        .retry(
            steer::RetryConfig::default()
                .initial_backoff(std::time::Duration::from_millis(1))
                .max_backoff(std::time::Duration::from_millis(5)),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn client_generate_retries_throttling_and_records_cache_tokens_and_cost() {
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "Hello!"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 3015,
                  "cacheReadInputTokens": 1800, "cacheWriteInputTokens": 1200},
        "metrics": {"latencyMs": 410}
    });
    let f = Fake::start(vec![
        error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        fake::json(&answer),
        error(
            403,
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
    ])
    .await;
    let sink = steer::testkit::RecordingSink::new();
    let c = client(&f, &sink);
    let r = c.generate("hi", &format!("bedrock/{MODEL}")).await.unwrap();
    assert_eq!(r.text, "Hello!");
    let e = c.generate("hi", &format!("bedrock/{MODEL}")).await.unwrap_err();
    assert_eq!(e.class(), steer::ErrorClass::PermissionDenied);
    c.metrics().flush().await;
    let records = sink.records();
    assert_eq!(records.len(), 2, "one record per call");
    let m = &records[0];
    assert_eq!((m.provider.as_str(), m.model.as_str()), ("bedrock", MODEL));
    assert_eq!(m.retries, 1, "the throttled attempt was retried");
    assert_eq!(m.finish_reason.as_deref(), Some("end_turn"));
    assert_eq!(
        (m.input_tokens, m.cached_tokens, m.cache_write_tokens),
        (3012, 1800, Some(1200))
    );
    // anthropic.claude-3-5-sonnet-20240620-v1:0: 3 in, 0.30 cache read, 3.75 cache write, 15 out:
    // 12*3 + 1800*0.3 + 1200*3.75 + 3*15 = 36 + 540 + 4500 + 45 = 5121 per 1e6
    assert!((m.cost_usd.unwrap() - 5121e-6).abs() < 1e-12, "{:?}", m.cost_usd);
    assert_eq!(records[1].error_class, Some(steer::ErrorClass::PermissionDenied));
    let req = &f.requests()[1];
    assert!(req.path.contains("/converse"), "{}", req.path);
}

#[tokio::test]
async fn client_stream_ttft_and_usage() {
    let f = Fake::start(vec![Reply::Stream {
        frames: vec![
            (std::time::Duration::from_millis(50), event("messageStart", &json!({"role": "assistant"}))),
            (
                std::time::Duration::from_millis(60),
                event("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}})),
            ),
            (
                std::time::Duration::from_millis(5),
                event("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "lo"}})),
            ),
            (std::time::Duration::ZERO, event("contentBlockStop", &json!({"contentBlockIndex": 0}))),
            (std::time::Duration::ZERO, event("messageStop", &json!({"stopReason": "max_tokens"}))),
            (
                std::time::Duration::ZERO,
                event("metadata", &json!({"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}, "metrics": {"latencyMs": 99}})),
            ),
        ],
    }])
    .await;
    let sink = steer::testkit::RecordingSink::new();
    let c = client(&f, &sink);
    let r = c
        .stream("hi", &format!("bedrock/{MODEL}"))
        .await
        .unwrap()
        .collect_response()
        .await
        .unwrap();
    assert_eq!(r.text, "Hello");
    c.metrics().flush().await;
    let m = &sink.records()[0];
    assert_eq!(m.method, steer::Method::Stream);
    assert_eq!(m.finish_reason.as_deref(), Some("max_tokens"));
    assert_eq!((m.input_tokens, m.output_tokens), (5, 2));
    let ttft = m.ttft_ms.unwrap();
    assert!(
        (105.0..300.0).contains(&ttft),
        "TTFT {ttft} ms: the first text delta came after 110 ms"
    );
}

#[tokio::test]
async fn client_embeddings_through_invoke_model() {
    let f = Fake::start(vec![fake::json(
        &json!({"embedding": [0.1, 0.2, 0.3], "inputTextTokenCount": 7}),
    )])
    .await;
    let sink = steer::testkit::RecordingSink::new();
    let c = client(&f, &sink);
    let r = c
        .embed("hello", "bedrock/amazon.titan-embed-text-v2:0")
        .await
        .unwrap();
    assert_eq!(r.embeddings, vec![vec![0.1, 0.2, 0.3]]);
    c.metrics().flush().await;
    let m = &sink.records()[0];
    assert_eq!((m.method, m.input_tokens), (steer::Method::Embeddings, 7));
    assert!(m.cost_usd.is_some_and(|c| c > 0.0), "{:?}", m.cost_usd);
}
