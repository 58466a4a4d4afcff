//! The built-in price table equals the community map snapshot it is
//! generated from (`src/prices/community.json`, by `scripts/update-prices.sh`),
//! and a copy of the community map loads as a price file.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use steer::pricing::PriceTable;
use steer::Usage;

fn snapshot() -> serde_json::Map<String, Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/prices/community.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// USD per token → USD per 1M tokens.
fn per_m(v: &Value) -> Option<f64> {
    v.as_f64().map(|x| x * 1e6)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn every_snapshot_model_is_priced_exactly_as_the_map_says() {
    let table = PriceTable::builtin();
    let map = snapshot();
    let mut per_provider: BTreeMap<String, usize> = BTreeMap::new();
    for (key, e) in &map {
        let map_provider = e["litellm_provider"].as_str().unwrap();
        // The table names the map's `bedrock_converse` `bedrock` and `together_ai` `together`.
        let ours = match map_provider {
            "bedrock_converse" => "bedrock",
            "together_ai" => "together",
            p => p,
        };
        if e["mode"] == "chat" {
            *per_provider.entry(map_provider.to_string()).or_default() += 1;
        }
        // `xai/grok-4` is listed as `grok-4`, its key kept as an alias; the
        // bare name of another provider's prefixed entry may belong to the
        // model's own provider (`azure/gpt-4o` vs `gpt-4o`), so only the
        // full key is checked there.
        let bare = key.strip_prefix(&format!("{map_provider}/")).unwrap_or(key);
        let names = if ["openai", "anthropic", "xai"].contains(&ours) {
            vec![key.as_str(), bare]
        } else {
            vec![key.as_str()]
        };
        for name in names {
            let p = table.get(name).unwrap_or_else(|| panic!("{name} is not priced"));
            assert_eq!(p.provider.as_deref(), Some(ours), "{name}");
            assert!(
                close(p.input, per_m(&e["input_cost_per_token"]).unwrap()),
                "{name} input"
            );
            assert!(
                close(p.output, per_m(&e["output_cost_per_token"]).unwrap_or(0.0)),
                "{name} output"
            );
            let opt = |field: &str, got: Option<f64>| match per_m(&e[field]) {
                Some(want) => assert!(
                    got.is_some_and(|g| close(g, want)),
                    "{name} {field}: {got:?} != {want}"
                ),
                None => assert_eq!(got, None, "{name} {field}"),
            };
            opt("cache_read_input_token_cost", p.cached_input);
            opt("cache_creation_input_token_cost", p.cache_write);
            opt("cache_creation_input_token_cost_above_1hr", p.cache_write_1h);
            opt("output_cost_per_reasoning_token", p.reasoning);
            // USD per search request, not per token; Anthropic's flat
            // 0.01 where the map leaves it out.
            match e["search_context_cost_per_query"]["search_context_size_medium"].as_f64() {
                Some(want) => assert_eq!(p.web_search, Some(want), "{name} web_search"),
                None if ours == "anthropic" => assert_eq!(p.web_search, Some(0.01), "{name}"),
                None => assert_eq!(p.web_search, None, "{name} web_search"),
            }
            for tier in ["200k", "272k", "100k"] {
                if let Some(want) = per_m(&e[format!("input_cost_per_token_above_{tier}_tokens")]) {
                    let lc = p
                        .long_context
                        .as_ref()
                        .unwrap_or_else(|| panic!("{name}: no {tier} tier"));
                    assert_eq!(
                        lc.threshold,
                        tier.trim_end_matches('k').parse::<u64>().unwrap() * 1000
                    );
                    assert!(close(lc.input, want), "{name} long-context input");
                }
            }
        }
    }
    // Every chat model of the map for the providers steer speaks (the map's
    // `openai/container` has no per-token price and is left out); embedding
    // models too.
    assert_eq!(per_provider.get("anthropic"), Some(&22));
    assert_eq!(per_provider.get("xai"), Some(&36));
    assert_eq!(per_provider.get("openai"), Some(&101));
    for p in [
        "gemini",
        "azure",
        "bedrock",
        "bedrock_converse",
        "mistral",
        "deepseek",
        "groq",
        "together_ai",
    ] {
        assert!(per_provider.get(p).is_some_and(|n| *n > 0), "{p}: no chat model");
    }
    for flagship in [
        "claude-opus-4-7",
        "claude-sonnet-4-6",
        "gpt-5.2",
        "grok-4.3",
        "xai/grok-4.3",
        "gemini-2.5-flash",
        "gemini/gemini-2.5-flash",
        "azure/gpt-4o",
        "text-embedding-3-small",
    ] {
        assert!(table.contains(flagship), "{flagship}");
    }
    assert!(table.as_of().is_some(), "the snapshot is dated");
}

#[test]
fn own_entries_fill_in_only_where_the_map_has_none() {
    let table = PriceTable::builtin();
    // Retired models the map no longer lists stay priced.
    for m in [
        "claude-3-opus",
        "claude-sonnet-4-20250514",
        "grok-3-mini",
        "o1-mini",
        "o1-preview-2024-09-12",
        "grok-2-1212",
        "grok-beta",
        "gemini-2.0-flash-001",
        "gemini-1.5-flash-002",
        "gemini-1.5-pro",
    ] {
        assert!(table.contains(m), "{m}");
    }
    // Gemini 1.5's long-context tier: over 128k input tokens, double.
    let usage = |input: u64| Usage {
        input_tokens: input,
        output_tokens: 1_000,
        ..Usage::default()
    };
    assert!(close(
        table.cost("gemini-1.5-flash-002", &usage(100_000)).unwrap(),
        100_000.0 * 0.075e-6 + 1_000.0 * 0.30e-6
    ));
    assert!(close(
        table.cost("gemini-1.5-flash-002", &usage(200_000)).unwrap(),
        200_000.0 * 0.15e-6 + 1_000.0 * 0.60e-6
    ));
    // An unknown model has no price; a prefix never matches.
    assert!(table.get("claude-opus-4-7-experimental").is_none());
    assert!(table.get("gpt-5.2x").is_none());
    // A fine-tuned model bills as its base's fine-tune price.
    assert!(table.contains("ft:gpt-4o-mini-2024-07-18:acme::abc123"));
}

#[test]
fn one_hour_cache_writes_cost_twice_the_input_price() {
    // claude-sonnet-4-6: 3 in, 3.75 5-minute writes, 6 1-hour writes.
    let table = PriceTable::builtin();
    let usage = |h1: u64| Usage {
        input_tokens: 1_000_000,
        cache_write_tokens: Some(1_000_000),
        cache_write_1h_tokens: Some(h1),
        ..Usage::default()
    };
    assert!(close(
        table.cost("claude-sonnet-4-6", &usage(1_000_000)).unwrap(),
        6.0
    ));
    assert!(close(table.cost("claude-sonnet-4-6", &usage(0)).unwrap(), 3.75));
    // A retired model of our own table: 2x input too.
    assert!(close(
        table.cost("claude-3-opus", &usage(1_000_000)).unwrap(),
        30.0
    ));
}

#[test]
fn a_copy_of_the_community_map_loads_as_a_price_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model_prices_and_context_window.json");
    std::fs::write(
        &path,
        r#"{
          "sample_spec": {"input_cost_per_token": 0.0, "litellm_provider": "one of ...", "mode": "chat"},
          "gpt-9": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-05,
                    "output_cost_per_token": 4e-05, "cache_read_input_token_cost": 1e-06},
          "xai/grok-9": {"litellm_provider": "xai", "mode": "chat", "input_cost_per_token": 2e-06,
                         "output_cost_per_token": 1e-05},
          "dall-e-9": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04},
          "vertex_ai/claude-x": {"litellm_provider": "vertex_ai-anthropic_models", "mode": "chat",
                                 "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05}
        }"#,
    )
    .unwrap();
    let mut table = PriceTable::builtin();
    table.merge(PriceTable::from_path(&path).unwrap());
    let u = Usage {
        input_tokens: 1_000_000,
        output_tokens: 1_000_000,
        ..Usage::default()
    };
    assert!(close(table.cost("gpt-9", &u).unwrap(), 50.0));
    assert!(close(table.cost("grok-9", &u).unwrap(), 12.0));
    assert_eq!(table.provider_of("grok-9"), Some("xai"));
    assert!(
        table.get("dall-e-9").is_none(),
        "image models are not priced per token"
    );
    assert!(table.get("sample_spec").is_none());
    // Another provider's copy of a model keeps its prefix: it never shadows the model.
    assert_eq!(table.provider_of("claude-sonnet-4-6"), Some("anthropic"));
    assert!(table.contains("vertex_ai/claude-x"));
    assert!(table.sources().iter().any(|s| s.source.contains("model_prices")));
}
