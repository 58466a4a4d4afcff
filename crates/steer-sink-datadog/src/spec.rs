//! The sink spec of this crate: `datadog` (site from `DD_SITE`, else
//! `datadoghq.com`) or `datadog:SITE_OR_URL`; the key from `DD_API_KEY`.

use std::fmt;

use steer_metrics::redact::redact;
use steer_metrics::registry::{invalid, split_scheme, SinkBuildError, SinkFactory, SinkKind, SpecError};
use steer_metrics::{async_trait, MetricsSink};

use crate::{site_url, DatadogSink};

/// `datadog[:SITE_OR_URL]`: the Datadog sink ([`DatadogSink`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct DatadogKind;

impl SinkKind for DatadogKind {
    fn name(&self) -> &'static str {
        "datadog"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["datadog"]
    }
    fn usage(&self) -> &'static str {
        "datadog[:SITE_OR_URL]"
    }
    fn parse(&self, spec: &str) -> Result<Box<dyn SinkFactory>, SpecError> {
        let site = split_scheme(spec)
            .1
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from);
        if let Some(s) = &site {
            site_url(s).map_err(|e| invalid("datadog", e.to_string()))?;
        }
        Ok(Box::new(DatadogSpec { site }))
    }
}

/// A parsed `datadog[:SITE_OR_URL]`.
#[derive(Clone, Debug)]
pub struct DatadogSpec {
    site: Option<String>,
}

impl fmt::Display for DatadogSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.site {
            None => f.write_str("datadog"),
            Some(s) => write!(f, "datadog:{}", redact(s)),
        }
    }
}

#[async_trait]
impl SinkFactory for DatadogSpec {
    fn kind(&self) -> &'static str {
        "datadog"
    }
    async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError> {
        let sink =
            DatadogSink::from_spec(self.site.as_deref()).map_err(|e| SinkBuildError::setup(self, &e))?;
        Ok(Box::new(sink))
    }
}
