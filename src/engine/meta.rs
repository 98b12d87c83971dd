//! The engine's side of the cluster's meta group (`junction_cluster::meta`).
//!
//! Schemas and routing rules are definitions the whole cluster shares: an admin
//! call on any node is checked there, proposed to the meta group (forwarded to its
//! leader), planned against the group's definitions on every node in log order
//! ([`plan`], deterministic: the proposer supplies the time), and each node brings
//! its own registries in line with the planned result ([`StationEngine::reconcile`]).
//! The caller's node answers once it has applied the change itself, so a read on
//! that node right after sees it.
//!
//! Keys in the group: `schema:<tenant>:<name>` (the schema's stored form) and
//! `rule:<tenant>:<name>` (the rule). Definitions this node took from the group
//! are listed under the store's `cluster/managed` key, so that a snapshot that no
//! longer has one removes it here, while what the node had before it joined stays.
//!
//! Stations and groups are not in the group yet: they stay on the node that made
//! them (placement and forwarding come with replicated stations).

use super::StationEngine;
use super::schemas::{self, SchemaRegistry};
use futures::future::BoxFuture;
use junction_api::{
    ConfigError, EngineError, RoutingRule, SchemaFormat, SchemaInfo, StationConfig, StationInfo,
    TenantId,
};
use junction_cluster::meta::{Change, Defs, MetaError, MetaGroup, MetaHost};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An admin call as the meta log carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum MetaCall {
    CreateSchema {
        tenant: String,
        name: String,
        format: String,
        definition: String,
        now_ns: u64,
    },
    AddSchemaVersion {
        tenant: String,
        name: String,
        definition: String,
        now_ns: u64,
    },
    ActivateSchemaVersion {
        tenant: String,
        name: String,
        version: u32,
    },
    DeleteSchema {
        tenant: String,
        name: String,
    },
    PutRoutingRule {
        tenant: String,
        rule: RoutingRule,
    },
    DeleteRoutingRule {
        tenant: String,
        name: String,
    },
    /// A client station, placed on `node` (the node the create came to); a
    /// replicated one on `replicas`, as Raft group `group`.
    CreateStation {
        tenant: String,
        config: StationConfig,
        node: String,
        now_ns: u64,
        #[serde(default)]
        replicas: Vec<String>,
        #[serde(default)]
        members: BTreeMap<String, u64>,
        #[serde(default)]
        group: u64,
    },
    UpdateStation {
        tenant: String,
        config: StationConfig,
    },
    DeleteStation {
        tenant: String,
        name: String,
    },
    /// A replicated station's definition changes together with its number
    /// of replicas (3 ↔ 5): `replicas` are the nodes it should be on from now.
    ResizeStation {
        tenant: String,
        config: StationConfig,
        replicas: Vec<String>,
        members: BTreeMap<String, u64>,
    },
    /// A station of one copy (no group) becomes replicated: group `group` is
    /// seeded on the node that holds it (`replicas[0]`), and the other
    /// `replicas` join it.
    ReplicateStation {
        tenant: String,
        config: StationConfig,
        replicas: Vec<String>,
        members: BTreeMap<String, u64>,
        group: u64,
    },
    /// A tenant made or replaced over the API (its passwords hashed already).
    PutTenant {
        name: String,
        spec: junction_api::TenantSpec,
    },
    /// A tenant made over the API removed.
    DeleteTenant {
        name: String,
    },
    /// A replicated station's replicas change (a replica re-placed, a peer
    /// removed): `replicas` are the nodes it should be on from now.
    SetReplicas {
        tenant: String,
        name: String,
        replicas: Vec<String>,
        members: BTreeMap<String, u64>,
    },
}

