//! A station's index: what the engine knows about its stored messages, in memory
//! that does not grow with the number of messages kept.
//!
//! It holds:
//! - totals (messages, bytes, last sequence and time) as counters;
//! - per-subject state: count, a lower bound for the first sequence and the exact
//!   last sequence; for a station with `max_msgs_per_subject > 0` (KV-like) also
//!   each subject's sequences, so memory is bounded by subjects × that limit;
//! - a *head window*: the oldest live messages (sequence, subject, size, time),
//!   read from the log in chunks of [`CHUNK`], so eviction by `max_msgs`,
//!   `max_bytes` or `max_age` costs no random read per publish;
//! - a *tail*: the newest live messages, at least every one not yet known to be in
//!   the log (appends in flight) and up to [`TAIL_KEEP`] more, so consumers that
//!   keep up read their positions from memory;
//! - the sequences deleted in memory between the two whose delete may not have
//!   reached the log yet (`pending_deletes`), so a read of the log never resurrects
//!   them.
//!
//! Every other question ("which message comes next for this filter", "how many are
//! left after this sequence", "what is stored at this time") is answered by range
//! reads of the log (fjall), or of the in-memory map of a memory station.
//!
//! Invariants, with `head_end <= tail_start <= last_seq + 1`:
//! - every live message with `seq < head_end` is in `head`;
//! - every live message with `seq >= tail_start` is in `tail`;
//! - a message with `head_end <= seq < tail_start` is live exactly when the log has
//!   it and `pending_deletes` does not; everything in that range is in the log.

use super::Limits;
use ahash::AHashMap;
use bytes::Bytes;
use junction_api::SubjectFilter;
use junction_storage::{Record, Store};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Messages read into the head window at a time.
pub(super) const CHUNK: usize = 256;

/// Committed messages kept in the tail beyond those in flight (file stations).
pub(super) const TAIL_KEEP: usize = 1024;

/// What the index keeps about one message while it is in the head or tail.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub subject: Bytes,
    pub size: u64,
    pub time_ns: u64,
}

impl Entry {
    pub fn of(r: &Record) -> Entry {
        Entry {
            size: super::accounted_size(r.subject.len(), r.headers.as_ref(), r.payload.len()),
            subject: r.subject.clone(),
            time_ns: r.time_ns,
        }
    }
}

/// One subject's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SubjectState {
    /// Live messages on the subject.
    pub count: u64,
    /// No live message of the subject has a lower sequence (a lower bound: it moves
    /// up when the first is removed, without looking for the next one).
    pub first: u64,
    /// The newest live message of the subject.
    pub last: u64,
    /// Every live sequence of the subject, oldest first; kept only when the station
    /// has `max_msgs_per_subject > 0`.
    pub seqs: VecDeque<u64>,
}

pub(crate) struct Log {
    pub limits: Limits,
    pub last_seq: u64,
    pub last_time_ns: u64,
    /// Live messages.
    pub msgs: u64,
    /// Their accounted bytes.
    pub bytes: u64,
    pub per_subject: AHashMap<Bytes, SubjectState>,
    head: VecDeque<(u64, Entry)>,
    head_end: u64,
    tail: VecDeque<(u64, Entry)>,
    tail_start: u64,
    pending_deletes: BTreeSet<u64>,
    /// (put watermark, sequence) of every pending delete, in queueing order: once
    /// the station's commit watermark reaches the put queued after the delete, the
    /// delete is in the log too (the store applies its queue in order).
    pending_order: VecDeque<(u64, u64)>,
    /// Subjects over `max_msgs_per_subject` since the last [`Log::over_limits`].
    subjects_over: Vec<Bytes>,
    pub dedup: AHashMap<String, (u64, u64)>,
    pub dedup_order: VecDeque<(u64, String)>,
    pub last_msg_id: Option<String>,
    /// A memory station's messages.
    pub memory: BTreeMap<u64, Record>,
    store: Store,
    station: u64,
    /// Highest sequence durably stored (shared with the station).
    committed: Arc<AtomicU64>,
    /// Set once a clean-shutdown snapshot of this station was written; a change
    /// after that withdraws the snapshot.
    pub sealed: bool,
}

