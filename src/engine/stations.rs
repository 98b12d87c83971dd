//! The station registry: which stations exist per tenant, which one captures a
//! subject, and their durable definitions.

use super::StationEngine;
use super::group::{self, Group, Terminated, TickOutcome};
use super::station::snapshot::CLEAN_KEY;
use super::station::{Station, filters_of, filters_overlap, now_ns, seq_floor_key};
use ahash::AHashMap;
use bytes::Bytes;
use junction_api::{
    AckKind, AckPolicy, ConfigError, DLS_PREFIX, DeadLetterReason, DeliverPolicy, EngineError,
    FetchRequest, FetchSink, GroupConfig, GroupConfigError, GroupInfo, MessageQuery, Purge,
    Retention, StationConfig, StationInfo, StoredMessage, Subject, SubjectFilter, TenantId,
};
use junction_storage::Store;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most subjects whose capturing station is cached.
const CAPTURE_CACHE_LIMIT: usize = 4096;

#[derive(Serialize, Deserialize)]
struct StationMeta {
    id: u64,
    tenant: String,
    created_ns: u64,
    config: StationConfig,
    /// Written only through a Raft group although `config.replicas` may be 1
    /// (a station that became replicated, or a replicated one brought down to
    /// one copy): it opens replicated, so no write reaches it directly before
    /// its group is back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    replicated: bool,
}

#[derive(Serialize, Deserialize)]
struct GroupMeta {
    created_ns: u64,
    config: GroupConfig,
}

fn group_meta_key(station_id: u64, name: &str) -> String {
    format!("group/{station_id}/{name}")
}

fn nanos_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[derive(Default)]
struct TenantStations {
    by_name: BTreeMap<String, Arc<Station>>,
    capture: AHashMap<Bytes, Option<Arc<Station>>>,
}

/// Every station, by tenant.
pub(crate) struct StationRegistry {
    store: Store,
    tenants: RwLock<AHashMap<TenantId, TenantStations>>,
    any: AtomicBool,
    next_id: AtomicU64,
    /// This run's boot id, written into the snapshots at clean shutdown.
    boot: u64,
    /// The remote tier, when the broker has a `[tier]` bucket.
    tier: std::sync::OnceLock<Arc<junction_storage::tier::Remote>>,
    /// Acks sampled by their groups' `sample_freq`, published as ack metrics
    /// by the engine's next tick (never from inside an ack).
    pub(crate) ack_samples: parking_lot::Mutex<Vec<super::group::AckSample>>,
    /// Ephemeral groups removed for inactivity since the last tick: (tenant,
    /// station, group), for their consumer-deleted advisories.
    pub(crate) expired_groups: parking_lot::Mutex<Vec<(TenantId, String, String)>>,
    /// Groups whose `pause_until` passed since the last tick, with it: the
    /// pause advisory nats-server sends when a pause runs out.
    pub(crate) pauses_ended: parking_lot::Mutex<Vec<(TenantId, String, String, SystemTime)>>,
}

fn meta_key(tenant: &TenantId, name: &str) -> String {
    format!("station/{}/{name}", tenant.0)
}

/// Longest station or consumer-group name, in bytes (nats-server's `JSMaxNameLen`).
pub(crate) const MAX_NAME_LEN: usize = 255;

/// Checks a station or group name; `what` is "stream" or "consumer" (the NATS layer
/// passes these texts through as nats-server words them).
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} name is required"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{what} name is too long, maximum allowed is {MAX_NAME_LEN}"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} name can not contain control characters"));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "{what} name can not contain whitespace, '.', '*', '>', path separators"
        ));
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), EngineError> {
    check_name("stream", name).map_err(EngineError::invalid_config)
}

/// A count or size limit: -1 (or 0, which means the same) is unlimited; other
/// negative values are refused rather than read as unlimited.
pub(crate) fn check_limit(what: &str, value: i64) -> Result<(), String> {
    if value < -1 {
        return Err(format!(
            "{what} must be -1 (unlimited) or a positive number, not {value}"
        ));
    }
    Ok(())
}

