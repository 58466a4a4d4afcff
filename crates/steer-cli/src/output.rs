//! Tables and JSON for summaries and delivery reports.

use std::collections::BTreeMap;

use serde::Serialize;
use steer_metrics::{DeliveryReport, GroupBy, Summary};

/// A summary with its breakdown: what `demo` and `stats` print as JSON.
#[derive(Debug, Serialize)]
pub struct SummaryReport<'a> {
    /// Over everything.
    pub total: &'a Summary,
    /// What `groups` is keyed by.
    pub by: GroupBy,
    /// Per group.
    pub groups: &'a BTreeMap<String, Summary>,
    /// Delivery per sink (demo only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<&'a DeliveryReport>,
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

/// Name of a group-by column.
pub fn group_title(by: GroupBy) -> &'static str {
    match by {
        GroupBy::Model => "model",
        GroupBy::Provider => "provider",
        GroupBy::ErrorClass => "error",
    }
}

/// Render a summary table.
pub fn table(total: &Summary, by: GroupBy, groups: &BTreeMap<String, Summary>) -> String {
    let header = [
        group_title(by),
        "calls",
        "errors",
        "err%",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "mean ms",
        "ttft p50",
        "in tok",
        "out tok",
        "cached",
        "cost $",
    ];
    let row = |name: &str, s: &Summary| -> Vec<String> {
        let l = s.latency_ms.as_ref();
        vec![
            name.to_string(),
            s.count.to_string(),
            s.errors.to_string(),
            format!("{:.1}", s.error_rate * 100.0),
            ms(l.map(|d| d.p50)),
            ms(l.map(|d| d.p95)),
            ms(l.map(|d| d.p99)),
            ms(l.map(|d| d.mean)),
            ms(s.ttft_ms.as_ref().map(|d| d.p50)),
            s.input_tokens.to_string(),
            s.output_tokens.to_string(),
            s.cached_tokens.to_string(),
            if s.count > 0 && s.cost_unknown == s.count {
                "unknown".into()
            } else {
                format!("{:.4}", s.cost_usd)
            },
        ]
    };
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for (k, s) in groups {
        rows.push(row(k, s));
    }
    rows.push(row("TOTAL", total));
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, r) in rows.iter().enumerate() {
        if n == rows.len() - 1 {
            out.push_str(
                &widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("  "),
            );
            out.push('\n');
        }
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Whether every sink got everything: completed in time, closed without
/// error, nothing lost, nothing still pending or left in a spool. Anything
/// else exits 6.
pub fn all_delivered(report: &DeliveryReport) -> bool {
    report.sinks.iter().all(|s| {
        s.completed
            && s.error.is_none()
            && s.stats.lost() == 0
            && s.stats.in_flight == 0
            && s.stats.spooled == 0
    })
}

/// The exit code of a run that ends with `report`: 130 / 143 when a
/// signal stopped it, 0 when every sink got everything, otherwise 6 with a
/// warning pointing at the delivery report (one rule for every command).
pub fn run_exit(report: &DeliveryReport, stop: &crate::signals::Stop) -> std::process::ExitCode {
    let delivered = all_delivered(report);
    if !delivered {
        eoutln!("warning: some records were not delivered (see the delivery report above)");
    }
    if let Some(sig) = stop.signal() {
        return std::process::ExitCode::from(sig.exit_code());
    }
    if delivered {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(crate::error::exit::UNDELIVERED)
    }
}

/// Describe delivery per sink: one line each, problems first-class, with
/// the reason (the sink's last error, redacted) when something went wrong.
pub fn delivery(report: &DeliveryReport) -> String {
    let mut out = String::new();
    for s in &report.sinks {
        let st = &s.stats;
        let missing = st.lost() > 0 || st.in_flight > 0 || st.spooled > 0;
        let status = if missing {
            "NOT DELIVERED"
        } else if !s.completed || s.error.is_some() {
            // Every record was handed to the sink, but its flush/close did
            // not confirm them: say so rather than "not delivered N of N".
            "UNCONFIRMED"
        } else {
            "ok"
        };
        out.push_str(&format!(
            "  {:<40} {:>13}  delivered {} of {}",
            st.name, status, st.delivered, st.received
        ));
        if st.retried > 0 {
            out.push_str(&format!(", retried {}", st.retried));
        }
        if st.dropped.total() > 0 {
            out.push_str(&format!(
                ", dropped {} (queue_full {}, evicted {}, closed {}, spool_full {})",
                st.dropped.total(),
                st.dropped.queue_full,
                st.dropped.evicted_oldest,
                st.dropped.closed,
                st.dropped.spool_full
            ));
        }
        if st.failed.total() > 0 {
            let f = &st.failed;
            let mut parts = vec![
                format!("rejected {}", f.rejected),
                format!("retries_exhausted {}", f.retries_exhausted),
            ];
            if f.misconfigured > 0 {
                parts.push(format!("misconfigured {}", f.misconfigured));
            }
            if f.flush > 0 {
                parts.push(format!("flush {}", f.flush));
            }
            out.push_str(&format!(", failed {} ({})", f.total(), parts.join(", ")));
        }
        if st.in_flight > 0 {
            out.push_str(&format!(", still pending {}", st.in_flight));
        }
        if st.spooled > 0 {
            out.push_str(&format!(", kept in the spool for the next run {}", st.spooled));
        }
        if !missing && !s.completed {
            out.push_str(", but the sink did not confirm them (its flush/close did not finish)");
        }
        if let Some(e) = &s.error {
            out.push_str(&format!(
                "\n  {:<40} {:>13}  {}",
                "",
                "error:",
                steer_metrics::redact::redact(e)
            ));
        }
        if status != "ok" {
            if let Some(e) = st.last_error.as_ref().filter(|e| Some(*e) != s.error.as_ref()) {
                out.push_str(&format!(
                    "\n  {:<40} {:>13}  {}",
                    "",
                    "last error:",
                    steer_metrics::redact::redact(e)
                ));
            }
        }
        out.push('\n');
    }
    out
}
