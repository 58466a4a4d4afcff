//! The CloudWatch sink against the moto server: publishes or rejects, counts add up.

use super::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_publishes_or_rejects_and_counts_add_up() {
    use steer_sink_cloudwatch::aws_sdk_cloudwatch as cw;
    let Some(ep) = service_env("STEER_TEST_CLOUDWATCH_ENDPOINT", "scripts/services/cloudwatch.sh") else {
        return;
    };
    let cases = corpus(9);
    let conf = cw::Config::builder()
        .behavior_version_latest()
        .region(cw::config::Region::new("us-east-1"))
        .endpoint_url(&ep)
        .credentials_provider(cw::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    let client = cw::Client::from_conf(conf);
    let ns = format!("steer-suites/hostile-{}", Uuid::now_v7().simple());
    let sink = steer_sink_cloudwatch::CloudWatchSink::builder()
        .namespace(&ns)
        .client(client.clone())
        .tag_dimension("team")
        .build()
        .await
        .unwrap();
    let (s, _collector) = drive(sink, &cases).await;

    // Every series of `Requests`, then the sum of its samples.
    let mut dims_sets = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .list_metrics()
            .namespace(&ns)
            .metric_name("Requests")
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        for m in out.metrics() {
            let mut d = m.dimensions().to_vec();
            d.sort_by(|a, b| a.name().cmp(&b.name()));
            if !dims_sets.contains(&d) {
                dims_sets.push(d);
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let now = Utc::now().timestamp();
    let mut total = 0.0;
    let mut got_models: BTreeMap<String, f64> = BTreeMap::new();
    for dims in &dims_sets {
        let out = client
            .get_metric_statistics()
            .namespace(&ns)
            .metric_name("Requests")
            .set_dimensions(Some(dims.clone()))
            .start_time(cw::primitives::DateTime::from_secs(now - 3 * 3600))
            .end_time(cw::primitives::DateTime::from_secs(now + 3600))
            .period(60)
            .statistics(cw::types::Statistic::Sum)
            .send()
            .await
            .unwrap();
        let sum = out
            .datapoints()
            .iter()
            .map(|d| d.sum().unwrap_or(0.0))
            .sum::<f64>();
        total += sum;
        let model = dims
            .iter()
            .find(|d| d.name() == Some("Model"))
            .and_then(|d| d.value())
            .unwrap_or("")
            .to_string();
        *got_models.entry(model).or_default() += sum;
        for d in dims {
            let v = d.value().unwrap_or("");
            assert!(
                !v.is_empty() && v.len() <= 255,
                "[cloudwatch] dimension value length {}",
                v.len()
            );
            assert!(
                !v.contains(['\0', '\n']),
                "[cloudwatch] control character in dimension {v:?}"
            );
        }
    }
    eprintln!("[cloudwatch] {} Requests series, total {total}", dims_sets.len());
    assert_no_exhaustion(&s);
    assert_eq!(
        total, s.delivered as f64,
        "[cloudwatch] published requests vs delivered: {s:?}"
    );
    let ordinary = cases.iter().filter(|c| c.category == Category::Ordinary).count() as u64;
    assert!(s.delivered >= ordinary, "[cloudwatch] {s:?}");
    // Per Model dimension, with the sink's own normalisation and validity rule.
    let mut want_models: BTreeMap<String, f64> = BTreeMap::new();
    let mut invalid = 0;
    for c in &cases {
        if steer_sink_cloudwatch::encode::invalid_reason(&c.record).is_some() {
            invalid += 1;
            continue;
        }
        *want_models
            .entry(steer_sink_cloudwatch::encode::normalize(
                &c.record.model,
                "none",
                false,
            ))
            .or_default() += 1.0;
    }
    assert_eq!(
        s.failed.rejected, invalid,
        "[cloudwatch] rejected vs the sink's own validity rule"
    );
    assert_eq!(
        got_models, want_models,
        "[cloudwatch] Requests per Model dimension"
    );
    // Documented rejections: NaN, ±Inf, negative and out-of-range values.
    let hostile_numbers = cases
        .iter()
        .filter(|c| {
            matches!(
                c.category,
                Category::NanLatency
                    | Category::InfLatency
                    | Category::NegativeNumbers
                    | Category::HugeFloats
            )
        })
        .count() as u64;
    assert_eq!(
        s.failed.rejected, hostile_numbers,
        "[cloudwatch] exactly the records with values CloudWatch refuses are rejected: {s:?}"
    );
}