/// A station as the meta group holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StationDef {
    pub config: StationConfig,
    /// The node that holds its messages and groups.
    pub node: String,
    /// When it was created (the proposer's clock), in ns since the epoch.
    pub created_ns: u64,
    /// A replicated station's nodes (empty for one copy on `node`).
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Their meta ids (the Raft group's member ids), by name.
    #[serde(default)]
    pub members: BTreeMap<String, u64>,
    /// A replicated station's Raft group id (0: not replicated).
    #[serde(default)]
    pub group: u64,
    /// The replicas it was created on (they initialize its group); empty in
    /// definitions made before replicas could move (then `replicas`).
    #[serde(default)]
    pub founders: Vec<String>,
    /// A replica moved since creation (to another node, or to the same node
    /// under the new id it came back with after its data was wiped): its
    /// group is never initialized again, only joined.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub moved: bool,
    /// Its group was founded by `founders` alone (one node, `node`), from the
    /// copy it held as a station of one copy; the other replicas join as the
    /// leader adds them, and catch up from its first snapshot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seeded: bool,
}

impl StationDef {
    pub fn created(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(self.created_ns)
    }
}

fn station_key(tenant: &str, name: &str) -> String {
    format!("station:{tenant}:{name}")
}

/// Refuses `config` when its subjects overlap another station of `tenant` in
/// `defs`.
fn check_station_overlap(defs: &Defs, tenant: &str, config: &StationConfig) -> Result<(), String> {
    let mine = super::station::filters_of(config).map_err(|e| e.to_string())?;
    let prefix = format!("station:{tenant}:");
    for (k, v) in defs.range(prefix.clone()..) {
        if !k.starts_with(&prefix) {
            break;
        }
        let Ok(other) = serde_json::from_value::<StationDef>(v.clone()) else {
            continue;
        };
        if other.config.name == config.name {
            continue;
        }
        let theirs = super::station::filters_of(&other.config).map_err(|e| e.to_string())?;
        if mine
            .iter()
            .any(|a| theirs.iter().any(|b| super::station::filters_overlap(a, b)))
        {
            return Err(E_SUBJECTS_OVERLAP.into());
        }
    }
    Ok(())
}

const MANAGED: &str = "cluster/managed";

fn schema_key(tenant: &str, name: &str) -> String {
    format!("schema:{tenant}:{name}")
}

fn rule_key(tenant: &str, name: &str) -> String {
    format!("rule:{tenant}:{name}")
}

fn tenant_key(name: &str) -> String {
    format!("tenant:{name}:spec")
}

// Plan errors, mapped back to engine errors on the caller's node.
const E_SCHEMA_EXISTS: &str = "schema already exists";
const E_SCHEMA_NOT_FOUND: &str = "schema not found";
const E_RULE_NOT_FOUND: &str = "routing rule not found";
const E_TENANT_NOT_FOUND: &str = "tenant not found";
const E_STATION_IN_USE: &str = "station name in use";
const E_STATION_NOT_FOUND: &str = "station not found";
const E_SUBJECTS_OVERLAP: &str = "subjects overlap another station";

