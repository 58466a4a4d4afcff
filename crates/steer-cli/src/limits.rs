//! Bounds on numeric arguments: absurd values are refused on the command
//! line (exit 2) instead of aborting on an allocation or never finishing.

/// Most simulated calls `demo` makes in one run.
pub const MAX_REQUESTS: usize = 10_000_000;
/// Most records `bench` pushes in one run (memory stays flat: records are cycled).
pub const MAX_RECORDS: usize = 1_000_000_000;
/// Most calls in flight at once.
pub const MAX_CONCURRENCY: usize = 100_000;
/// Largest queue capacity (records) a command asks for.
pub const MAX_QUEUE: usize = 10_000_000;
/// Largest batch handed to a sink.
pub const MAX_BATCH: usize = 1_000_000;
/// Largest `--latency-scale` (100× realistic latencies is already minutes per call).
pub const MAX_LATENCY_SCALE: f64 = 100.0;

fn count(s: &str, what: &str, min: usize, max: usize) -> Result<usize, String> {
    let n: u128 = s
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if n < min as u128 || n > max as u128 {
        return Err(format!("{what} must be between {min} and {max}"));
    }
    usize::try_from(n).map_err(|_| format!("{what} must be between {min} and {max}"))
}

/// `--requests` of `demo`.
pub fn requests(s: &str) -> Result<usize, String> {
    count(s, "the number of requests", 1, MAX_REQUESTS)
}

/// `--records` of `bench`.
pub fn records(s: &str) -> Result<usize, String> {
    count(s, "the number of records", 1, MAX_RECORDS)
}

/// `--concurrency`.
pub fn concurrency(s: &str) -> Result<usize, String> {
    count(s, "the concurrency", 1, MAX_CONCURRENCY)
}

/// `--queue`.
pub fn queue(s: &str) -> Result<usize, String> {
    count(s, "the queue capacity", 1, MAX_QUEUE)
}

/// `--batch`.
pub fn batch(s: &str) -> Result<usize, String> {
    count(s, "the batch size", 1, MAX_BATCH)
}

/// `--latency-scale`.
pub fn latency_scale(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !v.is_finite() || !(0.0..=MAX_LATENCY_SCALE).contains(&v) {
        return Err(format!(
            "the latency scale must be between 0 and {MAX_LATENCY_SCALE}"
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(requests("1000"), Ok(1000));
        assert!(requests("0").is_err());
        assert!(requests("1000000000000").is_err());
        assert!(requests("1e12").is_err());
        assert!(requests("99999999999999999999999999999999999999999").is_err());
        assert!(concurrency("0").is_err());
        assert!(queue("1000000000000").is_err());
        assert!(latency_scale("1e300").is_err());
        assert!(latency_scale("NaN").is_err());
        assert!(latency_scale("-1").is_err());
        assert_eq!(latency_scale("0.5"), Ok(0.5));
    }
}
