//! Golden-data and property tests of the line-protocol encoder.

use super::*;
use chrono::TimeZone;
use proptest::prelude::*;
use steer_metrics::{ErrorClass, Method};

fn base() -> AgentMetrics {
    let mut m = AgentMetrics::new("openai", "gpt-4o-mini");
    m.request_id = "0190b1c2-0000-7000-8000-000000000001".parse().unwrap();
    m.timestamp = chrono::Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
    m.latency_ms = 812.5;
    m.input_tokens = 1200;
    m.output_tokens = 300;
    m
}

#[test]
fn golden_success_line() {
    let e = Encoder::new("llm_request", Precision::Nanoseconds);
    assert_eq!(
        e.encode_line(&base()).unwrap(),
        "llm_request,method=generate,model=gpt-4o-mini,provider=openai,status=success \
         latency_ms=812.5,input_tokens=1200i,output_tokens=300i,total_tokens=1500i,cached_tokens=0i,\
         retries=0i,tools_invoked=0i,agent_loop_iters=0i,sample_weight=1,\
         request_id=\"0190b1c2-0000-7000-8000-000000000001\" 1700000000123456789"
    );
}

#[test]
fn golden_error_line_with_every_optional_field() {
    let mut m = base()
        .with_error(ErrorClass::RateLimit)
        .with_tag("team", "search");
    m.method = Method::Stream;
    m.ttft_ms = Some(120.0);
    m.cached_tokens = 1000;
    m.cache_write_tokens = Some(10);
    m.cache_write_1h_tokens = Some(4);
    m.finish_reason = Some("length".into());
    m.reasoning_tokens = Some(5);
    m.cost_usd = Some(0.0123);
    m.retries = 2;
    m.error_message = Some("too \"many\" \\ requests\nslow down".into());
    m.response_model = Some("gpt-4o-mini-2024-07-18".into());
    m.trace_id = Some("t1".into());
    m.agent_runtime = Some("loop".into());
    m.tools_used = vec!["search".into(), "calc".into()];
    m.tools_invoked = 2;
    m.agent_loop_iters = 3;
    m.sample_weight = 4.0;
    let e = Encoder::new("llm_request", Precision::Milliseconds);
    assert_eq!(
        e.encode_line(&m).unwrap(),
        "llm_request,error_class=rate_limit,finish_reason=length,method=stream,model=gpt-4o-mini,provider=openai,status=error,team=search \
         latency_ms=812.5,ttft_ms=120,input_tokens=1200i,output_tokens=300i,total_tokens=1500i,\
         cached_tokens=1000i,cache_write_tokens=10i,cache_write_1h_tokens=4i,reasoning_tokens=5i,cost_usd=0.0123,retries=2i,\
         tools_invoked=2i,agent_loop_iters=3i,sample_weight=4,agent_runtime=\"loop\",\
         error_message=\"too \\\"many\\\" \\\\ requests\nslow down\",\
         request_id=\"0190b1c2-0000-7000-8000-000000000001\",response_model=\"gpt-4o-mini-2024-07-18\",\
         tools_used=\"search,calc\",trace_id=\"t1\" 1700000000123"
    );
}

#[test]
fn escapes_names_and_normalises_what_cannot_be_written() {
    let m = base()
        .with_tag("a b", "c,d=e")
        .with_tag("empty", "")
        .with_tag("nl", "x\ny\rz")
        .with_tag("trail", "v\\")
        .with_tag("only", "\\\\")
        .with_tag("time", "t")
        .with_tag("model", "shadowed")
        .with_tag("uni", "héllo ✓");
    let mut m = m;
    m.model = "my model,v=2\\".into();
    let mut e = Encoder::new("m e,a=s", Precision::Seconds);
    e.placement[Attribute::RequestId as usize] = Placement::Omit;
    let line = e.encode_line(&m).unwrap();
    assert!(line.starts_with("m\\ e\\,a=s,"), "{line}");
    assert!(line.contains(",a\\ b=c\\,d\\=e,"), "{line}");
    assert!(!line.contains("empty"), "{line}");
    assert!(!line.contains("only"), "{line}");
    assert!(line.contains(",nl=x\\ y\\ z,"), "{line}");
    assert!(line.contains(",trail=v,"), "{line}");
    assert!(line.contains(",time_=t,"), "{line}");
    assert!(line.contains(",model=my\\ model\\,v\\=2,"), "{line}");
    assert!(!line.contains("shadowed"), "{line}");
    assert!(line.contains(",uni=héllo\\ ✓ "), "{line}");
    assert!(line.ends_with(" 1700000000"), "{line}");
}

