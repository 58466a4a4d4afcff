//! Reading the community price map's format (LiteLLM's
//! `model_prices_and_context_window.json`): USD per token, one entry per
//! model, with `litellm_provider` and `mode`.

use super::{LongContextPrice, ModelPrice};

/// Our provider name for a community map `litellm_provider`.
pub(super) fn community_provider(p: &str) -> &str {
    match p {
        "bedrock_converse" => "bedrock",
        "together_ai" => "together",
        "text-completion-openai" => "openai",
        other => other,
    }
}

/// USD per token → USD per 1M tokens, rounded to 1e-9 so that `1.75e-06`
/// reads as `1.75`, not `1.7500000000000002`.
fn per_million(v: &serde_json::Value) -> Option<f64> {
    let x = v.as_f64()?;
    Some((x * 1e6 * 1e9).round() / 1e9)
}

/// One community map entry as (provider, price), if it is priced per token.
pub(super) fn community_price(entry: &serde_json::Value) -> Option<(String, ModelPrice)> {
    let e = entry.as_object()?;
    let mode = e
        .get("mode")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("chat");
    if !matches!(mode, "chat" | "responses" | "completion" | "embedding") {
        return None;
    }
    let provider = community_provider(e.get("litellm_provider")?.as_str()?).to_string();
    let anthropic = provider == "anthropic";
    let get = |k: &str| e.get(k).and_then(per_million);
    let input = get("input_cost_per_token")?;
    // Embedding models have no output price: output tokens cost nothing there.
    let output = get("output_cost_per_token").or((mode == "embedding").then_some(0.0))?;
    let long_context = ["100k", "128k", "200k", "256k", "272k"].iter().find_map(|t| {
        let lc_input = get(&format!("input_cost_per_token_above_{t}_tokens"))?;
        let threshold = t.trim_end_matches('k').parse::<u64>().ok()? * 1000;
        Some(LongContextPrice {
            threshold,
            input: lc_input,
            output: get(&format!("output_cost_per_token_above_{t}_tokens")).unwrap_or(output),
            cached_input: get(&format!("cache_read_input_token_cost_above_{t}_tokens")),
            cache_write: get(&format!("cache_creation_input_token_cost_above_{t}_tokens")),
        })
    });
    Some((
        provider.clone(),
        ModelPrice {
            provider: Some(provider),
            input,
            output,
            cached_input: get("cache_read_input_token_cost"),
            cache_write: get("cache_creation_input_token_cost"),
            cache_write_1h: get("cache_creation_input_token_cost_above_1hr"),
            reasoning: get("output_cost_per_reasoning_token"),
            // Anthropic bills its web search tool at 10 USD per 1,000
            // searches on every model that has it; the map leaves some out.
            web_search: web_search(e).or(anthropic.then_some(0.01)),
            long_context,
            aliases: Vec::new(),
        },
    ))
}

/// USD per web search request: `search_context_cost_per_query` (one price
/// per search context size; the medium one, which is the default size).
fn web_search(e: &serde_json::Map<String, serde_json::Value>) -> Option<f64> {
    let q = e.get("search_context_cost_per_query")?.as_object()?;
    [
        "search_context_size_medium",
        "search_context_size_low",
        "search_context_size_high",
    ]
    .iter()
    .find_map(|k| q.get(*k).and_then(serde_json::Value::as_f64))
    .filter(|p| p.is_finite() && *p >= 0.0)
}
