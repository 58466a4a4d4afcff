//! Prices in USD per 1 million tokens, and the cost of a call.
//!
//! The built-in table ([`PriceTable::builtin`]) ships with the crate
//! (`src/prices.toml`). Names are matched exactly (aliases included); a name
//! with a dated suffix (`-2024-08-06`, `-20250929`) that is not in the table
//! is billed as its base name. There is never a prefix match: `gpt-4o-mini`
//! is never billed as `gpt-4o`. An unknown model has no cost (`None`), not 0.
//!
//! Token semantics are normalised before costing (see [`Usage`]):
//! `input_tokens` counts every input token, cache reads and writes included,
//! so one formula serves every provider:
//!
//! ```text
//! cost = (input - cached - cache_write) * input_price
//!      + cached * cached_input_price
//!      + cache_write * cache_write_price
//!      + output * output_price                       (all / 1e6)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::types::Usage;

const BUILTIN: &str = include_str!("prices.toml");

/// Errors loading a price table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PriceError {
    /// The file could not be read.
    #[error("cannot read price file {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML is invalid.
    #[error("invalid TOML price table: {0}")]
    Toml(String),
    /// The JSON is invalid.
    #[error("invalid JSON price table: {0}")]
    Json(String),
    /// A price is negative or not finite.
    #[error("invalid price for model `{0}`: prices must be finite and >= 0")]
    InvalidPrice(String),
}

/// A higher price tier applied to the whole request when its input tokens
/// exceed `threshold` (e.g. Claude Sonnet 4.5 above 200 000 input tokens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongContextPrice {
    /// Input tokens above which this tier applies.
    pub threshold: u64,
    /// USD per 1M uncached input tokens.
    pub input: f64,
    /// USD per 1M output tokens.
    pub output: f64,
    /// USD per 1M cache-read input tokens (default: `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// USD per 1M cache-write input tokens (default: `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

