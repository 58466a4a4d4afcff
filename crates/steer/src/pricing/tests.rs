//! Hand-computed costs and the table's lookup rules.
#![allow(clippy::unwrap_used)]

use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn usage(input: u64, output: u64, cached: u64, write: Option<u64>) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_tokens: cached,
        cache_write_tokens: write,
        cache_write_1h_tokens: None,
        reasoning_tokens: None,
        web_search_requests: None,
    }
}

#[test]
fn builtin_table_parses_and_has_the_current_models() {
    let t = PriceTable::builtin();
    for m in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o1",
        "o3",
        "o3-mini",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "claude-opus-4-1",
        "claude-opus-4",
        "claude-sonnet-4-5",
        "claude-sonnet-4",
        "claude-3-7-sonnet",
        "claude-haiku-4-5",
        "claude-3-5-haiku",
        "grok-4",
        "grok-3",
        "grok-3-mini",
        "grok-code-fast-1",
    ] {
        assert!(t.contains(m), "{m} missing");
    }
    assert!(t.len() >= 30);
    assert_eq!(t.provider_of("claude-sonnet-4-5-20250929"), Some("anthropic"));
    assert_eq!(t.provider_of("grok-4-0709"), Some("xai"));
    // Round trip through TOML.
    let back = PriceTable::from_toml_str(&t.to_toml()).unwrap();
    assert_eq!(back.len(), t.len());
}

#[test]
fn never_a_prefix_match() {
    let t = PriceTable::builtin();
    let u = usage(1_000_000, 0, 0, None);
    assert!(close(t.cost("gpt-4o-mini", &u).unwrap(), 0.15));
    assert!(close(t.cost("gpt-4o", &u).unwrap(), 2.50));
    assert_eq!(t.cost("gpt-4o-mini-foo", &u), None);
    assert_eq!(t.cost("gpt-4", &u).map(|c| c > 29.0), Some(true));
    assert_eq!(t.cost("gpt-4x", &u), None);
    assert_eq!(t.cost("gpt", &u), None);
    assert_eq!(t.cost("claude", &u), None);
}

#[test]
fn dated_suffixes_normalise_only_when_not_listed() {
    let t = PriceTable::builtin();
    let u = usage(1_000_000, 0, 0, None);
    // Listed dated alias.
    assert!(close(t.cost("gpt-4o-2024-08-06", &u).unwrap(), 2.50));
    // Listed dated snapshot with its own (older, higher) price.
    assert!(close(t.cost("gpt-4o-2024-05-13", &u).unwrap(), 5.00));
    // Unlisted dated names fall back to the base.
    assert!(close(t.cost("gpt-4o-mini-2030-01-01", &u).unwrap(), 0.15));
    // (100k tokens: below the 200k long-context tier.)
    assert!(close(
        t.cost("claude-sonnet-4-5-20991231", &usage(100_000, 0, 0, None))
            .unwrap(),
        0.30
    ));
    assert_eq!(strip_date_suffix("gpt-4o"), None);
    assert_eq!(strip_date_suffix("o1-2024-12-17"), Some("o1"));
    assert_eq!(
        strip_date_suffix("claude-3-5-haiku-20241022"),
        Some("claude-3-5-haiku")
    );
    assert_eq!(strip_date_suffix("-20241022"), None);
}

// Hand-computed costs.

#[test]
fn openai_cost_uncached() {
    // gpt-4o: 2.50 in, 10.00 out. 1000 in, 500 out:
    // 1000*2.5/1e6 + 500*10/1e6 = 0.0025 + 0.005 = 0.0075
    let t = PriceTable::builtin();
    assert!(close(
        t.cost("gpt-4o", &usage(1000, 500, 0, None)).unwrap(),
        0.0075
    ));
}

#[test]
fn openai_cost_cached_prompt_tokens_include_cached() {
    // gpt-4o-mini: 0.15 in, 0.075 cached, 0.60 out.
    // prompt_tokens 10_000 of which 8_000 cached, 1_000 out:
    // 2000*0.15/1e6 + 8000*0.075/1e6 + 1000*0.6/1e6
    // = 0.0003 + 0.0006 + 0.0006 = 0.0015
    let t = PriceTable::builtin();
    assert!(close(
        t.cost("gpt-4o-mini", &usage(10_000, 1_000, 8_000, None)).unwrap(),
        0.0015
    ));
}

