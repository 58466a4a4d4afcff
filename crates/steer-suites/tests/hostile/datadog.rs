//! The Datadog sink against a capture server: every delivered record counted, bodies valid.

use super::common::*;

async fn datadog(cases: Vec<Case>) {
    let validator = service_env("STEER_TEST_DD_VALIDATOR", "scripts/services/datadog.sh");
    let cap = CaptureServer::start(202, "application/json", "{\"errors\":[]}").await;
    let sink = steer_sink_datadog::DatadogSink::builder()
        .site(cap.url.clone())
        .api_key("fake-key")
        .host("suite-host")
        .service("steer-suites")
        .record_tag("team")
        .build()
        .unwrap();
    let (s, _collector) = drive(sink, &cases).await;

    // Count points: last write wins per (metric, tags, host, timestamp).
    let mut counts: HashMap<(String, Vec<String>, String, i64), f64> = HashMap::new();
    let mut bodies = Vec::new();
    for r in cap.requests() {
        let json = String::from_utf8(r.body.clone()).expect("[datadog] body is UTF-8");
        let v: serde_json::Value = match serde_json::from_str(&json) {
            Ok(v) => v,
            Err(e) => {
                let col = e.column().saturating_sub(1);
                let lo = json.floor_char_boundary(col.saturating_sub(300));
                let hi = json.ceil_char_boundary((col + 100).min(json.len()));
                panic!(
                    "[datadog] body {} is not valid JSON ({e}): ...{}...",
                    r.path,
                    &json[lo..hi]
                );
            }
        };
        if r.path == "/api/v2/series" {
            for ser in v["series"].as_array().unwrap() {
                let tags: Vec<String> = ser["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect();
                for t in &tags {
                    assert!(t.len() <= 200, "[datadog] tag longer than 200: {}", t.len());
                    assert!(
                        !t.contains(['\0', '\n', ' ', ',']),
                        "[datadog] tag {t:?} not normalised"
                    );
                }
                let host = ser["resources"][0]["name"].as_str().unwrap_or("").to_string();
                for p in ser["points"].as_array().unwrap() {
                    let val = p["value"].as_f64().unwrap();
                    assert!(val.is_finite(), "[datadog] non-finite value in {json:.200}");
                    counts.insert(
                        (
                            ser["metric"].as_str().unwrap().to_string(),
                            tags.clone(),
                            host.clone(),
                            p["timestamp"].as_i64().unwrap(),
                        ),
                        val,
                    );
                }
            }
            bodies.push(("series", json));
        } else {
            bodies.push(("distribution", json));
        }
    }
    let requests: f64 = counts
        .iter()
        .filter(|(k, _)| k.0 == "steer.llm.requests")
        .map(|(_, v)| v)
        .sum();
    // Per model series, with the sink's own tag normalisation.
    let mut got_models: BTreeMap<Option<String>, f64> = BTreeMap::new();
    for (k, v) in counts.iter().filter(|(k, _)| k.0 == "steer.llm.requests") {
        let model = k.1.iter().find(|t| t.starts_with("model:")).cloned();
        *got_models.entry(model).or_default() += v;
    }
    let mut want_models: BTreeMap<Option<String>, f64> = BTreeMap::new();
    for c in &cases {
        *want_models
            .entry(steer_sink_datadog::encode::tag("model", &c.record.model))
            .or_default() += 1.0;
    }
    if s.failed.total() == 0 {
        assert_eq!(got_models, want_models, "[datadog] requests per model series");
    }
    eprintln!(
        "[datadog] steer.llm.requests total {requests}, {} bodies",
        bodies.len()
    );
    assert_no_exhaustion(&s);
    assert_eq!(
        requests, s.delivered as f64,
        "[datadog] the request counts add up to the delivered records: {s:?}"
    );
    let ordinary = cases.iter().filter(|c| c.category == Category::Ordinary).count() as u64;
    assert!(s.delivered >= ordinary, "[datadog] {s:?}");
    for model in ["gpt-4o-mini", "claude-sonnet-4-5", "grok-4"] {
        let want = cases
            .iter()
            .filter(|c| c.category == Category::Ordinary && c.record.model == model)
            .count() as f64;
        let mt = format!("model:{model}");
        let got: f64 = counts
            .iter()
            .filter(|(k, _)| k.0 == "steer.llm.requests" && k.1.contains(&mt))
            .map(|(_, v)| v)
            .sum();
        assert!(
            got >= want,
            "[datadog] {model}: {got} requests counted, {want} ordinary records sent"
        );
    }

    if let Some(cmd) = validator {
        let dir = tempfile::tempdir().unwrap();
        let mut args = Vec::new();
        for (i, (kind, json)) in bodies.iter().enumerate() {
            let p = dir.path().join(format!("body-{i}.json"));
            std::fs::write(&p, json).unwrap();
            args.push(format!("{kind}:{}", p.display()));
        }
        let mut parts = cmd.split_whitespace();
        let out = std::process::Command::new(parts.next().unwrap())
            .args(parts)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "[datadog] schema validation failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ------------------------------------------------------------ otlp

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_counts_every_delivered_record_and_bodies_validate() {
    datadog(corpus(6)).await;
}

/// Was bug 3: two 1e308 costs in one series summed past f64::MAX and the
/// body carried 1.797693134862316e308, a JSON number out of the double range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_huge_costs_never_leave_the_double_range() {
    datadog(corpus_only(6, &[Category::HugeFloats])).await;
}
