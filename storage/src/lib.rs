//! Durable storage for the Junction station engine, on fjall.
//!
//! Owns three keyspaces in one fjall database under `<data_dir>/store`:
//! - `log`: every station's messages, key `station_id | seq` (big-endian), so one
//!   station is one key prefix and messages sort by sequence;
//! - `meta`: station and consumer-group definitions and counters (small JSON values,
//!   written synchronously);
//! - `state`: consumer-group positions and pending acks.
//!
//! Writes to the log go through one writer thread that does **group commit**: it takes
//! every append waiting in its queue, writes them as one fjall batch, then calls
//! `persist(SyncData)` once, and only then reports the batch as durable. Many
//! concurrent publishers therefore share one fsync, and an append reported done with
//! [`Durability::Sync`] is on disk. Appends with [`Durability::Interval`] are reported
//! done after the batch is written to the journal (OS buffers) and are fsynced within
//! the interval; a power loss can lose up to that interval.
//!
//! Nothing but the group commit runs on the writer thread. It hands each finished
//! batch to a second thread, the **notifier**, and goes on with the next batch while
//! the notifier reports the last one, so an fsync overlaps the acks of the batch
//! before it. The notifier reports a batch as one **durable watermark per station**
//! ([`CommitSink::durable`]: "everything of this station through sequence N is
//! durable"), not one callback per message; appends queued with a plain [`Done`]
//! callback (deletes, tests) get it called there too, in order.
//!
//! The write path is append → commit → apply: the engine assigns sequence numbers and
//! applies limits, this crate makes the batch durable, and only then does the engine
//! ack. A replication layer can later sit between the engine and [`Store::append`]
//! without changing the log format.
//!
//! What it is not: it knows nothing of subjects, limits or consumers' semantics; the
//! engine decides what to write and delete.
//!
//! Invariant: once a write fails, the store is poisoned. Every later write fails with
//! [`StorageError::Poisoned`]; the process must restart and recover rather than keep
//! acknowledging writes it may not have made. [`Store::failure`] says why (for
//! instance "no space left on device"), so health checks can report it.

mod chunk;
mod fsync;
pub mod record;
pub mod tier;

use fsync::FsyncHistogram;
pub use fsync::{FSYNC_BUCKETS_SECS, FsyncStats};

use fjall::config::CompressionPolicy;
use fjall::{
    AbstractTree, CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode,
};
pub use record::Record;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Storage failures.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// fjall reported an error.
    #[error("storage error: {0}")]
    Fjall(String),
    /// A stored value could not be decoded.
    #[error(transparent)]
    Corrupt(#[from] record::CorruptRecord),
    /// An earlier write failed; the store accepts no more writes until restart.
    #[error("storage is poisoned after an earlier write failure; restart to recover")]
    Poisoned,
    /// The store is closed.
    #[error("storage is closed")]
    Closed,
    /// Another process (or another store in this one) holds the directory's lock.
    #[error("the store is locked by another process")]
    Locked,
}

impl From<fjall::Error> for StorageError {
    fn from(e: fjall::Error) -> Self {
        match e {
            fjall::Error::Locked => StorageError::Locked,
            e => StorageError::Fjall(describe(&e)),
        }
    }
}

/// Says what went wrong in words an operator acts on: the I/O error underneath
/// ("no space left on device") when there is one, fjall's own name otherwise.
fn describe(e: &fjall::Error) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::StorageFull => "no space left on device".to_string(),
                std::io::ErrorKind::QuotaExceeded => "disk quota exceeded".to_string(),
                std::io::ErrorKind::ReadOnlyFilesystem => "read-only file system".to_string(),
                _ => io.to_string(),
            };
        }
        cause = c.source();
    }
    match e {
        fjall::Error::Poisoned => "an earlier write failed (fjall is poisoned)".to_string(),
        other => other.to_string(),
    }
}

/// Whether the store still takes writes, and why not.
#[derive(Default)]
struct Health {
    poisoned: AtomicBool,
    reason: OnceLock<String>,
}

impl Health {
    fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Poisons the store; the first reason is the one kept.
    fn poison(&self, e: &fjall::Error, what: &str) {
        let reason = describe(e);
        tracing::error!(error = %reason, "storage {what} failed; store is poisoned until restart");
        let _ = self.reason.set(reason);
        self.poisoned.store(true, Ordering::Release);
    }
}

/// How durable an append must be before it is reported done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsynced (`SyncData`) before done. The default.
    Sync,
    /// Written to the journal before done; fsynced within the given interval.
    Interval(Duration),
}

/// A stored (key, value) pair.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// One step of [`Store::scan_between`] / [`Store::scan_rev_below`]: a record, or
/// the sequence (when its key could be read) and error of one that could not be read.
pub type ScanItem = Result<Record, (Option<u64>, StorageError)>;

