//! Errors and exit codes.

use crate::config::ConfigError;
use steer::SteerError;
use steer_sinks::SpecError;

/// Exit codes (besides 0 = success and 2 = bad command line, from clap).
pub mod exit {
    /// Anything else.
    pub const OTHER: u8 = 1;
    /// Bad command line (also what clap uses), including an invalid `--sink` spec.
    pub const USAGE: u8 = 2;
    /// A store could not be opened or read.
    pub const STORE: u8 = 3;
    /// A sink spec is unknown or a sink could not be set up.
    pub const SINK: u8 = 4;
    /// The LLM call failed.
    pub const CALL: u8 = 5;
    /// The run completed but some records were not delivered to some sink.
    pub const UNDELIVERED: u8 = 6;
    /// Invalid configuration: the config file (unreadable, too large, a
    /// dangling `./steer.toml` symlink, `db = ""`, an unknown sink in it), an
    /// unknown model, a bad provider base URL.
    pub const CONFIG: u8 = 7;
}

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad sink spec.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Bad config file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A sink that this build does not include.
    #[error(
        "the `{0}` sink is not available in this build of steer (not built yet, or its cargo feature is off)"
    )]
    SinkNotBuilt(&'static str),
    /// A sink could not be set up.
    #[error("cannot set up sink {spec}: {message}")]
    SinkSetup {
        /// The (redacted) spec.
        spec: String,
        /// Why.
        message: String,
    },
    /// A store could not be opened or queried.
    #[error("store {store}: {message}")]
    Store {
        /// Which store (redacted).
        store: String,
        /// Why.
        message: String,
    },
    /// The client could not be built or the call failed.
    #[error("{0}")]
    Call(String),
    /// Invalid input beyond what clap checks.
    #[error("{0}")]
    Invalid(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// A failed call: configuration problems (unknown model, bad base URL)
    /// exit 7, everything else 5.
    pub fn from_call(e: &SteerError) -> CliError {
        match e {
            SteerError::UnknownModel { .. } | SteerError::Config(_) => CliError::Invalid(e.to_string()),
            _ => CliError::Call(e.to_string()),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Spec(_) => exit::USAGE,
            CliError::SinkNotBuilt(_) | CliError::SinkSetup { .. } => exit::SINK,
            CliError::Store { .. } => exit::STORE,
            CliError::Call(_) => exit::CALL,
            CliError::Config(_) | CliError::Invalid(_) => exit::CONFIG,
            CliError::Other(_) => exit::OTHER,
        }
    }
}
