//! Fencing stored writes before the disk is full.
//!
//! A self-check ([`StationEngine::check_disk`], every second) reads the data
//! directory's file system (`statvfs`). When it is `disk_max_used_percent`
//! full, or has less than `disk_min_free` free, stored writes are fenced:
//! every protocol's publish into a station is refused ([`EngineError::StorageFenced`]:
//! JetStream 10047, HTTP 507, MQTT 5 0x97, MQTT 3.1.1 not acknowledged), while
//! core publish/subscribe, reads, acks and purges go on, so consumers can make
//! room. Once the file system is back under the mark (by one percent, so the
//! fence does not flap), stored writes resume on their own. Each change is
//! logged and recorded as an event once (`storage_full`, `storage_full_cleared`),
//! and `/readyz` answers 503 while the fence is up (`/healthz` stays 200: a
//! restart frees nothing). nats-server switches JetStream off instead; a fence
//! keeps the store whole and needs no restart.
//!
//! Publishing pays one atomic load for it.

use super::StationEngine;
use super::ingress::is_internal_station;
use junction_api::{EngineError, SystemEventKind};
use junction_storage::{FSYNC_BUCKETS_SECS, FsyncStats};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// When to fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskPolicy {
    /// Fence at this percent used (0: never).
    pub max_used_percent: u8,
    /// Fence below this many free bytes (none: no floor).
    pub min_free: Option<u64>,
}

impl Default for DiskPolicy {
    fn default() -> Self {
        DiskPolicy {
            max_used_percent: 95,
            min_free: None,
        }
    }
}

/// The fence and why it is up.
#[derive(Debug, Default)]
pub(crate) struct DiskGuard {
    fenced: AtomicBool,
    reason: Mutex<Option<String>>,
    reclaim: Mutex<Reclaim>,
}

/// Whether deleted space is being given back, and the stations' bytes at the
/// last look (a drop means something was deleted).
#[derive(Debug, Default)]
struct Reclaim {
    last_stored: Option<u64>,
    running: bool,
    /// Bytes compaction removed since the last reclaim it asked for.
    compacted: u64,
}

/// Compaction asks for the space back once it removed at least this many
/// bytes and a quarter of the store's size on disk since it last asked.
const RECLAIM_AFTER_COMPACTED: u64 = 8 << 20;

/// What a file system holds and what is free for the broker, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DiskUse {
    /// Blocks in use (`f_blocks - f_bfree`).
    pub used: u64,
    /// Blocks the broker may still write (`f_bavail`).
    pub available: u64,
}

impl DiskUse {
    /// Percent full as `df` prints it: used over used plus available.
    ///
    /// Blocks reserved for another user (ext4's reserved blocks, which can be
    /// most of a disk: `resuid=` on a shared volume) are neither, so they do not
    /// make an empty disk look full. Measured against the whole size instead, a
    /// 252 GB volume with 161 GB reserved, 12 GB used and 80 GB free read as
    /// 68% full, and fenced every write once under 12.6 GB were free.
    fn used_percent(&self) -> f64 {
        let size = self.used.saturating_add(self.available);
        if size == 0 {
            return 0.0;
        }
        100.0 * self.used as f64 / size as f64
    }
}

/// Why `disk` is over `policy`, if it is (`slack`: percent taken off the mark,
/// so that a fence clears only once clearly under it).
fn over(policy: &DiskPolicy, disk: DiskUse, slack: f64) -> Option<String> {
    let used = disk.used_percent();
    if policy.max_used_percent > 0 && used >= f64::from(policy.max_used_percent) - slack {
        return Some(format!(
            "the data directory's disk is {used:.1}% full (limits.disk_max_used_percent = {})",
            policy.max_used_percent
        ));
    }
    match policy.min_free {
        Some(min) if (disk.available as f64) < min as f64 * (1.0 + slack / 100.0) => Some(format!(
            "the data directory's disk has {} bytes free (limits.disk_min_free = {min})",
            disk.available
        )),
        _ => None,
    }
}

/// The file system under `path`.
#[cfg(unix)]
pub(crate) fn disk_use(path: &std::path::Path) -> Option<DiskUse> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(DiskUse {
        used: s
            .f_blocks
            .saturating_sub(s.f_bfree)
            .saturating_mul(s.f_frsize),
        available: s.f_bavail.saturating_mul(s.f_frsize),
    })
}

