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
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

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
}

/// A file system's size and what is free for the broker, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DiskUse {
    pub total: u64,
    pub available: u64,
}

impl DiskUse {
    fn used_percent(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        100.0 * (self.total.saturating_sub(self.available)) as f64 / self.total as f64
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
        total: s.f_blocks.saturating_mul(s.f_frsize),
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
        let policy = self.options.disk;
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

    /// The memory self-check: `memory_high` while the broker uses
    /// `memory_high_percent` of its memory limit (`limits.memory_max`, else
    /// its cgroup's, else the machine's), cleared five points under it. While
    /// it is up, new NATS, MQTT and WebSocket connections are refused (the
    /// clients already connected go on).
    pub fn check_memory(&self) {
        let policy = self.options.self_checks;
        if policy.memory_high_percent == 0 {
            return;
        }
        let Some((used, limit)) = memory_use(policy.memory_max) else {
            return;
        };
        let percent = 100.0 * used as f64 / limit.max(1) as f64;
        let mark = f64::from(policy.memory_high_percent);
        let raised = self.alarms.raised.lock().contains_key("memory_high");
        if percent >= mark {
            self.alarms.memory_pressure.store(true, Ordering::Release);
            self.raise_alarm(
                "memory_high",
                &format!(
                    "the broker uses {percent:.1}% of its memory limit ({used} of {limit} bytes); new connections are refused"
                ),
            );
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
        let max = self.options.self_checks.consumer_lag_alarm;
        if max == 0 {
            return;
        }
        let mut seen = std::collections::HashSet::new();
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
                let lag = group.state(&station).num_pending;
                let name = format!(
                    "consumer_lag:{}/{}/{}",
                    station.tenant.0,
                    station.name(),
                    group_name
                );
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
            .filter(|k| k.starts_with("consumer_lag:") && !seen.contains(*k))
            .cloned()
            .collect();
        for name in stale {
            self.clear_alarm(&name);
        }
    }
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
}

impl Default for SelfChecks {
    fn default() -> Self {
        SelfChecks {
            memory_max: None,
            memory_high_percent: 90,
            consumer_lag_alarm: 1_000_000,
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
            total,
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
}

/// Alarms raised by self-checks other than the disk fence (a TLS certificate
/// that expires soon), by name: each fires once as an event and clears once,
/// as EMQX's alarms do, and shows in `/metrics` while raised.
#[derive(Debug, Default)]
pub(crate) struct Alarms {
    raised: Mutex<std::collections::BTreeMap<String, String>>,
    /// `memory_high` is up: new connections are refused.
    memory_pressure: AtomicBool,
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
