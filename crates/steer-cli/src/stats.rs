//! `steer stats`: the summary from a store, through the one query model
//! ([`StatsQuery`]) and the [`SummaryStore`] trait every store implements.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use steer_metrics::query::{Filter, GroupKey, StatsQuery, SummaryReport, SummaryStore, Timeseries};
use steer_metrics::Summary;

use crate::error::CliError;
use crate::{Context, Format};

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
    /// Break down by model, provider, error, finish_reason or tag:KEY.
    #[arg(long, value_name = "KEY", default_value = "model", value_parser = parse_by)]
    by: GroupKey,
    /// A row per step of this length (e.g. 1h, 1d) instead of one per group
    /// (with --by: one per step and group).
    #[arg(long, value_name = "STEP", value_parser = parse_step)]
    every: Option<Duration>,
    /// Only calls whose KEY is VALUE (repeatable): model=gpt-4o, provider=openai,
    /// error=rate_limit (none = successful), finish_reason=length, tag:team=search.
    #[arg(long = "filter", value_name = "KEY=VALUE", value_parser = parse_filter)]
    filters: Vec<Filter>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

fn parse_window(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 30m, 1h or 7d: {e}"))
}

fn parse_step(s: &str) -> Result<Duration, String> {
    let d = parse_window(s)?;
    if d < Duration::from_secs(1) {
        return Err("the step must be at least 1s".into());
    }
    Ok(d)
}

fn parse_by(s: &str) -> Result<GroupKey, String> {
    s.parse().map_err(|e: steer_metrics::QueryError| e.to_string())
}

fn parse_filter(s: &str) -> Result<Filter, String> {
    s.parse().map_err(|e: steer_metrics::QueryError| e.to_string())
}

/// The default SQLite store path.
pub fn default_db(ctx: &Context) -> PathBuf {
    ctx.config
        .db
        .clone()
        .unwrap_or_else(|| PathBuf::from("steer-metrics.db"))
}