#[cfg(not(unix))]
pub(crate) fn disk_use(_path: &std::path::Path) -> Option<DiskUse> {
    None
}

impl StationEngine {
    /// Refuses a stored write while the fence is up.
    pub(crate) fn admit_to_disk(&self) -> Result<(), EngineError> {
        if !self.disk.fenced.load(Ordering::Acquire) {
            return Ok(());
        }
        let reason = self.disk.reason.lock().clone().unwrap_or_default();
        Err(EngineError::StorageFenced(reason))
    }

    /// Why stored writes are fenced, if they are.
    pub(crate) fn disk_fence(&self) -> Option<String> {
        if !self.disk.fenced.load(Ordering::Acquire) {
            return None;
        }
        self.disk.reason.lock().clone()
    }

    /// The self-check: raises or clears the fence for the data directory's
    /// file system as it is now. Cheap (one `statvfs`); call it every second.
    pub fn check_disk(&self) {
        let policy = *self.alarms.disk_policy.lock();
        let Some(disk) = disk_use(self.store().path()) else {
            return;
        };
        let up = self.disk.fenced.load(Ordering::Acquire);
        // Raised at the mark; cleared one percent under it.
        let reason = over(&policy, disk, if up { 1.0 } else { 0.0 });
        match (up, reason) {
            (false, Some(why)) => {
                *self.disk.reason.lock() = Some(why.clone());
                self.disk.fenced.store(true, Ordering::Release);
                tracing::error!(
                    "stored writes fenced: {why}; core messages, reads, acks and purges go on"
                );
                self.events.record(
                    SystemEventKind::StorageFull,
                    super::events::About {
                        tenant: self.system_tenant(),
                        alarm: Some(junction_api::AlarmState {
                            name: "storage_full".into(),
                            active: true,
                        }),
                        details: Some(serde_json::json!({
                            "used_percent": disk.used_percent(),
                            "available_bytes": disk.available,
                        })),
                        ..Default::default()
                    },
                    format!("stored writes fenced: {why}"),
                );
            }
            (true, None) => {
                self.disk.fenced.store(false, Ordering::Release);
                *self.disk.reason.lock() = None;
                let used = disk.used_percent();
                tracing::warn!(
                    "stored writes resume: the data directory's disk is {used:.1}% full"
                );
                self.events.record(
                    SystemEventKind::StorageFullCleared,
                    super::events::About {
                        tenant: self.system_tenant(),
                        alarm: Some(junction_api::AlarmState {
                            name: "storage_full".into(),
                            active: false,
                        }),
                        details: Some(serde_json::json!({
                            "used_percent": used,
                            "available_bytes": disk.available,
                        })),
                        ..Default::default()
                    },
                    format!("stored writes resume: the disk is {used:.1}% full"),
                );
            }
            (true, Some(why)) => *self.disk.reason.lock() = Some(why),
            (false, None) => {}
        }
        self.reclaim_if_deleted(&policy, disk);
        // The warning before the fence: `storage_low`, five points under the
        // mark, cleared one point under that.
        if policy.max_used_percent > 5 {
            let warn_at = f64::from(policy.max_used_percent - 5);
            let used = disk.used_percent();
            let raised = self.alarms.raised.lock().contains_key("storage_low");
            if used >= warn_at {
                self.raise_alarm(
                    "storage_low",
                    &format!(
                        "the data directory's disk is {used:.1}% full; stored writes are fenced at {}%",
                        policy.max_used_percent
                    ),
                );
            } else if raised && used < warn_at - 1.0 {
                self.clear_alarm("storage_low");
            }
        }
    }

    /// On a disk past the warning mark, messages deleted since the last look
    /// (a purge, a deleted station, retention) have their space given back at
    /// once ([`junction_storage::Store::reclaim`], on a thread of its own), so
    /// that purging makes room under the fence as the docs say. Elsewhere the
    /// LSM tree gives it back as it compacts on its own.
    fn reclaim_if_deleted(&self, policy: &DiskPolicy, disk: DiskUse) {
        let near_full = (policy.max_used_percent > 5
            && disk.used_percent() >= f64::from(policy.max_used_percent - 5))
            || self.disk.fenced.load(Ordering::Acquire);
        if !near_full {
            // The stations' bytes are summed only near the mark.
            self.disk.reclaim.lock().last_stored = None;
            return;
        }
        let stored: u64 = self.stations.all().iter().map(|s| s.stored_bytes()).sum();
        let mut state = self.disk.reclaim.lock();
        let deleted = state.last_stored.is_some_and(|before| stored < before);
        state.last_stored = Some(stored);
        if !deleted || state.running {
            return;
        }
        state.running = true;
        drop(state);
        self.spawn_reclaim(stored);
    }

