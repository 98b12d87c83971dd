//! One station: its index over the stored log, its limits, de-duplication and
//! expected-sequence checks, and the append path into storage.
//!
//! The index ([`index`]) keeps counters, per-subject state and small windows of the
//! oldest and newest messages, not an entry per message: its memory is bounded by
//! the number of subjects, not of messages. Everything else is read from the log.
//! At a clean shutdown its state is written as a [`snapshot`]; the next start loads
//! that instead of scanning the log. After a crash the log is scanned in full.

pub(crate) mod compact;
mod index;
pub(crate) mod snapshot;

use super::group::Groups;
use bytes::Bytes;
use index::{Entry, Log};
use junction_api::{
    Discard, EngineError, Headers, Message, MessageQuery, PubAck, PublishOptions, Purge, Retention,
    StationConfig, StationState, StorageKind, StoredCallback, StoredMessage, Subject,
    SubjectFilter, TenantId,
};
use junction_storage::{CommitSink, Durability, LogOp, Record, StorageError, Store};
use parking_lot::{Mutex, RwLock};
use snapshot::Snapshot;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How soon a replicated station's applied copy is fsynced (its Raft log is
/// fsynced before the entry is applied).
const REPLICATED_APPLY_SYNC: Duration = Duration::from_millis(200);

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A stored record as the engine hands it out.
fn stored_message(r: Record) -> StoredMessage {
    StoredMessage {
        seq: r.seq,
        subject: Subject::from_trusted(r.subject),
        headers: r.headers,
        payload: r.payload,
        time: time_of(r.time_ns),
        lineage: r.lineage,
    }
}

/// ns since the epoch of a time (0 before the epoch).
pub fn time_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A time from ns since the epoch.
pub fn time_of(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The limits the append path reads on every publish, copied out of the config.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_msgs: i64,
    max_bytes: i64,
    max_msgs_per_subject: i64,
    max_msg_size: i64,
    max_age: Duration,
    discard: Discard,
    duplicate_window: Duration,
    durability: Durability,
    memory: bool,
    /// `Nats-Rollup` is honoured (`allow_rollup` and not `deny_purge`).
    rollup: bool,
    /// Sealed: every append is refused.
    sealed: bool,
    /// Log compaction, when the station has it.
    compact: Option<junction_api::CompactPolicy>,
}

impl Limits {
    fn of(c: &StationConfig) -> Self {
        Limits {
            max_msgs: c.max_msgs,
            max_bytes: c.max_bytes,
            max_msgs_per_subject: c.max_msgs_per_subject,
            max_msg_size: c.max_msg_size,
            max_age: c.max_age,
            discard: c.discard,
            duplicate_window: c.duplicate_window,
            durability: match c.flush_interval {
                None => Durability::Sync,
                Some(d) => Durability::Interval(d),
            },
            memory: c.storage == StorageKind::Memory,
            rollup: c.allow_rollup && !c.deny_purge,
            sealed: c.sealed,
            compact: c.compact,
        }
    }
}

/// A station's transforms as compiled from its definition; one that does not
/// compile (a definition an older Junction allowed) is not applied.
#[derive(Default)]
struct Transforms {
    input: Option<Arc<junction_api::CompiledTransform>>,
    republish: Option<Arc<super::republish::Policy>>,
}

impl Transforms {
    /// Compiles the station's templates. One that does not compile (an older
    /// Junction accepted templates nats-server 2.10 refuses; a new definition
    /// is refused instead) is not applied, and that is logged.
    fn of(config: &StationConfig) -> Transforms {
        let not_applied = |what: &str,
                           source: &str,
                           destination: &str,
                           e: &dyn std::fmt::Display| {
            tracing::warn!(
                station = %config.name,
                %source,
                %destination,
                error = %e,
                "the station's {what} is not valid as nats-server 2.10 reads it and is not applied: update the station with a valid destination (docs/nats.md)"
            );
        };
        Transforms {
            input: config.subject_transform.as_ref().and_then(|t| {
                junction_api::CompiledTransform::new(&t.source, &t.destination)
                    .map_err(|e| not_applied("subject_transform", &t.source, &t.destination, &e))
                    .ok()
                    .map(Arc::new)
            }),
            republish: config.republish.as_ref().and_then(|r| {
                super::republish::Policy::compile(r)
                    .map_err(|e| not_applied("republish", &r.source, &r.destination, &e))
                    .ok()
                    .map(Arc::new)
            }),
        }
    }
}

/// A station.
pub(crate) struct Station {
    pub id: u64,
    pub tenant: TenantId,
    pub created: SystemTime,
    name: Arc<str>,
    config: RwLock<StationConfig>,
    filters: RwLock<Vec<SubjectFilter>>,
    log: Mutex<Log>,
    store: Store,
    /// Consumer groups reading this station.
    pub groups: RwLock<Groups>,
    /// Highest sequence durably stored; groups never read past it (shared with
    /// the index, which keeps what is not yet in the log in memory).
    committed: Arc<AtomicU64>,
    /// Appends queued to storage and not yet durable, in sequence order: what the
    /// store's watermark ([`CommitSink::durable`]) completes.
    in_flight: Mutex<VecDeque<InFlight>>,
    /// The schema every publish is validated against: (name, pinned version).
    schema: RwLock<Option<SchemaBinding>>,
    /// Its `subject_transform` and republish, compiled once per definition
    /// rather than on every publish.
    transforms: RwLock<Transforms>,
    /// This node's replica of the station's Raft group, for a replicated
    /// station (`replicas` > 1): its log is then written only by applying
    /// committed entries ([`Station::append_with`]), never by a publish here.
    pub replica: std::sync::OnceLock<junction_cluster::replica::ReplicaGroup>,
    /// Written only through its group, which may not have started yet
    /// ([`Station::replica`]): made with `replicas` > 1, or changed to a
    /// replicated station since (see [`Station::set_replicated`]).
    replicated: std::sync::atomic::AtomicBool,
    /// What [`Station::stored_bytes`] last read.
    bytes_seen: AtomicU64,
    /// Its remote tier (S3), when the broker has one (`tier.rs`).
    tier: std::sync::OnceLock<Arc<super::tier::StationTier>>,
    /// Compaction: the pass under way ([`compact`]).
    compaction: Mutex<compact::Compaction>,
    /// When the next compaction pass may find something to remove (ns; an
    /// upper bound: 0 after a start, `u64::MAX` when nothing is known).
    compact_due: AtomicU64,
    /// Messages compaction removed since the station was created.
    compacted: AtomicU64,
}

/// GETs a consumer group replaying the remote range starts ahead of the block
/// it delivers from (each a small segment, or up to
/// [`junction_storage::tier::SPAN_BYTES`] of a large one's blocks). With 128
/// KiB segments on a local S3 server, one block at a time replayed about 9 K
/// msgs/s (each block a footer and a block GET in turn).
const REMOTE_READ_AHEAD: usize = 4;

/// What [`Station::remote_from`] found for a consumer group's cursor.
pub(crate) enum RemoteRead {
    /// The cursor is not in the remote range: read the local log.
    Local,
    /// Remote messages from the cursor on (matching the filters, at most the
    /// number asked for), and where the cursor goes once they are delivered:
    /// the next matching message of the block not taken, or past the block.
    Ready {
        messages: Vec<StoredMessage>,
        next: u64,
    },
    /// The block is being fetched; the groups are woken when it is here.
    Pending,
}

/// An append on its way to disk.
/// One append of [`Station::append_batch`].
pub struct Append<'a> {
    pub message: &'a Message,
    pub options: &'a PublishOptions,
    pub lineage: Bytes,
    /// The time it is stored at (ns since the epoch).
    pub now: u64,
    pub done: Option<StoredCallback>,
}

/// What [`Station::admit`] decided.
enum Admitted {
    /// Not stored: a refusal, or the duplicate's acknowledgement.
    Refused(Result<PubAck, EngineError>),
    /// To be stored at `seq`, evicting `evicted`.
    New { seq: u64, evicted: Vec<u64> },
}

struct InFlight {
    seq: u64,
    subject: Bytes,
    /// What its limits evicted (put back if the write fails).
    evicted: Vec<u64>,
    done: Option<StoredCallback>,
}

/// A station's attached schema: its name and, when pinned, the version.
pub(crate) type SchemaBinding = (Arc<str>, Option<u32>);

fn binding_of(config: &StationConfig) -> Option<SchemaBinding> {
    config
        .schema
        .as_deref()
        .map(|name| (Arc::from(name), config.schema_version))
}

fn storage_error(e: StorageError) -> EngineError {
    match e {
        StorageError::Corrupt(c) => EngineError::CorruptRecord(c.0.to_string()),
        e => EngineError::Storage(e.to_string()),
    }
}

