//! The disk spool contract: a durable, ordered, bounded buffer between a
//! sink's memory queue and its backend.
//!
//! A sink added with [`MetricsCollectorBuilder::sink_with_spool`](crate::MetricsCollectorBuilder::sink_with_spool)
//! is *write-ahead*: its records leave the memory queue for the spool as
//! soon as the spool can take them, and are delivered from the spool head,
//! in order, then acknowledged. An outage grows the spool (up to its cap),
//! not the memory queue; a crash or restart leaves the spool's content to
//! be delivered first at the next start.
//!
//! The collector calls these methods from blocking threads
//! (`tokio::task::spawn_blocking`), never from `record()`.
//! The `steer-spool` crate implements the trait on SQLite.

use std::fmt;

use crate::record::AgentMetrics;

/// An error from a [`Spool`] (I/O, corruption, a record that does not decode).
#[derive(Debug, Clone, thiserror::Error)]
#[error("spool: {message}")]
pub struct SpoolError {
    message: String,
}

impl SpoolError {
    /// An error with this message (must not contain secrets).
    pub fn new(message: impl fmt::Display) -> Self {
        SpoolError {
            message: message.to_string(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A durable FIFO of records with sequence numbers.
///
/// Contract, relied on by the collector:
///
/// * [`append`](Spool::append) persists a batch atomically (all or none)
///   according to the spool's sync policy and assigns increasing sequence
///   numbers in batch order. When the spool is at its cap it drops records
///   (the oldest *unpinned* ones, or the batch's newest ones, by policy)
///   and returns how many it dropped, so the collector can count them.
/// * [`peek`](Spool::peek) returns up to `max` records from the head, in
///   sequence order, and *pins* them: a drop-oldest eviction never removes
///   a pinned record (it is being delivered and will be counted as
///   delivered or failed). A later `peek` returns the same head until it is
///   acknowledged.
/// * [`ack`](Spool::ack) removes every record with a sequence number `<=
///   up_to_seq` and unpins them.
/// * Content survives the process: a spool reopened on the same storage
///   holds what was appended and not acknowledged (pins do not survive).
pub trait Spool: Send + Sync + 'static {
    /// Persist a batch; returns the number of records dropped to respect
    /// the cap (from this batch or older unpinned ones).
    fn append(&self, batch: &[AgentMetrics]) -> Result<u64, SpoolError>;
    /// Up to `max` records from the head, in order, with their sequence numbers.
    fn peek(&self, max: usize) -> Result<Vec<(u64, AgentMetrics)>, SpoolError>;
    /// Remove (and unpin) every record with a sequence number `<= up_to_seq`.
    fn ack(&self, up_to_seq: u64) -> Result<(), SpoolError>;
    /// Records held now.
    fn len(&self) -> Result<u64, SpoolError>;
    /// Whether the spool holds no record.
    fn is_empty(&self) -> Result<bool, SpoolError> {
        Ok(self.len()? == 0)
    }
    /// Payload bytes held now (what the size cap counts).
    fn bytes(&self) -> Result<u64, SpoolError>;
    /// Bind the spool to the sink it feeds (`sink` is the sink's name,
    /// e.g. the CLI's redacted sink spec). The collector calls this once,
    /// at build, before reading anything. A spool that still holds records
    /// of *another* sink must refuse (an error here fails the build), so
    /// that one sink's records are never delivered to another; an empty
    /// spool may be rebound. The default accepts any sink (a spool that
    /// does not persist an identity).
    fn bind_sink(&self, sink: &str) -> Result<(), SpoolError> {
        let _ = sink;
        Ok(())
    }
}