/// Called once an append is durable (or failed).
pub type Done = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// Where a station learns how far its log is durable. The store calls it on its
/// notifier thread, once per station per group commit, in commit order: never on
/// the writer thread, never on the caller's.
pub trait CommitSink: Send + Sync {
    /// Every append of this station queued with a sequence up to `through` is
    /// durable under the durability it was queued with.
    fn durable(&self, through: u64);
    /// The batch holding the appends up to `through` failed; the store is poisoned.
    fn failed(&self, through: u64, error: StorageError);
}

/// How an append is reported.
enum Completion {
    /// A callback of its own.
    Done(Done),
    /// As part of its station's watermark: (sink, the append's highest sequence).
    Mark(Arc<dyn CommitSink>, u64),
}

impl Completion {
    /// Reports `outcome` for this one append.
    fn report(self, outcome: Result<(), StorageError>) {
        match (self, outcome) {
            (Completion::Done(done), outcome) => done(outcome),
            (Completion::Mark(sink, through), Ok(())) => sink.durable(through),
            (Completion::Mark(sink, through), Err(e)) => sink.failed(through, e),
        }
    }
}

/// A finished group commit, on its way to the notifier.
struct Finished {
    stations: Vec<u64>,
    completions: Vec<Completion>,
    outcome: Result<(), StorageError>,
}

/// One change to a station's log.
#[derive(Debug, Clone)]
pub enum LogOp {
    /// Store a message.
    Put(Record),
    /// Delete one message.
    Delete(u64),
    /// A change to Raft state (log entries, votes), in the `raft` keyspace. Queued
    /// on the same writer as messages, so it is ordered with them and fsynced by
    /// the same group commit.
    Raft(RaftOp),
    /// A metadata value (as [`Store::put_meta`] writes), in the same atomic batch
    /// as the log changes of its commit: a delete of a station's newest message
    /// carries the station's last sequence with it, so that a crash never leaves
    /// the delete without the sequence it must not reuse.
    Meta(String, Vec<u8>),
}

/// A change to the `raft` keyspace; keys are chosen by the caller.
#[derive(Debug, Clone)]
pub enum RaftOp {
    /// Write one value.
    Put(Vec<u8>, Vec<u8>),
    /// Remove every key in `from..to`.
    RemoveRange(Vec<u8>, Vec<u8>),
    /// Remove one key (no scan: a log purge names the entries it removes
    /// rather than walking a range over earlier purges' tombstones).
    Remove(Vec<u8>),
}

struct Job {
    station: u64,
    ops: Vec<LogOp>,
    durability: Durability,
    completion: Completion,
}

/// The storage handle. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    log: Keyspace,
    meta: Keyspace,
    state: Keyspace,
    raft: Keyspace,
    writer: Option<mpsc::Sender<Job>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    notifier_thread: Option<std::thread::JoinHandle<()>>,
    health: Arc<Health>,
    fsync: Arc<FsyncHistogram>,
    corrupt: AtomicU64,
    path: PathBuf,
    /// Held by whoever reads log entries to rewrite them (the writer's deletes
    /// out of chunks, [`Store::delete_below`]) until the rewrite is committed.
    log_lock: Arc<Mutex<()>>,
}