/// The price of one model, USD per 1M tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// The provider serving this model (`openai`, `anthropic`, `xai`, ...), used for routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// USD per 1M uncached input tokens.
    pub input: f64,
    /// USD per 1M output tokens.
    pub output: f64,
    /// USD per 1M input tokens read from the prompt cache (default: `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// USD per 1M input tokens written to the prompt cache (default: `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Long-context tier, where the provider has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context: Option<LongContextPrice>,
    /// Other exact names billed the same (dated snapshots, `-latest`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl ModelPrice {
    /// A price with input and output rates only.
    pub fn new(input: f64, output: f64) -> Self {
        ModelPrice {
            provider: None,
            input,
            output,
            cached_input: None,
            cache_write: None,
            long_context: None,
            aliases: Vec::new(),
        }
    }

    /// The cost in USD of a call with this (normalised) usage.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let (input, output, cached, write) = match &self.long_context {
            Some(lc) if usage.input_tokens > lc.threshold => (
                lc.input,
                lc.output,
                lc.cached_input.unwrap_or(lc.input),
                lc.cache_write.unwrap_or(lc.input),
            ),
            _ => (
                self.input,
                self.output,
                self.cached_input.unwrap_or(self.input),
                self.cache_write.unwrap_or(self.input),
            ),
        };
        let cache_write_tokens = usage.cache_write_tokens.unwrap_or(0);
        let uncached = usage
            .input_tokens
            .saturating_sub(usage.cached_tokens)
            .saturating_sub(cache_write_tokens);
        (uncached as f64 * input
            + usage.cached_tokens as f64 * cached
            + cache_write_tokens as f64 * write
            + usage.output_tokens as f64 * output)
            / 1_000_000.0
    }

    fn validate(&self, name: &str) -> Result<(), PriceError> {
        let mut prices = vec![
            Some(self.input),
            Some(self.output),
            self.cached_input,
            self.cache_write,
        ];
        if let Some(lc) = &self.long_context {
            prices.extend([Some(lc.input), Some(lc.output), lc.cached_input, lc.cache_write]);
        }
        if prices.into_iter().flatten().all(|p| p.is_finite() && p >= 0.0) {
            Ok(())
        } else {
            Err(PriceError::InvalidPrice(name.to_string()))
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct PriceFile {
    #[serde(default)]
    models: BTreeMap<String, ModelPrice>,
}

/// A table of model prices with exact-name and alias lookup.
///
/// ```
/// use steer::pricing::PriceTable;
/// use steer::Usage;
/// let table = PriceTable::builtin();
/// let usage = Usage { input_tokens: 1_000_000, output_tokens: 0, ..Usage::default() };
/// assert_eq!(table.cost("gpt-4o-mini", &usage), Some(0.15));
/// assert_eq!(table.cost("my-private-model", &usage), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    models: BTreeMap<String, Arc<ModelPrice>>,
    index: HashMap<String, Arc<ModelPrice>>,
}

impl PriceTable {
    /// The table shipped with the crate.
    pub fn builtin() -> Self {
        static TABLE: std::sync::OnceLock<PriceTable> = std::sync::OnceLock::new();
        TABLE
            .get_or_init(|| {
                // The built-in file is tested; an error here is a packaging
                // bug, so fall back to an empty table rather than panic.
                Self::from_toml_str(BUILTIN).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "built-in price table is invalid");
                    Self::default()
                })
            })
            .clone()
    }

    /// An empty table.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parse a TOML table (`[models."name"] input = .. output = ..`).
    pub fn from_toml_str(s: &str) -> Result<Self, PriceError> {
        let file: PriceFile = toml::from_str(s).map_err(|e| PriceError::Toml(e.to_string()))?;
        Self::from_file(file)
    }

    /// Parse a JSON table (`{"models": {"name": {"input": .., "output": ..}}}`).
    pub fn from_json_str(s: &str) -> Result<Self, PriceError> {
        let file: PriceFile = serde_json::from_str(s).map_err(|e| PriceError::Json(e.to_string()))?;
        Self::from_file(file)
    }

    /// Load a table from a `.json` file or (any other extension) a TOML file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, PriceError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PriceError::Io {
            path: path.display().to_string(),
            source,
        })?;
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            Self::from_json_str(&text)
        } else {
            Self::from_toml_str(&text)
        }
    }

    fn from_file(file: PriceFile) -> Result<Self, PriceError> {
        let mut t = Self::default();
        for (name, price) in file.models {
            price.validate(&name)?;
            t.insert(name, price);
        }
        Ok(t)
    }

    /// Add or replace one model (its aliases included).
    pub fn insert(&mut self, name: impl Into<String>, price: ModelPrice) {
        let name = name.into();
        let mut price = price;
        if price.aliases.is_empty() {
            // An override without aliases keeps the replaced entry's aliases.
            if let Some(old) = self.models.get(&name) {
                price.aliases = old.aliases.clone();
            }
        }
        let price = Arc::new(price);
        for alias in &price.aliases {
            self.index.insert(alias.clone(), price.clone());
        }
        self.index.insert(name.clone(), price.clone());
        self.models.insert(name, price);
    }

    /// Add or replace every model of `other` (its entries win).
    pub fn merge(&mut self, other: PriceTable) {
        for (name, price) in other.models {
            self.insert(name, Arc::unwrap_or_clone(price));
        }
    }

    /// Builder-style [`merge`](Self::merge).
    #[must_use]
    pub fn merged(mut self, other: PriceTable) -> Self {
        self.merge(other);
        self
    }

    /// The price of `model`: exact name or alias, else the name without a
    /// dated suffix. Never a prefix match.
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        if let Some(p) = self.index.get(model) {
            return Some(p);
        }
        let base = strip_date_suffix(model)?;
        self.index.get(base).map(|p| &**p)
    }

    /// Whether the model is priced.
    pub fn contains(&self, model: &str) -> bool {
        self.get(model).is_some()
    }

    /// The cost in USD of a call, `None` if the model is not in the table.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.get(model).map(|p| p.cost(usage))
    }

    /// The provider the table names for `model`.
    pub fn provider_of(&self, model: &str) -> Option<&str> {
        self.get(model).and_then(|p| p.provider.as_deref())
    }

    /// Canonical model names (aliases not included), sorted.
    pub fn models(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        self.models.iter().map(|(k, v)| (k.as_str(), &**v))
    }

    /// Number of canonical models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The table as TOML (the format [`from_toml_str`](Self::from_toml_str) reads).
    pub fn to_toml(&self) -> String {
        let file = PriceFile {
            models: self
                .models
                .iter()
                .map(|(k, v)| (k.clone(), (**v).clone()))
                .collect(),
        };
        toml::to_string(&file).unwrap_or_default()
    }
}

