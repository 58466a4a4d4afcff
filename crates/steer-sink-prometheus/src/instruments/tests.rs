//! Tests of the instruments: the exposition (golden), labels and their sanitising, the series cap and the bounds that keep counters finite.

use super::*;
use prometheus_client::encoding::text::encode;
use proptest::prelude::*;
use steer_metrics::ErrorClass;

fn exposition(records: &[AgentMetrics], max_series: usize) -> String {
    let inst = Instruments::new();
    let mut reg = Registry::default();
    inst.register(&mut reg);
    let rec = Recorder::new(inst, max_series, Some("api.openai.com".into()), Vec::new());
    for m in records {
        rec.record(m);
    }
    let mut s = String::new();
    encode(&mut s, &reg).unwrap();
    s
}

#[test]
fn names_units_and_labels_in_the_exposition() {
    let mut ok = AgentMetrics::new("xai", "grok-4")
        .with_latency_ms(150.0)
        .with_tokens(3, 20);
    ok.cost_usd = Some(0.5);
    ok.ttft_ms = Some(250.0);
    let err = AgentMetrics::new("openai", "gpt-4o")
        .with_latency_ms(50.0)
        .with_error(ErrorClass::RateLimit);
    let text = exposition(&[ok, err], 10);
    for want in [
        "# TYPE gen_ai_client_operation_duration_seconds histogram",
        "# UNIT gen_ai_client_operation_duration_seconds seconds",
        "# TYPE gen_ai_client_token_usage histogram",
        "# TYPE gen_ai_client_operation_time_to_first_chunk_seconds histogram",
        "# TYPE steer_llm_requests counter",
        "# TYPE steer_llm_cost_usd counter",
        "steer_prometheus_folded_series_total 0",
        r#"steer_llm_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="x_ai",gen_ai_request_model="grok-4",server_address="api.openai.com"} 1.0"#,
        r#"steer_llm_errors_total{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o",error_type="rate_limit",server_address="api.openai.com"} 1.0"#,
        r#"steer_llm_cost_usd_total{gen_ai_operation_name="chat",gen_ai_provider_name="x_ai",gen_ai_request_model="grok-4",server_address="api.openai.com"} 0.5"#,
        r#"gen_ai_client_operation_duration_seconds_bucket{le="0.16",gen_ai_operation_name="chat",gen_ai_provider_name="x_ai",gen_ai_request_model="grok-4",server_address="api.openai.com"} 1"#,
        r#"gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",gen_ai_provider_name="x_ai",gen_ai_request_model="grok-4",server_address="api.openai.com",gen_ai_token_type="output"} 20.0"#,
        "# EOF",
    ] {
        assert!(text.contains(want), "missing {want}\n{text}");
    }
    assert!(
        !text.contains("error_type=\"rate_limit\",server_address=\"api.openai.com\",gen_ai_token_type"),
        "no token usage for a failure without tokens"
    );
}

