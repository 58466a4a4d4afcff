//! The `steer` command: `demo`, `generate`, `stats`, `dashboard`, `prices`, `proxy`, `sinks`, `bench`.
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

/// `print!` to stdout that never panics: a closed stdout (`steer demo |
/// head`, a proxy whose terminal went away) must not abort a run whose
/// delivery and exit code matter more than its printout.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

/// `println!` to stdout that never panics (see [`out!`]).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `eprint!` that never panics (see [`out!`]).
macro_rules! eout {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($t)*);
    }};
}

/// `eprintln!` that never panics (see [`out!`]).
macro_rules! eoutln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

mod bench;
mod config;
mod dashboard;
mod demo;
mod error;
mod generate;
mod limits;
mod output;
mod prices;
mod proxy;
mod signals;
mod sinks;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::ConfigFile;
use crate::error::CliError;
use steer_sinks::SinkSpec;

/// Measure every LLM call and ship the metrics where you need them.
#[derive(Debug, Parser)]
#[command(name = "steer", version, about, propagate_version = true)]
struct Cli {
    /// More logs on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Config file with defaults (`db`, `sinks`). Default: ./steer.toml when present.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Price file merged over the built-in table: steer's TOML/JSON format or
    /// the community price map's JSON (a newer copy of
    /// model_prices_and_context_window.json). Overrides `prices` in steer.toml.
    #[arg(long, global = true, value_name = "FILE", env = "STEER_PRICES")]
    prices: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run simulated LLM calls through the client and collector into the SQLite store and any extra sinks.
    Demo(demo::DemoArgs),
    /// Make one real LLM call (keys and base URLs from the environment) and print the answer and its metrics.
    Generate(generate::GenerateArgs),
    /// Summarise a store: count, error rate, latency and TTFT percentiles, tokens, cost.
    Stats(stats::StatsArgs),
    /// Local web dashboard over a store: charts, top groups, JSON API (default http://127.0.0.1:8787/).
    Dashboard(dashboard::DashboardArgs),
    /// Throughput harness: push records through the collector into a sink and report rates.
    Bench(bench::BenchArgs),
    /// Print the effective price table (USD per 1M tokens): built in, plus --prices FILE.
    Prices(prices::PricesArgs),
    /// OpenAI/Anthropic-wire gateway: point any app's base URL here and every call is measured.
    Proxy(proxy::ProxyArgs),
    /// List the sink kinds of this build, or check sink specs (`steer sinks 'influxdb2s://h:8086?org=o&bucket=b'`).
    Sinks(sinks::SinksArgs),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Human-readable table.
    #[default]
    Table,
    /// JSON on stdout.
    Json,
}

/// Sinks given on the command line, plus those of the config file.
#[derive(Debug, Args, Clone, Default)]
pub struct SinkArgs {
    /// Extra sink (repeatable): sqlite:PATH, jsonl:PATH, log, postgres://USER@HOST:PORT/DB,
    /// influxdb[s]://HOST:PORT/DB, influxdb2[s]://HOST:PORT?org=O&bucket=B, cloudwatch:NS, datadog[:SITE],
    /// otlp:URL, prometheus:ADDR (`steer sinks` lists them).
    ///
    /// Parsed after the command line (not by clap), so that an invalid spec's
    /// error never echoes a password it contains.
    #[arg(long = "sink", value_name = "SPEC")]
    pub sinks: Vec<String>,
}

impl SinkArgs {
    /// The parsed specs.
    pub fn specs(&self) -> Result<Vec<SinkSpec>, CliError> {
        self.sinks
            .iter()
            .map(|s| steer_sinks::parse(s).map_err(CliError::Spec))
            .collect()
    }
}

/// Global settings resolved from flags and the config file.
pub struct Context {
    /// The config file's contents (defaults when there is none).
    pub config: ConfigFile,
    /// Sinks from the config file.
    pub config_sinks: Vec<SinkSpec>,
    /// The price table: built in, plus `--prices` / `STEER_PRICES` / `prices` in the config file.
    pub prices: steer::pricing::PriceTable,
}

/// The built-in price table with the price file, if one is given, merged over it.
fn load_prices(file: Option<&std::path::Path>) -> Result<steer::pricing::PriceTable, CliError> {
    let mut table = steer::pricing::PriceTable::builtin();
    if let Some(path) = file {
        let extra =
            steer::pricing::PriceTable::from_path(path).map_err(|e| CliError::Invalid(e.to_string()))?;
        table.merge(extra);
    }
    Ok(table)
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info,steer=info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn load_context(path: Option<PathBuf>, prices: Option<PathBuf>) -> Result<Context, CliError> {
    let explicit = path.is_some();
    let path = path.unwrap_or_else(|| PathBuf::from("steer.toml"));
    // `symlink_metadata`, not `exists`: a dangling ./steer.toml symlink is
    // reported (by `load`), not silently ignored.
    if !explicit && std::fs::symlink_metadata(&path).is_err() {
        return Ok(Context {
            config: ConfigFile::default(),
            config_sinks: Vec::new(),
            prices: load_prices(prices.as_deref())?,
        });
    }
    let (config, config_sinks) = ConfigFile::load(&path)?;
    // `prices` in the file is relative to the file's folder; --prices wins.
    let file_prices = config.prices.as_ref().map(|p| match path.parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.clone(),
    });
    let prices = load_prices(prices.as_deref().or(file_prices.as_deref()))?;
    Ok(Context {
        config,
        config_sinks,
        prices,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eoutln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        let ctx = load_context(cli.config, cli.prices)?;
        match cli.command {
            Command::Demo(a) => demo::run(a, &ctx).await,
            Command::Generate(a) => generate::run(a, &ctx).await,
            Command::Stats(a) => stats::run(a, &ctx).await,
            Command::Dashboard(a) => dashboard::run(a, &ctx).await,
            Command::Bench(a) => bench::run(a, &ctx).await,
            Command::Prices(a) => prices::run(a, &ctx).await,
            Command::Proxy(a) => proxy::run(a, &ctx).await,
            Command::Sinks(a) => sinks::run(a, &ctx).await,
        }
    });
    // Do not wait for stray background tasks (e.g. a sink still retrying).
    rt.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(code) => code,
        Err(e) => {
            eoutln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