pub(crate) fn normalize(mut config: StationConfig) -> Result<StationConfig, EngineError> {
    validate_name(&config.name)?;
    if config.replicas == 0 {
        config.replicas = 1;
    }
    super::replicated::check_replicated(&config)?;
    config.duplicate_window = config.effective_duplicate_window();
    for (what, v) in [
        ("max_msgs", &mut config.max_msgs),
        ("max_bytes", &mut config.max_bytes),
        ("max_msgs_per_subject", &mut config.max_msgs_per_subject),
        ("max_msg_size", &mut config.max_msg_size),
        ("max_consumers", &mut config.max_consumers),
    ] {
        check_limit(what, *v).map_err(EngineError::invalid_config)?;
        *v = StationConfig::limit(*v).unwrap_or(*v);
    }
    // A sealed station takes nothing more in and lets nothing out (as
    // nats-server adjusts a sealed stream's configuration).
    if config.sealed {
        config.max_age = Duration::ZERO;
        config.discard = junction_api::Discard::New;
        config.deny_delete = true;
        config.deny_purge = true;
        config.allow_rollup = false;
    }
    super::republish::check(&mut config)?;
    if let Some(t) = &config.subject_transform {
        junction_api::CompiledTransform::new(&t.source, &t.destination)
            .map_err(|e| EngineError::invalid_config(format!("stream transform: {e}")))?;
    }
    let filters = filters_of(&config)?;
    // Literal subjects overlap only when equal (a set finds that); only filters
    // with wildcards need comparing with every other one. A station of 10,000
    // literal subjects is checked in linear time, not 50 million comparisons.
    let mut literals = std::collections::HashSet::new();
    let mut duplicate = false;
    for f in filters.iter().filter(|f| f.is_literal()) {
        duplicate |= !literals.insert(f.as_bytes());
    }
    if duplicate {
        return Err(EngineError::InvalidConfig(ConfigError::DuplicateSubjects));
    }
    let (literal, wildcards): (Vec<&SubjectFilter>, Vec<&SubjectFilter>) =
        filters.iter().partition(|f| f.is_literal());
    for (i, a) in wildcards.iter().enumerate() {
        for b in literal.iter().chain(&wildcards[i + 1..]) {
            if filters_overlap(a, b) {
                return Err(EngineError::InvalidConfig(ConfigError::DuplicateSubjects));
            }
        }
    }
    Ok(config)
}

