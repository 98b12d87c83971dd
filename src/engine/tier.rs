//! Tiering a station's log to S3: the remote index of one station, the
//! uploader that seals and uploads segments and then trims local disk, and the
//! reads that serve sequences below the local log from the bucket.
//!
//! The station's in-memory index ([`super::station`]) covers its *local* log
//! only. The remote index is the list of uploaded segments ([`SegmentRef`]),
//! kept in the store's `meta` keyspace under `tier/<station id>/<first seq>`,
//! one entry per segment, written (fsynced) only after the segment's upload
//! succeeded. A message leaves local disk only once a segment holding it is in
//! that index, so an S3 outage never loses a message: uploads wait and retry,
//! local disk keeps everything not uploaded, and publishing is not touched.
//!
//! Beside each index entry the store keeps the segment's subject summary
//! (`tiersubj/<station id>/<first seq>`, written in the same fsynced batch),
//! and the station keeps in memory, per subject, the sequence of its last
//! message in the index's segments ([`StationTier::last_of_subject`]): one
//! map entry per distinct subject of the remote range (its bytes plus 50 to
//! 100 bytes), as the local log's subject index keeps one per local subject.
//! It is rebuilt from the summaries at start, grows when a segment is
//! recorded and shrinks when segments are dropped (always the oldest first:
//! a subject whose last message was in a dropped segment has no remote
//! message left). Segments uploaded before the summary existed (version 1)
//! are not in it.
//!
//! Reads below the local first sequence go to the bucket: consumer groups
//! through [`StationTier::cached_block`] and [`StationTier::prefetch`] (a group
//! never waits on S3 while it fills; a fetched block wakes its groups), one-off
//! reads (`MSG.GET`, HTTP) through [`StationTier::read`], which waits at most
//! [`junction_storage::tier::READ_TIMEOUT`] and then fails with
//! [`EngineError::TierUnavailable`], never with "not found".

use super::station::{Station, now_ns};
use super::stations::StationRegistry;
use ahash::AHashMap;
use bytes::Bytes;
use junction_api::{EngineError, Retention, StationConfig, StorageKind, SubjectFilter, TierPolicy};
use junction_storage::Store;
use junction_storage::tier::manifest::{Manifest, ManifestSegment};
use junction_storage::tier::segment::{Header, SegmentWriter, SubjectSummary};
use junction_storage::tier::{Block, ManifestWrite, Remote, SegmentRef, TierError};
use parking_lot::{Mutex, RwLock};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the uploader looks at every station.
const UPLOAD_TICK: Duration = Duration::from_millis(250);
/// First wait after a failed upload; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Most segments one station uploads in one tick (then the next station).
const SEGMENTS_PER_TICK: usize = 16;

/// How far a consumer replaying the remote range is read ahead of the block it
/// delivers from (at most half the memory cache).
const READ_AHEAD_BYTES: u64 = 16 * 1024 * 1024;

/// The meta key of a station's remote index entry for the segment from `first`.
fn index_key(station: u64, first: u64) -> String {
    format!("tier/{station}/{first:020}")
}

/// The prefix of every remote index entry of a station.
fn index_prefix(station: u64) -> String {
    format!("tier/{station}/")
}

/// The meta key of the subject summary of a station's segment from `first`.
fn summary_key(station: u64, first: u64) -> String {
    format!("tiersubj/{station}/{first:020}")
}

/// The prefix of every subject summary of a station.
fn summary_prefix(station: u64) -> String {
    format!("tiersubj/{station}/")
}

/// Adds a segment's summary to a station's subject map (per subject the
/// last remote sequence).
fn merge_summary(subjects: &mut AHashMap<Bytes, u64>, summary: &SubjectSummary) {
    for e in &summary.subjects {
        match subjects.get_mut(&e.subject) {
            Some(last) => *last = (*last).max(e.last_seq),
            // A copy of its own: the summary's may share a buffer with the
            // records it was taken from.
            None => {
                subjects.insert(Bytes::copy_from_slice(&e.subject), e.last_seq);
            }
        }
    }
}

/// The meta key of a station's remote floor: remote messages below it were
/// purged (a purge up to a sequence inside a segment).
fn floor_key(station: u64) -> String {
    format!("tierfloor/{station}")
}

/// Metadata key prefix of deleted stations whose objects may still be in the
/// bucket (`tiergone/<uid>`): kept until the reconciler finds nothing left
/// under the station's prefix.
const GONE_PREFIX: &str = "tiergone/";

/// The part of `whole` (a segment's messages or bytes) for its sequences at
/// or above `floor` and below `local_first`, in proportion (estimated for a
/// segment cut by either).
fn share(s: &SegmentRef, floor: u64, local_first: u64, whole: u64) -> u64 {
    let lo = s.first_seq.max(floor);
    let hi = s.last_seq.min(local_first.saturating_sub(1));
    if hi < lo {
        return 0;
    }
    if lo == s.first_seq && hi == s.last_seq {
        return whole;
    }
    whole * (hi - lo + 1) / (s.last_seq - s.first_seq + 1)
}

/// How often the conditional-write probe is retried while S3 cannot be reached.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long after finding a server that overwrites it is asked again.
const UNSAFE_RETRY: Duration = Duration::from_secs(600);

/// How often the reconciler lists the bucket for objects no index holds.
const RECONCILE_EVERY: Duration = Duration::from_secs(600);
/// An object no index holds is removed only once it is this old: an upload
/// records its index entry right after the PUT, so a younger one may be on
/// its way in.
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// Maps a tier error onto the engine's: unavailable stays unavailable, a
/// damaged object is a corrupt record (never other data).
pub(crate) fn engine_error(e: TierError) -> EngineError {
    match e {
        TierError::Corrupt { .. } => EngineError::CorruptRecord(e.to_string()),
        TierError::Unavailable(why) | TierError::Config(why) => EngineError::TierUnavailable(why),
        e => EngineError::TierUnavailable(e.to_string()),
    }
}

/// Checks a station's tier policy against the station and the broker.
pub(crate) fn check_policy(config: &StationConfig, configured: bool) -> Result<(), EngineError> {
    let Some(policy) = &config.tier else {
        return Ok(());
    };
    if !configured {
        return Err(EngineError::invalid_config(
            "tier: the broker has no [tier] bucket configured",
        ));
    }
    policy.validate().map_err(EngineError::invalid_config)?;
    if config.storage != StorageKind::File {
        return Err(EngineError::invalid_config(
            "tier: only file stations can be tiered",
        ));
    }
    if config.retention != Retention::Limits {
        return Err(EngineError::invalid_config(
            "tier: only stations with limits retention can be tiered",
        ));
    }
    Ok(())
}

/// What this process knows of a station's manifest object.
#[derive(Default)]
struct ManifestState {
    /// The e-tag of the version this process last wrote or read.
    e_tag: Option<String>,
    /// `e_tag` is known (the object was read or written since the start).
    known: bool,
    /// The local index changed since the manifest was last written.
    dirty: bool,
    /// Another writer changed the manifest: this process stops writing it
    /// (until a restart) rather than overwrite what it cannot see.
    conflict: bool,
}

/// When the uploader may try a station again.
#[derive(Default)]
struct Backoff {
    not_before: Option<Instant>,
    delay: Duration,
}

/// One station's remote index and tier state.
pub(crate) struct StationTier {
    remote: Arc<Remote>,
    /// Uploaded segments, in sequence order.
    segments: RwLock<Vec<SegmentRef>>,
    /// Per subject of the segments' summaries, the sequence of its last
    /// message in them (taken after `segments` when both are).
    subjects: RwLock<AHashMap<Bytes, u64>>,
    /// The station, to wake its groups when a block they wait for arrives.
    station: Weak<Station>,
    /// Block fetches under way for groups: (segment key, sequence asked for).
    fetching: Mutex<HashSet<(String, u64)>>,
    /// Blocks being read ahead: (segment key, block offset).
    fetching_blocks: Mutex<HashSet<(String, u64)>>,
    backoff: Mutex<Backoff>,
    /// Time of the oldest committed message not yet uploaded (0: none), as the
    /// uploader last saw it.
    lag_oldest_ns: AtomicU64,
    /// Remote messages below it were purged ([`floor_key`]; 0: none).
    floor: AtomicU64,
    /// Bytes committed and not yet uploaded, as the uploader last measured
    /// (estimated from the local log's average message size).
    pending_bytes: AtomicU64,
    /// The policy's `max_pending_bytes`, as the uploader last read it (0: none).
    pending_cap: AtomicU64,
    /// The station is being deleted ([`StationTier::forget`]): an upload that
    /// finishes now deletes its object instead of recording it. Set and read
    /// under `segments`' write lock.
    forgotten: std::sync::atomic::AtomicBool,
    /// This station's block reads, from the cache or S3.
    pub reads: Arc<junction_storage::tier::ReadCounters>,
    /// The manifest object in the bucket.
    manifest: Mutex<ManifestState>,
    /// The index was empty at load: the uploader first looks for a manifest
    /// to rebuild it from, and uploads nothing for the station until it has.
    rebuild_pending: std::sync::atomic::AtomicBool,
}