/// A message seen while walking the live messages.
pub(crate) struct Seen<'a> {
    pub seq: u64,
    pub subject: &'a Bytes,
    pub time_ns: u64,
}

impl Log {
    pub fn new(limits: Limits, store: Store, station: u64, committed: Arc<AtomicU64>) -> Log {
        Log {
            limits,
            last_seq: 0,
            last_time_ns: 0,
            msgs: 0,
            bytes: 0,
            per_subject: AHashMap::new(),
            head: VecDeque::new(),
            head_end: 1,
            tail: VecDeque::new(),
            tail_start: 1,
            pending_deletes: BTreeSet::new(),
            pending_order: VecDeque::new(),
            subjects_over: Vec::new(),
            dedup: AHashMap::new(),
            dedup_order: VecDeque::new(),
            last_msg_id: None,
            memory: BTreeMap::new(),
            store,
            station,
            committed,
            sealed: false,
        }
    }

    fn tracks_seqs(&self) -> bool {
        self.limits.max_msgs_per_subject > 0
    }

    /// After recovery: nothing in memory yet, the head starts at `first`.
    pub fn reset_windows(&mut self, first: u64) {
        self.head.clear();
        self.tail.clear();
        self.pending_deletes.clear();
        self.pending_order.clear();
        self.tail_start = self.last_seq + 1;
        self.head_end = first.clamp(1, self.tail_start);
    }

    /// A change after the shutdown snapshot was written: withdraw it, so the next
    /// start scans the log instead of trusting counters that no longer hold.
    fn unseal(&mut self) {
        if self.sealed {
            self.sealed = false;
            if let Err(e) = self.store.remove_meta(super::snapshot::CLEAN_KEY) {
                tracing::error!(error = %e, "cannot withdraw the station snapshot marker");
            }
        }
    }

    // --- accounting -------------------------------------------------------------

    /// Counts a message in (totals and its subject). The caller places it.
    pub fn account_in(&mut self, seq: u64, entry: &Entry) {
        self.msgs += 1;
        self.bytes += entry.size;
        let track = self.tracks_seqs();
        let limit = self.limits.max_msgs_per_subject;
        let s = match self.per_subject.get_mut(&entry.subject) {
            Some(s) => s,
            None => self
                .per_subject
                .entry(entry.subject.clone())
                .or_insert_with(|| SubjectState {
                    first: seq,
                    ..SubjectState::default()
                }),
        };
        if s.count == 0 || seq < s.first {
            s.first = seq;
        }
        s.count += 1;
        s.last = s.last.max(seq);
        if track {
            let at = s.seqs.partition_point(|x| *x < seq);
            s.seqs.insert(at, seq);
            if s.seqs.len() as i64 > limit {
                self.subjects_over.push(entry.subject.clone());
            }
        }
    }

    /// Counts a message out. `seq` must already be out of the head, tail and log
    /// lookups (the newest of a subject is looked for among what is left).
    fn account_out(&mut self, seq: u64, entry: &Entry) {
        self.msgs = self.msgs.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(entry.size);
        let Some(s) = self.per_subject.get_mut(&entry.subject) else {
            return;
        };
        s.count = s.count.saturating_sub(1);
        if s.count == 0 {
            self.per_subject.remove(&entry.subject);
            return;
        }
        if let Some(at) = s.seqs.iter().position(|x| *x == seq) {
            s.seqs.remove(at);
        }
        if s.first == seq {
            s.first = s.seqs.front().copied().unwrap_or(seq + 1);
        }
        if s.last == seq {
            let back = s.seqs.back().copied();
            let newest = match back {
                Some(b) => Some(b),
                None => {
                    let subject = entry.subject.clone();
                    self.newest_of(&subject, seq)
                }
            };
            if let Some(s) = self.per_subject.get_mut(&entry.subject) {
                match newest {
                    Some(n) => s.last = n,
                    // The counters disagreed with the log: trust the log.
                    None => {
                        self.per_subject.remove(&entry.subject);
                    }
                }
            }
        }
    }

