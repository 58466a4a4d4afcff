//! The JSON-lines sink: stores or rejects non-finite floats, never writes `null`.

use super::common::*;

async fn jsonl(cases: Vec<Case>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.jsonl");
    let (s, _collector) = drive(JsonLinesSink::new(&path), &cases).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let ids = by_id(&cases);
    let mut stored = HashSet::new();
    for line in text.lines() {
        let m: AgentMetrics = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "[jsonl] a stored line does not read back as a record ({e}): {:.300}",
                line
            )
        });
        let c = ids[&m.request_id];
        assert_eq!(
            format!("{m:?}"),
            format!("{:?}", c.record),
            "[jsonl] {} changed",
            c.category.name()
        );
        assert!(
            stored.insert(m.request_id),
            "[jsonl] duplicate line for {}",
            m.request_id
        );
    }
    let t = outcome("jsonl", &cases, &stored, &s);
    expect_none("jsonl", &t, &[Category::NanLatency, Category::InfLatency]);
    let others: Vec<Category> = Category::HOSTILE
        .into_iter()
        .filter(|c| !matches!(c, Category::NanLatency | Category::InfLatency))
        .collect();
    expect_all("jsonl", &t, &others);
}

// ------------------------------------------------------------ sqlite

/// What SQLite reads back (docs: crates/steer-sink-sqlite/src/encode.rs):
/// non-finite floats NULL (latency/weight NaN, optional ones None), counts
/// saturated at i64::MAX, timestamps at microsecond precision, and -0.0
/// reads back as 0.0.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_stores_or_rejects_non_finite_floats() {
    jsonl(corpus_without(2, &[Category::NanLatency, Category::InfLatency])).await;
}

/// Was bug 1: NaN/Inf were written as `null`, so the line no longer read
/// back and a -Inf cost silently became unknown. Now rejected alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_rejects_nan_and_inf_instead_of_writing_null() {
    jsonl(corpus_only(2, &[Category::NanLatency, Category::InfLatency])).await;
}
