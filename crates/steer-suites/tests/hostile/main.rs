//! Hostile-input suite: the deterministic corpus of `steer_suites::hostile_corpus`
//! (1000 records, half of them hostile: NaN, ±Inf, negative and huge numbers,
//! u64::MAX tokens, 1 MB strings, NUL, newlines, quotes, backslashes,
//! separators, RTL text and emoji, SQL injection, 10 000 tags, an empty
//! model; the other half ordinary, interleaved so they share batches)
//! through every sink against its real backend or a capture server.
//!
//! For each sink: no panic; exact accounting (delivered + failed + dropped
//! == 1000, nothing dropped, nothing exhausted by retries); every ordinary
//! record arrives; every record is stored faithfully after the sink's
//! documented normalisation or rejected (counted as `failed.rejected`).
//! Each test prints a per-category outcome table (the source of
//! docs/suites.md).
//!
//! One module per sink; `common` holds the shared driver.

#![allow(clippy::unwrap_used)]

mod common;

mod cloudwatch;
mod datadog;
mod influxdb;
mod jsonl;
mod memory;
mod otlp;
mod postgres;
mod prometheus;
mod props;
mod sqlite;
