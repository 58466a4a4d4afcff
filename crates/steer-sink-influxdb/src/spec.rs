//! The sink specs of this crate (the grammar is [`InfluxConfig::from_url`]):
//! `influxdb://[USER:PASS@]HOST:PORT/DB` (v1), `influxdb2://HOST:PORT?org=O&bucket=B`
//! (v2, token from `INFLUX_TOKEN`); `influxdbs://` / `influxdb2s://` for HTTPS.

use std::fmt;

use steer_metrics::redact::redact;
use steer_metrics::registry::{invalid, SinkBuildError, SinkFactory, SinkKind, SpecError};
use steer_metrics::{async_trait, MetricsSink};

use crate::{InfluxConfig, InfluxSink};

/// `influxdb[s]://` and `influxdb2[s]://`: the InfluxDB sink ([`InfluxSink`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct InfluxKind;

impl SinkKind for InfluxKind {
    fn name(&self) -> &'static str {
        "influxdb"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["influxdb", "influxdbs", "influxdb2", "influxdb2s"]
    }
    fn usage(&self) -> &'static str {
        "influxdb[s]://HOST:PORT/DB, influxdb2[s]://HOST:PORT?org=O&bucket=B"
    }
    fn parse(&self, spec: &str) -> Result<Box<dyn SinkFactory>, SpecError> {
        // Every option checked now (its errors hold the URL redacted).
        InfluxConfig::from_url(spec).map_err(|e| invalid("influxdb", e.to_string()))?;
        Ok(Box::new(InfluxSpec(spec.to_string())))
    }
}

/// A parsed InfluxDB URL (displayed without its password or token).
#[derive(Clone)]
pub struct InfluxSpec(String);

impl fmt::Display for InfluxSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

#[async_trait]
impl SinkFactory for InfluxSpec {
    fn kind(&self) -> &'static str {
        "influxdb"
    }
    async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError> {
        let sink = InfluxSink::from_url(&self.0).map_err(|e| SinkBuildError::setup(self, &e))?;
        Ok(Box::new(sink))
    }
}