impl StationRegistry {
    /// The store every station writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Loads every station stored in `store`.
    pub fn load(store: Store) -> Result<Self, EngineError> {
        let registry = StationRegistry {
            tier: std::sync::OnceLock::new(),
            store: store.clone(),
            tenants: RwLock::new(AHashMap::new()),
            any: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            boot: rand::random::<u64>() | 1,
            ack_samples: parking_lot::Mutex::new(Vec::new()),
            expired_groups: parking_lot::Mutex::new(Vec::new()),
            pauses_ended: parking_lot::Mutex::new(Vec::new()),
        };
        // Snapshots are trusted only by the first start after the clean shutdown
        // that wrote them: the marker goes before anything else is written, so a
        // crash from here on means a full scan next time.
        let clean_boot = store
            .get_meta(CLEAN_KEY)
            .map_err(|e| EngineError::Storage(e.to_string()))?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok());
        if clean_boot.is_some() {
            store
                .remove_meta(CLEAN_KEY)
                .map_err(|e| EngineError::Storage(e.to_string()))?;
            tracing::info!("clean-shutdown snapshot found: station indexes load from it");
        } else {
            tracing::info!(
                "no clean-shutdown snapshot: station indexes are rebuilt from their logs"
            );
        }
        let metas = store
            .list_meta("station/")
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        let mut max_id = 0;
        for (key, value) in metas {
            let meta: StationMeta = serde_json::from_slice(&value).map_err(|e| {
                EngineError::Storage(format!("unreadable station definition {key}: {e}"))
            })?;
            max_id = max_id.max(meta.id);
            let tenant = TenantId(Arc::from(meta.tenant.as_str()));
            let floor = store
                .get_meta(&seq_floor_key(meta.id))
                .map_err(|e| EngineError::Storage(e.to_string()))?
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let station = Station::new(
                meta.id,
                tenant.clone(),
                UNIX_EPOCH + Duration::from_nanos(meta.created_ns),
                meta.config,
                store.clone(),
            )?;
            if meta.replicated {
                station.set_replicated();
            }
            station.recover(floor, clean_boot)?;
            for (gkey, gvalue) in store
                .list_meta(&format!("group/{}/", meta.id))
                .map_err(|e| EngineError::Storage(e.to_string()))?
            {
                let gm: GroupMeta = serde_json::from_slice(&gvalue).map_err(|e| {
                    EngineError::Storage(format!("unreadable group definition {gkey}: {e}"))
                })?;
                let g = Group::recover(
                    gm.config,
                    UNIX_EPOCH + Duration::from_nanos(gm.created_ns),
                    &station,
                    store.clone(),
                )?;
                station.groups.write().insert(g.name.clone(), Arc::new(g));
            }
            // Sequences are never handed out twice, also when the messages a
            // group saw were consumed and deleted before a crash. (A replicated
            // station's sequences come from its Raft log, and a replica's group
            // position may run ahead of what it has applied: left alone.)
            let seen = station
                .groups
                .read()
                .values()
                .map(|g| g.highest_seen())
                .max()
                .unwrap_or(0);
            if !meta.replicated {
                station.raise_last_seq(seen, "its consumer groups' saved positions");
            }
            tracing::info!(
                station = station.name(),
                messages = station.state().messages,
                last_seq = station.last_seq(),
                "recovered station"
            );
            registry
                .tenants
                .write()
                .entry(tenant)
                .or_default()
                .by_name
                .insert(station.name().to_string(), Arc::new(station));
            registry.any.store(true, Ordering::Relaxed);
        }
        registry.next_id.store(max_id + 1, Ordering::Relaxed);
        Ok(registry)
    }

    /// The station capturing `subject`, if any.
    pub fn capture(&self, tenant: &TenantId, subject: &Subject) -> Option<Arc<Station>> {
        if !self.any.load(Ordering::Relaxed) || junction_api::is_never_stored(subject.as_bytes()) {
            return None;
        }
        {
            let tenants = self.tenants.read();
            let t = tenants.get(tenant)?;
            if let Some(hit) = t.capture.get(subject.as_bytes()) {
                return hit.clone();
            }
        }
        let mut tenants = self.tenants.write();
        let t = tenants.get_mut(tenant)?;
        let found = t.by_name.values().find(|s| s.captures(subject)).cloned();
        if t.capture.len() >= CAPTURE_CACHE_LIMIT {
            t.capture.clear();
        }
        t.capture.insert(subject.bytes().clone(), found.clone());
        found
    }

    pub fn get(&self, tenant: &TenantId, name: &str) -> Result<Arc<Station>, EngineError> {
        self.tenants
            .read()
            .get(tenant)
            .and_then(|t| t.by_name.get(name).cloned())
            .ok_or(EngineError::StationNotFound)
    }

    /// Every station of `tenant`.
    pub fn of_tenant(&self, tenant: &TenantId) -> Vec<Arc<Station>> {
        self.tenants
            .read()
            .get(tenant)
            .map(|t| t.by_name.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Gives every station the remote tier and starts the uploader (once, at
    /// start, before clients connect).
    pub fn set_tier(
        self: &Arc<Self>,
        remote: Arc<junction_storage::tier::Remote>,
    ) -> Result<(), EngineError> {
        if self.tier.set(remote.clone()).is_err() {
            return Ok(());
        }
        for station in self.all() {
            station.attach_tier(remote.clone(), true)?;
        }
        super::tier::start(self, &remote);
        Ok(())
    }

    /// The remote tier, when configured.
    pub fn tier(&self) -> Option<&Arc<junction_storage::tier::Remote>> {
        self.tier.get()
    }

    /// The tenants that have a station named `name`.
    pub fn tenants_with(&self, name: &str) -> Vec<TenantId> {
        self.tenants
            .read()
            .iter()
            .filter(|(_, t)| t.by_name.contains_key(name))
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn all(&self) -> Vec<Arc<Station>> {
        self.tenants
            .read()
            .values()
            .flat_map(|t| t.by_name.values().cloned())
            .collect()
    }

    fn check_overlap(
        t: &TenantStations,
        name: &str,
        filters: &[SubjectFilter],
    ) -> Result<(), EngineError> {
        // Dead-letter stations capture `$dls.<station>.>`, which only a station
        // capturing `>` or `$dls.…` could overlap; they never take part.
        if name.starts_with(DLS_PREFIX) {
            return Ok(());
        }
        for other in t
            .by_name
            .values()
            .filter(|s| s.name() != name && !s.name().starts_with(DLS_PREFIX))
        {
            for a in &other.filters() {
                if filters.iter().any(|b| filters_overlap(a, b)) {
                    return Err(EngineError::SubjectsOverlap);
                }
            }
        }
        Ok(())
    }

    fn persist(&self, station: &Station, config: &StationConfig) -> Result<(), EngineError> {
        let meta = StationMeta {
            id: station.id,
            tenant: station.tenant.0.to_string(),
            created_ns: station
                .created
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            config: config.clone(),
            replicated: station.is_replicated(),
        };
        let json = serde_json::to_vec(&meta).map_err(|e| EngineError::Storage(e.to_string()))?;
        self.store
            .put_meta(&meta_key(&station.tenant, station.name()), &json)
            .map_err(|e| EngineError::Storage(e.to_string()))
    }

    pub fn create(
        &self,
        tenant: &TenantId,
        config: StationConfig,
    ) -> Result<Arc<Station>, EngineError> {
        let config = normalize(config)?;
        let filters = filters_of(&config)?;
        let mut tenants = self.tenants.write();
        let t = tenants.entry(tenant.clone()).or_default();
        if let Some(existing) = t.by_name.get(&config.name) {
            return if existing.config() == config {
                Ok(existing.clone())
            } else {
                Err(EngineError::StationNameInUse)
            };
        }
        Self::check_overlap(t, &config.name, &filters)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let station = Arc::new(Station::new(
            id,
            tenant.clone(),
            SystemTime::now(),
            config.clone(),
            self.store.clone(),
        )?);
        if let Some(remote) = self.tier.get() {
            station.attach_tier(remote.clone(), false)?;
        }
        self.persist(&station, &config)?;
        t.by_name.insert(config.name.clone(), station.clone());
        t.capture.clear();
        self.any.store(true, Ordering::Relaxed);
        tracing::info!(station = %config.name, subjects = ?config.subjects, "station created");
        Ok(station)
    }

    /// Creates or updates the dead-letter station of `parent` to match its policy.
    pub fn ensure_dead_letter(
        &self,
        tenant: &TenantId,
        parent: &StationConfig,
    ) -> Result<Arc<Station>, EngineError> {
        let config = dead_letter_config(parent);
        match self.create(tenant, config.clone()) {
            Err(EngineError::StationNameInUse) => self.update(tenant, config),
            other => other,
        }
    }

    pub fn update(
        &self,
        tenant: &TenantId,
        config: StationConfig,
    ) -> Result<Arc<Station>, EngineError> {
        let config = normalize(config)?;
        let filters = filters_of(&config)?;
        let mut tenants = self.tenants.write();
        let t = tenants
            .get_mut(tenant)
            .ok_or(EngineError::StationNotFound)?;
        let station = t
            .by_name
            .get(&config.name)
            .cloned()
            .ok_or(EngineError::StationNotFound)?;
        let old = station.config();
        if old.storage != config.storage {
            return Err(EngineError::InvalidConfig(ConfigError::StorageChange));
        }
        if old.retention != config.retention {
            return Err(EngineError::InvalidConfig(ConfigError::RetentionChange));
        }
        if old.sealed && !config.sealed {
            return Err(EngineError::InvalidConfig(ConfigError::Invalid(
                "stream configuration update can not unseal a sealed stream".into(),
            )));
        }
        Self::check_overlap(t, &config.name, &filters)?;
        self.persist(&station, &config)?;
        station.set_config(config)?;
        t.capture.clear();
        Ok(station)
    }

    /// `station` is written only through its Raft group from now on, also
    /// after a restart (see [`Station::set_replicated`]).
    pub fn mark_replicated(&self, station: &Station) -> Result<(), EngineError> {
        if station.is_replicated() && station.config().replicas > 1 {
            return Ok(());
        }
        station.set_replicated();
        self.persist(station, &station.config())
    }

    pub fn delete(&self, tenant: &TenantId, name: &str) -> Result<(), EngineError> {
        let station = {
            let mut tenants = self.tenants.write();
            let t = tenants
                .get_mut(tenant)
                .ok_or(EngineError::StationNotFound)?;
            let station = t.by_name.remove(name).ok_or(EngineError::StationNotFound)?;
            t.capture.clear();
            station
        };
        self.store
            .remove_meta(&meta_key(tenant, name))
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        let groups: Vec<Arc<Group>> = station.groups.write().drain().map(|(_, g)| g).collect();
        for g in groups {
            g.close(true);
            let _ = self.store.remove_meta(&group_meta_key(station.id, &g.name));
        }
        station.destroy()?;
        tracing::info!(station = name, "station deleted");
        Ok(())
    }

    pub fn names(&self, tenant: &TenantId, subject: Option<&str>) -> Vec<String> {
        let tenants = self.tenants.read();
        let Some(t) = tenants.get(tenant) else {
            return Vec::new();
        };
        let filter = subject.and_then(|s| SubjectFilter::new(s.to_string()).ok());
        t.by_name
            .values()
            .filter(|s| match &filter {
                None => subject.is_none(),
                Some(f) => s.filters().iter().any(|g| filters_overlap(f, g)),
            })
            .map(|s| s.name().to_string())
            .collect()
    }

    pub fn create_group(
        &self,
        tenant: &TenantId,
        station_name: &str,
        config: GroupConfig,
    ) -> Result<(Arc<Station>, Arc<Group>), EngineError> {
        let station = self.get(tenant, station_name)?;
        let config = group::normalize(config)?;
        let station_config = station.config();
        let mut groups = station.groups.write();
        if let Some(existing) = groups.get(&config.name) {
            return if existing.config() == config {
                Ok((station.clone(), existing.clone()))
            } else {
                Err(EngineError::GroupExists)
            };
        }
        if station_config.max_consumers > 0 && groups.len() as i64 >= station_config.max_consumers {
            return Err(EngineError::MaxGroups);
        }
        if station_config.retention == Retention::WorkQueue {
            // As nats-server checks; typed, so that the NATS layer can give each its
            // own error code.
            if config.ack_policy != AckPolicy::Explicit {
                return Err(EngineError::InvalidGroupConfig(
                    GroupConfigError::WorkQueueNeedsExplicitAck,
                ));
            }
            let mine: Vec<SubjectFilter> = config
                .filter_subjects
                .iter()
                .filter_map(|f| SubjectFilter::new(f.clone()).ok())
                .collect();
            if mine.is_empty() && !groups.is_empty() {
                return Err(EngineError::InvalidGroupConfig(
                    GroupConfigError::WorkQueueUnfilteredNotAlone,
                ));
            }
            for other in groups.values() {
                let theirs = other.filters();
                let overlap = theirs.is_empty()
                    || mine
                        .iter()
                        .any(|a| theirs.iter().any(|b| filters_overlap(a, b)));
                if overlap {
                    return Err(EngineError::InvalidGroupConfig(
                        GroupConfigError::WorkQueueFilterNotUnique,
                    ));
                }
            }
            if config.deliver_policy != DeliverPolicy::All {
                return Err(EngineError::InvalidGroupConfig(
                    GroupConfigError::WorkQueueNotDeliverAll,
                ));
            }
        }
        let group = Arc::new(Group::create(config.clone(), &station, self.store.clone())?);
        if config.durable {
            let meta = GroupMeta {
                created_ns: nanos_since_epoch(group.created),
                config,
            };
            let json =
                serde_json::to_vec(&meta).map_err(|e| EngineError::Storage(e.to_string()))?;
            self.store
                .put_meta(&group_meta_key(station.id, &group.name), &json)
                .map_err(|e| EngineError::Storage(e.to_string()))?;
            group.save(true)?;
        }
        groups.insert(group.name.clone(), group.clone());
        drop(groups);
        tracing::info!(station = station_name, group = %group.name, "consumer group created");
        Ok((station, group))
    }

    pub fn group(
        &self,
        tenant: &TenantId,
        station_name: &str,
        name: &str,
    ) -> Result<(Arc<Station>, Arc<Group>), EngineError> {
        let station = self.get(tenant, station_name)?;
        let group = station
            .groups
            .read()
            .get(name)
            .cloned()
            .ok_or(EngineError::GroupNotFound)?;
        Ok((station, group))
    }

    /// Changes a group's definition in place (what [`group::check_update`]
    /// allows); its position and pending deliveries are kept.
    pub fn update_group(
        &self,
        tenant: &TenantId,
        station_name: &str,
        config: GroupConfig,
    ) -> Result<(Arc<Station>, Arc<Group>), EngineError> {
        let config = group::normalize(config)?;
        let (station, group) = self.group(tenant, station_name, &config.name)?;
        let old = group.config();
        if old == config {
            return Ok((station, group));
        }
        group::check_update(&old, &config)?;
        if config.durable {
            let meta = GroupMeta {
                created_ns: nanos_since_epoch(group.created),
                config: config.clone(),
            };
            let json =
                serde_json::to_vec(&meta).map_err(|e| EngineError::Storage(e.to_string()))?;
            self.store
                .put_meta(&group_meta_key(station.id, &group.name), &json)
                .map_err(|e| EngineError::Storage(e.to_string()))?;
        }
        group.update(config);
        group.fill(&station);
        tracing::info!(station = station_name, group = %group.name, "consumer group updated");
        Ok((station, group))
    }

    pub fn delete_group(
        &self,
        tenant: &TenantId,
        station_name: &str,
        name: &str,
    ) -> Result<(), EngineError> {
        let station = self.get(tenant, station_name)?;
        let group = station
            .groups
            .write()
            .remove(name)
            .ok_or(EngineError::GroupNotFound)?;
        group.close(true);
        self.store
            .remove_meta(&group_meta_key(station.id, name))
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        self.release_consumed(&station, &group);
        Ok(())
    }

    /// Interest retention: once a group goes, messages only it held back may go too.
    fn release_consumed(&self, station: &Station, gone: &Group) {
        if station.retention() != Retention::Interest {
            return;
        }
        if station.is_replicated() {
            // Only its leader decides, through the log.
            if let Some(r) = station.replica.get().filter(|r| r.is_leader()) {
                let seqs = consumed_after(station, Some(gone));
                if !seqs.is_empty() {
                    let wait = super::replicated::propose_consumed(r, station.name(), seqs);
                    super::replicated::spawn_logged(station.name(), "consumed messages", wait);
                }
            }
            return;
        }
        for seq in consumed_after(station, Some(gone)) {
            station.remove_consumed(seq);
        }
    }

    /// Clean shutdown: waits for the storage writer to drain, then writes every file
    /// station's index snapshot and the clean-shutdown marker in one fsynced batch,
    /// so the next start loads them instead of scanning every log.
    pub fn save_snapshots(&self) -> Result<(), EngineError> {
        if self.store.is_poisoned() {
            return Ok(());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        self.store.append(
            0,
            Vec::new(),
            junction_storage::Durability::Sync,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        match rx.recv() {
            Ok(r) => r.map_err(|e| EngineError::Storage(e.to_string()))?,
            Err(_) => return Err(EngineError::Storage("storage writer stopped".into())),
        }
        let mut puts: Vec<(String, Vec<u8>)> = self
            .all()
            .iter()
            .filter_map(|s| s.snapshot(self.boot))
            .collect();
        puts.push((CLEAN_KEY.to_string(), self.boot.to_string().into_bytes()));
        self.store
            .write_meta_batch(&puts, &[])
            .map_err(|e| EngineError::Storage(e.to_string()))
    }

    /// Applies an ack; a terminated delivery is returned (with the message, read
    /// before retention may remove it, when the station dead-letters terminations).
    pub fn ack(
        &self,
        tenant: &TenantId,
        station_name: &str,
        name: &str,
        seq: u64,
        kind: AckKind,
    ) -> Result<Option<GaveUp>, EngineError> {
        let (gave_up, wait) = self.ack_with(tenant, station_name, name, seq, kind, false)?;
        if let Some(wait) = wait {
            super::replicated::spawn_logged(station_name, "consumed messages", wait);
        }
        Ok(gave_up)
    }

    /// [`Self::ack`], and on a replicated station's leader the wait for what the
    /// ack proposed: the messages it consumed (work-queue, interest retention)
    /// and, with `commit`, the durable group's new position, so that once the
    /// wait is over the message is never delivered again by any leader.
    pub fn ack_with(
        &self,
        tenant: &TenantId,
        station_name: &str,
        name: &str,
        seq: u64,
        kind: AckKind,
        commit: bool,
    ) -> Result<(Option<GaveUp>, Option<ReplicaWait>), EngineError> {
        let (station, group) = self.group(tenant, station_name, name)?;
        if commit
            && station.is_replicated()
            && !station.replica.get().is_some_and(|r| r.is_leader())
        {
            // Only the leader's groups count; this copy follows it.
            return Err(EngineError::ReplicasUnavailable(format!(
                "station '{station_name}': this node no longer leads it; the ack was not applied"
            )));
        }
        // On a replicated station an ack may name a message an earlier leader
        // delivered; never one past the last sequence (a made-up ack token).
        let ahead_ok = station.is_replicated() && seq <= station.last_seq();
        let outcome = group.ack(seq, &kind, ahead_ok);
        if let Some(mut sample) = outcome.sample {
            sample.tenant = tenant.clone();
            sample.station = station_name.to_string();
            sample.group = name.to_string();
            let mut samples = self.ack_samples.lock();
            // Bounded: a tick drains them every ~50 ms.
            if samples.len() < 100_000 {
                samples.push(sample);
            }
        }
        let gave_up = outcome.terminated.map(|t: Terminated| {
            tracing::info!(
                station = station_name,
                group = name,
                seq = t.seq,
                deliveries = t.deliveries,
                reason = t.reason.as_deref().unwrap_or(""),
                "message terminated"
            );
            GaveUp::new(&station, name, DeadLetterReason::Terminated, &t)
        });
        let consumed: Vec<u64> = match station.retention() {
            Retention::WorkQueue => outcome.done,
            Retention::Interest => {
                let groups: Vec<Arc<Group>> = station.groups.read().values().cloned().collect();
                outcome
                    .done
                    .into_iter()
                    .filter(|seq| {
                        station.subject_of(*seq).is_some_and(|subject| {
                            groups.iter().all(|g| g.done_with(*seq, &subject))
                        })
                    })
                    .collect()
            }
            Retention::Limits => Vec::new(),
        };
        let mut waits: Vec<ReplicaWait> = consume(&station, consumed).into_iter().collect();
        if commit
            && group.durable()
            && let Some(r) = station.replica.get().filter(|r| r.is_leader())
            && let Some(position) = group.save(true)?
        {
            waits.push(super::replicated::propose_position_wait(
                r,
                station.name(),
                &group.name,
                position,
            ));
        }
        group.fill(&station);
        let wait: Option<ReplicaWait> = match waits.len() {
            0 => None,
            _ => Some(Box::pin(async move {
                futures::future::try_join_all(waits).await.map(|_| ())
            })),
        };
        Ok((gave_up, wait))
    }

    pub fn fetch(
        &self,
        tenant: &TenantId,
        station_name: &str,
        name: &str,
        request: FetchRequest,
        sink: Arc<dyn FetchSink>,
    ) -> Result<(), EngineError> {
        let (station, group) = self.group(tenant, station_name, name)?;
        group.fetch(&station, request, sink);
        Ok(())
    }

    /// Runs every group's timers, saves changed positions, and removes idle
    /// ephemeral groups. Returns the messages groups gave up on.
    pub fn tick_groups(&self) -> Vec<GaveUp> {
        let now = std::time::Instant::now();
        let mut gave_up = Vec::new();
        for station in self.all() {
            let groups: Vec<Arc<Group>> = station.groups.read().values().cloned().collect();
            for g in groups {
                self.tick_group(&station, &g, now, true, &mut gave_up);
            }
        }
        gave_up
    }

    /// Runs one group's timers now (a pull request is about to expire).
    pub fn tick_one(&self, tenant: &TenantId, station_name: &str, name: &str) -> Vec<GaveUp> {
        let mut gave_up = Vec::new();
        if let Ok((station, group)) = self.group(tenant, station_name, name) {
            self.tick_group(
                &station,
                &group,
                std::time::Instant::now(),
                false,
                &mut gave_up,
            );
        }
        gave_up
    }

    fn tick_group(
        &self,
        station: &Arc<Station>,
        g: &Arc<Group>,
        now: std::time::Instant,
        housekeeping: bool,
        gave_up: &mut Vec<GaveUp>,
    ) {
        let (exhausted, outcome) = g.tick(now);
        // Announced by the node that delivers (a replicated station's leader).
        if housekeeping
            && (!station.is_replicated() || station.replica.get().is_some_and(|r| r.is_leader()))
            && let Some(until) = g.pause_ended()
        {
            self.pauses_ended.lock().push((
                station.tenant.clone(),
                station.name().to_string(),
                g.name.clone(),
                until,
            ));
        }
        for (seq, deliveries) in exhausted {
            tracing::warn!(
                station = station.name(),
                group = %g.name,
                seq,
                deliveries,
                "message exceeded max deliveries"
            );
            gave_up.push(GaveUp::new(
                station,
                &g.name,
                DeadLetterReason::MaxDeliveries,
                &Terminated {
                    seq,
                    consumer_seq: 0,
                    deliveries,
                    reason: None,
                },
            ));
            if station.retention() == Retention::WorkQueue
                && let Some(wait) = consume(station, vec![seq])
            {
                super::replicated::spawn_logged(station.name(), "consumed messages", wait);
            }
        }
        match outcome {
            TickOutcome::Expired if housekeeping => {
                station.groups.write().remove(&g.name);
                g.close(true);
                tracing::debug!(station = station.name(), group = %g.name, "ephemeral consumer expired");
                self.expired_groups.lock().push((
                    station.tenant.clone(),
                    station.name().to_string(),
                    g.name.clone(),
                ));
                self.release_consumed(station, g);
            }
            _ => {
                if housekeeping && g.durable() {
                    match g.save(false) {
                        Err(e) => {
                            tracing::error!(error = %e, group = %g.name, "cannot save consumer position")
                        }
                        // A replicated station's leader sends the position to
                        // the other replicas through the station's log.
                        Ok(Some(position)) => {
                            if let Some(r) = station.replica.get().filter(|r| r.is_leader()) {
                                super::replicated::propose_position(
                                    r,
                                    station.name(),
                                    &g.name,
                                    position,
                                );
                            }
                        }
                        Ok(None) => {}
                    }
                }
                g.fill(station);
            }
        }
    }

    /// Applies `max_age` to every station.
    pub fn expire_all(&self) {
        let now = now_ns();
        // A replicated station's expiry is an entry of its log (its leader
        // proposes it), never a replica's own clock.
        for station in self.all() {
            if !station.is_replicated() {
                station.expire(now);
            }
        }
    }
}

impl StationRegistry {
    /// One tick of log compaction on every compacted station; returns the
    /// bytes it removed (counted as `max_bytes` counts them).
    pub fn compact_all(&self) -> u64 {
        let now = now_ns();
        let mut bytes = 0;
        for station in self.all() {
            if station.is_replicated() {
                continue;
            }
            match station.compact(now) {
                Ok(c) => bytes += c.bytes,
                Err(e) => {
                    tracing::warn!(station = station.name(), error = %e, "compaction stopped; it is tried again on the next tick")
                }
            }
        }
        bytes
    }
}

/// The configuration of `parent`'s dead-letter station.
pub(crate) fn dead_letter_config(parent: &StationConfig) -> StationConfig {
    let policy = parent.dead_letter;
    StationConfig {
        name: junction_api::dead_letter_station(&parent.name),
        description: Some(format!("dead letters of station '{}'", parent.name)),
        subjects: vec![format!(
            "{}.>",
            junction_api::dead_letter_subject_prefix(&parent.name)
        )],
        max_msgs: policy.max_msgs,
        max_age: policy.max_age,
        storage: parent.storage,
        ..StationConfig::default()
    }
}

/// A message a consumer group gave up on: it exceeded `max_deliver` or was
/// terminated. The dead-letter station and the NATS advisories are fed from it.
pub(crate) struct GaveUp {
    pub tenant: TenantId,
    pub station: String,
    pub group: String,
    pub reason: DeadLetterReason,
    pub seq: u64,
    pub consumer_seq: u64,
    pub deliveries: u32,
    pub term_reason: Option<String>,
    /// The message, read at once (retention may remove it next) when the station
    /// dead-letters this reason.
    pub message: Option<StoredMessage>,
}

impl GaveUp {
    fn new(station: &Station, group: &str, reason: DeadLetterReason, t: &Terminated) -> Self {
        let message = if station.config().dead_letter.captures(reason) {
            station.read_message(t.seq).ok().flatten()
        } else {
            None
        };
        GaveUp {
            tenant: station.tenant.clone(),
            station: station.name().to_string(),
            group: group.to_string(),
            reason,
            seq: t.seq,
            consumer_seq: t.consumer_seq,
            deliveries: t.deliveries,
            term_reason: t.reason.clone(),
            message,
        }
    }
}

impl StationEngine {
    pub(crate) fn group_info_of(&self, station: &Station, group: &Group) -> GroupInfo {
        GroupInfo {
            station: station.name().to_string(),
            config: group.config(),
            created: group.created,
            state: group.state(station),
        }
    }

    /// Runs consumer-group timers; the server calls this about every 50 ms.
    pub fn tick_groups(&self) {
        let gave_up = self.stations.tick_groups();
        self.handle_gave_up(gave_up);
        self.publish_ack_samples();
        let expired = std::mem::take(&mut *self.stations.expired_groups.lock());
        for (tenant, station, group) in expired {
            self.consumer_advisory(&tenant, &station, &group, super::advisories::Action::Delete);
        }
        let ended = std::mem::take(&mut *self.stations.pauses_ended.lock());
        for (tenant, station, group, until) in ended {
            self.pause_advisory(&tenant, &station, &group, Some(until));
        }
        self.check_remote_fetches();
    }

    /// Queues a pull request on a group this node serves.
    pub(crate) fn fetch_local(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
        request: FetchRequest,
        sink: Arc<dyn FetchSink>,
    ) -> Result<(), EngineError> {
        // What a lost peer was delivered goes back first, so that a member
        // asking now (a session resumed here) gets it before newer messages.
        self.release_lost_peers();
        let sink: Arc<dyn FetchSink> = Arc::new(super::lineage::TracedSink::new(
            sink,
            self.lineage.clone(),
            tenant.clone(),
            station,
            group,
        ));
        self.stations
            .fetch(tenant, station, group, request, sink)
            .map_err(|e| self.elsewhere(tenant, station, e))
    }

    pub(crate) fn station_info_of(&self, station: &Station) -> StationInfo {
        let mut info = StationInfo {
            config: station.config(),
            created: station.created,
            state: station.state(),
            node: match station.replica.get() {
                Some(g) => g.leader(),
                None => self.cluster().map(|c| c.node().to_string()),
            },
            replicas: station
                .replica
                .get()
                .map(|g| self.replica_infos(g))
                .unwrap_or_default(),
            mirror: None,
            sources: Vec::new(),
        };
        if let Some((mirror, sources)) = self.sourcing.status(&station.tenant, station.name()) {
            info.mirror = mirror;
            info.sources = sources;
        }
        info
    }

    pub(crate) fn get_message_in(
        &self,
        tenant: &TenantId,
        name: &str,
        query: &MessageQuery,
    ) -> Result<StoredMessage, EngineError> {
        self.stations.get(tenant, name)?.get(query)
    }

    pub(crate) fn purge_in(
        &self,
        tenant: &TenantId,
        name: &str,
        purge: Purge,
    ) -> Result<u64, EngineError> {
        self.stations.get(tenant, name)?.purge(&purge)
    }

    /// Applies `max_age` limits; the server calls this about once a second.
    pub fn expire_stations(&self) {
        self.stations.expire_all();
        self.replica_upkeep();
    }

    /// Runs compacted stations' compaction (about once a second), and gives
    /// the space back once it removed a good share of the store.
    pub fn compact_stations(&self) {
        let bytes = self.stations.compact_all();
        if bytes > 0 {
            self.reclaim_after_compaction(bytes);
        }
    }
}

/// The wait for what a replicated station's leader proposed.
pub(crate) type ReplicaWait = futures::future::BoxFuture<'static, Result<(), EngineError>>;

/// Removes messages consumed under work-queue or interest retention: at once
/// on a station held by one node; through the log on a replicated one (its
/// leader proposes them, and a follower removes nothing on its own clock).
/// Returns the wait for the commit on a replicated station.
fn consume(station: &Station, seqs: Vec<u64>) -> Option<ReplicaWait> {
    if seqs.is_empty() {
        return None;
    }
    if !station.is_replicated() {
        for seq in seqs {
            station.remove_consumed(seq);
        }
        return None;
    }
    let r = station.replica.get().filter(|r| r.is_leader())?;
    Some(super::replicated::propose_consumed(r, station.name(), seqs))
}

/// The stored messages every group is done with under the station's retention:
/// interest, every group (a group not interested in a subject is done with it);
/// work queue, the group whose filter takes it (a message no group takes stays).
pub(crate) fn consumed_now(station: &Station) -> Vec<u64> {
    consumed_after(station, None)
}

/// [`consumed_now`], told that `gone` was just removed from the station: only
/// the messages `gone` held back can have become consumed by its going (a group
/// that leaves makes no other message done, and takes away interest only), so
/// only those are looked at, from the first it was not done with. Without this,
/// ending one of many persistent MQTT sessions (a group each on one station)
/// walked every message against every group.
pub(crate) fn consumed_after(station: &Station, gone: Option<&Group>) -> Vec<u64> {
    let retention = station.retention();
    if retention == Retention::Limits {
        return Vec::new();
    }
    let groups: Vec<Arc<Group>> = station.groups.read().values().cloned().collect();
    let mut out = Vec::new();
    let mut from = gone.map_or(1, Group::first_not_done);
    loop {
        // In chunks: the groups are asked without the station's index held.
        let chunk = station.live_chunk(from, 1024);
        let Some((last, _)) = chunk.last() else { break };
        from = last + 1;
        for (seq, subject) in chunk {
            if gone.is_some_and(|g| g.done_with(seq, &subject)) {
                continue;
            }
            let done = groups.iter().all(|g| g.done_with(seq, &subject));
            let taken = retention == Retention::Interest
                || groups.iter().any(|g| g.interested_in(&subject));
            if done && taken {
                out.push(seq);
            }
        }
    }
    out
}
