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

use fake::{error, event, exception, stream, Fake};

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