impl StationTier {
    /// The tier of `station`, with its remote index read from the store;
    /// `recovered`: read at start, when an empty index is to be rebuilt from
    /// the bucket's manifest.
    pub fn load(
        remote: Arc<Remote>,
        store: &Store,
        station: &Arc<Station>,
        recovered: bool,
    ) -> Result<StationTier, EngineError> {
        let mut segments = Vec::new();
        for (key, value) in store
            .list_meta(&index_prefix(station.id))
            .map_err(|e| EngineError::Storage(e.to_string()))?
        {
            let seg = SegmentRef::decode(&value).map_err(|e| {
                EngineError::Storage(format!("unreadable remote index entry {key}: {e}"))
            })?;
            segments.push(seg);
        }
        segments.sort_by_key(|s| s.first_seq);
        let empty = segments.is_empty();
        let subjects = load_subjects(store, station, &segments)?;
        let floor = store
            .get_meta(&floor_key(station.id))
            .map_err(|e| EngineError::Storage(e.to_string()))?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(StationTier {
            remote,
            segments: RwLock::new(segments),
            subjects: RwLock::new(subjects),
            station: Arc::downgrade(station),
            fetching: Mutex::new(HashSet::new()),
            fetching_blocks: Mutex::new(HashSet::new()),
            backoff: Mutex::new(Backoff::default()),
            lag_oldest_ns: AtomicU64::new(0),
            floor: AtomicU64::new(floor),
            pending_bytes: AtomicU64::new(0),
            pending_cap: AtomicU64::new(station.config().tier.map_or(0, |p| p.max_pending_bytes)),
            forgotten: std::sync::atomic::AtomicBool::new(false),
            reads: Arc::default(),
            // Written once per start: it may predate a change that was not
            // written (a crash), or this version of the broker.
            manifest: Mutex::new(ManifestState {
                dirty: !empty,
                ..ManifestState::default()
            }),
            rebuild_pending: std::sync::atomic::AtomicBool::new(empty && recovered),
        })
    }

    /// Whether a failure asked to wait before S3 is tried again.
    fn backing_off(&self) -> bool {
        self.backoff
            .lock()
            .not_before
            .is_some_and(|t| Instant::now() < t)
    }

    /// An S3 call failed: wait longer before the next one (doubled per
    /// failure up to [`MAX_BACKOFF`]).
    fn failed(&self) {
        let mut b = self.backoff.lock();
        b.delay = if b.delay.is_zero() {
            FIRST_BACKOFF
        } else {
            (b.delay * 2).min(MAX_BACKOFF)
        };
        b.not_before = Some(Instant::now() + b.delay);
    }

    /// The local index changed: the manifest is rewritten on the next
    /// uploader tick.
    fn manifest_changed(&self) {
        self.manifest.lock().dirty = true;
    }

    /// The manifest of the index as it is now: its segments with their
    /// subject summaries (from the store) and the floor.
    fn manifest_now(&self, store: &Store, station: u64) -> Result<Manifest, EngineError> {
        let segments = self.segments.read().clone();
        let mut out = Vec::with_capacity(segments.len());
        for entry in segments {
            let summary = store
                .get_meta(&summary_key(station, entry.first_seq))
                .map_err(|e| EngineError::Storage(e.to_string()))?
                .and_then(|v| SubjectSummary::decode(&v).ok());
            out.push(ManifestSegment { entry, summary });
        }
        Ok(Manifest {
            floor: self.floor(),
            segments: out,
        })
    }

    /// Refuses a publish while more than the policy's `max_pending_bytes`
    /// wait to be uploaded: the publisher is told (JetStream 10047, HTTP 507,
    /// MQTT 5 0x97) rather than the local disk filling while S3 is away.
    /// Two atomic loads: it runs for every stored publish.
    pub fn admit(&self, station: &str) -> Result<(), EngineError> {
        let cap = self.pending_cap.load(Ordering::Relaxed);
        let pending = self.pending_bytes.load(Ordering::Relaxed);
        if cap == 0 || pending <= cap {
            return Ok(());
        }
        Err(EngineError::StorageFenced(format!(
            "station '{station}' has {pending} bytes not yet uploaded to S3 (tier.max_pending_bytes = {cap}); publishes resume once the uploads catch up"
        )))
    }

    /// Measures the bytes waiting to be uploaded (each uploader tick, S3 up
    /// or down).
    fn measure_pending(&self, station: &Station) {
        let committed = station.committed();
        let (local_first, local_msgs, local_bytes) = station.local_counts();
        let next = (self.uploaded_through() + 1).max(local_first);
        let waiting = (committed + 1).saturating_sub(next).min(local_msgs);
        let bytes = local_bytes.saturating_mul(waiting) / local_msgs.max(1);
        let before = self.pending_bytes.swap(bytes, Ordering::Relaxed);
        let cap = station.config().tier.map_or(0, |p| p.max_pending_bytes);
        self.pending_cap.store(cap, Ordering::Relaxed);
        if cap > 0 {
            if before <= cap && bytes > cap {
                tracing::warn!(
                    station = station.name(),
                    pending = bytes,
                    cap,
                    "publishes refused: too much waits to be uploaded to S3"
                );
            } else if before > cap && bytes <= cap {
                tracing::info!(
                    station = station.name(),
                    pending = bytes,
                    cap,
                    "publishes accepted again: the uploads caught up"
                );
            }
        }
    }

    /// The sequence of the last message of `subject` that only the bucket
    /// holds: below `local_first` and not purged. `None` when the subject has
    /// no such message in the summarised segments, or when its last uploaded
    /// message is at or above `local_first` (it was deleted while still
    /// local: older remote ones are not looked for).
    pub fn last_of_subject(&self, subject: &[u8], local_first: u64) -> Option<u64> {
        let last = *self.subjects.read().get(subject)?;
        (last >= self.floor() && last < local_first).then_some(last)
    }

    /// [`StationTier::last_of_subject`] of every subject `wanted` takes whose
    /// last message there is at most `up_to`, in no order.
    pub fn last_per_subject(
        &self,
        local_first: u64,
        up_to: u64,
        wanted: impl Fn(&Bytes) -> bool,
    ) -> Vec<u64> {
        let floor = self.floor();
        self.subjects
            .read()
            .iter()
            .filter(|(s, last)| {
                **last >= floor && **last < local_first && **last <= up_to && wanted(s)
            })
            .map(|(_, last)| *last)
            .collect()
    }

    /// How many subjects have a message only the bucket holds
    /// ([`StationTier::last_of_subject`]), local or not.
    pub fn remote_subjects(&self, local_first: u64) -> u64 {
        let floor = self.floor();
        self.subjects
            .read()
            .values()
            .filter(|last| **last >= floor && **last < local_first)
            .count() as u64
    }

