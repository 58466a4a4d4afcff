//! `steer stats`: the summary from a store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use std::collections::BTreeMap;

use steer_metrics::{GroupBy, Summary};

use crate::error::CliError;
use crate::output::{table, SummaryReport};
use crate::{Context, Format};

/// What to break the summary down by.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum By {
    /// Per requested model.
    #[default]
    Model,
    /// Per provider.
    Provider,
    /// Per error class (`none` = success).
    Error,
}

impl From<By> for GroupBy {
    fn from(b: By) -> Self {
        match b {
            By::Model => GroupBy::Model,
            By::Provider => GroupBy::Provider,
            By::Error => GroupBy::ErrorClass,
        }
    }
}

/// `steer stats` arguments.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// SQLite store (default: the config file's `db`, else ./steer-metrics.db).
    #[arg(long, value_name = "PATH", conflicts_with = "postgres")]
    db: Option<PathBuf>,
    /// PostgreSQL store URL instead of SQLite (password: in the URL or PGPASSWORD).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Only calls that started within this window (e.g. 30m, 1h, 7d).
    #[arg(long, value_name = "DURATION", value_parser = parse_window)]
    since: Option<Duration>,
    /// Break down by model, provider or error class.
    #[arg(long, value_enum, default_value_t = By::Model)]
    by: By,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

fn parse_window(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 30m, 1h or 7d: {e}"))
}

/// The default SQLite store path.
pub fn default_db(ctx: &Context) -> PathBuf {
    ctx.config
        .db
        .clone()
        .unwrap_or_else(|| PathBuf::from("steer-metrics.db"))
}

type Summaries = (Summary, BTreeMap<String, Summary>);

#[cfg(feature = "postgres")]
async fn postgres_summary(
    url: &str,
    since: Option<chrono::DateTime<chrono::Utc>>,
    by: GroupBy,
) -> Result<Summaries, CliError> {
    let store_err = |e: &dyn std::fmt::Display| CliError::Store {
        store: steer::spec::redact(url),
        message: e.to_string(),
    };
    let store = steer::sink_postgres::PostgresSink::builder(url)
        .build_store()
        .map_err(|e| store_err(&e))?;
    let total = store.summary(since).await.map_err(|e| store_err(&e))?;
    let groups = store.breakdown(since, by).await.map_err(|e| store_err(&e))?;
    Ok((total, groups))
}

#[cfg(not(feature = "postgres"))]
async fn postgres_summary(
    _url: &str,
    _since: Option<chrono::DateTime<chrono::Utc>>,
    _by: GroupBy,
) -> Result<Summaries, CliError> {
    Err(CliError::SinkNotBuilt("postgres"))
}

/// Run `steer stats`.
pub async fn run(args: StatsArgs, ctx: &Context) -> Result<ExitCode, CliError> {
    let by: GroupBy = args.by.into();
    let since = match args.since {
        Some(w) => Some(
            chrono::Utc::now()
                - chrono::Duration::from_std(w)
                    .map_err(|_| CliError::Invalid("--since is too large".into()))?,
        ),
        None => None,
    };
    let (total, groups) = if let Some(url) = &args.postgres {
        postgres_summary(url, since, by).await?
    } else {
        let path = args.db.clone().unwrap_or_else(|| default_db(ctx));
        let store_err = |e: &dyn std::fmt::Display| CliError::Store {
            store: path.display().to_string(),
            message: e.to_string(),
        };
        let store = steer::sink_sqlite::SqliteStore::open_read_only(&path).map_err(|e| store_err(&e))?;
        let mut filter = steer::sink_sqlite::Filter::all();
        if let Some(t) = since {
            filter = filter.since(t);
        }
        let total = store.summary(&filter).map_err(|e| store_err(&e))?;
        let groups = store.breakdown(&filter, by).map_err(|e| store_err(&e))?;
        (total, groups)
    };
    match args.format {
        Format::Json => {
            let report = SummaryReport {
                total: &total,
                by,
                groups: &groups,
                delivery: None,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| CliError::Other(e.to_string()))?
            );
        }
        Format::Table => {
            print!("{}", table(&total, by, &groups));
            if total.unpriced > 0 {
                println!(
                    "{} successful call(s) of models without a price: cost unknown, not in the totals (see `steer prices`; --prices FILE adds prices)",
                    total.unpriced
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