    /// Drops message ids older than the duplicate window.
    pub fn expire_dedup(&mut self, now: u64) {
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

    // --- placing and removing -----------------------------------------------------

    /// A new message at the end (the append path). Every sequence from
    /// `tail_start` on passes through here, so the tail misses none of them.
    pub fn remember(&mut self, seq: u64, entry: Entry) {
        self.unseal();
        self.release_pending();
        self.trim_tail();
        self.tail_start = self.tail_start.min(seq);
        self.account_in(seq, &entry);
        self.tail.push_back((seq, entry));
    }

    /// Drops committed entries from the front of the tail beyond what it keeps.
    fn trim_tail(&mut self) {
        let keep = if self.limits.memory { 0 } else { TAIL_KEEP };
        let committed = self.committed.load(Ordering::Acquire);
        while self.tail.len() > keep {
            match self.tail.front() {
                Some((seq, _)) if *seq <= committed => {
                    let seq = *seq;
                    self.tail.pop_front();
                    self.tail_start = seq + 1;
                }
                _ => break,
            }
        }
    }

    /// Removes one live message; `None` when it is not stored.
    pub fn forget(&mut self, seq: u64) -> Option<Entry> {
        let entry = if seq < self.head_end {
            let at = self.head.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
            self.head.remove(at).map(|(_, e)| e)?
        } else if seq >= self.tail_start {
            let at = self.tail.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
            let e = self.tail.remove(at).map(|(_, e)| e)?;
            self.mark_pending(seq);
            e
        } else {
            if self.pending_deletes.contains(&seq) {
                return None;
            }
            let e = self.read_entry(seq)?;
            self.mark_pending(seq);
            e
        };
        self.unseal();
        self.memory.remove(&seq);
        self.account_out(seq, &entry);
        Some(entry)
    }

    /// Puts back a message that was removed in memory but whose delete never
    /// reached the disk.
    pub fn restore(&mut self, seq: u64, entry: Entry) {
        if seq < self.head_end {
            match self.head.binary_search_by_key(&seq, |(s, _)| *s) {
                Ok(_) => return,
                Err(at) => self.head.insert(at, (seq, entry.clone())),
            }
        } else if seq >= self.tail_start {
            match self.tail.binary_search_by_key(&seq, |(s, _)| *s) {
                Ok(_) => return,
                Err(at) => self.tail.insert(at, (seq, entry.clone())),
            }
            self.pending_deletes.remove(&seq);
        } else if !self.pending_deletes.remove(&seq) {
            return;
        }
        self.account_in(seq, &entry);
        self.subjects_over.clear();
    }

    /// A message removed in memory whose delete the caller queues to the log
    /// before it releases the station lock (so every put queued later follows it).
    fn mark_pending(&mut self, seq: u64) {
        if !self.limits.memory {
            self.pending_deletes.insert(seq);
            self.pending_order.push_back((self.last_seq + 1, seq));
        }
    }

    /// Forgets pending deletes that a later put's commit proves are in the log.
    fn release_pending(&mut self) {
        let committed = self.committed.load(Ordering::Acquire);
        while let Some((through, seq)) = self.pending_order.front().copied() {
            if through > committed {
                break;
            }
            self.pending_order.pop_front();
            self.pending_deletes.remove(&seq);
        }
    }

    /// Forgets pending deletes that have reached the log: `known` ones (their
    /// delete is durable), or, without a list, those a later put's commit covers
    /// and up to 4096 more whose key is gone (a station nobody publishes to).
    pub fn prune_pending(&mut self, known: Option<&[u64]>) {
        match known {
            Some(seqs) => {
                for s in seqs {
                    self.pending_deletes.remove(s);
                }
            }
            None => {
                self.release_pending();
                if self.limits.memory || self.pending_deletes.is_empty() {
                    return;
                }
                // Only where the put is surely in the log, so an absent key means
                // the delete landed, not that the put is still on its way.
                let committed = self.committed.load(Ordering::Acquire);
                let gone: Vec<u64> = self
                    .pending_deletes
                    .range(..=committed)
                    .take(4096)
                    .copied()
                    .filter(|s| {
                        self.store
                            .seqs_between(self.station, *s, s + 1)
                            .next()
                            .is_none()
                    })
                    .collect();
                for s in gone {
                    self.pending_deletes.remove(&s);
                }
            }
        }
    }

    /// The newest live sequence (0 when empty).
    pub fn newest(&mut self) -> u64 {
        let mut newest = 0;
        self.walk_rev(self.last_seq + 1, |s| {
            newest = s;
            ControlFlow::Break(())
        });
        newest
    }

    /// Reads one message's entry from the log (or the memory map).
    fn read_entry(&self, seq: u64) -> Option<Entry> {
        if self.limits.memory {
            return self.memory.get(&seq).map(Entry::of);
        }
        match self.store.read(self.station, seq) {
            Ok(Some(r)) => Some(Entry::of(&r)),
            _ => None,
        }
    }

    // --- the head window ----------------------------------------------------------

    /// Makes sure the head window holds the oldest live message, if there is one.
    fn fill_head(&mut self) {
        while self.head.is_empty() && self.msgs > 0 {
            if self.head_end < self.tail_start {
                let below = self.tail_start;
                let (found, next) = self.read_live(self.head_end, below, CHUNK);
                self.head.extend(found);
                self.head_end = next;
                // Deletes the head has passed can no longer be read back.
                self.pending_deletes = self.pending_deletes.split_off(&next);
                continue;
            }
            if self.tail.is_empty() {
                tracing::error!(
                    station = self.station,
                    messages = self.msgs,
                    "station counters disagree with its log; resetting them to what is stored"
                );
                self.msgs = 0;
                self.bytes = 0;
                self.per_subject.clear();
                return;
            }
            let n = self.tail.len().min(CHUNK);
            self.head.extend(self.tail.drain(..n));
            let next = self.head.back().map_or(self.tail_start, |(s, _)| s + 1);
            self.head_end = next;
            self.tail_start = self.tail_start.max(next);
            self.pending_deletes = self.pending_deletes.split_off(&next);
        }
    }

    /// Up to `max` live messages with `from <= seq < below` from the log (never the
    /// head or tail), and the sequence to go on from.
    fn read_live(&self, from: u64, below: u64, max: usize) -> (Vec<(u64, Entry)>, u64) {
        let mut out = Vec::new();
        if self.limits.memory {
            let mut next = below;
            for (seq, r) in self.memory.range(from..below) {
                if out.len() == max {
                    next = *seq;
                    break;
                }
                out.push((*seq, Entry::of(r)));
            }
            return (out, next);
        }
        let mut start = from;
        'scan: loop {
            for item in self.store.scan_between(self.station, start, below) {
                match item {
                    Ok(r) => {
                        if out.len() == max {
                            return (out, r.seq);
                        }
                        if !self.pending_deletes.contains(&r.seq) {
                            out.push((r.seq, Entry::of(&r)));
                        }
                        start = r.seq + 1;
                    }
                    // A corrupt record (counted and logged by the store) is skipped.
                    Err((Some(seq), _)) => start = seq + 1,
                    // A damaged block: go on from the next sequence.
                    Err((None, _)) => {
                        start += 1;
                        continue 'scan;
                    }
                }
            }
            return (out, below);
        }
    }

