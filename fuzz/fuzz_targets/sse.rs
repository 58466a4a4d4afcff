//! The server-sent events parser: never panics, and the events do not depend
//! on how the byte stream is cut into chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steer::sse::{SseEvent, SseParser};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the chunk sizes, the rest is the stream.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };

    let mut whole = Vec::new();
    let mut p = SseParser::default();
    p.feed(stream, &mut whole)
        .expect("no line exceeds the default limit");
    let whole_partial = p.has_partial();

    // Same bytes, in chunks of 1..=16 bytes chosen by the seed (also splitting
    // CRLF pairs and multi-byte characters).
    let mut split: Vec<SseEvent> = Vec::new();
    let mut p = SseParser::default();
    let mut rest = stream;
    let mut s = u32::from(seed) | 1;
    while !rest.is_empty() {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = ((s >> 16) as usize % 16 + 1).min(rest.len());
        p.feed(&rest[..n], &mut split)
            .expect("no line exceeds the default limit");
        rest = &rest[n..];
    }
    // Byte by byte for short inputs.
    if stream.len() <= 256 {
        let mut bytes = Vec::new();
        let mut p = SseParser::default();
        for b in stream {
            p.feed(std::slice::from_ref(b), &mut bytes).expect("within limit");
        }
        assert_eq!(whole, bytes, "byte-by-byte feeding changed the events");
    }
    assert_eq!(whole, split, "chunking changed the events");
    assert_eq!(
        whole_partial,
        p.has_partial(),
        "chunking changed the partial state"
    );

    for ev in &whole {
        // A data field never carries the line terminators of the stream.
        assert!(!ev.data.contains('\r'), "CR in data: {ev:?}");
        if let Some(e) = &ev.event {
            assert!(!e.contains(['\r', '\n']), "line break in event name: {ev:?}");
        }
        if let Some(id) = &ev.id {
            assert!(!id.contains(['\r', '\n']), "line break in id: {ev:?}");
        }
    }

    // A small line limit: an error, never a panic or unbounded growth.
    let limit = usize::from(seed % 64) + 1;
    let mut p = SseParser::new(limit);
    let mut out = Vec::new();
    for chunk in stream.chunks(7) {
        if p.feed(chunk, &mut out).is_err() {
            break;
        }
    }
});
