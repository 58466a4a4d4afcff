//! Building a sink from a [`SinkSpec`]: the one place that maps every spec
//! to its sink crate. Sinks whose cargo feature is off are a typed error.

use steer_metrics::sinks::{JsonLinesSink, LogSink};
use steer_metrics::MetricsSink;

use crate::spec::SinkSpec;

/// Why a sink could not be built from its spec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkBuildError {
    /// The sink's crate is not compiled in (enable the cargo feature).
    #[error("the `{0}` sink is not available in this build of steer (enable the `{0}` cargo feature)")]
    NotBuilt(&'static str),
    /// The sink refused its configuration.
    #[error("cannot set up sink {spec}: {message}")]
    Setup {
        /// The spec, password redacted.
        spec: String,
        /// Why (never holds a secret).
        message: String,
    },
}

impl SinkSpec {
    /// Build the sink this spec names. Network sinks do not connect here:
    /// a backend that is down at start is retried by the collector.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let sink = "jsonl:calls.jsonl".parse::<steer::spec::SinkSpec>()?.build().await?;
    /// let client = steer::SteerClient::builder().sink(sink).build()?;
    /// # Ok(()) }
    /// ```
    pub async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError> {
        #[allow(unused_variables)]
        let setup = |e: &dyn std::fmt::Display| SinkBuildError::Setup {
            spec: self.to_string(),
            message: e.to_string(),
        };
        Ok(match self {
            SinkSpec::JsonLines(path) => Box::new(JsonLinesSink::open(path).map_err(|e| setup(&e))?),
            SinkSpec::Log => Box::new(LogSink::new()),
            #[cfg(feature = "sqlite")]
            SinkSpec::Sqlite(path) => {
                Box::new(steer_sink_sqlite::SqliteSink::open(path).map_err(|e| setup(&e))?)
            }
            #[cfg(feature = "postgres")]
            SinkSpec::Postgres(url) => Box::new(
                steer_sink_postgres::PostgresSink::builder(url)
                    .build()
                    .map_err(|e| setup(&e))?,
            ),
            #[cfg(feature = "influxdb")]
            SinkSpec::Influx(url) => {
                Box::new(steer_sink_influxdb::InfluxSink::from_url(url).map_err(|e| setup(&e))?)
            }
            #[cfg(feature = "datadog")]
            SinkSpec::Datadog(site) => {
                Box::new(steer_sink_datadog::DatadogSink::from_spec(site.as_deref()).map_err(|e| setup(&e))?)
            }
            #[cfg(feature = "otlp")]
            SinkSpec::Otlp(url) => Box::new(steer_sink_otlp::OtlpSink::from_url(url).map_err(|e| setup(&e))?),
            #[cfg(feature = "cloudwatch")]
            SinkSpec::CloudWatch(ns) => Box::new(
                steer_sink_cloudwatch::CloudWatchSink::from_namespace(ns)
                    .await
                    .map_err(|e| setup(&e))?,
            ),
            #[cfg(feature = "prometheus")]
            SinkSpec::Prometheus(addr) => {
                Box::new(steer_sink_prometheus::PrometheusSink::bind(addr).map_err(|e| setup(&e))?)
            }
            #[allow(unreachable_patterns)]
            other => return Err(SinkBuildError::NotBuilt(other.kind())),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn core_sinks_always_build_and_missing_features_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let spec: SinkSpec = format!("jsonl:{}", dir.path().join("x.jsonl").display())
            .parse()
            .unwrap();
        assert_eq!(spec.build().await.unwrap().name(), "jsonl");
        assert_eq!(
            "log".parse::<SinkSpec>().unwrap().build().await.unwrap().name(),
            "log"
        );
        #[cfg(not(feature = "prometheus"))]
        assert!(matches!(
            "prometheus:127.0.0.1:0"
                .parse::<SinkSpec>()
                .unwrap()
                .build()
                .await,
            Err(SinkBuildError::NotBuilt("prometheus"))
        ));
    }
}
