//! # steer
//!
//! An LLM client for OpenAI, Anthropic, xAI, any OpenAI-compatible server
//! (Ollama, vLLM, llama.cpp server) and a simulated provider, in which every
//! call is measured: exactly one [`AgentMetrics`] record per logical call
//! (retries, tokens, cached tokens, cost, TTFT, tools, error class), handed
//! without blocking to a [`MetricsCollector`] that delivers it to any number
//! of sinks.
//!
//! ```no_run
//! use steer::{Request, SteerClient, MetricsConfig, sinks::MemorySink};
//! # #[tokio::main] async fn main() -> Result<(), steer::SteerError> {
//! let memory = MemorySink::new();
//! let client = SteerClient::builder()
//!     .metrics_config(MetricsConfig::default())
//!     .sink(memory.clone())
//!     .openai_compatible("ollama", "http://localhost:11434/v1", None)
//!     .build()?;                                  // keys from OPENAI_API_KEY, ANTHROPIC_API_KEY, XAI_API_KEY
//! let resp = client.generate("Hello", "gpt-4o-mini").await?;
//! println!("{} (cost {:?})", resp.text, resp.metrics.cost_usd);
//! let req = Request::prompt("Summarise").system("Be brief.").max_tokens(100).tag("team", "search");
//! let resp = client.generate(req, "anthropic/claude-sonnet-4-5").await?;
//! client.metrics().flush().await;
//! # Ok(()) }
//! ```
//!
//! * Routing: `provider/model`, else the price table, else name rules
//!   ([`routing`]); an unknown model is [`SteerError::UnknownModel`].
//! * Prices: [`pricing::PriceTable`], built in and overridable from a file.
//! * Retries: [`RetryConfig`] — 429/5xx/timeouts/connection errors, with
//!   backoff, jitter and the providers' retry hints, within a deadline.
//! * Offline: `sim/<model>` answers from [`SimConfig`], no network.
//!
//! The metrics core is re-exported as [`metrics`] (and its common types at
//! the root), so this one dependency is enough.
#![warn(missing_docs)]

mod client;
mod error;
pub mod measure;
pub mod pricing;
mod providers;
/// The providers known by name (`openai`, `anthropic`, `xai`, `gemini`,
/// `azure`, `ollama`, `vllm`, `lmstudio`, `groq`, `deepseek`, `mistral`,
/// `openrouter`, `together`), resolved from the environment like the
/// client does: dialect, base URL, key and key header, request URLs.
pub mod presets {
    pub use crate::providers::presets::{names, resolve, resolve_with, AuthHeader, ProviderInfo};
}
pub mod retry;
pub mod routing;
pub mod spec;
pub mod sse;
mod types;
pub mod wire;

pub use client::{ResponseStream, SteerClient, SteerClientBuilder};
pub use error::{CallFailure, ConfigError, SteerError};
pub use providers::sim::SimConfig;
pub use providers::{Chunk, Completion, Dialect};
pub use retry::RetryConfig;
pub use routing::{route, Route};
pub use spec::SinkBuildError;
pub use types::{
    EmbedRequest, EmbedResponse, GenerateResponse, Message, Request, ResponseFormat, Role, StreamEvent,
    ToolCall, Usage,
};

/// The metrics core (`steer-metrics`).
pub use steer_metrics as metrics;
/// Test helpers: recording, failing and slow sinks, synthetic records
/// (feature `testing`; enable it in `[dev-dependencies]`).
#[cfg(feature = "testing")]
pub use steer_metrics::testkit;
pub use steer_metrics::{
    async_trait, sinks, AgentMetrics, CollectorStats, DeliveryReport, ErrorClass, Method, MetricsCollector,
    MetricsConfig, MetricsSink, OverflowPolicy, RetryPolicy, SinkError, SinkOptions, Summary,
};

/// The CloudWatch sink (feature `cloudwatch`).
#[cfg(feature = "cloudwatch")]
pub use steer_sink_cloudwatch as sink_cloudwatch;
/// The Datadog sink (feature `datadog`).
#[cfg(feature = "datadog")]
pub use steer_sink_datadog as sink_datadog;
/// The InfluxDB sink (feature `influxdb`).
#[cfg(feature = "influxdb")]
pub use steer_sink_influxdb as sink_influxdb;
/// The OpenTelemetry OTLP sink (feature `otlp`).
#[cfg(feature = "otlp")]
pub use steer_sink_otlp as sink_otlp;
/// The PostgreSQL sink and store (feature `postgres`).
#[cfg(feature = "postgres")]
pub use steer_sink_postgres as sink_postgres;
/// The Prometheus exporter sink (feature `prometheus`).
#[cfg(feature = "prometheus")]
pub use steer_sink_prometheus as sink_prometheus;
/// The embedded SQLite store (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub use steer_sink_sqlite as sink_sqlite;

/// Entry points for the fuzz targets in `fuzz/` (not a public API: no
/// stability promise, hidden from the docs).
#[doc(hidden)]
pub mod __fuzz {
    use crate::providers::{anthropic, openai, Decoder};
    use crate::sse::SseEvent;

    /// A provider wire protocol.
    #[derive(Debug, Clone, Copy)]
    pub enum Dialect {
        /// OpenAI Chat Completions.
        OpenAi,
        /// Anthropic Messages.
        Anthropic,
    }

    /// Parse a non-streaming response body: the answer text, or the error message.
    pub fn parse_body(d: Dialect, body: &[u8]) -> Result<String, String> {
        let r = match d {
            Dialect::OpenAi => openai::parse(body),
            Dialect::Anthropic => anthropic::parse(body),
        };
        r.map(|c| c.text).map_err(|e| e.message)
    }

    /// Decode stream events up to the first error: the text deltas, then the
    /// final text or the error message.
    pub fn decode_stream(d: Dialect, events: Vec<SseEvent>) -> (Vec<String>, Result<String, String>) {
        let mut dec: Box<dyn Decoder> = match d {
            Dialect::OpenAi => Box::<openai::StreamDecoder>::default(),
            Dialect::Anthropic => Box::<anthropic::StreamDecoder>::default(),
        };
        let mut deltas = Vec::new();
        for ev in events {
            match dec.on_event(ev) {
                Ok(crate::providers::Chunk::Text(t)) => deltas.push(t),
                Ok(_) => {}
                Err(e) => return (deltas, Err(e.message)),
            }
            if dec.is_done() {
                break;
            }
        }
        (deltas, dec.finish().map(|c| c.text).map_err(|e| e.message))
    }

    /// Parse an error body of either provider: (type, code, message).
    pub fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
        crate::error::parse_error_body(body)
    }
}

// The README's and the spool guide's Rust examples compile (and the ones not
// marked `no_run` run) as doctests, so the front page cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod readme {}

#[cfg(doctest)]
#[doc = include_str!("../../../docs/spool.md")]
mod spool_guide {}
