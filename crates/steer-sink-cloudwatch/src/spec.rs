//! The sink spec of this crate: `cloudwatch:NAMESPACE`, everything else
//! from the standard AWS environment (credentials, `AWS_REGION`,
//! `AWS_PROFILE`, `AWS_ENDPOINT_URL`, ...).

use std::fmt;

use steer_metrics::registry::{required_arg, SinkBuildError, SinkFactory, SinkKind, SpecError};
use steer_metrics::{async_trait, MetricsSink};

use crate::CloudWatchSink;

/// `cloudwatch:NAMESPACE`: the CloudWatch sink ([`CloudWatchSink`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CloudWatchKind;

impl SinkKind for CloudWatchKind {
    fn name(&self) -> &'static str {
        "cloudwatch"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["cloudwatch"]
    }
    fn usage(&self) -> &'static str {
        "cloudwatch:NAMESPACE"
    }
    fn parse(&self, spec: &str) -> Result<Box<dyn SinkFactory>, SpecError> {
        Ok(Box::new(CloudWatchSpec(
            required_arg("cloudwatch", spec, "NAMESPACE")?.to_string(),
        )))
    }
}

/// A parsed `cloudwatch:NAMESPACE`.
#[derive(Clone, Debug)]
pub struct CloudWatchSpec(String);

impl fmt::Display for CloudWatchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cloudwatch:{}", self.0)
    }
}

#[async_trait]
impl SinkFactory for CloudWatchSpec {
    fn kind(&self) -> &'static str {
        "cloudwatch"
    }
    async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError> {
        let sink = CloudWatchSink::from_namespace(&self.0)
            .await
            .map_err(|e| SinkBuildError::setup(self, &e))?;
        Ok(Box::new(sink))
    }
}
