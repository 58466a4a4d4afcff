use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::record::AgentMetrics;
use crate::sink::{MetricsSink, SinkError};

/// Appends one JSON object per line to a file. Each batch is one write;
/// `flush()` (and `close()`) `fsync`s the file so what was flushed survives
/// a power loss.
pub struct JsonLinesSink {
    name: String,
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink").field("path", &self.path).finish()
    }
}

impl JsonLinesSink {
    /// Append to `path` (created when missing; opened on first write).
    pub fn new(path: impl AsRef<Path>) -> Self {
        JsonLinesSink {
            name: "jsonl".into(),
            path: path.as_ref().to_path_buf(),
            file: Mutex::new(None),
        }
    }

    /// Give the sink another name (to have two of them).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> SinkError {
        SinkError::retryable(format!("{what} {}: {e}", self.path.display())).with_source(e)
    }
}

#[async_trait]
impl MetricsSink for JsonLinesSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(metrics)).await
    }

    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        let mut buf = Vec::with_capacity(batch.len() * 512);
        let mut bad = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            let start = buf.len();
            // JSON has no NaN or Infinity (serde_json would write `null`, which
            // does not read back as the record): reject such a record alone.
            if !finite(m) || serde_json::to_writer(&mut buf, m).is_err() {
                buf.truncate(start);
                bad.push(i);
                continue;
            }
            buf.push(b'\n');
        }
        let mut guard = self.file.lock().await;
        if guard.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .map_err(|e| self.io_error("cannot open", e))?;
            *guard = Some(f);
        }
        if let Some(f) = guard.as_mut() {
            if let Err(e) = f.write_all(&buf).await {
                // The file is in an unknown state: reopen on the next attempt.
                *guard = None;
                return Err(self.io_error("cannot write", e));
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(SinkError::permanent("NaN or infinite number: not representable in JSON").with_records(bad))
        }
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let mut guard = self.file.lock().await;
        if let Some(f) = guard.as_mut() {
            f.flush().await.map_err(|e| self.io_error("cannot flush", e))?;
            f.sync_data()
                .await
                .map_err(|e| self.io_error("cannot fsync", e))?;
        }
        Ok(())
    }
}

/// Whether every float of the record is finite (representable in JSON).
fn finite(m: &AgentMetrics) -> bool {
    m.latency_ms.is_finite()
        && m.sample_weight.is_finite()
        && m.ttft_ms.is_none_or(f64::is_finite)
        && m.cost_usd.is_none_or(f64::is_finite)
}