impl Drop for Inner {
    /// Closing the queue ends the writer thread, which persists and closes the
    /// database. Waiting for it means a store reopened right after is not locked.
    fn drop(&mut self) {
        self.writer = None;
        // The writer ends first (its queue is closed) and then the notifier (the
        // writer held its queue). The last handle may be dropped on either thread.
        for t in [self.writer_thread.take(), self.notifier_thread.take()]
            .into_iter()
            .flatten()
        {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// The log's memtable: what fjall keeps in memory before it writes a table. Its
/// default (64 MiB, and a second one filling while the first is written) made the
/// broker's memory grow by over 100 MiB under a publish burst; messages are read
/// back soon after they are written or not at all, so a small one does: 8 MiB
/// measured the same publish rate as 16 MiB and 20 MiB less peak RSS (1 M messages,
/// 1000 in flight). A data directory keeps the size it was created with.
const LOG_MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// Most journal kept before fjall flushes memtables so that old journal files can
/// go (its default, 512 MiB, kept every message on disk twice for long and made a
/// start-up replay hundreds of megabytes). 64 MiB is fjall's minimum.
const JOURNAL_BYTES: u64 = 64 * 1024 * 1024;

/// fjall's block cache (default 32 MiB). Reads are mostly of what was just
/// written (memtable) or sequential (one block serves many messages).
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Most appends taken into one group commit.
const GROUP_LIMIT: usize = 8192;

/// A commit of appends that need no fsync with fewer appends than this waits
/// [`COALESCE_WAIT`] for more, when the commit before it had at least
/// [`COALESCE_AFTER`]: many publishers are busy, and without an fsync to let a
/// queue build up each commit would carry a few appends, each with a write and
/// wake-ups of its own. Measured with 1000 PubAcks in flight: 100 µs / 64 left
/// `flush_interval` slower than fsync-per-batch (about 135 K msgs/s against
/// 165 K); 1 ms / 512 brought it to the same rate or better. Re-measured once
/// commits got cheaper (3 alternating runs each): 300 µs 256 K, 500 µs 267 K,
/// 1 ms 259 K. A sync publisher (one in flight) or a few never wait.
const COALESCE_BELOW: usize = 512;
const COALESCE_WAIT: Duration = Duration::from_micros(500);
const COALESCE_AFTER: usize = 4;

/// The same wait for a commit that ends in an fsync, shorter because the fsync
/// itself lets the queue build up. With 1000 PubAcks in flight, 300,000
/// publishes took 1,868 fsyncs without it and 963 with it, and the kernel's side
/// of an fsync was an eighth of the broker's CPU: 6% more msgs/s and 7% less
/// CPU per message (4 alternating runs; 100 µs, 200 µs and 1 ms did less well).
/// A sync publisher (one in flight) never waits: its commits carry one append.
/// Nor do a few publishers each awaiting its ack (16 Key-Value clients): the last
/// commit carried fewer than [`SYNC_COALESCE_AFTER`] appends, so the wait would
/// only add to each ack's latency (no other appends are coming until those acks
/// go out). Measured with `junction bench kv-put --pubs 16`: the wait took the
/// rate from about 24 K to 17 K puts/s (3 alternating runs each).
const SYNC_COALESCE_WAIT: Duration = Duration::from_micros(300);
const SYNC_COALESCE_AFTER: usize = 64;

impl Store {
    /// Opens (or creates) the store under `dir/store`, recovering what is there.
    pub fn open(dir: &Path) -> Result<Store, StorageError> {
        let path = dir.join("store");
        let db = Database::builder(&path)
            .cache_size(CACHE_BYTES)
            .max_journaling_size(JOURNAL_BYTES)
            .open()?;
        let log = db.keyspace("log", || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(LOG_MEMTABLE_BYTES)
                // LZ4 on every level (fjall's default leaves the first two plain):
                // a 16-byte message's table bytes went from 141 to 52; it costs
                // fjall's background threads, not the write path.
                .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
        })?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        let state = db.keyspace("state", KeyspaceCreateOptions::default)?;
        let raft = db.keyspace("raft", KeyspaceCreateOptions::default)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let (finished_tx, finished_rx) = mpsc::channel::<Finished>();
        let queued = Arc::new(AtomicUsize::new(0));
        let finished_tx = Notifier {
            tx: finished_tx,
            queued: queued.clone(),
        };
        let health = Arc::new(Health::default());
        let fsync = Arc::new(FsyncHistogram::default());
        let log_lock = Arc::new(Mutex::new(()));
        let notifier_thread = std::thread::Builder::new()
            .name("junction-store-notify".into())
            .spawn(move || notifier_loop(finished_rx, &queued))
            .map_err(|e| StorageError::Fjall(format!("cannot start notifier thread: {e}")))?;
        let writer_thread = {
            let db = db.clone();
            let log = log.clone();
            let health = health.clone();
            let fsync = fsync.clone();
            let log_lock = log_lock.clone();
            let raft = raft.clone();
            let meta = meta.clone();
            std::thread::Builder::new()
                .name("junction-store-writer".into())
                .spawn(move || {
                    writer_loop(
                        db,
                        [log, raft, meta],
                        log_lock,
                        rx,
                        finished_tx,
                        health,
                        fsync,
                    )
                })
                .map_err(|e| StorageError::Fjall(format!("cannot start writer thread: {e}")))?
        };
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                log,
                meta,
                state,
                raft,
                writer: Some(tx),
                writer_thread: Some(writer_thread),
                notifier_thread: Some(notifier_thread),
                health,
                fsync,
                corrupt: AtomicU64::new(0),
                path,
                log_lock,
            }),
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Latency of every fsync the store has made since it opened (group commits,
    /// interval syncs and synchronous metadata writes).
    pub fn fsync_histogram(&self) -> FsyncStats {
        self.inner.fsync.snapshot()
    }

    /// True once a write has failed.
    pub fn is_poisoned(&self) -> bool {
        self.inner.health.is_poisoned()
    }

    /// Why the store accepts no more writes (the first failure, such as "no space
    /// left on device"), or `None` while it is healthy.
    pub fn failure(&self) -> Option<String> {
        if !self.is_poisoned() {
            return None;
        }
        Some(
            self.inner
                .health
                .reason
                .get()
                .cloned()
                .unwrap_or_else(|| "an earlier write failed".to_string()),
        )
    }

    /// Queues changes to a station's log; `done` runs on the notifier thread once
    /// they are durable under `durability`, or failed. Appends are applied in call
    /// order.
    ///
    /// `done` never runs on the caller's thread, not even when the store is poisoned:
    /// callers queue while holding their own locks, and `done` may take them.
    pub fn append(&self, station: u64, ops: Vec<LogOp>, durability: Durability, done: Done) {
        self.queue(Job {
            station,
            ops,
            durability,
            completion: Completion::Done(done),
        });
    }

    /// Queues changes to a station's log whose highest sequence is `through`, and
    /// reports them through the station's watermark: once the group commit holding
    /// them is durable, `sink.durable(n)` is called once with the highest `through`
    /// of that commit (or `sink.failed`). The caller queues its appends in sequence
    /// order. Like [`Store::append`], the sink is never called on the caller's thread.
    pub fn append_marked(
        &self,
        station: u64,
        ops: Vec<LogOp>,
        durability: Durability,
        through: u64,
        sink: Arc<dyn CommitSink>,
    ) {
        self.queue(Job {
            station,
            ops,
            durability,
            completion: Completion::Mark(sink, through),
        });
    }

    fn queue(&self, job: Job) {
        // A poisoned store's writer fails every job it takes; no check here.
        let Some(writer) = &self.inner.writer else {
            fail_elsewhere(job);
            return;
        };
        if let Err(mpsc::SendError(job)) = writer.send(job) {
            fail_elsewhere(job);
        }
    }

    /// Records found corrupt (checksum mismatch, undecodable, or refused by fjall's
    /// own block checks) since the store opened. Each one is also logged.
    pub fn corrupt_records(&self) -> u64 {
        self.inner.corrupt.load(Ordering::Relaxed)
    }

    /// Counts and logs a corrupt read; the caller gets the error, never the bytes.
    fn corrupt(inner: &Inner, station: u64, seq: Option<u64>, error: StorageError) -> StorageError {
        inner.corrupt.fetch_add(1, Ordering::Relaxed);
        tracing::error!(station, seq, error = %error, "corrupt record in the store");
        error
    }

    /// Reads one message. A corrupt record is a [`StorageError::Corrupt`] (counted
    /// in [`Store::corrupt_records`]).
    pub fn read(&self, station: u64, seq: u64) -> Result<Option<Record>, StorageError> {
        match chunk::Records::forward(self.inner.clone(), station, seq, seq.saturating_add(1))
            .next()
        {
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err((_, e))) => Err(e),
            None => Ok(None),
        }
    }

    /// fjall's read errors: its own block checks (checksum, decompression, bad
    /// tags or trailers) count as corrupt records too.
    fn corrupt_or_io(
        inner: &Inner,
        station: u64,
        seq: Option<u64>,
        e: fjall::Error,
    ) -> StorageError {
        use fjall::LsmError as L;
        let corrupt = matches!(
            &e,
            fjall::Error::Decompress(_)
                | fjall::Error::InvalidTag(_)
                | fjall::Error::InvalidTrailer
                | fjall::Error::Storage(
                    L::ChecksumMismatch { .. }
                        | L::Decompress(_)
                        | L::InvalidTag(_)
                        | L::InvalidTrailer
                        | L::InvalidHeader(_)
                        | L::Utf8(_)
                )
        );
        if corrupt {
            tracing::error!(station, seq, error = %e, "the store's own block check failed");
            Self::corrupt(
                inner,
                station,
                seq,
                record::CorruptRecord("a storage block failed its checksum or format check").into(),
            )
        } else {
            StorageError::from(e)
        }
    }

    /// Messages of a station from `from_seq` on, in order.
    pub fn scan(
        &self,
        station: u64,
        from_seq: u64,
    ) -> impl Iterator<Item = Result<Record, StorageError>> + use<> {
        chunk::Records::forward(self.inner.clone(), station, from_seq, u64::MAX)
            .map(|item| item.map_err(|(_, e)| e))
    }

    /// The highest sequence whose key can be read for a station (keys only, so a
    /// corrupt value does not hide it; keys in a damaged block are skipped). An
    /// entry's key is the highest sequence it holds.
    pub fn last_seq(&self, station: u64) -> Option<u64> {
        let start = record::key(station, 0);
        let end = record::key(station, u64::MAX);
        self.inner
            .log
            .range(start..=end)
            .rev()
            .find_map(|guard| guard.key().ok().and_then(|k| record::seq_of(&k)))
    }

    /// Messages of a station from the newest backwards.
    pub fn scan_rev(
        &self,
        station: u64,
    ) -> impl Iterator<Item = Result<Record, StorageError>> + use<> {
        chunk::Records::backward(self.inner.clone(), station, u64::MAX)
            .map(|item| item.map_err(|(_, e)| e))
    }

    /// Messages of a station with `from <= seq < below`, in order. Unlike
    /// [`Store::scan`], a record that cannot be decoded names its sequence (when its
    /// key could be read), so a caller can skip exactly that record and go on; a
    /// damaged block (no key) ends the iteration with `(None, error)`. A chunk
    /// whose framing is damaged is named by its key's sequence, its highest.
    pub fn scan_between(
        &self,
        station: u64,
        from: u64,
        below: u64,
    ) -> impl Iterator<Item = ScanItem> + use<> {
        chunk::Records::forward(self.inner.clone(), station, from, below)
    }

    /// Messages of a station with `seq < below`, from the newest backwards; errors
    /// as in [`Store::scan_between`].
    pub fn scan_rev_below(
        &self,
        station: u64,
        below: u64,
    ) -> impl Iterator<Item = ScanItem> + use<> {
        chunk::Records::backward(self.inner.clone(), station, below)
    }

    /// The sequences stored for a station with `from <= seq < below`, in order, read
    /// from the keys and chunk framings only (record values are neither decoded
    /// nor checked). Entries in a damaged block are skipped.
    pub fn seqs_between(
        &self,
        station: u64,
        from: u64,
        below: u64,
    ) -> impl Iterator<Item = u64> + use<> {
        chunk::seqs(&self.inner.log, station, from, below)
    }

    /// Writes and removes several metadata values in one batch, fsynced once before
    /// returning.
    pub fn write_meta_batch(
        &self,
        puts: &[(String, Vec<u8>)],
        removes: &[String],
    ) -> Result<(), StorageError> {
        self.check_writable()?;
        let mut batch = self.inner.db.batch();
        for (k, v) in puts {
            batch.insert(&self.inner.meta, k.as_bytes(), v.as_slice());
        }
        for k in removes {
            batch.remove(&self.inner.meta, k.as_bytes());
        }
        self.commit_sync(batch)
    }

    /// Deletes every message of a station with `seq < below`, synchronously. Returns
    /// how many were deleted.
    pub fn delete_below(&self, station: u64, below: u64) -> Result<u64, StorageError> {
        self.check_writable()?;
        let log = &self.inner.log;
        let _rewriting = self
            .inner
            .log_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut batch = self.inner.db.batch();
        let mut n = 0u64;
        for guard in log.range(record::key(station, 0)..record::key(station, below)) {
            let (k, v) = guard.into_inner()?;
            n += record::seq_of(&k)
                .and_then(|s| record::split(s, &v).ok())
                .map_or(1, |parts| parts.len() as u64);
            batch.remove(log, k);
        }
        // The entry keyed at or above `below` may hold records below it.
        if let Some(guard) = log
            .range(record::key(station, below)..=record::key(station, u64::MAX))
            .next()
        {
            let (k, v) = guard.into_inner()?;
            if let Some(parts) = record::seq_of(&k).and_then(|s| record::split(s, &v).ok())
                && parts[0].0 < below
            {
                let keep: Vec<(u64, &[u8])> =
                    parts.iter().copied().filter(|(s, _)| *s >= below).collect();
                n += (parts.len() - keep.len()) as u64;
                if let [(_, value)] = keep.as_slice() {
                    batch.insert(log, k, *value);
                } else {
                    batch.insert(log, k, record::encode_chunk(&keep));
                }
            }
        }
        self.commit_sync(batch)?;
        Ok(n)
    }

    /// Deletes every message of a station, synchronously.
    pub fn delete_station_log(&self, station: u64) -> Result<u64, StorageError> {
        self.delete_below(station, u64::MAX)
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        if self.is_poisoned() {
            Err(StorageError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn commit_sync(&self, batch: fjall::OwnedWriteBatch) -> Result<(), StorageError> {
        let result = batch
            .commit()
            .and_then(|()| timed_persist(&self.inner.db, &self.inner.fsync));
        if let Err(e) = result {
            self.inner.health.poison(&e, "write");
            return Err(e.into());
        }
        Ok(())
    }

    /// Writes a metadata value, fsynced before returning.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.check_writable()?;
        let mut batch = self.inner.db.batch();
        batch.insert(&self.inner.meta, key.as_bytes(), value);
        self.commit_sync(batch)
    }

    /// Removes a metadata value, fsynced before returning.
    pub fn remove_meta(&self, key: &str) -> Result<(), StorageError> {
        self.check_writable()?;
        let mut batch = self.inner.db.batch();
        batch.remove(&self.inner.meta, key.as_bytes());
        self.commit_sync(batch)
    }

    /// Reads a metadata value.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.inner.meta.get(key.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Every metadata (key, value) whose key starts with `prefix`.
    pub fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        for guard in self.inner.meta.prefix(prefix.as_bytes()) {
            let (k, v) = guard.into_inner()?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    /// Writes consumer-group state, fsynced before returning.
    pub fn put_state(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.check_writable()?;
        let mut batch = self.inner.db.batch();
        batch.insert(&self.inner.state, key, value);
        self.commit_sync(batch)
    }

    /// Removes consumer-group state, fsynced before returning.
    pub fn remove_state_prefix(&self, prefix: &[u8]) -> Result<(), StorageError> {
        self.check_writable()?;
        let mut batch = self.inner.db.batch();
        for guard in self.inner.state.prefix(prefix) {
            batch.remove(&self.inner.state, guard.key()?);
        }
        self.commit_sync(batch)
    }

    /// Every consumer-group state (key, value) whose key starts with `prefix`.
    pub fn list_state(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StorageError> {
        let mut out = Vec::new();
        for guard in self.inner.state.prefix(prefix) {
            let (k, v) = guard.into_inner()?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Reads one value of the `raft` keyspace (written with [`LogOp::Raft`]).
    pub fn raft_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.inner.raft.get(key)?.map(|v| v.to_vec()))
    }

    /// Every (key, value) of the `raft` keyspace with `from <= key < to`, in order.
    pub fn raft_range(&self, from: &[u8], to: &[u8]) -> Result<Vec<KeyValue>, StorageError> {
        let mut out = Vec::new();
        for guard in self.inner.raft.range(from.to_vec()..to.to_vec()) {
            let (k, v) = guard.into_inner()?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// The last (key, value) of the `raft` keyspace with `from <= key < to`.
    pub fn raft_last(&self, from: &[u8], to: &[u8]) -> Result<Option<KeyValue>, StorageError> {
        match self
            .inner
            .raft
            .range(from.to_vec()..to.to_vec())
            .next_back()
        {
            Some(guard) => {
                let (k, v) = guard.into_inner()?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Disk space used, in bytes.
    pub fn disk_space(&self) -> u64 {
        self.inner.db.disk_space().unwrap_or(0)
    }

    /// Disk space of the message log's tables, in bytes: the store's space
    /// without the journal (up to 64 MB, given back when fjall rotates it)
    /// and the small keyspaces.
    pub fn log_table_space(&self) -> u64 {
        self.inner.log.disk_space()
    }

    /// Gives the space of deleted messages back to the file system now, rather
    /// than when the LSM tree next compacts on its own (which needs writes: on
    /// a fenced disk none come). Blocking; seconds for a large log.
    ///
    /// 1. Every keyspace's memtable is flushed, so the journal files they pin
    ///    are removed (a journal holds every write since the last flush).
    /// 2. The log keyspace is compacted into one level, dropping what deletes
    ///    and purges marked — only when `free()` (bytes free on the data
    ///    directory's file system) leaves room for the rewrite of what stays
    ///    (`live`: the bytes the stations still hold, an upper bound of it, as
    ///    the log is compressed), because a compaction that runs out of space
    ///    would stop the store.
    ///
    /// The journal itself (up to 64 MB) is given back only when fjall rotates
    /// it, once it is full.
    ///
    /// fjall marks its flush and major compaction calls `doc(hidden)`; they are
    /// its own, tested paths (its tests and its recovery use them).
    pub fn reclaim(&self, free: impl Fn() -> u64, live: u64) -> Result<Reclaimed, StorageError> {
        self.check_writable()?;
        let before = self.disk_space();
        let spaces = [
            &self.inner.log,
            &self.inner.meta,
            &self.inner.state,
            &self.inner.raft,
        ];
        let memtables: u64 = spaces.iter().map(|k| k.tree.active_memtable().size()).sum();
        let mut flushed = false;
        if free() > memtables.saturating_mul(2) {
            for k in spaces {
                k.rotate_memtable()?;
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while spaces.iter().any(|k| k.tree.sealed_memtable_count() > 0)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            flushed = true;
        }
        let rewrite = live.saturating_add(live / 4).saturating_add(RECLAIM_MARGIN);
        let compacted = free() > rewrite;
        if compacted {
            self.inner.log.major_compact().inspect_err(|e| {
                tracing::warn!(error = %e, "compacting the log to give back deleted space failed");
            })?;
            // The tables the compaction replaced are removed by fjall's version
            // maintenance once a newer write exists, when a memtable is sealed:
            // one small metadata write, then a seal.
            self.put_meta(
                "store/reclaimed",
                &SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis()
                    .to_string()
                    .into_bytes(),
            )?;
            self.inner.meta.rotate_memtable()?;
        }
        Ok(Reclaimed {
            flushed,
            compacted,
            before,
            after: self.disk_space(),
        })
    }
}

/// Room left beyond a compaction's own rewrite (keys and table overhead are
/// counted as a quarter more than the messages' bytes).
const RECLAIM_MARGIN: u64 = 4 << 20;

/// What [`Store::reclaim`] did.
#[derive(Debug, Clone, Copy)]
pub struct Reclaimed {
    /// The memtables were flushed (there was room for it).
    pub flushed: bool,
    /// The log was compacted (there was room to rewrite it).
    pub compacted: bool,
    /// The store's bytes on disk before and after.
    pub before: u64,
    /// See `before`.
    pub after: u64,
}

/// Fails a job the writer cannot take (its thread is gone), on a thread of its own
/// so that `done` never runs under the caller's locks.
fn fail_elsewhere(job: Job) {
    let spawned = std::thread::Builder::new()
        .name("junction-store-closed".into())
        .spawn(move || job.completion.report(Err(StorageError::Closed)));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot report a refused append");
    }
}

/// `persist(SyncData)`, recording its latency.
fn timed_persist(db: &Database, fsync: &FsyncHistogram) -> Result<(), fjall::Error> {
    let started = Instant::now();
    let result = db.persist(PersistMode::SyncData);
    fsync.observe(started.elapsed());
    result
}

#[allow(clippy::too_many_arguments)]
fn writer_loop(
    db: Database,
    [log, raft, meta]: [Keyspace; 3],
    log_lock: Arc<Mutex<()>>,
    rx: mpsc::Receiver<Job>,
    finished: Notifier,
    health: Arc<Health>,
    fsync: Arc<FsyncHistogram>,
) {
    let mut unsynced_since: Option<Instant> = None;
    let mut sync_within = Duration::from_secs(1);
    let mut last_batch = 0usize;
    loop {
        let first = match unsynced_since {
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
            Some(since) => {
                let wait = sync_within.saturating_sub(since.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if let Err(e) = timed_persist(&db, &fsync) {
                            health.poison(&e, "fsync");
                        }
                        unsynced_since = None;
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        let mut jobs = vec![first];
        drain_into(&rx, &mut jobs);
        // Appends that need no fsync would otherwise go out in commits of one or
        // two while many publishers are busy (an fsync is what lets a queue build
        // up), each commit a write and a wake-up of its own: `flush_interval` was
        // slower than fsync-per-batch. When the last commit showed concurrency,
        // wait a moment for the queue to fill.
        // With an fsync, a short wait does the same (PostgreSQL's `commit_delay`
        // with `commit_siblings`): fewer fsyncs, each covering more appends.
        if last_batch >= COALESCE_AFTER && jobs.len() < COALESCE_BELOW {
            let sync = jobs.iter().any(|j| j.durability == Durability::Sync);
            if !sync {
                std::thread::sleep(COALESCE_WAIT);
                drain_into(&rx, &mut jobs);
            } else if last_batch >= SYNC_COALESCE_AFTER {
                std::thread::sleep(SYNC_COALESCE_WAIT);
                drain_into(&rx, &mut jobs);
            }
        }
        last_batch = jobs.len();
        let mut stations = Vec::new();
        let mut completions = Vec::with_capacity(jobs.len());
        if health.is_poisoned() {
            for job in jobs {
                stations.push(job.station);
                completions.push(job.completion);
            }
            finished.hand_over(Finished {
                stations,
                completions,
                outcome: Err(StorageError::Poisoned),
            });
            continue;
        }
        let mut batch = db.batch();
        let mut need_sync = false;
        let mut changes = chunk::CommitLog::default();
        // Raft keys this commit writes (Some) or removes (None): one entry per
        // key, so a put and a later range removal in one commit are resolved
        // here and the whole commit stays one atomic batch.
        let mut raft_ops: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            std::collections::BTreeMap::new();
        // Metadata values, the last of a key winning.
        let mut meta_ops: std::collections::BTreeMap<String, Vec<u8>> =
            std::collections::BTreeMap::new();
        let rewriting = log_lock.lock().unwrap_or_else(|p| p.into_inner());
        for job in jobs {
            match job.durability {
                Durability::Sync => need_sync = true,
                Durability::Interval(d) => {
                    sync_within = sync_within.min(d);
                    if unsynced_since.is_none() {
                        unsynced_since = Some(Instant::now());
                    }
                }
            }
            for op in job.ops {
                match op {
                    LogOp::Put(r) => changes.put(job.station, &r),
                    LogOp::Delete(seq) => changes.delete(&log, job.station, seq),
                    LogOp::Raft(RaftOp::Put(k, v)) => {
                        raft_ops.insert(k, Some(v));
                    }
                    LogOp::Raft(RaftOp::Remove(k)) => {
                        raft_ops.insert(k, None);
                    }
                    LogOp::Meta(k, v) => {
                        meta_ops.insert(k, v);
                    }
                    LogOp::Raft(RaftOp::RemoveRange(from, to)) => {
                        // What the keyspace has in the range, and what this
                        // commit put there before.
                        for guard in raft.range(from.clone()..to.clone()) {
                            match guard.key() {
                                Ok(k) => {
                                    raft_ops.insert(k.to_vec(), None);
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "cannot read a Raft key to remove it")
                                }
                            }
                        }
                        for (_, v) in raft_ops.range_mut(from..to) {
                            *v = None;
                        }
                    }
                }
            }
            stations.push(job.station);
            completions.push(job.completion);
        }
        for (k, v) in raft_ops {
            match v {
                Some(v) => batch.insert(&raft, k, v),
                None => batch.remove(&raft, k),
            }
        }
        for (k, v) in meta_ops {
            batch.insert(&meta, k.as_bytes(), v);
        }
        changes.write_into(&mut batch, &log);
        let mut result = batch.commit();
        drop(rewriting);
        if result.is_ok() && need_sync {
            result = timed_persist(&db, &fsync);
            unsynced_since = None;
        }
        let outcome = match result {
            Ok(()) => Ok(()),
            Err(e) => {
                health.poison(&e, "write");
                Err(StorageError::from(e))
            }
        };
        finished.hand_over(Finished {
            stations,
            completions,
            outcome,
        });
    }
    if !health.is_poisoned() {
        flush_log_at_close(&log);
    }
    let _ = db.persist(PersistMode::SyncAll);
}

/// Longest a clean close waits for the log's memtable to be written out.
const CLOSE_FLUSH_WAIT: Duration = Duration::from_secs(10);

/// A clean close writes the log's memtable out as a table (compressed), so the
/// journal it was kept in need not be replayed: the next start reads nothing
/// twice and does not fill a memtable again. Skipped when the data directory is
/// gone (nothing could be written), and given up after [`CLOSE_FLUSH_WAIT`]: the
/// journal still has everything. (fjall marks `rotate_memtable` hidden; it is the
/// only way to flush one keyspace, and the version is pinned.)
fn flush_log_at_close(log: &Keyspace) {
    if !log.path().exists() {
        return;
    }
    match log.rotate_memtable() {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not flush the log at close; the next start replays its journal");
            return;
        }
    }
    let deadline = Instant::now() + CLOSE_FLUSH_WAIT;
    while log.sealed_memtable_count() > 0 {
        if Instant::now() >= deadline {
            tracing::warn!(
                "the log's flush at close did not finish; the next start replays its journal"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Takes what is waiting in the queue, up to [`GROUP_LIMIT`] appends in all.
fn drain_into(rx: &mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < GROUP_LIMIT {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

/// Reports finished group commits: each plain callback in order, then one watermark
/// per station (the highest sequence of that station in the commit).
fn notifier_loop(rx: mpsc::Receiver<Finished>, queued: &AtomicUsize) {
    while let Ok(f) = rx.recv() {
        report_finished(f);
        queued.fetch_sub(1, Ordering::Release);
    }
}

/// Most completions a commit may have for the writer to report them itself.
const INLINE_COMPLETIONS: usize = 4;

/// Where the writer hands its finished commits.
struct Notifier {
    tx: mpsc::Sender<Finished>,
    /// Commits sent to the notifier thread and not yet reported.
    queued: Arc<AtomicUsize>,
}

impl Notifier {
    /// Reports a commit of a few appends on the writer thread when the notifier
    /// has nothing left to report (so the order of reports stays the order of
    /// commits): a sync publisher's ack then skips one thread hop. Bigger
    /// commits go to the notifier thread, so that the writer can start the next
    /// fsync while they are answered.
    fn hand_over(&self, f: Finished) {
        if f.completions.len() <= INLINE_COMPLETIONS && self.queued.load(Ordering::Acquire) == 0 {
            report_finished(f);
            return;
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(f).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Reports one finished commit.
fn report_finished(f: Finished) {
    let mut marks: Vec<(Arc<dyn CommitSink>, u64)> = Vec::new();
    let mut at: HashMap<u64, usize> = HashMap::new();
    for (station, completion) in f.stations.into_iter().zip(f.completions) {
        match completion {
            Completion::Mark(sink, through) => match at.get(&station) {
                Some(&i) => marks[i].1 = marks[i].1.max(through),
                None => {
                    at.insert(station, marks.len());
                    marks.push((sink, through));
                }
            },
            done => done.report(f.outcome.clone()),
        }
    }
    for (sink, through) in marks {
        Completion::Mark(sink, through).report(f.outcome.clone());
    }
}