    /// The oldest live message's sequence, or `last_seq + 1`.
    pub fn first_seq(&mut self) -> u64 {
        self.fill_head();
        self.head.front().map_or(self.last_seq + 1, |(s, _)| *s)
    }

    /// The oldest live message's time.
    pub fn first_time_ns(&mut self) -> Option<u64> {
        self.fill_head();
        self.head.front().map(|(_, e)| e.time_ns)
    }

    /// Removes the oldest live message.
    fn evict_oldest(&mut self) -> Option<u64> {
        self.fill_head();
        let (seq, entry) = self.head.pop_front()?;
        self.unseal();
        self.memory.remove(&seq);
        self.account_out(seq, &entry);
        Some(seq)
    }

    /// Removes messages older than `cutoff` (ns); returns their sequences.
    pub fn expire_before(&mut self, cutoff: u64) -> Vec<u64> {
        let mut old = Vec::new();
        while self.first_time_ns().is_some_and(|t| t < cutoff) {
            match self.evict_oldest() {
                Some(seq) => old.push(seq),
                None => break,
            }
        }
        old
    }

    /// Sequences to drop so the limits hold again (discard old).
    pub fn over_limits(&mut self) -> Vec<u64> {
        let mut evicted = Vec::new();
        let l = self.limits;
        if l.max_msgs_per_subject > 0 {
            let subjects = std::mem::take(&mut self.subjects_over);
            for subject in subjects {
                loop {
                    let oldest = match self.per_subject.get(&subject) {
                        Some(s) if s.seqs.len() as i64 > l.max_msgs_per_subject => s.seqs.front(),
                        _ => None,
                    };
                    let Some(seq) = oldest.copied() else { break };
                    if self.forget(seq).is_some() {
                        evicted.push(seq);
                    } else if let Some(s) = self.per_subject.get_mut(&subject) {
                        // Not stored after all: stop tracking it.
                        s.seqs.pop_front();
                    }
                }
            }
        } else {
            self.subjects_over.clear();
        }
        while l.max_msgs >= 0 && self.msgs as i64 > l.max_msgs {
            match self.evict_oldest() {
                Some(seq) => evicted.push(seq),
                None => break,
            }
        }
        while l.max_bytes >= 0 && self.bytes as i64 > l.max_bytes {
            match self.evict_oldest() {
                Some(seq) => evicted.push(seq),
                None => break,
            }
        }
        evicted
    }

