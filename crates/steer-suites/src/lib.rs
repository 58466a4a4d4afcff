//! # steer-suites
//!
//! Cross-sink test suites for steer (tests only, not published):
//!
//! * `tests/outage.rs` — PostgreSQL and InfluxDB stopped and restarted
//!   while 200 000 records flow through a `MetricsCollector`; afterwards
//!   every record is present exactly once.
//! * `tests/hostile.rs` — a deterministic corpus of hostile records (NaN,
//!   ±Inf, huge numbers, 1 MB strings, NUL, escaping characters, SQL
//!   injection, 10 000 tags, ...) mixed with ordinary ones, through every
//!   sink against its real backend or a capture server.
//!
//! This library holds what the suites share: [`service_env`] (the
//! fail-under-CI / skip-loudly rule for backend addresses) and
//! [`hostile_corpus`]. See `docs/suites.md` for what each sink does with
//! each hostile category.
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Duration, Utc};
use steer_metrics::{AgentMetrics, ErrorClass, Method};
use uuid::Uuid;

/// The value of the environment variable `var` naming a test backend.
///
/// When it is unset or empty: if `STEER_REQUIRE_SERVICES` or `CI` is set,
/// panics with a message naming the variable and the script that sets it;
/// otherwise prints a loud `SKIPPED:` line on stderr and returns `None`.
pub fn service_env(var: &str, script: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var_os("STEER_REQUIRE_SERVICES").is_some() || std::env::var_os("CI").is_some() {
                panic!("{var} is not set but services are required: start it with {script} (scripts/test.sh does)");
            }
            // Straight to the process's stderr: the harness captures eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: set {var} (see {script}) to run this suite against the real backend"
            );
            None
        }
    }
}

/// What is hostile about a record of the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// A plain, valid record (the batch-mates of the hostile ones).
    Ordinary,
    /// `latency_ms` = NaN (also `ttft_ms`).
    NanLatency,
    /// `latency_ms` = +Inf, `cost_usd` = -Inf.
    InfLatency,
    /// `latency_ms` = -1, `cost_usd` = -0.5.
    NegativeNumbers,
    /// `latency_ms` = 1e308, `cost_usd` = 1e308.
    HugeFloats,
    /// Every token count `u64::MAX`, `retries` `u32::MAX`.
    MaxTokens,
    /// A 1 MB model name, error message and tag value.
    MegaStrings,
    /// NUL bytes in model, provider, tag keys and values, error message.
    NulBytes,
    /// `\n` and `\r` in model, provider, tags, error message.
    Newlines,
    /// Single and double quotes everywhere.
    Quotes,
    /// Backslashes, inner and trailing.
    Backslashes,
    /// `=`, `,` and spaces in model, provider, tag keys and values.
    Separators,
    /// Right-to-left text and emoji.
    Unicode,
    /// SQL injection strings.
    SqlInjection,
    /// 10 000 tags on one record.
    TenThousandTags,
    /// An empty model (and an empty tag key and value).
    EmptyModel,
}

impl Category {
    /// Every hostile category (not `Ordinary`).
    pub const HOSTILE: [Category; 15] = [
        Category::NanLatency,
        Category::InfLatency,
        Category::NegativeNumbers,
        Category::HugeFloats,
        Category::MaxTokens,
        Category::MegaStrings,
        Category::NulBytes,
        Category::Newlines,
        Category::Quotes,
        Category::Backslashes,
        Category::Separators,
        Category::Unicode,
        Category::SqlInjection,
        Category::TenThousandTags,
        Category::EmptyModel,
    ];

    /// A short stable name (used in reports and docs).
    pub fn name(self) -> &'static str {
        match self {
            Category::Ordinary => "ordinary",
            Category::NanLatency => "nan",
            Category::InfLatency => "inf",
            Category::NegativeNumbers => "negative",
            Category::HugeFloats => "huge_floats",
            Category::MaxTokens => "max_tokens",
            Category::MegaStrings => "1mb_strings",
            Category::NulBytes => "nul",
            Category::Newlines => "newlines",
            Category::Quotes => "quotes",
            Category::Backslashes => "backslashes",
            Category::Separators => "separators",
            Category::Unicode => "rtl_emoji",
            Category::SqlInjection => "sql_injection",
            Category::TenThousandTags => "10k_tags",
            Category::EmptyModel => "empty_model",
        }
    }

    /// Heavy categories (megabytes per record) appear only a few times.
    fn is_heavy(self) -> bool {
        matches!(self, Category::MegaStrings | Category::TenThousandTags)
    }
}

