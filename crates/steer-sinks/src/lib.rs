//! # steer-sinks
//!
//! Every steer sink kind in one [`SinkRegistry`]: a sink spec string
//! (`sqlite:calls.db`, `postgres://steer@db/metrics`,
//! `influxdb2s://h:8086?org=o&bucket=b`, `datadog:datadoghq.eu`,
//! `otlp:http://collector:4318`, `prometheus:0.0.0.0:9464`,
//! `cloudwatch:LLM/Metrics`, `jsonl:calls.jsonl`, `log`) to a sink.
//!
//! Each sink crate owns its grammar (its `spec` module implements
//! [`SinkKind`]); this crate only lists them, one line per kind, each
//! behind the cargo feature of the same name (`full` = all). A kind whose
//! feature is off still parses, and building it is
//! [`SinkBuildError::NotBuilt`] naming the feature.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = steer_sinks::parse("jsonl:calls.jsonl")?.build().await?;
//! # let _ = sink; Ok(()) }
//! ```
//!
//! Adding a sink kind: implement [`SinkKind`] in its crate, add its line to
//! [`registry`] and a feature here.
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::sync::OnceLock;

pub use steer_metrics::registry::{
    NotBuiltKind, SinkBuildError, SinkFactory, SinkKind, SinkRegistry, SinkSpec, SpecError,
};

/// One line per kind: its cargo feature, its [`SinkKind`], and (for builds
/// without the feature) its schemes and grammar.
macro_rules! register {
    ($r:ident; $($feature:literal => $kind:path, [$($scheme:literal),+], $usage:literal;)+) => {
        $(
            #[cfg(feature = $feature)]
            let $r = $r.register($kind);
            #[cfg(not(feature = $feature))]
            let $r = $r.register(NotBuiltKind { name: $feature, schemes: &[$($scheme),+], usage: $usage });
        )+
    };
}

/// A registry of every sink kind: `log` and `jsonl` (always), then each
/// backend (built, or [`NotBuiltKind`] when its feature is off). Register
/// your own kinds on it to extend (a later kind wins a scheme).
pub fn registry() -> SinkRegistry {
    let r = SinkRegistry::builtin();
    register! { r;
        "sqlite" => steer_sink_sqlite::spec::SqliteKind, ["sqlite"], "sqlite:PATH";
        "postgres" => steer_sink_postgres::spec::PostgresKind, ["postgres", "postgresql"], "postgres://USER@HOST:PORT/DB";
        "influxdb" => steer_sink_influxdb::spec::InfluxKind, ["influxdb", "influxdbs", "influxdb2", "influxdb2s"], "influxdb[s]://HOST:PORT/DB, influxdb2[s]://HOST:PORT?org=O&bucket=B";
        "cloudwatch" => steer_sink_cloudwatch::spec::CloudWatchKind, ["cloudwatch"], "cloudwatch:NAMESPACE";
        "datadog" => steer_sink_datadog::spec::DatadogKind, ["datadog"], "datadog[:SITE_OR_URL]";
        "otlp" => steer_sink_otlp::spec::OtlpKind, ["otlp"], "otlp:URL";
        "prometheus" => steer_sink_prometheus::spec::PrometheusKind, ["prometheus"], "prometheus:ADDR";
    }
    r
}

/// Parse a spec with [`registry`] (built once).
pub fn parse(spec: &str) -> Result<SinkSpec, SpecError> {
    static REGISTRY: OnceLock<SinkRegistry> = OnceLock::new();
    REGISTRY.get_or_init(registry).parse(spec)
}

