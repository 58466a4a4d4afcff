//! The simulated provider behind `sim/<model>`: no network, realistic
//! latency, tokens and failures, deterministic under a seed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use steer_metrics::ErrorClass;

use super::Completion;
use crate::error::{AttemptError, FailureKind};
use crate::types::{Request, ToolCall, Usage};

/// Configuration of the simulated provider (`sim/<model>`).
///
/// Latencies are log-normal: `median * exp(spread * z)` with `z` standard
/// normal, then multiplied by `latency_scale` (0 = no waiting at all, for
/// benchmarks and tests). Each call draws from its own RNG, derived from
/// `seed` and a call counter, so a run with the same seed and the same call
/// order produces the same latencies, tokens, texts and failures.
///
/// ```
/// use std::time::Duration;
/// use steer::SimConfig;
/// let sim = SimConfig::default()
///     .seed(42)
///     .latency(Duration::from_millis(600), 0.4)
///     .ttft(Duration::from_millis(200))
///     .output_tokens(20, 200)
///     .rate_limit_rate(0.02)
///     .latency_scale(0.0);
/// assert_eq!(sim.seed, Some(42));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
#[non_exhaustive]
pub struct SimConfig {
    /// RNG seed; `None` (the default) picks a random one.
    pub seed: Option<u64>,
    /// Median latency of a whole call (default 800 ms).
    pub latency_median: Duration,
    /// Log-normal spread (sigma) of latencies (default 0.5).
    pub latency_spread: f64,
    /// Multiplier on every simulated wait (default 1.0; 0 = instant).
    pub latency_scale: f64,
    /// Median time to first token (default 250 ms); never more than the latency.
    pub ttft_median: Duration,
    /// Input tokens drawn uniformly from this range; `None` (default)
    /// estimates them from the prompt (about 4 characters per token).
    pub input_tokens: Option<(u64, u64)>,
    /// Output tokens drawn uniformly from this range (default 20..=300),
    /// capped by the request's `max_tokens`.
    pub output_tokens: (u64, u64),
    /// Probability that part of the input is served from the prompt cache (default 0).
    pub cache_hit_rate: f64,
    /// Probability of answering with a tool call when the request has tools (default 0.5).
    pub tool_call_rate: f64,
    /// Probability of a 429 with a retry hint per attempt (default 0).
    pub rate_limit_rate: f64,
    /// Probability of an attempt timing out (default 0).
    pub timeout_rate: f64,
    /// Probability of a 5xx per attempt (default 0).
    pub server_error_rate: f64,
    /// Retry hint sent with a simulated 429 (default 1 s, times `latency_scale`).
    pub retry_after: Duration,
    /// Per-model medians (latency, TTFT) replacing the global ones, so a
    /// demo can show a small model answering faster than a large one.
    pub model_latency: BTreeMap<String, (Duration, Duration)>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: None,
            latency_median: Duration::from_millis(800),
            latency_spread: 0.5,
            latency_scale: 1.0,
            ttft_median: Duration::from_millis(250),
            input_tokens: None,
            output_tokens: (20, 300),
            cache_hit_rate: 0.0,
            tool_call_rate: 0.5,
            rate_limit_rate: 0.0,
            timeout_rate: 0.0,
            server_error_rate: 0.0,
            retry_after: Duration::from_secs(1),
            model_latency: BTreeMap::new(),
        }
    }
}

fn prob(p: f64) -> f64 {
    if p.is_nan() {
        0.0
    } else {
        p.clamp(0.0, 1.0)
    }
}

