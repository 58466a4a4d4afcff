//! The sink spec of this crate: `prometheus:ADDR` (`/metrics` served on
//! ADDR; `?tags=a,b` is the tag allow-list).

use std::fmt;

use steer_metrics::redact::redact;
use steer_metrics::registry::{required_arg, SinkBuildError, SinkFactory, SinkKind, SpecError};
use steer_metrics::{async_trait, MetricsSink};

use crate::PrometheusSink;

/// `prometheus:ADDR`: the Prometheus exporter ([`PrometheusSink`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct PrometheusKind;

impl SinkKind for PrometheusKind {
    fn name(&self) -> &'static str {
        "prometheus"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["prometheus"]
    }
    fn usage(&self) -> &'static str {
        "prometheus:ADDR"
    }
    fn parse(&self, spec: &str) -> Result<Box<dyn SinkFactory>, SpecError> {
        Ok(Box::new(PrometheusSpec(
            required_arg("prometheus", spec, "ADDR")?.to_string(),
        )))
    }
}

/// A parsed `prometheus:ADDR`.
#[derive(Clone, Debug)]
pub struct PrometheusSpec(String);

impl fmt::Display for PrometheusSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "prometheus:{}", redact(&self.0))
    }
}

#[async_trait]
impl SinkFactory for PrometheusSpec {
    fn kind(&self) -> &'static str {
        "prometheus"
    }
    async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError> {
        let sink = PrometheusSink::bind(&self.0).map_err(|e| SinkBuildError::setup(self, &e))?;
        Ok(Box::new(sink))
    }
}
