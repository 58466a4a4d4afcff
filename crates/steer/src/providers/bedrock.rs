//! AWS Bedrock through the official SDK (`aws-sdk-bedrockruntime`):
//! `Converse`, `ConverseStream`, and embeddings through `InvokeModel`.
//!
//! Compiled with the `bedrock` cargo feature.
//!
//! Normalisation rules:
//! - **Usage.** Bedrock's `inputTokens` counts only the input tokens that were
//!   neither read from nor written to the prompt cache (its `totalTokens` is
//!   `inputTokens + cacheReadInputTokens + cacheWriteInputTokens + outputTokens`),
//!   like Anthropic's `input_tokens`. So `Usage::input_tokens` is
//!   `inputTokens + cacheReadInputTokens + cacheWriteInputTokens`;
//!   `cached_tokens` is `cacheReadInputTokens`; `cache_write_tokens` is
//!   `cacheWriteInputTokens` (else the sum of `cacheDetails`), and
//!   `cache_write_1h_tokens` the `1h` part of `cacheDetails`. Bedrock reports
//!   no reasoning-token count.
//! - **Finish reason.** `stopReason` verbatim (`end_turn`, `tool_use`,
//!   `max_tokens`, `stop_sequence`, ...). `guardrail_intervened` and
//!   `content_filtered` fail the call as `content_filter`, the answer's usage
//!   kept for the record.
//! - **Model.** Bedrock does not echo a model: the requested id (a model id or
//!   an inference profile) is the response model.
//! - **Errors.** Classified by the exception name (`x-amzn-ErrorType`, or the
//!   `:exception-type` of a stream frame), else by HTTP status; see
//!   [`errors`]. The SDK's own retries are off: the client retries and
//!   counts every attempt.
//! - **Embeddings.** `InvokeModel` in the model family's format: Amazon Titan
//!   text embeddings (`inputText`, one text per call) and Cohere embed
//!   (`texts`, up to 96 per call). Input tokens from the body
//!   (`inputTextTokenCount`) or the `X-Amzn-Bedrock-Input-Token-Count` header.

mod convert;
mod embed;
mod errors;
pub(crate) mod raw;
mod stream;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use aws_sdk_bedrockruntime::config::{
    retry::RetryConfig, BehaviorVersion, Credentials, Region, StalledStreamProtectionConfig,
};
use aws_sdk_bedrockruntime::types::ConverseOutput as Output;

use crate::error::{AttemptError, SteerError};
use crate::providers::Completion;
use crate::types::{Request, Usage};

pub(crate) use stream::BedrockStream;

/// Environment variables naming an endpoint override, in order.
const ENDPOINT_ENV: [&str; 2] = ["BEDROCK_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"];

/// A Bedrock Runtime client.
#[derive(Clone)]
pub(crate) struct Bedrock {
    client: aws_sdk_bedrockruntime::Client,
}

impl fmt::Debug for Bedrock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials.
        let conf = self.client.config();
        f.debug_struct("Bedrock")
            .field("region", &conf.region().map(Region::as_ref))
            .finish_non_exhaustive()
    }
}

impl Bedrock {
    /// From the standard AWS credential chain and region (aws-config: the
    /// environment, profiles, SSO, web identity, ECS/EC2 roles), with an
    /// optional endpoint override from `BEDROCK_ENDPOINT_URL` or
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`. Fails (`Config`) when no region is
    /// configured or the endpoint is not an http(s) URL; missing credentials
    /// are found at call time (`authentication`).
    pub(crate) async fn from_env() -> Result<Bedrock, SteerError> {
        let endpoint = ENDPOINT_ENV
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        if let Some(e) = &endpoint {
            check_endpoint(e)?;
            loader = loader.endpoint_url(e.trim());
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(SteerError::Config(crate::error::ConfigError::MissingRegion));
        }
        Ok(Bedrock {
            client: aws_sdk_bedrockruntime::Client::new(&sdk),
        })
    }

    /// A client for `endpoint` with static credentials
    /// `(access_key_id, secret_access_key, session_token)` (tests, local servers).
    pub(crate) fn with_endpoint(endpoint: &str, region: &str, creds: (&str, &str, Option<&str>)) -> Bedrock {
        let (key, secret, token) = creds;
        let conf = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                key,
                secret,
                token.map(str::to_string),
                None,
                "steer-static",
            ))
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build();
        Bedrock {
            client: aws_sdk_bedrockruntime::Client::from_conf(conf),
        }
    }

    /// `Converse`: one whole answer. `model` is a Bedrock model id
    /// (`anthropic.claude-3-5-sonnet-20240620-v1:0`) or an inference profile
    /// (`us.anthropic...`, an ARN).
    pub(crate) async fn converse(
        &self,
        req: &Request,
        model: &str,
        timeout: Duration,
    ) -> Result<Completion, AttemptError> {
        let input = convert::input(req)?;
        let call = self
            .client
            .converse()
            .model_id(model)
            .set_messages(Some(input.messages))
            .set_system(input.system)
            .set_inference_config(input.inference)
            .set_tool_config(input.tools)
            .set_additional_model_request_fields(input.additional)
            .send();
        let out = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| AttemptError::timeout(timeout))?
            .map_err(|e| errors::from_sdk(&e, timeout))?;
        let mut c = Completion {
            finish_reason: Some(out.stop_reason().as_str().to_string()),
            usage: out.usage().map(convert::usage).unwrap_or_default(),
            response_model: Some(model.to_string()),
            ..Completion::default()
        };
        match out.output() {
            Some(Output::Message(m)) => convert::collect_blocks(m.content(), &mut c),
            Some(_) => {}
            None => return Err(AttemptError::invalid("Converse response has no output")),
        }
        convert::check_content(c)
    }

    /// `ConverseStream`: resolves once Bedrock accepted the request; then
    /// [`BedrockStream::next`] yields the answer piece by piece. `timeout`
    /// bounds the wait for the answer to start and for each later piece.
    pub(crate) async fn converse_stream(
        &self,
        req: &Request,
        model: &str,
        timeout: Duration,
    ) -> Result<BedrockStream, AttemptError> {
        let input = convert::input(req)?;
        let call = self
            .client
            .converse_stream()
            .model_id(model)
            .set_messages(Some(input.messages))
            .set_system(input.system)
            .set_inference_config(input.inference)
            .set_tool_config(input.tools)
            .set_additional_model_request_fields(input.additional)
            .send();
        let out = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| AttemptError::timeout(timeout))?
            .map_err(|e| errors::from_sdk(&e, timeout))?;
        Ok(BedrockStream::new(out.stream, model, timeout))
    }

    /// Embeddings through `InvokeModel` (Amazon Titan text embeddings and
    /// Cohere embed formats): one vector per input, in order, and the input
    /// tokens.
    pub(crate) async fn embed(
        &self,
        inputs: &[String],
        model: &str,
        timeout: Duration,
    ) -> Result<(Vec<Vec<f32>>, Usage), AttemptError> {
        tokio::time::timeout(timeout, embed::embed(&self.client, inputs, model, timeout))
            .await
            .map_err(|_| AttemptError::timeout(timeout))?
    }
}

fn check_endpoint(url: &str) -> Result<(), SteerError> {
    match url::Url::parse(url.trim()) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        _ => Err(SteerError::Config(crate::error::ConfigError::BadBaseUrl {
            provider: "bedrock".into(),
            url: crate::spec::redact(url),
        })),
    }
}