impl SimConfig {
    /// A configuration that never waits (latency scale 0), for tests and benchmarks.
    pub fn instant() -> Self {
        Self::default().latency_scale(0.0)
    }
    /// Fix the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// Median latency and log-normal spread (sigma, e.g. 0.5).
    pub fn latency(mut self, median: Duration, spread: f64) -> Self {
        self.latency_median = median;
        self.latency_spread = if spread.is_finite() { spread.max(0.0) } else { 0.0 };
        self
    }
    /// Multiply every wait by `scale` (0 = instant).
    pub fn latency_scale(mut self, scale: f64) -> Self {
        self.latency_scale = if scale.is_finite() { scale.max(0.0) } else { 0.0 };
        self
    }
    /// Median time to first token.
    pub fn ttft(mut self, median: Duration) -> Self {
        self.ttft_median = median;
        self
    }
    /// Draw input tokens from `min..=max` instead of estimating from the prompt.
    pub fn input_tokens(mut self, min: u64, max: u64) -> Self {
        self.input_tokens = Some((min.min(max), max.max(min)));
        self
    }
    /// Draw output tokens from `min..=max`.
    pub fn output_tokens(mut self, min: u64, max: u64) -> Self {
        self.output_tokens = (min.min(max), max.max(min));
        self
    }
    /// Probability of a prompt-cache hit.
    pub fn cache_hit_rate(mut self, p: f64) -> Self {
        self.cache_hit_rate = prob(p);
        self
    }
    /// Probability of a tool call when tools are offered.
    pub fn tool_call_rate(mut self, p: f64) -> Self {
        self.tool_call_rate = prob(p);
        self
    }
    /// Probability of a simulated 429 per attempt.
    pub fn rate_limit_rate(mut self, p: f64) -> Self {
        self.rate_limit_rate = prob(p);
        self
    }
    /// Probability of a simulated timeout per attempt.
    pub fn timeout_rate(mut self, p: f64) -> Self {
        self.timeout_rate = prob(p);
        self
    }
    /// Probability of a simulated 5xx per attempt.
    pub fn server_error_rate(mut self, p: f64) -> Self {
        self.server_error_rate = prob(p);
        self
    }
    /// All three error rates at once.
    pub fn error_rates(self, rate_limit: f64, timeout: f64, server_error: f64) -> Self {
        self.rate_limit_rate(rate_limit)
            .timeout_rate(timeout)
            .server_error_rate(server_error)
    }
    /// Median latency and TTFT for one model (the name without `sim/`).
    pub fn model_latency(mut self, model: impl Into<String>, median: Duration, ttft: Duration) -> Self {
        self.model_latency.insert(model.into(), (median, ttft));
        self
    }
    /// Retry hint of simulated 429s.
    pub fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = d;
        self
    }
}

/// The simulated provider: configuration plus the call counter.
#[derive(Debug)]
pub(crate) struct Sim {
    pub config: SimConfig,
    seed: u64,
    calls: AtomicU64,
}

/// splitmix64: decorrelates seeds that differ by one.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "answers",
    "with",
    "a",
    "short",
    "and",
    "clear",
    "reply",
    "about",
    "metrics",
    "latency",
    "tokens",
    "cost",
    "every",
    "call",
    "is",
    "measured",
    "sinks",
    "deliver",
    "records",
    "without",
    "blocking",
    "requests",
    "providers",
    "stream",
    "quickly",
    "results",
    "data",
    "simulated",
];

/// What the simulator needs to know about a request.
#[derive(Debug, Clone)]
pub(crate) struct SimInput {
    prompt_chars: u64,
    max_tokens: Option<u32>,
    tool: Option<String>,
}

impl SimInput {
    pub fn new(req: &Request) -> Self {
        let prompt_chars = req.messages.iter().map(|m| m.content.len() as u64).sum::<u64>()
            + req.system.as_ref().map_or(0, |s| s.len() as u64);
        let tool = req.tools.as_ref().and_then(|t| {
            let first = t.as_array()?.first()?;
            first
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| first.get("name"))
                .and_then(|n| n.as_str())
                .map(str::to_string)
        });
        SimInput {
            prompt_chars,
            max_tokens: req.max_tokens,
            tool,
        }
    }
}

/// One simulated attempt, ready to be played out.
pub(crate) enum SimOutcome {
    /// Wait, then fail.
    Fail(Duration, AttemptError),
    /// Deltas (each after its wait), then the completion.
    Answer(VecDeque<(Duration, String)>, Completion),
}

