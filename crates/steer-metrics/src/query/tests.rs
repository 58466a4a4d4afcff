use super::*;
use crate::record::ErrorClass;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

fn rec(secs: i64, model: &str, team: Option<&str>, err: Option<ErrorClass>) -> AgentMetrics {
    let mut m = AgentMetrics::new("openai", model).with_latency_ms(secs as f64);
    m.timestamp = at(secs);
    m.error_class = err;
    if let Some(t) = team {
        m.tags.insert("team".into(), t.into());
    }
    m.cost_usd = err.is_none().then_some(0.01);
    m
}

#[test]
fn keys_parse_and_print() {
    for (s, k) in [
        ("model", GroupKey::Model),
        ("provider", GroupKey::Provider),
        ("error", GroupKey::Error),
        ("finish_reason", GroupKey::FinishReason),
        ("tag:team", GroupKey::Tag("team".into())),
    ] {
        assert_eq!(s.parse::<GroupKey>().unwrap(), k);
    }
    assert_eq!(GroupKey::Error.to_string(), "error_class");
    assert_eq!("error_class".parse::<GroupKey>().unwrap(), GroupKey::Error);
    for bad in ["tag:", "tag:a'b", "tag:a\"b", "nope", "tag:a b"] {
        assert!(bad.parse::<GroupKey>().is_err(), "{bad}");
    }
    let f: Filter = "tag:team=a=b".parse().unwrap();
    assert_eq!(f.value, "a=b");
    assert!("model".parse::<Filter>().is_err());
}

#[test]
fn summary_groups_filters_and_folds() {
    let recs = vec![
        rec(10, "a", Some("x"), None),
        rec(20, "a", Some("y"), Some(ErrorClass::Timeout)),
        rec(30, "b", None, None),
        rec(40, "c", Some("x"), None),
    ];
    let q = StatsQuery::new().by("tag:team".parse().unwrap());
    let r = summarize(&recs, &q).unwrap();
    assert_eq!(r.groups.keys().collect::<Vec<_>>(), vec!["(none)", "x", "y"]);
    assert_eq!(r.groups["x"].count, 2);
    assert_eq!(r.total.count, 4);
    let q = StatsQuery::new()
        .by(GroupKey::Model)
        .filter("tag:team=x".parse().unwrap())
        .since(at(15));
    let r = summarize(&recs, &q).unwrap();
    assert_eq!(r.groups.keys().collect::<Vec<_>>(), vec!["c"]);
    let q = StatsQuery::new()
        .by(GroupKey::Model)
        .limits(QueryLimits::default().max_groups(1));
    let r = summarize(&recs, &q).unwrap();
    assert_eq!(r.groups.keys().collect::<Vec<_>>(), vec!["(other)", "a"]);
    assert_eq!(r.groups["(other)"].count, 2);
    assert_eq!(r.folded_groups, 2);
    let q = StatsQuery::new().by(GroupKey::Error);
    let r = summarize(&recs, &q).unwrap();
    assert_eq!(r.groups.keys().collect::<Vec<_>>(), vec!["none", "timeout"]);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["by"], "error_class");
    assert!(json["total"]["latency_ms"]["p95"].is_number());
}

#[test]
fn timeseries_has_every_step_of_the_window() {
    let recs = vec![
        rec(5, "a", None, None),
        rec(65, "a", None, None),
        rec(70, "b", None, Some(ErrorClass::RateLimit)),
    ];
    let q = StatsQuery::new()
        .since(at(0))
        .until(at(240))
        .by(GroupKey::Model)
        .step(Duration::from_secs(60));
    let t = timeseries(&recs, &q).unwrap();
    assert_eq!(t.buckets, vec![0, 60, 120, 180]);
    assert_eq!(
        t.total.iter().map(|s| s.count).collect::<Vec<_>>(),
        vec![1, 2, 0, 0]
    );
    assert_eq!(
        t.groups["b"].iter().map(|s| s.errors).collect::<Vec<_>>(),
        vec![0, 1, 0, 0]
    );
    assert_eq!(t.groups["a"].len(), 4);
    let too_fine = StatsQuery::new()
        .since(at(0))
        .until(at(100_000))
        .step(Duration::from_secs(1));
    assert!(matches!(
        timeseries(&recs, &too_fine),
        Err(QueryError::TooLarge(_))
    ));
}

#[test]
fn auto_steps_are_sensible() {
    let h = |s: u64| humanize(auto_step(Duration::from_secs(s)));
    assert_eq!(h(900), "10s");
    assert_eq!(h(3600), "30s");
    assert_eq!(h(6 * 3600), "5m");
    assert_eq!(h(86_400), "15m");
    assert_eq!(h(7 * 86_400), "3h");
    assert_eq!(h(30 * 86_400), "6h");
}

#[test]
fn rows_are_bounded() {
    let recs: Vec<_> = (0..5).map(|i| rec(i, "a", None, None)).collect();
    let q = StatsQuery::new().limits(QueryLimits::default().max_rows(3));
    assert!(matches!(summarize(&recs, &q), Err(QueryError::TooLarge(_))));
}
