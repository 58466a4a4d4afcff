//! Outage suite: PostgreSQL and InfluxDB are each stopped three times
//! while 200 000 records flow through a `MetricsCollector` at a steady
//! pace; afterwards every record must be in the backend exactly once.
//!
//! Backends come from scripts/services/postgres.sh (STEER_TEST_POSTGRES_URL,
//! STEER_TEST_PG_CTL, STEER_TEST_PG_DATA, STEER_TEST_PG_RUNAS) and
//! scripts/services/influxdb.sh (STEER_TEST_INFLUXDB_URL,
//! STEER_TEST_INFLUXD_BIN, STEER_TEST_INFLUXDB_CONFIG,
//! STEER_TEST_INFLUXDB_PIDFILE). Each test uses its own schema / database.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use steer_metrics::{AgentMetrics, MetricsCollector, RetryPolicy, SinkOptions};
use steer_sink_influxdb::InfluxSink;
use steer_sink_postgres::PostgresSink;
use steer_suites::service_env;
use uuid::Uuid;

const N: usize = 200_000;
/// Records per second while recording (the run lasts N / RATE ≈ 8 s).
const RATE: f64 = 25_000.0;
/// How long each outage lasts.
const OUTAGE: Duration = Duration::from_millis(2000);

fn options() -> SinkOptions {
    SinkOptions::default()
        .queue_capacity(N + 10_000)
        .batch_size(5_000)
        .linger(Duration::from_millis(50))
        .retry(
            RetryPolicy::default()
                .max_attempts(100_000)
                .initial_backoff(Duration::from_millis(20))
                .max_backoff(Duration::from_millis(500))
                .attempt_timeout(Duration::from_secs(10))
                .batch_deadline(Duration::from_secs(75)),
        )
}

/// Something the outage task can stop and start.
trait Server: Send + 'static {
    fn stop(&mut self);
    fn start(&mut self);
}

