//! The InfluxDB sink against the real server: stores normalised or rejects.

use super::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_stores_normalised_or_rejects() {
    use steer_sink_influxdb::{normalize_name, InfluxSink};
    let Some(url) = service_env("STEER_TEST_INFLUXDB_URL", "scripts/services/influxdb.sh") else {
        return;
    };
    let url = url.trim_end_matches('/').to_string();
    let cases = corpus(5);
    let http = reqwest::Client::new();
    let db = format!("hostile_{}", &Uuid::now_v7().simple().to_string()[20..]);
    let q = |db: Option<String>, q: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let mut form = vec![("q", q.clone()), ("epoch", "ns".to_string())];
            if let Some(db) = db {
                form.push(("db", db));
            }
            let resp = http
                .post(format!("{url}/query"))
                .form(&form)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{q}: {}", resp.status());
            let v: serde_json::Value = resp.json().await.unwrap();
            assert!(v["results"][0].get("error").is_none(), "{q}: {v}");
            v
        }
    };
    q(None, format!("CREATE DATABASE \"{db}\"")).await;
    let sink = InfluxSink::new(InfluxSink::builder(url.as_str()).database(&db).build().unwrap()).unwrap();
    let (s, _collector) = drive(sink, &cases).await;

    let v = q(
        Some(db.clone()),
        "SELECT \"request_id\", \"latency_ms\", \"input_tokens\", \"model\", \"provider\" FROM llm_request"
            .into(),
    )
    .await;
    let ids = by_id(&cases);
    let mut stored = HashSet::new();
    let empty = vec![];
    let series = v["results"][0]["series"].as_array().unwrap_or(&empty);
    for ser in series {
        let cols: Vec<&str> = ser["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let col = |name: &str| cols.iter().position(|c| *c == name).unwrap();
        for row in ser["values"].as_array().unwrap() {
            let id: Uuid = row[col("request_id")].as_str().unwrap().parse().unwrap();
            let c = ids[&id];
            let m = &c.record;
            let what = c.category.name();
            assert!(stored.insert(id), "[influxdb] {what}: point stored twice");
            assert_eq!(
                row[col("model")].as_str().unwrap_or(""),
                normalize_name(&m.model),
                "[influxdb] {what}: model"
            );
            assert_eq!(
                row[col("provider")].as_str().unwrap_or(""),
                normalize_name(&m.provider),
                "[influxdb] {what}: provider"
            );
            if m.latency_ms.is_finite() {
                assert_eq!(
                    row[col("latency_ms")].as_f64(),
                    Some(m.latency_ms),
                    "[influxdb] {what}: latency"
                );
            } else {
                assert!(
                    row[col("latency_ms")].is_null(),
                    "[influxdb] {what}: non-finite latency is skipped"
                );
            }
            let want = m.input_tokens.min(i64::MAX as u64);
            assert_eq!(
                row[col("input_tokens")].as_u64(),
                Some(want),
                "[influxdb] {what}: tokens (saturated)"
            );
        }
    }
    let t = outcome("influxdb", &cases, &stored, &s);
    expect_all(
        "influxdb",
        &t,
        &[
            Category::NanLatency,
            Category::InfLatency,
            Category::NegativeNumbers,
            Category::HugeFloats,
            Category::MaxTokens,
            Category::NulBytes,
            Category::Newlines,
            Category::Quotes,
            Category::Backslashes,
            Category::Separators,
            Category::Unicode,
            Category::SqlInjection,
            Category::EmptyModel,
        ],
    );
    q(None, format!("DROP DATABASE \"{db}\"")).await;
}