    /// Compaction removed `bytes`: once that adds up to a good share of the
    /// store, the log is compacted to give the space back
    /// ([`junction_storage::Store::reclaim`], on a thread of its own, one at a
    /// time), rather than waiting for the LSM tree's own compactions, which
    /// need writes to happen.
    pub(crate) fn reclaim_after_compaction(&self, bytes: u64) {
        let mut state = self.disk.reclaim.lock();
        state.compacted = state.compacted.saturating_add(bytes);
        let enough = state.compacted >= RECLAIM_AFTER_COMPACTED
            && state.compacted >= self.store().disk_space() / 4;
        if !enough || state.running {
            return;
        }
        state.compacted = 0;
        state.running = true;
        drop(state);
        let stored: u64 = self.stations.all().iter().map(|s| s.stored_bytes()).sum();
        self.spawn_reclaim(stored);
    }

    /// Runs [`junction_storage::Store::reclaim`] on a thread of its own; the
    /// caller set `running`. `stored`: the stations' bytes.
    fn spawn_reclaim(&self, stored: u64) {
        let store = self.store().clone();
        let me = self.me.clone();
        let spawned = std::thread::Builder::new()
            .name("junction-reclaim".into())
            .spawn(move || {
                let path = store.path().to_path_buf();
                let free = || disk_use(&path).map_or(0, |d| d.available);
                match store.reclaim(free, stored) {
                    Ok(r) => tracing::info!(
                        flushed = r.flushed,
                        compacted = r.compacted,
                        "deleted messages' space given back: the store went from {} to {} bytes",
                        r.before,
                        r.after
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "giving back deleted messages' space failed")
                    }
                }
                // The next disk check (within a second) sees the space.
                if let Some(engine) = me.upgrade() {
                    engine.disk.reclaim.lock().running = false;
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the space reclaim thread");
            self.disk.reclaim.lock().running = false;
        }
    }

    /// The memory self-check: `memory_high` while the broker uses
    /// `memory_high_percent` of its memory limit (`limits.memory_max`, else
    /// its cgroup's, else the machine's), cleared five points under it. While
    /// it is up, new NATS, MQTT and WebSocket connections are refused (the
    /// clients already connected go on).
    pub fn check_memory(&self) {
        let policy = self.self_checks();
        let raised = self.alarms.raised.lock().contains_key("memory_high");
        if policy.memory_high_percent == 0 {
            if raised {
                self.alarms.memory_pressure.store(false, Ordering::Release);
                self.clear_alarm("memory_high");
            }
            return;
        }
        let Some((used, limit)) = memory_use(policy.memory_max) else {
            return;
        };
        let percent = 100.0 * used as f64 / limit.max(1) as f64;
        let mark = f64::from(policy.memory_high_percent);
        if percent >= mark {
            let already = self.alarms.memory_pressure.swap(true, Ordering::AcqRel);
            self.raise_alarm(
                "memory_high",
                &format!(
                    "the broker uses {percent:.1}% of its memory limit ({used} of {limit} bytes); new connections are refused"
                ),
            );
            // Refusing new connections was not enough: the slowest consumer goes.
            if already {
                self.shed_slowest_consumer(percent);
            }
        } else if raised && percent < mark - 5.0 {
            self.alarms.memory_pressure.store(false, Ordering::Release);
            self.clear_alarm("memory_high");
        }
    }

    /// Refuses a new connection while `memory_high` is up.
    pub(crate) fn admit_connection_memory(&self) -> Result<(), EngineError> {
        if self.alarms.memory_pressure.load(Ordering::Acquire) {
            tracing::warn!("connection refused: memory_high (the broker is near its memory limit)");
            return Err(EngineError::MaxConnections);
        }
        Ok(())
    }

    /// The consumer-lag self-check: `consumer_lag:<tenant>/<station>/<group>`
    /// while a group has more than `consumer_lag_alarm` messages to deliver,
    /// cleared under 90% of it (or when the group is gone).
    pub fn check_consumer_lag(&self) {
        let checks = self.self_checks();
        let max = checks.consumer_lag_alarm;
        let stuck_after = checks.stuck_ack_alarm;
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        let mut stuck_now = std::collections::HashSet::new();
        for station in self.stations.all() {
            if is_internal_station(station.name()) {
                continue;
            }
            let groups: Vec<_> = station
                .groups
                .read()
                .iter()
                .map(|(n, g)| (n.clone(), g.clone()))
                .collect();
            for (group_name, group) in groups {
                let state = group.state(&station);
                let at = format!("{}/{}/{}", station.tenant.0, station.name(), group_name);
                if !stuck_after.is_zero() {
                    let unacked = state.num_ack_pending + state.num_redelivered;
                    if let Some(stuck_for) =
                        self.stuck_for(&at, unacked, state.ack_floor_stream_seq, now)
                        && stuck_for >= stuck_after
                    {
                        let name = format!("stuck_acks:{at}");
                        self.raise_alarm(
                            &name,
                            &format!(
                                "group '{group_name}' of station '{}' has {unacked} messages delivered and not acknowledged, and its ack floor (stream sequence {}) has not moved for {} s (limits.stuck_ack_alarm = {} s)",
                                station.name(),
                                state.ack_floor_stream_seq,
                                stuck_for.as_secs(),
                                stuck_after.as_secs_f64()
                            ),
                        );
                        stuck_now.insert(name);
                    }
                }
                if max == 0 {
                    continue;
                }
                let lag = state.num_pending;
                let name = format!("consumer_lag:{at}");
                if lag > max {
                    self.raise_alarm(
                        &name,
                        &format!(
                            "group '{}' of station '{}' has {lag} messages to deliver (limits.consumer_lag_alarm = {max})",
                            group_name,
                            station.name()
                        ),
                    );
                    seen.insert(name);
                } else if lag > max / 10 * 9 && self.alarms.raised.lock().contains_key(&name) {
                    seen.insert(name);
                }
            }
        }
        let stale: Vec<String> = self
            .alarms
            .raised
            .lock()
            .keys()
            .filter(|k| {
                (k.starts_with("consumer_lag:") && !seen.contains(*k))
                    || (k.starts_with("stuck_acks:") && !stuck_now.contains(*k))
            })
            .cloned()
            .collect();
        for name in stale {
            self.clear_alarm(&name);
        }
        // Groups that are gone, or have nothing unacked, are forgotten.
        self.alarms
            .ack_floors
            .lock()
            .retain(|_, (_, _, checked)| *checked == now);
    }

    /// How long the group at `at` (`tenant/station/group`) has had messages
    /// unacked with its ack floor at `floor`; none while nothing is unacked.
    fn stuck_for(&self, at: &str, unacked: u64, floor: u64, now: Instant) -> Option<Duration> {
        if unacked == 0 {
            return None;
        }
        let mut floors = self.alarms.ack_floors.lock();
        let entry = floors.entry(at.to_string()).or_insert((floor, now, now));
        if entry.0 != floor {
            *entry = (floor, now, now);
        }
        entry.2 = now;
        Some(now.saturating_duration_since(entry.1))
    }

    /// The fsync self-check: `fsync_slow` while the 99th percentile of the
    /// store's fsyncs over the last [`FSYNC_WINDOW`] (at least
    /// [`FSYNC_MIN_SAMPLES`] of them) is over `limits.fsync_p99_alarm`, read
    /// from the fsync histogram (so rounded up to its bucket), cleared when a
    /// window's p99 is back under it. A window with too few fsyncs changes
    /// nothing. Call it every second.
    pub fn check_fsync(&self) {
        let mark = self.self_checks().fsync_p99_alarm;
        let now = Instant::now();
        let snapshot = self.store().fsync_histogram();
        let (count, p99) = {
            let mut window = self.alarms.fsync_window.lock();
            window.push_back((now, snapshot.clone()));
            // Keep one snapshot at least a window old as the baseline.
            while window.len() > 2
                && window
                    .get(1)
                    .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= FSYNC_WINDOW)
            {
                window.pop_front();
            }
            let Some((_, base)) = window.front() else {
                return;
            };
            fsync_p99(base, &snapshot)
        };
        let raised = self.alarms.raised.lock().contains_key("fsync_slow");
        if mark.is_zero() {
            if raised {
                self.clear_alarm("fsync_slow");
            }
            return;
        }
        if count < FSYNC_MIN_SAMPLES {
            return;
        }
        let over = p99.is_none_or(|p| p > mark.as_secs_f64());
        let shown = p99.map_or_else(
            || {
                format!(
                    "over {} ms",
                    FSYNC_BUCKETS_SECS[FSYNC_BUCKETS_SECS.len() - 1] * 1e3
                )
            },
            |p| format!("at most {} ms", p * 1e3),
        );
        if over {
            self.raise_alarm(
                "fsync_slow",
                &format!(
                    "the 99th percentile of the last {count} fsyncs of the data directory is {shown} (limits.fsync_p99_alarm = {} ms); acknowledged writes wait for it",
                    mark.as_secs_f64() * 1e3
                ),
            );
        } else if raised {
            self.clear_alarm("fsync_slow");
        }
    }