    /// How many of [`StationTier::remote_subjects`] are also in the local log,
    /// whose subjects are `local` (`is_local` tells one): walks the smaller of
    /// the two, as it runs under the station's lock.
    pub fn remote_subjects_also_local<'a>(
        &self,
        local_first: u64,
        local: impl ExactSizeIterator<Item = &'a Bytes>,
        is_local: impl Fn(&[u8]) -> bool,
    ) -> u64 {
        let floor = self.floor();
        let subjects = self.subjects.read();
        let remote = |last: u64| last >= floor && last < local_first;
        if local.len() <= subjects.len() {
            local
                .filter(|s| subjects.get(*s).is_some_and(|l| remote(*l)))
                .count() as u64
        } else {
            subjects
                .iter()
                .filter(|(s, last)| remote(**last) && is_local(s))
                .count() as u64
        }
    }

    /// Remote messages below this were purged.
    pub fn floor(&self) -> u64 {
        self.floor.load(Ordering::Acquire)
    }

    /// The first sequence held remotely.
    pub fn first_seq(&self) -> Option<u64> {
        self.segments
            .read()
            .first()
            .map(|s| s.first_seq.max(self.floor()))
    }

    /// The last uploaded sequence (0: none).
    pub fn uploaded_through(&self) -> u64 {
        self.segments.read().last().map_or(0, |s| s.last_seq)
    }

    /// The segment holding `seq`, or the first one after it (never one
    /// wholly below the floor).
    pub fn segment_from(&self, seq: u64) -> Option<SegmentRef> {
        let seq = seq.max(self.floor());
        let segs = self.segments.read();
        let i = segs.partition_point(|s| s.last_seq < seq);
        segs.get(i).cloned()
    }

    /// (segments, their bytes, messages in them below `local_first`).
    pub fn totals(&self, local_first: u64) -> (u64, u64, u64) {
        let segs = self.segments.read();
        let bytes = segs.iter().map(|s| s.bytes).sum();
        let floor = self.floor();
        let remote_only = segs
            .iter()
            .map(|s| share(s, floor, local_first, s.messages))
            .sum();
        (segs.len() as u64, bytes, remote_only)
    }

    /// Bytes of the remote messages below `local_first` (a segment partly
    /// local, or cut by the floor, counts in proportion).
    pub fn remote_bytes_below(&self, local_first: u64) -> u64 {
        let floor = self.floor();
        self.segments
            .read()
            .iter()
            .map(|s| share(s, floor, local_first, s.bytes))
            .sum()
    }

    /// Time of the oldest remote message.
    pub fn first_time_ns(&self) -> Option<u64> {
        self.segments.read().first().map(|s| s.min_time_ns)
    }

    /// Time of the oldest committed message not yet uploaded (0: none).
    pub fn lag_oldest_ns(&self) -> u64 {
        self.lag_oldest_ns.load(Ordering::Relaxed)
    }

    /// The block of the segment `seg` holding `from` (or the first after it),
    /// when it is in the cache.
    pub fn cached_block(&self, seg: &SegmentRef, from: u64) -> Option<Block> {
        let footer = self.remote.cached_footer(&seg.key)?;
        let b = footer.block_for(from)?;
        let block = self.remote.cached(&seg.key, b.offset)?;
        self.remote
            .counters
            .cache_hits
            .fetch_add(1, Ordering::Relaxed);
        self.reads.hits.fetch_add(1, Ordering::Relaxed);
        Some(block)
    }

    /// Starts fetching what a consumer replaying the remote range reads next,
    /// from `from` (below `local_first`), so that it finds it in the cache
    /// rather than waiting for one GET after another: at most `requests` GETs
    /// are started, over at most [`READ_AHEAD_BYTES`] (half the memory cache
    /// when that is smaller). Consecutive blocks missing from both caches are
    /// fetched in one ranged GET ([`junction_storage::tier::SPAN_BYTES`]).
    pub fn read_ahead(&self, from: u64, local_first: u64, requests: usize) {
        let window = READ_AHEAD_BYTES
            .min(self.remote.cache_capacity() / 2)
            .max(1);
        let span_bytes = junction_storage::tier::SPAN_BYTES.min(window / 2).max(1);
        let (mut seq, mut ahead, mut started) = (from, 0u64, 0usize);
        while seq < local_first && ahead < window && started < requests {
            let Some(seg) = self.segment_from(seq).filter(|s| s.first_seq < local_first) else {
                return;
            };
            let here = seq.max(seg.first_seq);
            let Some(footer) = self.remote.cached_footer(&seg.key) else {
                // The footer is not read yet: its fetch reads the first block
                // (a small segment: all of it).
                self.prefetch(&seg, here);
                started += 1;
                ahead += seg.object_len.min(junction_storage::tier::WHOLE_READ_BYTES);
                seq = seg.last_seq + 1;
                continue;
            };
            let mut i = footer.blocks.partition_point(|b| b.last_seq < here);
            while let Some(b) = footer.blocks.get(i) {
                if b.first_seq >= local_first || ahead >= window || started >= requests {
                    return;
                }
                let span = {
                    let busy = self.fetching_blocks.lock();
                    self.remote
                        .span_from(&seg.key, &footer, i, local_first, span_bytes, |o| {
                            busy.contains(&(seg.key.clone(), o))
                        })
                };
                if span.is_empty() {
                    // In memory, being fetched, or on the disk cache only: that
                    // one is read from the disk into memory now (a group
                    // waiting for it gets no other fetch of it).
                    let busy = self
                        .fetching_blocks
                        .lock()
                        .contains(&(seg.key.clone(), b.offset));
                    if !busy && !self.remote.is_cached(&seg.key, b.offset) {
                        self.prefetch(&seg, b.first_seq.max(here));
                        started += 1;
                    }
                    ahead += u64::from(b.len);
                    i += 1;
                    continue;
                }
                ahead += span.iter().map(|b| u64::from(b.len)).sum::<u64>();
                i += span.len();
                started += 1;
                self.prefetch_span(&seg, span);
            }
            seq = seg.last_seq + 1;
        }
    }

    /// Fetches `span` of `seg` ([`Remote::span_from`]) in one GET on the
    /// tier's runtime, then lets the station's groups fill again. A failure
    /// is logged and counted; the blocks are read again when a group needs
    /// them.
    fn prefetch_span(
        &self,
        seg: &SegmentRef,
        span: Vec<junction_storage::tier::segment::BlockRef>,
    ) {
        {
            let mut busy = self.fetching_blocks.lock();
            for b in &span {
                busy.insert((seg.key.clone(), b.offset));
            }
        }
        let (remote, seg2, reads) = (self.remote.clone(), seg.clone(), self.reads.clone());
        let offsets: Vec<u64> = span.iter().map(|b| b.offset).collect();
        self.fetch_then_fill(
            seg,
            "remote read-ahead",
            async move { remote.fetch_span(&seg2, &span, &reads).await },
            move |t, seg, _| {
                let mut busy = t.fetching_blocks.lock();
                for o in offsets {
                    busy.remove(&(seg.key.clone(), o));
                }
            },
        );
    }

    /// Runs `fetch` on the tier's runtime (at most the read timeout), calls
    /// `done` with what it got (`None`: it failed), then lets the station's
    /// groups fill again; a failure is counted and logged as `what`'s.
    fn fetch_then_fill<T: Send + 'static>(
        &self,
        seg: &SegmentRef,
        what: &'static str,
        fetch: impl std::future::Future<Output = Result<T, TierError>> + Send + 'static,
        done: impl FnOnce(&StationTier, &SegmentRef, Option<&T>) + Send + 'static,
    ) {
        let remote = self.remote.clone();
        let station = self.station.clone();
        let seg = seg.clone();
        self.remote.read_runtime().spawn(async move {
            let r = tokio::time::timeout(junction_storage::tier::READ_TIMEOUT, fetch).await;
            let Some(st) = station.upgrade() else { return };
            if let Some(t) = st.tier() {
                done(t, &seg, r.as_ref().ok().and_then(|r| r.as_ref().ok()));
            }
            match r {
                Ok(Ok(_)) => {
                    let _ = tokio::task::spawn_blocking(move || st.fill_groups()).await;
                }
                Ok(Err(e)) => {
                    remote.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(station = st.name(), key = %seg.key, error = %e, "{what} failed; consumers wait and read again");
                }
                Err(_) => {
                    remote.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(station = st.name(), key = %seg.key, "{what} timed out; consumers wait and read again");
                }
            }
        });
    }

    /// Whether the block of `seg` holding `seq` is cached (not counted as a
    /// cache hit: nothing is read).
    pub fn is_cached(&self, seg: &SegmentRef, seq: u64) -> bool {
        self.remote
            .cached_footer(&seg.key)
            .and_then(|f| f.block_for(seq).copied())
            .is_some_and(|b| self.remote.is_cached(&seg.key, b.offset))
    }

    /// Fetches the block of `seg` holding `from` into the cache on the tier's
    /// runtime, then lets the station's groups fill again. A failure is logged
    /// and counted; the groups try again on their next tick.
    pub fn prefetch(&self, seg: &SegmentRef, from: u64) {
        if !self.fetching.lock().insert((seg.key.clone(), from)) {
            return;
        }
        let (remote, seg2, reads) = (self.remote.clone(), seg.clone(), self.reads.clone());
        self.fetch_then_fill(
            seg,
            "remote block read",
            async move { remote.block_for(&seg2, from, &reads).await },
            move |t, seg, _| {
                t.fetching.lock().remove(&(seg.key.clone(), from));
            },
        );
    }

    /// Reads message `seq` from the bucket, waiting at most the read timeout.
    /// `Ok(None)`: no segment holds it (it was never uploaded or was deleted
    /// before the upload).
    pub fn read(&self, seq: u64) -> Result<Option<junction_storage::Record>, EngineError> {
        if seq < self.floor() {
            return Ok(None);
        }
        let Some(seg) = self.segment_from(seq).filter(|s| s.first_seq <= seq) else {
            return Ok(None);
        };
        let block = match self.cached_block(&seg, seq) {
            Some(b) => b,
            None => {
                let remote = self.remote.clone();
                let s = seg.clone();
                let reads = self.reads.clone();
                match self
                    .remote
                    .wait(async move { remote.block_for(&s, seq, &reads).await })
                    .map_err(engine_error)?
                {
                    Some((_, b)) => b,
                    None => return Ok(None),
                }
            }
        };
        Ok(block
            .binary_search_by_key(&seq, |r| r.seq)
            .ok()
            .map(|i| block[i].clone()))
    }

    /// The first remote sequence at or after `from` and below `local_first`
    /// whose subject matches `filter`, reading blocks from the bucket (each
    /// read waits at most the read timeout).
    pub fn next_matching(
        &self,
        from: u64,
        filter: &SubjectFilter,
        local_first: u64,
    ) -> Result<Option<u64>, EngineError> {
        let mut from = from;
        while from < local_first {
            let Some(seg) = self
                .segment_from(from)
                .filter(|s| s.first_seq < local_first)
            else {
                return Ok(None);
            };
            let here = from.max(seg.first_seq);
            let block = match self.cached_block(&seg, here) {
                Some(b) => b,
                None => {
                    let remote = self.remote.clone();
                    let s = seg.clone();
                    let reads = self.reads.clone();
                    match self
                        .remote
                        .wait(async move { remote.block_for(&s, here, &reads).await })
                        .map_err(engine_error)?
                    {
                        Some((_, b)) => b,
                        None => {
                            from = seg.last_seq + 1;
                            continue;
                        }
                    }
                }
            };
            for r in block.iter() {
                if r.seq >= here
                    && r.seq < local_first
                    && filter.matches(&junction_api::Subject::from_trusted(r.subject.clone()))
                {
                    return Ok(Some(r.seq));
                }
            }
            from = block.last().map_or(here, |r| r.seq).max(here) + 1;
        }
        Ok(None)
    }

    /// The first remote sequence stored at or after `time_ns` below
    /// `local_first`, waiting for S3 at most the read timeout. `None`: every
    /// remote message is older. On a failed read the segment's first sequence
    /// is answered (a consumer then starts early, never late).
    pub fn first_at_or_after(&self, time_ns: u64, local_first: u64) -> Option<u64> {
        let seg = {
            let segs = self.segments.read();
            segs.iter()
                .find(|s| s.max_time_ns >= time_ns && s.first_seq < local_first)
                .cloned()?
        };
        let floor = self.floor();
        if seg.min_time_ns >= time_ns {
            return Some(seg.first_seq.max(floor));
        }
        let remote = self.remote.clone();
        let s = seg.clone();
        let reads = self.reads.clone();
        match self
            .remote
            .wait(async move { remote.block_at_time(&s, time_ns, &reads).await })
        {
            Ok(Some(block)) => block
                .iter()
                .find(|r| r.time_ns >= time_ns)
                .map(|r| r.seq.max(floor))
                .or(Some(seg.first_seq.max(floor))),
            Ok(None) => Some(seg.first_seq.max(floor)),
            Err(e) => {
                tracing::warn!(key = %seg.key, error = %e, "remote read for a start time failed; starting at the segment's first message");
                Some(seg.first_seq.max(floor))
            }
        }
    }

    /// Forgets the remote index and deletes its objects (the station is
    /// being deleted).
    pub fn forget(&self, store: &Store, station: u64) -> Result<(), EngineError> {
        // Written first: if S3 cannot be reached now (or the process dies
        // before the deletes below are done), the reconciler removes what is
        // left under the station's prefix later, from this key alone.
        if let Some(st) = self.station.upgrade() {
            store
                .put_meta(&format!("{GONE_PREFIX}{}", st.tier_uid()), b"")
                .map_err(|e| EngineError::Storage(e.to_string()))?;
        }
        let all: Vec<SegmentRef> = {
            let segments = self.segments.write();
            self.forgotten.store(true, Ordering::Release);
            segments.clone()
        };
        self.drop_segments(store, station, &all)?;
        store
            .remove_meta(&floor_key(station))
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        if let Some(st) = self.station.upgrade() {
            let remote = self.remote.clone();
            let key = remote.manifest_key(&st.tier_uid());
            self.remote.runtime().spawn(async move {
                if let Err(e) = remote.delete(&key).await {
                    tracing::warn!(key, error = %e, "cannot delete a deleted station's manifest");
                }
            });
        }
        Ok(())
    }

    /// A purge up to `below` (`u64::MAX`: everything): the segments wholly
    /// below it are dropped, and the floor rises to it so that the messages
    /// of a segment it cuts are not read any more. Returns how many remote
    /// messages (below the local log) it removed, as the station counts them.
    pub fn purge_below(
        &self,
        store: &Store,
        station: u64,
        below: u64,
        local_first: u64,
    ) -> Result<u64, EngineError> {
        let floor = self.floor();
        let (doomed, counted): (Vec<SegmentRef>, u64) = {
            let segs = self.segments.read();
            let doomed: Vec<SegmentRef> = segs
                .iter()
                .filter(|s| s.last_seq < below)
                .cloned()
                .collect();
            // Messages below the local log and above the old floor, in the
            // purged range (a cut segment in proportion).
            let counted = segs
                .iter()
                .map(|s| share(s, floor, local_first.min(below), s.messages))
                .sum();
            (doomed, counted)
        };
        self.drop_segments(store, station, &doomed)?;
        if below != u64::MAX
            && below > floor
            && self
                .segments
                .read()
                .first()
                .is_some_and(|s| s.first_seq < below)
        {
            store
                .put_meta(&floor_key(station), below.to_string().as_bytes())
                .map_err(|e| EngineError::Storage(e.to_string()))?;
            self.floor.store(below, Ordering::Release);
            self.manifest_changed();
        }
        Ok(counted)
    }

    /// The segments wholly below the local log that the station's own limits
    /// (`max_age`, `max_msgs`, `max_bytes`, counted over local and remote
    /// messages together) no longer keep, oldest first. As Kafka does, a
    /// segment goes only as a whole: a count limit keeps up to one segment
    /// more than it asks.
    fn expired(&self, config: &StationConfig, local: (u64, u64, u64)) -> Vec<SegmentRef> {
        let (local_first, local_msgs, local_bytes) = local;
        let segs = self.segments.read();
        let remote: Vec<&SegmentRef> = segs.iter().filter(|s| s.last_seq < local_first).collect();
        let mut msgs: u64 = local_msgs + remote.iter().map(|s| s.messages).sum::<u64>();
        let mut bytes: u64 = local_bytes + remote.iter().map(|s| s.bytes).sum::<u64>();
        let cutoff = (!config.max_age.is_zero())
            .then(|| now_ns().saturating_sub(config.max_age.as_nanos() as u64));
        let mut out = Vec::new();
        for s in remote {
            let aged = cutoff.is_some_and(|c| s.max_time_ns < c);
            let surplus_msgs = config.max_msgs > 0 && msgs - s.messages >= config.max_msgs as u64;
            let surplus_bytes = config.max_bytes > 0 && bytes - s.bytes >= config.max_bytes as u64;
            if !(aged || surplus_msgs || surplus_bytes) {
                break;
            }
            msgs -= s.messages;
            bytes -= s.bytes;
            out.push(s.clone());
        }
        out
    }

    /// Drops `doomed` from the index (fsynced) and from memory, then deletes
    /// their objects in the background: a crash in between leaves an object
    /// no index holds, which the reconciler removes, never an index entry
    /// whose object is gone.
    fn drop_segments(
        &self,
        store: &Store,
        station: u64,
        doomed: &[SegmentRef],
    ) -> Result<(), EngineError> {
        if doomed.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = doomed
            .iter()
            .flat_map(|s| {
                [
                    index_key(station, s.first_seq),
                    summary_key(station, s.first_seq),
                ]
            })
            .collect();
        store
            .write_meta_batch(&[], &keys)
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        let gone: HashSet<u64> = doomed.iter().map(|s| s.first_seq).collect();
        {
            let mut segments = self.segments.write();
            segments.retain(|s| !gone.contains(&s.first_seq));
            // Segments go oldest first: a subject whose last remote message
            // is below the first segment kept has none left.
            let mut subjects = self.subjects.write();
            match segments.first() {
                Some(first) => subjects.retain(|_, last| *last >= first.first_seq),
                None => subjects.clear(),
            }
            if subjects.capacity() > 2 * subjects.len() + 1024 {
                subjects.shrink_to_fit();
            }
        }
        self.manifest_changed();
        for s in doomed {
            self.remote.forget_cached(&s.key);
        }
        let remote = self.remote.clone();
        let objects: Vec<String> = doomed.iter().map(|s| s.key.clone()).collect();
        self.remote.runtime().spawn(async move {
            for key in objects {
                if let Err(e) = remote.delete(&key).await {
                    tracing::warn!(key, error = %e, "cannot delete a dropped segment; the reconciler removes it later");
                }
            }
        });
        Ok(())
    }

    /// Keys of the segments in the index.
    fn keys(&self) -> HashSet<String> {
        self.segments.read().iter().map(|s| s.key.clone()).collect()
    }

    /// Records an uploaded segment in the index (entry and subject summary,
    /// fsynced in one batch) and in memory. `Ok(false)`: not recorded, and
    /// its object is the caller's to delete: the station is being deleted,
    /// or the index already reaches `entry.first_seq` (a replicated
    /// station's segment uploaded twice, by two leaders one after the other:
    /// the first committed wins, the same on every replica).
    pub fn record(
        &self,
        store: &Store,
        station: u64,
        entry: SegmentRef,
        summary: &SubjectSummary,
    ) -> Result<bool, EngineError> {
        let mut segments = self.segments.write();
        if self.forgotten.load(Ordering::Acquire)
            || segments
                .last()
                .is_some_and(|s| s.last_seq >= entry.first_seq)
        {
            return Ok(false);
        }
        store
            .write_meta_batch(
                &[
                    (index_key(station, entry.first_seq), entry.encode()),
                    (summary_key(station, entry.first_seq), summary.encode()),
                ],
                &[],
            )
            .map_err(|e| EngineError::Storage(format!("cannot record an uploaded segment: {e}")))?;
        segments.push(entry);
        merge_summary(&mut self.subjects.write(), summary);
        drop(segments);
        self.manifest_changed();
        Ok(true)
    }

    /// Drops the segments starting at `firsts` (those still in the index),
    /// as [`StationTier::drop_segments`] does: a replicated station's
    /// leader decided that the station's limits no longer keep them.
    pub fn drop_firsts(
        &self,
        store: &Store,
        station: u64,
        firsts: &[u64],
    ) -> Result<(), EngineError> {
        let wanted: HashSet<u64> = firsts.iter().copied().collect();
        let doomed: Vec<SegmentRef> = self
            .segments
            .read()
            .iter()
            .filter(|s| wanted.contains(&s.first_seq))
            .cloned()
            .collect();
        self.drop_segments(store, station, &doomed)
    }

    /// The whole index (entries, subject summaries and floor) for a
    /// replicated station's snapshot.
    pub fn copy_index(&self, store: &Store, station: u64) -> Result<IndexCopy, EngineError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let m = self.manifest_now(store, station)?;
        Ok(IndexCopy {
            floor: m.floor,
            segments: m
                .segments
                .into_iter()
                .map(|s| IndexCopySegment {
                    entry: b64.encode(s.entry.encode()),
                    summary: s.summary.map(|x| b64.encode(x.encode())),
                })
                .collect(),
        })
    }

    /// Replaces the index with a snapshot's copy (a replica catching up from
    /// its leader's snapshot). No object is deleted: the copy is the group's
    /// index as it was, and what it lacks is no longer this replica's.
    pub fn install_index(
        &self,
        store: &Store,
        station: u64,
        copy: &IndexCopy,
    ) -> Result<(), EngineError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let bad = |e: String| EngineError::Storage(format!("snapshot's remote index: {e}"));
        let mut entries = Vec::with_capacity(copy.segments.len());
        let mut puts = Vec::new();
        let mut subjects = AHashMap::new();
        for s in &copy.segments {
            let raw = b64.decode(&s.entry).map_err(|e| bad(e.to_string()))?;
            let entry = SegmentRef::decode(&raw).map_err(|e| bad(e.to_string()))?;
            puts.push((index_key(station, entry.first_seq), raw));
            if let Some(summary) = &s.summary {
                let raw = b64.decode(summary).map_err(|e| bad(e.to_string()))?;
                let decoded = SubjectSummary::decode(&raw).map_err(|e| bad(e.to_string()))?;
                merge_summary(&mut subjects, &decoded);
                puts.push((summary_key(station, entry.first_seq), raw));
            }
            entries.push(entry);
        }
        entries.sort_by_key(|s| s.first_seq);
        puts.push((floor_key(station), copy.floor.to_string().into_bytes()));
        let mut segments = self.segments.write();
        let mut deletes: Vec<String> = segments
            .iter()
            .flat_map(|s| {
                [
                    index_key(station, s.first_seq),
                    summary_key(station, s.first_seq),
                ]
            })
            .collect();
        let kept: HashSet<&String> = puts.iter().map(|(k, _)| k).collect();
        deletes.retain(|k| !kept.contains(k));
        store
            .write_meta_batch(&puts, &deletes)
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        *segments = entries;
        *self.subjects.write() = subjects;
        self.floor.store(copy.floor, Ordering::Release);
        drop(segments);
        self.manifest_changed();
        Ok(())
    }
}

