//! Azure OpenAI's own paths (`/openai/deployments/{deployment}/...` and the
//! v1 form `/openai/v1/...`) in front of a fake Azure resource replaying
//! recorded Azure answers: the same path and query upstream, the body byte
//! for byte (but for the `include_usage` request of a stream), the client's
//! `api-key` or Entra token passed through, or the proxy's Azure key behind
//! the proxy key; one record per call with the deployment as model and the
//! model Azure reports as response model (and price).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use steer_metrics::{AgentMetrics, ErrorClass, Method};

const KEY: &str = "azure-client-key-0123456789";
const QUERY: &str = "api-version=2024-10-21";

async fn post(url: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = reqwest::Client::new().post(url).json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

fn by_tag<'a>(records: &'a [AgentMetrics], case: &str) -> &'a AgentMetrics {
    let mut it = records
        .iter()
        .filter(|m| m.tags.get("case").map(String::as_str) == Some(case));
    let m = it.next().unwrap_or_else(|| panic!("no record for {case}"));
    assert!(it.next().is_none(), "two records for {case}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_deployment_paths_pass_through() {
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up).base_url("azure", up.root())).await;
    let dep = |op: &str| format!("{}/openai/deployments/my-gpt4o/{op}?{QUERY}", proxy.url());
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let h = |case: &'static str| {
        [
            ("api-key", KEY),
            ("x-steer-tag-case", case),
            ("x-steer-tag-team", "search"),
        ]
    };

    // Chat: the recorded answer byte for byte, the record's id in a header.
    let body = json!({"model": "gpt-4o-mini", "messages": msgs, "user": "alice"});
    let resp = post(&dep("chat/completions"), &body, &h("chat")).await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-steer-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("azure_chat_text.json")
    );

    // A stream without include_usage: usage asked upstream, its chunk left out.
    let body = json!({"messages": msgs, "stream": true});
    let resp = post(&dep("chat/completions"), &body, &h("stream")).await;
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        without_usage_chunk(&recording("azure_chat_stream_usage.sse"))
    );
    // With include_usage: every byte.
    let body = json!({"messages": msgs, "stream": true, "stream_options": {"include_usage": true}});
    let resp = post(&dep("chat/completions"), &body, &h("stream_usage")).await;
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("azure_chat_stream_usage.sse")
    );
    // Tool calls, and a stream of them.
    let tools =
        json!([{"type": "function", "function": {"name": "secret_retrieval_tool", "parameters": {}}}]);
    let body = json!({"messages": msgs, "tools": tools});
    let resp = post(&dep("chat/completions"), &body, &h("tools")).await;
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("azure_chat_tool_calls.json")
    );
    let body = json!({"messages": msgs, "tools": tools, "stream": true});
    let resp = post(&dep("chat/completions"), &body, &h("stream_tools")).await;
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("azure_chat_stream_tool_calls.sse")
    );
    // Embeddings on an embeddings deployment.
    let url = format!("{}/openai/deployments/my-emb/embeddings?{QUERY}", proxy.url());
    let resp = post(&url, &json!({"input": ["a", "b"]}), &h("embeddings")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), embeddings_body(2));
    // An Entra token as Bearer goes as it is.
    let entra = [
        ("authorization", "Bearer eyJ0eXAiOiJKV1Qi.entra-token"),
        ("x-steer-tag-case", "entra"),
    ];
    let resp = post(&dep("chat/completions"), &json!({"messages": msgs}), &entra).await;
    assert_eq!(resp.status(), 200);
    // Errors come back with status and body; a content filter is classed so.
    let mut hf = h("filtered").to_vec();
    hf.push(("x-fake-scenario", "content_filter"));
    let resp = post(&dep("chat/completions"), &json!({"messages": msgs}), &hf).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("azure_error_400_content_filter.json")
    );
    let mut hr = h("limited").to_vec();
    hr.push(("x-fake-scenario", "rate_limit"));
    let resp = post(&dep("chat/completions"), &json!({"messages": msgs}), &hr).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "20");
    // The v1 form: the body's model is the deployment.
    let v1 = format!("{}/openai/v1/chat/completions?api-version=preview", proxy.url());
    let resp = post(&v1, &json!({"model": "my-gpt4o", "messages": msgs}), &h("v1")).await;
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("azure_chat_text.json")
    );

    // --- Upstream: the same path and query, the client's key, the body. ---
    let got = up.received();
    assert_eq!(got.len(), 10);
    for g in &got[..9] {
        assert_eq!(g.query, QUERY, "{}", g.path);
        assert!(g.headers.get("x-steer-tag-case").is_none());
    }
    assert_eq!(got[0].path, "/openai/deployments/my-gpt4o/chat/completions");
    assert_eq!(got[0].headers["api-key"], KEY);
    assert_eq!(got[0].body["model"], "gpt-4o-mini", "the body's model untouched");
    assert_eq!(got[1].body["stream_options"]["include_usage"], true);
    assert!(got[1].body.get("model").is_none());
    assert_eq!(got[5].path, "/openai/deployments/my-emb/embeddings");
    assert_eq!(
        got[6].headers["authorization"],
        "Bearer eyJ0eXAiOiJKV1Qi.entra-token"
    );
    assert!(got[6].headers.get("api-key").is_none());
    assert_eq!(got[9].path, "/openai/v1/chat/completions");
    assert_eq!(got[9].query, "api-version=preview");
    assert_eq!(got[9].body["model"], "my-gpt4o");

    // --- Records: one per call, deployment as model, Azure's model as response model. ---
    let records = proxy.wait_records(10).await;
    assert_eq!(records.len(), 10, "{records:#?}");
    for m in &records {
        assert_eq!(m.provider, "azure");
        let json = serde_json::to_string(m).unwrap();
        assert!(!json.contains(KEY) && !json.contains("entra-token"), "{json}");
    }
    let m = by_tag(&records, "chat");
    assert_eq!((m.model.as_str(), m.method), ("my-gpt4o", Method::Generate));
    assert_eq!(m.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!((m.input_tokens, m.output_tokens), (149, 39));
    assert_eq!(m.finish_reason.as_deref(), Some("stop"));
    assert!(
        m.cost_usd.is_some_and(|c| c > 0.0),
        "priced by the reported model"
    );
    assert_eq!(m.tags.get("user").map(String::as_str), Some("alice"));
    assert_eq!(m.tags.get("team").map(String::as_str), Some("search"));
    assert_eq!(m.request_id.to_string(), id);
    for case in ["stream", "stream_usage"] {
        let m = by_tag(&records, case);
        assert_eq!(
            (m.model.as_str(), m.method),
            ("my-gpt4o", Method::Stream),
            "{case}"
        );
        assert_eq!(m.response_model.as_deref(), Some("gpt-4"), "{case}");
        assert_eq!((m.input_tokens, m.output_tokens), (15, 5), "{case}");
        assert!(m.ttft_ms.is_some_and(|t| t <= m.latency_ms), "{case}");
        assert!(m.error_class.is_none() && m.cost_usd.is_some(), "{case}");
    }
    let m = by_tag(&records, "tools");
    assert_eq!(m.finish_reason.as_deref(), Some("tool_calls"));
    assert!(m.tools_used.iter().all(|t| t == "secret_retrieval_tool") && !m.tools_used.is_empty());
    assert_eq!((m.input_tokens, m.output_tokens), (75, 54));
    let m = by_tag(&records, "stream_tools");
    assert_eq!(m.finish_reason.as_deref(), Some("tool_calls"));
    assert!(m.tools_used.contains(&"secret_retrieval_tool".to_string()));
    let m = by_tag(&records, "embeddings");
    assert_eq!((m.model.as_str(), m.method), ("my-emb", Method::Embeddings));
    assert_eq!(m.input_tokens, 8);
    assert!(by_tag(&records, "entra").error_class.is_none());
    assert_eq!(
        by_tag(&records, "filtered").error_class,
        Some(ErrorClass::ContentFilter)
    );
    assert_eq!(
        by_tag(&records, "limited").error_class,
        Some(ErrorClass::RateLimit)
    );
    let m = by_tag(&records, "v1");
    assert_eq!(m.model, "my-gpt4o");
    assert_eq!(m.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_paths_with_provider_keys_and_without_an_endpoint() {
    let up = fake_upstream().await;
    let proxy = start_proxy(
        config_for(&up)
            .base_url("azure", up.root())
            .provider_key("azure", "azure-proxy-key-0123456789")
            .provider_keys("pk-proxy-secret-1"),
    )
    .await;
    let url = format!("{}/openai/deployments/d1/chat/completions?{QUERY}", proxy.url());
    let body = json!({"messages": []});
    // Without the proxy key (an Azure key is not it): 401, nothing sent.
    let resp = post(&url, &body, &[("api-key", KEY)]).await;
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(KEY), "{text}");
    // The proxy key as `api-key` (what AzureOpenAI sends): the proxy's Azure key goes up.
    let resp = post(&url, &body, &[("api-key", "pk-proxy-secret-1")]).await;
    assert_eq!(resp.status(), 200);
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["api-key"], "azure-proxy-key-0123456789");
    assert_eq!(got[0].query, QUERY);
    assert!(got[0].headers.get("authorization").is_none());
    let records = proxy.wait_records(1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].provider.as_str(), records[0].model.as_str()),
        ("azure", "d1")
    );
    proxy.stop().await;

    // No AZURE_OPENAI_ENDPOINT: a 400 naming it; nothing sent or recorded.
    let proxy = start_proxy(config_for(&up)).await;
    let url = format!("{}/openai/deployments/d1/chat/completions?{QUERY}", proxy.url());
    let resp = post(&url, &body, &[("api-key", KEY)]).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("AZURE_OPENAI_ENDPOINT"));
    assert_eq!(up.received().len(), 1);
    assert!(proxy.records().await.is_empty());
    proxy.stop().await;
}
