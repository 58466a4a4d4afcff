//! Tests of the series state: count cells, distributions, the cardinality cap and resume marks.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::{MAX_COST_USD, MAX_DURATION_MS};

fn rec(model: &str, secs: i64) -> AgentMetrics {
    let mut m = AgentMetrics::new("openai", model)
        .with_tokens(10, 5)
        .with_latency_ms(100.0);
    m.timestamp = chrono::DateTime::from_timestamp(secs, 0).unwrap();
    m
}

fn total(a: &Aggregator, c: Count) -> f64 {
    a.buckets
        .values()
        .flat_map(|b| b.cells.iter())
        .filter(|((cc, _), _)| *cc == c)
        .map(|(_, cell)| cell.value)
        .sum()
}

#[test]
fn counts_are_cumulative_per_interval_and_added_once() {
    let mut a = Aggregator::new(10, 1000, 60, vec![], vec![]);
    let batch = vec![rec("a", 1_000), rec("a", 1_005), rec("a", 1_011)];
    let (touched, dists) = a.add_batch(&batch, &[false; 3]);
    assert_eq!(total(&a, Count::Requests), 3.0);
    assert_eq!(a.dirty().iter().filter(|p| p.key.1 == Count::Requests).count(), 2);
    assert_eq!(dists.len(), 2);
    // A retry of record 0 after its counts were added adds nothing.
    a.mark(batch[0].request_id, COUNTS_ADDED);
    let (_, d2) = a.add_batch(&batch[..1], &[false]);
    assert_eq!(total(&a, Count::Requests), 3.0);
    assert_eq!(d2.len(), 1, "its latency was not shipped yet");
    assert_eq!(touched[0].cells.len(), 3, "requests, input and output tokens");
}

#[test]
fn cardinality_is_capped_and_folded() {
    let mut a = Aggregator::new(10, 2, 60, vec![], vec![]);
    let batch: Vec<_> = (0..5).map(|i| rec(&format!("m{i}"), 1_000)).collect();
    a.add_batch(&batch, &[false; 5]);
    assert_eq!(a.counters.folded, 3);
    let other = a
        .dirty()
        .into_iter()
        .find(|p| p.key.1 == Count::Requests && p.key.2.contains(&"model:other".to_string()))
        .unwrap();
    assert_eq!(other.value, 3.0);
}

#[test]
fn the_finish_reason_is_a_tag_of_the_series() {
    let mut a = Aggregator::new(10, 2, 60, vec!["env:prod".into()], vec!["team".into()]);
    let with = |model: &str, f: Option<&str>| {
        let mut m = rec(model, 1_000);
        m.finish_reason = f.map(String::from);
        m.tags.insert("team".into(), "search".into());
        m
    };
    assert_eq!(
        a.tags_of(&with("gpt-5", Some("length"))),
        [
            "env:prod",
            "finish_reason:length",
            "method:generate",
            "model:gpt-5",
            "provider:openai",
            "status:success",
            "team:search"
        ]
    );
    assert!(
        !a.tags_of(&with("gpt-5", None))
            .iter()
            .any(|t| t.starts_with("finish_reason:")),
        "absent without a finish reason"
    );
    assert!(!a
        .tags_of(&with("gpt-5", Some("")))
        .iter()
        .any(|t| t.starts_with("finish_reason:")));
    // Two series fill the cap; further ones fold with a bounded finish reason.
    let batch = [
        with("a", Some("stop")),
        with("a", Some("length")),
        with("b", Some("max_tokens")),
        with("c", Some("brand-new")),
    ];
    a.add_batch(&batch, &[false; 4]);
    assert_eq!(a.counters.folded, 2);
    let folded: Vec<Vec<String>> = a
        .dirty()
        .into_iter()
        .filter(|p| p.key.1 == Count::Requests && p.key.2.contains(&"model:other".to_string()))
        .map(|p| {
            p.key
                .2
                .iter()
                .filter(|t| t.starts_with("finish_reason:"))
                .cloned()
                .collect()
        })
        .collect();
    assert_eq!(
        folded,
        [
            vec!["finish_reason:max_tokens".to_string()],
            vec!["finish_reason:other".to_string()]
        ]
    );
}

