//! Sink specs and the registry of sink kinds.
//!
//! One string names a sink, the same on the command line, in `steer.toml`
//! and from a library: `sqlite:calls.db`, `postgres://steer@db/metrics`,
//! `influxdb2s://h:8086?org=o&bucket=b`, `datadog:datadoghq.eu`, ...
//!
//! Each sink crate owns its grammar: it implements [`SinkKind`] (the schemes
//! it answers to and how it reads a spec) and returns a [`SinkFactory`] (the
//! parsed spec, which builds the sink, possibly asynchronously). A
//! [`SinkRegistry`] is the list of kinds an application knows; the
//! `steer-sinks` crate assembles every backend's kind behind cargo features.
//!
//! ```
//! use steer_metrics::registry::SinkRegistry;
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = SinkRegistry::builtin(); // `log` and `jsonl:PATH`
//! let spec = registry.parse("log")?;
//! assert_eq!(spec.kind(), "log");
//! let sink = spec.build().await?;
//! assert_eq!(sink.name(), "log");
//! assert!(registry.parse("kafka://broker").is_err());
//! # Ok(()) }
//! ```
//!
//! Secrets never appear in a spec's `Display`/`Debug` nor in a
//! [`SpecError`]: whatever a factory displays passes through
//! [`redact`](crate::redact::redact) once more, and the helpers here redact
//! the text they quote.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::redact::redact;
use crate::sinks::{JsonLinesSink, LogSink};
use crate::MetricsSink;

/// A kind of sink: the spec schemes it answers to and how it reads a spec.
///
/// The scheme of a spec is the text before its first `:` (the whole spec
/// when there is none: `log`, `datadog`), compared case-insensitively.
pub trait SinkKind: Send + Sync + 'static {
    /// The kind's name, used in errors and as [`SinkSpec::kind`] (e.g. `"influxdb"`).
    fn name(&self) -> &'static str;

    /// The schemes this kind answers to, lower case (e.g. `["influxdb",
    /// "influxdbs", "influxdb2", "influxdb2s"]`).
    fn schemes(&self) -> &'static [&'static str];

    /// The grammar, for error messages and `--help` (e.g.
    /// `"influxdb[s]://HOST:PORT/DB, influxdb2[s]://HOST:PORT?org=O&bucket=B"`).
    fn usage(&self) -> &'static str;

    /// Read a whole spec (scheme included, trimmed). Validates without I/O:
    /// no connection, no file opened. Errors must not quote secrets (use
    /// [`invalid`], which redacts).
    fn parse(&self, spec: &str) -> Result<Box<dyn SinkFactory>, SpecError>;
}

/// A parsed spec that can build its sink.
///
/// `Display` is the spec as it may be shown: without secrets (it is also
/// passed through [`redact`] by [`SinkSpec`]).
#[async_trait]
pub trait SinkFactory: fmt::Display + Send + Sync + 'static {
    /// The kind's name (the [`SinkKind::name`] that parsed it).
    fn kind(&self) -> &'static str;

    /// Build the sink. Network sinks do not connect here: a backend that
    /// is down at start is retried by the collector. Building may be
    /// asynchronous (CloudWatch loads the AWS configuration).
    async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError>;
}

/// A parsed sink spec: cheap to clone, displays without secrets.
///
/// Two specs are equal when their kinds and redacted forms are.
#[derive(Clone)]
pub struct SinkSpec {
    shown: Arc<str>,
    factory: Arc<dyn SinkFactory>,
}

impl SinkSpec {
    /// Wrap a factory (what [`SinkKind::parse`] returns, or one made
    /// directly, e.g. the default SQLite store of a command).
    pub fn new(factory: impl SinkFactory) -> Self {
        Self::from_boxed(Box::new(factory))
    }

    /// Wrap a boxed factory.
    pub fn from_boxed(factory: Box<dyn SinkFactory>) -> Self {
        SinkSpec {
            shown: redact(&factory.to_string()).into(),
            factory: Arc::from(factory),
        }
    }

    /// The sink kind (`sqlite`, `postgres`, ...).
    pub fn kind(&self) -> &'static str {
        self.factory.kind()
    }

    /// Build the sink this spec names (see [`SinkFactory::build`]).
    pub async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError> {
        self.factory.build().await
    }
}

impl fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SinkSpec({})", self.shown)
    }
}

impl PartialEq for SinkSpec {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.shown == other.shown
    }
}

impl Eq for SinkSpec {}

/// Why a sink spec could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// No registered kind answers to the spec's scheme.
    #[error("unknown sink `{spec}`: expected one of {expected}")]
    Unknown {
        /// The spec, redacted.
        spec: String,
        /// The grammar of every registered kind.
        expected: String,
    },
    /// A known kind with a missing or malformed argument.
    #[error("invalid `{kind}` sink spec: {reason}")]
    Invalid {
        /// The sink kind.
        kind: &'static str,
        /// What is wrong (redacted).
        reason: String,
    },
}