/// A replicated station's remote index as its snapshots carry it: segment
/// entries and subject summaries in their stored encoding (base64), and the
/// floor.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct IndexCopy {
    pub floor: u64,
    pub segments: Vec<IndexCopySegment>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct IndexCopySegment {
    pub entry: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// The station's subject map, from the summaries of the segments in its
/// index. A summary that fails its check is logged and left out: its
/// subjects are not found by subject (their messages stay readable by
/// sequence), rather than the station not loading.
fn load_subjects(
    store: &Store,
    station: &Station,
    segments: &[SegmentRef],
) -> Result<AHashMap<Bytes, u64>, EngineError> {
    let firsts: HashSet<u64> = segments.iter().map(|s| s.first_seq).collect();
    let mut subjects = AHashMap::new();
    for (key, value) in store
        .list_meta(&summary_prefix(station.id))
        .map_err(|e| EngineError::Storage(e.to_string()))?
    {
        let first = key.rsplit('/').next().and_then(|f| f.parse::<u64>().ok());
        if !first.is_some_and(|f| firsts.contains(&f)) {
            continue;
        }
        match SubjectSummary::decode(&value) {
            Ok(summary) => merge_summary(&mut subjects, &summary),
            Err(e) => tracing::error!(
                station = station.name(),
                key,
                error = %e,
                "unreadable subject summary of a remote segment; its subjects are not found by subject"
            ),
        }
    }
    Ok(subjects)
}

/// Applies the station's own limits to its remote range (the uploader does,
/// each tick).
fn enforce_remote_limits(station: &Station, tier: &StationTier) {
    let doomed = tier.expired(&station.config(), station.local_counts());
    if doomed.is_empty() {
        return;
    }
    let messages: u64 = doomed.iter().map(|s| s.messages).sum();
    match tier.drop_segments(station.store(), station.id, &doomed) {
        Ok(()) => tracing::debug!(
            station = station.name(),
            segments = doomed.len(),
            messages,
            "remote segments past the station's limits dropped"
        ),
        Err(e) => {
            tracing::warn!(station = station.name(), error = %e, "cannot drop remote segments past the station's limits")
        }
    }
}

/// Removes the objects under each tiered station's own key prefix
/// (`stations/<uid>/`) that its index does not hold and that are older than
/// `min_age`: uploads whose index entry was never written (a crash between
/// PUT and record), and dropped segments whose delete failed. Only this node's
/// stations are looked at, so brokers sharing a bucket and prefix never remove
/// each other's objects.
///
/// The first pass, at start, runs before this process uploads anything, and a
/// tiered station has one replica, so its only uploader was the process that
/// stopped: every object its index lacks is an orphan, whatever its age
/// (`min_age` zero). Later passes leave [`ORPHAN_AGE`] for uploads under way.
async fn reconcile(registry: &StationRegistry, remote: &Arc<Remote>, min_age: Duration) {
    let now = std::time::SystemTime::now();
    let mut removed = 0u64;
    removed += remove_gone_stations(registry.store(), remote).await;
    for station in registry.all() {
        let Some(tier) = station.tier() else {
            continue;
        };
        if station.config().tier.is_none() && tier.first_seq().is_none() {
            continue;
        }
        // A replicated station's objects are its leader's to reconcile, and
        // never young ones: another replica may have uploaded one whose index
        // entry this one has not applied yet.
        let min_age = match Role::of(&station) {
            Role::Single => min_age,
            Role::Leader(_) => min_age.max(ORPHAN_AGE),
            Role::Follower => continue,
        };
        // An index still to be rebuilt from the manifest holds nothing yet.
        if tier.rebuild_pending.load(Ordering::Acquire) {
            continue;
        }
        let objects = match remote.list_station(&station.tier_uid()).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "tier reconciler cannot list the bucket; trying again later");
                return;
            }
        };
        let mut live = tier.keys();
        // What the manifest lists stays too while it is not known to match
        // the index (a write failed or conflicted): a segment it lists may
        // be what another index, or a rebuild, needs.
        write_manifest(&station, tier, remote).await;
        let in_sync = {
            let m = tier.manifest.lock();
            !m.dirty && !m.conflict
        };
        if !in_sync {
            match remote.get_manifest(&station.tier_uid()).await {
                Ok(Some((m, _))) => live.extend(m.segments.into_iter().map(|s| s.entry.key)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(station = station.name(), error = %e, "tier reconciler cannot read the manifest; the station's objects are left alone");
                    continue;
                }
            }
        }
        for (key, modified) in objects {
            let old = now.duration_since(modified).is_ok_and(|age| age >= min_age);
            if live.contains(&key) || !old || !key.ends_with(".seg") {
                continue;
            }
            match remote.delete(&key).await {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(key, error = %e, "tier reconciler cannot delete an orphan")
                }
            }
        }
    }
    if removed > 0 {
        remote
            .counters
            .orphans_removed
            .fetch_add(removed, Ordering::Relaxed);
        tracing::info!(
            removed,
            "tier reconciler removed objects no station's index holds"
        );
    }
}