/// What `call` changes in `defs`, and its answer. The same on every node.
pub(crate) fn plan(defs: &Defs, call: &MetaCall) -> Result<(Vec<Change>, Value), String> {
    let put = |k: String, v: Value| Ok((vec![(k, Some(v))], Value::Null));
    match call {
        MetaCall::CreateSchema {
            tenant,
            name,
            format,
            definition,
            now_ns,
        } => {
            let k = schema_key(tenant, name);
            if defs.contains_key(&k) {
                return Err(E_SCHEMA_EXISTS.into());
            }
            put(
                k,
                schemas::plan_create(tenant, name, format, definition, *now_ns),
            )
        }
        MetaCall::AddSchemaVersion {
            tenant,
            name,
            definition,
            now_ns,
        } => {
            let k = schema_key(tenant, name);
            let cur = defs.get(&k).ok_or(E_SCHEMA_NOT_FOUND)?;
            put(k, schemas::plan_add_version(cur, definition, *now_ns)?)
        }
        MetaCall::ActivateSchemaVersion {
            tenant,
            name,
            version,
        } => {
            let k = schema_key(tenant, name);
            let cur = defs.get(&k).ok_or(E_SCHEMA_NOT_FOUND)?;
            put(
                k,
                schemas::plan_activate(cur, *version).map_err(|_| E_SCHEMA_NOT_FOUND)?,
            )
        }
        MetaCall::DeleteSchema { tenant, name } => {
            let k = schema_key(tenant, name);
            if !defs.contains_key(&k) {
                return Err(E_SCHEMA_NOT_FOUND.into());
            }
            Ok((vec![(k, None)], Value::Null))
        }
        MetaCall::PutRoutingRule { tenant, rule } => put(
            rule_key(tenant, &rule.name),
            serde_json::to_value(rule).map_err(|e| e.to_string())?,
        ),
        MetaCall::DeleteRoutingRule { tenant, name } => {
            let k = rule_key(tenant, name);
            if !defs.contains_key(&k) {
                return Err(E_RULE_NOT_FOUND.into());
            }
            Ok((vec![(k, None)], Value::Null))
        }
        MetaCall::PutTenant { name, spec } => {
            // User names are unique across the tenants made over the API too.
            for (k, v) in defs.range("tenant:".to_string()..) {
                if !k.starts_with("tenant:") {
                    break;
                }
                if *k == tenant_key(name) {
                    continue;
                }
                let Ok(other) = serde_json::from_value::<junction_api::TenantSpec>(v.clone())
                else {
                    continue;
                };
                if let Some(u) = spec
                    .users
                    .iter()
                    .find(|u| other.users.iter().any(|o| o.name() == u.name()))
                {
                    return Err(format!("Duplicate user '{}'", u.name()));
                }
            }
            put(
                tenant_key(name),
                serde_json::to_value(spec).map_err(|e| e.to_string())?,
            )
        }
        MetaCall::DeleteTenant { name } => {
            let k = tenant_key(name);
            if !defs.contains_key(&k) {
                return Err(E_TENANT_NOT_FOUND.into());
            }
            Ok((vec![(k, None)], Value::Null))
        }
        MetaCall::CreateStation {
            tenant,
            config,
            node,
            now_ns,
            replicas,
            members,
            group,
        } => {
            let k = station_key(tenant, &config.name);
            if let Some(v) = defs.get(&k) {
                let old: StationDef =
                    serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
                // The same definition again: the station as it is (idempotent).
                return if old.config == *config {
                    Ok((Vec::new(), v.clone()))
                } else {
                    Err(E_STATION_IN_USE.into())
                };
            }
            check_station_overlap(defs, tenant, config)?;
            if config.replicas > 1
                && (replicas.len() != config.replicas as usize
                    || members.len() != replicas.len()
                    || *group == 0)
            {
                return Err(format!(
                    "replicas: {} asked, {} nodes placed",
                    config.replicas,
                    replicas.len()
                ));
            }
            let def = StationDef {
                config: config.clone(),
                node: node.clone(),
                created_ns: *now_ns,
                replicas: replicas.clone(),
                members: members.clone(),
                group: *group,
                founders: replicas.clone(),
                moved: false,
                seeded: false,
            };
            let v = serde_json::to_value(&def).map_err(|e| e.to_string())?;
            Ok((vec![(k, Some(v.clone()))], v))
        }
        MetaCall::UpdateStation { tenant, config } => {
            let k = station_key(tenant, &config.name);
            let v = defs.get(&k).ok_or(E_STATION_NOT_FOUND)?;
            let mut def: StationDef =
                serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
            check_kept(&def.config, config)?;
            if def.config.replicas != config.replicas {
                return Err(E_REPLICAS_CHANGE.into());
            }
            check_grouped(&def, config)?;
            check_station_overlap(defs, tenant, config)?;
            def.config = config.clone();
            let v = serde_json::to_value(&def).map_err(|e| e.to_string())?;
            Ok((vec![(k, Some(v.clone()))], v))
        }
        MetaCall::ResizeStation {
            tenant,
            config,
            replicas,
            members,
        } => {
            let k = station_key(tenant, &config.name);
            let v = defs.get(&k).ok_or(E_STATION_NOT_FOUND)?;
            let mut def: StationDef =
                serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
            check_kept(&def.config, config)?;
            // A replicated station keeps its group down to one copy (a
            // group of one member), so it can grow again in place.
            if config.replicas == 0 || !placement_fits(&def, config.replicas, replicas, members) {
                return Err(E_REPLICAS_CHANGE.into());
            }
            check_grouped(&def, config)?;
            check_station_overlap(defs, tenant, config)?;
            def.config = config.clone();
            place(&mut def, replicas, members);
            let v = serde_json::to_value(&def).map_err(|e| e.to_string())?;
            Ok((vec![(k, Some(v.clone()))], v))
        }
        MetaCall::ReplicateStation {
            tenant,
            config,
            replicas,
            members,
            group,
        } => {
            let k = station_key(tenant, &config.name);
            let v = defs.get(&k).ok_or(E_STATION_NOT_FOUND)?;
            let mut def: StationDef =
                serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
            check_kept(&def.config, config)?;
            let distinct: BTreeSet<&String> = replicas.iter().collect();
            if def.group != 0
                || *group == 0
                || config.replicas < 2
                || replicas.len() != config.replicas as usize
                || distinct.len() != replicas.len()
                || replicas.first() != Some(&def.node)
                || !replicas.iter().all(|r| members.contains_key(r))
            {
                return Err(E_REPLICAS_CHANGE.into());
            }
            def.group = *group;
            check_grouped(&def, config)?;
            check_station_overlap(defs, tenant, config)?;
            def.config = config.clone();
            def.replicas = replicas.clone();
            def.members = members
                .iter()
                .filter(|(n, _)| replicas.contains(n))
                .map(|(n, i)| (n.clone(), *i))
                .collect();
            def.founders = vec![def.node.clone()];
            def.moved = false;
            def.seeded = true;
            let v = serde_json::to_value(&def).map_err(|e| e.to_string())?;
            Ok((vec![(k, Some(v.clone()))], v))
        }
        MetaCall::SetReplicas {
            tenant,
            name,
            replicas,
            members,
        } => {
            let k = station_key(tenant, name);
            let v = defs.get(&k).ok_or(E_STATION_NOT_FOUND)?;
            let mut def: StationDef =
                serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
            if !placement_fits(&def, def.config.replicas, replicas, members) {
                let distinct: BTreeSet<&String> = replicas.iter().collect();
                return Err(format!(
                    "replicas: {} nodes named for a station of {} replicas",
                    distinct.len(),
                    def.config.replicas
                ));
            }
            place(&mut def, replicas, members);
            let v = serde_json::to_value(&def).map_err(|e| e.to_string())?;
            Ok((vec![(k, Some(v.clone()))], v))
        }
        MetaCall::DeleteStation { tenant, name } => {
            let k = station_key(tenant, name);
            if !defs.contains_key(&k) {
                return Err(E_STATION_NOT_FOUND.into());
            }
            Ok((vec![(k, None)], Value::Null))
        }
    }
}

