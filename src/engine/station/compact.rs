//! Log compaction: a station with a `compact` policy keeps the newest message of
//! each subject, as Kafka's compacted topics keep the newest record per key.
//!
//! How it runs:
//! - The engine's one-second tick calls [`Station::compact`] on every station
//!   (`Stations::compact_all`). A *pass* walks the committed log from its first
//!   message in chunks of [`CHUNK`], at most [`BUDGET`] messages per tick (so a
//!   long log takes several ticks), and removes:
//!   - a message whose subject has a newer live, committed message and that is
//!     at least `min_lag_ms` old;
//!   - a tombstone (`KV-Operation: DEL|PURGE`) that is the newest message of its
//!     subject, the only one left of it, and at least `tombstone_retention_ms`
//!     old.
//! - A pass starts once something may be removable (`due`, an upper bound kept
//!   by the append path and by the previous pass) and either half the station's
//!   messages are superseded (Kafka's `min.cleanable.dirty.ratio`) or
//!   `max_lag_ms - min_lag_ms` has passed since then; never within [`MIN_GAP`] of
//!   the last pass.
//! - Removal is the same as a `MSG.DELETE`: the index forgets the message and
//!   the delete is queued to the store's single writer under the station lock,
//!   fsynced before the pass goes on. Sequences never change.
//!
//! Crash safety: a delete is queued after the put of the newer message that
//! justifies it (the newer one is committed before the older one is considered),
//! and the writer applies its queue in order as atomic batches, so no crash
//! leaves a subject without its newest message. A tombstone is removed only
//! once every earlier message of its subject is gone, and its delete is queued
//! after theirs: a crash can leave the tombstone with nothing before it, never
//! an earlier message without the tombstone (what brought purged keys back in
//! nats-server #8505). Before the station's newest sequence can be removed, the
//! sequence floor is written, so sequences are never reused after a restart.

use super::{Station, seq_floor_key, storage_error};
use junction_api::{CompactPolicy, EngineError, Retention, StationConfig, is_tombstone};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Messages read (and decided on) under one hold of the station lock.
const CHUNK: usize = 512;

/// Messages a pass reads per tick; the rest waits for the next tick.
const BUDGET: usize = 50_000;

/// Least time between the end of one pass and the start of the next.
const MIN_GAP: Duration = Duration::from_secs(1);

/// Metadata key of a station's count of compacted messages.
pub fn compacted_key(id: u64) -> String {
    format!("compacted/{id}")
}

/// A station's compaction progress (held by the tick that runs it).
#[derive(Debug, Default)]
pub(crate) struct Compaction {
    /// The pass under way: the next sequence to read.
    cursor: Option<u64>,
    /// When the last pass ended (ns).
    last_done: u64,
    /// The highest sequence the sequence floor has been written for.
    floor: u64,
    /// Passes completed since start (logged).
    passes: u64,
}

/// What one call of [`Station::compact`] removed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Compacted {
    pub messages: u64,
    /// Their accounted bytes.
    pub bytes: u64,
}

/// Checks a station's compaction policy against the rest of its definition.
pub(crate) fn check_policy(config: &StationConfig) -> Result<(), EngineError> {
    let Some(policy) = &config.compact else {
        return Ok(());
    };
    policy.validate().map_err(EngineError::invalid_config)?;
    if config.tier.is_some() {
        return Err(EngineError::invalid_config(
            "compact: a tiered station cannot be compacted (its uploaded segments are immutable, so older values and deleted keys would stay readable from S3); use one or the other",
        ));
    }
    if config.retention != Retention::Limits {
        return Err(EngineError::invalid_config(
            "compact: only stations with limits retention can be compacted",
        ));
    }
    if config.replicas > 1 {
        return Err(EngineError::invalid_config(
            "compact: replicated stations cannot be compacted yet",
        ));
    }
    Ok(())
}

fn ms_ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

impl Station {
    /// On the append path, for a compacted station: `subject` got a new message
    /// at `now` (a tombstone when `tombstone`); `had` says whether it had live
    /// messages before. Brings the next pass's due time forward.
    pub(super) fn compaction_due_on_append(
        &self,
        policy: &CompactPolicy,
        had: bool,
        tombstone: bool,
        now: u64,
    ) {
        let mut due = u64::MAX;
        if had {
            // The older message is removable once min_lag old: by now + min_lag.
            due = now.saturating_add(ms_ns(policy.min_lag_ms));
        }
        if tombstone {
            due = due.min(now.saturating_add(ms_ns(policy.tombstone_retention_ms)));
        }
        if due != u64::MAX {
            self.compact_due.fetch_min(due, Ordering::AcqRel);
        }
    }

