//! The sink spec of this crate: `otlp:URL`, a collector's OTLP/HTTP base
//! URL (`/v1/metrics` is appended); `otlp://HOST:PORT` means
//! `http://HOST:PORT`; `?tags=a,b` is the tag allow-list.

use std::fmt;

use steer_metrics::redact::redact;
use steer_metrics::registry::{invalid, required_arg, SinkBuildError, SinkFactory, SinkKind, SpecError};
use steer_metrics::{async_trait, MetricsSink};

use crate::OtlpSink;

/// `otlp:URL`: the OpenTelemetry sink ([`OtlpSink`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct OtlpKind;

impl SinkKind for OtlpKind {
    fn name(&self) -> &'static str {
        "otlp"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["otlp"]
    }
    fn usage(&self) -> &'static str {
        "otlp:URL"
    }
    fn parse(&self, spec: &str) -> Result<Box<dyn SinkFactory>, SpecError> {
        let url = required_arg("otlp", spec, "URL")?;
        // `otlp://host:4318` means the OTLP/HTTP endpoint at host:4318.
        let url = match url.strip_prefix("//") {
            Some(rest) => format!("http://{rest}"),
            None => url.to_string(),
        };
        let parsed =
            url::Url::parse(&url).map_err(|e| invalid("otlp", format!("{e} in `{}`", redact(&url))))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("otlp", format!("no host in `{}`", redact(&url))));
        }
        Ok(Box::new(OtlpSpec(url)))
    }
}

/// A parsed `otlp:URL`.
#[derive(Clone)]
pub struct OtlpSpec(String);

impl fmt::Display for OtlpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "otlp:{}", redact(&self.0))
    }
}

#[async_trait]
impl SinkFactory for OtlpSpec {
    fn kind(&self) -> &'static str {
        "otlp"
    }
    async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError> {
        let sink = OtlpSink::from_url(&self.0).map_err(|e| SinkBuildError::setup(self, &e))?;
        Ok(Box::new(sink))
    }
}