    /// Sheds the connection with the most bytes queued for it (at least
    /// [`SHED_MIN_PENDING`]) as a slow consumer: the memory self-check's
    /// second step, when refusing new connections did not bring memory down.
    fn shed_slowest_consumer(&self, percent: f64) {
        let slowest = self
            .clients
            .read()
            .values()
            .map(|e| &e.record)
            .filter(|r| r.kind() == junction_api::ClientKind::Connection && r.can_close())
            .map(|r| (r.stats.pending_bytes.load(Ordering::Relaxed), r.clone()))
            .filter(|(pending, _)| *pending >= SHED_MIN_PENDING)
            .max_by_key(|(pending, _)| *pending);
        let Some((pending, record)) = slowest else {
            return;
        };
        let shed = record.request_close_as(junction_api::CloseCause::SlowConsumer, "Slow Consumer (Memory Pressure)", || {
            self.counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
            self.events.record(
                SystemEventKind::SlowConsumer,
                super::events::About {
                    client: Some(&record),
                    keep: Some(record.clone()),
                    details: Some(serde_json::json!({
                        "pending_bytes": pending,
                        "memory_percent": percent,
                        "reason": "memory_high",
                    })),
                    ..Default::default()
                },
                format!(
                    "{} client {} shed as the slowest consumer under memory pressure ({pending} bytes queued for it)",
                    super::protocol_word(record.protocol),
                    record.id.0
                ),
            );
        });
        if shed {
            tracing::warn!(
                cid = record.id.0,
                protocol = super::protocol_word(record.protocol),
                name = record.name().unwrap_or_default(),
                pending_bytes = pending,
                "slow consumer shed under memory pressure ({percent:.1}% of the memory limit)"
            );
        }
    }