/// Open the store a command reads: PostgreSQL when `postgres` is given,
/// else the SQLite file (`db`, else the default). A missing SQLite store
/// says how to make one. `cached`: keep an in-memory copy of an SQLite
/// store, refreshed incrementally (for the long-lived dashboard).
pub async fn open_store(
    db: Option<PathBuf>,
    postgres: Option<&str>,
    ctx: &Context,
    cached: bool,
) -> Result<Arc<dyn SummaryStore>, CliError> {
    if let Some(url) = postgres {
        return open_postgres(url).await;
    }
    let path = db.unwrap_or_else(|| default_db(ctx));
    match steer::sink_sqlite::SqliteSummaryStore::open(&path) {
        Ok(s) => Ok(Arc::new(s.cached(cached))),
        Err(steer::sink_sqlite::SqliteError::NotFound { .. }) => Err(CliError::Store {
            store: path.display().to_string(),
            message:
                "no metrics store here yet. Make one with `steer demo` (simulated calls, no keys needed), \
                      or point to one with --db PATH or --postgres URL"
                    .into(),
        }),
        Err(e) => Err(CliError::Store {
            store: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Arc<dyn SummaryStore>, CliError> {
    let store = steer::sink_postgres::PostgresSink::builder(url)
        .build_store()
        .map_err(|e| CliError::Store {
            store: steer::spec::redact(url),
            message: e.to_string(),
        })?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str) -> Result<Arc<dyn SummaryStore>, CliError> {
    Err(CliError::SinkNotBuilt("postgres"))
}

/// Run `steer stats`.
pub async fn run(args: StatsArgs, ctx: &Context) -> Result<ExitCode, CliError> {
    let mut q = StatsQuery::new().by(args.by.clone());
    if let Some(w) = args.since {
        let w =
            chrono::Duration::from_std(w).map_err(|_| CliError::Invalid("--since is too large".into()))?;
        q = q.since(chrono::Utc::now() - w);
    }
    for f in &args.filters {
        q = q.filter(f.clone());
    }
    if let Some(step) = args.every {
        q = q.step(step);
    }
    let store = open_store(args.db.clone(), args.postgres.as_deref(), ctx, false).await?;
    let store_err = |e: steer_metrics::QueryError| CliError::Store {
        store: store.describe(),
        message: e.to_string(),
    };
    let style = Style::detect();
    if args.every.is_some() {
        let ts = store.timeseries(&q).await.map_err(store_err)?;
        match args.format {
            Format::Json => print_json(&ts)?,
            Format::Table => out!("{}", series_table(&ts, style)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = store.summary(&q).await.map_err(store_err)?;
    match args.format {
        Format::Json => print_json(&report)?,
        Format::Table => {
            out!("{}", summary_table(&report, style));
            if report.total.count == 0 {
                outln!("no calls in this selection (try a longer --since, or fewer --filter)");
            }
            if report.total.unpriced > 0 {
                outln!(
                    "{} successful call(s) of models without a price: cost unknown, not in the totals (see `steer prices`; --prices FILE adds prices)",
                    fmt_int(report.total.unpriced, style.separators)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), CliError> {
    outln!(
        "{}",
        serde_json::to_string_pretty(v).map_err(|e| CliError::Other(e.to_string()))?
    );
    Ok(())
}

/// How to print for the reader: colour and thousands separators on a
/// terminal, plain text when piped or when `NO_COLOR` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours.
    pub color: bool,
    /// `1,234,567` rather than `1234567`.
    pub separators: bool,
}

impl Style {
    /// Plain text.
    #[cfg(test)]
    pub const PLAIN: Style = Style {
        color: false,
        separators: false,
    };

    /// From stdout and the environment.
    pub fn detect() -> Style {
        let tty = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let fancy = tty && !no_color && std::env::var("TERM").map_or(true, |t| t != "dumb");
        Style {
            color: fancy,
            separators: fancy,
        }
    }
}

/// `1234567` → `1,234,567` (with separators) or `1234567`.
pub fn fmt_int(n: u64, separators: bool) -> String {
    let s = n.to_string();
    if !separators {
        return s;
    }
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_ms(v: Option<f64>, separators: bool) -> String {
    match v {
        Some(v) if v.is_finite() && v >= 1000.0 && separators => {
            format!(
                "{}.{}",
                fmt_int(v.trunc() as u64, true),
                ((v.fract() * 10.0).round() as u64).min(9)
            )
        }
        Some(v) if v.is_finite() => format!("{v:.1}"),
        _ => "-".into(),
    }
}

/// Cost of a group: `-` when every call failed (failed calls cost
/// nothing known), `unknown` when successful calls have no price.
fn fmt_cost(s: &Summary) -> String {
    if s.count == 0 {
        return "-".into();
    }
    if s.cost_unknown == s.count {
        return if s.unpriced == 0 {
            "-".into()
        } else {
            "unknown".into()
        };
    }
    format!("{:.4}", s.cost_usd)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tone {
    Plain,
    Bold,
    Dim,
    Warn,
    Bad,
}

impl Tone {
    fn paint(self, s: &str, style: Style) -> String {
        if !style.color {
            return s.to_string();
        }
        let code = match self {
            Tone::Plain => return s.to_string(),
            Tone::Bold => "1",
            Tone::Dim => "2",
            Tone::Warn => "33",
            Tone::Bad => "31",
        };
        format!("\x1b[{code}m{s}\x1b[0m")
    }
}

const COLUMNS: [&str; 15] = [
    "calls",
    "errors",
    "err%",
    "retries",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "ttft p50",
    "ttft p95",
    "in tok",
    "out tok",
    "cached",
    "reasoning",
    "cache wr",
    "cost $",
];

fn cells(s: &Summary, style: Style) -> Vec<(String, Tone)> {
    let sep = style.separators;
    let l = s.latency_ms.as_ref();
    let t = s.ttft_ms.as_ref();
    let err_tone = if s.error_rate >= 0.05 {
        Tone::Bad
    } else if s.error_rate >= 0.01 {
        Tone::Warn
    } else {
        Tone::Plain
    };
    let dash = |v: String| {
        let tone = if v == "-" { Tone::Dim } else { Tone::Plain };
        (v, tone)
    };
    vec![
        (fmt_int(s.count, sep), Tone::Plain),
        (
            fmt_int(s.errors, sep),
            if s.errors > 0 { err_tone } else { Tone::Plain },
        ),
        (format!("{:.1}", s.error_rate * 100.0), err_tone),
        (fmt_int(s.retries, sep), Tone::Plain),
        dash(fmt_ms(l.map(|d| d.p50), sep)),
        dash(fmt_ms(l.map(|d| d.p95), sep)),
        dash(fmt_ms(l.map(|d| d.p99), sep)),
        dash(fmt_ms(t.map(|d| d.p50), sep)),
        dash(fmt_ms(t.map(|d| d.p95), sep)),
        (fmt_int(s.input_tokens, sep), Tone::Plain),
        (fmt_int(s.output_tokens, sep), Tone::Plain),
        (fmt_int(s.cached_tokens, sep), Tone::Plain),
        (fmt_int(s.reasoning_tokens, sep), Tone::Plain),
        (fmt_int(s.cache_write_tokens, sep), Tone::Plain),
        dash(fmt_cost(s)),
    ]
}

/// Lay out rows (the first `left` columns left-aligned), a rule before the
/// last row when `total_row`.
fn render(
    header: Vec<String>,
    rows: Vec<Vec<(String, Tone)>>,
    left: usize,
    total_row: bool,
    style: Style,
) -> String {
    let n = header.len();
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].0.chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<(String, Tone)>, bold: bool| -> String {
        let out: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, (c, tone))| {
                let padded = if i < left {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                };
                let tone = if bold && tone == Tone::Plain {
                    Tone::Bold
                } else {
                    tone
                };
                tone.paint(&padded, style)
            })
            .collect();
        let mut s = out.join("  ").trim_end().to_string();
        s.push('\n');
        s
    };
    let mut out = line(header.into_iter().map(|h| (h, Tone::Bold)).collect(), false);
    let last = rows.len().saturating_sub(1);
    for (i, r) in rows.into_iter().enumerate() {
        if total_row && i == last {
            out.push_str(
                &widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("  "),
            );
            out.push('\n');
        }
        out.push_str(&line(r, total_row && i == last));
    }
    out
}

fn group_title(by: Option<&GroupKey>) -> String {
    match by {
        Some(GroupKey::Error) => "error".into(),
        Some(k) => k.to_string(),
        None => "group".into(),
    }
}

/// The summary as a table: a row per group, then TOTAL.
pub fn summary_table(r: &SummaryReport, style: Style) -> String {
    let mut header = vec![group_title(r.by.as_ref())];
    header.extend(COLUMNS.iter().map(|c| c.to_string()));
    let mut rows: Vec<Vec<(String, Tone)>> = r
        .groups
        .iter()
        .map(|(k, s)| {
            let mut row = vec![(k.clone(), Tone::Plain)];
            row.extend(cells(s, style));
            row
        })
        .collect();
    let mut total = vec![("TOTAL".to_string(), Tone::Bold)];
    total.extend(cells(&r.total, style));
    rows.push(total);
    render(header, rows, 1, true, style)
}

/// The time series as a table: a row per step (and per group with calls
/// in that step), oldest first.
pub fn series_table(ts: &Timeseries, style: Style) -> String {
    let with_groups = ts.by.is_some() && !ts.groups.is_empty();
    let mut header = vec!["step start (UTC)".to_string()];
    if with_groups {
        header.push(group_title(ts.by.as_ref()));
    }
    header.extend(COLUMNS.iter().map(|c| c.to_string()));
    let fmt = if ts.step_seconds % 86_400 == 0 {
        "%Y-%m-%d"
    } else if ts.step_seconds % 60 == 0 {
        "%Y-%m-%d %H:%M"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    let mut rows = Vec::new();
    for (i, b) in ts.buckets.iter().enumerate() {
        let when = chrono::DateTime::from_timestamp(*b, 0)
            .map_or_else(|| b.to_string(), |t| t.format(fmt).to_string());
        if with_groups {
            for (k, v) in &ts.groups {
                if let Some(s) = v.get(i).filter(|s| s.count > 0) {
                    let mut row = vec![(when.clone(), Tone::Plain), (k.clone(), Tone::Plain)];
                    row.extend(cells(s, style));
                    rows.push(row);
                }
            }
            if let Some(s) = ts.total.get(i) {
                let mut row = vec![(when.clone(), Tone::Dim), ("all".to_string(), Tone::Bold)];
                row.extend(cells(s, style));
                rows.push(row);
            }
        } else if let Some(s) = ts.total.get(i) {
            let mut row = vec![(when, Tone::Plain)];
            row.extend(cells(s, style));
            rows.push(row);
        }
    }
    render(header, rows, if with_groups { 2 } else { 1 }, false, style)
}

#[cfg(test)]
mod tests {
    use super::*;
    use steer_metrics::{AgentMetrics, ErrorClass};

    #[test]
    fn thousands_separators() {
        assert_eq!(fmt_int(0, true), "0");
        assert_eq!(fmt_int(999, true), "999");
        assert_eq!(fmt_int(1000, true), "1,000");
        assert_eq!(fmt_int(1_234_567, true), "1,234,567");
        assert_eq!(fmt_int(1_234_567, false), "1234567");
        assert_eq!(fmt_ms(Some(12_345.67), true), "12,345.7");
        assert_eq!(fmt_ms(Some(12_345.67), false), "12345.7");
        assert_eq!(fmt_ms(None, true), "-");
    }

    #[test]
    fn failed_calls_cost_a_dash_unpriced_ones_unknown() {
        let failed = AgentMetrics::new("openai", "gpt-4o").with_error(ErrorClass::Timeout);
        let s = Summary::from_records([&failed]);
        assert_eq!(fmt_cost(&s), "-");
        let unpriced = AgentMetrics::new("x", "y");
        assert_eq!(fmt_cost(&Summary::from_records([&unpriced])), "unknown");
        let mut priced = AgentMetrics::new("openai", "gpt-4o");
        priced.cost_usd = Some(0.5);
        assert_eq!(fmt_cost(&Summary::from_records([&priced, &failed])), "0.5000");
    }

    #[test]
    fn plain_tables_have_no_escape_codes_and_colour_ones_do() {
        let mut a = AgentMetrics::new("openai", "gpt-4o").with_latency_ms(1500.0);
        a.cost_usd = Some(0.01);
        a.retries = 2;
        a.reasoning_tokens = Some(7);
        let b = AgentMetrics::new("openai", "gpt-4o").with_error(ErrorClass::RateLimit);
        let r = steer_metrics::query::summarize([&a, &b], &StatsQuery::new().by(GroupKey::Model)).unwrap();
        let plain = summary_table(&r, Style::PLAIN);
        assert!(!plain.contains('\x1b'));
        assert!(plain.contains("retries") && plain.contains("ttft p95") && plain.contains("reasoning"));
        let total = plain.lines().last().unwrap();
        assert!(total.starts_with("TOTAL"), "{plain}");
        let colour = summary_table(
            &r,
            Style {
                color: true,
                separators: true,
            },
        );
        assert!(colour.contains("\x1b[31m"), "a 50% error rate is red");
    }
}