/// The filters a configuration captures (its subjects, or its name).
pub(crate) fn filters_of(config: &StationConfig) -> Result<Vec<SubjectFilter>, EngineError> {
    config
        .subjects_or_name()
        .into_iter()
        .map(|s| {
            SubjectFilter::new(s.clone())
                .map_err(|e| EngineError::invalid_config(format!("invalid subject '{s}': {e}")))
        })
        .collect()
}

impl Station {
    /// A station with an empty index; [`Station::recover`] fills it from storage.
    pub fn new(
        id: u64,
        tenant: TenantId,
        created: SystemTime,
        config: StationConfig,
        store: Store,
    ) -> Result<Self, EngineError> {
        let filters = filters_of(&config)?;
        let committed = Arc::new(AtomicU64::new(0));
        let replicated = std::sync::atomic::AtomicBool::new(config.replicas > 1);
        Ok(Station {
            replicated,
            id,
            tenant,
            created,
            name: Arc::from(config.name.as_str()),
            log: Mutex::new(Log::new(
                Limits::of(&config),
                store.clone(),
                id,
                committed.clone(),
            )),
            schema: RwLock::new(binding_of(&config)),
            transforms: RwLock::new(Transforms::of(&config)),
            config: RwLock::new(config),
            filters: RwLock::new(filters),
            store,
            groups: RwLock::new(Groups::default()),
            committed,
            in_flight: Mutex::new(VecDeque::new()),
            replica: std::sync::OnceLock::new(),
            bytes_seen: AtomicU64::new(0),
            tier: std::sync::OnceLock::new(),
            compaction: Mutex::new(compact::Compaction::default()),
            compact_due: AtomicU64::new(0),
            compacted: AtomicU64::new(0),
        })
    }

    /// Raises the last sequence to `seen` after recovery, when the log says
    /// less: the newest messages were deleted (consumed under interest or
    /// work-queue retention, whose deletes write no sequence floor) and a
    /// consumer group's saved position still refers to them. New messages then
    /// get sequences above anything a group has seen. Only the counter moves:
    /// no message lies above the old last sequence, so the index windows hold.
    /// `why` names what saw the higher sequence, for the log line.
    /// Sets the last sequence to `through` if the station never held a
    /// message (its last sequence is 0), so that the next one gets a sequence
    /// above it; otherwise its last sequence. Under the log's lock: a publish
    /// is either before (and refuses this) or after (and gets a higher
    /// sequence).
    pub fn claim_sequences_if_empty(&self, through: u64) -> Result<(), u64> {
        let mut log = self.log.lock();
        if log.last_seq != 0 || log.msgs != 0 {
            return Err(log.last_seq);
        }
        log.last_seq = through;
        self.committed.store(through, Ordering::Release);
        Ok(())
    }

    pub fn raise_last_seq(&self, seen: u64, why: &str) {
        let mut log = self.log.lock();
        if seen > log.last_seq {
            tracing::info!(station = %self.name, from = log.last_seq, to = seen, "station sequence raised to what {why} holds");
            log.last_seq = seen;
            self.committed.store(seen, Ordering::Release);
        }
    }

    /// Rebuilds the index from storage. `seq_floor` is the last sequence recorded
    /// when the log was last emptied; `clean_boot` is the boot id of the clean
    /// shutdown that wrote the snapshots, when the last run ended with one.
    pub fn recover(&self, seq_floor: u64, clean_boot: Option<u64>) -> Result<(), EngineError> {
        self.reset_compaction();
        let mut log = self.log.lock();
        if log.limits.memory {
            log.last_seq = seq_floor;
            log.reset_windows(seq_floor + 1);
            self.committed.store(seq_floor, Ordering::Release);
            return Ok(());
        }
        self.load_compacted();
        let snapshot = clean_boot.and_then(|boot| self.load_snapshot(boot));
        let used_snapshot = snapshot.is_some();
        let (first, corrupt) = match snapshot {
            Some(s) => {
                let first = s.first_seq;
                let from = s.last_seq + 1;
                apply_snapshot(&mut log, s);
                // Anything written after the snapshot (nothing, after a clean
                // shutdown) is replayed on top of it.
                let (replayed_first, corrupt) = self.replay(&mut log, from)?;
                let first = if log.msgs > 0 && first > 0 && first <= log.last_seq {
                    first
                } else {
                    replayed_first.unwrap_or(log.last_seq + 1)
                };
                (first, corrupt)
            }
            None => {
                let (first, corrupt) = self.replay(&mut log, 0)?;
                (first.unwrap_or(0), corrupt)
            }
        };
        if corrupt > 0 {
            // Sequence numbers are never reused, even a corrupt record's.
            log.last_seq = log.last_seq.max(self.store.last_seq(self.id).unwrap_or(0));
            tracing::error!(station = %self.name, corrupt, "station recovered without its corrupt records");
        }
        log.last_seq = log.last_seq.max(seq_floor);
        log.reset_windows(first);
        self.committed.store(log.last_seq, Ordering::Release);
        tracing::debug!(station = %self.name, snapshot = used_snapshot, messages = log.msgs, "station index recovered");
        Ok(())
    }

    /// Forgets the index and rebuilds it from the store, whose log for this
    /// station was replaced (a replica that installed its leader's snapshot);
    /// `seq_floor` is the snapshot's last sequence.
    pub fn reload(&self, seq_floor: u64) -> Result<(), EngineError> {
        {
            let mut log = self.log.lock();
            *log = Log::new(
                Limits::of(&self.config.read()),
                self.store.clone(),
                self.id,
                self.committed.clone(),
            );
        }
        self.recover(seq_floor, None)
    }

    /// This station's clean-shutdown snapshot, when it was written by `boot`.
    fn load_snapshot(&self, boot: u64) -> Option<Snapshot> {
        let bytes = match self.store.get_meta(&snapshot::key(self.id)) {
            Ok(b) => b?,
            Err(e) => {
                tracing::warn!(station = %self.name, error = %e, "cannot read the station snapshot; scanning the log");
                return None;
            }
        };
        let tracks = self.config.read().max_msgs_per_subject > 0;
        match Snapshot::decode(&bytes) {
            Some(s) if s.boot == boot && s.consistent(tracks) => Some(s),
            Some(s) if s.boot == boot => {
                tracing::warn!(station = %self.name, "station snapshot does not add up; scanning the log");
                None
            }
            Some(_) => None,
            None => {
                tracing::warn!(station = %self.name, "station snapshot is damaged; scanning the log");
                None
            }
        }
    }

