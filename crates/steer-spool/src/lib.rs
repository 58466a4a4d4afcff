//! # steer-spool
//!
//! A bounded, durable, ordered on-disk spool for steer metrics sinks, on
//! SQLite in WAL mode. Put it behind a sink with
//! [`MetricsCollectorBuilder::sink_with_spool`](steer_metrics::MetricsCollectorBuilder::sink_with_spool):
//! records then go from the sink's memory queue to the spool as soon as it
//! can take them (one transaction, one sync per batch), are delivered from
//! the spool head in order and removed once the backend took them. An
//! outage grows the spool up to its cap; a crash or restart leaves the
//! spool's content to be delivered first at the next start.
//!
//! ```no_run
//! use std::sync::Arc;
//! use steer_metrics::{MetricsCollector, sinks::MemorySink};
//! use steer_spool::{OnFull, SpoolConfig, SqliteSpool};
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spool = SqliteSpool::open(
//!     "metrics-spool.db",
//!     SpoolConfig::default().max_bytes(512 << 20).on_full(OnFull::DropOldest),
//! )?;
//! let collector = MetricsCollector::builder()
//!     .sink_with_spool(MemorySink::new(), None, Arc::new(spool))
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! Table: `spool(seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT,
//! payload BLOB)`, the payload being the record's JSON. Sequence numbers
//! never repeat, even after the spool emptied or the process restarted.
//! See `docs/spool.md` for the semantics, the sync policy and the window at
//! risk.
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use steer_metrics::{AgentMetrics, Spool, SpoolError};

/// What the spool does with records beyond its cap. Either way they are
/// counted ([`SqliteSpool::dropped`], and by the collector as
/// `dropped.spool_full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnFull {
    /// Refuse the incoming records that do not fit (the default): the
    /// spool keeps the oldest, contiguous history.
    #[default]
    DropNewest,
    /// Evict the oldest records to make room (never the ones being
    /// delivered right now): the spool keeps the most recent history.
    DropOldest,
}

/// When an append reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// Every appended batch is fsynced before the append returns (SQLite
    /// `synchronous=FULL`): survives a process crash and a power loss or OS
    /// crash. The default.
    #[default]
    EveryBatch,
    /// Appends reach the OS at once but are fsynced only at WAL checkpoints
    /// (SQLite `synchronous=NORMAL`): survives a process crash (including
    /// SIGKILL); a power loss or OS crash may lose the last batches.
    Normal,
}

/// Spool limits and policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Cap on the records held (default none).
    pub max_records: Option<u64>,
    /// Cap on the payload bytes held (default 256 MiB). The file on disk is
    /// somewhat larger (row and page overhead, the WAL).
    pub max_bytes: Option<u64>,
    /// Policy beyond the cap (default [`OnFull::DropNewest`]).
    pub on_full: OnFull,
    /// Sync policy (default [`SyncPolicy::EveryBatch`]).
    pub sync: SyncPolicy,
    /// How long to wait for a lock held by another connection (default 5 s).
    pub busy_timeout: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_records: None,
            max_bytes: Some(256 << 20),
            on_full: OnFull::default(),
            sync: SyncPolicy::default(),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl SpoolConfig {
    /// Cap the number of records held.
    #[must_use]
    pub fn max_records(mut self, n: u64) -> Self {
        self.max_records = Some(n);
        self
    }
    /// Cap the payload bytes held.
    #[must_use]
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = Some(n);
        self
    }
    /// Remove the byte cap (the spool is then bounded only by
    /// `max_records`, or by the disk).
    #[must_use]
    pub fn unbounded_bytes(mut self) -> Self {
        self.max_bytes = None;
        self
    }
    /// Policy beyond the cap.
    #[must_use]
    pub fn on_full(mut self, p: OnFull) -> Self {
        self.on_full = p;
        self
    }
    /// Sync policy.
    #[must_use]
    pub fn sync(mut self, s: SyncPolicy) -> Self {
        self.sync = s;
        self
    }
    /// Lock wait.
    #[must_use]
    pub fn busy_timeout(mut self, d: Duration) -> Self {
        self.busy_timeout = d;
        self
    }
}

/// Errors opening a spool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// SQLite could not open or prepare the file.
    #[error("cannot open the spool at {path}: {source}")]
    Sqlite {
        /// The spool file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
}

struct State {
    conn: Connection,
    count: u64,
    bytes: u64,
    /// Highest sequence number handed out by `peek` and not acknowledged:
    /// eviction never touches `seq <= pinned`.
    pinned: u64,
}