    /// The self-checks' thresholds now (a reload changes them).
    pub(crate) fn self_checks(&self) -> SelfChecks {
        *self.alarms.checks.lock()
    }

    /// Replaces the disk fence's policy and the self-checks' thresholds (a
    /// reload); the next check uses them.
    pub fn set_self_checks(&self, disk: DiskPolicy, checks: SelfChecks) {
        *self.alarms.disk_policy.lock() = disk;
        *self.alarms.checks.lock() = checks;
    }
}

/// The span the fsync self-check's 99th percentile covers.
pub const FSYNC_WINDOW: Duration = Duration::from_secs(10);
/// Fewer fsyncs than this in a window say nothing about the disk.
pub const FSYNC_MIN_SAMPLES: u64 = 10;
/// A connection with less than this queued is never shed.
pub const SHED_MIN_PENDING: u64 = 64 * 1024;

/// The fsyncs between `base` and `now`, and the upper bound of the histogram
/// bucket that holds their 99th percentile, in seconds (none: over the last
/// bound).
fn fsync_p99(base: &FsyncStats, now: &FsyncStats) -> (u64, Option<f64>) {
    let count = now.count.saturating_sub(base.count);
    if count == 0 {
        return (0, Some(0.0));
    }
    let want = (count * 99).div_ceil(100);
    let p99 = now
        .buckets
        .iter()
        .zip(base.buckets.iter().map(|b| b.1).chain(std::iter::repeat(0)))
        .find(|((_, n), b)| n.saturating_sub(*b) >= want)
        .map(|((le, _), _)| *le);
    (count, p99)
}