#[test]
fn normalisation_rules() {
    assert_eq!(normalize_name("plain"), "plain");
    assert!(matches!(normalize_name("a\\b"), Cow::Borrowed(_)));
    assert_eq!(normalize_name("a\\b\\\\c"), "a\\b\\\\c");
    assert_eq!(normalize_name("a\\,b"), "a,b");
    assert_eq!(normalize_name("a\\\\\\ b"), "a b");
    assert_eq!(normalize_name("a\\=b"), "a=b");
    assert_eq!(normalize_name("q\\\"x"), "q\"x");
    assert_eq!(normalize_name("end\\\\"), "end");
    assert_eq!(normalize_name("x\\\ny"), "x y");
    assert_eq!(normalize_name("\r\n"), "  ");
    assert_eq!(normalize_key("time"), "time_");
    assert_eq!(normalize_key("_field"), "_field_");
    assert_eq!(normalize_key("times"), "times");
}

#[test]
fn non_finite_floats_are_skipped_and_integers_saturate() {
    let mut m = base();
    m.latency_ms = f64::NAN;
    m.ttft_ms = Some(f64::INFINITY);
    m.cost_usd = Some(f64::NEG_INFINITY);
    m.sample_weight = 1e300;
    m.input_tokens = u64::MAX;
    let line = Encoder::new("m", Precision::Nanoseconds).encode_line(&m).unwrap();
    assert!(!line.contains("latency_ms"), "{line}");
    assert!(!line.contains("ttft_ms"), "{line}");
    assert!(!line.contains("cost_usd"), "{line}");
    assert!(line.contains("sample_weight=1e+300"), "{line}");
    assert!(line.contains("input_tokens=9223372036854775807i"), "{line}");
    assert!(line.contains("total_tokens=9223372036854775807i"), "{line}");
    assert!(!line.contains("NaN") && !line.contains("inf"), "{line}");
}

#[test]
fn a_record_with_no_field_left_is_an_error_and_writes_nothing() {
    let mut placement = Attribute::ALL.map(Attribute::default_placement);
    for a in Attribute::ALL {
        if a != Attribute::LatencyMs && a.default_placement() == Placement::Field {
            placement[a as usize] = Placement::Omit;
        }
    }
    let e = Encoder::with_placement("m", Precision::Nanoseconds, placement, String::new());
    let mut m = base();
    m.latency_ms = f64::NAN;
    let mut out = b"keep".to_vec();
    assert_eq!(e.encode(&m, &mut out), Err(EncodeError::NoFields));
    assert_eq!(out, b"keep");
    m.latency_ms = 1.0;
    e.encode(&m, &mut out).unwrap();
    assert!(out.ends_with(b" latency_ms=1 1700000000123456789"));
}

