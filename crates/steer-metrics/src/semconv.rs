//! What the metric backends share: the OpenTelemetry GenAI semantic
//! conventions' histogram boundaries and provider names, and the bounds
//! beyond which a value is treated as implausible (skipped and counted by
//! aggregating sinks, so one absurd record cannot poison a series' totals).

/// The conventions' recommended boundaries for
/// `gen_ai.client.operation.duration` (seconds).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// The conventions' recommended boundaries for `gen_ai.client.token.usage`.
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// Boundaries for `gen_ai.client.operation.time_to_first_chunk` (seconds):
/// those the conventions recommend for the server-side time to first token.
pub const TTFC_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The model value of series folded beyond a sink's cardinality cap.
pub const OTHER: &str = "other";

/// Longest attribute / label value kept, in bytes.
pub const MAX_VALUE_LEN: usize = 256;

/// Most times one record's observation is repeated for its sample weight.
pub const MAX_REPEAT: u32 = 10_000;

/// Largest cost of one call aggregating sinks record, in US dollars.
pub const MAX_COST_USD: f64 = 1e9;

/// Largest latency or TTFT aggregating sinks record, in milliseconds (about 11.6 days).
pub const MAX_DURATION_MS: f64 = 1e9;

/// The `gen_ai.provider.name` for a steer provider name: the conventions'
/// well-known value where it differs (`xai` → `x_ai`), else the name itself.
pub fn provider_name(provider: &str) -> &str {
    match provider {
        "xai" => "x_ai",
        other => other,
    }
}

/// How many times a histogram observes a record with this sample weight:
/// `round(w)`, at least 1, at most [`MAX_REPEAT`].
pub fn repeat_count(weight: f64) -> u32 {
    if !weight.is_finite() || weight <= 1.0 {
        return 1;
    }
    let r = weight.round();
    if r >= f64::from(MAX_REPEAT) {
        MAX_REPEAT
    } else {
        // In 1..MAX_REPEAT: exact.
        r as u32
    }
}

/// What a counter adds for a record with this sample weight: `w` when
/// finite and positive, else 1.
pub fn counter_weight(weight: f64) -> f64 {
    if weight.is_finite() && weight > 0.0 {
        weight
    } else {
        1.0
    }
}

/// A plausible cost of one call: finite, not negative, at most [`MAX_COST_USD`].
pub fn plausible_cost(usd: f64) -> bool {
    usd.is_finite() && (0.0..=MAX_COST_USD).contains(&usd)
}

/// A plausible latency or TTFT: finite, not negative, at most [`MAX_DURATION_MS`].
pub fn plausible_duration_ms(ms: f64) -> bool {
    ms.is_finite() && (0.0..=MAX_DURATION_MS).contains(&ms)
}

/// Milliseconds to seconds; `None` unless [`plausible_duration_ms`].
pub fn seconds(ms: f64) -> Option<f64> {
    plausible_duration_ms(ms).then_some(ms / 1000.0)
}

/// What a cost counter adds for a record: `cost × weight` when the cost is
/// finite, not negative and at most [`MAX_COST_USD`] (and the product
/// finite); `None` otherwise.
pub fn cost_amount(cost: f64, weight: f64) -> Option<f64> {
    let v = cost * weight;
    (plausible_cost(cost) && v.is_finite()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_repeats_and_bounds() {
        assert_eq!(
            (
                repeat_count(f64::NAN),
                repeat_count(0.2),
                repeat_count(2.6),
                repeat_count(1e12)
            ),
            (1, 1, 3, MAX_REPEAT)
        );
        assert_eq!((counter_weight(-1.0), counter_weight(4.0)), (1.0, 4.0));
        assert_eq!(seconds(1500.0), Some(1.5));
        assert_eq!(
            (seconds(-1.0), seconds(f64::INFINITY), seconds(2e9)),
            (None, None, None)
        );
        assert_eq!(cost_amount(0.5, 2.0), Some(1.0));
        assert_eq!(
            (
                cost_amount(1e308, 1.0),
                cost_amount(-0.1, 1.0),
                cost_amount(1e9, f64::MAX)
            ),
            (None, None, None)
        );
        assert_eq!(provider_name("xai"), "x_ai");
        assert_eq!(provider_name("openai"), "openai");
    }
}
