//! The GenAI attribute set of a record's series, defined once for the OTLP
//! and Prometheus sinks: which attributes a record has, in which order,
//! with which value (folding included), and the series cap that decides
//! when a record is folded.
//!
//! A sink only says how a key and a value are written in its own format
//! (an OTLP attribute or a Prometheus label, and how text is sanitised).

use std::collections::HashMap;
use std::sync::Arc;

use super::{
    attr, finish_reason, folded_finish_reason, folded_series_key, operation_name, provider_name, series_key,
    OTHER,
};
use crate::{AgentMetrics, ErrorClass};

/// A built-in attribute of the GenAI conventions (with `error.type` and
/// `server.address`), named as OTLP and as Prometheus name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GenAiAttr {
    /// `gen_ai.operation.name`.
    OperationName,
    /// `gen_ai.provider.name`.
    ProviderName,
    /// `gen_ai.request.model`.
    RequestModel,
    /// `gen_ai.response.model`.
    ResponseModel,
    /// `gen_ai.response.finish_reasons` (OTLP: a string array of the one
    /// finish reason; Prometheus: the finish reason).
    FinishReasons,
    /// `error.type`.
    ErrorType,
    /// `server.address`.
    ServerAddress,
    /// `gen_ai.token.type` (`input` | `output`; on the token histogram only).
    TokenType,
}

impl GenAiAttr {
    /// The OpenTelemetry attribute key (see [`attr`]).
    pub const fn otel_key(self) -> &'static str {
        match self {
            GenAiAttr::OperationName => attr::OPERATION_NAME,
            GenAiAttr::ProviderName => attr::PROVIDER_NAME,
            GenAiAttr::RequestModel => attr::REQUEST_MODEL,
            GenAiAttr::ResponseModel => attr::RESPONSE_MODEL,
            GenAiAttr::FinishReasons => attr::FINISH_REASONS,
            GenAiAttr::ErrorType => attr::ERROR_TYPE,
            GenAiAttr::ServerAddress => attr::SERVER_ADDRESS,
            GenAiAttr::TokenType => attr::TOKEN_TYPE,
        }
    }

    /// The Prometheus label name: the attribute key with `.` → `_`.
    pub const fn prometheus_label(self) -> &'static str {
        match self {
            GenAiAttr::OperationName => "gen_ai_operation_name",
            GenAiAttr::ProviderName => "gen_ai_provider_name",
            GenAiAttr::RequestModel => "gen_ai_request_model",
            GenAiAttr::ResponseModel => "gen_ai_response_model",
            GenAiAttr::FinishReasons => "gen_ai_response_finish_reasons",
            GenAiAttr::ErrorType => "error_type",
            GenAiAttr::ServerAddress => "server_address",
            GenAiAttr::TokenType => "gen_ai_token_type",
        }
    }
}

/// The name of one attribute of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrName<'k> {
    /// A built-in attribute.
    GenAi(GenAiAttr),
    /// An allow-listed record tag: its position in the allow-list and its key.
    Tag {
        /// Position in the allow-list given to [`for_each_series_attribute`].
        index: usize,
        /// The record tag key.
        key: &'k str,
    },
}