    /// New limits: per-subject sequences are collected (or dropped) to match, and
    /// every subject is checked against the per-subject limit.
    pub fn set_limits(&mut self, limits: Limits) {
        self.unseal();
        let had = self.tracks_seqs();
        self.limits = limits;
        match (had, self.tracks_seqs()) {
            (false, true) => {
                let mut seqs: Vec<(u64, Bytes)> = Vec::new();
                self.walk(1, |m| {
                    seqs.push((m.seq, m.subject.clone()));
                    ControlFlow::Continue(())
                });
                for (seq, subject) in seqs {
                    if let Some(s) = self.per_subject.get_mut(&subject) {
                        s.seqs.push_back(seq);
                    }
                }
            }
            (true, false) => {
                for s in self.per_subject.values_mut() {
                    s.seqs = VecDeque::new();
                }
            }
            _ => {}
        }
        let limit = self.limits.max_msgs_per_subject;
        self.subjects_over = if limit > 0 {
            self.per_subject
                .iter()
                .filter(|(_, s)| s.seqs.len() as i64 > limit)
                .map(|(k, _)| k.clone())
                .collect()
        } else {
            Vec::new()
        };
    }

    /// Empties the index (a purge of everything); returns the sequences in the
    /// tail (which may not be in the log yet and need deletes of their own) and
    /// the bound below which every stored message can be deleted by range.
    pub fn clear(&mut self) -> (Vec<u64>, u64) {
        self.unseal();
        let tail: Vec<u64> = self.tail.iter().map(|(s, _)| *s).collect();
        let bound = self.tail_start;
        self.head.clear();
        self.tail.clear();
        self.pending_deletes.clear();
        self.pending_order.clear();
        self.memory.clear();
        self.per_subject.clear();
        self.subjects_over.clear();
        self.msgs = 0;
        self.bytes = 0;
        self.tail_start = self.last_seq + 1;
        self.head_end = self.tail_start;
        (tail, bound)
    }

    // --- lookups --------------------------------------------------------------------