/// The SQLite store at `path` as a spec (paths that are not UTF-8 too).
#[cfg(feature = "sqlite")]
pub fn sqlite(path: impl Into<std::path::PathBuf>) -> SinkSpec {
    SinkSpec::new(steer_sink_sqlite::spec::SqliteSpec::new(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[cfg(feature = "full")]
    #[test]
    fn every_documented_form_parses() {
        let ok = [
            ("sqlite:/tmp/x.db", "sqlite", "sqlite:/tmp/x.db"),
            ("jsonl:out.jsonl", "jsonl", "jsonl:out.jsonl"),
            ("log", "log", "log"),
            ("postgres://u@h:5432/db", "postgres", "postgres://u@h:5432/db"),
            ("postgresql://u@h/db", "postgres", "postgresql://u@h/db"),
            ("influxdb://h:8086/db", "influxdb", "influxdb://h:8086/db"),
            ("influxdbs://h:8086/db", "influxdb", "influxdbs://h:8086/db"),
            (
                "influxdb2://h:8086?org=o&bucket=b",
                "influxdb",
                "influxdb2://h:8086?org=o&bucket=b",
            ),
            (
                "influxdb2s://h:8086?org=o&bucket=b",
                "influxdb",
                "influxdb2s://h:8086?org=o&bucket=b",
            ),
            ("cloudwatch:LLM/Metrics", "cloudwatch", "cloudwatch:LLM/Metrics"),
            ("datadog", "datadog", "datadog"),
            ("datadog:datadoghq.eu", "datadog", "datadog:datadoghq.eu"),
            ("otlp:http://127.0.0.1:4318", "otlp", "otlp:http://127.0.0.1:4318"),
            ("otlp://127.0.0.1:4318", "otlp", "otlp:http://127.0.0.1:4318"),
            (
                "prometheus:127.0.0.1:9464",
                "prometheus",
                "prometheus:127.0.0.1:9464",
            ),
        ];
        for (s, kind, shown) in ok {
            let spec = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!((spec.kind(), spec.to_string().as_str()), (kind, shown), "{s}");
        }
    }

    #[cfg(feature = "full")]
    #[test]
    fn bad_specs_are_typed_errors() {
        assert!(matches!(parse("kafka:x"), Err(SpecError::Unknown { .. })));
        assert!(matches!(
            parse("sqlite:"),
            Err(SpecError::Invalid { kind: "sqlite", .. })
        ));
        for bad in [
            "influxdb://h:1",
            "influxdb2://h:1?org=o",
            "postgres://",
            "otlp:",
            "prometheus: ",
        ] {
            assert!(matches!(parse(bad), Err(SpecError::Invalid { .. })), "{bad}");
        }
    }

    #[cfg(feature = "full")]
    #[test]
    fn passwords_never_displayed() {
        for s in [
            "postgres://steer:hunter2-SECRET@db:5432/m",
            "influxdbs://u:hunter2-SECRET@h:8086/db",
            "otlp://u:hunter2-SECRET@collector:4318",
            "influxdb2://h:8086?org=o&bucket=b&token=hunter2-SECRET",
        ] {
            if let Ok(spec) = parse(s) {
                assert!(!spec.to_string().contains("hunter2"), "{spec}");
                assert!(!format!("{spec:?}").contains("hunter2"), "{spec:?}");
            }
        }
        for s in [
            "kafka://u:hunter2-SECRET@h",
            "postgres://u:hunter2-SECRET@",
            "influxdb://u:hunter2-SECRET@h:8086/db?nope=1",
        ] {
            let err = parse(s).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    /// The `NotBuiltKind` lines repeat each kind's schemes: they must match
    /// the kinds' own (checked when every feature is on).
    #[cfg(feature = "full")]
    #[test]
    fn not_built_lists_match_the_kinds() {
        let schemes = registry().schemes();
        let mut sorted = schemes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            schemes.len(),
            "a scheme registered twice: {schemes:?}"
        );
        assert_eq!(
            schemes,
            [
                "log",
                "jsonl",
                "sqlite",
                "postgres",
                "postgresql",
                "influxdb",
                "influxdbs",
                "influxdb2",
                "influxdb2s",
                "cloudwatch",
                "datadog",
                "otlp",
                "prometheus"
            ]
        );
    }

    #[tokio::test]
    async fn core_sinks_always_build() {
        let dir = tempfile::tempdir().unwrap();
        let spec = parse(&format!("jsonl:{}", dir.path().join("x.jsonl").display())).unwrap();
        assert_eq!(spec.build().await.unwrap().name(), "jsonl");
        assert_eq!(parse("log").unwrap().build().await.unwrap().name(), "log");
        #[cfg(not(feature = "prometheus"))]
        assert!(matches!(
            parse("prometheus:127.0.0.1:0").unwrap().build().await,
            Err(SinkBuildError::NotBuilt("prometheus"))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = parse(&s);
        }
    }
}