/// A [`SpecError::Invalid`]; the reason is redacted.
pub fn invalid(kind: &'static str, reason: impl AsRef<str>) -> SpecError {
    SpecError::Invalid {
        kind,
        reason: redact(reason.as_ref()),
    }
}

/// Split a spec into its scheme (lower case) and the text after the first
/// `:` (`None` when there is no `:`).
pub fn split_scheme(spec: &str) -> (String, Option<&str>) {
    let spec = spec.trim();
    match spec.split_once(':') {
        Some((k, r)) => (k.trim().to_ascii_lowercase(), Some(r)),
        None => (spec.to_ascii_lowercase(), None),
    }
}

/// The argument of an `KIND:ARG` spec, trimmed and non-empty, else an
/// [`SpecError::Invalid`] saying `expected KIND:WHAT`.
pub fn required_arg<'a>(kind: &'static str, spec: &'a str, what: &str) -> Result<&'a str, SpecError> {
    match spec.trim().split_once(':').map(|(_, r)| r.trim()) {
        Some(r) if !r.is_empty() => Ok(r),
        _ => Err(invalid(kind, format!("expected `{kind}:{what}`"))),
    }
}

/// Why a sink could not be built from its spec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkBuildError {
    /// The sink's crate is not compiled in (enable the cargo feature).
    #[error("the `{0}` sink is not available in this build (enable the `{0}` cargo feature)")]
    NotBuilt(&'static str),
    /// The sink refused its configuration.
    #[error("cannot set up sink {spec}: {message}")]
    Setup {
        /// The spec, redacted.
        spec: String,
        /// Why (redacted).
        message: String,
    },
}

impl SinkBuildError {
    /// A [`SinkBuildError::Setup`] for the factory `spec` (both redacted).
    pub fn setup(spec: &dyn fmt::Display, message: &dyn fmt::Display) -> Self {
        SinkBuildError::Setup {
            spec: redact(&spec.to_string()),
            message: redact(&message.to_string()),
        }
    }
}

/// The sink kinds an application knows.
///
/// ```
/// use steer_metrics::registry::SinkRegistry;
/// let r = SinkRegistry::builtin();
/// assert_eq!(r.schemes(), ["log", "jsonl"]);
/// ```
#[derive(Default, Clone)]
#[must_use]
pub struct SinkRegistry {
    kinds: Vec<Arc<dyn SinkKind>>,
}

impl SinkRegistry {
    /// A registry without any kind.
    pub fn empty() -> Self {
        SinkRegistry::default()
    }

    /// The kinds of this crate: `log` ([`LogSink`]) and `jsonl:PATH`
    /// ([`JsonLinesSink`]).
    pub fn builtin() -> Self {
        SinkRegistry::empty().register(LogKind).register(JsonLinesKind)
    }

    /// Add a kind. A scheme registered again is answered by the later kind
    /// (so an application can replace a kind).
    pub fn register(mut self, kind: impl SinkKind) -> Self {
        self.kinds.push(Arc::new(kind));
        self
    }

    /// The registered kinds, in registration order.
    pub fn kinds(&self) -> impl Iterator<Item = &dyn SinkKind> {
        self.kinds.iter().map(|k| &**k)
    }

    /// Every scheme answered, in registration order.
    pub fn schemes(&self) -> Vec<&'static str> {
        self.kinds().flat_map(|k| k.schemes().iter().copied()).collect()
    }

    /// The kind answering to `scheme` (case-insensitive).
    pub fn kind_for(&self, scheme: &str) -> Option<&dyn SinkKind> {
        let scheme = scheme.to_ascii_lowercase();
        self.kinds
            .iter()
            .rev()
            .find(|k| k.schemes().contains(&scheme.as_str()))
            .map(|k| &**k)
    }

    /// Parse a spec with the kind answering to its scheme.
    pub fn parse(&self, spec: &str) -> Result<SinkSpec, SpecError> {
        let spec = spec.trim();
        let (scheme, _) = split_scheme(spec);
        match self.kind_for(&scheme) {
            Some(kind) => kind.parse(spec).map(SinkSpec::from_boxed),
            None => Err(SpecError::Unknown {
                spec: redact(spec),
                expected: self.usage(),
            }),
        }
    }

    /// The grammar of every kind, comma separated.
    pub fn usage(&self) -> String {
        let all: Vec<&str> = self.kinds().map(|k| k.usage()).collect();
        if all.is_empty() {
            "(no sink kinds are registered)".into()
        } else {
            all.join(", ")
        }
    }
}

impl fmt::Debug for SinkRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kinds().map(|k| k.name())).finish()
    }
}

