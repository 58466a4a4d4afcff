//! Tests of the instruments: attribute sets (golden), the series cap, weights and the bounds that keep the SDK's sums finite.

use super::*;
use proptest::prelude::*;
use steer_metrics::ErrorClass;

fn get(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[test]
fn buckets_are_the_recommended_ones_and_ascending() {
    assert_eq!(DURATION_BUCKETS[0], 0.01);
    assert_eq!(DURATION_BUCKETS[13], 81.92);
    for w in DURATION_BUCKETS.windows(2) {
        assert!((w[1] / w[0] - 2.0).abs() < 1e-9);
    }
    for (i, b) in TOKEN_BUCKETS.iter().enumerate() {
        assert_eq!(*b, 4f64.powi(i as i32));
    }
    assert!(TTFC_BUCKETS.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn attributes_of_a_success_and_a_failure() {
    let mut m = AgentMetrics::new("xai", "grok-4");
    m.response_model = Some("grok-4-0709".into());
    let a = common_attributes(&m, false, Some("api.x.ai"), &[]);
    assert_eq!(get(&a, attr::OPERATION_NAME).as_deref(), Some("chat"));
    assert_eq!(get(&a, attr::PROVIDER_NAME).as_deref(), Some("x_ai"));
    assert_eq!(get(&a, attr::REQUEST_MODEL).as_deref(), Some("grok-4"));
    assert_eq!(get(&a, attr::RESPONSE_MODEL).as_deref(), Some("grok-4-0709"));
    assert_eq!(get(&a, attr::SERVER_ADDRESS).as_deref(), Some("api.x.ai"));
    assert_eq!(get(&a, attr::ERROR_TYPE), None, "error.type only on failures");

    let f = AgentMetrics::new("openai", "gpt-4o").with_error(ErrorClass::PermissionDenied);
    let a = common_attributes(&f, false, None, &[]);
    assert_eq!(get(&a, attr::ERROR_TYPE).as_deref(), Some("permission_denied"));
    assert_eq!(get(&a, attr::RESPONSE_MODEL), None);
    assert_eq!(get(&a, attr::SERVER_ADDRESS), None);

    let a = common_attributes(&m, true, None, &[]);
    assert_eq!(get(&a, attr::REQUEST_MODEL).as_deref(), Some("other"));
    assert_eq!(get(&a, attr::RESPONSE_MODEL).as_deref(), Some("other"));
    assert_eq!(get(&a, attr::PROVIDER_NAME).as_deref(), Some("other"));
    assert_eq!(
        get(&a, attr::FINISH_REASONS),
        None,
        "none without a finish reason"
    );
}

fn finish(attrs: &[KeyValue]) -> Option<Value> {
    attrs
        .iter()
        .find(|kv| kv.key.as_str() == attr::FINISH_REASONS)
        .map(|kv| kv.value.clone())
}

fn reasons(v: &[&str]) -> Option<Value> {
    Some(Value::Array(Array::String(
        v.iter().map(|s| StringValue::from(s.to_string())).collect(),
    )))
}

#[test]
fn golden_attributes_with_finish_reason_and_tags() {
    let mut m = AgentMetrics::new("anthropic", "claude-sonnet-4-6");
    m.response_model = Some("claude-sonnet-4-6-20260101".into());
    m.finish_reason = Some("max_tokens".into());
    m.tags.insert("user".into(), "u-42".into());
    m.tags.insert("feature".into(), "search".into());
    m.tags.insert("secret".into(), "not exported".into());
    let keys = vec!["user".to_string(), "team".to_string(), "feature".to_string()];
    let a = common_attributes(&m, false, None, &keys);
    let got: Vec<(String, Value)> = a
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.clone()))
        .collect();
    let s = |v: &str| Value::from(v.to_string());
    assert_eq!(
        got,
        vec![
            ("gen_ai.operation.name".into(), s("chat")),
            ("gen_ai.provider.name".into(), s("anthropic")),
            ("gen_ai.request.model".into(), s("claude-sonnet-4-6")),
            ("gen_ai.response.model".into(), s("claude-sonnet-4-6-20260101")),
            (
                "gen_ai.response.finish_reasons".into(),
                reasons(&["max_tokens"]).unwrap()
            ),
            ("user".into(), s("u-42")),
            ("feature".into(), s("search")),
        ],
        "no `team` attribute for a record without it; `secret` is not allow-listed"
    );
    // Folded: known finish reasons stay, others and tag values become `other`.
    let a = common_attributes(&m, true, None, &keys);
    assert_eq!(finish(&a), reasons(&["max_tokens"]));
    assert_eq!(get(&a, "user").as_deref(), Some("other"));
    assert_eq!(get(&a, "team"), None);
    m.finish_reason = Some("brand_new_reason".into());
    assert_eq!(
        finish(&common_attributes(&m, true, None, &keys)),
        reasons(&["other"])
    );
    assert_eq!(
        finish(&common_attributes(&m, false, None, &keys)),
        reasons(&["brand_new_reason"])
    );
    m.finish_reason = Some(String::new());
    assert_eq!(
        finish(&common_attributes(&m, false, None, &keys)),
        None,
        "empty is absent"
    );
}

#[test]
fn finish_reasons_and_tag_values_are_part_of_the_series_key() {
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
    let meter = opentelemetry::metrics::MeterProvider::meter(&provider, "t");
    let rec = Recorder::new(Instruments::new(&meter), 4, None, vec!["user".into()]);
    let with = |f: Option<&str>, user: Option<&str>| {
        let mut m = AgentMetrics::new("openai", "gpt-5");
        m.finish_reason = f.map(String::from);
        if let Some(u) = user {
            m.tags.insert("user".into(), u.into());
        }
        m
    };
    for m in [
        with(Some("stop"), Some("a")),
        with(Some("length"), Some("a")),
        with(Some("stop"), Some("b")),
        with(None, None),
    ] {
        rec.record(&m);
    }
    assert_eq!(rec.state.lock().unwrap().len(), 4);
    assert_eq!(rec.folded(), 0);
    // Beyond the cap: folded, and the folded series are bounded.
    for i in 0..100 {
        rec.record(&with(Some("stop"), Some(&format!("user-{i}"))));
        rec.record(&with(Some(&format!("odd-{i}")), None));
    }
    assert_eq!(rec.folded(), 200);
    let st = rec.state.lock().unwrap();
    assert_eq!(st.len(), 4);
    assert_eq!(st.folded_len(), 2, "(stop, user present) and (other, no user)");
    drop(st);
    let a = rec.attrs(&with(Some("stop"), Some("zzz")));
    assert_eq!(get(&a.common, "user").as_deref(), Some("other"));
    assert_eq!(get(&a.common, attr::REQUEST_MODEL).as_deref(), Some("other"));
    let a = rec.attrs(&with(Some("length"), Some("a")));
    assert_eq!(get(&a.common, "user").as_deref(), Some("a"), "a known series");
    assert_eq!(finish(&a.common), reasons(&["length"]));
    assert_eq!(get(&a.input, attr::TOKEN_TYPE).as_deref(), Some("input"));
    assert_eq!(
        finish(&a.input),
        reasons(&["length"]),
        "on the token histogram too"
    );
}

#[test]
fn weights() {
    assert_eq!(repeat_count(1.0), 1);
    assert_eq!(repeat_count(4.0), 4);
    assert_eq!(repeat_count(2.4), 2);
    assert_eq!(repeat_count(0.5), 1);
    assert_eq!(repeat_count(f64::NAN), 1);
    assert_eq!(repeat_count(1e12), MAX_REPEAT);
    assert_eq!(counter_weight(2.5), 2.5);
    assert_eq!(counter_weight(-1.0), 1.0);
    assert_eq!(counter_weight(f64::INFINITY), 1.0);
    assert_eq!(seconds(1500.0), Some(1.5));
    assert_eq!(seconds(-1.0), None);
    assert_eq!(seconds(f64::NAN), None);
}

fn recorder(max: usize) -> Recorder {
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
    let meter = opentelemetry::metrics::MeterProvider::meter(&provider, "t");
    Recorder::new(Instruments::new(&meter), max, None, Vec::new())
}

#[test]
fn cap_folds_new_series_beyond_the_limit_only_and_forgets_them() {
    let rec = recorder(2);
    for i in 0..5000 {
        rec.record(&AgentMetrics::new("openai", format!("m{i}")));
    }
    assert_eq!(rec.folded(), 4998);
    assert_eq!(rec.state.lock().unwrap().len(), 2);
    let known = AgentMetrics::new("openai", "m0");
    rec.record(&known);
    assert_eq!(rec.folded(), 4998, "known series stay");
    let a = rec.attrs(&known);
    assert!(Arc::ptr_eq(&a, &rec.attrs(&known)), "attributes built once");
    assert_eq!(get(&a.common, attr::REQUEST_MODEL).as_deref(), Some("m0"));
    assert_eq!(get(&a.input, attr::TOKEN_TYPE).as_deref(), Some("input"));
    let f = rec.attrs(&AgentMetrics::new("openai", "new").with_error(ErrorClass::Timeout));
    assert_eq!(get(&f.common, attr::REQUEST_MODEL).as_deref(), Some("other"));
    assert_eq!(get(&f.common, attr::ERROR_TYPE).as_deref(), Some("timeout"));
    // Length-prefixed keys: ("ab", "c") and ("a", "bc") are distinct.
    let rec = recorder(10);
    rec.record(&AgentMetrics::new("ab", "c"));
    rec.record(&AgentMetrics::new("a", "bc"));
    assert_eq!(rec.state.lock().unwrap().len(), 2);
}

#[test]
fn max_tokens_and_huge_costs_never_reach_the_sdk() {
    // Before: the second u64::MAX observation overflowed the SDK's u64
    // histogram sum (a panic in debug builds), and the cost counter
    // summed two 1e308 costs to +Inf.
    let rec = recorder(10);
    let mut m = AgentMetrics::new("openai", "m").with_latency_ms(1e308);
    m.input_tokens = u64::MAX;
    m.output_tokens = MAX_TOKENS + 1;
    m.cost_usd = Some(1e308);
    m.ttft_ms = Some(f64::NAN);
    for _ in 0..3 {
        assert_eq!(rec.record(&m), 5, "latency, ttft, cost, input and output tokens");
    }
    let mut ok = AgentMetrics::new("openai", "m").with_latency_ms(MAX_DURATION_MS);
    ok.input_tokens = MAX_TOKENS;
    ok.cost_usd = Some(MAX_COST_USD);
    assert_eq!(rec.record(&ok), 0, "the bounds themselves are recorded");
    assert_eq!(cost_amount(-0.5, 1.0), None);
    assert_eq!(cost_amount(1e9, 2.0), Some(2e9));
    assert_eq!(cost_amount(1e9, 1e300), None, "product not finite");
    assert_eq!(seconds(1e9 + 1.0), None);
}

#[test]
fn the_running_token_total_of_a_series_is_bounded() {
    let rec = recorder(10);
    let a = rec.attrs(&AgentMetrics::new("openai", "m"));
    let per = MAX_TOKENS * u64::from(MAX_REPEAT);
    let fit = TOKEN_SUM_LIMIT / per;
    for _ in 0..fit {
        assert!(a.reserve_tokens(0, per));
    }
    assert!(!a.reserve_tokens(0, per), "past the limit");
    assert!(a.reserve_tokens(1, per), "per token type");
    let left = TOKEN_SUM_LIMIT - fit * per;
    assert!(a.reserve_tokens(0, left), "up to the limit exactly");
    assert!(!a.reserve_tokens(0, 1));
    assert!(!a.reserve_tokens(0, u64::MAX), "no wrap-around");
    assert_eq!(a.token_sums[0].load(Relaxed), TOKEN_SUM_LIMIT);
    // A series at the limit records no more tokens, and says so.
    let m = AgentMetrics::new("openai", "m").with_tokens(1, 0);
    assert_eq!(rec.record(&m), 1);
}

#[test]
fn long_values_are_cut_at_a_char_boundary() {
    let s = "é".repeat(200); // 400 bytes
    let v = attribute_value(&s);
    assert!(v.len() <= MAX_VALUE_LEN && v.len() >= MAX_VALUE_LEN - 1);
    assert!(s.starts_with(&v));
}

proptest! {
    #[test]
    fn any_value_is_kept_verbatim_up_to_the_limit(s in any::<String>()) {
        let v = attribute_value(&s);
        prop_assert!(s.starts_with(&v));
        prop_assert!(v.len() <= MAX_VALUE_LEN);
        if s.len() <= MAX_VALUE_LEN {
            prop_assert_eq!(v, s);
        }
    }
}