/// The memory the broker's cgroup (else the process) uses, and its limit
/// (the cgroup's `memory.max`, else the machine's memory), in bytes.
fn memory_use(configured: Option<u64>) -> Option<(u64, u64)> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    if let Some(limit) = configured {
        return Some((rss_bytes()?, limit));
    }
    let cgroup_limit = read("/sys/fs/cgroup/memory.max").and_then(|s| s.trim().parse::<u64>().ok());
    let cgroup_used =
        read("/sys/fs/cgroup/memory.current").and_then(|s| s.trim().parse::<u64>().ok());
    if let (Some(limit), Some(used)) = (cgroup_limit, cgroup_used) {
        return Some((used, limit));
    }
    let meminfo = read("/proc/meminfo")?;
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((rss_bytes()?, total_kib * 1024))
}

/// The process's resident memory.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(rss_kib * 1024)
}

/// The self-checks' thresholds (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfChecks {
    /// The memory limit the memory check uses (none: the cgroup's, else the
    /// machine's).
    pub memory_max: Option<u64>,
    /// `memory_high` at this percent of it (0: never).
    pub memory_high_percent: u8,
    /// `consumer_lag:…` past this many messages to deliver (0: never).
    pub consumer_lag_alarm: u64,
    /// `stuck_acks:…` when a group's ack floor has not moved for this long
    /// with messages unacked (zero: never).
    pub stuck_ack_alarm: Duration,
    /// `fsync_slow` when the p99 of the fsyncs over the last 10 s is over
    /// this (zero: never).
    pub fsync_p99_alarm: Duration,
}