/// A [`Spool`] on a SQLite file in WAL mode. See the crate docs.
///
/// One process at a time should use a spool file (two collectors on one
/// spool would deliver each other's records).
pub struct SqliteSpool {
    path: PathBuf,
    config: SpoolConfig,
    state: Mutex<State>,
    dropped: AtomicU64,
    corrupt: AtomicU64,
}

impl fmt::Debug for SqliteSpool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteSpool")
            .field("path", &self.path)
            .field("config", &self.config)
            .field("dropped", &self.dropped.load(Relaxed))
            .finish_non_exhaustive()
    }
}

fn sql_err(e: rusqlite::Error) -> SpoolError {
    SpoolError::new(e)
}

impl SqliteSpool {
    /// Open (or create) the spool at `path`. What a previous process left
    /// in it is kept, to be delivered first.
    pub fn open(path: impl AsRef<Path>, config: SpoolConfig) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let wrap = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(wrap)?;
        conn.busy_timeout(config.busy_timeout).map_err(wrap)?;
        let _mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(wrap)?;
        let sync = match config.sync {
            SyncPolicy::EveryBatch => "FULL",
            SyncPolicy::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous={sync};
             CREATE TABLE IF NOT EXISTS spool (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 request_id TEXT NOT NULL,
                 payload BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS spool_meta (
                 key TEXT PRIMARY KEY,
                 value TEXT NOT NULL
             );"
        ))
        .map_err(wrap)?;
        let (count, bytes): (i64, i64) = conn
            .query_row(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM spool",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(wrap)?;
        if count > 0 {
            tracing::info!(path = %path.display(), records = count, "disk spool holds records from a previous run");
        }
        Ok(SqliteSpool {
            path,
            config,
            state: Mutex::new(State {
                conn,
                count: count.max(0) as u64,
                bytes: bytes.max(0) as u64,
                pinned: 0,
            }),
            dropped: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
        })
    }

    /// The spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration in force.
    pub fn config(&self) -> &SpoolConfig {
        &self.config
    }