impl Sim {
    pub fn new(config: SimConfig) -> Self {
        let seed = config.seed.unwrap_or_else(|| fastrand::u64(..));
        Sim {
            config,
            seed,
            calls: AtomicU64::new(0),
        }
    }

    /// The RNG of the next call.
    pub fn call_rng(&self) -> fastrand::Rng {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        fastrand::Rng::with_seed(mix(self.seed ^ mix(n)))
    }

    fn lognormal(&self, rng: &mut fastrand::Rng, median: Duration) -> Duration {
        // Box-Muller; u1 in (0, 1].
        let u1 = 1.0 - rng.f64();
        let u2 = rng.f64();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let secs = median.as_secs_f64() * (self.config.latency_spread * z).exp() * self.config.latency_scale;
        Duration::try_from_secs_f64(secs.min(3600.0)).unwrap_or(Duration::ZERO)
    }

    fn range(rng: &mut fastrand::Rng, (lo, hi): (u64, u64)) -> u64 {
        rng.u64(lo..=hi.max(lo))
    }

    /// Plan one attempt.
    /// One attempt of a call to `model`, answered the way `provider` answers
    /// (its finish reasons; Anthropic's cache writes, 5-minute and 1-hour).
    pub fn attempt(
        &self,
        rng: &mut fastrand::Rng,
        input: &SimInput,
        provider: &str,
        model: &str,
    ) -> SimOutcome {
        let c = &self.config;
        let (median, ttft_median) = c
            .model_latency
            .get(model)
            .copied()
            .unwrap_or((c.latency_median, c.ttft_median));
        let latency = self.lognormal(rng, median);
        let ttft = self.lognormal(rng, ttft_median).min(latency);
        let roll = rng.f64();
        if roll < c.rate_limit_rate {
            let mut e = AttemptError::new(FailureKind::Api, ErrorClass::RateLimit, "simulated rate limit");
            e.status = Some(429);
            e.provider_code = Some("rate_limit_exceeded".into());
            e.retry_after = Some(
                Duration::try_from_secs_f64(c.retry_after.as_secs_f64() * c.latency_scale)
                    .unwrap_or(Duration::from_secs(3600)),
            );
            return SimOutcome::Fail(ttft, e);
        }
        if roll < c.rate_limit_rate + c.timeout_rate {
            return SimOutcome::Fail(latency, AttemptError::timeout(latency));
        }
        if roll < c.rate_limit_rate + c.timeout_rate + c.server_error_rate {
            let mut e = AttemptError::new(
                FailureKind::Api,
                ErrorClass::ServerError,
                "simulated server error",
            );
            e.status = Some(if rng.bool() { 500 } else { 503 });
            e.provider_code = Some("server_error".into());
            return SimOutcome::Fail(ttft, e);
        }

        let input_tokens = match c.input_tokens {
            Some(r) => Self::range(rng, r),
            None => (input.prompt_chars / 4).max(1).saturating_add(8),
        };
        let mut output_tokens = Self::range(rng, c.output_tokens).max(1);
        if let Some(m) = input.max_tokens {
            output_tokens = output_tokens.min(u64::from(m).max(1));
        }
        let cached_tokens = if rng.f64() < c.cache_hit_rate {
            u64::try_from(u128::from(input_tokens) * u128::from(rng.u64(50..=90)) / 100)
                .unwrap_or(input_tokens)
        } else {
            0
        };
        let tool_call = match &input.tool {
            Some(name) if rng.f64() < c.tool_call_rate => Some(ToolCall {
                id: format!("call_sim_{:016x}", rng.u64(..)),
                name: name.clone(),
                arguments: "{}".into(),
            }),
            _ => None,
        };
        let mut deltas = VecDeque::new();
        let mut text = String::new();
        if tool_call.is_none() {
            let n = output_tokens as usize;
            let rest = latency.saturating_sub(ttft);
            // The first piece at TTFT, the last at the full latency.
            let gap = rest / u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX).max(1);
            for i in 0..n {
                let mut word = String::new();
                if i > 0 {
                    word.push(' ');
                }
                word.push_str(WORDS[rng.usize(..WORDS.len())]);
                if i + 1 == n {
                    word.push('.');
                }
                text.push_str(&word);
                deltas.push_back((if i == 0 { ttft } else { gap }, word));
            }
        } else {
            deltas.push_back((latency, String::new()));
        }
        let anthropic = matches!(provider, "anthropic" | "bedrock");
        let truncated = input.max_tokens.is_some_and(|m| u64::from(m) == output_tokens);
        let finish_reason = match (provider, tool_call.is_some(), truncated) {
            ("anthropic" | "bedrock", true, _) => "tool_use",
            ("anthropic" | "bedrock", false, true) => "max_tokens",
            ("anthropic" | "bedrock", false, false) => "end_turn",
            ("gemini", _, true) => "MAX_TOKENS",
            ("gemini", _, false) => "STOP",
            (_, true, _) => "tool_calls",
            (_, false, true) => "length",
            (_, false, false) => "stop",
        };
        // Anthropic (and Claude on Bedrock) report prompt-cache writes: on a
        // miss, some calls write most of the prompt to the cache, a third of
        // them for an hour.
        let (cache_write_tokens, cache_write_1h_tokens) = if anthropic {
            if cached_tokens == 0 && rng.f64() < c.cache_hit_rate {
                let w = input_tokens.saturating_mul(rng.u64(60..=90)) / 100;
                (Some(w), Some(if rng.u64(0..3) == 0 { w } else { 0 }))
            } else {
                (Some(0), None)
            }
        } else {
            (None, None)
        };
        // Reasoning models spend part of their output thinking.
        let reasoning_tokens =
            is_reasoning_model(model).then(|| output_tokens.saturating_mul(rng.u64(20..=60)) / 100);
        let completion = Completion {
            text,
            tool_calls: tool_call.into_iter().collect(),
            finish_reason: Some(finish_reason.into()),
            usage: Usage {
                input_tokens,
                output_tokens,
                cached_tokens,
                cache_write_tokens,
                cache_write_1h_tokens,
                reasoning_tokens,
                web_search_requests: None,
            },
            response_model: Some(model.to_string()),
        };
        SimOutcome::Answer(deltas, completion)
    }
}

