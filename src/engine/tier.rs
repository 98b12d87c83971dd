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
//! Reads below the local first sequence go to the bucket: consumer groups
//! through [`StationTier::cached_block`] and [`StationTier::prefetch`] (a group
//! never waits on S3 while it fills; a fetched block wakes its groups), one-off
//! reads (`MSG.GET`, HTTP) through [`StationTier::read`], which waits at most
//! [`junction_storage::tier::READ_TIMEOUT`] and then fails with
//! [`EngineError::TierUnavailable`], never with "not found".

use super::station::{Station, now_ns};
use super::stations::StationRegistry;
use bytes::Bytes;
use junction_api::{EngineError, Retention, StationConfig, StorageKind, SubjectFilter, TierPolicy};
use junction_storage::Store;
use junction_storage::tier::segment::{Header, SegmentWriter};
use junction_storage::tier::{Block, Remote, SegmentRef, TierError};
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

/// The meta key of a station's remote index entry for the segment from `first`.
fn index_key(station: u64, first: u64) -> String {
    format!("tier/{station}/{first:020}")
}

/// The prefix of every remote index entry of a station.
fn index_prefix(station: u64) -> String {
    format!("tier/{station}/")
}

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
    if config.replicas > 1 {
        return Err(EngineError::invalid_config(
            "tier: replicated stations cannot be tiered yet",
        ));
    }
    Ok(())
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
    /// The station, to wake its groups when a block they wait for arrives.
    station: Weak<Station>,
    /// Block fetches under way for groups: (segment key, sequence asked for).
    fetching: Mutex<HashSet<(String, u64)>>,
    backoff: Mutex<Backoff>,
    /// Time of the oldest committed message not yet uploaded (0: none), as the
    /// uploader last saw it.
    lag_oldest_ns: AtomicU64,
}

impl StationTier {
    /// The tier of `station`, with its remote index read from the store.
    pub fn load(
        remote: Arc<Remote>,
        store: &Store,
        station: &Arc<Station>,
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
        Ok(StationTier {
            remote,
            segments: RwLock::new(segments),
            station: Arc::downgrade(station),
            fetching: Mutex::new(HashSet::new()),
            backoff: Mutex::new(Backoff::default()),
            lag_oldest_ns: AtomicU64::new(0),
        })
    }

    /// The first sequence held remotely.
    pub fn first_seq(&self) -> Option<u64> {
        self.segments.read().first().map(|s| s.first_seq)
    }

    /// The last uploaded sequence (0: none).
    pub fn uploaded_through(&self) -> u64 {
        self.segments.read().last().map_or(0, |s| s.last_seq)
    }

    /// The segment holding `seq`, or the first one after it.
    pub fn segment_from(&self, seq: u64) -> Option<SegmentRef> {
        let segs = self.segments.read();
        let i = segs.partition_point(|s| s.last_seq < seq);
        segs.get(i).cloned()
    }

    /// (segments, their bytes, messages in them below `local_first`).
    pub fn totals(&self, local_first: u64) -> (u64, u64, u64) {
        let segs = self.segments.read();
        let bytes = segs.iter().map(|s| s.bytes).sum();
        let remote_only = segs
            .iter()
            .map(|s| {
                if s.last_seq < local_first {
                    s.messages
                } else if s.first_seq >= local_first {
                    0
                } else {
                    // Partly local (a limit removed some of it locally): estimated.
                    let span = s.last_seq - s.first_seq + 1;
                    s.messages * (local_first - s.first_seq) / span
                }
            })
            .sum();
        (segs.len() as u64, bytes, remote_only)
    }

    /// Bytes of the remote messages below `local_first` (a segment partly
    /// local counts in proportion).
    pub fn remote_bytes_below(&self, local_first: u64) -> u64 {
        self.segments
            .read()
            .iter()
            .map(|s| {
                if s.last_seq < local_first {
                    s.bytes
                } else if s.first_seq >= local_first {
                    0
                } else {
                    s.bytes * (local_first - s.first_seq) / (s.last_seq - s.first_seq + 1)
                }
            })
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
        Some(block)
    }

    /// Starts fetching the next `blocks` blocks from `from` (below
    /// `local_first`) that are not cached, so that a consumer replaying the
    /// remote range finds them in the cache rather than waiting for one GET
    /// after another.
    pub fn read_ahead(&self, from: u64, local_first: u64, blocks: usize) {
        let mut seq = from;
        for _ in 0..blocks {
            if seq >= local_first {
                return;
            }
            let Some(seg) = self.segment_from(seq).filter(|s| s.first_seq < local_first) else {
                return;
            };
            let here = seq.max(seg.first_seq);
            let block = self
                .remote
                .cached_footer(&seg.key)
                .and_then(|f| f.block_for(here).copied());
            match block {
                Some(b) => {
                    if !self.remote.is_cached(&seg.key, b.offset) {
                        self.prefetch(&seg, here);
                    }
                    seq = b.last_seq + 1;
                }
                // The footer is not read yet: its fetch reads the first block.
                None => {
                    self.prefetch(&seg, here);
                    seq = seg.last_seq + 1;
                }
            }
        }
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
        let remote = self.remote.clone();
        let station = self.station.clone();
        let seg = seg.clone();
        self.remote.runtime().spawn(async move {
            let r = tokio::time::timeout(
                junction_storage::tier::READ_TIMEOUT,
                remote.block_for(&seg, from),
            )
            .await;
            let Some(st) = station.upgrade() else { return };
            if let Some(t) = st.tier() {
                t.fetching.lock().remove(&(seg.key.clone(), from));
            }
            match r {
                Ok(Ok(_)) => {
                    let _ = tokio::task::spawn_blocking(move || st.fill_groups()).await;
                }
                Ok(Err(e)) => {
                    remote.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(station = st.name(), key = %seg.key, error = %e, "remote block read failed; consumers wait and retry");
                }
                Err(_) => {
                    remote.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(station = st.name(), key = %seg.key, "remote block read timed out; consumers wait and retry");
                }
            }
        });
    }