impl Default for SelfChecks {
    fn default() -> Self {
        SelfChecks {
            memory_max: None,
            memory_high_percent: 90,
            consumer_lag_alarm: 1_000_000,
            stuck_ack_alarm: Duration::from_secs(300),
            fsync_p99_alarm: Duration::from_millis(500),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_rises_at_the_mark_and_clears_under_it() {
        let policy = DiskPolicy {
            max_used_percent: 90,
            min_free: Some(100),
        };
        let disk = |used: u64, total: u64| DiskUse {
            used,
            available: total - used,
        };
        assert!(over(&policy, disk(89_000, 100_000), 0.0).is_none());
        assert!(over(&policy, disk(90_000, 100_000), 0.0).is_some());
        // Up: it clears only one percent under the mark.
        assert!(over(&policy, disk(89_500, 100_000), 1.0).is_some());
        assert!(over(&policy, disk(88_900, 100_000), 1.0).is_none());
        // The floor of free bytes.
        let small = DiskPolicy {
            max_used_percent: 0,
            min_free: Some(1000),
        };
        assert!(over(&small, disk(9_500, 10_000), 0.0).is_some());
        assert!(over(&small, disk(8_000, 10_000), 0.0).is_none());
        // Off.
        let off = DiskPolicy {
            max_used_percent: 0,
            min_free: None,
        };
        assert!(over(&off, disk(10_000, 10_000), 0.0).is_none());
    }

    #[test]
    fn blocks_reserved_for_another_user_do_not_count_as_used() {
        // `df`: 252 G size, 12 G used, 80 G available (160 G reserved).
        let g = 1u64 << 30;
        let disk = DiskUse {
            used: 12 * g,
            available: 80 * g,
        };
        assert!((disk.used_percent() - 100.0 * 12.0 / 92.0).abs() < 0.01);
        assert!(over(&DiskPolicy::default(), disk, 0.0).is_none());
        // The same volume with 5 G left is full.
        let full = DiskUse {
            used: 100 * g,
            available: 5 * g,
        };
        assert!(over(&DiskPolicy::default(), full, 0.0).is_some());
    }

    #[test]
    fn the_fsync_p99_is_the_bound_of_the_bucket_that_holds_it() {
        let stats = |per_bucket: &[u64], slow: u64| {
            let mut cumulative = 0;
            let buckets = FSYNC_BUCKETS_SECS
                .iter()
                .zip(per_bucket.iter().chain(std::iter::repeat(&0)))
                .map(|(&le, n)| {
                    cumulative += n;
                    (le, cumulative)
                })
                .collect();
            FsyncStats {
                buckets,
                sum_secs: 0.0,
                count: cumulative + slow,
            }
        };
        let none = stats(&[], 0);
        // 99 fast (0.1 ms), one at 5 ms: the p99 is the fast bucket.
        let (n, p) = fsync_p99(&none, &stats(&[99, 0, 0, 0, 0, 1], 0));
        assert_eq!((n, p), (100, Some(0.0001)));
        // 98 fast, two at 5 ms: the p99 is 5 ms.
        let (_, p) = fsync_p99(&none, &stats(&[98, 0, 0, 0, 0, 2], 0));
        assert_eq!(p, Some(0.005));
        // Slower than the last bound: none.
        let (_, p) = fsync_p99(&none, &stats(&[90], 10));
        assert_eq!(p, None);
        // Only what happened since the base counts.
        let base = stats(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50], 0);
        let (n, p) = fsync_p99(&base, &stats(&[100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50], 0));
        assert_eq!((n, p), (100, Some(0.0001)));
    }
}

/// Alarms raised by self-checks other than the disk fence (a TLS certificate
/// that expires soon), by name: each fires once as an event and clears once,
/// as EMQX's alarms do, and shows in `/metrics` while raised.
#[derive(Debug, Default)]
pub(crate) struct Alarms {
    raised: Mutex<std::collections::BTreeMap<String, String>>,
    /// `memory_high` is up: new connections are refused.
    memory_pressure: AtomicBool,
    /// When to fence stored writes (a reload changes it).
    disk_policy: Mutex<DiskPolicy>,
    /// The self-checks' thresholds (a reload changes them).
    checks: Mutex<SelfChecks>,
    /// Groups with messages unacked, by `tenant/station/group`: their ack
    /// floor, since when it is there, and the check that last saw them.
    ack_floors: Mutex<std::collections::HashMap<String, (u64, Instant, Instant)>>,
    /// Snapshots of the fsync histogram over the last window, oldest first.
    fsync_window: Mutex<std::collections::VecDeque<(Instant, FsyncStats)>>,
}

impl Alarms {
    pub(crate) fn new(disk: DiskPolicy, checks: SelfChecks) -> Alarms {
        Alarms {
            disk_policy: Mutex::new(disk),
            checks: Mutex::new(checks),
            ..Default::default()
        }
    }
}

/// An alarm event's details: why, and which webhook a `webhook_failing:<name>`
/// alarm is about (that webhook does not deliver it: it is failing).
fn alarm_details(name: &str, why: &str) -> serde_json::Value {
    let mut d = serde_json::json!({ "reason": why });
    if let Some(hook) = name.strip_prefix("webhook_failing:") {
        d["webhook"] = serde_json::Value::from(hook);
    }
    d
}

impl StationEngine {
    /// Raises alarm `name` with `why` (an event the first time); a raised
    /// alarm only has its reason updated.
    pub fn raise_alarm(&self, name: &str, why: &str) {
        let first = self
            .alarms
            .raised
            .lock()
            .insert(name.to_string(), why.to_string())
            .is_none();
        if first {
            tracing::warn!(alarm = name, "alarm raised: {why}");
            self.events.record(
                SystemEventKind::AlarmRaised,
                super::events::About {
                    tenant: self.system_tenant(),
                    alarm: Some(junction_api::AlarmState {
                        name: name.to_string(),
                        active: true,
                    }),
                    details: Some(alarm_details(name, why)),
                    ..Default::default()
                },
                format!("{name}: {why}"),
            );
        }
    }

    /// Clears alarm `name` (an event if it was raised).
    pub fn clear_alarm(&self, name: &str) {
        if self.alarms.raised.lock().remove(name).is_some() {
            tracing::info!(alarm = name, "alarm cleared");
            self.events.record(
                SystemEventKind::AlarmCleared,
                super::events::About {
                    tenant: self.system_tenant(),
                    alarm: Some(junction_api::AlarmState {
                        name: name.to_string(),
                        active: false,
                    }),
                    details: Some(alarm_details(name, "")),
                    ..Default::default()
                },
                format!("{name} cleared"),
            );
        }
    }

    /// The alarms raised now, by name, with why; the disk fence's included
    /// (`storage_full`).
    pub(crate) fn active_alarms(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .alarms
            .raised
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(why) = self.disk_fence() {
            all.push(("storage_full".into(), why));
        }
        all.sort();
        all
    }
}
