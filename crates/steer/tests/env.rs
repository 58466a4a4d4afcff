//! Keys and base URLs from the environment (its own test binary: the
//! environment is process-wide).
#![allow(clippy::unwrap_used)]

use serde_json::json;
use steer::SteerClient;
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn keys_and_base_urls_come_from_the_environment_unless_set_on_the_builder() {
    let server = MockServer::start().await;
    let ok = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
    Mock::given(path("/oa/chat/completions"))
        .and(header("authorization", "Bearer sk-env-openai-0001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok.clone()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/oa/chat/completions"))
        .and(header("authorization", "Bearer sk-builder-0002"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok.clone()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/x/chat/completions"))
        .and(header("authorization", "Bearer xai-env-0003"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/an/messages"))
        .and(header("x-api-key", "sk-ant-env-0004"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1}})))
        .expect(1)
        .mount(&server)
        .await;
    std::env::set_var("OPENAI_API_KEY", "sk-env-openai-0001");
    std::env::set_var("OPENAI_BASE_URL", format!("{}/oa", server.uri()));
    std::env::set_var("XAI_API_KEY", "xai-env-0003");
    std::env::set_var("XAI_BASE_URL", format!("{}/x", server.uri()));
    std::env::set_var("ANTHROPIC_API_KEY", "sk-ant-env-0004");
    std::env::set_var("ANTHROPIC_BASE_URL", format!("{}/an", server.uri()));

    let client = SteerClient::builder().build().unwrap();
    client.generate("hi", "gpt-4o").await.unwrap();
    client.generate("hi", "grok-3").await.unwrap();
    client.generate("hi", "claude-haiku-4-5").await.unwrap();
    let dbg = format!("{client:?}");
    for k in ["sk-env-openai-0001", "xai-env-0003", "sk-ant-env-0004"] {
        assert!(!dbg.contains(k), "Debug leaks {k}");
    }

    let client = SteerClient::builder()
        .openai_api_key("sk-builder-0002")
        .build()
        .unwrap();
    client.generate("hi", "gpt-4o").await.unwrap();

    // ignore_env: no key at all.
    let client = SteerClient::builder().ignore_env().build().unwrap();
    let err = client.generate("hi", "gpt-4o").await.unwrap_err();
    assert!(matches!(err, steer::SteerError::MissingApiKey(_)));
    server.verify().await;
}
