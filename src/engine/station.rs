//! One station: its in-memory index over the stored log, its limits, de-duplication
//! and expected-sequence checks, and the append path into storage.
//!
//! The index keeps, for every live message, its sequence, subject, size and time.
//! It is rebuilt from the log at start-up. It makes limits, purges and
//! "last by subject" cheap, at a cost of roughly 60 bytes of memory per stored
//! message (a known limit until sealed ranges move cold data out).

use super::group::Groups;
use ahash::AHashMap;
use bytes::Bytes;
use junction_api::{
    Discard, EngineError, Headers, Message, MessageQuery, PubAck, PublishOptions, Purge, Retention,
    StationConfig, StationState, StorageKind, StoredCallback, StoredMessage, Subject,
    SubjectFilter, TenantId,
};
use junction_storage::{CommitSink, Durability, LogOp, Record, StorageError, Store};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A time from ns since the epoch.
pub fn time_of(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

#[derive(Debug, Clone)]
struct Entry {
    subject: Bytes,
    size: u64,
    time_ns: u64,
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
        }
    }
}

struct Log {
    limits: Limits,
    last_seq: u64,
    last_time_ns: u64,
    index: BTreeMap<u64, Entry>,
    bytes: u64,
    per_subject: AHashMap<Bytes, VecDeque<u64>>,
    dedup: AHashMap<String, (u64, u64)>,
    dedup_order: VecDeque<(u64, String)>,
    last_msg_id: Option<String>,
    memory: BTreeMap<u64, Record>,
}

impl Log {
    fn forget(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.index.remove(&seq)?;
        self.bytes -= entry.size;
        if let Some(seqs) = self.per_subject.get_mut(&entry.subject) {
            if seqs.front() == Some(&seq) {
                seqs.pop_front();
            } else {
                seqs.retain(|s| *s != seq);
            }
            if seqs.is_empty() {
                self.per_subject.remove(&entry.subject);
            }
        }
        self.memory.remove(&seq);
        Some(entry)
    }

    fn remember(&mut self, seq: u64, entry: Entry) {
        self.bytes += entry.size;
        self.per_subject
            .entry(entry.subject.clone())
            .or_default()
            .push_back(seq);
        self.index.insert(seq, entry);
    }

    /// Puts back a message that was evicted in memory but whose delete never
    /// reached the disk, keeping each subject's sequences in order.
    fn restore(&mut self, seq: u64, entry: Entry) {
        if self.index.contains_key(&seq) {
            return;
        }
        self.bytes += entry.size;
        let seqs = self.per_subject.entry(entry.subject.clone()).or_default();
        let at = seqs.partition_point(|s| *s < seq);
        seqs.insert(at, seq);
        self.index.insert(seq, entry);
    }

    fn expire_dedup(&mut self, now: u64) {
        let window = self.limits.duplicate_window.as_nanos() as u64;
        while let Some((t, _)) = self.dedup_order.front() {
            if now.saturating_sub(*t) <= window {
                break;
            }
            if let Some((_, id)) = self.dedup_order.pop_front() {
                self.dedup.remove(&id);
            }
        }
    }

    fn first_seq(&self) -> u64 {
        self.index
            .keys()
            .next()
            .copied()
            .unwrap_or(self.last_seq + 1)
    }