#[test]
fn golden_exposition_with_finish_reasons_and_tag_labels() {
    let inst = Instruments::new();
    let mut reg = Registry::default();
    inst.register(&mut reg);
    let rec = Recorder::new(inst, 3, None, vec!["user".into(), "team.id".into()]);
    let r = |model: &str, finish: Option<&str>, tags: &[(&str, &str)]| {
        let mut m = AgentMetrics::new("openai", model)
            .with_latency_ms(100.0)
            .with_tokens(5, 2);
        m.finish_reason = finish.map(String::from);
        for (k, v) in tags {
            m.tags.insert(k.to_string(), v.to_string());
        }
        m
    };
    for m in [
        r("gpt-5", Some("stop"), &[("user", "alice"), ("team.id", "t1")]),
        r(
            "gpt-5",
            Some("stop"),
            &[("user", "alice"), ("team.id", "t1"), ("x", "y")],
        ),
        r("gpt-5", Some("length"), &[("user", "alice"), ("team.id", "t1")]),
        r("gpt-5", None, &[("user", "bob")]),
        // Beyond the cap of 3: folded.
        r("gpt-5", Some("stop"), &[("user", "carol")]),
        r("m2", Some("weird"), &[]),
    ] {
        rec.record(&m);
    }
    let mut text = String::new();
    encode(&mut text, &reg).unwrap();
    for want in [
        r#"steer_llm_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-5",gen_ai_response_finish_reasons="stop",user="alice",team_id="t1"} 2.0"#,
        r#"steer_llm_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-5",gen_ai_response_finish_reasons="length",user="alice",team_id="t1"} 1.0"#,
        r#"steer_llm_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-5",user="bob",team_id=""} 1.0"#,
        r#"steer_llm_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="other",gen_ai_request_model="other",gen_ai_response_finish_reasons="stop",user="other",team_id=""} 1.0"#,
        r#"steer_llm_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="other",gen_ai_request_model="other",gen_ai_response_finish_reasons="other",user="",team_id=""} 1.0"#,
        r#"gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-5",gen_ai_response_finish_reasons="length",user="alice",team_id="t1",gen_ai_token_type="input"} 5.0"#,
        r#"gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-5",user="bob",team_id=""} 1"#,
        "steer_prometheus_folded_series_total 2",
    ] {
        assert!(text.contains(want), "missing {want}\n{text}");
    }
    assert!(!text.contains("carol") && !text.contains("weird") && !text.contains("m2"));
    assert!(!text.contains("x=\"y\""), "tags not allow-listed stay out");
}

#[test]
fn huge_costs_and_durations_are_skipped_and_counters_stay_finite() {
    // Before: two 1e308 costs summed to +Inf and the counter read `inf`.
    let inst = Instruments::new();
    let mut reg = Registry::default();
    inst.register(&mut reg);
    let rec = Recorder::new(inst, 10, None, Vec::new());
    let mut huge = AgentMetrics::new("openai", "m").with_latency_ms(1e308);
    huge.cost_usd = Some(1e308);
    huge.ttft_ms = Some(2e9);
    for _ in 0..2 {
        assert_eq!(rec.record(&huge), 3, "latency, ttft and cost");
    }
    let mut ok = AgentMetrics::new("openai", "m").with_latency_ms(MAX_DURATION_MS);
    ok.cost_usd = Some(MAX_COST_USD);
    assert_eq!(rec.record(&ok), 0, "the bounds themselves are recorded");
    let mut s = String::new();
    encode(&mut s, &reg).unwrap();
    let line = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {s}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(line("steer_llm_cost_usd_total{"), "1000000000.0");
    assert_eq!(line("steer_llm_requests_total{"), "3.0");
    assert_eq!(line("gen_ai_client_operation_duration_seconds_sum{"), "1000000.0");
    assert_eq!(line("gen_ai_client_operation_duration_seconds_count{"), "1");
    assert!(!s.contains("inf"), "{s}");
    assert_eq!(cost_amount(1e9, 1e300), None, "product not finite");
    assert_eq!(cost_amount(-0.5, 1.0), None);
    assert_eq!(cost_amount(0.5, 2.0), Some(1.0));
}

