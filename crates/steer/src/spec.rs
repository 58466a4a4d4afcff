//! Redaction, and the sink-spec types, re-exported for compatibility.
//!
//! Sink specs are parsed by the sink kinds registered in a
//! [`SinkRegistry`]: each sink crate owns its grammar, and the
//! `steer-sinks` crate lists every kind behind cargo features
//! (`steer_sinks::parse("postgres://...")?.build().await?`). The LLM client
//! does not depend on the sink crates for this; `steer.toml` belongs to the
//! `steer` command.

pub use steer_metrics::registry::{SinkBuildError, SinkFactory, SinkKind, SinkRegistry, SinkSpec, SpecError};

/// Hide the secrets of a URL-like string (userinfo password, secret-looking
/// query parameters): [`steer_metrics::redact::redact`], the one redaction
/// every steer crate uses.
pub fn redact(s: &str) -> String {
    steer_metrics::redact::redact(s)
}