/// A kind whose crate is not compiled in: its specs parse (so an error
/// names the missing feature, not an "unknown sink"), building is
/// [`SinkBuildError::NotBuilt`].
#[derive(Debug, Clone, Copy)]
pub struct NotBuiltKind {
    /// The kind's name (and cargo feature).
    pub name: &'static str,
    /// Its schemes.
    pub schemes: &'static [&'static str],
    /// Its grammar.
    pub usage: &'static str,
}

impl SinkKind for NotBuiltKind {
    fn name(&self) -> &'static str {
        self.name
    }
    fn schemes(&self) -> &'static [&'static str] {
        self.schemes
    }
    fn usage(&self) -> &'static str {
        self.usage
    }
    fn parse(&self, spec: &str) -> Result<Box<dyn SinkFactory>, SpecError> {
        Ok(Box::new(NotBuilt {
            name: self.name,
            shown: redact(spec),
        }))
    }
}

struct NotBuilt {
    name: &'static str,
    shown: String,
}

impl fmt::Display for NotBuilt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

#[async_trait]
impl SinkFactory for NotBuilt {
    fn kind(&self) -> &'static str {
        self.name
    }
    async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError> {
        Err(SinkBuildError::NotBuilt(self.name))
    }
}

/// `log`: every record as a `tracing` event ([`LogSink`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogKind;

impl SinkKind for LogKind {
    fn name(&self) -> &'static str {
        "log"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["log"]
    }
    fn usage(&self) -> &'static str {
        "log"
    }
    fn parse(&self, spec: &str) -> Result<Box<dyn SinkFactory>, SpecError> {
        match split_scheme(spec) {
            (_, None) => Ok(Box::new(LogSpec)),
            _ => Err(invalid("log", "expected `log` (no argument)")),
        }
    }
}

struct LogSpec;

impl fmt::Display for LogSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("log")
    }
}

#[async_trait]
impl SinkFactory for LogSpec {
    fn kind(&self) -> &'static str {
        "log"
    }
    async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError> {
        Ok(Box::new(LogSink::new()))
    }
}

/// `jsonl:PATH`: one JSON object per line, appended to a file ([`JsonLinesSink`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLinesKind;

impl SinkKind for JsonLinesKind {
    fn name(&self) -> &'static str {
        "jsonl"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["jsonl"]
    }
    fn usage(&self) -> &'static str {
        "jsonl:PATH"
    }
    fn parse(&self, spec: &str) -> Result<Box<dyn SinkFactory>, SpecError> {
        let path = required_arg("jsonl", spec, "PATH")?;
        Ok(Box::new(JsonLinesSpec(PathBuf::from(path))))
    }
}

struct JsonLinesSpec(PathBuf);

impl fmt::Display for JsonLinesSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "jsonl:{}", self.0.display())
    }
}

#[async_trait]
impl SinkFactory for JsonLinesSpec {
    fn kind(&self) -> &'static str {
        "jsonl"
    }
    async fn build(&self) -> Result<Box<dyn MetricsSink>, SinkBuildError> {
        let sink = JsonLinesSink::open(&self.0).map_err(|e| SinkBuildError::setup(self, &e))?;
        Ok(Box::new(sink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[tokio::test]
    async fn builtin_kinds_parse_and_build() {
        let r = SinkRegistry::builtin();
        let dir = tempfile::tempdir().unwrap();
        let spec = r
            .parse(&format!("JSONL:{}", dir.path().join("x.jsonl").display()))
            .unwrap();
        assert_eq!(spec.kind(), "jsonl");
        assert_eq!(spec.build().await.unwrap().name(), "jsonl");
        assert_eq!(r.parse(" log ").unwrap().to_string(), "log");
        assert!(matches!(
            r.parse("jsonl:"),
            Err(SpecError::Invalid { kind: "jsonl", .. })
        ));
        assert!(matches!(
            r.parse("log:x"),
            Err(SpecError::Invalid { kind: "log", .. })
        ));
        let e = r.parse("kafka://u:hunter2-SECRET@h").unwrap_err();
        assert!(matches!(e, SpecError::Unknown { .. }));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("jsonl:PATH"), "{e}");
    }

    #[tokio::test]
    async fn not_built_kinds_parse_and_refuse_to_build() {
        let r = SinkRegistry::empty().register(NotBuiltKind {
            name: "postgres",
            schemes: &["postgres", "postgresql"],
            usage: "postgres://...",
        });
        let spec = r.parse("postgresql://u:hunter2-SECRET@h/db").unwrap();
        assert!(!spec.to_string().contains("hunter2"));
        assert!(!format!("{spec:?}").contains("hunter2"));
        assert!(matches!(
            spec.build().await,
            Err(SinkBuildError::NotBuilt("postgres"))
        ));
    }

    #[test]
    fn later_registration_wins() {
        let r = SinkRegistry::builtin().register(NotBuiltKind {
            name: "log2",
            schemes: &["log"],
            usage: "log",
        });
        assert_eq!(r.parse("log").unwrap().kind(), "log2");
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = SinkRegistry::builtin().parse(&s);
        }
    }
}