/// Records `N` records at `RATE` per second while a side task stops the
/// server at 20 %, 45 % and 70 % of the run for [`OUTAGE`] each. Returns the
/// recorded ids once the collector has flushed.
async fn run(
    collector: &MetricsCollector,
    make: impl Fn(usize) -> AgentMetrics,
    server: impl Server,
) -> Vec<Uuid> {
    let progress = Arc::new(AtomicUsize::new(0));
    let outages = {
        let progress = progress.clone();
        let mut server = server;
        tokio::task::spawn_blocking(move || {
            let mut downs = Vec::new();
            for at in [0.20, 0.45, 0.70] {
                let mark = (N as f64 * at) as usize;
                while progress.load(Ordering::Relaxed) < mark {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let t = Instant::now();
                server.stop();
                std::thread::sleep(OUTAGE);
                server.start();
                downs.push((mark, t.elapsed()));
            }
            downs
        })
    };

    let mut ids = Vec::with_capacity(N);
    let start = Instant::now();
    let mut i = 0;
    while i < N {
        let due = ((start.elapsed().as_secs_f64() * RATE) as usize).min(N);
        while i < due {
            let m = make(i);
            ids.push(m.request_id);
            collector.record(m);
            i += 1;
        }
        progress.store(i, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let recorded_in = start.elapsed();
    let downs = outages.await.unwrap();
    let report = collector.flush_timeout(Duration::from_secs(80)).await;
    let stats = collector.stats();
    let s = &stats.sinks[0];
    eprintln!(
        "outage run: recorded {N} in {recorded_in:?}, outages {downs:?}, flushed after {:?}; stats {s:?}",
        start.elapsed()
    );
    assert!(report.is_complete(), "flush incomplete: {report:?}");
    assert_eq!(s.received, N as u64, "{s:?}");
    assert_eq!(s.dropped.total(), 0, "nothing may be dropped: {s:?}");
    assert_eq!(s.failed.total(), 0, "nothing may fail: {s:?}");
    assert_eq!(s.delivered, N as u64, "{s:?}");
    assert!(
        s.retried > 0,
        "three outages but no retry: the server was never really down? {s:?}"
    );
    ids
}

// ---------------------------------------------------------------- PostgreSQL

struct Postgres {
    pg_ctl: String,
    data: String,
    runas: Option<String>,
}

impl Postgres {
    fn pg_ctl(&self, args: &[&str]) {
        let mut cmd = match &self.runas {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", &self.pg_ctl]);
                c
            }
            None => Command::new(&self.pg_ctl),
        };
        let out = cmd
            .args(["-D", &self.data, "-w", "-t", "30"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Server for Postgres {
    fn stop(&mut self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
    }
    fn start(&mut self) {
        let log = format!("{}/outage-restart.log", self.data);
        self.pg_ctl(&["-l", &log, "start"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_outages_lose_and_duplicate_nothing() {
    let script = "scripts/services/postgres.sh";
    let Some(url) = service_env("STEER_TEST_POSTGRES_URL", script) else {
        return;
    };
    let server = Postgres {
        pg_ctl: service_env("STEER_TEST_PG_CTL", script).unwrap(),
        data: service_env("STEER_TEST_PG_DATA", script).unwrap(),
        runas: std::env::var("STEER_TEST_PG_RUNAS")
            .ok()
            .filter(|s| !s.is_empty()),
    };
    let schema = format!("outage_{}", &Uuid::now_v7().simple().to_string()[20..]);
    let sink = PostgresSink::builder(&url)
        .schema(&schema)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    // Create the table before the run, so the first outage does not hit the migration.
    sink.migrate().await.unwrap();
    let collector = MetricsCollector::builder()
        .sink_with_options(sink, options())
        .build()
        .unwrap();

    let base = Utc::now();
    let ids = run(
        &collector,
        |i| {
            let mut m = AgentMetrics::new("openai", "gpt-4o-mini").with_latency_ms(100.0 + (i % 50) as f64);
            m.timestamp = base + chrono::Duration::microseconds(i as i64);
            m
        },
        server,
    )
    .await;

    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let table = format!("\"{schema}\".llm_metrics");
    let row = client
        .query_one(
            &format!("SELECT count(*), count(DISTINCT request_id) FROM {table}"),
            &[],
        )
        .await
        .unwrap();
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(rows, N as i64, "rows in the table (lost or duplicated records)");
    assert_eq!(distinct, N as i64, "distinct request ids");
    let stored: HashSet<Uuid> = client
        .query(&format!("SELECT request_id FROM {table}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, Uuid>(0))
        .collect();
    let recorded: HashSet<Uuid> = ids.into_iter().collect();
    assert_eq!(recorded.len(), N);
    assert!(stored == recorded, "stored ids differ from recorded ids");
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
    collector.shutdown(Duration::from_secs(5)).await;
}

// ------------------------------------------------------------------ InfluxDB

struct Influx {
    url: String,
    bin: String,
    config: String,
    pidfile: String,
    /// The server we restarted (our child), once we have.
    child: Option<Child>,
}

impl Influx {
    fn ping(&self) -> bool {
        // A blocking ping without another HTTP client: a raw request.
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("http://").trim_end_matches('/');
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(format!("GET /ping HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .is_err()
        {
            return false;
        }
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).is_ok() && buf.ends_with(b"204")
    }
}

impl Server for Influx {
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            child.wait().unwrap();
        } else {
            let pid = std::fs::read_to_string(&self.pidfile).unwrap().trim().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let t = Instant::now();
            // Not our child: gone once it has exited (or a zombie until its
            // parent, the shell that started it, reaps it).
            while Command::new("kill")
                .args(["-0", &pid])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
                && !is_zombie(&pid)
            {
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "influxd {pid} did not stop"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn start(&mut self) {
        let log_path = std::path::Path::new(&self.config).with_file_name("influxd-restarted.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap();
        let child = Command::new(&self.bin)
            .args(["-config", &self.config])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        // stop_influxdb (scripts/services/influxdb.sh) stops the PID in this file.
        std::fs::write(&self.pidfile, format!("{}\n", child.id())).unwrap();
        self.child = Some(child);
        let t = Instant::now();
        while !self.ping() {
            assert!(t.elapsed() < Duration::from_secs(30), "influxd did not come back");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn is_zombie(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false)
}

async fn influx_query(http: &reqwest::Client, url: &str, db: Option<&str>, q: &str) -> serde_json::Value {
    let mut form = vec![("q", q.to_string())];
    if let Some(db) = db {
        form.push(("db", db.to_string()));
    }
    let resp = http
        .post(format!("{url}/query"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{q}: {}", resp.status());
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["results"][0].get("error").is_none(), "{q}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_three_outages_lose_and_duplicate_nothing() {
    let script = "scripts/services/influxdb.sh";
    let Some(url) = service_env("STEER_TEST_INFLUXDB_URL", script) else {
        return;
    };
    let url = url.trim_end_matches('/').to_string();
    let server = Influx {
        url: url.clone(),
        bin: service_env("STEER_TEST_INFLUXD_BIN", script).unwrap(),
        config: service_env("STEER_TEST_INFLUXDB_CONFIG", script).unwrap(),
        pidfile: service_env("STEER_TEST_INFLUXDB_PIDFILE", script).unwrap(),
        child: None,
    };
    let http = reqwest::Client::new();
    let db = format!("outage_{}", &Uuid::now_v7().simple().to_string()[20..]);
    influx_query(&http, &url, None, &format!("CREATE DATABASE \"{db}\"")).await;
    let sink = InfluxSink::new(
        InfluxSink::builder(url.as_str())
            .database(&db)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    )
    .unwrap();
    let collector = MetricsCollector::builder()
        .sink_with_options(sink, options())
        .build()
        .unwrap();

    // All records share one series: the distinct nanosecond timestamps make
    // each its own point (same series + timestamp would overwrite).
    let base = Utc::now() - chrono::Duration::hours(1);
    let ids = run(
        &collector,
        |i| {
            let mut m = AgentMetrics::new("openai", "gpt-4o-mini").with_latency_ms(100.0 + (i % 50) as f64);
            m.timestamp = base + chrono::Duration::microseconds(i as i64);
            m
        },
        server,
    )
    .await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), N);

    let v = influx_query(
        &http,
        &url,
        Some(&db),
        "SELECT COUNT(latency_ms), COUNT(DISTINCT(request_id)) FROM llm_request",
    )
    .await;
    let row = &v["results"][0]["series"][0]["values"][0];
    assert_eq!(row[1].as_u64(), Some(N as u64), "points in InfluxDB: {v}");
    assert_eq!(
        row[2].as_u64(),
        Some(N as u64),
        "distinct request ids in InfluxDB: {v}"
    );
    influx_query(&http, &url, None, &format!("DROP DATABASE \"{db}\"")).await;
    collector.shutdown(Duration::from_secs(5)).await;
}