    /// Messages removed by compaction since the station was created.
    pub fn compacted(&self) -> u64 {
        self.compacted.load(Ordering::Relaxed)
    }

    /// Reads the count of compacted messages (at start-up).
    pub(super) fn load_compacted(&self) {
        if let Ok(Some(v)) = self.store.get_meta(&compacted_key(self.id))
            && let Some(n) = std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        {
            self.compacted.store(n, Ordering::Relaxed);
        }
    }

    /// One tick of compaction at `now` (ns): starts a pass when one is due, and
    /// goes on with the pass under way for up to [`BUDGET`] messages.
    pub fn compact(&self, now: u64) -> Result<Compacted, EngineError> {
        let Some(policy) = self.config.read().compact else {
            return Ok(Compacted::default());
        };
        if self.config.read().sealed || self.is_replicated() {
            return Ok(Compacted::default());
        }
        // One tick at a time; a slow pass is not run twice at once.
        let Some(mut state) = self.compaction.try_lock() else {
            return Ok(Compacted::default());
        };
        if state.cursor.is_none() {
            if !self.pass_is_due(&policy, &state, now) {
                return Ok(Compacted::default());
            }
            // From here the pass and the appends fold in what comes due next.
            self.compact_due.store(u64::MAX, Ordering::Release);
            state.cursor = Some(1);
        }
        let mut out = Compacted::default();
        let mut read = 0usize;
        while read < BUDGET {
            let from = state.cursor.unwrap_or(1);
            let chunk = self.read_from(from, CHUNK);
            let Some(last) = chunk.last().map(|m| m.seq) else {
                state.cursor = None;
                state.last_done = now;
                state.passes += 1;
                tracing::debug!(station = %self.name, passes = state.passes, "compaction pass done");
                break;
            };
            read += chunk.len();
            state.cursor = Some(last + 1);
            // The station's newest message may go (a tombstone): its sequence is
            // written as the floor first, so a restart never hands it out again.
            if last > state.floor {
                let floor = self.last_seq();
                if !self.log.lock().limits.memory {
                    self.store
                        .put_meta(&seq_floor_key(self.id), floor.to_string().as_bytes())
                        .map_err(storage_error)?;
                }
                state.floor = floor;
            }
            let (removed, bytes) = self.compact_chunk(&policy, &chunk, now)?;
            // Counted as they go, so the count and the station's messages agree.
            self.compacted.fetch_add(removed, Ordering::Relaxed);
            out.messages += removed;
            out.bytes += bytes;
        }
        if out.messages > 0 {
            let total = self.compacted.load(Ordering::Relaxed);
            if !self.log.lock().limits.memory
                && let Err(e) = self
                    .store
                    .put_meta(&compacted_key(self.id), total.to_string().as_bytes())
            {
                tracing::warn!(station = %self.name, error = %e, "cannot record the compacted count");
            }
            tracing::debug!(station = %self.name, removed = out.messages, "compaction removed superseded messages");
        }
        Ok(out)
    }

    /// Whether a pass should start now.
    fn pass_is_due(
        &self,
        policy: &CompactPolicy,
        state: &super::compact::Compaction,
        now: u64,
    ) -> bool {
        if state.last_done > 0 && now < state.last_done.saturating_add(MIN_GAP.as_nanos() as u64) {
            return false;
        }
        let due = self.compact_due.load(Ordering::Acquire);
        if now < due {
            return false;
        }
        let (msgs, subjects) = {
            let log = self.log.lock();
            (log.msgs, log.per_subject.len() as u64)
        };
        if msgs == 0 {
            self.compact_due.store(u64::MAX, Ordering::Release);
            return false;
        }
        let dirty = msgs.saturating_sub(subjects);
        let defer = ms_ns(policy.max_lag_ms.saturating_sub(policy.min_lag_ms));
        (dirty > 0 && dirty * 2 >= msgs) || now >= due.saturating_add(defer)
    }