#[test]
fn late_records_join_the_oldest_retained_bucket() {
    let mut a = Aggregator::new(10, 100, 2, vec![], vec![]);
    a.add_batch(&[rec("a", 1_000)], &[false]);
    a.add_batch(&[rec("a", 1_050)], &[false]);
    assert_eq!(
        a.counters.lost_points, 3,
        "the first bucket was dropped undelivered"
    );
    a.add_batch(&[rec("a", 1_001)], &[false]);
    let ts: Vec<i64> = a.buckets.keys().copied().collect();
    assert_eq!(ts, vec![1_040, 1_050]);
    assert_eq!(total(&a, Count::Requests), 2.0);
}

#[test]
fn huge_values_are_left_out_and_points_stay_in_the_double_range() {
    let mut a = Aggregator::new(10, 1000, 60, vec![], vec![]);
    let huge = |secs| {
        let mut m = rec("a", secs);
        m.cost_usd = Some(1e308);
        m.latency_ms = 1e308;
        m.ttft_ms = Some(f64::INFINITY);
        m
    };
    let mut ok = rec("a", 1_002);
    ok.cost_usd = Some(0.25);
    let batch = [huge(1_000), huge(1_001), ok];
    let (_, dists) = a.add_batch(&batch, &[false; 3]);
    for p in a.dirty() {
        assert!(fits_point(p.value), "{:?} carries {}", p.key.1, p.value);
    }
    assert_eq!(total(&a, Count::Cost), 0.25, "only the plausible cost");
    assert_eq!(total(&a, Count::Requests), 3.0, "the records are still counted");
    assert_eq!(total(&a, Count::InputTokens), 30.0);
    let lat: Vec<f64> = dists.iter().flat_map(|d| d.values.clone()).collect();
    assert_eq!(lat, vec![100.0], "1e308 ms is not a latency");
    assert_eq!(a.counters.invalid_values, 6, "latency, ttft and cost of both");
    // A retry of the same records adds nothing and counts nothing again.
    a.add_batch(&batch[..2], &[false; 2]);
    assert_eq!(a.counters.invalid_values, 6);
    assert_eq!(total(&a, Count::Requests), 3.0);
}

#[test]
fn a_contribution_past_the_point_bound_is_left_out() {
    let mut a = Aggregator::new(10, 1000, 60, vec![], vec![]);
    let mut m = rec("a", 1_000);
    m.cost_usd = Some(1e9);
    m.sample_weight = 6e291; // cost 6e300: past the bound; tokens 6e292 fit
    let mut n = m.clone();
    n.request_id = uuid::Uuid::now_v7();
    a.add_batch(&[m, n], &[false; 2]);
    assert_eq!(total(&a, Count::Cost), 0.0);
    assert_eq!(total(&a, Count::Requests), 2.0 * 6e291);
    assert_eq!(a.counters.invalid_values, 2);
    for p in a.dirty() {
        assert!(fits_point(p.value));
    }
    assert!(
        !a.dirty().iter().any(|p| p.key.1 == Count::Cost),
        "no empty cost point"
    );
}

#[test]
fn bounds() {
    assert!(valid_cost(0.0) && valid_cost(MAX_COST_USD));
    assert!(!valid_cost(-0.5) && !valid_cost(1.1e9) && !valid_cost(f64::NAN));
    assert!(valid_duration(MAX_DURATION_MS) && !valid_duration(1e308));
    assert!(!valid_duration(f64::NEG_INFINITY) && !valid_duration(-1.0));
    assert!(fits_point(MAX_POINT_VALUE) && !fits_point(f64::MAX) && !fits_point(f64::INFINITY));
}
