//! The Prometheus sink: every record counted, the exposition parses.

use super::common::*;

fn prom_label(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Tolerant OpenMetrics parsing: the sum of the samples of `metric`
/// (the value is the first token after the label set's closing brace).
fn prom_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .map(|l| {
            let rest = l.rfind('}').map_or_else(|| &l[metric.len()..], |p| &l[p + 1..]);
            rest.split_whitespace().next().unwrap().parse::<f64>().unwrap()
        })
        .sum()
}

async fn prometheus(cases: Vec<Case>) {
    let sink = steer_sink_prometheus::PrometheusSink::builder()
        .serve("127.0.0.1:0")
        .unwrap();
    let addr = sink.local_addr().unwrap();
    let (s, _collector) = drive(sink.clone(), &cases).await;
    let _keep = sink;
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "[prometheus] exposition must end with # EOF"
    );
    for l in text.lines() {
        assert!(!l.contains('\0'), "[prometheus] raw NUL in the exposition");
    }
    let requests = prom_sum(&text, "steer_llm_requests_total");
    let mut got_models: BTreeMap<String, f64> = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with("steer_llm_requests_total{"))
    {
        let model = prom_label(l, "gen_ai_request_model").unwrap_or_default();
        *got_models.entry(model).or_default() += prom_sum(l, "steer_llm_requests_total");
    }
    let mut want_models: BTreeMap<String, f64> = BTreeMap::new();
    for c in &cases {
        *want_models
            .entry(steer_sink_prometheus::instruments::label_value(&c.record.model))
            .or_default() += 1.0;
    }
    assert_eq!(
        got_models, want_models,
        "[prometheus] requests per gen_ai_request_model"
    );
    let folded = prom_sum(&text, "steer_prometheus_folded_series_total");
    eprintln!(
        "[prometheus] requests {requests}, folded {folded}, {} bytes",
        text.len()
    );
    assert_no_exhaustion(&s);
    assert_eq!(
        requests, s.delivered as f64,
        "[prometheus] request counter vs delivered: {s:?}"
    );
    assert_eq!(s.delivered, cases.len() as u64, "[prometheus] {s:?}");
    for l in text.lines().filter(|l| l.starts_with("steer_llm_cost_usd_total")) {
        let v = prom_sum(l, "steer_llm_cost_usd_total");
        assert!(
            v.is_finite(),
            "[prometheus] a cost counter is no longer a number: {l:.300}"
        );
    }
    for model in ["gpt-4o-mini", "claude-sonnet-4-5", "grok-4"] {
        assert!(
            text.contains(&format!("gen_ai_request_model=\"{model}\"")),
            "[prometheus] ordinary model {model} missing"
        );
    }
}

// ------------------------------------------------------------ cloudwatch

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counts_every_record_and_exposition_parses() {
    prometheus(corpus(8)).await;
}

/// Was bug 5: two 1e308 costs in one series summed to +Inf and
/// steer_llm_cost_usd_total read `inf`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_huge_costs_keep_the_cost_counter_finite() {
    prometheus(corpus_only(8, &[Category::HugeFloats])).await;
}

// ------------------------------------------------------------ property: arbitrary hostile values