/// What a station with a Raft group (also one brought down to one copy)
/// cannot be: lazily fsynced.
fn check_grouped(def: &StationDef, config: &StationConfig) -> Result<(), String> {
    if def.group == 0 {
        return Ok(());
    }
    if config.flush_interval.is_some() {
        return Err(super::replicated::E_LAZY_REPLICATED.into());
    }
    Ok(())
}

/// A station's storage and retention never change.
fn check_kept(old: &StationConfig, new: &StationConfig) -> Result<(), String> {
    if old.storage != new.storage {
        return Err(E_STORAGE_CHANGE.into());
    }
    if old.retention != new.retention {
        return Err(E_RETENTION_CHANGE.into());
    }
    Ok(())
}

/// Whether `replicas` (with their ids in `members`) can place a replicated
/// station of `want` copies: that many distinct nodes, each with an id.
fn placement_fits(
    def: &StationDef,
    want: u32,
    replicas: &[String],
    members: &BTreeMap<String, u64>,
) -> bool {
    let distinct: BTreeSet<&String> = replicas.iter().collect();
    def.group != 0
        && replicas.len() == want as usize
        && distinct.len() == replicas.len()
        && replicas.iter().all(|r| members.contains_key(r))
}

/// Places a replicated station on `replicas`: a move, so its group is never
/// initialized again (only joined).
fn place(def: &mut StationDef, replicas: &[String], members: &BTreeMap<String, u64>) {
    if def.founders.is_empty() {
        def.founders = def.replicas.clone();
    }
    def.moved = true;
    def.replicas = replicas.to_vec();
    def.members = replicas
        .iter()
        .filter_map(|r| members.get(r).map(|id| (r.clone(), *id)))
        .collect();
}

