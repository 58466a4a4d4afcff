//! Routing to every provider preset of steer (issue 17): OpenAI-compatible
//! presets, Azure OpenAI deployments, Gemini over the OpenAI wire and its
//! native wire, and Bedrock refused with a clear error.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use steer_metrics::Method;

async fn post(url: &str, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = reqwest::Client::new().post(url).json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

const COMPATIBLE: [&str; 9] = [
    "ollama",
    "vllm",
    "lmstudio",
    "groq",
    "deepseek",
    "mistral",
    "openrouter",
    "together",
    "xai",
];

fn all_at(up: &FakeUpstream) -> steer_proxy::ProxyConfigBuilder {
    let mut b = config_for(up)
        .base_url("azure", up.root())
        .base_url("gemini", format!("{}/v1beta", up.root()));
    for p in COMPATIBLE {
        b = b.base_url(p, up.url());
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_openai_compatible_preset_is_routed_by_prefix() {
    let up = fake_upstream().await;
    let proxy = start_proxy(all_at(&up)).await;
    for p in COMPATIBLE {
        let resp = post(
            &format!("{}/v1/chat/completions", proxy.url()),
            json!({"model": format!("{p}/some-model:7b"), "messages": [], "stream": true}),
            &[("authorization", "Bearer sk-client-key-123456")],
        )
        .await;
        assert_eq!(resp.status(), 200, "{p}");
        let _ = resp.bytes().await.unwrap();
    }
    let resp = post(
        &format!("{}/v1/embeddings", proxy.url()),
        json!({"model": "ollama/nomic-embed-text", "input": ["a", "b"]}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let got = up.received();
    assert_eq!(got.len(), COMPATIBLE.len() + 1);
    for g in &got[..COMPATIBLE.len()] {
        assert_eq!(g.path, "/v1/chat/completions");
        assert_eq!(g.body["model"], "some-model:7b", "prefix removed");
        assert_eq!(g.body["stream_options"]["include_usage"], true);
    }
    assert_eq!(got[COMPATIBLE.len()].path, "/v1/embeddings");
    assert_eq!(got[COMPATIBLE.len()].body["model"], "nomic-embed-text");
    let records = proxy.wait_records(COMPATIBLE.len() + 1).await;
    let mut providers: Vec<_> = records.iter().map(|m| m.provider.as_str()).collect();
    providers.sort_unstable();
    let mut want: Vec<_> = COMPATIBLE.iter().copied().chain(["ollama"]).collect();
    want.sort_unstable();
    assert_eq!(providers, want);
    assert!(records
        .iter()
        .all(|m| m.error_class.is_none() && m.input_tokens > 0));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_deployments_with_the_proxy_key_and_api_version() {
    let up = fake_upstream().await;
    let proxy = start_proxy(
        all_at(&up)
            .provider_key("azure", "azure-key-0123456789")
            .provider_keys("pk-proxy-secret-1"),
    )
    .await;
    let url = format!("{}/v1/chat/completions", proxy.url());
    let auth = [("authorization", "Bearer pk-proxy-secret-1")];
    let resp = post(&url, json!({"model": "azure/my-gpt4o", "messages": []}), &auth).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("azure_chat_text.json")
    );
    let resp = post(
        &url,
        json!({"model": "azure/my-gpt4o", "messages": [], "stream": true, "stream_options": {"include_usage": true}}),
        &auth,
    )
    .await;
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("azure_chat_stream_usage.sse")
    );
    let resp = post(
        &format!("{}/v1/embeddings", proxy.url()),
        json!({"model": "azure/my-embeddings", "input": "x"}),
        &auth,
    )
    .await;
    assert_eq!(resp.status(), 200);

    let got = up.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].path, "/openai/deployments/my-gpt4o/chat/completions");
    assert_eq!(got[2].path, "/openai/deployments/my-embeddings/embeddings");
    for g in &got {
        assert_eq!(g.query, "api-version=2024-10-21");
        assert_eq!(g.headers["api-key"], "azure-key-0123456789");
        assert!(
            g.headers.get("authorization").is_none(),
            "proxy key never forwarded"
        );
    }
    assert_eq!(got[0].body["model"], "my-gpt4o");
    let records = proxy.wait_records(3).await;
    let chat = records
        .iter()
        .find(|m| m.method == Method::Generate && m.output_tokens > 0)
        .unwrap();
    assert_eq!(
        (chat.provider.as_str(), chat.model.as_str()),
        ("azure", "my-gpt4o")
    );
    assert_eq!(chat.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!((chat.input_tokens, chat.output_tokens), (149, 39));
    assert!(
        chat.cost_usd.is_some_and(|c| c > 0.0),
        "priced by the reported model"
    );
    let stream = records.iter().find(|m| m.method == Method::Stream).unwrap();
    assert!(stream.ttft_ms.is_some() && stream.error_class.is_none());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_over_the_openai_wire_and_its_native_wire() {
    let up = fake_upstream().await;
    let proxy = start_proxy(all_at(&up)).await;
    let resp = post(
        &format!("{}/v1/chat/completions", proxy.url()),
        json!({"model": "gemini-2.5-flash", "messages": [], "user": "u1"}),
        &[("authorization", "Bearer AIza-client-key-123456")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await.unwrap();

    let native = format!("{}/v1beta/models/gemini-2.5-flash:generateContent", proxy.url());
    let resp = post(
        &native,
        json!({"contents": [{"parts": [{"text": "hi"}]}]}),
        &[("x-goog-api-key", "AIza-client-key-123456")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("gemini_generate_thinking.json")
    );
    let stream = format!(
        "{}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        proxy.url()
    );
    let resp = post(
        &stream,
        json!({"contents": []}),
        &[("x-goog-api-key", "AIza-client-key-123456")],
    )
    .await;
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("gemini_stream_text_usage.sse")
    );
    let resp = post(
        &format!("{}/v1beta/models/gemini-2.5-flash:countTokens", proxy.url()),
        json!({}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 404);
    // `/v1/models/...` (the google-genai SDK's default version) goes to v1.
    let v1 = format!("{}/v1/models/gemini-2.5-flash:generateContent", proxy.url());
    let resp = post(
        &v1,
        json!({"contents": []}),
        &[("x-goog-api-key", "AIza-client-key-123456")],
    )
    .await;
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("gemini_generate_thinking.json")
    );

    let got = up.received();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].path, "/v1beta/openai/chat/completions");
    assert_eq!(got[0].headers["authorization"], "Bearer AIza-client-key-123456");
    assert_eq!(got[1].path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(got[1].headers["x-goog-api-key"], "AIza-client-key-123456");
    assert_eq!(got[1].body, json!({"contents": [{"parts": [{"text": "hi"}]}]}));
    assert_eq!(
        (got[2].path.as_str(), got[2].query.as_str()),
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", "alt=sse")
    );
    assert_eq!(got[3].path, "/v1/models/gemini-2.5-flash:generateContent");

    let records = proxy.wait_records(4).await;
    assert_eq!(records.len(), 4);
    assert!(records
        .iter()
        .all(|m| m.provider == "gemini" && m.model == "gemini-2.5-flash" && m.error_class.is_none()));
    let native = records
        .iter()
        .find(|m| m.response_model.as_deref() == Some("gemini-3-pro-preview"))
        .unwrap();
    assert_eq!((native.input_tokens, native.reasoning_tokens), (9, Some(244)));
    let streamed = records.iter().find(|m| m.method == Method::Stream).unwrap();
    assert!(streamed.ttft_ms.is_some() && streamed.input_tokens > 0);
    assert!(records
        .iter()
        .any(|m| m.tags.get("user").map(String::as_str) == Some("u1")));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_and_wrong_wires_are_clear_400s_with_nothing_sent() {
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up)).await;
    let resp = post(
        &format!("{}/v1/chat/completions", proxy.url()),
        json!({"model": "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0", "messages": []}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("SigV4"),
        "{body}"
    );
    let resp = post(
        &format!("{}/v1/messages", proxy.url()),
        json!({"model": "gemini-2.5-flash", "messages": []}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let resp = post(
        &format!("{}/v1/chat/completions", proxy.url()),
        json!({"model": "azure/dep", "messages": []}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 400, "no AZURE_OPENAI_ENDPOINT");
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("AZURE_OPENAI_ENDPOINT"));
    assert!(up.received().is_empty());
    assert!(proxy.records().await.is_empty());
    proxy.stop().await;
}
