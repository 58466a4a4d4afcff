//! Non-streaming response bodies and error bodies of the OpenAI and
//! Anthropic dialects: any bytes give a completion or an error, never a
//! panic; error messages stay short.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steer::__fuzz::{parse_body, parse_error_body, Dialect};

fuzz_target!(|data: &[u8]| {
    for d in [Dialect::OpenAi, Dialect::Anthropic] {
        match parse_body(d, data) {
            Ok(_text) => {}
            Err(msg) => {
                // Provider messages are cut to 300 bytes (+ an ellipsis);
                // JSON syntax errors are short by construction.
                assert!(msg.len() <= 1024, "{d:?}: error message of {} bytes", msg.len());
            }
        }
    }
    let _ = parse_error_body(data);
});
