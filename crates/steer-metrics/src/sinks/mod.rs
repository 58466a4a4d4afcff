//! Built-in light sinks: in-memory, `tracing` log and JSON-lines file.

mod jsonl;
mod log;
mod memory;

pub use jsonl::JsonLinesSink;
pub use log::LogSink;
pub use memory::{MemorySink, MemorySinkBuilder};