const E_STORAGE_CHANGE: &str = "storage change";
const E_RETENTION_CHANGE: &str = "retention change";
const E_REPLICAS_CHANGE: &str =
    "replicas cannot change this way: give 1, 3 or 5, with enough reachable nodes";

fn engine_error(e: MetaError) -> EngineError {
    match e {
        MetaError::NoLeader(why) => EngineError::NoQuorum(why),
        MetaError::Refused(why) if why == junction_cluster::meta::UNCONFIRMED => {
            EngineError::NoQuorum(why)
        }
        MetaError::Refused(why) => match why.as_str() {
            E_SCHEMA_EXISTS => EngineError::SchemaExists,
            E_SCHEMA_NOT_FOUND => EngineError::SchemaNotFound,
            E_RULE_NOT_FOUND => EngineError::RoutingRuleNotFound,
            E_TENANT_NOT_FOUND => EngineError::TenantNotFound,
            E_STATION_IN_USE => EngineError::StationNameInUse,
            E_STATION_NOT_FOUND => EngineError::StationNotFound,
            E_SUBJECTS_OVERLAP => EngineError::SubjectsOverlap,
            E_STORAGE_CHANGE => EngineError::InvalidConfig(ConfigError::StorageChange),
            E_RETENTION_CHANGE => EngineError::InvalidConfig(ConfigError::RetentionChange),
            _ => EngineError::invalid_config(why),
        },
    }
}