/// Whether a model reasons before answering (o-series, GPT-5, Opus, Grok 4
/// reasoning), so that its simulated answers report reasoning tokens.
fn is_reasoning_model(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    (m.starts_with('o') && m.chars().nth(1).is_some_and(|c| c.is_ascii_digit()))
        || m.starts_with("gpt-5")
        || m.contains("opus")
        || (m.starts_with("grok-4") && !m.contains("non-reasoning"))
        || m.starts_with("gemini-2.5")
        || m.starts_with("gemini-3")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plan(sim: &Sim) -> (Duration, u64, String) {
        let mut rng = sim.call_rng();
        match sim.attempt(
            &mut rng,
            &SimInput::new(&Request::prompt("hello there")),
            "openai",
            "gpt-4o",
        ) {
            SimOutcome::Answer(d, c) => (d.iter().map(|x| x.0).sum(), c.usage.output_tokens, c.text),
            SimOutcome::Fail(d, e) => (d, 0, e.message),
        }
    }

    #[test]
    fn deterministic_under_a_seed() {
        let a = Sim::new(SimConfig::default().seed(7));
        let b = Sim::new(SimConfig::default().seed(7));
        let c = Sim::new(SimConfig::default().seed(8));
        let ra: Vec<_> = (0..20).map(|_| plan(&a)).collect();
        let rb: Vec<_> = (0..20).map(|_| plan(&b)).collect();
        let rc: Vec<_> = (0..20).map(|_| plan(&c)).collect();
        assert_eq!(ra, rb);
        assert_ne!(ra, rc);
        assert_ne!(ra[0], ra[1], "calls differ from each other");
    }

    #[test]
    fn latency_is_lognormal_around_the_median_and_scalable() {
        let sim = Sim::new(
            SimConfig::default()
                .seed(1)
                .latency(Duration::from_millis(500), 0.5),
        );
        let mut rng = fastrand::Rng::with_seed(3);
        let mut v: Vec<f64> = (0..4001)
            .map(|_| sim.lognormal(&mut rng, Duration::from_millis(500)).as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        let median = v[2000];
        assert!((0.45..0.55).contains(&median), "median {median}");
        assert!(v[3900] > 0.9, "right tail");
        let zero = Sim::new(SimConfig::instant().seed(1));
        assert_eq!(plan(&zero).0, Duration::ZERO);
    }

    #[test]
    fn per_model_latency() {
        let sim = Sim::new(
            SimConfig::default()
                .seed(1)
                .latency(Duration::from_millis(800), 0.0)
                .model_latency("fast", Duration::from_millis(100), Duration::from_millis(10)),
        );
        let total = |model: &str| {
            let mut rng = sim.call_rng();
            match sim.attempt(&mut rng, &SimInput::new(&Request::prompt("x")), "openai", model) {
                SimOutcome::Answer(d, _) => d.iter().map(|x| x.0).sum::<Duration>(),
                SimOutcome::Fail(..) => unreachable!(),
            }
        };
        assert!((total("fast").as_secs_f64() - 0.1).abs() < 0.01);
        assert!((total("slow").as_secs_f64() - 0.8).abs() < 0.01);
    }

    #[test]
    fn error_rates_and_token_ranges() {
        let sim = Sim::new(
            SimConfig::instant()
                .seed(5)
                .rate_limit_rate(0.5)
                .output_tokens(10, 10),
        );
        let mut fails = 0;
        for _ in 0..1000 {
            let mut rng = sim.call_rng();
            match sim.attempt(&mut rng, &SimInput::new(&Request::prompt("x")), "openai", "m") {
                SimOutcome::Fail(_, e) => {
                    assert_eq!(e.class, ErrorClass::RateLimit);
                    assert!(e.retryable);
                    fails += 1;
                }
                SimOutcome::Answer(d, c) => {
                    assert_eq!(c.usage.output_tokens, 10);
                    assert_eq!(d.len(), 10);
                }
            }
        }
        assert!((400..600).contains(&fails), "{fails}");
    }

    #[test]
    fn answers_like_the_provider_it_stands_for() {
        let sim = Sim::new(SimConfig::instant().cache_hit_rate(0.5));
        let mut rng = fastrand::Rng::with_seed(3);
        let input = SimInput::new(&Request::prompt("hello there"));
        let (mut writes, mut writes_1h, mut reasons) = (0, 0, std::collections::BTreeSet::new());
        for _ in 0..200 {
            if let SimOutcome::Answer(_, c) = sim.attempt(&mut rng, &input, "anthropic", "claude-opus-4-7") {
                reasons.insert(c.finish_reason.unwrap());
                let w = c.usage.cache_write_tokens.unwrap();
                assert!(c.usage.cached_tokens + w <= c.usage.input_tokens);
                assert!(c.usage.cache_write_1h_tokens.unwrap_or(0) <= w);
                writes += u64::from(w > 0);
                writes_1h += u64::from(c.usage.cache_write_1h_tokens.unwrap_or(0) > 0);
                assert!(c.usage.reasoning_tokens.unwrap() <= c.usage.output_tokens);
            }
        }
        assert_eq!(
            reasons.into_iter().collect::<Vec<_>>(),
            vec!["end_turn".to_string()]
        );
        assert!(
            writes > 10 && writes_1h > 0 && writes_1h < writes,
            "{writes} {writes_1h}"
        );
        match sim.attempt(&mut rng, &input, "openai", "gpt-4o-mini") {
            SimOutcome::Answer(_, c) => {
                assert_eq!(c.finish_reason.as_deref(), Some("stop"));
                assert_eq!(
                    (c.usage.cache_write_tokens, c.usage.reasoning_tokens),
                    (None, None)
                );
            }
            SimOutcome::Fail(..) => panic!("no errors configured"),
        }
    }
}