/// The value of one attribute of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrValue<'a> {
    /// A word of a fixed vocabulary (`chat`, [`OTHER`], an error class, a
    /// [known finish reason](super::KNOWN_FINISH_REASONS) of a folded
    /// series): written as is.
    Fixed(&'static str),
    /// Text from the record or the configuration (provider, models, finish
    /// reason, server address, tag values): sanitised the backend's way.
    Text(&'a str),
}

/// Every attribute of the series of `m`, in the order the sinks write
/// them: `gen_ai.operation.name`, `gen_ai.provider.name`,
/// `gen_ai.request.model`, `gen_ai.response.model` (when reported),
/// `gen_ai.response.finish_reasons` (when the record has one),
/// `error.type` (failures), `server.address` (when given), then one call
/// per allow-listed tag key with `None` when the record lacks that tag.
///
/// A `folded` record (beyond the series cap) gets [`OTHER`] for its
/// provider, request and response model and present tag values, and keeps
/// its finish reason only when it is a
/// [known one](super::KNOWN_FINISH_REASONS) (else [`OTHER`]).
pub fn for_each_series_attribute<'a, 'k>(
    m: &'a AgentMetrics,
    folded: bool,
    server_address: Option<&'a str>,
    tag_keys: impl IntoIterator<Item = &'k str>,
    mut f: impl FnMut(AttrName<'k>, Option<AttrValue<'a>>),
) {
    let mut put = |a: GenAiAttr, v: AttrValue<'a>| f(AttrName::GenAi(a), Some(v));
    put(
        GenAiAttr::OperationName,
        AttrValue::Fixed(operation_name(m.method)),
    );
    if folded {
        put(GenAiAttr::ProviderName, AttrValue::Fixed(OTHER));
        put(GenAiAttr::RequestModel, AttrValue::Fixed(OTHER));
        if m.response_model.is_some() {
            put(GenAiAttr::ResponseModel, AttrValue::Fixed(OTHER));
        }
    } else {
        put(
            GenAiAttr::ProviderName,
            AttrValue::Text(provider_name(&m.provider)),
        );
        put(GenAiAttr::RequestModel, AttrValue::Text(&m.model));
        if let Some(r) = &m.response_model {
            put(GenAiAttr::ResponseModel, AttrValue::Text(r));
        }
    }
    if let Some(r) = finish_reason(m) {
        let v = if folded {
            AttrValue::Fixed(folded_finish_reason(r))
        } else {
            AttrValue::Text(r)
        };
        put(GenAiAttr::FinishReasons, v);
    }
    if let Some(c) = m.error_class {
        put(GenAiAttr::ErrorType, AttrValue::Fixed(c.as_str()));
    }
    if let Some(s) = server_address {
        put(GenAiAttr::ServerAddress, AttrValue::Text(s));
    }
    for (index, key) in tag_keys.into_iter().enumerate() {
        let v = m.tags.get(key).map(|v| {
            if folded {
                AttrValue::Fixed(OTHER)
            } else {
                AttrValue::Text(v)
            }
        });
        f(AttrName::Tag { index, key }, v);
    }
}

/// One slot for success and one per error class.
type Slots<T> = [Option<Arc<T>>; 1 + ErrorClass::ALL.len()];

fn slot(class: Option<ErrorClass>) -> usize {
    class.map_or(0, |c| {
        1 + ErrorClass::ALL.iter().position(|x| *x == c).unwrap_or(0)
    })
}

/// The series cap of the OTLP and Prometheus sinks: at most `max_series`
/// distinct (operation, provider, request model, response model, finish
/// reason, allow-listed tag values) combinations ([`series_key`]), each
/// with a slot per error class holding what the sink built for it (its
/// attribute set, its metric handles). The records of further
/// combinations are folded (their series keyed by [`folded_series_key`],
/// bounded by construction): memory is bounded by the cap, folded
/// combinations are not remembered.
#[derive(Debug)]
pub struct SeriesTable<T> {
    max_series: usize,
    key: String,
    series: HashMap<String, Slots<T>>,
    other: HashMap<String, Slots<T>>,
}

impl<T> SeriesTable<T> {
    /// An empty table holding at most `max_series` unfolded series.
    pub fn new(max_series: usize) -> Self {
        SeriesTable {
            max_series,
            key: String::new(),
            series: HashMap::new(),
            other: HashMap::new(),
        }
    }

    /// What was built for the series (and error class) of `m`, built with
    /// `make(folded)` the first time. The flag returned says whether `m`
    /// was folded by the cap.
    pub fn get_or_insert_with(
        &mut self,
        m: &AgentMetrics,
        tag_keys: &[String],
        make: impl FnOnce(bool) -> T,
    ) -> (Arc<T>, bool) {
        series_key(&mut self.key, m, tag_keys);
        let folded = !self.series.contains_key(self.key.as_str()) && self.series.len() >= self.max_series;
        if folded {
            folded_series_key(&mut self.key, m, tag_keys);
        }
        let map = if folded { &mut self.other } else { &mut self.series };
        let slots = map.entry(self.key.clone()).or_default();
        let v = slots[slot(m.error_class)]
            .get_or_insert_with(|| Arc::new(make(folded)))
            .clone();
        (v, folded)
    }

    /// Series kept (not folded).
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is kept yet.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Folded series (bounded by construction).
    pub fn folded_len(&self) -> usize {
        self.other.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn collect(m: &AgentMetrics, folded: bool, keys: &[&str]) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for_each_series_attribute(m, folded, Some("api.x.ai"), keys.iter().copied(), |n, v| {
            let n = match n {
                AttrName::GenAi(a) => a.otel_key().to_string(),
                AttrName::Tag { index, key } => format!("{index}:{key}"),
            };
            let v = v.map(|v| match v {
                AttrValue::Fixed(s) => format!("={s}"),
                AttrValue::Text(s) => s.to_string(),
            });
            out.push((n, v));
        });
        out
    }

    #[test]
    fn the_attribute_set_in_order_plain_and_folded() {
        let mut m = AgentMetrics::new("xai", "grok-4").with_error(ErrorClass::Timeout);
        m.response_model = Some("grok-4-0709".into());
        m.finish_reason = Some("odd".into());
        m.tags.insert("user".into(), "u1".into());
        let s = |n: &str, v: &str| (n.to_string(), Some(v.to_string()));
        assert_eq!(
            collect(&m, false, &["team", "user"]),
            vec![
                s("gen_ai.operation.name", "=chat"),
                s("gen_ai.provider.name", "x_ai"),
                s("gen_ai.request.model", "grok-4"),
                s("gen_ai.response.model", "grok-4-0709"),
                s("gen_ai.response.finish_reasons", "odd"),
                s("error.type", "=timeout"),
                s("server.address", "api.x.ai"),
                ("0:team".into(), None),
                s("1:user", "u1"),
            ]
        );
        assert_eq!(
            collect(&m, true, &["team", "user"]),
            vec![
                s("gen_ai.operation.name", "=chat"),
                s("gen_ai.provider.name", "=other"),
                s("gen_ai.request.model", "=other"),
                s("gen_ai.response.model", "=other"),
                s("gen_ai.response.finish_reasons", "=other"),
                s("error.type", "=timeout"),
                s("server.address", "api.x.ai"),
                ("0:team".into(), None),
                s("1:user", "=other"),
            ]
        );
    }

    #[test]
    fn prometheus_labels_are_the_keys_with_underscores() {
        for (a, k) in [
            GenAiAttr::OperationName,
            GenAiAttr::ProviderName,
            GenAiAttr::RequestModel,
            GenAiAttr::ResponseModel,
            GenAiAttr::FinishReasons,
            GenAiAttr::ErrorType,
            GenAiAttr::ServerAddress,
            GenAiAttr::TokenType,
        ]
        .into_iter()
        .zip(attr::ALL)
        {
            assert_eq!(a.otel_key(), k);
            assert_eq!(a.prometheus_label(), k.replace('.', "_"));
        }
    }

    #[test]
    fn the_table_folds_beyond_the_cap_and_keeps_a_slot_per_error_class() {
        let mut t = SeriesTable::new(2);
        let keys: Vec<String> = Vec::new();
        for i in 0..10 {
            let (_, folded) = t.get_or_insert_with(&AgentMetrics::new("p", format!("m{i}")), &keys, |f| f);
            assert_eq!(folded, i >= 2);
        }
        assert_eq!((t.len(), t.folded_len()), (2, 1));
        let m = AgentMetrics::new("p", "m0");
        let (a, _) = t.get_or_insert_with(&m, &keys, |f| f);
        assert!(
            Arc::ptr_eq(&a, &t.get_or_insert_with(&m, &keys, |f| f).0),
            "built once"
        );
        let (b, folded) = t.get_or_insert_with(&m.clone().with_error(ErrorClass::Timeout), &keys, |f| f);
        assert!(!folded && !*b && !Arc::ptr_eq(&a, &b));
    }
}
