//! A tenant's storage limits (`[[tenants]] jetstream = { max_file, max_memory }`),
//! as nats-server's un-tiered account limits are kept.
//!
//! Two checks, one per moment:
//! - **Defining a station** (create or update, whatever the protocol): the
//!   station reserves its `max_bytes` (1 byte when unlimited) times its
//!   replicas; with what the tenant's other stations of the same storage kind
//!   reserve (their `max_bytes` times replicas; unlimited ones reserve
//!   nothing), it must fit the limit, or [`TenantLimit::FileStorage`] /
//!   [`TenantLimit::MemoryStorage`] (nats-server's `checkBytesLimits`).
//! - **Storing a message**: the bytes the tenant's stations of that storage
//!   kind hold, plus the message (times the station's replicas), must fit the
//!   limit, or [`EngineError::TenantStorageFull`] (nats-server's
//!   `wouldExceedLimits`). The message is not stored; nothing stored is
//!   dropped for it.
//!
//! The broker's own stations (`$…`) count for neither.
//!
//! The cost on the publish path: while no tenant has a storage limit, one
//! atomic load per stored message; a tenant without one, once another tenant
//! has one, one lookup of its limits ([`StationEngine::limits_of`]).
//! A tenant with one pays a compare-and-swap on a per-tenant counter and, at
//! most every [`REFRESH`], a sum over its stations (one short lock each). The
//! counter is the sum at its last refresh plus what was admitted since; a
//! refresh replaces it with the stations' own figures, which also brings in
//! what they dropped (retention, purges, deletes). So a refresh that runs while
//! publishes are between admission here and their append can miss them: the
//! overshoot is bounded by the publishes in flight, as nats-server's is by its
//! asynchronously updated usage. A message its station then does not store (a
//! duplicate, or refused for its own limits) stays counted until the next
//! refresh. In a cluster, stations held by other nodes
//! count with the size their node last reported.

use super::StationEngine;
use super::ingress::is_internal_station;
use super::station::{Station, accounted_size};
use ahash::AHashMap;
use junction_api::{EngineError, Message, StationConfig, StorageKind, TenantId, TenantLimit};
use parking_lot::{Mutex, RwLock};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How old a tenant's counted usage may grow before it is summed again.
const REFRESH: Duration = Duration::from_millis(100);

/// Least time between two log lines about one tenant's refused messages.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// Stored bytes per tenant that has a storage limit, counted for the publish
/// check; and the refusals since start.
pub(crate) struct StorageUsage {
    start: Instant,
    tenants: RwLock<AHashMap<TenantId, Arc<TenantUsage>>>,
    refused: AtomicU64,
}

/// One tenant's stored bytes: `[file, memory]`.
#[derive(Default)]
struct TenantUsage {
    bytes: [AtomicU64; 2],
    /// Milliseconds since [`StorageUsage::start`] of the last refresh, plus 1
    /// (0: never refreshed).
    refreshed_ms: AtomicU64,
    /// Held by the one refresh running.
    refreshing: Mutex<()>,
    /// Like `refreshed_ms`, for the last log line about a refusal.
    warned_ms: AtomicU64,
}