    /// Is `seq` a live message?
    pub fn is_live(&self, seq: u64) -> bool {
        if seq == 0 || seq > self.last_seq {
            false
        } else if seq < self.head_end {
            self.head.binary_search_by_key(&seq, |(s, _)| *s).is_ok()
        } else if seq >= self.tail_start {
            self.tail.binary_search_by_key(&seq, |(s, _)| *s).is_ok()
        } else if self.limits.memory {
            self.memory.contains_key(&seq)
        } else {
            !self.pending_deletes.contains(&seq)
                && self
                    .store
                    .seqs_between(self.station, seq, seq + 1)
                    .next()
                    .is_some()
        }
    }

    /// The subject of a live message.
    pub fn subject_of(&self, seq: u64) -> Option<Bytes> {
        if seq < self.head_end {
            let at = self.head.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
            return self.head.get(at).map(|(_, e)| e.subject.clone());
        }
        if seq >= self.tail_start {
            let at = self.tail.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
            return self.tail.get(at).map(|(_, e)| e.subject.clone());
        }
        if self.pending_deletes.contains(&seq) {
            return None;
        }
        self.read_entry(seq).map(|e| e.subject)
    }

    /// Walks the live messages from `from` on, oldest first, until `f` breaks.
    pub fn walk(&self, from: u64, mut f: impl FnMut(Seen<'_>) -> ControlFlow<()>) {
        let from = from.max(1);
        if from < self.head_end && walk_window(&self.head, from, &mut f).is_break() {
            return;
        }
        let gap_from = from.max(self.head_end);
        if gap_from < self.tail_start {
            let mut stop = false;
            self.walk_log(gap_from, self.tail_start, |seq, r| {
                let seen = Seen {
                    seq,
                    subject: &r.subject,
                    time_ns: r.time_ns,
                };
                let flow = f(seen);
                stop = flow.is_break();
                flow
            });
            if stop {
                return;
            }
        }
        let _ = walk_window(&self.tail, from, &mut f);
    }

    /// Live records of the log (or memory map) with `from <= seq < below`.
    fn walk_log(&self, from: u64, below: u64, mut f: impl FnMut(u64, &Record) -> ControlFlow<()>) {
        if self.limits.memory {
            for (seq, r) in self.memory.range(from..below) {
                if f(*seq, r).is_break() {
                    return;
                }
            }
            return;
        }
        let mut start = from;
        'scan: loop {
            for item in self.store.scan_between(self.station, start, below) {
                match item {
                    Ok(r) => {
                        start = r.seq + 1;
                        if !self.pending_deletes.contains(&r.seq) && f(r.seq, &r).is_break() {
                            return;
                        }
                    }
                    Err((Some(seq), _)) => start = seq + 1,
                    Err((None, _)) => {
                        start += 1;
                        continue 'scan;
                    }
                }
            }
            return;
        }
    }

    /// Live sequences from `from` on (no subjects read where avoidable), oldest
    /// first, until `f` breaks.
    pub fn walk_seqs(&self, from: u64, mut f: impl FnMut(u64) -> ControlFlow<()>) {
        let from = from.max(1);
        if from < self.head_end {
            let at = self.head.partition_point(|(s, _)| *s < from);
            for (seq, _) in self.head.range(at..) {
                if f(*seq).is_break() {
                    return;
                }
            }
        }
        let gap_from = from.max(self.head_end);
        if gap_from < self.tail_start {
            if self.limits.memory {
                for seq in self
                    .memory
                    .range(gap_from..self.tail_start)
                    .map(|(s, _)| *s)
                {
                    if f(seq).is_break() {
                        return;
                    }
                }
            } else {
                for seq in self
                    .store
                    .seqs_between(self.station, gap_from, self.tail_start)
                {
                    if !self.pending_deletes.contains(&seq) && f(seq).is_break() {
                        return;
                    }
                }
            }
        }
        let at = self.tail.partition_point(|(s, _)| *s < from);
        for (seq, _) in self.tail.range(at..) {
            if f(*seq).is_break() {
                return;
            }
        }
    }