    /// Adds every record from `from` on to the index (counters, subjects, dedup
    /// window); returns the first sequence read and how many records were corrupt.
    fn replay(&self, log: &mut Log, from: u64) -> Result<(Option<u64>, u64), EngineError> {
        let now = now_ns();
        let window = log.limits.duplicate_window.as_nanos() as u64;
        let mut corrupt = 0u64;
        let mut first = None;
        let mut start = from;
        'scan: loop {
            for item in self.store.scan_between(self.id, start, u64::MAX) {
                let r = match item {
                    Ok(r) => r,
                    // A corrupt record (counted and logged by the store) is left out
                    // of the index rather than keeping the station, and the broker,
                    // from starting.
                    Err((Some(seq), StorageError::Corrupt(_))) => {
                        corrupt += 1;
                        start = seq + 1;
                        continue;
                    }
                    // A damaged block ends the scan; go on from the next sequence
                    // that can be read.
                    Err((None, StorageError::Corrupt(_))) => {
                        corrupt += 1;
                        start += 1;
                        if self.store.last_seq(self.id).is_none_or(|h| start > h) {
                            break 'scan;
                        }
                        continue 'scan;
                    }
                    Err((_, e)) => return Err(storage_error(e)),
                };
                start = r.seq + 1;
                first.get_or_insert(r.seq);
                index_record(log, &r, now, window);
            }
            break;
        }
        Ok((first, corrupt))
    }

    /// A memory station's messages up to `upto`, in sequence order (what a
    /// replicated memory station's snapshot holds).
    pub fn memory_records(&self, upto: u64) -> Vec<Record> {
        let log = self.log.lock();
        log.memory.range(..=upto).map(|(_, r)| r.clone()).collect()
    }

    /// Replaces a memory station's messages and index with `records` (in
    /// sequence order); `seq_floor` is the last sequence they come to (a
    /// replicated memory station installing a snapshot, or rebuilt from its
    /// own after a restart).
    pub fn load_memory(&self, records: Vec<Record>, seq_floor: u64) {
        let now = now_ns();
        let mut log = self.log.lock();
        *log = Log::new(
            Limits::of(&self.config.read()),
            self.store.clone(),
            self.id,
            self.committed.clone(),
        );
        let window = log.limits.duplicate_window.as_nanos() as u64;
        let first = records.first().map(|r| r.seq);
        for r in records {
            index_record(&mut log, &r, now, window);
            log.memory.insert(r.seq, r);
        }
        log.last_seq = log.last_seq.max(seq_floor);
        let first = first.unwrap_or(log.last_seq + 1);
        log.reset_windows(first);
        self.committed.store(log.last_seq, Ordering::Release);
    }

    /// The snapshot to write at clean shutdown (`None` for a memory station, which
    /// keeps nothing across a restart). Marks the index sealed: a change after
    /// this withdraws the snapshot marker.
    pub fn snapshot(&self, boot: u64) -> Option<(String, Vec<u8>)> {
        let mut log = self.log.lock();
        if log.limits.memory {
            return None;
        }
        let first_seq = log.first_seq();
        let s = Snapshot {
            boot,
            last_seq: log.last_seq,
            last_time_ns: log.last_time_ns,
            msgs: log.msgs,
            bytes: log.bytes,
            first_seq,
            last_msg_id: log.last_msg_id.clone(),
            subjects: log
                .per_subject
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            dedup: log
                .dedup_order
                .iter()
                .filter_map(|(_, id)| log.dedup.get(id).map(|(seq, t)| (id.clone(), *seq, *t)))
                .collect(),
        };
        log.sealed = true;
        Some((snapshot::key(self.id), s.encode()))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The station's name, shared.
    pub fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }

    /// The retention policy, without copying the whole configuration.
    pub fn retention(&self) -> Retention {
        self.config.read().retention
    }

    /// The attached schema, if any (cheap: no configuration copy).
    pub fn schema(&self) -> Option<SchemaBinding> {
        self.schema.read().clone()
    }

    pub fn config(&self) -> StationConfig {
        self.config.read().clone()
    }

    pub fn filters(&self) -> Vec<SubjectFilter> {
        self.filters.read().clone()
    }

    /// Does this station capture `subject`?
    pub fn captures(&self, subject: &Subject) -> bool {
        self.filters.read().iter().any(|f| f.matches(subject))
    }

    /// Replaces the configuration (the caller checked what may change).
    pub fn set_config(&self, config: StationConfig) -> Result<Vec<u64>, EngineError> {
        let filters = filters_of(&config)?;
        if config.compact != self.config.read().compact {
            // What the old policy made due says nothing under the new one: a
            // pass looks at once.
            self.compact_due.store(0, Ordering::Release);
        }
        let mut log = self.log.lock();
        log.set_limits(Limits::of(&config));
        let evicted = log.over_limits();
        *self.filters.write() = filters;
        *self.schema.write() = binding_of(&config);
        *self.transforms.write() = Transforms::of(&config);
        *self.config.write() = config;
        let queued = self.queue_deletes(&log, &evicted);
        drop(log);
        self.deleted(queued, &evicted)?;
        Ok(evicted)
    }

    pub fn state(&self) -> StationState {
        let consumer_count = self.groups.read().len() as u64;
        let mut log = self.log.lock();
        // A station that never stored anything reports 0, as nats-server does.
        let first_seq = if log.last_seq == 0 {
            0
        } else {
            log.first_seq()
        };
        let first_time = log.first_time_ns().map(time_of);
        let messages = log.msgs;
        let span = if log.last_seq == 0 {
            0
        } else {
            (log.last_seq + 1).saturating_sub(first_seq)
        };
        let mut state = StationState {
            messages,
            bytes: log.bytes,
            first_seq,
            first_time,
            last_seq: log.last_seq,
            last_time: (log.last_time_ns > 0).then(|| time_of(log.last_time_ns)),
            num_subjects: log.per_subject.len() as u64,
            num_deleted: span.saturating_sub(messages),
            consumer_count,
            tier: None,
            compacted: self.compacted(),
        };
        let local_first = log.first_seq();
        let last_seq = log.last_seq;
        // Subjects whose messages are all in the bucket count too: those
        // also local are counted under the lock, the rest after it.
        let also_local = self.tier.get().map_or(0, |t| {
            t.remote_subjects_also_local(local_first, log.per_subject.keys(), |s| {
                log.per_subject.contains_key(s)
            })
        });
        drop(log);
        if let Some(tier) = self.tier.get() {
            state.num_subjects += tier.remote_subjects(local_first).saturating_sub(also_local);
            state.tier = Some(self.tier_state(tier, &mut state, local_first, last_seq));
        }
        state
    }

    /// The tier's share of `state`, whose totals it extends by the messages
    /// held only remotely.
    fn tier_state(
        &self,
        tier: &super::tier::StationTier,
        state: &mut StationState,
        local_first: u64,
        last_seq: u64,
    ) -> junction_api::TierState {
        let (segments, remote_bytes, remote_only) = tier.totals(local_first);
        let uploaded = tier.uploaded_through();
        let committed = self.committed.load(Ordering::Acquire);
        let lag_from = (uploaded + 1).max(local_first);
        let lag_oldest = tier.lag_oldest_ns();
        let t = junction_api::TierState {
            local_messages: state.messages,
            local_bytes: state.bytes,
            local_first_seq: local_first,
            remote_messages: remote_only,
            remote_bytes,
            segments,
            upload_lag_messages: (committed + 1).saturating_sub(lag_from).min(state.messages),
            upload_lag_ms: if lag_oldest == 0 || committed < lag_from {
                0
            } else {
                now_ns().saturating_sub(lag_oldest) / 1_000_000
            },
            cache_hits: tier.reads.hits.load(Ordering::Relaxed),
            cache_misses: tier.reads.misses.load(Ordering::Relaxed),
            disk_cache_hits: tier.reads.disk_hits.load(Ordering::Relaxed),
        };
        if let Some(remote_first) = tier.first_seq().filter(|f| *f < local_first) {
            state.messages += remote_only;
            state.bytes += tier.remote_bytes_below(local_first);
            state.first_seq = remote_first;
            state.first_time = tier.first_time_ns().map(time_of);
            let span = (last_seq + 1).saturating_sub(remote_first);
            state.num_deleted = span.saturating_sub(state.messages);
        }
        t
    }

    /// Attaches the station's remote tier (the broker has a `[tier]` bucket).
    /// `recovered`: the station was read from the store at start (an empty
    /// remote index is then rebuilt from the bucket's manifest, if any); a
    /// station just created has a new unique id and nothing in the bucket.
    pub fn attach_tier(
        self: &Arc<Self>,
        remote: Arc<junction_storage::tier::Remote>,
        recovered: bool,
    ) -> Result<(), EngineError> {
        if self.log.lock().limits.memory {
            return Ok(());
        }
        let tier = super::tier::StationTier::load(remote, &self.store, self, recovered)?;
        // New messages get sequences above every segment in the index (one
        // rebuilt from the bucket may reach past the local log).
        self.raise_last_seq(tier.uploaded_through(), "the remote tier index");
        let _ = self.tier.set(Arc::new(tier));
        Ok(())
    }

    /// Its remote tier, if attached.
    pub fn tier(&self) -> Option<&Arc<super::tier::StationTier>> {
        self.tier.get()
    }

    /// The store it lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// An id unique to this station across deletes and re-creations: its id
    /// and creation time. Object keys use it.
    pub fn uid(&self) -> String {
        let created = self
            .created
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{created}", self.id)
    }

    /// The id its objects in the bucket are kept under: [`Station::uid`] for
    /// a station of one copy; for a replicated one its Raft group's id, the
    /// same on every replica (each has a local id and creation time of its
    /// own), so that whichever replica leads writes the same manifest and
    /// finds the same objects.
    pub fn tier_uid(&self) -> String {
        match self.replica.get() {
            Some(g) if self.is_replicated() => format!("g{:016x}", g.id()),
            _ => self.uid(),
        }
    }

    /// Highest sequence durably stored.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// The local log's (first sequence, messages, bytes).
    pub fn local_counts(&self) -> (u64, u64, u64) {
        let mut log = self.log.lock();
        (log.first_seq(), log.msgs, log.bytes)
    }

    /// Lets every consumer group deliver what it can now.
    pub fn fill_groups(&self) {
        let groups: Vec<Arc<super::group::Group>> = self.groups.read().values().cloned().collect();
        for g in groups {
            g.fill(self);
        }
    }

    /// Removes from local disk every message below `below`, all of which are in
    /// uploaded segments (the caller checked): they stay readable remotely.
    pub fn remove_uploaded(&self, below: u64) -> Result<u64, EngineError> {
        let committed = self.committed.load(Ordering::Acquire);
        if below > committed + 1 {
            return Err(EngineError::Storage(format!(
                "refusing to remove messages up to {below}: only {committed} are committed"
            )));
        }
        self.purge_now(&Purge {
            filter: None,
            seq: Some(below),
            keep: None,
        })
    }

    /// Whether message `seq` can be read without waiting on S3: it is local,
    /// or its remote block is cached. When not, the block is fetched in the
    /// background and the groups are woken once it is in.
    pub(crate) fn readable_now(&self, seq: u64) -> bool {
        let Some(tier) = self.tier.get() else {
            return true;
        };
        if seq > tier.uploaded_through() || seq < tier.floor() || seq >= self.log.lock().first_seq()
        {
            return true;
        }
        let Some(seg) = tier.segment_from(seq).filter(|s| s.first_seq <= seq) else {
            return true;
        };
        if tier.is_cached(&seg, seq) {
            return true;
        }
        tier.prefetch(&seg, seq);
        false
    }

    /// For a consumer group whose cursor is `from`: up to `max` (at least one)
    /// remote messages from there on that match `filters`, when the cursor is
    /// below the local log and the block is cached; otherwise
    /// [`RemoteRead::Pending`] (a fetch is started) or [`RemoteRead::Local`].
    /// Only what is taken is copied: a group asks again from its cursor, and a
    /// block holds thousands of small messages.
    pub(crate) fn remote_from(
        &self,
        from: u64,
        filters: &[SubjectFilter],
        max: usize,
    ) -> RemoteRead {
        let Some(tier) = self.tier.get() else {
            return RemoteRead::Local;
        };
        // Past everything uploaded: local, without taking the index's lock.
        if from > tier.uploaded_through() {
            return RemoteRead::Local;
        }
        let local_first = self.log.lock().first_seq();
        if from >= local_first {
            return RemoteRead::Local;
        }
        let Some(seg) = tier
            .segment_from(from)
            .filter(|s| s.first_seq < local_first)
        else {
            return RemoteRead::Local;
        };
        let from = from.max(seg.first_seq).max(tier.floor());
        let Some(block) = tier.cached_block(&seg, from) else {
            // Its block, and what follows it, unless being fetched already.
            tier.read_ahead(from, local_first, REMOTE_READ_AHEAD);
            return RemoteRead::Pending;
        };
        let last = block.last().map_or(from, |r| r.seq);
        let block_end = (last + 1).min(local_first).max(from + 1);
        tier.read_ahead(block_end, local_first, REMOTE_READ_AHEAD);
        let max = max.max(1);
        let mut next = block_end;
        let mut messages = Vec::new();
        let start = block.partition_point(|r| r.seq < from);
        for r in &block[start..] {
            if r.seq >= local_first {
                break;
            }
            if !matches_any(filters, &r.subject) {
                continue;
            }
            if messages.len() == max {
                next = r.seq;
                break;
            }
            messages.push(stored_message(r.clone()));
        }
        RemoteRead::Ready { messages, next }
    }

    /// Whether it is written only through its Raft group.
    pub fn is_replicated(&self) -> bool {
        self.replicated.load(Ordering::Acquire)
    }

    /// From now on it is written only through its Raft group: a station of one
    /// copy becoming replicated (its group is seeded from this copy). Never
    /// undone: a replicated station brought down to one copy keeps a group of
    /// one member.
    pub fn set_replicated(&self) {
        self.replicated.store(true, Ordering::Release);
    }

    pub fn last_seq(&self) -> u64 {
        self.log.lock().last_seq
    }

    /// Its storage kind and copies (`replicas`, at least 1).
    pub fn storage_and_replicas(&self) -> (StorageKind, u32) {
        let c = self.config.read();
        (c.storage, c.replicas.max(1))
    }

    /// The bytes it stores now, as its `max_bytes` counts them. For the tenant's
    /// storage limit, read from the publish path: should its log be locked for
    /// long (or by the caller), the figure last read is answered rather than
    /// waiting.
    pub fn stored_bytes(&self) -> u64 {
        match self.log.try_lock_for(Duration::from_millis(10)) {
            Some(log) => {
                let bytes = log.bytes;
                drop(log);
                self.bytes_seen.store(bytes, Ordering::Relaxed);
                bytes
            }
            None => self.bytes_seen.load(Ordering::Relaxed),
        }
    }

    /// Stores `message` with its lineage section (`lineage`, kept beside it; empty:
    /// none) under the producer's `options` (de-duplication id, preconditions),
    /// then calls `done` once it is durable (or refused), and then lets consumer
    /// groups deliver it.
    /// Whether it answers direct gets (`allow_direct`): one flag read.
    pub fn allows_direct(&self) -> bool {
        self.config.read().allow_direct
    }

    /// Its republish policy, if it has one (read on every append: only the
    /// policy is cloned, never the whole definition).
    /// The subject a publish to `subject` is stored under: its
    /// `subject_transform`'s destination when it has one that matches.
    pub fn input_subject(&self, subject: &Subject) -> Option<Subject> {
        let t = self.transforms.read().input.clone()?;
        t.apply_subject(subject).filter(|s| s != subject)
    }

    /// Its republish policy and compiled destination, if it has one that
    /// compiles.
    pub fn republish(&self) -> Option<Arc<super::republish::Policy>> {
        self.transforms.read().republish.clone()
    }

    /// The newest live sequence on `subject` (0: none), from the index.
    pub fn last_seq_of(&self, subject: &[u8]) -> u64 {
        self.log
            .lock()
            .per_subject
            .get(subject)
            .map_or(0, |s| s.last)
    }

    pub fn append(
        self: &Arc<Self>,
        message: &Message,
        options: &PublishOptions,
        lineage: Bytes,
        done: Option<StoredCallback>,
    ) {
        // A replicated station is written only by applying its group's
        // committed entries: nothing may store into one copy on its own.
        if self.is_replicated() {
            if let Some(done) = done {
                done(Err(EngineError::ReplicasUnavailable(format!(
                    "station '{}' is replicated: it takes writes through its leader only",
                    self.name
                ))));
            }
            return;
        }
        self.append_with(message, options, lineage, now_ns(), None, done)
    }

    /// [`Station::append`] at the time `now` (ns since the epoch), with `mark`
    /// (a replicated station's applied mark) written in the same store batch as
    /// the message. Deterministic: the same appends in the same order at the
    /// same times leave every replica with the same log.
    pub fn append_with(
        self: &Arc<Self>,
        message: &Message,
        options: &PublishOptions,
        lineage: Bytes,
        now: u64,
        mark: Option<junction_storage::RaftOp>,
        done: Option<StoredCallback>,
    ) {
        self.append_batch(
            vec![Append {
                message,
                options,
                lineage,
                now,
                done,
            }],
            mark,
        );
    }

    /// Appends in order, as [`Station::append_with`] does one by one, but in
    /// one store write (one job, one atomic batch, `mark` once after them): a
    /// replicated station applies a log entry's publishes this way. Each
    /// append's `done` is answered as it would be alone.
    pub fn append_batch(
        self: &Arc<Self>,
        appends: Vec<Append<'_>>,
        mark: Option<junction_storage::RaftOp>,
    ) {
        let mut log = self.log.lock();
        let l = log.limits;
        let mut ops = Vec::with_capacity(appends.len() + 1);
        let mut in_flight = Vec::with_capacity(appends.len());
        let mut stored_memory = Vec::new();
        // Answered after the station lock is released.
        let mut answers: Vec<(StoredCallback, Result<PubAck, EngineError>)> = Vec::new();
        // Rollups stored: what they replace is purged after the batch.
        let mut rollups: Vec<Purge> = Vec::new();
        for a in appends {
            let admitted = self.admit(&mut log, &l, a.message, a.options, a.now);
            let (seq, evicted) = match admitted {
                Admitted::Refused(r) => {
                    if let Some(done) = a.done {
                        answers.push((done, r));
                    }
                    continue;
                }
                Admitted::New { seq, evicted } => (seq, evicted),
            };
            match &a.options.rollup {
                Some(junction_api::Rollup::Subject) => rollups.push(Purge {
                    filter: Some(a.message.subject.to_str_lossy().into_owned()),
                    seq: Some(seq),
                    keep: None,
                }),
                Some(junction_api::Rollup::All) => rollups.push(Purge {
                    filter: None,
                    seq: Some(seq),
                    keep: None,
                }),
                _ => {}
            }
            let record = Record {
                seq,
                time_ns: a.now,
                subject: a.message.subject.bytes().clone(),
                headers: a.message.headers.clone(),
                payload: a.message.payload.clone(),
                lineage: a.lineage,
            };
            if l.memory {
                log.memory.insert(seq, record);
                for s in &evicted {
                    log.memory.remove(s);
                }
                // Visible to groups before the ack: a fetch that follows an ack finds it.
                self.committed.fetch_max(seq, Ordering::AcqRel);
                if let Some(done) = a.done {
                    answers.push((
                        done,
                        Ok(PubAck {
                            station: self.name.to_string(),
                            seq,
                            duplicate: false,
                        }),
                    ));
                }
                stored_memory.push((seq, a.message.subject.bytes().clone()));
                continue;
            }
            ops.push(LogOp::Put(record));
            ops.extend(evicted.iter().copied().map(LogOp::Delete));
            in_flight.push(InFlight {
                seq,
                subject: a.message.subject.bytes().clone(),
                evicted,
                done: a.done,
            });
        }
        let through = in_flight.last().map(|f| f.seq);
        if let Some(through) = through {
            let has_mark = mark.is_some();
            ops.extend(mark.map(LogOp::Raft));
            // Queued under the station lock, so the log is written, and the
            // in-flight queue kept, in sequence order.
            self.in_flight.lock().extend(in_flight);
            // A replicated station's copy (`mark` set) is applied from its Raft
            // log, which is fsynced on a quorum before the entry is applied: the
            // copy need not wait for an fsync of its own. After a crash it is
            // rebuilt from the log, from the newest applied mark on disk
            // (written in this same batch).
            let durability = if has_mark {
                Durability::Interval(REPLICATED_APPLY_SYNC)
            } else {
                l.durability
            };
            self.store.append_marked(
                self.id,
                ops,
                durability,
                through,
                self.clone() as Arc<dyn CommitSink>,
            );
        }
        drop(log);
        for (done, r) in answers {
            done(r);
        }
        if !stored_memory.is_empty() {
            self.stored(&stored_memory);
        }
        // Behind the rollup in the writer's queue: on disk, the old messages
        // never go before the rollup message is there.
        for purge in rollups {
            if let Err(e) = self.purge_now(&purge) {
                tracing::warn!(station = %self.name, error = %e, "rollup: earlier messages not removed");
            }
        }
    }

    /// Checks one append against the station's state and, when it is to be
    /// stored, takes its sequence and updates the index, the de-duplication
    /// window and the limits (what it evicts).
    fn admit(
        &self,
        log: &mut Log,
        l: &Limits,
        message: &Message,
        options: &PublishOptions,
        now: u64,
    ) -> Admitted {
        let headers = message.headers.as_ref();
        let size = accounted_size(
            message.subject.as_bytes().len(),
            headers,
            message.payload.len(),
        );
        let id = options.msg_id.clone().filter(|id| !id.is_empty());
        // A failed store takes no more writes until restart: refuse before taking a
        // sequence, so the station's counts never include what was not stored.
        if !l.memory && self.store.is_poisoned() {
            return Admitted::Refused(Err(self.write_failed(StorageError::Poisoned)));
        }
        if l.sealed {
            return Admitted::Refused(Err(EngineError::Denied(junction_api::Denial::Sealed)));
        }
        if l.max_msg_size >= 0 && message.payload.len() as i64 > l.max_msg_size {
            return Admitted::Refused(Err(EngineError::MessageTooLarge));
        }
        if let Err(e) = self.check_expected(log, options, &message.subject) {
            return Admitted::Refused(Err(e));
        }
        log.expire_dedup(now);
        if let Some(id) = &id
            && let Some((seq, _)) = log.dedup.get(id)
        {
            return Admitted::Refused(Ok(PubAck {
                station: self.name.to_string(),
                seq: *seq,
                duplicate: true,
            }));
        }
        if l.discard == Discard::New {
            if l.max_msgs >= 0 && log.msgs as i64 >= l.max_msgs {
                return Admitted::Refused(Err(EngineError::MaxMessages));
            }
            if l.max_bytes >= 0 && (log.bytes + size) as i64 > l.max_bytes {
                return Admitted::Refused(Err(EngineError::MaxBytes));
            }
        }
        if let Some(policy) = &l.compact {
            let had = log.per_subject.contains_key(message.subject.as_bytes());
            self.compaction_due_on_append(policy, had, junction_api::is_tombstone(headers), now);
        }
        let seq = log.last_seq + 1;
        log.last_seq = seq;
        log.last_time_ns = now;
        log.remember(
            seq,
            Entry {
                // A copy: the message's subject may be a slice of its connection's
                // read buffer, which a reference kept here would keep alive whole.
                subject: Bytes::copy_from_slice(message.subject.as_bytes()),
                size,
                time_ns: now,
            },
        );
        if let Some(id) = id {
            log.dedup.insert(id.clone(), (seq, now));
            log.dedup_order.push_back((now, id.clone()));
            log.last_msg_id = Some(id);
        }
        let evicted = log.over_limits();
        Admitted::New { seq, evicted }
    }

    /// Takes the in-flight appends up to `through` off the queue.
    fn take_in_flight(&self, through: u64) -> Vec<InFlight> {
        let mut q = self.in_flight.lock();
        let n = q.partition_point(|f| f.seq <= through);
        q.drain(..n).collect()
    }

    /// A failed write, said the same way for the write that failed and for every
    /// one refused after it: the store's first failure, and that it lasts.
    fn write_failed(&self, e: StorageError) -> EngineError {
        match self.store.failure() {
            Some(reason) => {
                EngineError::Storage(format!("storage failed: {reason}; no writes until restart"))
            }
            None => storage_error(e),
        }
    }

    /// The write of `seq` (and of the deletes of `evicted`) failed: take `seq` out
    /// of the index and the dedup window, and put `evicted` back, so the counts say
    /// what is on disk and a retry with the same message id is stored, not answered
    /// as a duplicate.
    fn not_stored(&self, seq: u64, evicted: &[u64]) {
        let back: Vec<(u64, Entry)> = evicted
            .iter()
            .filter_map(|s| match self.store.read(self.id, *s) {
                Ok(Some(r)) => Some((
                    *s,
                    Entry {
                        size: accounted_size(r.subject.len(), r.headers.as_ref(), r.payload.len()),
                        subject: r.subject,
                        time_ns: r.time_ns,
                    },
                )),
                _ => None,
            })
            .collect();
        let mut log = self.log.lock();
        log.forget(seq);
        log.dedup.retain(|_, (s, _)| *s != seq);
        for (s, entry) in back {
            log.restore(s, entry);
        }
        // Later appends fail too (the store is poisoned), so the newest sequence
        // falls back to what was stored.
        let newest = log.newest();
        log.last_seq = self.committed.load(Ordering::Acquire).max(newest);
    }

    /// `stored` (sequence, subject) are durable: apply interest retention and wake
    /// each consumer group once.
    fn stored(&self, stored: &[(u64, Bytes)]) {
        let groups: Vec<Arc<super::group::Group>> = self.groups.read().values().cloned().collect();
        if self.retention() == Retention::Interest {
            for (seq, subject) in stored {
                if !groups.iter().any(|g| g.interested_in(subject)) {
                    self.remove_consumed(*seq);
                }
            }
        }
        for g in groups {
            g.fill(self);
        }
    }

    /// Up to `max` live messages from `from` on, as (sequence, subject), read
    /// without holding the index while the caller looks at them.
    pub fn live_chunk(&self, from: u64, max: usize) -> Vec<(u64, Bytes)> {
        let mut out = Vec::new();
        self.log.lock().walk(from, |m| {
            out.push((m.seq, m.subject.clone()));
            if out.len() >= max {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        out
    }

    /// Removes a message every interested group is done with (interest and
    /// work-queue retention). The delete is made durable within a second.
    pub fn remove_consumed(&self, seq: u64) {
        let mut log = self.log.lock();
        if log.forget(seq).is_some() && !log.limits.memory {
            // Queued under the station lock: every later put follows it in the log.
            let mut ops = vec![LogOp::Delete(seq)];
            ops.extend(self.floor_with(&log, &[seq]));
            self.store.append(
                self.id,
                ops,
                Durability::Interval(Duration::from_secs(1)),
                Box::new(|_| {}),
            );
        }
    }

    /// The newest `max` stored messages that have a lineage section, newest first,
    /// as (sequence, subject, lineage): what the lineage index is refilled from at
    /// start-up. A memory station has nothing stored across a restart.
    pub fn newest_lineage(&self, max: usize) -> Vec<(u64, Bytes, Bytes)> {
        if self.log.lock().limits.memory {
            return Vec::new();
        }
        self.store
            .scan_rev(self.id)
            .take(max)
            // A corrupt record (counted and logged by the store) ends the walk.
            .map_while(Result::ok)
            .filter(|r| !r.lineage.is_empty())
            .map(|r| (r.seq, r.subject, r.lineage))
            .collect()
    }

    /// The subject of a stored message.
    pub fn subject_of(&self, seq: u64) -> Option<Bytes> {
        self.log.lock().subject_of(seq)
    }

    /// (first sequence, last sequence).
    pub fn bounds(&self) -> (u64, u64) {
        let mut log = self.log.lock();
        let local = log.first_seq();
        let first = self
            .tier
            .get()
            .and_then(|t| t.first_seq())
            .map_or(local, |r| r.min(local));
        (first, log.last_seq)
    }

    /// The first sequence stored at or after `t` (or the next sequence).
    pub fn first_seq_at_or_after(&self, t: SystemTime) -> u64 {
        let ns = t
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut log = self.log.lock();
        if let Some(tier) = self.tier.get() {
            let local_first = log.first_seq();
            let before_local = log.first_time_ns().is_none_or(|t| ns < t);
            if before_local {
                drop(log);
                if let Some(seq) = tier.first_at_or_after(ns, local_first) {
                    return seq;
                }
                log = self.log.lock();
            }
        }
        first_at_or_after(&mut log, ns).unwrap_or(log.last_seq + 1)
    }

    /// The newest sequence of every subject matching `filters` (all when empty),
    /// with the subjects whose messages are all in the bucket.
    pub fn last_per_subject(&self, filters: &[SubjectFilter]) -> Vec<u64> {
        self.last_per_subject_below(filters, u64::MAX)
    }

    /// [`Station::last_per_subject`] when every local subject's newest is at
    /// most `up_to`; a subject only in the bucket counts when its last
    /// message there is at most `up_to`.
    fn last_per_subject_below(&self, filters: &[SubjectFilter], up_to: u64) -> Vec<u64> {
        let mut log = self.log.lock();
        let local_first = log.first_seq();
        let mut seqs: Vec<u64> = log
            .per_subject
            .iter()
            .filter(|(s, _)| matches_any(filters, s))
            .map(|(_, s)| s.last)
            .collect();
        if let Some(tier) = self.tier.get() {
            let local = &log.per_subject;
            seqs.extend(tier.last_per_subject(local_first, up_to, |s| {
                matches_any(filters, s) && !local.contains_key(s)
            }));
        }
        seqs.sort_unstable();
        seqs
    }

    /// [`Station::last_per_subject`] among sequences up to `up_to` (all when
    /// `None`): a subject whose newest is later is found by walking the
    /// index up to `up_to`.
    pub fn last_per_subject_up_to(
        &self,
        filters: &[SubjectFilter],
        up_to: Option<u64>,
    ) -> Vec<u64> {
        let Some(up_to) = up_to else {
            return self.last_per_subject(filters);
        };
        let mut log = self.log.lock();
        let all_before = log
            .per_subject
            .iter()
            .filter(|(s, _)| matches_any(filters, s))
            .all(|(_, s)| s.last <= up_to);
        if all_before {
            drop(log);
            return self.last_per_subject_below(filters, up_to);
        }
        // Subjects only in the bucket whose last message there is at most
        // `up_to` (one whose last there is later is not looked for further).
        let mut remote = Vec::new();
        if let Some(tier) = self.tier.get() {
            let local_first = log.first_seq();
            let local = &log.per_subject;
            remote = tier.last_per_subject(local_first, up_to, |s| {
                matches_any(filters, s) && !local.contains_key(s)
            });
        }
        let mut last: std::collections::HashMap<Vec<u8>, u64> = std::collections::HashMap::new();
        log.walk(1, |m| {
            if m.seq > up_to {
                return ControlFlow::Break(());
            }
            if matches_any(filters, m.subject) {
                last.insert(m.subject.to_vec(), m.seq);
            }
            ControlFlow::Continue(())
        });
        let mut seqs: Vec<u64> = last.into_values().chain(remote).collect();
        seqs.sort_unstable();
        seqs
    }

    /// The first durable sequence at or after `from` matching `filters`.
    pub fn next_from(&self, from: u64, filters: &[SubjectFilter]) -> Option<u64> {
        self.next_within(from, filters).0
    }

    /// [`Station::next_from`], with the committed sequence it looked up to:
    /// when nothing matched, nothing from `from` to it ever will.
    pub fn next_within(&self, from: u64, filters: &[SubjectFilter]) -> (Option<u64>, u64) {
        let committed = self.committed.load(Ordering::Acquire);
        if from > committed {
            return (None, committed);
        }
        let log = self.log.lock();
        (next_matching(&log, from, filters, committed), committed)
    }

    /// How many stored messages at or after `from` match `filters`.
    pub fn count_from(&self, from: u64, filters: &[SubjectFilter]) -> u64 {
        self.count_from_bounded(from, filters, u64::MAX)
            .unwrap_or_default()
    }

    /// [`Station::count_from`], or `None` when it would walk more than `max`
    /// index entries.
    pub fn count_from_bounded(
        &self,
        from: u64,
        filters: &[SubjectFilter],
        max: u64,
    ) -> Option<u64> {
        let mut log = self.log.lock();
        if from > log.last_seq {
            return Some(0);
        }
        let mut from = from;
        // No match past the filters' last message.
        let mut until = u64::MAX;
        if filters.is_empty() {
            let first = log.first_seq();
            if from <= first {
                return Some(log.msgs);
            }
            // No message deleted between the first and the last: plain arithmetic.
            if log.msgs == log.last_seq + 1 - first {
                return Some(log.last_seq + 1 - from);
            }
        } else {
            let Some((first, last)) = log.subject_bounds(filters) else {
                return Some(0);
            };
            if last < from {
                return Some(0);
            }
            if filters.iter().all(SubjectFilter::is_literal) {
                let subjects: Vec<_> = filters
                    .iter()
                    .filter_map(|f| log.per_subject.get(f.as_bytes()))
                    .collect();
                if subjects.iter().all(|s| s.first >= from) {
                    return Some(subjects.iter().map(|s| s.count).sum());
                }
            }
            from = from.max(first);
            until = last;
        }
        let (mut n, mut steps) = (0u64, 0u64);
        let mut step = || {
            steps += 1;
            if steps > max {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        if filters.is_empty() {
            log.walk_seqs(from, |_| {
                n += 1;
                step()
            });
        } else {
            log.walk(from, |m| {
                if m.seq > until {
                    return ControlFlow::Break(());
                }
                if matches_any(filters, m.subject) {
                    n += 1;
                }
                step()
            });
        }
        (steps <= max).then_some(n)
    }

    /// Up to `max` durable messages from `from` on, in order, read in one range
    /// scan. Stops early (possibly empty) at a corrupt record or a read error; the
    /// caller reads one by one from there ([`Station::read_message`]).
    pub fn read_from(&self, from: u64, max: usize) -> Vec<StoredMessage> {
        let committed = self.committed.load(Ordering::Acquire);
        if from > committed || max == 0 {
            return Vec::new();
        }
        {
            let log = self.log.lock();
            if log.limits.memory {
                return log
                    .memory
                    .range(from..=committed)
                    .take(max)
                    .map(|(_, r)| stored_message(r.clone()))
                    .collect();
            }
        }
        self.store
            .scan(self.id, from)
            .map_while(Result::ok)
            .take_while(|r| r.seq <= committed)
            .take(max)
            .map(stored_message)
            .collect()
    }

    /// Reads a stored message.
    pub fn read_message(&self, seq: u64) -> Result<Option<StoredMessage>, EngineError> {
        Ok(self.read(seq)?.map(stored_message))
    }

    /// The producer's preconditions, checked as nats-server orders them.
    fn check_expected(
        &self,
        log: &mut Log,
        options: &PublishOptions,
        subject: &Subject,
    ) -> Result<(), EngineError> {
        match &options.rollup {
            Some(_) if !log.limits.rollup => return Err(EngineError::RollupNotPermitted),
            // nats-server: `Nats-Rollup` values other than `sub` and `all`.
            Some(junction_api::Rollup::Other(v)) => {
                return Err(EngineError::BadRequest(format!(
                    "rollup value invalid: {v}"
                )));
            }
            _ => {}
        }
        if let Some(expected) = &options.expected_station
            && expected.as_str() != &*self.name
        {
            return Err(EngineError::WrongExpectedStation);
        }
        if let Some(want) = options.expected_last_seq
            && want != log.last_seq
        {
            return Err(EngineError::WrongLastSequence(log.last_seq));
        }
        if let Some(want) = options.expected_last_subject_seq {
            // A subject whose messages are all in the bucket has its last
            // one there (a KV `update` of a key written long ago, or a
            // `create` of it refused).
            let actual = match log.per_subject.get(subject.as_bytes()) {
                Some(s) => s.last,
                None => match self.tier.get() {
                    Some(t) => {
                        let local_first = log.first_seq();
                        t.last_of_subject(subject.as_bytes(), local_first)
                            .unwrap_or(0)
                    }
                    None => 0,
                },
            };
            if want != actual {
                return Err(EngineError::WrongLastSubjectSequence(actual));
            }
        }
        if let Some(want) = &options.expected_last_msg_id {
            let actual = log.last_msg_id.clone().unwrap_or_default();
            if *want != actual {
                return Err(EngineError::WrongLastMsgId(actual));
            }
        }
        Ok(())
    }

    /// Deletes `seqs` from storage and waits until that is durable.
    /// Queues the deletes of `seqs`, fsynced; called with the station lock held
    /// (`log`), so every put queued later follows them. Wait with
    /// [`Station::deleted`] once the lock is released.
    fn queue_deletes(
        &self,
        log: &Log,
        seqs: &[u64],
    ) -> Option<mpsc::Receiver<Result<(), StorageError>>> {
        if seqs.is_empty() || log.limits.memory {
            return None;
        }
        let (tx, rx) = mpsc::channel();
        let mut ops: Vec<LogOp> = seqs.iter().copied().map(LogOp::Delete).collect();
        ops.extend(self.floor_with(log, seqs));
        self.store.append(
            self.id,
            ops,
            Durability::Sync,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        Some(rx)
    }

    /// The station's last sequence as its floor (`seqfloor/<id>`), to write in the
    /// same commit as deletes of `seqs` when they include the newest message: the
    /// log then no longer holds the last sequence, and a crash right after the
    /// delete would otherwise give that sequence out again (a work-queue or
    /// interest station whose consumers keep up deletes its newest message on
    /// every ack). Deletes of older messages leave a newer one in the log, which
    /// recovery reads the last sequence from.
    fn floor_with(&self, log: &Log, seqs: &[u64]) -> Option<LogOp> {
        seqs.contains(&log.last_seq).then(|| {
            LogOp::Meta(
                seq_floor_key(self.id),
                log.last_seq.to_string().into_bytes(),
            )
        })
    }

    /// Waits until deletes queued by [`Station::queue_deletes`] are durable; then
    /// the index need not remember them.
    fn deleted(
        &self,
        queued: Option<mpsc::Receiver<Result<(), StorageError>>>,
        seqs: &[u64],
    ) -> Result<(), EngineError> {
        let Some(rx) = queued else { return Ok(()) };
        match rx.recv() {
            Ok(r) => r.map_err(storage_error)?,
            Err(_) => return Err(EngineError::Storage("storage writer stopped".into())),
        }
        self.log.lock().prune_pending(Some(seqs));
        Ok(())
    }

    /// Whether a message is older than `max_age` at `now`.
    pub fn has_older_than(&self, now: u64) -> bool {
        let mut log = self.log.lock();
        let max_age = log.limits.max_age;
        !max_age.is_zero()
            && log
                .first_time_ns()
                .is_some_and(|t| t < now.saturating_sub(max_age.as_nanos() as u64))
    }

    /// Removes messages older than `max_age`; returns how many.
    pub fn expire(&self, now: u64) -> u64 {
        let mut log = self.log.lock();
        // Deletes made earlier that have reached the log need no remembering.
        log.prune_pending(None);
        let max_age = log.limits.max_age;
        if max_age.is_zero() {
            return 0;
        }
        let cutoff = now.saturating_sub(max_age.as_nanos() as u64);
        let old = log.expire_before(cutoff);
        let memory = log.limits.memory;
        let floor = self.floor_with(&log, &old);
        drop(log);
        if !memory && !old.is_empty() {
            let mut ops: Vec<LogOp> = old.iter().copied().map(LogOp::Delete).collect();
            ops.extend(floor);
            self.store.append(
                self.id,
                ops,
                Durability::Interval(Duration::from_secs(1)),
                Box::new(|_| {}),
            );
        }
        old.len() as u64
    }

    pub fn purge(&self, purge: &Purge) -> Result<u64, EngineError> {
        if self.config.read().sealed {
            return Err(EngineError::Denied(junction_api::Denial::Sealed));
        }
        if self.config.read().deny_purge {
            return Err(EngineError::Denied(junction_api::Denial::PurgeNotPermitted));
        }
        // A tiered station with messages only in the bucket: those go too.
        let Some(tier) = self.tier.get().filter(|t| t.first_seq().is_some()) else {
            return self.purge_now(purge);
        };
        let local_first = self.log.lock().first_seq();
        let by_subject = purge
            .filter
            .as_ref()
            .is_some_and(|f| !f.is_empty() && f != ">");
        let below = purge.seq.unwrap_or(u64::MAX);
        let reaches_remote = tier.first_seq().is_some_and(|f| f < local_first.min(below));
        if (by_subject || purge.keep.is_some()) && reaches_remote {
            return Err(EngineError::BadRequest(
                "a purge by subject or with keep cannot reach the messages this tiered station holds only in S3; purge everything, or up to a sequence".into(),
            ));
        }
        let local = self.purge_now(purge)?;
        let remote = tier.purge_below(&self.store, self.id, below, local_first)?;
        Ok(local + remote)
    }

    /// [`Station::purge`] without the `deny_purge` check (a rollup).
    fn purge_now(&self, purge: &Purge) -> Result<u64, EngineError> {
        let filter = match &purge.filter {
            Some(f) if !f.is_empty() && f != ">" => Some(
                SubjectFilter::new(f.clone())
                    .map_err(|e| EngineError::BadRequest(format!("invalid purge filter: {e}")))?,
            ),
            _ => None,
        };
        let mut log = self.log.lock();
        let keep = purge.keep.unwrap_or(0);
        let everything =
            filter.is_none() && keep == 0 && purge.seq.is_none_or(|below| below > log.last_seq);
        if everything {
            let n = log.msgs;
            let (tail, bound) = log.clear();
            let last = log.last_seq;
            let memory = log.limits.memory;
            // The tail may still be on its way to the log: its deletes are queued
            // after it.
            let queued = self.queue_deletes(&log, &tail);
            drop(log);
            if !memory {
                // The floor first: a crash after the range delete must not
                // lose the last sequence with the messages.
                self.store
                    .put_meta(&seq_floor_key(self.id), last.to_string().as_bytes())
                    .map_err(storage_error)?;
                // Everything below `bound` is in the log: one range delete.
                self.store
                    .delete_below(self.id, bound)
                    .map_err(storage_error)?;
                self.deleted(queued, &tail)?;
            }
            return Ok(n);
        }
        let below = purge.seq.unwrap_or(u64::MAX);
        let mut candidates: Vec<u64> = Vec::new();
        log.walk(1, |m| {
            if m.seq >= below {
                return ControlFlow::Break(());
            }
            if filter
                .as_ref()
                .is_none_or(|f| f.matches(&Subject::from_trusted(m.subject.clone())))
            {
                candidates.push(m.seq);
            }
            ControlFlow::Continue(())
        });
        if purge.keep.is_some() {
            // Keep the newest `keep` of the matching messages.
            let n = candidates.len().saturating_sub(keep as usize);
            candidates.truncate(n);
        }
        for s in &candidates {
            log.forget(*s);
        }
        let last = log.last_seq;
        let memory = log.limits.memory;
        let queued = self.queue_deletes(&log, &candidates);
        drop(log);
        if !memory {
            self.deleted(queued, &candidates)?;
            self.store
                .put_meta(&seq_floor_key(self.id), last.to_string().as_bytes())
                .map_err(storage_error)?;
        }
        Ok(candidates.len() as u64)
    }

    pub fn delete_message(&self, seq: u64) -> Result<(), EngineError> {
        if self.config.read().sealed {
            return Err(EngineError::Denied(junction_api::Denial::Sealed));
        }
        if self.config.read().deny_delete {
            return Err(EngineError::Denied(
                junction_api::Denial::DeleteNotPermitted,
            ));
        }
        let mut log = self.log.lock();
        if log.forget(seq).is_none() {
            return Err(EngineError::MessageNotFound);
        }
        let last = log.last_seq;
        let memory = log.limits.memory;
        let queued = self.queue_deletes(&log, &[seq]);
        drop(log);
        if !memory {
            self.deleted(queued, &[seq])?;
            self.store
                .put_meta(&seq_floor_key(self.id), last.to_string().as_bytes())
                .map_err(storage_error)?;
        }
        Ok(())
    }

    /// Finds the sequence a query names.
    fn resolve(&self, query: &MessageQuery) -> Result<u64, EngineError> {
        // The next message from a sequence below the local log: the remote
        // tier's, when one matches before the local log starts.
        if let (MessageQuery::NextBySubject { seq, subject }, Some(tier)) = (query, self.tier.get())
        {
            let local_first = self.log.lock().first_seq();
            if *seq < local_first {
                let filter = SubjectFilter::new(subject.clone())
                    .map_err(|e| EngineError::BadRequest(format!("invalid subject: {e}")))?;
                if let Some(found) = tier.next_matching(*seq, &filter, local_first)? {
                    return Ok(found);
                }
            }
        }
        let mut log = self.log.lock();
        let found = match query {
            MessageQuery::Seq(seq) => {
                let remote = self.tier.get().is_some() && *seq < log.first_seq();
                (remote || log.is_live(*seq)).then_some(*seq)
            }
            // A subject with no local message may have one only the bucket
            // holds (found through the segments' subject summaries).
            MessageQuery::LastBySubject(subject) => match log.per_subject.get(subject.as_bytes()) {
                Some(s) => Some(s.last),
                None => {
                    let local_first = log.first_seq();
                    self.tier
                        .get()
                        .and_then(|t| t.last_of_subject(subject.as_bytes(), local_first))
                }
            },
            MessageQuery::NextBySubject { seq, subject } => {
                let filter = SubjectFilter::new(subject.clone())
                    .map_err(|e| EngineError::BadRequest(format!("invalid subject: {e}")))?;
                let last = log.last_seq;
                next_matching(&log, *seq, std::slice::from_ref(&filter), last)
            }
            MessageQuery::FirstAtOrAfter(t) => {
                let ns = t
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                if self.tier.get().is_some() && log.first_time_ns().is_none_or(|f| ns < f) {
                    drop(log);
                    let seq = self.first_seq_at_or_after(*t);
                    return if seq > self.last_seq() {
                        Err(EngineError::MessageNotFound)
                    } else {
                        Ok(seq)
                    };
                }
                first_at_or_after(&mut log, ns)
            }
        };
        found.ok_or(EngineError::MessageNotFound)
    }

    pub fn get(&self, query: &MessageQuery) -> Result<StoredMessage, EngineError> {
        let seq = self.resolve(query)?;
        let record = self.read(seq)?.ok_or(EngineError::MessageNotFound)?;
        Ok(StoredMessage {
            seq: record.seq,
            subject: Subject::from_trusted(record.subject),
            headers: record.headers,
            payload: record.payload,
            time: time_of(record.time_ns),
            lineage: record.lineage,
        })
    }

    /// Reads one stored record.
    pub fn read(&self, seq: u64) -> Result<Option<Record>, EngineError> {
        {
            let log = self.log.lock();
            if log.limits.memory {
                return Ok(log.memory.get(&seq).cloned());
            }
        }
        let local = self.store.read(self.id, seq).map_err(|e| match e {
            StorageError::Corrupt(c) => EngineError::CorruptRecord(format!(
                "message {seq} of station '{}': {}",
                self.name, c.0
            )),
            e => storage_error(e),
        })?;
        match (local, self.tier.get()) {
            (Some(r), _) => Ok(Some(r)),
            (None, Some(tier)) if seq < self.log.lock().first_seq() => tier.read(seq),
            (None, _) => Ok(None),
        }
    }

    /// Removes every stored message and the station's metadata counters.
    pub fn destroy(&self) -> Result<(), EngineError> {
        let memory = self.log.lock().limits.memory;
        if !memory {
            self.store
                .delete_station_log(self.id)
                .map_err(storage_error)?;
            self.store
                .write_meta_batch(
                    &[],
                    &[
                        seq_floor_key(self.id),
                        snapshot::key(self.id),
                        compact::compacted_key(self.id),
                    ],
                )
                .map_err(storage_error)?;
            if let Some(tier) = self.tier.get() {
                tier.forget(&self.store, self.id)?;
            }
        }
        Ok(())
    }
}

/// Loads a snapshot's counters, subjects and dedup window into an empty index.
fn apply_snapshot(log: &mut Log, s: Snapshot) {
    let now = now_ns();
    let window = log.limits.duplicate_window.as_nanos() as u64;
    log.last_seq = s.last_seq;
    log.last_time_ns = s.last_time_ns;
    log.msgs = s.msgs;
    log.bytes = s.bytes;
    log.last_msg_id = s.last_msg_id;
    log.per_subject = s.subjects.into_iter().collect();
    for (id, seq, t) in s.dedup {
        if now.saturating_sub(t) <= window {
            log.dedup.insert(id.clone(), (seq, t));
            log.dedup_order.push_back((t, id));
        }
    }
}

/// The first live sequence in `from..=upto` whose subject matches `filters` (any
/// when empty). Per-subject state narrows the range before the log is read.
fn next_matching(log: &Log, from: u64, filters: &[SubjectFilter], upto: u64) -> Option<u64> {
    let mut from = from;
    // The subjects' bounds let a sparse filter skip a long stretch at once, but
    // finding them for a wildcard filter looks at every distinct subject. A
    // group that is caught up has only the last commit's few messages to look
    // at: walking them costs less than that, so a stretch shorter than the
    // number of subjects, and within the index's in-memory tail, is walked.
    // (Every waiting consumer of a station with many subjects, a persistent
    // MQTT session each say, is filled on every commit.) Literal filters find
    // their bounds with a lookup each, so they always do.
    let stretch = upto.saturating_sub(from);
    let short = stretch < log.per_subject.len() as u64
        && stretch < index::TAIL_KEEP as u64
        && !filters.iter().all(SubjectFilter::is_literal);
    if !filters.is_empty() && !short {
        let (first, last) = log.subject_bounds(filters)?;
        if last < from {
            return None;
        }
        from = from.max(first);
    }
    let mut found = None;
    if filters.is_empty() {
        log.walk_seqs(from, |seq| {
            if seq <= upto {
                found = Some(seq);
            }
            ControlFlow::Break(())
        });
    } else {
        log.walk(from, |m| {
            if m.seq > upto {
                return ControlFlow::Break(());
            }
            if matches_any(filters, m.subject) {
                found = Some(m.seq);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
    }
    found
}

/// The first live sequence stored at or after `ns`, by bisection over sequences
/// (times grow with sequences), reading one message per step.
fn first_at_or_after(log: &mut Log, ns: u64) -> Option<u64> {
    let mut lo = log.first_seq();
    let mut hi = log.last_seq + 1;
    let mut best = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let mut at = None;
        log.walk(mid, |m| {
            at = Some((m.seq, m.time_ns));
            ControlFlow::Break(())
        });
        match at {
            Some((seq, t)) if seq < hi => {
                if t >= ns {
                    // Nothing is stored between `mid` and `seq`.
                    best = Some(seq);
                    hi = mid;
                } else {
                    lo = seq + 1;
                }
            }
            _ => hi = mid,
        }
    }
    best
}

fn matches_any(filters: &[SubjectFilter], subject: &Bytes) -> bool {
    filters.is_empty() || {
        let s = Subject::from_trusted(subject.clone());
        filters.iter().any(|f| f.matches(&s))
    }
}

/// The size a message counts for against `max_bytes`: subject, payload and the
/// producer's headers, plus fixed overheads. The engine's reserved `Junction-*`
/// headers (dead-letter reasons, the MQTT front-end's markers) and `traceparent`
/// do not count, and neither does the lineage section kept beside the message, so
/// limits mean what they mean in nats-server.
pub fn accounted_size(subject: usize, headers: Option<&Headers>, payload: usize) -> u64 {
    let headers = headers.map_or(0, |h| {
        let (n, bytes) = h
            .iter()
            .filter(|(n, _)| {
                !junction_api::is_reserved_header(n) && !n.eq_ignore_ascii_case("traceparent")
            })
            .fold((0usize, 0usize), |(c, b), (n, v)| {
                (c + 1, b + n.len() + v.len() + 4)
            });
        if n == 0 { 0 } else { bytes + 12 }
    });
    (subject + headers + payload + 16) as u64
}

/// Metadata key holding a station's last sequence when its log was last emptied.
pub fn seq_floor_key(id: u64) -> String {
    format!("seqfloor/{id}")
}

/// Do two filters match at least one common subject?
pub fn filters_overlap(a: &SubjectFilter, b: &SubjectFilter) -> bool {
    junction_api::filters_overlap(a.as_bytes(), b.as_bytes())
}

/// The store's watermark, turned into completions: the PubAcks of every append up
/// to it, in order, then one wake-up of each consumer group. Runs on the store's
/// notifier thread, once per station per group commit.
impl CommitSink for Station {
    fn durable(&self, through: u64) {
        let done = self.take_in_flight(through);
        // Visible to groups before the acks: a fetch that follows an ack finds it.
        self.committed.fetch_max(through, Ordering::AcqRel);
        let mut stored = Vec::with_capacity(done.len());
        for f in done {
            if let Some(cb) = f.done {
                cb(Ok(PubAck {
                    station: self.name.to_string(),
                    seq: f.seq,
                    duplicate: false,
                }));
            }
            stored.push((f.seq, f.subject));
        }
        self.stored(&stored);
    }

    fn failed(&self, through: u64, error: StorageError) {
        for f in self.take_in_flight(through) {
            self.not_stored(f.seq, &f.evicted);
            if let Some(cb) = f.done {
                cb(Err(self.write_failed(error.clone())));
            }
        }
    }
}

/// Adds one stored record to the index (counters, subjects, last sequence and
/// time, the de-duplication window as of `now`).
fn index_record(log: &mut Log, r: &Record, now: u64, window: u64) {
    log.last_seq = r.seq;
    log.last_time_ns = r.time_ns;
    // The de-duplication id is part of the stored message (see
    // `junction_api::stored_msg_id`).
    if let Some(id) = junction_api::stored_msg_id(r.headers.as_ref()).map(str::to_owned) {
        if now.saturating_sub(r.time_ns) <= window {
            log.dedup.insert(id.clone(), (r.seq, r.time_ns));
            log.dedup_order.push_back((r.time_ns, id.clone()));
        }
        log.last_msg_id = Some(id);
    }
    log.account_in(r.seq, &Entry::of(r));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> SubjectFilter {
        SubjectFilter::new(s.to_string()).unwrap()
    }

    #[test]
    fn overlap() {
        assert!(filters_overlap(&f("a.*"), &f("a.b")));
        assert!(filters_overlap(&f("a.>"), &f("a.b.c")));
        assert!(filters_overlap(&f(">"), &f("x")));
        assert!(filters_overlap(&f("*.b"), &f("a.*")));
        assert!(!filters_overlap(&f("a.b"), &f("a.c")));
        assert!(!filters_overlap(&f("a.*"), &f("a.b.c")));
        assert!(!filters_overlap(&f("a.>"), &f("a")));
    }
}