    /// Sequences to drop so the limits hold again (discard old).
    fn over_limits(&mut self) -> Vec<u64> {
        let mut evicted = Vec::new();
        let l = self.limits;
        if l.max_msgs_per_subject > 0 {
            let over: Vec<u64> = self
                .per_subject
                .values()
                .filter(|s| s.len() as i64 > l.max_msgs_per_subject)
                .flat_map(|s| {
                    s.iter()
                        .take(s.len() - l.max_msgs_per_subject as usize)
                        .copied()
                        .collect::<Vec<_>>()
                })
                .collect();
            for seq in over {
                if self.forget(seq).is_some() {
                    evicted.push(seq);
                }
            }
        }
        while l.max_msgs >= 0 && self.index.len() as i64 > l.max_msgs {
            let Some(seq) = self.index.keys().next().copied() else {
                break;
            };
            self.forget(seq);
            evicted.push(seq);
        }
        while l.max_bytes >= 0 && self.bytes as i64 > l.max_bytes {
            let Some(seq) = self.index.keys().next().copied() else {
                break;
            };
            self.forget(seq);
            evicted.push(seq);
        }
        evicted
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
    /// Highest sequence durably stored; groups never read past it.
    committed: AtomicU64,
    /// Appends queued to storage and not yet durable, in sequence order: what the
    /// store's watermark ([`CommitSink::durable`]) completes.
    in_flight: Mutex<VecDeque<InFlight>>,
    /// The schema every publish is validated against: (name, pinned version).
    schema: RwLock<Option<SchemaBinding>>,
}

/// An append on its way to disk.
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
        Ok(Station {
            id,
            tenant,
            created,
            name: Arc::from(config.name.as_str()),
            log: Mutex::new(Log {
                limits: Limits::of(&config),
                last_seq: 0,
                last_time_ns: 0,
                index: BTreeMap::new(),
                bytes: 0,
                per_subject: AHashMap::new(),
                dedup: AHashMap::new(),
                dedup_order: VecDeque::new(),
                last_msg_id: None,
                memory: BTreeMap::new(),
            }),
            schema: RwLock::new(binding_of(&config)),
            config: RwLock::new(config),
            filters: RwLock::new(filters),
            store,
            groups: RwLock::new(Groups::default()),
            committed: AtomicU64::new(0),
            in_flight: Mutex::new(VecDeque::new()),
        })
    }

    /// Rebuilds the index from storage. `seq_floor` is the last sequence recorded
    /// when the log was last emptied.
    pub fn recover(&self, seq_floor: u64) -> Result<(), EngineError> {
        let mut log = self.log.lock();
        if log.limits.memory {
            log.last_seq = seq_floor;
            self.committed.store(seq_floor, Ordering::Release);
            return Ok(());
        }
        let now = now_ns();
        let window = log.limits.duplicate_window.as_nanos() as u64;
        let mut corrupt = 0u64;
        let highest = self.store.last_seq(self.id).unwrap_or(0);
        let mut from = 0u64;
        let mut records = self.store.scan(self.id, from);
        loop {
            let r = match records.next() {
                None => break,
                Some(Ok(r)) => {
                    from = r.seq + 1;
                    r
                }
                // A corrupt record or block (counted and logged by the store) is left
                // out of the index rather than keeping the station, and the broker,
                // from starting. A damaged block ends the scan, so it goes on from
                // the next sequence that can be read.
                Some(Err(StorageError::Corrupt(_))) => {
                    corrupt += 1;
                    from += 1;
                    if from > highest {
                        break;
                    }
                    records = self.store.scan(self.id, from);
                    continue;
                }
                Some(Err(e)) => return Err(storage_error(e)),
            };
            let size = accounted_size(r.subject.len(), r.headers.as_ref(), r.payload.len());
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
            log.remember(
                r.seq,
                Entry {
                    subject: r.subject,
                    size,
                    time_ns: r.time_ns,
                },
            );
        }
        if corrupt > 0 {
            // Sequence numbers are never reused, even a corrupt record's.
            log.last_seq = log.last_seq.max(self.store.last_seq(self.id).unwrap_or(0));
            tracing::error!(station = %self.name, corrupt, "station recovered without its corrupt records");
        }
        log.last_seq = log.last_seq.max(seq_floor);
        self.committed.store(log.last_seq, Ordering::Release);
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
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
        let mut log = self.log.lock();
        log.limits = Limits::of(&config);
        let evicted = log.over_limits();
        *self.filters.write() = filters;
        *self.schema.write() = binding_of(&config);
        *self.config.write() = config;
        drop(log);
        self.delete_durably(&evicted)?;
        Ok(evicted)
    }

    pub fn state(&self) -> StationState {
        let consumer_count = self.groups.read().len() as u64;
        let log = self.log.lock();
        // A station that never stored anything reports 0, as nats-server does.
        let first_seq = if log.last_seq == 0 {
            0
        } else {
            log.first_seq()
        };
        let messages = log.index.len() as u64;
        let span = if log.last_seq == 0 {
            0
        } else {
            (log.last_seq + 1).saturating_sub(first_seq)
        };
        StationState {
            messages,
            bytes: log.bytes,
            first_seq,
            first_time: log.index.values().next().map(|e| time_of(e.time_ns)),
            last_seq: log.last_seq,
            last_time: (log.last_time_ns > 0).then(|| time_of(log.last_time_ns)),
            num_subjects: log.per_subject.len() as u64,
            num_deleted: span.saturating_sub(messages),
            consumer_count,
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.log.lock().last_seq
    }

    /// Stores `message` with its lineage section (`lineage`, kept beside it; empty:
    /// none) under the producer's `options` (de-duplication id, preconditions),
    /// then calls `done` once it is durable (or refused), and then lets consumer
    /// groups deliver it.
    pub fn append(
        self: &Arc<Self>,
        message: &Message,
        options: &PublishOptions,
        lineage: Bytes,
        done: Option<StoredCallback>,
    ) {
        let refuse = |e: EngineError, done: Option<StoredCallback>| {
            if let Some(done) = done {
                done(Err(e));
            }
        };
        let now = now_ns();
        let headers = message.headers.as_ref();
        let size = accounted_size(
            message.subject.as_bytes().len(),
            headers,
            message.payload.len(),
        );
        let id = options.msg_id.clone().filter(|id| !id.is_empty());
        let mut log = self.log.lock();
        let l = log.limits;
        // A failed store takes no more writes until restart: refuse before taking a
        // sequence, so the station's counts never include what was not stored.
        if !l.memory && self.store.is_poisoned() {
            drop(log);
            return refuse(self.write_failed(StorageError::Poisoned), done);
        }
        if l.max_msg_size >= 0 && message.payload.len() as i64 > l.max_msg_size {
            drop(log);
            return refuse(EngineError::MessageTooLarge, done);
        }
        if let Err(e) = self.check_expected(&log, options, &message.subject) {
            drop(log);
            return refuse(e, done);
        }
        log.expire_dedup(now);
        if let Some(id) = &id
            && let Some((seq, _)) = log.dedup.get(id)
        {
            let ack = PubAck {
                station: self.name.to_string(),
                seq: *seq,
                duplicate: true,
            };
            drop(log);
            if let Some(done) = done {
                done(Ok(ack));
            }
            return;
        }
        if l.discard == Discard::New {
            if l.max_msgs >= 0 && log.index.len() as i64 >= l.max_msgs {
                drop(log);
                return refuse(EngineError::MaxMessages, done);
            }
            if l.max_bytes >= 0 && (log.bytes + size) as i64 > l.max_bytes {
                drop(log);
                return refuse(EngineError::MaxBytes, done);
            }
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
        let record = Record {
            seq,
            time_ns: now,
            subject: message.subject.bytes().clone(),
            headers: message.headers.clone(),
            payload: message.payload.clone(),
            lineage,
        };
        let ack = PubAck {
            station: self.name.to_string(),
            seq,
            duplicate: false,
        };
        if l.memory {
            log.memory.insert(seq, record);
            for s in &evicted {
                log.memory.remove(s);
            }
            drop(log);
            // Visible to groups before the ack: a fetch that follows an ack finds it.
            self.committed.fetch_max(seq, Ordering::AcqRel);
            if let Some(done) = done {
                done(Ok(ack));
            }
            self.stored(&[(seq, message.subject.bytes().clone())]);
            return;
        }
        let mut ops = Vec::with_capacity(1 + evicted.len());
        ops.push(LogOp::Put(record));
        ops.extend(evicted.iter().copied().map(LogOp::Delete));
        // Queued under the station lock, so the log is written, and the in-flight
        // queue kept, in sequence order.
        self.in_flight.lock().push_back(InFlight {
            seq,
            subject: message.subject.bytes().clone(),
            evicted,
            done,
        });
        self.store.append_marked(
            self.id,
            ops,
            l.durability,
            seq,
            self.clone() as Arc<dyn CommitSink>,
        );
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
        let newest = log.index.keys().next_back().copied().unwrap_or(0);
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

    /// Removes a message every interested group is done with (interest and
    /// work-queue retention). The delete is made durable within a second.
    pub fn remove_consumed(&self, seq: u64) {
        let removed = {
            let mut log = self.log.lock();
            log.forget(seq).is_some() && !log.limits.memory
        };
        if removed {
            self.store.append(
                self.id,
                vec![LogOp::Delete(seq)],
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
        self.log.lock().index.get(&seq).map(|e| e.subject.clone())
    }

    /// (first sequence, last sequence).
    pub fn bounds(&self) -> (u64, u64) {
        let log = self.log.lock();
        (log.first_seq(), log.last_seq)
    }

    /// The first sequence stored at or after `t` (or the next sequence).
    pub fn first_seq_at_or_after(&self, t: SystemTime) -> u64 {
        let ns = t
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let log = self.log.lock();
        log.index
            .iter()
            .find(|(_, e)| e.time_ns >= ns)
            .map_or(log.last_seq + 1, |(s, _)| *s)
    }

    /// The newest sequence of every subject matching `filters` (all when empty).
    pub fn last_per_subject(&self, filters: &[SubjectFilter]) -> Vec<u64> {
        let log = self.log.lock();
        let mut seqs: Vec<u64> = log
            .per_subject
            .iter()
            .filter(|(s, _)| matches_any(filters, s))
            .filter_map(|(_, seqs)| seqs.back().copied())
            .collect();
        seqs.sort_unstable();
        seqs
    }

    /// The first durable sequence at or after `from` matching `filters`.
    pub fn next_from(&self, from: u64, filters: &[SubjectFilter]) -> Option<u64> {
        let committed = self.committed.load(Ordering::Acquire);
        if from > committed {
            return None;
        }
        let log = self.log.lock();
        log.index
            .range(from..=committed)
            .find(|(_, e)| matches_any(filters, &e.subject))
            .map(|(s, _)| *s)
    }

    /// How many stored messages at or after `from` match `filters`.
    pub fn count_from(&self, from: u64, filters: &[SubjectFilter]) -> u64 {
        let log = self.log.lock();
        if filters.is_empty() {
            return log.index.range(from..).count() as u64;
        }
        log.index
            .range(from..)
            .filter(|(_, e)| matches_any(filters, &e.subject))
            .count() as u64
    }

    /// Reads a stored message.
    /// Up to `max` durable messages from `from` on, in order, read in one range
    /// scan. Stops early (possibly empty) at a corrupt record or a read error; the
    /// caller reads one by one from there ([`Station::read_message`]).
    pub fn read_from(&self, from: u64, max: usize) -> Vec<StoredMessage> {
        let committed = self.committed.load(Ordering::Acquire);
        if from > committed || max == 0 {
            return Vec::new();
        }
        let shape = |r: Record| StoredMessage {
            seq: r.seq,
            subject: Subject::from_trusted(r.subject),
            headers: r.headers,
            payload: r.payload,
            time: time_of(r.time_ns),
            lineage: r.lineage,
        };
        {
            let log = self.log.lock();
            if log.limits.memory {
                return log
                    .memory
                    .range(from..=committed)
                    .take(max)
                    .map(|(_, r)| shape(r.clone()))
                    .collect();
            }
        }
        self.store
            .scan(self.id, from)
            .map_while(Result::ok)
            .take_while(|r| r.seq <= committed)
            .take(max)
            .map(shape)
            .collect()
    }

    pub fn read_message(&self, seq: u64) -> Result<Option<StoredMessage>, EngineError> {
        Ok(self.read(seq)?.map(|r| StoredMessage {
            seq: r.seq,
            subject: Subject::from_trusted(r.subject),
            headers: r.headers,
            payload: r.payload,
            time: time_of(r.time_ns),
            lineage: r.lineage,
        }))
    }

    /// The producer's preconditions, checked as nats-server orders them.
    fn check_expected(
        &self,
        log: &Log,
        options: &PublishOptions,
        subject: &Subject,
    ) -> Result<(), EngineError> {
        if options.rollup.is_some() {
            return Err(EngineError::RollupNotPermitted);
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
            let actual = log
                .per_subject
                .get(subject.as_bytes())
                .and_then(|s| s.back().copied())
                .unwrap_or(0);
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
    fn delete_durably(&self, seqs: &[u64]) -> Result<(), EngineError> {
        if seqs.is_empty() || self.log.lock().limits.memory {
            return Ok(());
        }
        let (tx, rx) = mpsc::channel();
        self.store.append(
            self.id,
            seqs.iter().copied().map(LogOp::Delete).collect(),
            Durability::Sync,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        match rx.recv() {
            Ok(r) => r.map_err(storage_error),
            Err(_) => Err(EngineError::Storage("storage writer stopped".into())),
        }
    }

    /// Removes messages older than `max_age`; returns how many.
    pub fn expire(&self, now: u64) -> u64 {
        let mut log = self.log.lock();
        let max_age = log.limits.max_age;
        if max_age.is_zero() {
            return 0;
        }
        let cutoff = now.saturating_sub(max_age.as_nanos() as u64);
        let old: Vec<u64> = log
            .index
            .iter()
            .take_while(|(_, e)| e.time_ns < cutoff)
            .map(|(s, _)| *s)
            .collect();
        for s in &old {
            log.forget(*s);
        }
        let memory = log.limits.memory;
        drop(log);
        if !memory && !old.is_empty() {
            self.store.append(
                self.id,
                old.iter().copied().map(LogOp::Delete).collect(),
                Durability::Interval(Duration::from_secs(1)),
                Box::new(|_| {}),
            );
        }
        old.len() as u64
    }

    pub fn purge(&self, purge: &Purge) -> Result<u64, EngineError> {
        if self.config.read().deny_purge {
            return Err(EngineError::Denied(junction_api::Denial::PurgeNotPermitted));
        }
        let filter = match &purge.filter {
            Some(f) if !f.is_empty() && f != ">" => Some(
                SubjectFilter::new(f.clone())
                    .map_err(|e| EngineError::BadRequest(format!("invalid purge filter: {e}")))?,
            ),
            _ => None,
        };
        let mut log = self.log.lock();
        let mut candidates: Vec<u64> = log
            .index
            .iter()
            .filter(|(seq, e)| {
                purge.seq.is_none_or(|below| **seq < below)
                    && filter
                        .as_ref()
                        .is_none_or(|f| f.matches(&Subject::from_trusted(e.subject.clone())))
            })
            .map(|(s, _)| *s)
            .collect();
        if let Some(keep) = purge.keep {
            // Keep the newest `keep` of the matching messages.
            let n = candidates.len().saturating_sub(keep as usize);
            candidates.truncate(n);
        }
        for s in &candidates {
            log.forget(*s);
        }
        let last = log.last_seq;
        let memory = log.limits.memory;
        drop(log);
        if !memory {
            self.delete_durably(&candidates)?;
            self.store
                .put_meta(&seq_floor_key(self.id), last.to_string().as_bytes())
                .map_err(storage_error)?;
        }
        Ok(candidates.len() as u64)
    }

    pub fn delete_message(&self, seq: u64) -> Result<(), EngineError> {
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
        drop(log);
        if !memory {
            self.delete_durably(&[seq])?;
            self.store
                .put_meta(&seq_floor_key(self.id), last.to_string().as_bytes())
                .map_err(storage_error)?;
        }
        Ok(())
    }

    /// Finds the sequence a query names.
    fn resolve(&self, query: &MessageQuery) -> Result<u64, EngineError> {
        let log = self.log.lock();
        let found = match query {
            MessageQuery::Seq(seq) => log.index.contains_key(seq).then_some(*seq),
            MessageQuery::LastBySubject(subject) => log
                .per_subject
                .get(subject.as_bytes())
                .and_then(|s| s.back().copied()),
            MessageQuery::NextBySubject { seq, subject } => {
                let filter = SubjectFilter::new(subject.clone())
                    .map_err(|e| EngineError::BadRequest(format!("invalid subject: {e}")))?;
                log.index
                    .range(*seq..)
                    .find(|(_, e)| filter.matches(&Subject::from_trusted(e.subject.clone())))
                    .map(|(s, _)| *s)
            }
            MessageQuery::FirstAtOrAfter(t) => {
                let ns = t
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                log.index
                    .iter()
                    .find(|(_, e)| e.time_ns >= ns)
                    .map(|(s, _)| *s)
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
        self.store.read(self.id, seq).map_err(|e| match e {
            StorageError::Corrupt(c) => EngineError::CorruptRecord(format!(
                "message {seq} of station '{}': {}",
                self.name, c.0
            )),
            e => storage_error(e),
        })
    }

    /// Removes every stored message and the station's metadata counters.
    pub fn destroy(&self) -> Result<(), EngineError> {
        let memory = self.log.lock().limits.memory;
        if !memory {
            self.store
                .delete_station_log(self.id)
                .map_err(storage_error)?;
            self.store
                .remove_meta(&seq_floor_key(self.id))
                .map_err(storage_error)?;
        }
        Ok(())
    }
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
