//! Shared by the per-sink hostile-input tests: the corpus, the collector
//! driver, the accounting checks, the per-category outcome table and a
//! capture HTTP server.

pub(crate) use std::collections::{BTreeMap, HashMap, HashSet};
pub(crate) use std::io::Read;
pub(crate) use std::sync::{Arc, Mutex};
pub(crate) use std::time::Duration;

pub(crate) use chrono::{DurationRound, Utc};
pub(crate) use steer_metrics::sinks::{JsonLinesSink, MemorySink};
pub(crate) use steer_metrics::{
    AgentMetrics, MetricsCollector, MetricsSink, RetryPolicy, SinkOptions, SinkStats,
};
pub(crate) use steer_suites::{hostile_corpus, service_env, Case, Category, CORPUS_SIZE};
pub(crate) use tokio::io::{AsyncReadExt, AsyncWriteExt};
pub(crate) use tokio::net::TcpListener;
pub(crate) use uuid::Uuid;

pub(crate) fn corpus(seed: u64) -> Vec<Case> {
    // Recent (CloudWatch and Datadog refuse old points), whole milliseconds.
    let base = (Utc::now() - chrono::Duration::seconds(30))
        .duration_trunc(chrono::Duration::milliseconds(1))
        .unwrap();
    hostile_corpus(seed, base)
}

pub(crate) fn options() -> SinkOptions {
    SinkOptions::default()
        .queue_capacity(CORPUS_SIZE * 2)
        .batch_size(100)
        .linger(Duration::from_millis(20))
        .retry(
            RetryPolicy::default()
                .max_attempts(5)
                .initial_backoff(Duration::from_millis(10))
                .max_backoff(Duration::from_millis(200))
                .attempt_timeout(Duration::from_secs(30))
                .batch_deadline(Duration::from_secs(60)),
        )
}

/// The corpus without some categories (those a sink has a known bug with:
/// each is covered by an `#[ignore = "bug: ..."]` test of its own).
pub(crate) fn corpus_without(seed: u64, skip: &[Category]) -> Vec<Case> {
    corpus(seed)
        .into_iter()
        .filter(|c| !skip.contains(&c.category))
        .collect()
}

/// Only the ordinary records and those of `keep`.
pub(crate) fn corpus_only(seed: u64, keep: &[Category]) -> Vec<Case> {
    corpus(seed)
        .into_iter()
        .filter(|c| c.category == Category::Ordinary || keep.contains(&c.category))
        .collect()
}

/// Records the corpus through a collector with `sink`, flushes, checks the
/// accounting and returns the sink's stats (and the collector, still open).
pub(crate) async fn drive(sink: impl MetricsSink, cases: &[Case]) -> (SinkStats, MetricsCollector) {
    let collector = MetricsCollector::builder()
        .sink_with_options(sink, options())
        .build()
        .unwrap();
    for c in cases {
        collector.record(c.record.clone());
    }
    let report = collector.flush_timeout(Duration::from_secs(60)).await;
    let s = collector.stats().sinks[0].clone();
    let n = cases.len() as u64;
    eprintln!("[{}] flush complete={} stats {s:?}", s.name, report.is_complete());
    assert_eq!(s.received, n, "[{}] received: {s:?}", s.name);
    assert_eq!(s.dropped.total(), 0, "[{}] nothing may be dropped: {s:?}", s.name);
    assert_eq!(
        s.delivered + s.failed.total() + s.dropped.total(),
        n,
        "[{}] accounting: delivered + failed + dropped must equal the records: {s:?}",
        s.name
    );
    let ordinary = cases.iter().filter(|c| c.category == Category::Ordinary).count() as u64;
    assert!(
        s.failed.rejected <= n - ordinary,
        "[{}] more rejections than hostile records: {s:?}",
        s.name
    );
    (s, collector)
}

pub(crate) fn assert_no_exhaustion(s: &SinkStats) {
    assert_eq!(
        s.failed.retries_exhausted, 0,
        "[{}] a hostile record must be rejected as permanent, not retried until exhausted: {s:?}",
        s.name
    );
}