#[test]
fn anthropic_cost_uncached() {
    // claude-sonnet-4-5: 3 in, 15 out. 2000 in, 1000 out:
    // 0.006 + 0.015 = 0.021
    let t = PriceTable::builtin();
    assert!(close(
        t.cost("claude-sonnet-4-5", &usage(2000, 1000, 0, Some(0)))
            .unwrap(),
        0.021
    ));
}

#[test]
fn anthropic_cost_with_cache_reads_and_writes() {
    // Provider usage: input_tokens 100 (excludes cache), cache_read 5000,
    // cache_creation 2000, output 300. Normalised input = 7100.
    // claude-sonnet-4-5: 100*3 + 5000*0.30 + 2000*3.75 + 300*15 (per 1e6)
    // = 300 + 1500 + 7500 + 4500 = 13800 / 1e6 = 0.0138
    let t = PriceTable::builtin();
    let u = usage(7100, 300, 5000, Some(2000));
    assert!(close(t.cost("claude-sonnet-4-5-20250929", &u).unwrap(), 0.0138));
}

#[test]
fn xai_cost_cached() {
    // grok-4: 3 in, 0.75 cached, 15 out. 4000 prompt (1000 cached), 200 out:
    // 3000*3 + 1000*0.75 + 200*15 = 9000 + 750 + 3000 = 12750 / 1e6
    let t = PriceTable::builtin();
    assert!(close(
        t.cost("grok-4", &usage(4000, 200, 1000, None)).unwrap(),
        0.01275
    ));
}

#[test]
fn long_context_tier_applies_above_threshold() {
    // claude-sonnet-4: 250k input > 200k: 250_000*6/1e6 + 1000*22.5/1e6 = 1.5 + 0.0225
    let t = PriceTable::builtin();
    assert!(close(
        t.cost("claude-sonnet-4", &usage(250_000, 1000, 0, None)).unwrap(),
        1.5225
    ));
    assert!(close(
        t.cost("claude-sonnet-4", &usage(200_000, 0, 0, None)).unwrap(),
        0.6
    ));
}

#[test]
fn override_and_extend_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let toml_path = dir.path().join("prices.toml");
    std::fs::write(
        &toml_path,
        "[models.\"gpt-4o\"]\nprovider = \"openai\"\ninput = 1.0\noutput = 2.0\n\n[models.\"my-llama\"]\ninput = 0.1\noutput = 0.2\n",
    )
    .unwrap();
    let json_path = dir.path().join("prices.json");
    std::fs::write(
        &json_path,
        r#"{"models":{"house-model":{"provider":"ollama","input":0.5,"output":0.5,"aliases":["house"]}}}"#,
    )
    .unwrap();
    let mut t = PriceTable::builtin();
    t.merge(PriceTable::from_path(&toml_path).unwrap());
    t.merge(PriceTable::from_path(&json_path).unwrap());
    let u = usage(1_000_000, 0, 0, None);
    assert!(close(t.cost("gpt-4o", &u).unwrap(), 1.0));
    assert!(
        close(t.cost("gpt-4o-2030-01-01", &u).unwrap(), 1.0),
        "unlisted dated names follow the override"
    );
    assert!(
        close(t.cost("gpt-4o-2024-08-06", &u).unwrap(), 2.5),
        "a snapshot the map lists keeps its own entry"
    );
    assert!(close(t.cost("my-llama", &u).unwrap(), 0.1));
    assert!(close(t.cost("house", &u).unwrap(), 0.5));
    assert_eq!(t.provider_of("house-model"), Some("ollama"));
    assert!(close(t.cost("gpt-4o-mini", &u).unwrap(), 0.15));
}

#[test]
fn bad_files_are_typed_errors() {
    assert!(matches!(
        PriceTable::from_toml_str("[models.x]\ninput = -1.0\noutput = 1.0"),
        Err(PriceError::InvalidPrice(_))
    ));
    assert!(matches!(
        PriceTable::from_toml_str("models = 3"),
        Err(PriceError::Toml(_))
    ));
    assert!(matches!(PriceTable::from_json_str("{"), Err(PriceError::Json(_))));
    assert!(matches!(
        PriceTable::from_path("/nonexistent/prices.toml"),
        Err(PriceError::Io { .. })
    ));
}