/// Deletes what is left in the bucket of stations deleted on this node (their
/// `tiergone/<uid>` keys): objects whose delete failed (S3 unreachable when
/// the station was deleted) or never ran (the process died first). A
/// station's key is dropped on the first pass that finds its prefix empty, so
/// a segment whose upload ended after a pass is still caught by the next one.
/// The prefix is the deleted station's unique id: no other station, here or on
/// another broker sharing the bucket, has objects under it. Returns how many
/// objects it removed.
async fn remove_gone_stations(store: &Store, remote: &Arc<Remote>) -> u64 {
    let gone = match store.list_meta(GONE_PREFIX) {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "tier reconciler cannot read the deleted stations");
            return 0;
        }
    };
    let mut removed = 0;
    for (key, _) in gone {
        let uid = &key[GONE_PREFIX.len()..];
        let objects = match remote.list_station(uid).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "tier reconciler cannot list the bucket; trying again later");
                return removed;
            }
        };
        if objects.is_empty() {
            if let Err(e) = store.remove_meta(&key) {
                tracing::warn!(key, error = %e, "cannot forget a deleted station's tier key");
            }
            continue;
        }
        for (object, _) in objects {
            match remote.delete(&object).await {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(key = object, error = %e, "tier reconciler cannot delete an object of a deleted station")
                }
            }
        }
    }
    removed
}

/// Attaches a tier to every station of `registry` (at start) and starts the
/// uploader on the tier's runtime. The uploader holds the registry and the
/// remote weakly: it ends with the engine.
pub(crate) fn start(registry: &Arc<StationRegistry>, remote: &Arc<Remote>) {
    // The disk cache keeps only what some station's index still holds: files
    // of deleted stations and dropped segments go (on the cache's thread).
    if let Some(disk) = remote.disk_cache() {
        let live: Vec<String> = registry
            .all()
            .iter()
            .filter_map(|s| s.tier().map(|t| t.keys()))
            .flatten()
            .collect();
        disk.retain(live.iter().map(String::as_str));
    }
    let weak_registry = Arc::downgrade(registry);
    let weak_remote = Arc::downgrade(remote);
    remote.runtime().spawn(async move {
        let mut reconciled: Option<Instant> = None;
        // Nothing is uploaded until the server has shown that it refuses to
        // overwrite an object written with If-None-Match: * (the uploads'
        // guarantee that a retry never replaces a segment). The probe runs on
        // its own task: a hung S3 must not stop the rest of this loop.
        let safe = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let safe = safe.clone();
            let weak_remote = weak_remote.clone();
            tokio::spawn(async move {
                loop {
                    let Some(remote) = weak_remote.upgrade() else {
                        return;
                    };
                    let wait = match remote.honours_conditional_writes().await {
                        Ok(true) => {
                            tracing::info!("the S3 server refuses to overwrite with If-None-Match: *; uploads start");
                            safe.store(true, Ordering::Release);
                            return;
                        }
                        Ok(false) => {
                            tracing::error!(
                                "the S3 server overwrote an object written with If-None-Match: *: a retried upload could replace a segment, so nothing is uploaded (reads go on). Use a server that honours conditional writes (AWS S3, Ceph RGW, MinIO); asked again in 10 minutes"
                            );
                            UNSAFE_RETRY
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot reach the S3 server to check its conditional writes; uploads wait");
                            PROBE_EVERY
                        }
                    };
                    drop(remote);
                    tokio::time::sleep(wait).await;
                }
            });
        }
        loop {
            tokio::time::sleep(UPLOAD_TICK).await;
            let (Some(registry), Some(remote)) = (weak_registry.upgrade(), weak_remote.upgrade())
            else {
                return;
            };
            if reconciled.is_none_or(|t| t.elapsed() >= RECONCILE_EVERY) {
                let min_age = if reconciled.is_none() {
                    Duration::ZERO
                } else {
                    ORPHAN_AGE
                };
                reconciled = Some(Instant::now());
                reconcile(&registry, &remote, min_age).await;
            }
            for station in registry.all() {
                let Some(tier) = station.tier().cloned() else {
                    continue;
                };
                let policy = tiered_policy(&station);
                if policy.is_none() && tier.first_seq().is_none() {
                    tier.pending_cap.store(0, Ordering::Relaxed);
                    continue;
                }
                let role = Role::of(&station);
                if let Role::Follower = role {
                    // The group's log brings the index; this replica only
                    // trims its own disk of what the index holds.
                    tier.rebuild_pending.store(false, Ordering::Release);
                    let (st, t) = (station.clone(), tier.clone());
                    let trimmed = tokio::task::spawn_blocking(move || {
                        t.measure_pending(&st);
                        policy.map(|p| trim_local(&st, &t, &p))
                    })
                    .await;
                    if let Ok(Some(Err(e))) = trimmed {
                        tracing::warn!(station = station.name(), error = %e, "cannot trim the local log");
                    }
                    continue;
                }
                // Remote limits apply as long as segments remain, even when
                // the policy was removed.
                let (st, t) = (station.clone(), tier.clone());
                let single = matches!(role, Role::Single);
                let doomed = tokio::task::spawn_blocking(move || {
                    t.measure_pending(&st);
                    if single {
                        enforce_remote_limits(&st, &t);
                        Vec::new()
                    } else {
                        t.expired(&st.config(), st.local_counts())
                    }
                })
                .await
                .unwrap_or_default();
                if let Role::Leader(group) = &role
                    && !doomed.is_empty()
                {
                    let op = super::replicated::AdminOp::TierDrop {
                        firsts: doomed.iter().map(|s| s.first_seq).collect(),
                    };
                    if let Err(e) =
                        super::replicated::propose_admin_wait(group, station.name(), op).await
                    {
                        tracing::debug!(station = station.name(), error = %e, "remote segments past the station's limits not dropped yet");
                    }
                }
                if tier.rebuild_pending.load(Ordering::Acquire) {
                    // A replicated station's index is its group's: never
                    // taken from the bucket.
                    if tiered_policy(&station).is_none() || !single {
                        tier.rebuild_pending.store(false, Ordering::Release);
                    } else if tier.backing_off() {
                        continue;
                    } else if let Err(e) = rebuild(&station, &tier, &remote).await {
                        tier.failed();
                        tracing::warn!(station = station.name(), error = %e, "cannot rebuild the remote index from the manifest yet; uploads wait, retrying with backoff");
                        continue;
                    }
                }
                if !tier.backing_off() {
                    write_manifest(&station, &tier, &remote).await;
                }
                let Some(policy) = policy else {
                    continue;
                };
                if !safe.load(Ordering::Acquire) {
                    continue;
                }
                // A station that is behind catches up several segments a tick.
                for _ in 0..SEGMENTS_PER_TICK {
                    match upload_step(&station, &tier, &remote, &policy, &role).await {
                        Ok(Step::Uploaded) => continue,
                        Ok(Step::Nothing) => break,
                        Err(e) => {
                            tracing::warn!(station = station.name(), error = %e, "tier upload failed; retrying with backoff");
                            break;
                        }
                    }
                }
            }
        }
    });
}

