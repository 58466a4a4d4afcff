//! Crash suite: a process recording into a spool-backed SQLite sink is
//! killed with SIGKILL at random moments; after a restart, every record
//! whose `record()` returned before the last spool sync the process
//! reported is in the table exactly once.
//!
//! The test re-runs its own binary as the child process (the `crash_child`
//! test, which does nothing unless `STEER_SPOOL_CRASH_ROLE` is set).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use steer_metrics::StatsQuery;
use steer_metrics::{AgentMetrics, MetricsCollector, SinkOptions};
use steer_sink_sqlite::{SqliteSink, SqliteStore};
use steer_spool::{SpoolConfig, SqliteSpool};
use uuid::Uuid;

const ROLE: &str = "STEER_SPOOL_CRASH_ROLE";
const DIR: &str = "STEER_SPOOL_CRASH_DIR";
const BASE: &str = "STEER_SPOOL_CRASH_BASE";
/// Each writer run numbers its records from `run * STRIDE`.
const STRIDE: u64 = 1_000_000;
const RUNS: u64 = 12;
const SYNC_EVERY: u64 = 20;

fn rec(i: u64) -> AgentMetrics {
    let mut m = AgentMetrics::new("openai", "gpt-4o-mini").with_latency_ms((i % 1000) as f64);
    m.request_id = Uuid::from_u128(u128::from(i) + 1);
    m
}

fn build(dir: &Path, rt: &tokio::runtime::Runtime) -> MetricsCollector {
    let _guard = rt.enter();
    let sink = SqliteSink::open(dir.join("metrics.db")).unwrap();
    let spool = SqliteSpool::open(dir.join("spool.db"), SpoolConfig::default()).unwrap();
    MetricsCollector::builder()
        .sink_with_spool(sink, Some(SinkOptions::default().batch_size(64)), Arc::new(spool))
        .build()
        .unwrap()
}

/// The child process. A no-op in a normal test run.
#[test]
fn crash_child() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let dir = std::path::PathBuf::from(std::env::var(DIR).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let collector = build(&dir, &rt);
    let mut out = std::io::stdout();
    match role.as_str() {
        "write" => {
            let base: u64 = std::env::var(BASE).unwrap().parse().unwrap();
            let replayed = collector.stats().sinks[0].replayed;
            writeln!(out, "\nREPLAYED {replayed}").unwrap();
            rt.block_on(async {
                for i in base..base + STRIDE {
                    collector.record(rec(i));
                    if i % SYNC_EVERY == SYNC_EVERY - 1 {
                        collector.sync_spools().await;
                        // Everything up to `i` is in the spool now.
                        writeln!(out, "SYNCED {i}").unwrap();
                        out.flush().unwrap();
                    }
                }
            });
        }
        "drain" => rt.block_on(async {
            let report = collector.flush_timeout(Duration::from_secs(30)).await;
            assert!(report.is_complete(), "{report}");
            let report = collector.shutdown(Duration::from_secs(10)).await;
            assert!(report.is_complete(), "{report}");
            let s = &report.sinks[0].stats;
            assert_eq!(s.lost(), 0, "{s}");
            writeln!(out, "DRAINED replayed {}", s.replayed).unwrap();
            out.flush().unwrap();
        }),
        other => panic!("unknown role {other}"),
    }
}

fn child(dir: &Path, role: &str, base: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DIR, dir)
        .env(BASE, base.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing_synced() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // (first id, last id reported synced) per writer run.
    let mut synced: Vec<(u64, Option<u64>)> = Vec::new();
    // Records found in the spool by restarted writers (left by the kill).
    let mut replays = 0;
    for run in 0..RUNS {
        let base = run * STRIDE;
        let mut c = child(dir.path(), "write", base);
        let stdout = c.stdout.take().unwrap();
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut last = None;
            let mut replayed = 0;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, n)) = line.split_once("REPLAYED ") {
                    replayed = n.trim().parse::<u64>().unwrap();
                }
                if let Some((_, n)) = line.split_once("SYNCED ") {
                    if last.is_none() {
                        let _ = first_tx.send(());
                    }
                    last = Some(n.trim().parse::<u64>().unwrap());
                }
            }
            (last, replayed)
        });
        // Once it is recording (and replaying what earlier runs left), kill
        // it at a random moment.
        first_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("writer never synced");
        std::thread::sleep(Duration::from_millis(fastrand::u64(10..500)));
        c.kill().unwrap(); // SIGKILL on Unix
        c.wait().unwrap();
        let (last, replayed) = reader.join().unwrap();
        assert!(last.is_some());
        synced.push((base, last));
        replays += replayed;
    }

    let mut d = child(dir.path(), "drain", 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = d.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            d.kill().unwrap();
            panic!("drain did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut drained = String::new();
    std::io::Read::read_to_string(&mut d.stdout.take().unwrap(), &mut drained).unwrap();
    assert!(status.success(), "drain failed: {drained}");

    let store = SqliteStore::open_read_only(dir.path().join("metrics.db")).unwrap();
    let ids: Vec<u64> = store
        .records(&StatsQuery::new())
        .unwrap()
        .iter()
        .map(|m| m.request_id.as_u128() as u64 - 1)
        .collect();
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "a record is stored twice");
    let mut expected = 0;
    for (base, last) in &synced {
        let Some(last) = last else { continue };
        for i in *base..=*last {
            assert!(
                unique.contains(&i),
                "record {i} (synced before the kill) is missing"
            );
        }
        expected += last - base + 1;
    }
    // Nothing that was never recorded.
    for i in &unique {
        let run = i / STRIDE;
        assert!(run < RUNS, "unknown record {i}");
    }
    assert!(expected > 0);
    eprintln!(
        "crash suite: {RUNS} SIGKILLs, {expected} synced records all stored once ({} stored in total), {replays} records replayed by restarted writers, drain: {}, {:?}",
        unique.len(),
        drained
            .split_once("DRAINED ")
            .map_or("", |(_, r)| r.lines().next().unwrap_or("")),
        started.elapsed(),
    );
}
