//! `steer prices`: the effective price table (built in, plus `--prices FILE`).

use std::io::Write as _;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use steer::pricing::{ModelPrice, PriceTable};

use crate::error::CliError;
use crate::{Context, Format};

/// Arguments of `steer prices`.
#[derive(Debug, Args)]
pub struct PricesArgs {
    /// Only this model (exact name, alias, or a dated snapshot of a listed model).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Only the models of this provider (`openai`, `anthropic`, `xai`, ...).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// One model in the JSON output: USD per 1M tokens (`web_search`: USD per
/// search request), `null` where not listed.
#[derive(Debug, Serialize)]
struct Row<'a> {
    model: &'a str,
    provider: Option<&'a str>,
    input: f64,
    output: f64,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    cache_write_1h: Option<f64>,
    reasoning: Option<f64>,
    web_search: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    long_context: Option<&'a steer::pricing::LongContextPrice>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    aliases: &'a [String],
}

impl<'a> Row<'a> {
    fn new(model: &'a str, p: &'a ModelPrice) -> Self {
        Row {
            model,
            provider: p.provider.as_deref(),
            input: p.input,
            output: p.output,
            cached_input: p.cached_input,
            cache_write: p.cache_write,
            cache_write_1h: p.cache_write_1h,
            reasoning: p.reasoning,
            web_search: p.web_search,
            long_context: p.long_context.as_ref(),
            aliases: &p.aliases,
        }
    }
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    as_of: Option<&'a str>,
    source: String,
    models: Vec<Row<'a>>,
}

fn source(t: &PriceTable) -> String {
    let s: Vec<&str> = t.sources().iter().map(|s| s.source.as_str()).collect();
    if s.is_empty() {
        "built-in".to_string()
    } else {
        s.join(" + ")
    }
}

/// Run `steer prices`.
pub async fn run(args: PricesArgs, ctx: &Context) -> Result<ExitCode, CliError> {
    let table = &ctx.prices;
    let rows: Vec<Row<'_>> = match &args.model {
        Some(name) => {
            let price = table.get(name).ok_or_else(|| {
                CliError::Invalid(format!(
                    "no price for model `{name}` (see `steer prices` for the listed models, or pass --prices FILE)"
                ))
            })?;
            let canonical = table
                .models()
                .find(|(_, p)| std::ptr::eq(*p, price))
                .map_or(name.as_str(), |(n, _)| n);
            vec![Row::new(canonical, price)]
        }
        None => table
            .models()
            .filter(|(_, p)| {
                args.provider
                    .as_deref()
                    .is_none_or(|want| p.provider.as_deref() == Some(want))
            })
            .map(|(n, p)| Row::new(n, p))
            .collect(),
    };
    let out = Output {
        as_of: table.as_of(),
        source: source(table),
        models: rows,
    };
    let mut stdout = std::io::stdout().lock();
    let written = match args.format {
        Format::Json => serde_json::to_writer_pretty(&mut stdout, &out)
            .map_err(|e| match e.io_error_kind() {
                Some(kind) => std::io::Error::from(kind),
                None => std::io::Error::other(e),
            })
            .and_then(|()| writeln!(stdout)),
        Format::Table => write_table(&mut stdout, &out),
    };
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // A closed pipe (`steer prices | head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(CliError::Other(format!("cannot write the output: {e}"))),
    }
}

fn price(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v}"))
}

fn write_table(w: &mut impl std::io::Write, out: &Output<'_>) -> std::io::Result<()> {
    writeln!(
        w,
        "USD per 1M tokens (web_search: USD per search request), as of {} ({}).\n- = not listed: cache reads and 5-minute writes bill at the input price, 1-hour writes at the 5-minute price, reasoning at the output price.",
        out.as_of.unwrap_or("an unknown date"),
        out.source
    )?;
    let header = [
        "model",
        "provider",
        "input",
        "output",
        "cached_in",
        "cache_5m",
        "cache_1h",
        "reasoning",
        "web_search",
        "long_context",
    ];
    let rows: Vec<[String; 10]> = out
        .models
        .iter()
        .map(|r| {
            [
                r.model.to_string(),
                r.provider.unwrap_or("-").to_string(),
                format!("{}", r.input),
                format!("{}", r.output),
                price(r.cached_input),
                price(r.cache_write),
                price(r.cache_write_1h),
                price(r.reasoning),
                price(r.web_search),
                r.long_context.map_or_else(
                    || "-".to_string(),
                    |lc| format!(">{}k: {}/{}", lc.threshold / 1000, lc.input, lc.output),
                ),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |w: &mut dyn std::io::Write, cells: &[&str]| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, (c, width)) in cells.iter().zip(widths).enumerate() {
            if i < 2 {
                s.push_str(&format!("{c:<width$}  "));
            } else {
                s.push_str(&format!("{c:>width$}  "));
            }
        }
        writeln!(w, "{}", s.trim_end())
    };
    line(w, &header)?;
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(w, &cells)?;
    }
    writeln!(
        w,
        "{} model{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    )
}