/// Writes the station's manifest when its index changed since the last
/// write: conditionally on the version this process last saw. A failure is
/// retried on the next tick; a conflict (someone else wrote it) stops the
/// writes for this station until a restart, logged.
async fn write_manifest(station: &Arc<Station>, tier: &Arc<StationTier>, remote: &Arc<Remote>) {
    let (known, e_tag) = {
        let m = tier.manifest.lock();
        if !m.dirty || m.conflict || tier.forgotten.load(Ordering::Acquire) {
            return;
        }
        (m.known, m.e_tag.clone())
    };
    let uid = station.tier_uid();
    let e_tag = if known {
        e_tag
    } else {
        match remote.get_manifest(&uid).await {
            Ok(found) => found.and_then(|(_, t)| t),
            // A damaged manifest is replaced: the local index is the truth.
            Err(TierError::Corrupt { .. }) => remote.manifest_e_tag(&uid).await.ok().flatten(),
            Err(e) => {
                tracing::debug!(station = station.name(), error = %e, "cannot read the manifest; retried next tick");
                return;
            }
        }
    };
    // Cleared before the index is read: a change while writing marks it again.
    tier.manifest.lock().dirty = false;
    let (st, t) = (station.clone(), tier.clone());
    let manifest = match tokio::task::spawn_blocking(move || t.manifest_now(st.store(), st.id))
        .await
    {
        Ok(Ok(m)) => m,
        other => {
            tier.manifest_changed();
            tracing::warn!(station = station.name(), error = ?other.err(), "cannot read the remote index for the manifest");
            return;
        }
    };
    let mut written = remote.put_manifest(&uid, &manifest, e_tag.clone()).await;
    if matches!(written, ManifestWrite::Conflict)
        && e_tag.is_some()
        && remote.manifest_e_tag(&uid).await.ok().flatten() == e_tag
    {
        // Refused although the object is still the version this process
        // wrote: the server does not honour If-Match on PUT (Ceph RGW before
        // Squid answers 412 to a matching one). Nobody else wrote it, so it
        // is written over; a change by another writer between the check and
        // this write would be lost (only a second broker on the same data
        // directory could make one).
        if !remote.if_match_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the S3 server refuses If-Match updates whose e-tag matches (Ceph RGW before Squid): station manifests are written after checking the e-tag, not atomically"
            );
        }
        written = remote.overwrite_manifest(&uid, &manifest).await;
    }
    match written {
        ManifestWrite::Written(t) => {
            remote
                .counters
                .manifest_writes
                .fetch_add(1, Ordering::Relaxed);
            let mut m = tier.manifest.lock();
            m.known = t.is_some();
            m.e_tag = t;
        }
        ManifestWrite::Conflict if station.is_replicated() => {
            remote
                .counters
                .manifest_conflicts
                .fetch_add(1, Ordering::Relaxed);
            // Another replica wrote it while it led: the index is the
            // group's, the same everywhere, so this leader reads the
            // object's version again and writes over it.
            let mut m = tier.manifest.lock();
            m.known = false;
            m.dirty = true;
            tracing::info!(
                station = station.name(),
                "the station's manifest was written by another replica; written again from this leader's index"
            );
        }
        ManifestWrite::Conflict => {
            remote
                .counters
                .manifest_conflicts
                .fetch_add(1, Ordering::Relaxed);
            let mut m = tier.manifest.lock();
            m.conflict = true;
            m.dirty = true;
            tracing::error!(
                station = station.name(),
                key = remote.manifest_key(&uid),
                "the station's manifest was changed by another writer: this node stops writing it (its local index stays the truth here); check that no other broker serves this station's data directory, then restart"
            );
        }
        ManifestWrite::Failed(e) => {
            remote
                .counters
                .manifest_errors
                .fetch_add(1, Ordering::Relaxed);
            tier.manifest_changed();
            tier.failed();
            tracing::warn!(station = station.name(), error = %e, "cannot write the manifest; retried next tick");
        }
    }
}

/// Rebuilds a station's empty remote index from its manifest: each listed
/// segment whose footer reads and agrees is restored (index entry, subject
/// summary and floor, fsynced in one batch); one missing or damaged is
/// logged and skipped. Then the local log's messages the restored range
/// covers are removed, and the station's sequence is raised above it. An
/// unreachable bucket is an error (retried next tick); no manifest is
/// nothing to do.
async fn rebuild(
    station: &Arc<Station>,
    tier: &Arc<StationTier>,
    remote: &Arc<Remote>,
) -> Result<(), String> {
    let uid = station.tier_uid();
    let found = match remote.get_manifest(&uid).await {
        Ok(found) => found,
        Err(TierError::Corrupt { key, error }) => {
            tracing::error!(station = station.name(), key, error = %error, "the station's manifest is damaged: the remote index is not rebuilt");
            tier.rebuild_pending.store(false, Ordering::Release);
            return Ok(());
        }
        Err(e) => return Err(e.to_string()),
    };
    let Some((manifest, e_tag)) = found else {
        tier.rebuild_pending.store(false, Ordering::Release);
        return Ok(());
    };
    let mut restored = Vec::new();
    for s in manifest.segments {
        match remote.verify_segment(&s.entry).await {
            Ok(()) => restored.push(s),
            Err(TierError::Unavailable(e))
                if !remote
                    .exists(&s.entry.key)
                    .await
                    .map_err(|e| e.to_string())? =>
            {
                tracing::error!(station = station.name(), key = %s.entry.key, error = %e, "a segment the manifest lists is not in the bucket; skipped");
            }
            Err(TierError::Unavailable(e)) => return Err(e),
            Err(e) => {
                tracing::error!(station = station.name(), key = %s.entry.key, error = %e, "a segment the manifest lists failed its checks; skipped");
            }
        }
    }
    restored.sort_by_key(|s| s.entry.first_seq);
    let count = restored.len();
    let (st, t) = (station.clone(), tier.clone());
    let floor = manifest.floor;
    tokio::task::spawn_blocking(move || restore(&st, &t, restored, floor))
        .await
        .map_err(|e| e.to_string())??;
    {
        let mut m = tier.manifest.lock();
        m.e_tag = e_tag;
        m.known = true;
    }
    tier.rebuild_pending.store(false, Ordering::Release);
    remote
        .counters
        .segments_restored
        .fetch_add(count as u64, Ordering::Relaxed);
    tracing::info!(
        station = station.name(),
        segments = count,
        through = tier.uploaded_through(),
        "remote index rebuilt from the bucket's manifest"
    );
    Ok(())
}