    /// Live sequences below `below`, newest first, until `f` breaks.
    fn walk_rev(&self, below: u64, mut f: impl FnMut(u64) -> ControlFlow<()>) {
        let at = self.tail.partition_point(|(s, _)| *s < below);
        for (seq, _) in self.tail.range(..at).rev() {
            if f(*seq).is_break() {
                return;
            }
        }
        let gap_below = below.min(self.tail_start);
        if self.head_end < gap_below {
            if self.limits.memory {
                for seq in self
                    .memory
                    .range(self.head_end..gap_below)
                    .rev()
                    .map(|(s, _)| *s)
                {
                    if f(seq).is_break() {
                        return;
                    }
                }
            } else {
                for item in self.store.scan_rev_below(self.station, gap_below) {
                    let seq = match item {
                        Ok(r) => r.seq,
                        Err((Some(seq), _)) => seq,
                        Err((None, _)) => break,
                    };
                    if seq < self.head_end {
                        break;
                    }
                    if !self.pending_deletes.contains(&seq) && f(seq).is_break() {
                        return;
                    }
                }
            }
        }
        let at = self.head.partition_point(|(s, _)| *s < below);
        for (seq, _) in self.head.range(..at).rev() {
            if f(*seq).is_break() {
                return;
            }
        }
    }

    /// The newest live message of `subject` below `below` (reads backwards).
    fn newest_of(&self, subject: &Bytes, below: u64) -> Option<u64> {
        let at = self.tail.partition_point(|(s, _)| *s < below);
        if let Some((seq, _)) = self
            .tail
            .range(..at)
            .rev()
            .find(|(_, e)| e.subject == *subject)
        {
            return Some(*seq);
        }
        let gap_below = below.min(self.tail_start);
        if self.head_end < gap_below {
            if self.limits.memory {
                if let Some((seq, _)) = self
                    .memory
                    .range(self.head_end..gap_below)
                    .rev()
                    .find(|(_, r)| r.subject == *subject)
                {
                    return Some(*seq);
                }
            } else {
                for item in self.store.scan_rev_below(self.station, gap_below) {
                    match item {
                        Ok(r) if r.seq < self.head_end => break,
                        Ok(r)
                            if r.subject == *subject && !self.pending_deletes.contains(&r.seq) =>
                        {
                            return Some(r.seq);
                        }
                        Ok(_) | Err((Some(_), _)) => {}
                        Err((None, e)) => {
                            tracing::error!(station = self.station, error = %e, "cannot read back past a damaged block");
                            break;
                        }
                    }
                }
            }
        }
        let at = self.head.partition_point(|(s, _)| *s < below);
        self.head
            .range(..at)
            .rev()
            .find(|(_, e)| e.subject == *subject)
            .map(|(s, _)| *s)
    }

    /// The lowest first and highest last sequence over the subjects `filters`
    /// match, or `None` when no stored subject matches. `filters` must be non-empty.
    pub fn subject_bounds(&self, filters: &[SubjectFilter]) -> Option<(u64, u64)> {
        let mut bounds: Option<(u64, u64)> = None;
        let mut add = |s: &SubjectState| {
            bounds = Some(match bounds {
                None => (s.first, s.last),
                Some((f, l)) => (f.min(s.first), l.max(s.last)),
            });
        };
        if filters.iter().all(SubjectFilter::is_literal) {
            for f in filters {
                if let Some(s) = self.per_subject.get(f.as_bytes()) {
                    add(s);
                }
            }
        } else {
            for (subject, s) in &self.per_subject {
                if super::matches_any(filters, subject) {
                    add(s);
                }
            }
        }
        bounds
    }
}

/// Walks a window of remembered entries from `from` on until `f` breaks.
fn walk_window(
    window: &VecDeque<(u64, Entry)>,
    from: u64,
    f: &mut impl FnMut(Seen<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let at = window.partition_point(|(s, _)| *s < from);
    for (seq, e) in window.range(at..) {
        f(Seen {
            seq: *seq,
            subject: &e.subject,
            time_ns: e.time_ns,
        })?;
    }
    ControlFlow::Continue(())
}