/// One record of the corpus and why it is there.
#[derive(Debug, Clone)]
pub struct Case {
    /// The hostile category (or `Ordinary`).
    pub category: Category,
    /// The record.
    pub record: AgentMetrics,
}

/// The SQL injection strings of the corpus.
pub const SQL_INJECTIONS: [&str; 4] = [
    "'); DROP TABLE llm_metrics;--",
    "\"; DELETE FROM llm_metrics WHERE ''='",
    "1' OR '1'='1",
    "x'); SELECT pg_sleep(10);--",
];

/// Size of the "1 MB" strings.
pub const MEGA: usize = 1 << 20;

/// Records in the corpus.
pub const CORPUS_SIZE: usize = 1000;

/// How many records of each heavy category the corpus holds.
pub const HEAVY_COUNT: usize = 2;

/// A deterministic corpus of [`CORPUS_SIZE`] records: ordinary ones (even
/// indices) interleaved with hostile ones cycling through
/// [`Category::HOSTILE`] (heavy categories only [`HEAVY_COUNT`] times each).
///
/// Request ids are distinct UUIDs derived from `seed` and the index;
/// timestamps are `base` plus the index in milliseconds, so every record
/// is its own point even in a backend keyed by series and time.
pub fn hostile_corpus(seed: u64, base: DateTime<Utc>) -> Vec<Case> {
    let mut out = Vec::with_capacity(CORPUS_SIZE);
    let mut heavy_seen: BTreeMap<Category, usize> = BTreeMap::new();
    let mut cycle = Category::HOSTILE.iter().copied().cycle();
    for i in 0..CORPUS_SIZE {
        let category = if i.is_multiple_of(2) {
            Category::Ordinary
        } else {
            loop {
                let c = cycle.next().unwrap_or(Category::NanLatency);
                if c.is_heavy() {
                    let n = heavy_seen.entry(c).or_default();
                    if *n >= HEAVY_COUNT {
                        continue;
                    }
                    *n += 1;
                }
                break c;
            }
        };
        out.push(Case {
            category,
            record: build(category, seed, i, base),
        });
    }
    out
}

fn ordinary(seed: u64, i: usize, base: DateTime<Utc>) -> AgentMetrics {
    let models = ["gpt-4o-mini", "claude-sonnet-4-5", "grok-4"];
    let providers = ["openai", "anthropic", "xai"];
    let k = i % 3;
    let mut m = AgentMetrics::new(providers[k], models[k])
        .with_latency_ms(100.0 + (i % 97) as f64)
        .with_tokens(10 + (i % 13) as u64, 5 + (i % 7) as u64)
        .with_tag("team", "search");
    let i64_index = i as u64;
    m.request_id = Uuid::from_u64_pair(seed, i64_index);
    m.timestamp = base + Duration::milliseconds(i as i64);
    m.cost_usd = Some(0.001);
    if i.is_multiple_of(10) {
        m.method = Method::Stream;
        m.ttft_ms = Some(40.0);
    }
    if i.is_multiple_of(20) {
        m = m.with_error(ErrorClass::RateLimit);
        m.error_message = Some("429 slow down".into());
    }
    m
}