    /// Records dropped to respect the cap since this spool was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Rows that could not be decoded and were discarded since this spool
    /// was opened (a damaged file; expected to stay 0).
    pub fn corrupt(&self) -> u64 {
        self.corrupt.load(Relaxed)
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, SpoolError> {
        self.state
            .lock()
            .map_err(|_| SpoolError::new("spool state poisoned by an earlier panic"))
    }

    fn fits(&self, count: u64, bytes: u64) -> bool {
        self.config.max_records.is_none_or(|m| count <= m) && self.config.max_bytes.is_none_or(|m| bytes <= m)
    }
}

impl Spool for SqliteSpool {
    fn append(&self, batch: &[AgentMetrics]) -> Result<u64, SpoolError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut encoded = Vec::with_capacity(batch.len());
        for m in batch {
            let payload = serde_json::to_vec(m).map_err(SpoolError::new)?;
            encoded.push((m.request_id.to_string(), payload));
        }
        let mut guard = self.lock()?;
        let st = &mut *guard;
        let mut count = st.count;
        let mut bytes = st.bytes;
        let mut dropped = 0u64;
        let tx = st.conn.transaction().map_err(sql_err)?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO spool (request_id, payload) VALUES (?1, ?2)")
                .map_err(sql_err)?;
            for (id, payload) in &encoded {
                let len = payload.len() as u64;
                let fits_alone = self.fits(1, len);
                let keep = match self.config.on_full {
                    OnFull::DropNewest => self.fits(count + 1, bytes + len),
                    OnFull::DropOldest => fits_alone,
                };
                if !keep {
                    dropped += 1;
                    continue;
                }
                insert.execute(params![id, payload]).map_err(sql_err)?;
                count += 1;
                bytes += len;
            }
        }
        if self.config.on_full == OnFull::DropOldest && !self.fits(count, bytes) {
            // Evict the oldest unpinned rows until the spool fits.
            let mut cutoff: Option<i64> = None;
            {
                let mut oldest = tx
                    .prepare_cached("SELECT seq, length(payload) FROM spool WHERE seq > ?1 ORDER BY seq")
                    .map_err(sql_err)?;
                let mut rows = oldest.query(params![st.pinned as i64]).map_err(sql_err)?;
                while !self.fits(count, bytes) {
                    let Some(row) = rows.next().map_err(sql_err)? else {
                        break;
                    };
                    let seq: i64 = row.get(0).map_err(sql_err)?;
                    let len: i64 = row.get(1).map_err(sql_err)?;
                    cutoff = Some(seq);
                    count = count.saturating_sub(1);
                    bytes = bytes.saturating_sub(len.max(0) as u64);
                    dropped += 1;
                }
            }
            if let Some(cut) = cutoff {
                tx.execute(
                    "DELETE FROM spool WHERE seq > ?1 AND seq <= ?2",
                    params![st.pinned as i64, cut],
                )
                .map_err(sql_err)?;
            }
        }
        tx.commit().map_err(sql_err)?;
        st.count = count;
        st.bytes = bytes;
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Relaxed);
        }
        Ok(dropped)
    }

    fn peek(&self, max: usize) -> Result<Vec<(u64, AgentMetrics)>, SpoolError> {
        let mut guard = self.lock()?;
        let st = &mut *guard;
        let mut out = Vec::new();
        let mut bad: Vec<(i64, u64)> = Vec::new();
        {
            let mut stmt = st
                .conn
                .prepare_cached("SELECT seq, payload FROM spool ORDER BY seq LIMIT ?1")
                .map_err(sql_err)?;
            let mut rows = stmt
                .query(params![i64::try_from(max.max(1)).unwrap_or(i64::MAX)])
                .map_err(sql_err)?;
            while let Some(row) = rows.next().map_err(sql_err)? {
                let seq: i64 = row.get(0).map_err(sql_err)?;
                let payload: Vec<u8> = row.get(1).map_err(sql_err)?;
                match serde_json::from_slice::<AgentMetrics>(&payload) {
                    Ok(m) => out.push((seq as u64, m)),
                    Err(e) => {
                        tracing::error!(path = %self.path.display(), seq, error = %e, "undecodable record in the disk spool; discarding it");
                        bad.push((seq, payload.len() as u64));
                    }
                }
            }
        }
        for (seq, len) in bad {
            st.conn
                .execute("DELETE FROM spool WHERE seq = ?1", params![seq])
                .map_err(sql_err)?;
            st.count = st.count.saturating_sub(1);
            st.bytes = st.bytes.saturating_sub(len);
            self.corrupt.fetch_add(1, Relaxed);
        }
        if let Some((seq, _)) = out.last() {
            st.pinned = st.pinned.max(*seq);
        }
        Ok(out)
    }

    fn ack(&self, up_to_seq: u64) -> Result<(), SpoolError> {
        let mut guard = self.lock()?;
        let st = &mut *guard;
        let up_to = i64::try_from(up_to_seq).unwrap_or(i64::MAX);
        let tx = st.conn.transaction().map_err(sql_err)?;
        let (n, len): (i64, i64) = tx
            .query_row(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM spool WHERE seq <= ?1",
                params![up_to],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql_err)?;
        if n > 0 {
            tx.execute("DELETE FROM spool WHERE seq <= ?1", params![up_to])
                .map_err(sql_err)?;
        }
        tx.commit().map_err(sql_err)?;
        st.count = st.count.saturating_sub(n.max(0) as u64);
        st.bytes = st.bytes.saturating_sub(len.max(0) as u64);
        if st.pinned <= up_to_seq {
            st.pinned = 0;
        }
        Ok(())
    }

    fn len(&self) -> Result<u64, SpoolError> {
        Ok(self.lock()?.count)
    }

    /// The sink identity is stored in the spool file (`spool_meta`); a
    /// spool holding records of another sink is refused, an empty one is
    /// rebound.
    fn bind_sink(&self, sink: &str) -> Result<(), SpoolError> {
        let st = self.lock()?;
        let bound: Option<String> = st
            .conn
            .query_row("SELECT value FROM spool_meta WHERE key = 'sink'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql_err)?;
        match bound {
            Some(b) if b == sink => return Ok(()),
            Some(b) if st.count > 0 => {
                return Err(SpoolError::new(format!(
                    "{} holds {} records for sink `{}`, not `{}`; deliver them with that sink or use another spool file",
                    self.path.display(),
                    st.count,
                    steer_metrics::redact::redact(&b),
                    steer_metrics::redact::redact(sink)
                )));
            }
            _ => {}
        }
        st.conn
            .execute(
                "INSERT INTO spool_meta (key, value) VALUES ('sink', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![sink],
            )
            .map_err(sql_err)?;
        Ok(())
    }

    fn bytes(&self) -> Result<u64, SpoolError> {
        Ok(self.lock()?.bytes)
    }
}

impl SqliteSpool {
    /// The sequence number of the oldest record held, if any.
    pub fn head_seq(&self) -> Result<Option<u64>, SpoolError> {
        let st = self.lock()?;
        let seq: Option<i64> = st
            .conn
            .query_row("SELECT min(seq) FROM spool", [], |r| r.get(0))
            .optional()
            .map_err(sql_err)?
            .flatten();
        Ok(seq.map(|s| s as u64))
    }
}