#[test]
fn timestamps_in_every_precision_and_out_of_range() {
    let mut m = base();
    assert_eq!(
        timestamp(&m, Precision::Nanoseconds),
        Ok(1_700_000_000_123_456_789)
    );
    assert_eq!(timestamp(&m, Precision::Microseconds), Ok(1_700_000_000_123_456));
    assert_eq!(timestamp(&m, Precision::Milliseconds), Ok(1_700_000_000_123));
    assert_eq!(timestamp(&m, Precision::Seconds), Ok(1_700_000_000));
    // Before 1970: rounded down, not toward zero.
    m.timestamp = chrono::Utc.timestamp_opt(-2, 500_000_000).unwrap();
    assert_eq!(timestamp(&m, Precision::Seconds), Ok(-2));
    assert_eq!(timestamp(&m, Precision::Milliseconds), Ok(-1500));
    for year in [1600, 2300, 9999, -5000] {
        m.timestamp = chrono::Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
        for p in [
            Precision::Nanoseconds,
            Precision::Microseconds,
            Precision::Seconds,
        ] {
            assert!(matches!(
                timestamp(&m, p),
                Err(EncodeError::TimestampOutOfRange(_))
            ));
        }
        let mut out = Vec::new();
        assert!(Encoder::new("m", p_any()).encode(&m, &mut out).is_err());
        assert!(out.is_empty());
    }
    m.timestamp = chrono::Utc.with_ymd_and_hms(2262, 1, 1, 0, 0, 0).unwrap();
    assert!(timestamp(&m, Precision::Seconds).is_ok());
}

fn p_any() -> Precision {
    Precision::Milliseconds
}

#[test]
fn line_has_field_reads_the_field_section_only() {
    let l = br#"m,latency_ms=tag a="x,latency_ms=1",b\ c=2i,d=3 1"#;
    assert!(!line_has_field(l, "latency_ms"));
    assert!(line_has_field(l, "a"));
    assert!(line_has_field(l, "b c"));
    assert!(line_has_field(l, "d"));
    assert!(!line_has_field(l, "x"));
}

proptest! {
    /// Records whose user-tag keys need no normalisation take a
    /// merge-without-buffer path; a prefix forces the general path.
    /// Both must write the same line.
    #[test]
    fn fast_and_general_tag_paths_agree(
        tags in prop::collection::btree_map("[a-z_]{1,12}", "[a-z ,=\\\\]{0,6}", 0..6),
        error in any::<bool>(),
    ) {
        let mut plain = base();
        let mut prefixed = base();
        for (k, v) in &tags {
            plain.tags.insert(format!("p{k}"), v.clone());
            prefixed.tags.insert(k.clone(), v.clone());
        }
        if error {
            plain.error_class = Some(ErrorClass::Timeout);
            prefixed.error_class = Some(ErrorClass::Timeout);
        }
        let placement = Attribute::ALL.map(Attribute::default_placement);
        let fast = Encoder::with_placement("m", Precision::Nanoseconds, placement, String::new());
        let general = Encoder::with_placement("m", Precision::Nanoseconds, placement, "p".into());
        prop_assert_eq!(fast.encode_line(&plain).unwrap(), general.encode_line(&prefixed).unwrap());
    }

    #[test]
    fn normalised_names_never_hold_a_backslash_before_a_separator(s in "[a-z\\\\ ,=\n\r\"é]{0,16}") {
        let n = normalize_name(&s);
        let b = n.as_bytes();
        prop_assert!(!b.contains(&b'\n') && !b.contains(&b'\r'));
        prop_assert!(b.last() != Some(&b'\\'));
        for w in b.windows(2) {
            prop_assert!(!(w[0] == b'\\' && matches!(w[1], b' ' | b',' | b'=' | b'"')));
        }
        // Idempotent.
        prop_assert_eq!(normalize_name(&n), n.clone());
    }

    #[test]
    fn every_line_is_one_line_with_one_unescaped_space_before_fields_and_time(
        model in "\\PC{0,12}", key in "[a-z\\\\ ,=\n\"]{1,6}", value in "\\PC{0,8}",
        msg in "(\\PC|\n){0,20}",
    ) {
        let mut m = base().with_tag(key, value);
        m.model = model;
        m.error_message = Some(msg);
        let line = Encoder::new("m", Precision::Nanoseconds).encode_line(&m).unwrap();
        let start = fields_start(line.as_bytes()).unwrap();
        prop_assert!(!line[..start].contains('\n'));
        prop_assert!(line_has_field(line.as_bytes(), "latency_ms"));
        prop_assert!(line_has_field(line.as_bytes(), "error_message"));
        prop_assert!(line.ends_with(" 1700000000123456789"));
    }
}
