//! Streaming: bytes -> SSE events -> the OpenAI and Anthropic stream
//! decoders. Never a panic, and a completed stream's text is exactly the
//! concatenation of the deltas handed to the caller.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steer::__fuzz::{decode_stream, Dialect};
use steer::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    let mut events = Vec::new();
    let mut p = SseParser::default();
    if p.feed(data, &mut events).is_err() {
        return;
    }
    for d in [Dialect::OpenAi, Dialect::Anthropic] {
        let (deltas, end) = decode_stream(d, events.clone());
        assert!(deltas.iter().all(|t| !t.is_empty()), "{d:?}: empty delta");
        if let Ok(text) = end {
            assert_eq!(text, deltas.concat(), "{d:?}: final text differs from the deltas");
        }
    }
});
