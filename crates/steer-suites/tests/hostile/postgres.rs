//! The PostgreSQL sink against the real server: stores or rejects each record alone.

use super::common::*;

async fn postgres(cases: Vec<Case>) {
    let Some(url) = service_env("STEER_TEST_POSTGRES_URL", "scripts/services/postgres.sh") else {
        return;
    };
    let schema = format!("hostile_{}", &Uuid::now_v7().simple().to_string()[20..]);
    let sink = steer_sink_postgres::PostgresSink::builder(&url)
        .schema(&schema)
        .build()
        .unwrap();
    let (s, _collector) = drive(sink, &cases).await;

    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let rows = client
        .query(
            &format!(
                "SELECT request_id, model, provider, latency_ms, input_tokens, output_tokens, cost_usd::float8, \
                 tags::text, error_message, trace_id, \"timestamp\" FROM \"{schema}\".llm_metrics"
            ),
            &[],
        )
        .await
        .unwrap();
    let ids = by_id(&cases);
    let mut stored = HashSet::new();
    for r in &rows {
        let id: Uuid = r.get(0);
        let c = ids[&id];
        let m = &c.record;
        let what = c.category.name();
        assert_eq!(r.get::<_, String>(1), m.model, "[postgres] {what}: model");
        assert_eq!(r.get::<_, String>(2), m.provider, "[postgres] {what}: provider");
        assert_eq!(
            r.get::<_, f64>(3).to_bits(),
            m.latency_ms.to_bits(),
            "[postgres] {what}: latency"
        );
        assert_eq!(
            r.get::<_, i64>(4) as u64,
            m.input_tokens,
            "[postgres] {what}: input tokens"
        );
        assert_eq!(
            r.get::<_, i64>(5) as u64,
            m.output_tokens,
            "[postgres] {what}: output tokens"
        );
        assert_eq!(r.get::<_, Option<f64>>(6), m.cost_usd, "[postgres] {what}: cost");
        let tags: BTreeMap<String, String> = serde_json::from_str(&r.get::<_, String>(7)).unwrap();
        assert_eq!(tags, m.tags, "[postgres] {what}: tags");
        assert_eq!(
            r.get::<_, Option<String>>(8),
            m.error_message,
            "[postgres] {what}: error message"
        );
        assert_eq!(
            r.get::<_, Option<String>>(9),
            m.trace_id,
            "[postgres] {what}: trace id"
        );
        assert_eq!(
            r.get::<_, chrono::DateTime<Utc>>(10),
            m.timestamp,
            "[postgres] {what}: timestamp"
        );
        assert!(stored.insert(id));
    }
    let t = outcome("postgres", &cases, &stored, &s);
    // Documented rejections (docs/backends/postgres.md, encode::validate).
    expect_none(
        "postgres",
        &t,
        &[
            Category::NanLatency,
            Category::InfLatency,
            Category::MaxTokens,
            Category::NulBytes,
        ],
    );
    expect_all(
        "postgres",
        &t,
        &[
            Category::NegativeNumbers,
            Category::HugeFloats,
            Category::Newlines,
            Category::Quotes,
            Category::Backslashes,
            Category::Separators,
            Category::Unicode,
            Category::SqlInjection,
            Category::TenThousandTags,
            Category::EmptyModel,
        ],
    );
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

// ------------------------------------------------------------ influxdb

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_or_rejects_each_record_alone() {
    postgres(corpus_without(4, &[Category::MegaStrings])).await;
}

/// Was bug 2: a 1 MB model exceeds the btree index row limit (SQLSTATE
/// 54000), which was classified retryable, so the batch was retried until
/// exhausted and its ordinary batch-mates were lost. Now isolated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_isolates_oversized_index_rows() {
    postgres(corpus_only(4, &[Category::MegaStrings])).await;
}