impl StorageUsage {
    pub fn new() -> Self {
        StorageUsage {
            start: Instant::now(),
            tenants: RwLock::new(AHashMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Messages not stored since start because their tenant's storage was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn of(&self, tenant: &TenantId) -> Arc<TenantUsage> {
        if let Some(u) = self.tenants.read().get(tenant) {
            return u.clone();
        }
        self.tenants
            .write()
            .entry(tenant.clone())
            .or_default()
            .clone()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }
}

/// The slot of `kind` in [`TenantUsage::bytes`], the limit that applies and
/// what it is called.
fn limit_for(limits: &super::TenantLimits, kind: StorageKind) -> (usize, Option<u64>, TenantLimit) {
    match kind {
        StorageKind::Memory => (1, limits.max_memory, TenantLimit::MemoryStorage),
        _ => (0, limits.max_file, TenantLimit::FileStorage),
    }
}

/// What a station already defined reserves: `max_bytes` times its replicas
/// (nothing when unlimited).
fn reservation(config: &StationConfig) -> u64 {
    match u64::try_from(config.max_bytes) {
        Ok(b) if b > 0 => b.saturating_mul(u64::from(config.replicas.max(1))),
        _ => 0,
    }
}

/// What a station being defined asks for: `max_bytes` (1 byte when unlimited,
/// as nats-server's `checkBytesLimits`) times its replicas.
fn footprint(config: &StationConfig) -> u64 {
    u64::try_from(config.max_bytes)
        .unwrap_or(0)
        .max(1)
        .saturating_mul(u64::from(config.replicas.max(1)))
}

impl StationEngine {
    /// Refuses a station definition (new or changed) whose `max_bytes` does not
    /// fit its tenant's `max_file` / `max_memory` beside what the tenant's other
    /// stations of that storage kind reserve.
    pub(crate) fn check_storage_reservation(
        &self,
        tenant: &TenantId,
        config: &StationConfig,
    ) -> Result<(), EngineError> {
        if is_internal_station(&config.name) {
            return Ok(());
        }
        let Some(limits) = self.limits_of(tenant) else {
            return Ok(());
        };
        let (_, Some(limit), what) = limit_for(&limits, config.storage) else {
            return Ok(());
        };
        let others: u64 = self
            .tenant_station_configs(tenant)
            .iter()
            .filter(|c| c.name != config.name && c.storage == config.storage)
            .map(reservation)
            .fold(0, u64::saturating_add);
        let own = footprint(config);
        if others.saturating_add(own) <= limit {
            return Ok(());
        }
        tracing::info!(
            tenant = %tenant.0,
            station = %config.name,
            limit,
            reserved = others,
            asked = own,
            "station refused: its max_bytes does not fit the tenant's {what}"
        );
        Err(EngineError::TenantLimit {
            what,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        })
    }

    /// Counts `message`, about to be stored in `station`, into its tenant's
    /// stored bytes; refuses it when they would pass the tenant's limit, or
    /// while stored writes are fenced on a nearly full disk (`disk_guard.rs`).
    pub(crate) fn admit_to_tenant_storage(
        &self,
        station: &Station,
        message: &Message,
    ) -> Result<(), EngineError> {
        // The system events station is bounded and small: a storage_full
        // event must still be kept while clients' writes are fenced.
        if let Err(fenced) = self.admit_to_disk()
            && station.name() != junction_api::EVENTS_STATION
        {
            return Err(fenced);
        }
        if let Some(tier) = station.tier() {
            tier.admit(station.name())?;
        }
        if !self.book.storage_limited() {
            return Ok(());
        }
        let Some(limits) = self.limits_of(&station.tenant) else {
            return Ok(());
        };
        if limits.max_file.is_none() && limits.max_memory.is_none() {
            return Ok(());
        }
        if is_internal_station(station.name()) {
            return Ok(());
        }
        let (kind, replicas) = station.storage_and_replicas();
        let (slot, Some(limit), what) = limit_for(&limits, kind) else {
            return Ok(());
        };
        let size = accounted_size(
            message.subject.as_bytes().len(),
            message.headers.as_ref(),
            message.payload.len(),
        )
        .saturating_mul(u64::from(replicas));
        let usage = self.storage_usage.of(&station.tenant);
        let now = self.storage_usage.now_ms();
        let refreshed = usage.refreshed_ms.load(Ordering::Acquire);
        if (refreshed == 0 || now.saturating_sub(refreshed) >= REFRESH.as_millis() as u64)
            && let Some(_refreshing) = usage.refreshing.try_lock()
        {
            let bytes = self.stored_bytes_of(&station.tenant);
            for (counted, now_stored) in usage.bytes.iter().zip(bytes) {
                counted.store(now_stored, Ordering::Release);
            }
            usage.refreshed_ms.store(now, Ordering::Release);
        }
        let admitted =
            usage.bytes[slot].fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.saturating_add(size);
                (after <= limit).then_some(after)
            });
        let Err(used) = admitted else {
            return Ok(());
        };
        self.storage_usage.refused.fetch_add(1, Ordering::Relaxed);
        let warned = usage.warned_ms.load(Ordering::Relaxed);
        if (warned == 0 || now.saturating_sub(warned) >= WARN_EVERY.as_millis() as u64)
            && usage
                .warned_ms
                .compare_exchange(warned, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                tenant = %station.tenant.0,
                station = station.name(),
                limit,
                used,
                size,
                refused_total = self.storage_usage.refused(),
                "message not stored: the tenant's stations would hold more than its {what} (resource limits exceeded for account)"
            );
        }
        Err(EngineError::TenantStorageFull { what, limit })
    }

    /// The definitions of the tenant's stations, here and (in a cluster) on
    /// other nodes, not counting the broker's own.
    fn tenant_station_configs(&self, tenant: &TenantId) -> Vec<StationConfig> {
        let mut configs: Vec<StationConfig> = self
            .stations
            .of_tenant(tenant)
            .iter()
            .map(|s| s.config())
            .collect();
        for remote in self.placed.of_tenant(tenant) {
            if !configs.iter().any(|c| c.name == remote.config.name) {
                configs.push(remote.config.clone());
            }
        }
        configs.retain(|c| !is_internal_station(&c.name));
        configs
    }

    /// The bytes the tenant's stations hold, times their replicas: `[file,
    /// memory]`, not counting the broker's own stations.
    pub(crate) fn stored_bytes_of(&self, tenant: &TenantId) -> [u64; 2] {
        let mut bytes = [0u64; 2];
        let slot = |kind: StorageKind| usize::from(kind == StorageKind::Memory);
        let local = self.stations.of_tenant(tenant);
        for s in &local {
            if is_internal_station(s.name()) {
                continue;
            }
            let (kind, replicas) = s.storage_and_replicas();
            let b = s.stored_bytes().saturating_mul(u64::from(replicas));
            bytes[slot(kind)] = bytes[slot(kind)].saturating_add(b);
        }
        for r in self.placed.of_tenant(tenant) {
            if is_internal_station(&r.config.name)
                || local.iter().any(|s| s.name() == r.config.name)
            {
                continue;
            }
            let b = r
                .stored_bytes()
                .saturating_mul(u64::from(r.config.replicas.max(1)));
            let k = slot(r.config.storage);
            bytes[k] = bytes[k].saturating_add(b);
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn station(max_bytes: i64, replicas: u32) -> StationConfig {
        StationConfig {
            name: "s".into(),
            max_bytes,
            replicas,
            ..Default::default()
        }
    }

    #[test]
    fn replicas_multiply_and_unlimited_stations_reserve_nothing_but_ask_one_byte() {
        assert_eq!(reservation(&station(1000, 1)), 1000);
        assert_eq!(reservation(&station(1000, 3)), 3000);
        assert_eq!(reservation(&station(-1, 3)), 0);
        assert_eq!(reservation(&station(0, 1)), 0);
        assert_eq!(footprint(&station(1000, 5)), 5000);
        assert_eq!(footprint(&station(-1, 1)), 1);
        assert_eq!(footprint(&station(0, 3)), 3);
        // Unset replicas count as one copy.
        assert_eq!(footprint(&station(1000, 0)), 1000);
        assert_eq!(reservation(&station(i64::MAX, 5)), u64::MAX);
    }

    #[test]
    fn each_storage_kind_has_its_own_limit() {
        let limits = super::super::TenantLimits {
            max_file: Some(10),
            max_memory: None,
            ..Default::default()
        };
        assert_eq!(
            limit_for(&limits, StorageKind::File),
            (0, Some(10), TenantLimit::FileStorage)
        );
        assert_eq!(
            limit_for(&limits, StorageKind::Memory),
            (1, None, TenantLimit::MemoryStorage)
        );
    }
}
