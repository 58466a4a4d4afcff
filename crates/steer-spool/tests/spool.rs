//! The spool on its own: order, acknowledgement, caps, persistence.
#![allow(clippy::unwrap_used)]

use steer_metrics::{AgentMetrics, Spool};
use steer_spool::{OnFull, SpoolConfig, SqliteSpool, SyncPolicy};
use uuid::Uuid;

fn rec(i: u64) -> AgentMetrics {
    let mut m = AgentMetrics::new("openai", "gpt-4o-mini").with_latency_ms(i as f64);
    m.request_id = Uuid::from_u128(u128::from(i) + 1);
    m
}

fn ids(v: &[(u64, AgentMetrics)]) -> Vec<u64> {
    v.iter().map(|(_, m)| m.request_id.as_u128() as u64 - 1).collect()
}

#[test]
fn appends_peeks_in_order_and_acks() {
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteSpool::open(dir.path().join("s.db"), SpoolConfig::default()).unwrap();
    assert!(spool.is_empty().unwrap());
    let originals: Vec<AgentMetrics> = (0..15).map(rec).collect();
    spool.append(&originals[..10]).unwrap();
    spool.append(&originals[10..]).unwrap();
    assert_eq!(spool.len().unwrap(), 15);
    assert!(spool.bytes().unwrap() > 0);

    let head = spool.peek(4).unwrap();
    assert_eq!(ids(&head), vec![0, 1, 2, 3]);
    // Sequence numbers increase.
    assert!(head.windows(2).all(|w| w[0].0 < w[1].0));
    // Peek again without ack: same head.
    assert_eq!(ids(&spool.peek(4).unwrap()), vec![0, 1, 2, 3]);
    spool.ack(head[3].0).unwrap();
    assert_eq!(spool.len().unwrap(), 11);
    let rest = spool.peek(100).unwrap();
    assert_eq!(ids(&rest), (4..15).collect::<Vec<_>>());
    // Records round-trip intact.
    assert_eq!(rest[0].1, originals[4]);
    spool.ack(rest.last().unwrap().0).unwrap();
    assert!(spool.is_empty().unwrap());
    assert_eq!(spool.bytes().unwrap(), 0);
}

#[test]
fn reopening_keeps_content_and_sequence_numbers_never_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let last_seq;
    {
        let spool = SqliteSpool::open(&path, SpoolConfig::default()).unwrap();
        spool.append(&(0..5).map(rec).collect::<Vec<_>>()).unwrap();
        let head = spool.peek(2).unwrap();
        spool.ack(head[1].0).unwrap();
        last_seq = spool.peek(10).unwrap().last().unwrap().0;
    }
    let spool = SqliteSpool::open(&path, SpoolConfig::default()).unwrap();
    assert_eq!(spool.len().unwrap(), 3);
    let all = spool.peek(10).unwrap();
    assert_eq!(ids(&all), vec![2, 3, 4]);
    spool.ack(all.last().unwrap().0).unwrap();
    // Empty now; new records still get larger sequence numbers.
    spool.append(&[rec(9)]).unwrap();
    assert!(spool.peek(1).unwrap()[0].0 > last_seq);
}

#[test]
fn drop_newest_refuses_beyond_the_record_cap_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteSpool::open(
        dir.path().join("s.db"),
        SpoolConfig::default().max_records(10).on_full(OnFull::DropNewest),
    )
    .unwrap();
    assert_eq!(spool.append(&(0..8).map(rec).collect::<Vec<_>>()).unwrap(), 0);
    assert_eq!(spool.append(&(8..15).map(rec).collect::<Vec<_>>()).unwrap(), 5);
    assert_eq!(spool.dropped(), 5);
    assert_eq!(ids(&spool.peek(100).unwrap()), (0..10).collect::<Vec<_>>());
}

#[test]
fn drop_oldest_evicts_but_never_what_is_being_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteSpool::open(
        dir.path().join("s.db"),
        SpoolConfig::default().max_records(10).on_full(OnFull::DropOldest),
    )
    .unwrap();
    spool.append(&(0..10).map(rec).collect::<Vec<_>>()).unwrap();
    assert_eq!(spool.append(&(10..13).map(rec).collect::<Vec<_>>()).unwrap(), 3);
    assert_eq!(ids(&spool.peek(100).unwrap()), (3..13).collect::<Vec<_>>());
    spool.ack(u64::MAX).unwrap();

    // Pin the head (as the collector does while delivering it).
    spool.append(&(0..10).map(rec).collect::<Vec<_>>()).unwrap();
    let head = spool.peek(4).unwrap();
    assert_eq!(ids(&head), vec![0, 1, 2, 3]);
    assert_eq!(spool.append(&(10..16).map(rec).collect::<Vec<_>>()).unwrap(), 6);
    // 0..4 pinned and kept; 4..10 evicted; 10..16 kept.
    assert_eq!(
        ids(&spool.peek(100).unwrap()),
        vec![0, 1, 2, 3, 10, 11, 12, 13, 14, 15]
    );
    assert_eq!(spool.len().unwrap(), 10);
    assert_eq!(spool.dropped(), 9);
}

#[test]
fn byte_cap_is_respected() {
    let dir = tempfile::tempdir().unwrap();
    let one = serde_json::to_vec(&rec(0)).unwrap().len() as u64;
    let spool = SqliteSpool::open(
        dir.path().join("s.db"),
        SpoolConfig::default()
            .max_bytes(one * 5 + one / 2)
            .sync(SyncPolicy::Normal),
    )
    .unwrap();
    let dropped = spool.append(&(0..8).map(rec).collect::<Vec<_>>()).unwrap();
    assert_eq!(dropped, 3);
    assert_eq!(spool.len().unwrap(), 5);
    assert!(spool.bytes().unwrap() <= one * 5 + one / 2);
}
