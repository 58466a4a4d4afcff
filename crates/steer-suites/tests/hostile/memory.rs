//! The in-memory sink keeps every record as is.

use super::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stores_every_record_as_is() {
    let cases = corpus(1);
    let sink = MemorySink::builder().max_records(CORPUS_SIZE * 2).build();
    let (s, _collector) = drive(sink.clone(), &cases).await;
    let got: HashMap<Uuid, AgentMetrics> = sink.records().into_iter().map(|m| (m.request_id, m)).collect();
    let stored: HashSet<Uuid> = got.keys().copied().collect();
    let t = outcome("memory", &cases, &stored, &s);
    expect_all("memory", &t, &Category::HOSTILE);
    for c in &cases {
        // Debug also compares NaN with NaN.
        assert_eq!(
            format!("{:?}", got[&c.record.request_id]),
            format!("{:?}", c.record),
            "[memory] {} changed",
            c.category.name()
        );
    }
}