fn build(category: Category, seed: u64, i: usize, base: DateTime<Utc>) -> AgentMetrics {
    let mut m = ordinary(seed, i, base);
    let nth = i / 2; // varies the strings between instances of a category
    match category {
        Category::Ordinary => {}
        Category::NanLatency => {
            m.latency_ms = f64::NAN;
            m.method = Method::Stream;
            m.ttft_ms = Some(f64::NAN);
        }
        Category::InfLatency => {
            m.latency_ms = f64::INFINITY;
            m.cost_usd = Some(f64::NEG_INFINITY);
        }
        Category::NegativeNumbers => {
            m.latency_ms = -1.0;
            m.cost_usd = Some(-0.5);
        }
        Category::HugeFloats => {
            m.latency_ms = 1e308;
            m.cost_usd = Some(1e308);
        }
        Category::MaxTokens => {
            m.input_tokens = u64::MAX;
            m.output_tokens = u64::MAX;
            m.cached_tokens = u64::MAX;
            m.reasoning_tokens = Some(u64::MAX);
            m.retries = u32::MAX;
        }
        Category::MegaStrings => {
            m.model = format!("m-{}", "x".repeat(MEGA));
            m.error_message = Some("e".repeat(MEGA));
            m.tags.insert("big".into(), "v".repeat(MEGA));
        }
        Category::NulBytes => {
            m.model = "gpt\0-4o".into();
            m.provider = "open\0ai".into();
            m.tags.insert("k\0ey".into(), "va\0lue".into());
            m.error_message = Some("nul\0inside".into());
        }
        Category::Newlines => {
            m.model = "line1\nline2\r".into();
            m.provider = "prov\nider".into();
            m.tags.insert("multi\nline".into(), "a\nb\r\nc".into());
            m.error_message = Some("first\nsecond".into());
        }
        Category::Quotes => {
            m.model = "it's \"quoted\"".into();
            m.provider = "o'\"p".into();
            m.tags.insert("q\"k'".into(), "\"v'".into());
            m.error_message = Some("say \"hi\" 'there'".into());
        }
        Category::Backslashes => {
            m.model = "back\\slash\\".into();
            m.provider = "prov\\".into();
            m.tags.insert("k\\".into(), "v\\\\".into());
            m.tags.insert("mid".into(), "a\\,b\\ c\\=d".into());
            m.error_message = Some("C:\\path\\".into());
        }
        Category::Separators => {
            m.model = "a=b,c d".into();
            m.provider = "p=q, r".into();
            m.tags.insert("k=e,y z".into(), "v=a,l u".into());
            m.tags.insert(" lead".into(), "trail ".into());
        }
        Category::Unicode => {
            m.model = "\u{202e}مرحبا-🚀".into();
            m.provider = "שלום".into();
            m.tags.insert("🔥".into(), "\u{200f}ערך 👩‍👩‍👧".into());
            m.error_message = Some("ошибка 💥".into());
        }
        Category::SqlInjection => {
            let s = SQL_INJECTIONS[nth % SQL_INJECTIONS.len()];
            m.model = s.into();
            m.provider = s.into();
            m.tags.insert(s.into(), s.into());
            m.error_message = Some(s.into());
            m.trace_id = Some(s.into());
        }
        Category::TenThousandTags => {
            for t in 0..10_000 {
                m.tags.insert(format!("tag{t:05}"), format!("value{t}"));
            }
        }
        Category::EmptyModel => {
            m.model = String::new();
            m.tags.insert(String::new(), "empty-key".into());
            m.tags.insert("empty_value".into(), String::new());
        }
    }
    // The hostile string also lands in the `team` tag, which the aggregating
    // sinks are configured to promote to a dimension / tag.
    if matches!(
        category,
        Category::MegaStrings
            | Category::NulBytes
            | Category::Newlines
            | Category::Quotes
            | Category::Backslashes
            | Category::Separators
            | Category::Unicode
            | Category::SqlInjection
            | Category::EmptyModel
    ) {
        let team = if category == Category::MegaStrings {
            "t".repeat(MEGA)
        } else {
            m.model.clone()
        };
        m.tags.insert("team".into(), team);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_and_covers_every_category() {
        let base = Utc::now();
        let a = hostile_corpus(7, base);
        let b = hostile_corpus(7, base);
        assert_eq!(a.len(), CORPUS_SIZE);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.category, y.category);
            assert_eq!(x.record.request_id, y.record.request_id);
            assert_eq!(x.record.model, y.record.model);
        }
        for c in Category::HOSTILE {
            let n = a.iter().filter(|x| x.category == c).count();
            assert!(n >= HEAVY_COUNT, "{c:?} appears {n} times");
        }
        let ids: std::collections::HashSet<_> = a.iter().map(|c| c.record.request_id).collect();
        assert_eq!(ids.len(), CORPUS_SIZE);
    }
}