#[test]
fn excess_series_fold_into_other_and_are_counted() {
    let recs: Vec<_> = (0..5)
        .map(|i| AgentMetrics::new("openai", format!("m{i}")).with_latency_ms(1.0))
        .collect();
    let text = exposition(&recs, 2);
    assert!(text.contains("steer_prometheus_folded_series_total 3"), "{text}");
    assert!(
        text.contains(r#"gen_ai_request_model="other",server_address="api.openai.com"} 3.0"#),
        "{text}"
    );
    assert!(!text.contains("m4"));
}

#[test]
fn memory_is_bounded_by_the_cap() {
    let rec = Recorder::new(Instruments::new(), 2, None, Vec::new());
    for i in 0..5000 {
        let class = if i % 2 == 0 {
            None
        } else {
            Some(ErrorClass::ALL[i % 11])
        };
        let mut m = AgentMetrics::new("openai", format!("model-{i}")).with_latency_ms(1.0);
        m.error_class = class;
        rec.record(&m);
    }
    let st = rec.state.lock().unwrap();
    assert_eq!(st.len(), 2, "folded combinations are not remembered");
    assert_eq!(rec.instruments().folded(), 4998);
    // Same combination, same handles; a different error class, another slot.
    drop(st);
    let a = AgentMetrics::new("openai", "model-0");
    assert!(Arc::ptr_eq(&rec.handles(&a), &rec.handles(&a)));
    assert!(!Arc::ptr_eq(
        &rec.handles(&a),
        &rec.handles(&a.clone().with_error(ErrorClass::Timeout))
    ));
    // Length-prefixed keys: ("ab", "c") and ("a", "bc") are distinct series.
    let rec = Recorder::new(Instruments::new(), 10, None, Vec::new());
    rec.record(&AgentMetrics::new("ab", "c"));
    rec.record(&AgentMetrics::new("a", "bc"));
    assert_eq!(rec.state.lock().unwrap().len(), 2);
}

#[test]
fn sanitising() {
    assert_eq!(
        label_value("a\"b\\c\nd"),
        "a\"b\\c\nd",
        "the encoder escapes these"
    );
    assert_eq!(label_value("a\u{0}b\rc\td"), "a\u{FFFD}b\u{FFFD}c\u{FFFD}d");
    assert_eq!(label_value(""), "");
    let long = "λ".repeat(300);
    let v = label_value(&long);
    assert!(v.len() <= MAX_VALUE_LEN && long.starts_with(&v));
    assert_eq!(repeat_count(3.0), 3);
    assert_eq!(repeat_count(0.2), 1);
    assert_eq!(repeat_count(1e9), MAX_REPEAT);
    assert_eq!(counter_weight(f64::NAN), 1.0);
}

/// Parse one OpenMetrics label-value (after `="`), undoing the escapes;
/// returns the value and the rest after the closing quote.
fn unescape(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut it = s.char_indices();
    while let Some((i, c)) = it.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match it.next()?.1 {
                'n' => out.push('\n'),
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                _ => return None,
            },
            '\n' => return None,
            c => out.push(c),
        }
    }
    None
}

proptest! {
    /// Any model/provider name gives a well-formed exposition (one
    /// sample per line, every label value properly quoted) from which
    /// the sanitised value is recovered exactly.
    #[test]
    fn odd_names_are_escaped_and_recoverable(
        model in prop_oneof![Just(String::new()), Just("a\"b\\c\nd{e}=f".to_string()), any::<String>()],
        provider in any::<String>(),
    ) {
        let m = AgentMetrics::new(provider.clone(), model.clone()).with_latency_ms(5.0);
        let text = exposition(&[m], 10);
        prop_assert!(text.ends_with("# EOF\n"));
        let line = text
            .lines()
            .find(|l| l.starts_with("steer_llm_requests_total{"))
            .expect("the requests sample");
        prop_assert!(line.ends_with("} 1.0"), "{}", line);
        let mut rest = &line["steer_llm_requests_total{".len()..];
        let mut got = Vec::new();
        while let Some(eq) = rest.find("=\"") {
            let key = rest[..eq].trim_start_matches(',').to_string();
            let (v, after) = unescape(&rest[eq + 2..]).expect("a well-formed value");
            got.push((key, v));
            rest = after;
        }
        prop_assert_eq!(rest, "} 1.0");
        let model_label = got.iter().find(|(k, _)| k == label::REQUEST_MODEL).map(|(_, v)| v.clone());
        prop_assert_eq!(model_label, Some(label_value(&model)));
        let provider_label = got.iter().find(|(k, _)| k == label::PROVIDER_NAME).map(|(_, v)| v.clone());
        prop_assert_eq!(provider_label, Some(label_value(provider_name(&provider))));
    }
}