/// Per category: (stored, total). Prints the table, checks every ordinary
/// record is stored and that the missing ones are exactly the rejected ones.
pub(crate) fn outcome(
    sink: &str,
    cases: &[Case],
    stored: &HashSet<Uuid>,
    s: &SinkStats,
) -> BTreeMap<Category, (usize, usize)> {
    let mut t: BTreeMap<Category, (usize, usize)> = BTreeMap::new();
    for c in cases {
        let e = t.entry(c.category).or_default();
        e.1 += 1;
        if stored.contains(&c.record.request_id) {
            e.0 += 1;
        }
    }
    let mut line = format!("[{sink}] outcome (stored/total):");
    for (c, (k, n)) in &t {
        line.push_str(&format!(" {}={k}/{n}", c.name()));
    }
    eprintln!("{line}");
    assert_no_exhaustion(s);
    let (ok, all) = t[&Category::Ordinary];
    assert_eq!(
        ok, all,
        "[{sink}] every ordinary batch-mate of a hostile record must be stored"
    );
    let missing = cases.len() - stored.len();
    assert_eq!(
        missing as u64, s.failed.rejected,
        "[{sink}] records missing from the backend must be exactly the rejected ones: {s:?}"
    );
    assert_eq!(
        stored.len() as u64,
        s.delivered,
        "[{sink}] stored rows vs delivered: {s:?}"
    );
    t
}

pub(crate) fn of(t: &BTreeMap<Category, (usize, usize)>, c: Category) -> (usize, usize) {
    t.get(&c).copied().unwrap_or((0, 0))
}

/// Categories whose records a sink must store all / none of.
pub(crate) fn expect_all(sink: &str, t: &BTreeMap<Category, (usize, usize)>, cats: &[Category]) {
    for &c in cats {
        let (k, n) = of(t, c);
        assert_eq!(k, n, "[{sink}] category {} must be stored ({k}/{n})", c.name());
    }
}

pub(crate) fn expect_none(sink: &str, t: &BTreeMap<Category, (usize, usize)>, cats: &[Category]) {
    for &c in cats {
        let (k, n) = of(t, c);
        assert_eq!(
            k,
            0,
            "[{sink}] category {} must be rejected ({k}/{n} stored)",
            c.name()
        );
    }
}

pub(crate) fn by_id(cases: &[Case]) -> HashMap<Uuid, &Case> {
    cases.iter().map(|c| (c.record.request_id, c)).collect()
}

// ------------------------------------------------------------ memory, jsonl

#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) path: String,
    /// Decompressed body.
    pub(crate) body: Vec<u8>,
}

/// A minimal HTTP/1.1 server that keeps every request and answers
/// `status` with `reply` as body.
#[derive(Clone)]
pub(crate) struct CaptureServer {
    pub(crate) url: String,
    pub(crate) requests: Arc<Mutex<Vec<Req>>>,
}

impl CaptureServer {
    pub(crate) async fn start(status: u16, content_type: &'static str, reply: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cap = CaptureServer {
            url: format!("http://{}", listener.local_addr().unwrap()),
            requests: Arc::default(),
        };
        let requests = cap.requests.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let requests = requests.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let head_end = loop {
                            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                            let mut chunk = [0u8; 65536];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                        let mut lines = head.split("\r\n");
                        let path = lines
                            .next()
                            .unwrap_or("")
                            .split(' ')
                            .nth(1)
                            .unwrap_or("")
                            .to_string();
                        let mut headers = BTreeMap::new();
                        for l in lines.filter(|l| !l.is_empty()) {
                            if let Some((k, v)) = l.split_once(':') {
                                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                            }
                        }
                        let len: usize = headers
                            .get("content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        while buf.len() < head_end + len {
                            let mut chunk = [0u8; 65536];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let raw: Vec<u8> = buf[head_end..head_end + len].to_vec();
                        buf.drain(..head_end + len);
                        let body = match headers.get("content-encoding").map(String::as_str) {
                            Some("gzip") => {
                                let mut out = Vec::new();
                                flate2::read::GzDecoder::new(&raw[..])
                                    .read_to_end(&mut out)
                                    .unwrap();
                                out
                            }
                            Some("deflate") => {
                                let mut out = Vec::new();
                                flate2::read::ZlibDecoder::new(&raw[..])
                                    .read_to_end(&mut out)
                                    .unwrap();
                                out
                            }
                            _ => raw,
                        };
                        requests.lock().unwrap().push(Req { path, body });
                        let resp = format!(
                            "HTTP/1.1 {status} OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{reply}",
                            reply.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        cap
    }

    pub(crate) fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

// ------------------------------------------------------------ datadog
