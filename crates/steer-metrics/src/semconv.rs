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
