use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::record::AgentMetrics;
use crate::sink::{MetricsSink, SinkError};

/// Appends one JSON object per line to a file.
///
/// * A batch counts as delivered only once the `write` system calls for all
///   of it returned (the data is in the OS, not in a user-space buffer);
///   `flush()` and `close()` `fsync` the file, so what was flushed survives
///   a power loss. A failing fsync fails the flush (and the collector then
///   counts what was written since the last good flush as `failed.flush`).
/// * A write that fails half-way (disk full, `/dev/full`, I/O error) is
///   undone: the file is cut back to where the batch started, so no torn
///   line stays behind, and the batch is retried.
/// * A torn last line left by a crash or a full disk (no final newline) is
///   removed when the file is opened, before anything is appended, so the
///   next record never lands in the middle of a broken one.
/// * [`JsonLinesSink::open`] checks at setup that the file can be created
///   or appended to (a missing directory is an error now, not after
///   retries).
pub struct JsonLinesSink {
    name: String,
    path: PathBuf,
    file: Arc<Mutex<Option<File>>>,
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink").field("path", &self.path).finish()
    }
}

impl JsonLinesSink {
    /// Append to `path` (created when missing; opened, and its torn tail
    /// repaired, on first write). Prefer [`open`](Self::open), which finds
    /// a wrong path at once.
    pub fn new(path: impl AsRef<Path>) -> Self {
        JsonLinesSink {
            name: "jsonl".into(),
            path: path.as_ref().to_path_buf(),
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// Open (or create) `path` for appending now, repairing a torn last
    /// line: errors if the directory is missing, the path is a directory,
    /// or the file cannot be written.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let sink = Self::new(path);
        if let Some(dir) = sink.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("directory {} does not exist", dir.display()),
                ));
            }
        }
        let f = open_repaired(&sink.path)?;
        if let Ok(mut g) = sink.file.lock() {
            *g = Some(f);
        }
        Ok(sink)
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

    /// Run `f` on the open file (opening it first) on a blocking thread.
    async fn with_file<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut File) -> Result<T, (&'static str, std::io::Error)> + Send + 'static,
    ) -> Result<T, SinkError> {
        let file = self.file.clone();
        let path = self.path.clone();
        let io_error = {
            let path = path.clone();
            move |what: &str, e: std::io::Error| {
                SinkError::retryable(format!("{what} {}: {e}", path.display())).with_source(e)
            }
        };
        let res = tokio::task::spawn_blocking(move || {
            let mut guard = file.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                *guard = Some(open_repaired(&path).map_err(|e| ("cannot open", e))?);
            }
            let Some(f) = guard.as_mut() else {
                return Err(("cannot open", std::io::Error::other("file not open")));
            };
            let out = op(f);
            if out.is_err() {
                // The file is in an unknown state: reopen (and repair) next time.
                *guard = None;
            }
            out
        })
        .await;
        match res {
            Ok(Ok(v)) => Ok(v),
            Ok(Err((what, e))) => Err(io_error(what, e)),
            Err(e) => Err(SinkError::retryable(format!("jsonl writer task failed: {e}"))),
        }
    }
}

/// Open `path` for appending; if it is a regular file whose last line is
/// torn (no final newline), cut it back to the last complete line first.
fn open_repaired(path: &Path) -> std::io::Result<File> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    let meta = f.metadata()?;
    if meta.is_dir() {
        return Err(std::io::Error::other("it is a directory"));
    }
    if meta.is_file() && meta.len() > 0 {
        let len = meta.len();
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            let keep = last_newline_end(&mut f, len)?;
            f.set_len(keep)?;
            f.sync_data()?;
            tracing::warn!(path = %path.display(), removed_bytes = len - keep, "jsonl: removed a torn last line (left by a crash or a full disk) before appending");
        }
    }
    Ok(f)
}

/// The offset just after the last `\n` before `len` (0 when there is none).
fn last_newline_end(f: &mut File, len: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Append `buf`; on failure, cut a regular file back to where it was so no
/// partial line remains.
fn append_all(f: &mut File, buf: &[u8]) -> std::io::Result<()> {
    let start = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
    let mut written = 0usize;
    while written < buf.len() {
        match f.write(&buf[written..]) {
            Ok(0) => {
                return Err(undo(
                    f,
                    start,
                    written,
                    std::io::Error::from(std::io::ErrorKind::WriteZero),
                ));
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(undo(f, start, written, e)),
        }
    }
    Ok(())
}

fn undo(f: &mut File, start: Option<u64>, written: usize, e: std::io::Error) -> std::io::Error {
    if let Some(start) = start {
        // Only if nobody else appended meanwhile.
        let now = f.metadata().map(|m| m.len()).unwrap_or(0);
        if written > 0 && now == start + written as u64 {
            if let Err(t) = f.set_len(start) {
                tracing::warn!(error = %t, "jsonl: cannot remove a partly written batch; it will be cut at the next open");
            }
        }
    }
    e
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
        if !buf.is_empty() {
            self.with_file(move |f| append_all(f, &buf).map_err(|e| ("cannot write", e)))
                .await?;
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(SinkError::permanent("NaN or infinite number: not representable in JSON").with_records(bad))
        }
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let open = self.file.lock().map(|g| g.is_some()).unwrap_or(true);
        if !open {
            return Ok(());
        }
        self.with_file(|f| {
            f.flush().map_err(|e| ("cannot flush", e))?;
            match f.sync_data() {
                Ok(()) => Ok(()),
                // Character devices and pipes (/dev/stdout) cannot be synced.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
                Err(e) => Err(("cannot fsync", e)),
            }
        })
        .await
    }
}

/// Whether every float of the record is finite (representable in JSON).
fn finite(m: &AgentMetrics) -> bool {
    m.latency_ms.is_finite()
        && m.sample_weight.is_finite()
        && m.ttft_ms.is_none_or(f64::is_finite)
        && m.cost_usd.is_none_or(f64::is_finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_torn_tail_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        std::fs::write(&p, b"{\"a\":1}\n{\"b\":2}\n{\"torn\":").unwrap();
        let sink = JsonLinesSink::open(&p).unwrap();
        sink.record(&AgentMetrics::new("sim", "m")).await.unwrap();
        sink.flush().await.unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1], "{\"b\":2}");
        for l in lines {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        // A file of one torn line becomes empty.
        std::fs::write(&p, b"{\"torn\":").unwrap();
        drop(JsonLinesSink::open(&p).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"");
    }

    #[test]
    fn a_missing_directory_fails_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let err = JsonLinesSink::open(dir.path().join("nope/x.jsonl")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(JsonLinesSink::open(dir.path()).is_err());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_full_device_is_not_delivered() {
        let sink = JsonLinesSink::open("/dev/full").unwrap();
        let err = sink.record(&AgentMetrics::new("sim", "m")).await.unwrap_err();
        assert_eq!(err.kind(), crate::SinkErrorKind::Retryable, "{err}");
        assert!(err.to_string().contains("No space left"), "{err}");
    }
}