/// Splits a group key into (kind, tenant, name).
fn split_key(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.splitn(3, ':');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

fn tenant_id(t: &str) -> TenantId {
    TenantId(Arc::from(t))
}

impl StationEngine {
    /// The meta group, when this node is in a cluster.
    pub(crate) fn meta(&self) -> Option<MetaGroup> {
        self.meta.get().cloned()
    }

    /// Attaches the meta group (once, at start), and starts watching the quorum.
    pub fn attach_meta(&self, meta: MetaGroup) {
        if self.meta.set(meta.clone()).is_err() {
            tracing::warn!("the engine is already attached to a meta group");
            return;
        }
        let me = self.me.clone();
        tokio::spawn(async move {
            let mut since: Option<std::time::Instant> = None;
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                let Some(engine) = me.upgrade() else { return };
                if meta.stopped() {
                    return;
                }
                let cut = meta.cut_off().await;
                match (cut, since) {
                    (true, None) => since = Some(std::time::Instant::now()),
                    (true, Some(t))
                        if t.elapsed() >= junction_cluster::meta::CUT_OFF_AFTER
                            && !engine
                                .cut_off
                                .swap(true, std::sync::atomic::Ordering::AcqRel) =>
                    {
                        let n = engine
                            .close_all_clients("cluster quorum lost: reconnect to another node");
                        tracing::warn!(
                            closed = n,
                            "cut off from the cluster's meta quorum: client connections closed, new ones refused until it is back"
                        );
                    }
                    (false, _) => {
                        since = None;
                        if engine
                            .cut_off
                            .swap(false, std::sync::atomic::Ordering::AcqRel)
                        {
                            tracing::info!(
                                "the cluster's meta quorum is back: clients are accepted again"
                            );
                        }
                    }
                    _ => {}
                }
            }
        });
    }

    /// Closes every client connection (NATS, MQTT, WebSocket); returns how many.
    fn close_all_clients(&self, reason: &str) -> usize {
        let records: Vec<_> = self
            .clients
            .read()
            .values()
            .filter(|e| {
                e.record.id != self.system.id
                    && e.record.kind() == junction_api::ClientKind::Connection
            })
            .map(|e| e.record.clone())
            .collect();
        records
            .iter()
            .filter(|r| r.request_close(reason, || {}))
            .count()
    }

    /// Whether this node is cut off from the meta quorum (new NATS and MQTT
    /// connections are refused).
    pub(crate) fn is_cut_off(&self) -> bool {
        self.cut_off.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs `call` through the meta group; returns once this node applied it.
    pub(crate) async fn replicate(meta: &MetaGroup, call: MetaCall) -> Result<(), EngineError> {
        let call = serde_json::to_value(call).map_err(|e| EngineError::Storage(e.to_string()))?;
        meta.admin(call).await.map(|_| ()).map_err(engine_error)
    }

    /// Schema calls in a cluster: checked here, then through the meta group.
    pub(crate) async fn cluster_schema_call(
        self: Arc<Self>,
        meta: MetaGroup,
        tenant: TenantId,
        call: MetaCall,
    ) -> Result<SchemaInfo, EngineError> {
        let name = match &call {
            MetaCall::CreateSchema {
                name,
                format,
                definition,
                ..
            } => {
                let format = SchemaFormat::parse(format).ok_or_else(|| {
                    EngineError::invalid_config(format!("unknown schema type {format}"))
                })?;
                SchemaRegistry::check_new(name, format, definition)?;
                name.clone()
            }
            MetaCall::AddSchemaVersion {
                name, definition, ..
            } => {
                self.schemas.check_version(&tenant, name, definition)?;
                name.clone()
            }
            MetaCall::ActivateSchemaVersion { name, .. } => name.clone(),
            _ => return Err(EngineError::BadRequest("not a schema call".into())),
        };
        Self::replicate(&meta, call).await?;
        let users = self.schema_users(&tenant, &name);
        self.schemas.info(&tenant, &name, users)
    }

    /// Brings this node's registries in line with changed definitions.
    pub(crate) fn reconcile(&self, changes: &[Change]) {
        let mut managed = self.managed();
        for (key, value) in changes {
            let Some((kind, tenant, name)) = split_key(key) else {
                tracing::warn!(%key, "unknown meta definition key");
                continue;
            };
            let t = tenant_id(tenant);
            let outcome = match (kind, value) {
                ("schema", Some(v)) => self.schemas.install_json(v),
                ("schema", None) => match self.schemas.delete(&t, name) {
                    Err(EngineError::SchemaNotFound) => Ok(()),
                    other => other,
                },
                ("rule", Some(v)) => serde_json::from_value::<RoutingRule>(v.clone())
                    .map_err(|e| EngineError::Storage(e.to_string()))
                    .and_then(|rule| self.routing.put(&t, rule).map(|_| ())),
                ("rule", None) => match self.routing.delete(&t, name) {
                    Err(EngineError::RoutingRuleNotFound) => Ok(()),
                    other => other,
                },
                ("station", Some(v)) => serde_json::from_value::<StationDef>(v.clone())
                    .map_err(|e| EngineError::Storage(e.to_string()))
                    .and_then(|def| self.place_station(&t, def)),
                ("station", None) => self.unplace_station(&t, name, managed.contains(key)),
                ("tenant", Some(v)) => {
                    serde_json::from_value::<junction_api::TenantSpec>(v.clone())
                        .map_err(|e| EngineError::Storage(e.to_string()))
                        .and_then(|spec| self.install_tenant(tenant, &spec))
                }
                ("tenant", None) => self.uninstall_tenant(tenant),
                _ => {
                    tracing::warn!(%key, "unknown meta definition kind");
                    continue;
                }
            };
            match outcome {
                Ok(()) => {
                    if value.is_some() {
                        managed.insert(key.clone());
                    } else {
                        managed.remove(key);
                    }
                }
                Err(e) => {
                    tracing::error!(%key, error = %e, "cannot apply a cluster definition on this node")
                }
            }
        }
        self.save_managed(&managed);
    }

    /// Brings this node's registries in line with all of `defs`: what the group
    /// has is put here; what this node took from the group earlier and the group
    /// no longer has is removed.
    pub(crate) fn reconcile_all(&self, defs: &Defs) {
        let mut changes: Vec<Change> = Vec::new();
        for (k, v) in defs {
            let current = match split_key(k) {
                Some(("schema", t, n)) => self.schemas.stored_json(&tenant_id(t), n),
                Some(("rule", t, n)) => self
                    .routing
                    .list(&tenant_id(t))
                    .into_iter()
                    .find(|r| r.name == n)
                    .and_then(|r| serde_json::to_value(r).ok()),
                Some(("tenant", t, _)) => self.stored_tenant(t),
                _ => None,
            };
            if current.as_ref() != Some(v) {
                changes.push((k.clone(), Some(v.clone())));
            }
        }
        for k in self.managed() {
            if !defs.contains_key(&k) {
                changes.push((k, None));
            }
        }
        let mut managed = self.managed();
        managed.extend(defs.keys().cloned());
        self.save_managed(&managed);
        if !changes.is_empty() {
            tracing::info!(changes = changes.len(), "cluster definitions reconciled");
            self.reconcile(&changes);
        }
    }

    /// Brings this node in line with a station's definition: the node it is
    /// placed on holds it as a station of its own; the others know it as held
    /// elsewhere.
    fn place_station(&self, tenant: &TenantId, def: StationDef) -> Result<(), EngineError> {
        let me = self.cluster().map(|c| c.node().to_string());
        let name = def.config.name.clone();
        if def.group != 0 {
            self.replica_ops
                .defs
                .write()
                .insert(def.group, (tenant.clone(), def.clone()));
            if me.as_ref().is_some_and(|m| def.replicas.contains(m)) {
                self.placed.remove(tenant, &name);
                return self.start_replica(tenant, &def);
            }
            if let Ok(s) = self.stations.get(tenant, &name)
                && s.is_replicated()
            {
                // Moved off this node: its copy goes once the group has changed.
                // Meanwhile it shows the station's new definition (a change of
                // `replicas` answered here is not answered with the old one).
                if s.config() != def.config
                    && let Err(e) = self.update_station_now(tenant, def.config.clone())
                {
                    tracing::warn!(station = %name, error = %e, "the retiring copy keeps its old definition");
                }
                self.retire_replica(tenant, &def);
                return Ok(());
            }
            // Known here until the leader reports itself (within a second).
            if self.placed.get(tenant, &name).is_none() {
                self.placed
                    .put(tenant, def.config.clone(), def.node.clone(), def.created());
            }
            return Ok(());
        }
        if me.as_deref() != Some(def.node.as_str()) {
            self.placed
                .put(tenant, def.config.clone(), def.node.clone(), def.created());
            return Ok(());
        }
        self.placed.remove(tenant, &name);
        match self.stations.get(tenant, &name) {
            Ok(station) if station.config() == def.config => Ok(()),
            Ok(_) => self.update_station_now(tenant, def.config).map(|_| ()),
            Err(_) => self.create_station_now(tenant, def.config).map(|_| ()),
        }
    }

    /// A station's definition is gone: deleted here when this node held it (and
    /// took it from the group), forgotten when another node did.
    fn unplace_station(
        &self,
        tenant: &TenantId,
        name: &str,
        managed: bool,
    ) -> Result<(), EngineError> {
        self.placed.remove(tenant, name);
        if let Ok(s) = self.stations.get(tenant, name)
            && let Some(g) = s.replica.get()
        {
            let group = g.id();
            self.replica_ops.defs.write().remove(&group);
            self.stop_replica(group);
            return self.delete_station_now(tenant, name);
        }
        if managed && self.stations.get(tenant, name).is_ok() {
            return self.delete_station_now(tenant, name);
        }
        Ok(())
    }

    /// Station calls in a cluster: checked here, then through the meta group;
    /// answers the station as this node sees it once it applied the change.
    pub(crate) async fn cluster_station_call(
        self: Arc<Self>,
        meta: MetaGroup,
        tenant: TenantId,
        call: MetaCall,
    ) -> Result<StationInfo, EngineError> {
        let name = match &call {
            MetaCall::CreateStation { config, .. }
            | MetaCall::UpdateStation { config, .. }
            | MetaCall::ResizeStation { config, .. }
            | MetaCall::ReplicateStation { config, .. } => {
                // A front-end's own cluster-wide station (`internal.rs`) has a
                // reserved name; nothing else may.
                if !super::internal::is_cluster_scoped(config) {
                    super::ingress::check_client_station(config)?;
                }
                self.check_station_schema(&tenant, config)?;
                config.name.clone()
            }
            _ => return Err(EngineError::BadRequest("not a station call".into())),
        };
        let update = matches!(
            call,
            MetaCall::UpdateStation { .. }
                | MetaCall::ResizeStation { .. }
                | MetaCall::ReplicateStation { .. }
        );
        match Self::replicate(&meta, call.clone()).await {
            Ok(()) => {}
            // A station this node had before it joined the cluster is changed
            // here, as before.
            Err(EngineError::StationNotFound)
                if update && self.stations.get(&tenant, &name).is_ok() =>
            {
                let (MetaCall::UpdateStation { config, .. }
                | MetaCall::ResizeStation { config, .. }
                | MetaCall::ReplicateStation { config, .. }) = call
                else {
                    unreachable!("checked above")
                };
                let me = self.clone();
                return tokio::task::spawn_blocking(move || me.update_station_now(&tenant, config))
                    .await
                    .unwrap_or_else(|e| Err(EngineError::Storage(e.to_string())));
            }
            Err(e) => return Err(e),
        }
        junction_api::Broker::station_info(&*self, &tenant, &name).map_err(|_| {
            EngineError::Storage(format!(
                "station '{name}' is defined in the cluster but this node could not make it; see its log"
            ))
        })
    }

    fn managed(&self) -> BTreeSet<String> {
        self.store()
            .get_meta(MANAGED)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default()
    }

    fn save_managed(&self, managed: &BTreeSet<String>) {
        let json = serde_json::to_vec(managed).unwrap_or_default();
        if let Err(e) = self.store().put_meta(MANAGED, &json) {
            tracing::error!(error = %e, "cannot record the cluster's definitions on this node");
        }
    }
}

impl MetaHost for StationEngine {
    fn plan(&self, defs: &Defs, call: &Value) -> Result<(Vec<Change>, Value), String> {
        let call: MetaCall = serde_json::from_value(call.clone()).map_err(|e| e.to_string())?;
        plan(defs, &call)
    }

    fn changed(&self, changes: Vec<Change>) -> BoxFuture<'static, ()> {
        let me = self.me.upgrade();
        Box::pin(async move {
            if let Some(me) = me {
                let _ = tokio::task::spawn_blocking(move || me.reconcile(&changes)).await;
            }
        })
    }

    fn reset(&self, defs: Defs) -> BoxFuture<'static, ()> {
        let me = self.me.upgrade();
        Box::pin(async move {
            if let Some(me) = me {
                let _ = tokio::task::spawn_blocking(move || me.reconcile_all(&defs)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_the_same_from_the_same_inputs_and_refuse_what_the_engine_refuses() {
        let mut defs = Defs::new();
        let create = MetaCall::CreateSchema {
            tenant: "$G".into(),
            name: "orders".into(),
            format: "json".into(),
            definition: "{}".into(),
            now_ns: 7,
        };
        let (a, _) = plan(&defs, &create).unwrap();
        let (b, _) = plan(&defs, &create).unwrap();
        assert_eq!(a, b);
        for (k, v) in a {
            defs.insert(k, v.unwrap());
        }
        assert_eq!(plan(&defs, &create).unwrap_err(), E_SCHEMA_EXISTS);
        let add = MetaCall::AddSchemaVersion {
            tenant: "$G".into(),
            name: "orders".into(),
            definition: "{\"type\":\"object\"}".into(),
            now_ns: 8,
        };
        let (c, _) = plan(&defs, &add).unwrap();
        let v = c[0].1.clone().unwrap();
        assert_eq!(v["active"], 2);
        assert_eq!(v["versions"].as_array().unwrap().len(), 2);
        let missing = MetaCall::DeleteRoutingRule {
            tenant: "$G".into(),
            name: "nope".into(),
        };
        assert_eq!(plan(&defs, &missing).unwrap_err(), E_RULE_NOT_FOUND);
        assert!(matches!(
            engine_error(MetaError::Refused(E_SCHEMA_NOT_FOUND.into())),
            EngineError::SchemaNotFound
        ));
    }
}