/// `name` without a trailing `-YYYY-MM-DD` or `-YYYYMMDD`, if it has one.
pub fn strip_date_suffix(name: &str) -> Option<&str> {
    let b = name.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    // -YYYY-MM-DD
    if b.len() > 11 {
        let t = &b[b.len() - 11..];
        if t[0] == b'-'
            && digits(&t[1..5])
            && t[5] == b'-'
            && digits(&t[6..8])
            && t[8] == b'-'
            && digits(&t[9..11])
        {
            return Some(&name[..name.len() - 11]);
        }
    }
    // -YYYYMMDD
    if b.len() > 9 {
        let t = &b[b.len() - 9..];
        if t[0] == b'-' && digits(&t[1..9]) && (t[1] == b'1' || t[1] == b'2') {
            return Some(&name[..name.len() - 9]);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn usage(input: u64, output: u64, cached: u64, write: Option<u64>) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_tokens: cached,
            cache_write_tokens: write,
            reasoning_tokens: None,
        }
    }

    #[test]
    fn builtin_table_parses_and_has_the_current_models() {
        let t = PriceTable::builtin();
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "o1",
            "o3",
            "o3-mini",
            "o4-mini",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5-nano",
            "claude-opus-4-1",
            "claude-opus-4",
            "claude-sonnet-4-5",
            "claude-sonnet-4",
            "claude-3-7-sonnet",
            "claude-haiku-4-5",
            "claude-3-5-haiku",
            "grok-4",
            "grok-3",
            "grok-3-mini",
            "grok-code-fast-1",
        ] {
            assert!(t.contains(m), "{m} missing");
        }
        assert!(t.len() >= 30);
        assert_eq!(t.provider_of("claude-sonnet-4-5-20250929"), Some("anthropic"));
        assert_eq!(t.provider_of("grok-4-0709"), Some("xai"));
        // Round trip through TOML.
        let back = PriceTable::from_toml_str(&t.to_toml()).unwrap();
        assert_eq!(back.len(), t.len());
    }

    #[test]
    fn never_a_prefix_match() {
        let t = PriceTable::builtin();
        let u = usage(1_000_000, 0, 0, None);
        assert!(close(t.cost("gpt-4o-mini", &u).unwrap(), 0.15));
        assert!(close(t.cost("gpt-4o", &u).unwrap(), 2.50));
        assert_eq!(t.cost("gpt-4o-mini-foo", &u), None);
        assert_eq!(t.cost("gpt-4", &u).map(|c| c > 29.0), Some(true));
        assert_eq!(t.cost("gpt-4x", &u), None);
        assert_eq!(t.cost("gpt", &u), None);
        assert_eq!(t.cost("claude", &u), None);
    }

    #[test]
    fn dated_suffixes_normalise_only_when_not_listed() {
        let t = PriceTable::builtin();
        let u = usage(1_000_000, 0, 0, None);
        // Listed dated alias.
        assert!(close(t.cost("gpt-4o-2024-08-06", &u).unwrap(), 2.50));
        // Listed dated snapshot with its own (older, higher) price.
        assert!(close(t.cost("gpt-4o-2024-05-13", &u).unwrap(), 5.00));
        // Unlisted dated names fall back to the base.
        assert!(close(t.cost("gpt-4o-mini-2030-01-01", &u).unwrap(), 0.15));
        // (100k tokens: below the 200k long-context tier.)
        assert!(close(
            t.cost("claude-sonnet-4-5-20991231", &usage(100_000, 0, 0, None))
                .unwrap(),
            0.30
        ));
        assert_eq!(strip_date_suffix("gpt-4o"), None);
        assert_eq!(strip_date_suffix("o1-2024-12-17"), Some("o1"));
        assert_eq!(
            strip_date_suffix("claude-3-5-haiku-20241022"),
            Some("claude-3-5-haiku")
        );
        assert_eq!(strip_date_suffix("-20241022"), None);
    }

    // Hand-computed costs.

    #[test]
    fn openai_cost_uncached() {
        // gpt-4o: 2.50 in, 10.00 out. 1000 in, 500 out:
        // 1000*2.5/1e6 + 500*10/1e6 = 0.0025 + 0.005 = 0.0075
        let t = PriceTable::builtin();
        assert!(close(
            t.cost("gpt-4o", &usage(1000, 500, 0, None)).unwrap(),
            0.0075
        ));
    }

    #[test]
    fn openai_cost_cached_prompt_tokens_include_cached() {
        // gpt-4o-mini: 0.15 in, 0.075 cached, 0.60 out.
        // prompt_tokens 10_000 of which 8_000 cached, 1_000 out:
        // 2000*0.15/1e6 + 8000*0.075/1e6 + 1000*0.6/1e6
        // = 0.0003 + 0.0006 + 0.0006 = 0.0015
        let t = PriceTable::builtin();
        assert!(close(
            t.cost("gpt-4o-mini", &usage(10_000, 1_000, 8_000, None)).unwrap(),
            0.0015
        ));
    }

    #[test]
    fn anthropic_cost_uncached() {
        // claude-sonnet-4-5: 3 in, 15 out. 2000 in, 1000 out:
        // 0.006 + 0.015 = 0.021
        let t = PriceTable::builtin();
        assert!(close(
            t.cost("claude-sonnet-4-5", &usage(2000, 1000, 0, Some(0)))
                .unwrap(),
            0.021
        ));
    }

    #[test]
    fn anthropic_cost_with_cache_reads_and_writes() {
        // Provider usage: input_tokens 100 (excludes cache), cache_read 5000,
        // cache_creation 2000, output 300. Normalised input = 7100.
        // claude-sonnet-4-5: 100*3 + 5000*0.30 + 2000*3.75 + 300*15 (per 1e6)
        // = 300 + 1500 + 7500 + 4500 = 13800 / 1e6 = 0.0138
        let t = PriceTable::builtin();
        let u = usage(7100, 300, 5000, Some(2000));
        assert!(close(t.cost("claude-sonnet-4-5-20250929", &u).unwrap(), 0.0138));
    }

    #[test]
    fn xai_cost_cached() {
        // grok-4: 3 in, 0.75 cached, 15 out. 4000 prompt (1000 cached), 200 out:
        // 3000*3 + 1000*0.75 + 200*15 = 9000 + 750 + 3000 = 12750 / 1e6
        let t = PriceTable::builtin();
        assert!(close(
            t.cost("grok-4", &usage(4000, 200, 1000, None)).unwrap(),
            0.01275
        ));
    }

    #[test]
    fn long_context_tier_applies_above_threshold() {
        // claude-sonnet-4: 250k input > 200k: 250_000*6/1e6 + 1000*22.5/1e6 = 1.5 + 0.0225
        let t = PriceTable::builtin();
        assert!(close(
            t.cost("claude-sonnet-4", &usage(250_000, 1000, 0, None)).unwrap(),
            1.5225
        ));
        assert!(close(
            t.cost("claude-sonnet-4", &usage(200_000, 0, 0, None)).unwrap(),
            0.6
        ));
    }

    #[test]
    fn override_and_extend_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("prices.toml");
        std::fs::write(
            &toml_path,
            "[models.\"gpt-4o\"]\nprovider = \"openai\"\ninput = 1.0\noutput = 2.0\n\n[models.\"my-llama\"]\ninput = 0.1\noutput = 0.2\n",
        )
        .unwrap();
        let json_path = dir.path().join("prices.json");
        std::fs::write(&json_path, r#"{"models":{"house-model":{"provider":"ollama","input":0.5,"output":0.5,"aliases":["house"]}}}"#).unwrap();
        let mut t = PriceTable::builtin();
        t.merge(PriceTable::from_path(&toml_path).unwrap());
        t.merge(PriceTable::from_path(&json_path).unwrap());
        let u = usage(1_000_000, 0, 0, None);
        assert!(close(t.cost("gpt-4o", &u).unwrap(), 1.0));
        assert!(
            close(t.cost("gpt-4o-2024-08-06", &u).unwrap(), 1.0),
            "aliases follow the override"
        );
        assert!(close(t.cost("my-llama", &u).unwrap(), 0.1));
        assert!(close(t.cost("house", &u).unwrap(), 0.5));
        assert_eq!(t.provider_of("house-model"), Some("ollama"));
        assert!(close(t.cost("gpt-4o-mini", &u).unwrap(), 0.15));
    }

    #[test]
    fn bad_files_are_typed_errors() {
        assert!(matches!(
            PriceTable::from_toml_str("[models.x]\ninput = -1.0\noutput = 1.0"),
            Err(PriceError::InvalidPrice(_))
        ));
        assert!(matches!(
            PriceTable::from_toml_str("models = 3"),
            Err(PriceError::Toml(_))
        ));
        assert!(matches!(PriceTable::from_json_str("{"), Err(PriceError::Json(_))));
        assert!(matches!(
            PriceTable::from_path("/nonexistent/prices.toml"),
            Err(PriceError::Io { .. })
        ));
    }
}