/// The station manifests in the bucket, each summed up, with the station of
/// this broker that uses its objects (operators, `GET /v1/tier/manifests`).
pub(crate) async fn manifests(
    registry: &StationRegistry,
    remote: &Arc<Remote>,
) -> Result<Vec<junction_api::TierManifest>, EngineError> {
    let users: std::collections::HashMap<String, (junction_api::TenantId, String)> = registry
        .all()
        .iter()
        .filter(|s| s.tier().is_some())
        .map(|s| (s.tier_uid(), (s.tenant.clone(), s.name().to_string())))
        .collect();
    let on_tier = {
        let remote = remote.clone();
        remote.runtime().spawn({
            let remote = remote.clone();
            async move {
                let mut out = Vec::new();
                for uid in remote.list_station_uids().await? {
                    match remote.get_manifest(&uid).await {
                        Ok(Some((m, _))) => out.push((uid, Ok(m))),
                        Ok(None) => {}
                        Err(TierError::Corrupt { error, .. }) => {
                            out.push((uid, Err(error.to_string())))
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(out)
            }
        })
    };
    let found = on_tier
        .await
        .map_err(|e| EngineError::TierUnavailable(e.to_string()))?
        .map_err(engine_error)?;
    Ok(found
        .into_iter()
        .map(|(uid, m)| {
            let station = users.get(&uid).cloned();
            match m {
                Err(error) => junction_api::TierManifest {
                    uid,
                    station,
                    error: Some(error),
                    ..Default::default()
                },
                Ok(m) => {
                    let segs = &m.segments;
                    let mut subjects: Vec<String> = Vec::new();
                    'all: for s in segs {
                        for e in s.summary.iter().flat_map(|x| x.subjects.iter()) {
                            let name = String::from_utf8_lossy(&e.subject).to_string();
                            if !subjects.contains(&name) {
                                subjects.push(name);
                                if subjects.len() == 10 {
                                    break 'all;
                                }
                            }
                        }
                    }
                    junction_api::TierManifest {
                        segments: segs.len() as u64,
                        first_seq: segs.first().map_or(0, |s| s.entry.first_seq.max(m.floor)),
                        last_seq: segs.iter().map(|s| s.entry.last_seq).max().unwrap_or(0),
                        messages: segs.iter().map(|s| s.entry.messages).sum(),
                        bytes: segs.iter().map(|s| s.entry.bytes).sum(),
                        first_time_ns: segs.iter().map(|s| s.entry.min_time_ns).min().unwrap_or(0),
                        last_time_ns: segs.iter().map(|s| s.entry.max_time_ns).max().unwrap_or(0),
                        subjects,
                        uid,
                        station,
                        error: None,
                    }
                }
            }
        })
        .collect())
}

/// Takes the segments of the manifest under `uid` into `station`'s remote
/// index: the way back to a station's data in the bucket after the broker's
/// disk was lost (a station defined again has a new unique id, so the start-up
/// rebuild does not find its old objects).
///
/// The station must be tiered, of one copy, and never have held a message:
/// its sequence is raised to the manifest's last before anything is read, so
/// a publish meanwhile gets a sequence above every adopted one, never one of
/// theirs. The manifest's segments are checked as the start-up rebuild checks
/// them (a missing or damaged one is logged and skipped). Then the station's
/// own manifest is written, and the old one is removed, so that no other
/// station adopts the same objects.
pub(crate) async fn adopt(
    registry: &StationRegistry,
    station: &Arc<Station>,
    remote: &Arc<Remote>,
    uid: &str,
) -> Result<junction_api::TierAdoption, EngineError> {
    let name = station.name().to_string();
    let Some(tier) = station.tier().cloned() else {
        return Err(EngineError::BadRequest(format!(
            "station '{name}' is not tiered: give it a tier policy first"
        )));
    };
    if station.is_replicated() {
        return Err(EngineError::BadRequest(format!(
            "station '{name}' is replicated: adopt into a station of one copy, then make it replicated"
        )));
    }
    let valid = !uid.is_empty()
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(EngineError::BadRequest(format!(
            "'{uid}' is not a station's unique id (letters, digits, '-' and '_', as GET /v1/tier/manifests lists them)"
        )));
    }
    if uid == station.tier_uid() {
        return Err(EngineError::BadRequest(format!(
            "'{uid}' is station '{name}'s own: its index is rebuilt from it at start when empty"
        )));
    }
    if let Some(other) = registry
        .all()
        .iter()
        .find(|s| s.tier().is_some() && s.tier_uid() == uid)
    {
        return Err(EngineError::TierAdoptConflict(format!(
            "the objects under '{uid}' belong to station '{}' of this broker",
            other.name()
        )));
    }
    if station
        .store()
        .get_meta(&format!("{GONE_PREFIX}{uid}"))
        .map_err(|e| EngineError::Storage(e.to_string()))?
        .is_some()
    {
        return Err(EngineError::TierAdoptConflict(format!(
            "the objects under '{uid}' are of a station deleted on this broker: they are being removed"
        )));
    }
    let found = {
        let (remote2, uid2) = (remote.clone(), uid.to_string());
        remote
            .runtime()
            .spawn(async move { remote2.get_manifest(&uid2).await })
            .await
            .map_err(|e| EngineError::TierUnavailable(e.to_string()))?
            .map_err(engine_error)?
    };
    let Some((manifest, _)) = found else {
        return Err(EngineError::TierManifestNotFound(format!(
            "no manifest under '{uid}' in the bucket"
        )));
    };
    let through = manifest
        .segments
        .iter()
        .map(|s| s.entry.last_seq)
        .max()
        .unwrap_or(0);
    if through == 0 {
        return Err(EngineError::BadRequest(format!(
            "the manifest under '{uid}' lists no segments"
        )));
    }
    if tier.segment_from(0).is_some() || tier.rebuild_pending.load(Ordering::Acquire) {
        return Err(EngineError::TierAdoptConflict(format!(
            "station '{name}' already has a remote index: adopt into a new, empty station"
        )));
    }
    if let Err(last) = station.claim_sequences_if_empty(through) {
        return Err(EngineError::TierAdoptConflict(format!(
            "station '{name}' has held messages (last sequence {last}): adopt into a new, empty station"
        )));
    }
    tracing::info!(station = %name, uid, through, "adopting a manifest from the bucket: the station's sequence is raised above it");
    let (st, t, r, old) = (
        station.clone(),
        tier.clone(),
        remote.clone(),
        uid.to_string(),
    );
    remote
        .runtime()
        .spawn(async move {
            let total = manifest.segments.len() as u64;
            let mut restored = Vec::new();
            for s in manifest.segments {
                match r.verify_segment(&s.entry).await {
                    Ok(()) => restored.push(s),
                    Err(TierError::Unavailable(e))
                        if !r.exists(&s.entry.key).await.map_err(engine_error)? =>
                    {
                        tracing::error!(station = st.name(), key = %s.entry.key, error = %e, "a segment the adopted manifest lists is not in the bucket; skipped");
                    }
                    Err(TierError::Unavailable(e)) => return Err(EngineError::TierUnavailable(e)),
                    Err(e) => {
                        tracing::error!(station = st.name(), key = %s.entry.key, error = %e, "a segment the adopted manifest lists failed its checks; skipped");
                    }
                }
            }
            restored.sort_by_key(|s| s.entry.first_seq);
            let mut answer = junction_api::TierAdoption {
                segments: restored.len() as u64,
                skipped: total - restored.len() as u64,
                messages: restored.iter().map(|s| s.entry.messages).sum(),
                first_seq: restored.first().map_or(0, |s| s.entry.first_seq.max(manifest.floor)),
                last_seq: restored.iter().map(|s| s.entry.last_seq).max().unwrap_or(0),
                old_manifest_removed: false,
            };
            let floor = manifest.floor;
            let (st2, t2) = (st.clone(), t.clone());
            tokio::task::spawn_blocking(move || restore(&st2, &t2, restored, floor))
                .await
                .map_err(|e| EngineError::Storage(e.to_string()))?
                .map_err(EngineError::Storage)?;
            r.counters
                .segments_restored
                .fetch_add(answer.segments, Ordering::Relaxed);
            // The station's own manifest (none yet: created), then the old
            // one goes, so the objects have one owner.
            {
                let mut m = t.manifest.lock();
                m.known = true;
                m.e_tag = None;
                m.dirty = true;
            }
            write_manifest(&st, &t, &r).await;
            if !t.manifest.lock().dirty {
                match r.delete(&r.manifest_key(&old)).await {
                    Ok(()) => answer.old_manifest_removed = true,
                    Err(e) => {
                        tracing::warn!(station = st.name(), uid = old, error = %e, "cannot remove the adopted station's old manifest");
                    }
                }
            }
            tracing::info!(
                station = st.name(),
                uid = old,
                segments = answer.segments,
                skipped = answer.skipped,
                through = answer.last_seq,
                "manifest adopted into the station's remote index"
            );
            Ok(answer)
        })
        .await
        .map_err(|e| EngineError::TierUnavailable(e.to_string()))?
}

/// Writes the restored entries (fsynced), takes them into memory, and makes
/// the local log and the sequence agree with them.
fn restore(
    station: &Station,
    tier: &StationTier,
    restored: Vec<ManifestSegment>,
    floor: u64,
) -> Result<(), String> {
    if restored.is_empty() {
        return Ok(());
    }
    let id = station.id;
    let mut puts = Vec::new();
    for s in &restored {
        puts.push((index_key(id, s.entry.first_seq), s.entry.encode()));
        if let Some(summary) = &s.summary {
            puts.push((summary_key(id, s.entry.first_seq), summary.encode()));
        }
    }
    if floor > 0 {
        puts.push((floor_key(id), floor.to_string().into_bytes()));
    }
    station
        .store()
        .write_meta_batch(&puts, &[])
        .map_err(|e| format!("cannot write the rebuilt remote index: {e}"))?;
    let last = restored.iter().map(|s| s.entry.last_seq).max().unwrap_or(0);
    {
        let mut segments = tier.segments.write();
        if tier.forgotten.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut subjects = tier.subjects.write();
        for s in &restored {
            if let Some(summary) = &s.summary {
                merge_summary(&mut subjects, summary);
            }
        }
        *segments = restored.into_iter().map(|s| s.entry).collect();
        tier.floor.store(floor, Ordering::Release);
    }
    // The station's next sequence stays above every restored one.
    station.raise_last_seq(last, "the bucket's manifest");
    // Local messages the restored range covers without a gap from the local
    // log's first go (they are in the bucket): then reads below the local
    // log reach every restored segment.
    let (local_first, _, _) = station.local_counts();
    let mut covered = local_first.saturating_sub(1);
    for s in tier.segments.read().iter() {
        if s.first_seq <= covered + 1 && s.last_seq > covered {
            covered = s.last_seq;
        }
    }
    if covered >= local_first {
        station
            .remove_uploaded(covered + 1)
            .map_err(|e| format!("cannot remove restored messages locally: {e}"))?;
    }
    Ok(())
}

/// The station's policy when the uploader should work on it.
fn tiered_policy(station: &Station) -> Option<TierPolicy> {
    let c = station.config();
    let policy = c.tier?;
    (c.storage == StorageKind::File && c.retention == Retention::Limits).then_some(policy)
}

/// What this node does for a station's tier.
enum Role {
    /// A station of one copy: everything, on its own.
    Single,
    /// The leader of a replicated station: uploads, and proposes every change
    /// of the remote index to the station's Raft group.
    Leader(junction_cluster::replica::ReplicaGroup),
    /// Another replica (or one whose group has not started): takes the index
    /// from the group's log, and only trims its own local disk.
    Follower,
}

impl Role {
    fn of(station: &Station) -> Role {
        if !station.is_replicated() {
            return Role::Single;
        }
        match station.replica.get() {
            Some(g) if g.is_leader() => Role::Leader(g.clone()),
            _ => Role::Follower,
        }
    }
}

/// What one upload step did.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Nothing,
    Uploaded,
}

