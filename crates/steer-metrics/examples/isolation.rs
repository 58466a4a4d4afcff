//! Slow-sink isolation: does one stalled sink hurt the others or the caller?
//!
//! ```sh
//! cargo run --release -p steer-metrics --example isolation -- [SECONDS] [RATE]
//! ```
//!
//! Two runs of SECONDS (default 30) at RATE records/s (default 10 000), in
//! the same process:
//! * baseline: two healthy sinks;
//! * stalled: the same two sinks plus one that stalls for the whole run
//!   (every `record_batch` sleeps SECONDS).
//!
//! Reports, per run, the healthy sinks' delivery latency (record() to the
//! sink receiving it) p50/p99/max and the cost of `record()` itself
//! (p50/p99), and the ratios stalled/baseline.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use steer_metrics::summary::percentile;
use steer_metrics::testkit::SlowSink;
use steer_metrics::{async_trait, AgentMetrics, MetricsCollector, MetricsSink, SinkError, SinkOptions};

/// Records how long each record took to arrive (from its `timestamp`).
#[derive(Clone)]
struct Timing {
    name: &'static str,
    lags_us: Arc<Mutex<Vec<f64>>>,
}

#[async_trait]
impl MetricsSink for Timing {
    fn name(&self) -> &str {
        self.name
    }
    async fn record(&self, m: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(m)).await
    }
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        let now = chrono::Utc::now();
        let mut l = self.lags_us.lock().unwrap_or_else(|p| p.into_inner());
        for m in batch {
            l.push((now - m.timestamp).num_microseconds().unwrap_or(i64::MAX) as f64);
        }
        Ok(())
    }
}

struct RunResult {
    delivery_p50: f64,
    delivery_p99: f64,
    delivery_max: f64,
    record_p50: f64,
    record_p99: f64,
    delivered: usize,
}

async fn run(seconds: u64, rate: u64, stalled: bool) -> RunResult {
    let a = Timing {
        name: "a",
        lags_us: Arc::default(),
    };
    let b = Timing {
        name: "b",
        lags_us: Arc::default(),
    };
    let opts = SinkOptions::default()
        .linger(Duration::from_millis(5))
        .batch_size(500)
        .queue_capacity(50_000);
    let mut builder = MetricsCollector::builder()
        .sink_with_options(a.clone(), opts.clone())
        .sink_with_options(b.clone(), opts.clone());
    if stalled {
        let retry = opts
            .get_retry()
            .attempt_timeout(Duration::from_secs(seconds + 60));
        let o = opts.clone().retry(retry);
        builder = builder.sink_with_options(SlowSink::new(Duration::from_secs(seconds)), o);
    }
    let c = builder.build().expect("runtime");
    let template = steer_metrics::testkit::synthetic(1, 1).remove(0);
    let n = seconds * rate;
    let mut record_ns = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for i in 0..n {
        if i % 100 == 0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let mut m = template.clone();
        m.timestamp = chrono::Utc::now();
        let t = Instant::now();
        c.record(m);
        record_ns.push(t.elapsed().as_nanos() as f64);
    }
    // Wait for the healthy sinks only.
    let deadline = Instant::now() + Duration::from_secs(30);
    while (a.lags_us.lock().map(|l| l.len()).unwrap_or(0) as u64) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = c.shutdown(Duration::from_millis(100)).await;
    let mut lags: Vec<f64> = a.lags_us.lock().map(|l| l.clone()).unwrap_or_default();
    lags.extend(b.lags_us.lock().map(|l| l.clone()).unwrap_or_default());
    lags.sort_by(f64::total_cmp);
    record_ns.sort_by(f64::total_cmp);
    RunResult {
        delivery_p50: percentile(&lags, 0.5).unwrap_or(f64::NAN) / 1000.0,
        delivery_p99: percentile(&lags, 0.99).unwrap_or(f64::NAN) / 1000.0,
        delivery_max: lags.last().copied().unwrap_or(f64::NAN) / 1000.0,
        record_p50: percentile(&record_ns, 0.5).unwrap_or(f64::NAN),
        record_p99: percentile(&record_ns, 0.99).unwrap_or(f64::NAN),
        delivered: lags.len(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);
    let rate: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let base = run(seconds, rate, false).await;
    let stall = run(seconds, rate, true).await;
    println!(
        "{seconds} s at {rate} records/s; healthy sinks a and b; stalled run adds a sink stalled {seconds} s"
    );
    println!(
        "{:<9} {:>10} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "run", "delivered", "deliv p50 ms", "deliv p99 ms", "deliv max ms", "record p50 ns", "record p99 ns"
    );
    for (name, r) in [("baseline", &base), ("stalled", &stall)] {
        println!(
            "{:<9} {:>10} {:>14.2} {:>14.2} {:>14.2} {:>14.0} {:>14.0}",
            name, r.delivered, r.delivery_p50, r.delivery_p99, r.delivery_max, r.record_p50, r.record_p99
        );
    }
    println!(
        "ratio stalled/baseline: delivery p99 {:.2}x, record() p99 {:.2}x",
        stall.delivery_p99 / base.delivery_p99,
        stall.record_p99 / base.record_p99
    );
}