    /// Decides on one chunk of messages under the station lock, queues the
    /// deletes to the writer, and waits until they are durable. Returns the
    /// messages and bytes removed.
    fn compact_chunk(
        &self,
        policy: &CompactPolicy,
        chunk: &[junction_api::StoredMessage],
        now: u64,
    ) -> Result<(u64, u64), EngineError> {
        let min_lag = ms_ns(policy.min_lag_ms);
        let retention = ms_ns(policy.tombstone_retention_ms);
        let committed = self.committed.load(Ordering::Acquire);
        let mut due = u64::MAX;
        let mut gone = Vec::new();
        let mut bytes = 0u64;
        let mut log = self.log.lock();
        for m in chunk {
            let Some(s) = log.per_subject.get(m.subject.as_bytes()) else {
                continue;
            };
            let (last, count) = (s.last, s.count);
            let time = super::time_ns(m.time);
            let age = now.saturating_sub(time);
            let remove = if m.seq < last {
                if last > committed {
                    // The newer message is not durable yet: the next pass.
                    due = due.min(now.saturating_add(MIN_GAP.as_nanos() as u64));
                    false
                } else if age >= min_lag {
                    true
                } else {
                    due = due.min(time.saturating_add(min_lag));
                    false
                }
            } else if m.seq == last && is_tombstone(m.headers.as_ref()) {
                if age < retention {
                    due = due.min(time.saturating_add(retention));
                    false
                } else {
                    // Earlier messages still held by min_lag keep it; they
                    // set the due time themselves.
                    count == 1
                }
            } else {
                false
            };
            if remove && let Some(entry) = log.forget(m.seq) {
                bytes += entry.size;
                gone.push(m.seq);
            }
        }
        let queued = self.queue_deletes(&log, &gone);
        drop(log);
        if due != u64::MAX {
            self.compact_due.fetch_min(due, Ordering::AcqRel);
        }
        self.deleted(queued, &gone)?;
        Ok((gone.len() as u64, bytes))
    }

    /// Forgets the pass under way (the station's log was replaced).
    pub(super) fn reset_compaction(&self) {
        let mut state = self.compaction.lock();
        state.cursor = None;
        state.floor = 0;
        self.compact_due.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use junction_api::TierPolicy;

    fn compacted(p: CompactPolicy) -> StationConfig {
        StationConfig {
            name: "kv".into(),
            compact: Some(p),
            ..StationConfig::default()
        }
    }

    #[test]
    fn policies_that_make_no_sense_are_refused() {
        assert!(check_policy(&compacted(CompactPolicy::default())).is_ok());
        let bad = [
            (
                CompactPolicy {
                    min_lag_ms: 10,
                    max_lag_ms: 5,
                    ..Default::default()
                },
                "must not be above",
            ),
            (
                CompactPolicy {
                    max_lag_ms: 0,
                    ..Default::default()
                },
                "max_lag_ms must be above 0",
            ),
            (
                CompactPolicy {
                    tombstone_retention_ms: u64::MAX,
                    ..Default::default()
                },
                "tombstone_retention_ms must be at most",
            ),
        ];
        for (p, text) in bad {
            let e = check_policy(&compacted(p))
                .expect_err("refused")
                .to_string();
            assert!(e.contains(text), "{e}");
        }
        let mut tiered = compacted(CompactPolicy::default());
        tiered.tier = Some(TierPolicy::default());
        let e = check_policy(&tiered).expect_err("refused").to_string();
        assert!(e.contains("tiered station cannot be compacted"), "{e}");
        let mut interest = compacted(CompactPolicy::default());
        interest.retention = Retention::Interest;
        assert!(check_policy(&interest).is_err());
        let mut replicated = compacted(CompactPolicy::default());
        replicated.replicas = 3;
        assert!(check_policy(&replicated).is_err());
    }

    #[test]
    fn tombstones_follow_the_nats_kv_convention() {
        let mut h = junction_api::Headers::new();
        assert!(!is_tombstone(Some(&h)));
        h.insert("KV-Operation", "DEL");
        assert!(is_tombstone(Some(&h)));
        h.insert("kv-operation", "PURGE");
        assert!(is_tombstone(Some(&h)));
        h.insert("KV-Operation", "PUT");
        assert!(!is_tombstone(Some(&h)));
        assert!(!is_tombstone(None));
    }
}