/// Seals and uploads at most one segment of `station`, then trims local disk.
async fn upload_step(
    station: &Arc<Station>,
    tier: &Arc<StationTier>,
    remote: &Arc<Remote>,
    policy: &TierPolicy,
    role: &Role,
) -> Result<Step, String> {
    {
        let b = tier.backoff.lock();
        if b.not_before.is_some_and(|t| Instant::now() < t) {
            return Ok(Step::Nothing);
        }
    }
    let step = match seal_and_upload(station, tier, remote, policy, role).await {
        Ok(step) => {
            *tier.backoff.lock() = Backoff::default();
            step
        }
        Err(e) => {
            tier.failed();
            return Err(e);
        }
    };
    let st = station.clone();
    let t = tier.clone();
    let policy = *policy;
    tokio::task::spawn_blocking(move || trim_local(&st, &t, &policy))
        .await
        .map_err(|e| e.to_string())??;
    Ok(step)
}

/// A sealed range: its records' encoding, its index entry and its subject
/// summary.
struct Sealed {
    object: Bytes,
    entry: SegmentRef,
    summary: SubjectSummary,
}

/// Seals the next segment when it is full or old enough, and uploads it.
async fn seal_and_upload(
    station: &Arc<Station>,
    tier: &Arc<StationTier>,
    remote: &Arc<Remote>,
    policy: &TierPolicy,
    role: &Role,
) -> Result<Step, String> {
    let st = station.clone();
    let t = tier.clone();
    let r = remote.clone();
    let policy = *policy;
    let sealed = tokio::task::spawn_blocking(move || seal(&st, &t, &r, &policy))
        .await
        .map_err(|e| e.to_string())??;
    let Some(sealed) = sealed else {
        return Ok(Step::Nothing);
    };
    remote
        .put_segment(&sealed.entry.key, sealed.object)
        .await
        .map_err(|e| e.to_string())?;
    // Recorded only now that the object is in the bucket, with its subject
    // summary in the same batch: here, or (a replicated station) on every
    // replica through the station's Raft group.
    let key = sealed.entry.key.clone();
    let (first, last) = (sealed.entry.first_seq, sealed.entry.last_seq);
    let recorded = match role {
        Role::Leader(group) => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let op = super::replicated::AdminOp::TierRecord {
                entry: b64.encode(sealed.entry.encode()),
                summary: b64.encode(sealed.summary.encode()),
            };
            // Not deleted on a failure: the entry may still be committed (a
            // leader change while it was proposed); the reconciler removes
            // the object later if no replica's index took it.
            super::replicated::propose_admin_answer(group, station.name(), op)
                .await
                .map_err(|e| {
                    format!("cannot record the uploaded segment in the station's group: {e}")
                })?
                .as_bool()
                .unwrap_or(false)
        }
        _ => {
            let (st, t) = (station.clone(), tier.clone());
            match tokio::task::spawn_blocking(move || {
                t.record(st.store(), st.id, sealed.entry, &sealed.summary)
            })
            .await
            .map_err(|e| e.to_string())?
            {
                Ok(r) => r,
                Err(e) => {
                    // Not in the index: the object is an orphan; nothing
                    // local was removed.
                    let _ = remote.delete(&key).await;
                    return Err(e.to_string());
                }
            }
        }
    };
    if recorded {
        tracing::debug!(
            station = station.name(),
            key,
            first,
            last,
            "segment uploaded"
        );
        return Ok(Step::Uploaded);
    }
    // The station was deleted while this segment was uploading (after its
    // objects were), or another leader's upload of the range was recorded
    // first: this object is in no index.
    if let Err(e) = remote.delete(&key).await {
        tracing::warn!(key, error = %e, "cannot delete a segment no index took; the reconciler removes it later");
    }
    Ok(Step::Nothing)
}

/// Reads the next range to upload from the local log and encodes it, when it
/// is full (`segment_bytes`) or its oldest message is `segment_max_age_ms` old.
fn seal(
    station: &Station,
    tier: &StationTier,
    remote: &Remote,
    policy: &TierPolicy,
) -> Result<Option<Sealed>, String> {
    let committed = station.committed();
    let (local_first, local_msgs, local_bytes) = station.local_counts();
    let next = (tier.uploaded_through() + 1).max(local_first);
    if next > committed || local_msgs == 0 {
        tier.lag_oldest_ns.store(0, Ordering::Relaxed);
        return Ok(None);
    }
    // Cheap checks first: the bytes not uploaded, estimated from the averages,
    // and the age of the first of them.
    let waiting = committed + 1 - next;
    let estimate = local_bytes.saturating_mul(waiting) / local_msgs.max(1);
    let store = station.store();
    let first = store
        .scan_between(station.id, next, committed + 1)
        .find_map(Result::ok);
    let Some(first) = first else {
        tier.lag_oldest_ns.store(0, Ordering::Relaxed);
        return Ok(None);
    };
    tier.lag_oldest_ns.store(first.time_ns, Ordering::Relaxed);
    let old = now_ns().saturating_sub(first.time_ns) >= policy.segment_max_age_ms * 1_000_000;
    if estimate < policy.segment_bytes && !old {
        return Ok(None);
    }
    let mut records = Vec::new();
    let mut bytes = 0u64;
    for item in store.scan_between(station.id, next, committed + 1) {
        match item {
            Ok(r) => {
                bytes += r.stored_size();
                records.push(r);
                if bytes >= policy.segment_bytes {
                    break;
                }
            }
            // A corrupt record (counted and logged by the store) cannot be
            // uploaded; the segment skips it.
            Err((Some(_), junction_storage::StorageError::Corrupt(_))) => continue,
            Err((_, e)) => {
                if records.is_empty() {
                    return Err(format!("cannot read the log to upload: {e}"));
                }
                break;
            }
        }
    }
    if bytes < policy.segment_bytes && !old {
        return Ok(None);
    }
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Ok(None);
    };
    let (first_seq, last_seq) = (next.min(first.seq), last.seq);
    let mut w = SegmentWriter::new(Header {
        station: station.id,
        first_seq,
        last_seq,
        created_ns: now_ns(),
    });
    let (mut min_t, mut max_t) = (u64::MAX, 0);
    for r in &records {
        min_t = min_t.min(r.time_ns);
        max_t = max_t.max(r.time_ns);
        w.push(r);
    }
    let (object, footer, summary) = w.finish_with_summary();
    let attempt: u64 = rand::random();
    let key = remote.segment_key(&station.tier_uid(), first_seq, last_seq, attempt);
    Ok(Some(Sealed {
        entry: SegmentRef {
            key,
            first_seq,
            last_seq,
            messages: footer.messages,
            bytes: footer.bytes,
            min_time_ns: min_t,
            max_time_ns: max_t,
            object_len: object.len() as u64,
        },
        object: Bytes::from(object),
        summary,
    }))
}

/// Removes uploaded messages from local disk while the local log is over the
/// policy's limits, a whole segment at a time, oldest first. Never removes a
/// message above the last uploaded sequence.
fn trim_local(station: &Station, tier: &StationTier, policy: &TierPolicy) -> Result<(), String> {
    let (local_first, _, mut local_bytes) = station.local_counts();
    let cutoff = (policy.local_max_age_ms > 0)
        .then(|| now_ns().saturating_sub(policy.local_max_age_ms * 1_000_000));
    let mut below = local_first;
    for seg in tier.segments.read().iter() {
        if seg.last_seq < local_first {
            continue;
        }
        let over_bytes = policy.local_max_bytes > 0 && local_bytes > policy.local_max_bytes;
        let too_old = cutoff.is_some_and(|c| seg.max_time_ns < c);
        if !(over_bytes || too_old) {
            break;
        }
        below = seg.last_seq + 1;
        local_bytes = local_bytes.saturating_sub(seg.bytes);
    }
    if below > local_first {
        let n = station
            .remove_uploaded(below)
            .map_err(|e| format!("cannot remove uploaded messages locally: {e}"))?;
        tracing::debug!(
            station = station.name(),
            below,
            removed = n,
            "uploaded messages removed from local disk"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_is_checked_against_the_station_and_the_broker() {
        let mut c = StationConfig {
            name: "s".into(),
            tier: Some(TierPolicy::default()),
            ..StationConfig::default()
        };
        assert!(check_policy(&c, true).is_ok());
        let e = check_policy(&c, false).expect_err("no bucket");
        assert_eq!(
            e.to_string(),
            "tier: the broker has no [tier] bucket configured"
        );
        c.storage = StorageKind::Memory;
        assert!(check_policy(&c, true).is_err());
        c.storage = StorageKind::File;
        c.retention = Retention::WorkQueue;
        assert!(check_policy(&c, true).is_err());
        c.retention = Retention::Limits;
        // Replicated stations are tiered through their group.
        c.replicas = 3;
        assert!(check_policy(&c, true).is_ok());
        c.tier = Some(TierPolicy {
            segment_bytes: 10,
            ..TierPolicy::default()
        });
        assert!(check_policy(&c, true).is_err());
    }
}
