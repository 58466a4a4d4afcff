//! The proxy's own AWS identity for the Bedrock routes: region, endpoint,
//! credentials, and SigV4 signing (the `aws-sigv4` crate).
//!
//! Set up on the first Bedrock call: the region and credentials come from
//! the builder, else from the standard AWS chain (`aws-config`: the
//! environment, profiles, SSO, web identity, container and instance
//! roles). Credentials from the chain are kept until five minutes before
//! they expire. Secrets are never logged: `Credentials`' Debug is redacted
//! and the signed headers are marked sensitive.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Mutex;

use crate::config::BedrockConfig;

/// The service name Bedrock Runtime requests are signed for.
const SIGNING_NAME: &str = "bedrock";
/// Credentials are refreshed this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Why a Bedrock call could not be signed (nothing was sent).
#[derive(Debug, thiserror::Error)]
pub(crate) enum AwsError {
    #[error("no AWS region configured for the Bedrock routes: set AWS_REGION")]
    NoRegion,
    #[error("no AWS credentials for the Bedrock routes: {0}")]
    NoCredentials(String),
    #[error("cannot sign the Bedrock request: {0}")]
    Sign(String),
}

enum Source {
    Static(Credentials),
    Chain {
        provider: SharedCredentialsProvider,
        cached: Mutex<Option<Credentials>>,
    },
}

/// Region, endpoint and credentials of the Bedrock upstream.
pub(crate) struct Aws {
    region: String,
    endpoint: String,
    source: Source,
}

impl Aws {
    /// From the configuration, completed from the AWS chain.
    pub(crate) async fn load(c: &BedrockConfig) -> Result<Aws, AwsError> {
        let sdk = if c.region.is_none() || c.keys.is_none() {
            Some(
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await,
            )
        } else {
            None
        };
        let region = c
            .region
            .clone()
            .or_else(|| sdk.as_ref().and_then(|s| s.region()).map(|r| r.to_string()))
            .filter(|r| !r.trim().is_empty())
            .ok_or(AwsError::NoRegion)?;
        let endpoint = c
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"))
            .trim_end_matches('/')
            .to_string();
        let source = match (&c.keys, sdk.as_ref().and_then(|s| s.credentials_provider())) {
            (Some(k), _) => Source::Static(Credentials::new(
                k.access_key_id.clone(),
                k.secret_access_key.expose().to_string(),
                k.session_token.as_ref().map(|t| t.expose().to_string()),
                None,
                "steer-proxy",
            )),
            (None, Some(provider)) => Source::Chain {
                provider,
                cached: Mutex::new(None),
            },
            (None, None) => {
                return Err(AwsError::NoCredentials(
                    "the AWS chain has no credentials provider".into(),
                ))
            }
        };
        tracing::info!(%region, endpoint = %steer::spec::redact(&endpoint), "Bedrock routes set up");
        Ok(Aws {
            region,
            endpoint,
            source,
        })
    }

    /// The Bedrock Runtime endpoint (no trailing slash).
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn credentials(&self) -> Result<Credentials, AwsError> {
        match &self.source {
            Source::Static(c) => Ok(c.clone()),
            Source::Chain { provider, cached } => {
                let mut cached = cached.lock().await;
                let fresh =
                    |c: &Credentials| c.expiry().is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE);
                if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
                    return Ok(c.clone());
                }
                let c = provider
                    .provide_credentials()
                    .await
                    .map_err(|e| AwsError::NoCredentials(e.to_string()))?;
                *cached = Some(c.clone());
                Ok(c)
            }
        }
    }

    /// Add the SigV4 headers (`authorization`, `x-amz-date`,
    /// `x-amz-security-token`) for a POST of `body` to `url` with `headers`.
    pub(crate) async fn sign(&self, url: &str, headers: &mut HeaderMap, body: &[u8]) -> Result<(), AwsError> {
        let creds = self.credentials().await?;
        let identity = creds.into();
        let params: aws_sigv4::http_request::SigningParams<'_> = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| AwsError::Sign(e.to_string()))?
            .into();
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
            .collect();
        let signable = SignableRequest::new("POST", url, pairs.into_iter(), SignableBody::Bytes(body))
            .map_err(|e| AwsError::Sign(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| AwsError::Sign(e.to_string()))?
            .into_parts();
        for (name, value) in instructions.headers() {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| AwsError::Sign(e.to_string()))?;
            let mut value = HeaderValue::from_str(value).map_err(|e| AwsError::Sign(e.to_string()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(())
    }
}