    /// Reads message `seq` from the bucket, waiting at most the read timeout.
    /// `Ok(None)`: no segment holds it (it was never uploaded or was deleted
    /// before the upload).
    pub fn read(&self, seq: u64) -> Result<Option<junction_storage::Record>, EngineError> {
        let Some(seg) = self.segment_from(seq).filter(|s| s.first_seq <= seq) else {
            return Ok(None);
        };
        let block = match self.cached_block(&seg, seq) {
            Some(b) => b,
            None => {
                let remote = self.remote.clone();
                let s = seg.clone();
                match self
                    .remote
                    .wait(async move { remote.block_for(&s, seq).await })
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
                    match self
                        .remote
                        .wait(async move { remote.block_for(&s, here).await })
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
        if seg.min_time_ns >= time_ns {
            return Some(seg.first_seq);
        }
        let remote = self.remote.clone();
        let s = seg.clone();
        match self
            .remote
            .wait(async move { remote.block_at_time(&s, time_ns).await })
        {
            Ok(Some(block)) => block
                .iter()
                .find(|r| r.time_ns >= time_ns)
                .map(|r| r.seq)
                .or(Some(seg.first_seq)),
            Ok(None) => Some(seg.first_seq),
            Err(e) => {
                tracing::warn!(key = %seg.key, error = %e, "remote read for a start time failed; starting at the segment's first message");
                Some(seg.first_seq)
            }
        }
    }

    /// Forgets the remote index (the station is being deleted). The objects
    /// stay in the bucket: removing them is the reconciler's, not in this slice.
    pub fn forget(&self, store: &Store, station: u64) -> Result<(), EngineError> {
        let keys: Vec<String> = self
            .segments
            .read()
            .iter()
            .map(|s| index_key(station, s.first_seq))
            .collect();
        store
            .write_meta_batch(&[], &keys)
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        self.segments.write().clear();
        Ok(())
    }
}

/// Attaches a tier to every station of `registry` (at start) and starts the
/// uploader on the tier's runtime. The uploader holds the registry and the
/// remote weakly: it ends with the engine.
pub(crate) fn start(registry: &Arc<StationRegistry>, remote: &Arc<Remote>) {
    let weak_registry = Arc::downgrade(registry);
    let weak_remote = Arc::downgrade(remote);
    remote.runtime().spawn(async move {
        loop {
            tokio::time::sleep(UPLOAD_TICK).await;
            let (Some(registry), Some(remote)) = (weak_registry.upgrade(), weak_remote.upgrade())
            else {
                return;
            };
            for station in registry.all() {
                let Some(tier) = station.tier().cloned() else {
                    continue;
                };
                let Some(policy) = tiered_policy(&station) else {
                    continue;
                };
                // A station that is behind catches up several segments a tick.
                for _ in 0..SEGMENTS_PER_TICK {
                    match upload_step(&station, &tier, &remote, &policy).await {
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

/// The station's policy when the uploader should work on it.
fn tiered_policy(station: &Station) -> Option<TierPolicy> {
    let c = station.config();
    let policy = c.tier?;
    (c.storage == StorageKind::File && c.retention == Retention::Limits && !station.is_replicated())
        .then_some(policy)
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
) -> Result<Step, String> {
    {
        let b = tier.backoff.lock();
        if b.not_before.is_some_and(|t| Instant::now() < t) {
            return Ok(Step::Nothing);
        }
    }
    let step = match seal_and_upload(station, tier, remote, policy).await {
        Ok(step) => {
            *tier.backoff.lock() = Backoff::default();
            step
        }
        Err(e) => {
            let mut b = tier.backoff.lock();
            b.delay = if b.delay.is_zero() {
                FIRST_BACKOFF
            } else {
                (b.delay * 2).min(MAX_BACKOFF)
            };
            b.not_before = Some(Instant::now() + b.delay);
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

/// A sealed range: its records' encoding and its index entry.
struct Sealed {
    object: Bytes,
    entry: SegmentRef,
}

/// Seals the next segment when it is full or old enough, and uploads it.
async fn seal_and_upload(
    station: &Arc<Station>,
    tier: &Arc<StationTier>,
    remote: &Arc<Remote>,
    policy: &TierPolicy,
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
    // Recorded only now that the object is in the bucket.
    let store = station.store().clone();
    let entry = sealed.entry.clone();
    let id = station.id;
    let recorded = tokio::task::spawn_blocking(move || {
        store.put_meta(&index_key(id, entry.first_seq), &entry.encode())
    })
    .await
    .map_err(|e| e.to_string())?;
    if let Err(e) = recorded {
        // Not in the index: the object is an orphan; nothing local was removed.
        let _ = remote.delete(&sealed.entry.key).await;
        return Err(format!("cannot record the uploaded segment: {e}"));
    }
    tracing::debug!(station = station.name(), key = %sealed.entry.key, first = sealed.entry.first_seq, last = sealed.entry.last_seq, "segment uploaded");
    tier.segments.write().push(sealed.entry);
    Ok(Step::Uploaded)
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
    let (object, footer) = w.finish();
    let attempt: u64 = rand::random();
    let key = remote.segment_key(&station.uid(), first_seq, last_seq, attempt);
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
        c.tier = Some(TierPolicy {
            segment_bytes: 10,
            ..TierPolicy::default()
        });
        assert!(check_policy(&c, true).is_err());
    }
}
