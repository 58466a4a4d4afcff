//! End-to-end ingest into a real InfluxDB: records through the collector
//! and this sink, against posting the same points, pre-encoded, in the same
//! batch size with a plain HTTP loop — measured in the same run.
//!
//! ```text
//! STEER_TEST_INFLUXDB_URL=http://127.0.0.1:8086 \
//!   cargo run --release -p steer-sink-influxdb --example throughput -- [--records N] [--batch B] [--rounds R] [--gzip]
//! ```
//! (`scripts/bench-influxdb.sh` starts a server and runs this.)
//!
//! Also reports the encoder's throughput per CPU-second of one thread
//! (thread CPU time, so other load on the machine does not count).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use steer_metrics::{AgentMetrics, MetricsCollector, OverflowPolicy, SinkOptions};
use steer_sink_influxdb::{Encoder, InfluxSink, Precision};

struct Args {
    url: String,
    records: usize,
    batch: usize,
    rounds: usize,
    gzip: bool,
}

fn args() -> Args {
    let mut a = Args {
        url: std::env::var("STEER_TEST_INFLUXDB_URL").unwrap_or_else(|_| "http://127.0.0.1:8086".into()),
        records: 200_000,
        batch: 5_000,
        rounds: 3,
        gzip: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--url" => a.url = it.next().unwrap(),
            "--records" => a.records = it.next().unwrap().parse().unwrap(),
            "--batch" => a.batch = it.next().unwrap().parse().unwrap(),
            "--rounds" => a.rounds = it.next().unwrap().parse().unwrap(),
            "--gzip" => a.gzip = true,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// This thread's user + system CPU time (Linux `/proc/thread-self/stat`).
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of the file (utime, stime), in clock ticks (100/s).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn encoder_rate(records: &[AgentMetrics]) {
    let e = Encoder::new("llm_request", Precision::Nanoseconds);
    let mut buf = Vec::with_capacity(records.len() * 400);
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let mut points = 0u64;
    while wall0.elapsed() < Duration::from_secs(3) {
        buf.clear();
        for m in records {
            e.encode(m, &mut buf).unwrap();
            buf.push(b'\n');
        }
        points += records.len() as u64;
    }
    let wall = wall0.elapsed();
    let bytes_per_point = buf.len() as f64 / records.len() as f64;
    match (cpu0, thread_cpu()) {
        (Some(a), Some(b)) if b > a => println!(
            "encoder: {:.2} M points/s per CPU-second ({:.2} M/s wall), {bytes_per_point:.0} bytes/point",
            points as f64 / (b - a).as_secs_f64() / 1e6,
            points as f64 / wall.as_secs_f64() / 1e6
        ),
        _ => println!(
            "encoder: {:.2} M points/s wall",
            points as f64 / wall.as_secs_f64() / 1e6
        ),
    }
}

async fn query(http: &reqwest::Client, url: &str, db: Option<&str>, q: &str) -> serde_json::Value {
    let mut form = vec![("q", q)];
    if let Some(db) = db {
        form.push(("db", db));
    }
    let r = http
        .post(format!("{url}/query"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{q}: {}", r.status());
    r.json().await.unwrap()
}

async fn count(http: &reqwest::Client, url: &str, db: &str) -> u64 {
    let v = query(http, url, Some(db), "SELECT COUNT(latency_ms) FROM llm_request").await;
    v["results"][0]["series"][0]["values"][0][1].as_u64().unwrap_or(0)
}

/// Baseline: POST pre-encoded line protocol, `batch` lines per request.
async fn baseline(http: &reqwest::Client, a: &Args, db: &str, bodies: &[Vec<u8>]) -> Duration {
    let url = format!("{}/write?db={db}&precision=n", a.url);
    let t = Instant::now();
    for b in bodies {
        let mut req = http.post(&url).body(b.clone());
        if a.gzip {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(b).unwrap();
            req = http
                .post(&url)
                .header("Content-Encoding", "gzip")
                .body(enc.finish().unwrap());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    t.elapsed()
}

/// The sink: records through a collector, `batch` per `record_batch`.
async fn through_sink(a: &Args, db: &str, records: &[AgentMetrics]) -> Duration {
    let sink = InfluxSink::new(
        InfluxSink::builder(&a.url)
            .database(db)
            .max_lines_per_request(a.batch)
            .max_bytes_per_request(64 * 1024 * 1024)
            .gzip(a.gzip)
            .build()
            .unwrap(),
    )
    .unwrap();
    let collector = MetricsCollector::builder()
        .sink_with_options(
            sink,
            SinkOptions::default()
                .batch_size(a.batch)
                .queue_capacity(records.len())
                .linger(Duration::from_millis(5))
                .overflow(OverflowPolicy::Block),
        )
        .build()
        .unwrap();
    let t = Instant::now();
    for m in records {
        collector.record(m.clone());
    }
    let report = collector.flush().await;
    let elapsed = t.elapsed();
    let s = &report.sinks[0].stats;
    assert_eq!(s.delivered, records.len() as u64, "{s}");
    elapsed
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let records = steer_metrics::testkit::synthetic(a.records, 7);
    // 1 000 records stay in cache (as in the criterion bench); 10 000 do not.
    for n in [1_000, 10_000] {
        print!("{n:>6} distinct records: ");
        encoder_rate(&records[..records.len().min(n)]);
    }

    if a.rounds == 0 {
        return;
    }
    let http = reqwest::Client::new();
    let enc = Encoder::new("llm_request", Precision::Nanoseconds);
    let bodies: Vec<Vec<u8>> = records
        .chunks(a.batch)
        .map(|c| {
            let mut b = Vec::new();
            for m in c {
                enc.encode(m, &mut b).unwrap();
                b.push(b'\n');
            }
            b
        })
        .collect();

    println!(
        "end to end: {} records, batch {}, gzip {}, {} rounds (fresh databases each)",
        a.records, a.batch, a.gzip, a.rounds
    );
    let mut best_base = Duration::MAX;
    let mut best_sink = Duration::MAX;
    for round in 0..a.rounds {
        let tag = format!("{}_{round}", std::process::id());
        let (db_base, db_sink) = (format!("bench_base_{tag}"), format!("bench_sink_{tag}"));
        for db in [&db_base, &db_sink] {
            query(&http, &a.url, None, &format!("CREATE DATABASE {db}")).await;
        }
        // Alternate the order so neither side always runs on a warmer server.
        let (tb, ts) = if round % 2 == 0 {
            let tb = baseline(&http, &a, &db_base, &bodies).await;
            (tb, through_sink(&a, &db_sink, &records).await)
        } else {
            let ts = through_sink(&a, &db_sink, &records).await;
            (baseline(&http, &a, &db_base, &bodies).await, ts)
        };
        let (nb, ns) = (
            count(&http, &a.url, &db_base).await,
            count(&http, &a.url, &db_sink).await,
        );
        assert_eq!(
            (nb, ns),
            (a.records as u64, a.records as u64),
            "every point stored once"
        );
        for db in [&db_base, &db_sink] {
            query(&http, &a.url, None, &format!("DROP DATABASE {db}")).await;
        }
        let rate = |d: Duration| a.records as f64 / d.as_secs_f64();
        println!(
            "round {round}: pre-encoded POST loop {:>9.0} points/s | collector + InfluxSink {:>9.0} records/s | ratio {:.2}",
            rate(tb),
            rate(ts),
            tb.as_secs_f64() / ts.as_secs_f64()
        );
        best_base = best_base.min(tb);
        best_sink = best_sink.min(ts);
    }
    println!(
        "best: pre-encoded {:.0} points/s, sink {:.0} records/s, ratio {:.2} (target >= 0.5)",
        a.records as f64 / best_base.as_secs_f64(),
        a.records as f64 / best_sink.as_secs_f64(),
        best_base.as_secs_f64() / best_sink.as_secs_f64()
    );
}
