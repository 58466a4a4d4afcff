//! From a provider's answer to the measured fields of a record.
//!
//! One function fills an [`AgentMetrics`] from a parsed answer
//! ([`Completion`]): tokens (cached, cache writes by lifetime, reasoning),
//! finish reason, tools, the model that answered, and the cost. The client
//! uses it for every call; a gateway that relays provider responses uses the
//! same one, so both record the same truth.

use std::collections::HashSet;
use std::sync::Mutex;

use steer_metrics::AgentMetrics;

use crate::pricing::{ModelPrice, PriceTable};
use crate::providers::Completion;
use crate::types::Usage;

/// Fill `m` from `c`: usage, cost, finish reason, tools and response model.
///
/// `m.provider` and `m.model` (the requested model) must already be set; the
/// price is looked up for the requested model first, then the model the
/// provider reported, and only where the table does not name another
/// provider for it.
pub fn apply_completion(m: &mut AgentMetrics, c: &Completion, prices: &PriceTable) {
    apply_usage(m, &c.usage, c.response_model.as_deref(), prices);
    if let Some(model) = &c.response_model {
        m.response_model = Some(model.clone());
    }
    if c.finish_reason.is_some() {
        m.finish_reason.clone_from(&c.finish_reason);
    }
    m.tools_invoked = u32::try_from(c.tool_calls.len()).unwrap_or(u32::MAX);
    for t in &c.tool_calls {
        if !m.tools_used.contains(&t.name) {
            m.tools_used.push(t.name.clone());
        }
    }
}

/// Fill the token fields and the cost of `m` from `usage`.
pub fn apply_usage(m: &mut AgentMetrics, usage: &Usage, response_model: Option<&str>, prices: &PriceTable) {
    m.input_tokens = usage.input_tokens;
    m.output_tokens = usage.output_tokens;
    m.cached_tokens = usage.cached_tokens;
    m.cache_write_tokens = usage.cache_write_tokens;
    m.cache_write_1h_tokens = usage.cache_write_1h_tokens;
    m.reasoning_tokens = usage.reasoning_tokens;
    // An answer without usage (a stream without a usage event) has an
    // unknown cost, not a cost of 0.
    let reported = usage.input_tokens > 0 || usage.output_tokens > 0;
    let price = price_for(prices, &m.provider, &m.model, response_model);
    m.cost_usd = price.filter(|_| reported).map(|p| p.cost(usage));
    if price.is_none() {
        warn_unpriced(&m.provider, response_model.unwrap_or(&m.model));
    }
}

/// The price that applies to a call of `model` (as requested) on `provider`
/// that the provider answered as `response_model`.
///
/// For each name (requested, then reported) the provider's own entry
/// (`azure/gpt-4o`) comes first, then the bare name if the table names no
/// other provider for it. Azure OpenAI falls back to OpenAI's prices for a
/// model the table does not list under `azure/`.
pub fn price_for<'a>(
    prices: &'a PriceTable,
    provider: &str,
    model: &str,
    response_model: Option<&str>,
) -> Option<&'a ModelPrice> {
    let providers: &[&str] = match provider {
        "azure" => &["azure", "openai"],
        _ => std::slice::from_ref(&provider),
    };
    for name in std::iter::once(model).chain(response_model) {
        for p in providers {
            if let Some(price) = prices.get(&format!("{p}/{name}")) {
                return Some(price);
            }
            if let Some(price) = prices
                .get(name)
                .filter(|x| x.provider.as_deref().is_none_or(|pp| pp == *p))
            {
                return Some(price);
            }
        }
    }
    None
}

/// Log once per model (up to a bound) that it has no price.
fn warn_unpriced(provider: &str, model: &str) {
    const MAX_REMEMBERED: usize = 1024;
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let Ok(mut seen) = SEEN.lock() else { return };
    let seen = seen.get_or_insert_with(HashSet::new);
    if seen.len() >= MAX_REMEMBERED || seen.contains(model) {
        return;
    }
    seen.insert(model.to_string());
    tracing::warn!(
        provider,
        model,
        "no price for this model: its calls are recorded with cost unknown (see `steer prices`, or pass --prices FILE)"
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::types::ToolCall;

    #[test]
    fn fills_every_measured_field() {
        let mut m = AgentMetrics::new("anthropic", "claude-sonnet-4-5");
        let c = Completion {
            text: String::new(),
            tool_calls: vec![
                ToolCall {
                    id: "a".into(),
                    name: "search".into(),
                    arguments: "{}".into(),
                },
                ToolCall {
                    id: "b".into(),
                    name: "search".into(),
                    arguments: "{}".into(),
                },
            ],
            finish_reason: Some("tool_use".into()),
            usage: Usage {
                input_tokens: 1000,
                output_tokens: 50,
                cached_tokens: 0,
                cache_write_tokens: Some(900),
                cache_write_1h_tokens: Some(900),
                reasoning_tokens: Some(20),
                web_search_requests: None,
            },
            response_model: Some("claude-sonnet-4-5-20250929".into()),
        };
        apply_completion(&mut m, &c, &PriceTable::builtin());
        assert_eq!(m.finish_reason.as_deref(), Some("tool_use"));
        assert_eq!(m.tools_used, vec!["search".to_string()]);
        assert_eq!(m.tools_invoked, 2);
        assert_eq!(m.cache_write_1h_tokens, Some(900));
        assert_eq!(m.reasoning_tokens, Some(20));
        // 100 * 3 + 900 * 6 (1-hour writes, 2x input) + 50 * 15, per 1e6.
        let cost = m.cost_usd.unwrap();
        assert!((cost - (300.0 + 5400.0 + 750.0) / 1e6).abs() < 1e-12, "{cost}");
    }

    #[test]
    fn the_table_decides_which_provider_a_price_is_for() {
        let t = PriceTable::builtin();
        assert!(price_for(&t, "openai", "gpt-4o", None).is_some());
        assert!(price_for(&t, "my-proxy", "gpt-4o", None).is_none());
        assert!(price_for(&t, "openai", "nope", Some("gpt-4o-2024-08-06")).is_some());
    }
}
