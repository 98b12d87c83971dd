//! Replicated stations (`replicas` 2..=5): one openraft group per station
//! (`junction_cluster::replica`), on the nodes the meta group placed it on.
//!
//! - Every replica node keeps the station as a station of its own, written only
//!   by applying the group's committed entries ([`ReplicaHost::apply`]): a
//!   publish is proposed by the leader with the leader's clock, and every replica
//!   assigns it the same sequence, checks de-duplication, limits and expected
//!   sequences the same way, and writes it with the entry's applied mark in the
//!   same store batch. The publisher's ack (PubAck, PUBACK, HTTP 2xx) comes once
//!   the entry is fsynced on a quorum and applied on the leader.
//! - A publish made on a follower (or on a node without a replica) is sent to the
//!   leader as a store call; requests about the station (JetStream, HTTP) go to
//!   the leader as for a station held on one node.
//! - Purges, message deletes and age expiry are entries too (proposed by the
//!   leader; no replica removes anything on its own clock). Consumer groups are
//!   created and deleted through the log.

use super::StationEngine;
use super::forward::Forward;
use super::meta::StationDef;
use super::placement::{K_STORE, StoreCall, decode_store, encode_store};
use super::station::{Append, Station, now_ns};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use junction_api::{
    EngineError, GroupConfig, Message, PubAck, PublishOptions, Purge, ReplicaInfo, StationConfig,
    StoredCallback, TenantId,
};
use junction_cluster::meta::MetaNode;
use junction_cluster::replica::{ProposeError, ReplicaGroup, ReplicaHost};
use junction_storage::RaftOp;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A publish sent on to a replicated station's leader by a follower: never
/// passed on again.
pub(crate) const K_STORE_LEADER: u8 = 68;

/// How long a publish on a node that knows no leader of the station waits for
/// one (an election) before it is refused.
const ELECTION_WAIT: Duration = Duration::from_secs(2);

/// Most replicas a station may have (as JetStream).
pub const MAX_REPLICAS: u32 = 5;

const OP_PUBLISH: u8 = 1;
const OP_ADMIN: u8 = 2;
/// A dead letter of the station, for every replica's dead-letter station.
const OP_DEAD_LETTER: u8 = 3;

/// An entry of a station's log other than a publish.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum AdminOp {
    /// Removes what is older than `max_age` at the leader's `now_ns`.
    Expire {
        now_ns: u64,
    },
    Purge {
        filter: Option<String>,
        seq: Option<u64>,
        keep: Option<u64>,
    },
    DeleteMessage {
        seq: u64,
    },
    CreateGroup {
        config: Box<GroupConfig>,
    },
    UpdateGroup {
        config: Box<GroupConfig>,
    },
    DeleteGroup {
        group: String,
    },
    /// A durable group's position as its leader saved it (delivered, acked,
    /// pending), taken by the other replicas.
    Position {
        group: String,
        position: String,
    },
    /// A re-sent dead letter removed from every replica's dead-letter station.
    DeadLetterDelete {
        seq: u64,
    },
    /// Every replica's dead-letter station purged.
    DeadLetterPurge {
        filter: Option<String>,
        seq: Option<u64>,
        keep: Option<u64>,
    },
    /// Messages consumed under work-queue or interest retention (acked by the
    /// group that held them, or given up on), removed by every replica once
    /// this is committed: the leader decides, no replica on its own.
    Consumed {
        seqs: Vec<u64>,
    },
    /// A segment the leader uploaded to the bucket, recorded in every
    /// replica's remote index (its entry and subject summary in their stored
    /// encodings, base64). Answers whether it was recorded: not when the
    /// index already reaches its first sequence (another leader's upload of
    /// the range came first).
    TierRecord {
        entry: String,
        summary: String,
    },
    /// Remote segments (by first sequence) the station's limits no longer
    /// keep, as the leader found: dropped from every replica's index.
    TierDrop {
        firsts: Vec<u64>,
    },
}

/// What a replicated station's leader proposes when acks consume messages:
/// the wait for the entry's commit (its result is logged, not returned, when
/// nobody waits: the leader's next sweep proposes what is still due).
pub(crate) fn propose_consumed(
    replica: &ReplicaGroup,
    station: &str,
    seqs: Vec<u64>,
) -> BoxFuture<'static, Result<(), EngineError>> {
    let wait = replica.propose(admin_op(&AdminOp::Consumed { seqs }));
    let station = station.to_string();
    Box::pin(async move {
        let b = wait.await.map_err(|e| propose_error(&station, e))?;
        read_answer(&b)
    })
}

/// Proposes an admin entry and returns the wait for its commit (its answer
/// dropped).
pub(crate) fn propose_admin_wait(
    replica: &ReplicaGroup,
    station: &str,
    op: AdminOp,
) -> BoxFuture<'static, Result<(), EngineError>> {
    let wait = replica.propose(admin_op(&op));
    let station = station.to_string();
    Box::pin(async move {
        let b = wait.await.map_err(|e| propose_error(&station, e))?;
        read_answer::<serde_json::Value>(&b).map(|_| ())
    })
}

/// Proposes an admin entry and returns the wait for its commit and its
/// answer (as JSON).
pub(crate) fn propose_admin_answer(
    replica: &ReplicaGroup,
    station: &str,
    op: AdminOp,
) -> BoxFuture<'static, Result<serde_json::Value, EngineError>> {
    let wait = replica.propose(admin_op(&op));
    let station = station.to_string();
    Box::pin(async move {
        let b = wait.await.map_err(|e| propose_error(&station, e))?;
        read_answer::<serde_json::Value>(&b)
    })
}

/// Proposes a dead letter of a replicated station (its copy as stored in the
/// dead-letter station): every replica stores it in its own.
pub(crate) fn propose_dead_letter(
    replica: &ReplicaGroup,
    tenant: &TenantId,
    station: &str,
    copy: &Message,
    lineage: &Bytes,
) -> BoxFuture<'static, Result<(), EngineError>> {
    let body = encode_store(
        tenant,
        &junction_api::dead_letter_station(station),
        copy,
        &PublishOptions::NONE,
        lineage,
    );
    let mut b = BytesMut::with_capacity(1 + body.len());
    b.put_u8(OP_DEAD_LETTER);
    b.put_slice(&body);
    let wait = replica.propose(b.freeze());
    let station = station.to_string();
    Box::pin(async move {
        let b = wait.await.map_err(|e| propose_error(&station, e))?;
        read_answer::<serde_json::Value>(&b).map(|_| ())
    })
}

/// Proposes a group's saved position and returns the wait for its commit.
pub(crate) fn propose_position_wait(
    replica: &ReplicaGroup,
    station: &str,
    group: &str,
    position: Vec<u8>,
) -> BoxFuture<'static, Result<(), EngineError>> {
    let op = AdminOp::Position {
        group: group.to_string(),
        position: String::from_utf8(position).unwrap_or_default(),
    };
    let wait = replica.propose(admin_op(&op));
    let station = station.to_string();
    Box::pin(async move {
        let b = wait.await.map_err(|e| propose_error(&station, e))?;
        read_answer(&b)
    })
}

/// Runs `wait` on the current runtime, logging a failure (nobody waits for it).
pub(crate) fn spawn_logged(
    station: &str,
    what: &'static str,
    wait: BoxFuture<'static, Result<(), EngineError>>,
) {
    let station = station.to_string();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(e) = wait.await {
                tracing::debug!(%station, error = %e, "{what} not committed; the leader proposes it again");
            }
        });
    }
}

/// Sends a group's saved position to the other replicas (not waited for: the
/// next change sends it again).
pub(crate) fn propose_position(
    replica: &ReplicaGroup,
    station: &str,
    group: &str,
    position: Vec<u8>,
) {
    let op = AdminOp::Position {
        group: group.to_string(),
        position: String::from_utf8(position).unwrap_or_default(),
    };
    let wait = replica.propose(admin_op(&op));
    let (station, group) = (station.to_string(), group.to_string());
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(e) = wait.await {
                tracing::debug!(%station, %group, error = %e, "consumer position not replicated; sent again at its next change");
            }
        });
    }
}

/// A publish entry: `body` is the store call ([`encode_store`]).
fn publish_op(body: Bytes, now: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(9 + body.len());
    b.put_u8(OP_PUBLISH);
    b.put_u64(now);
    b.put_slice(&body);
    b.freeze()
}

fn admin_op(op: &AdminOp) -> Bytes {
    let mut b = vec![OP_ADMIN];
    b.extend_from_slice(&serde_json::to_vec(op).unwrap_or_default());
    Bytes::from(b)
}

/// First byte of a publish's answer when it was stored (or was a duplicate):
/// then its sequence (`u64`) and whether it was a duplicate (`u8`). JSON (an
/// error) never starts with it.
const ACK_TAG: u8 = 0xA1;

/// A publish's answer: [`ACK_TAG`] when stored, else [`answer`]'s JSON. Every
/// replica makes one for each publish it applies (only the leader's is read),
/// so it is kept cheap.
pub(crate) fn ack_answer(r: Result<PubAck, EngineError>) -> Bytes {
    match r {
        Ok(ack) => {
            let mut b = BytesMut::with_capacity(10);
            b.put_u8(ACK_TAG);
            b.put_u64(ack.seq);
            b.put_u8(u8::from(ack.duplicate));
            b.freeze()
        }
        Err(e) => answer::<()>(Err(e)),
    }
}

/// Reads [`ack_answer`] for a publish to `station`.
pub(crate) fn read_ack(mut b: &[u8], station: &str) -> Result<PubAck, EngineError> {
    if b.len() == 10 && b[0] == ACK_TAG {
        b.advance(1);
        let seq = b.get_u64();
        return Ok(PubAck {
            station: station.to_string(),
            seq,
            duplicate: b.get_u8() != 0,
        });
    }
    read_answer(b)
}

/// An applied entry's answer: the JSON of `Result<value, EngineError>`.
fn answer<T: Serialize>(r: Result<T, EngineError>) -> Bytes {
    let r: Result<serde_json::Value, EngineError> =
        r.and_then(|v| serde_json::to_value(v).map_err(|e| EngineError::Storage(e.to_string())));
    Bytes::from(serde_json::to_vec(&r).unwrap_or_default())
}

fn read_answer<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T, EngineError> {
    let r: Result<serde_json::Value, EngineError> =
        serde_json::from_slice(b).map_err(|e| EngineError::Storage(e.to_string()))?;
    serde_json::from_value(r?).map_err(|e| EngineError::Storage(e.to_string()))
}

fn propose_error(station: &str, e: ProposeError) -> EngineError {
    match e {
        ProposeError::NotLeader(Some(l)) => EngineError::ReplicasUnavailable(format!(
            "station '{station}' changed leader (now {l}) before the publish was committed; it may still be stored"
        )),
        ProposeError::NotLeader(None) => no_leader(station),
        ProposeError::Unavailable(why) => {
            EngineError::ReplicasUnavailable(format!("station '{station}': {why}"))
        }
    }
}

pub(crate) fn no_leader(station: &str) -> EngineError {
    EngineError::ReplicasUnavailable(format!(
        "station '{station}' has no leader now (an election is on, or its replicas lost their quorum)"
    ))
}

/// How long a new leader waits before it sweeps its station for consumed
/// messages still stored.
const SWEEP_AFTER: Duration = Duration::from_secs(3);

/// How long a replica may stay unreachable before it is re-placed, by default.
pub const REPLACE_AFTER: Duration = Duration::from_secs(300);

/// How long a node keeps its copy after the station moved off it, so that the
/// group's membership change (which may still need it) is over first.
const RETIRE_AFTER: Duration = Duration::from_secs(30);

/// Replicated stations' placements as the meta group has them, and the upkeep
/// their leaders do (membership in line with the placement, re-placing a replica
/// that stays down).
pub(crate) struct ReplicaOps {
    /// Group id → (tenant, definition).
    pub defs: RwLock<HashMap<u64, (TenantId, StationDef)>>,
    replace_after: Mutex<Duration>,
    /// (group, node) → when the leader first saw that replica unreachable.
    down_since: Mutex<HashMap<(u64, String), Instant>>,
    /// Groups with a change under way (membership or placement).
    changing: Mutex<HashSet<u64>>,
    /// Groups reported under-replicated (no spare to move a down replica to).
    under: Mutex<HashSet<u64>>,
    /// On a follower: the replicas as its leader last reported them.
    pub leader_views: Mutex<HashMap<u64, Vec<ReplicaInfo>>>,
    /// Groups this node leads → when it was first seen leading them, and
    /// whether it swept them for consumed messages since.
    swept: Mutex<HashMap<u64, (Instant, bool)>>,
}

impl Default for ReplicaOps {
    fn default() -> Self {
        ReplicaOps {
            defs: RwLock::default(),
            replace_after: Mutex::new(REPLACE_AFTER),
            down_since: Mutex::default(),
            changing: Mutex::default(),
            under: Mutex::default(),
            leader_views: Mutex::default(),
            swept: Mutex::default(),
        }
    }
}

/// Checks what a replicated station's configuration must be.
pub(crate) fn check_replicated(config: &StationConfig) -> Result<(), EngineError> {
    if config.replicas <= 1 {
        return Ok(());
    }
    if config.replicas > MAX_REPLICAS {
        return Err(EngineError::invalid_config(format!(
            "replicas: at most {MAX_REPLICAS}"
        )));
    }
    if config.flush_interval.is_some() {
        return Err(EngineError::invalid_config(E_LAZY_REPLICATED));
    }
    Ok(())
}

pub(crate) const E_LAZY_REPLICATED: &str = "flush_interval (lazy fsync) cannot be used with replicas > 1: a replicated station acknowledges a publish only once it is fsynced on a quorum";

impl StationEngine {
    /// Sets how long a replica may stay unreachable before it is re-placed.
    pub fn set_replica_replace_after(&self, after: Duration) {
        *self.replica_ops.replace_after.lock() = after;
    }

    /// Linked meta members (this node included) with no replica of a station on
    /// `exclude`, the least loaded first (replicated stations held, then name),
    /// with their meta ids.
    fn candidates(&self, exclude: &[String]) -> Vec<(String, u64)> {
        let (Some(meta), Some(cluster)) = (self.meta(), self.cluster()) else {
            return Vec::new();
        };
        let me = cluster.node().to_string();
        let status = meta.status();
        let mut load: BTreeMap<String, usize> = BTreeMap::new();
        if let Some(state) = meta.state() {
            for v in state.defs.values() {
                if let Ok(def) = serde_json::from_value::<StationDef>(v.clone()) {
                    for n in def.replicas {
                        *load.entry(n).or_default() += 1;
                    }
                }
            }
        }
        let mut out: Vec<(String, u64)> = status
            .nodes
            .iter()
            .filter(|(_, n, _)| {
                !exclude.contains(n)
                    && !status.removed.contains(n)
                    && (*n == me || cluster.linked(n))
            })
            .map(|(id, n, _)| (n.clone(), *id))
            .collect();
        out.sort_by_key(|(n, _)| (load.get(n).copied().unwrap_or(0), n.clone()));
        out
    }

    /// The new placement of a replicated station whose `replicas` changes
    /// (1, 3 or 5; down to 1 it keeps a group of one member, the leader): more
    /// nodes, the least loaded linked ones without a replica of
    /// it; fewer, followers leave (unreachable ones first), never the leader.
    /// `None` when its replicas do not change, or it has no group (see
    /// [`StationEngine::replicate_placement`]).
    #[allow(clippy::type_complexity)]
    pub(crate) fn resize_placement(
        &self,
        tenant: &TenantId,
        config: &StationConfig,
    ) -> Result<Option<(Vec<String>, BTreeMap<String, u64>)>, EngineError> {
        let def = self
            .replica_ops
            .defs
            .read()
            .values()
            .find(|(t, d)| t == tenant && d.config.name == config.name)
            .map(|(_, d)| d.clone());
        let Some(def) = def.filter(|d| d.config.replicas != config.replicas) else {
            return Ok(None);
        };
        if config.replicas == 0 {
            return Ok(None);
        }
        check_replicated(config)?;
        let want = config.replicas as usize;
        let mut replicas = def.replicas.clone();
        let mut members = def.members.clone();
        if want > replicas.len() {
            let need = want - replicas.len();
            let spares = self.candidates(&replicas);
            if spares.len() < need {
                return Err(EngineError::InsufficientResources(format!(
                    "replicas: {want} needs {need} more reachable nodes without a replica of station '{}'; {} found",
                    config.name,
                    spares.len()
                )));
            }
            for (n, id) in spares.into_iter().take(need) {
                replicas.push(n.clone());
                members.insert(n, id);
            }
        } else {
            let leader = self
                .stations
                .get(tenant, &config.name)
                .ok()
                .and_then(|s| s.replica.get().and_then(|g| g.leader()));
            let cluster = self.cluster().cloned();
            while replicas.len() > want {
                let followers: Vec<usize> = (0..replicas.len())
                    .filter(|i| leader.as_deref() != Some(replicas[*i].as_str()))
                    .collect();
                let down = followers.iter().copied().find(|i| {
                    cluster
                        .as_ref()
                        .is_some_and(|c| c.node() != replicas[*i] && !c.linked(&replicas[*i]))
                });
                let Some(out) = down.or_else(|| followers.last().copied()) else {
                    break;
                };
                let gone = replicas.remove(out);
                members.remove(&gone);
            }
        }
        Ok(Some((replicas, members)))
    }

    /// A station of one copy (no group) that is to have `config.replicas` > 1:
    /// its group id, and its replicas, the node that holds it first (it seeds
    /// the group from its copy) then the least loaded reachable nodes. `None`
    /// when the station is not such a station.
    #[allow(clippy::type_complexity)]
    pub(crate) fn replicate_placement(
        &self,
        tenant: &TenantId,
        config: &StationConfig,
    ) -> Result<Option<(Vec<String>, BTreeMap<String, u64>, u64)>, EngineError> {
        let (Some(meta), Some(cluster)) = (self.meta(), self.cluster()) else {
            return Ok(None);
        };
        if config.replicas <= 1 {
            return Ok(None);
        }
        let key = format!("station:{}:{}", tenant.0, config.name);
        let def = meta
            .state()
            .and_then(|s| s.defs.get(&key).cloned())
            .and_then(|v| serde_json::from_value::<StationDef>(v).ok());
        let Some(def) = def.filter(|d| d.group == 0) else {
            return Ok(None);
        };
        check_replicated(config)?;
        if def.node != cluster.node() && !cluster.linked(&def.node) {
            return Err(EngineError::ReplicasUnavailable(format!(
                "station '{}' is held by {}, which is unreachable: its replicas can change once it is back",
                config.name, def.node
            )));
        }
        let ids: BTreeMap<String, u64> = meta
            .status()
            .nodes
            .iter()
            .map(|(id, name, _)| (name.clone(), *id))
            .collect();
        let Some(holder_id) = ids.get(&def.node).copied() else {
            return Err(EngineError::InsufficientResources(format!(
                "the node holding station '{}' has no meta id yet; try again",
                config.name
            )));
        };
        let want = config.replicas as usize;
        let spares = self.candidates(std::slice::from_ref(&def.node));
        if spares.len() < want - 1 {
            return Err(EngineError::InsufficientResources(format!(
                "replicas: {want} needs {} more reachable nodes besides {}, which holds station '{}'; {} found",
                want - 1,
                def.node,
                config.name,
                spares.len()
            )));
        }
        let mut replicas = vec![def.node.clone()];
        let mut members = BTreeMap::from([(def.node.clone(), holder_id)]);
        for (n, id) in spares.into_iter().take(want - 1) {
            replicas.push(n.clone());
            members.insert(n, id);
        }
        // Never 0 (one copy) and never the meta group's id.
        let group = rand::random::<u64>().clamp(1, u64::MAX - 1);
        Ok(Some((replicas, members, group)))
    }

    /// Chooses the nodes for a new station of `replicas` copies: this node, then
    /// the linked meta members holding the fewest replicated stations (then by
    /// name). Answers (names, name → meta id).
    pub(crate) fn choose_replicas(
        &self,
        replicas: u32,
    ) -> Result<(Vec<String>, BTreeMap<String, u64>), EngineError> {
        let (Some(meta), Some(cluster)) = (self.meta(), self.cluster()) else {
            return Err(EngineError::InvalidConfig(
                junction_api::ConfigError::ReplicasUnsupported,
            ));
        };
        let me = cluster.node().to_string();
        let status = meta.status();
        let ids: BTreeMap<String, u64> = status
            .nodes
            .iter()
            .map(|(id, name, _)| (name.clone(), *id))
            .collect();
        let mut load: BTreeMap<String, usize> = BTreeMap::new();
        if let Some(state) = meta.state() {
            for v in state.defs.values() {
                if let Ok(def) = serde_json::from_value::<StationDef>(v.clone()) {
                    for n in def.replicas {
                        *load.entry(n).or_default() += 1;
                    }
                }
            }
        }
        let mut others: Vec<String> = ids
            .keys()
            .filter(|n| **n != me && cluster.linked(n) && !status.removed.contains(*n))
            .cloned()
            .collect();
        others.sort_by_key(|n| (load.get(n).copied().unwrap_or(0), n.clone()));
        let mut chosen = vec![me];
        chosen.extend(others.into_iter().take(replicas as usize - 1));
        if chosen.len() < replicas as usize {
            return Err(EngineError::InsufficientResources(format!(
                "replicas: {replicas} asked, {} nodes of the cluster are reachable",
                chosen.len()
            )));
        }
        let members = chosen
            .iter()
            .filter_map(|n| ids.get(n).map(|id| (n.clone(), *id)))
            .collect::<BTreeMap<_, _>>();
        if members.len() != chosen.len() {
            return Err(EngineError::InsufficientResources(
                "a chosen node has no meta id yet; try again".into(),
            ));
        }
        Ok((chosen, members))
    }

    /// This node holds a replica of `def`'s station: makes the station here (its
    /// log written only by the group) and starts (or resumes) its Raft group.
    pub(crate) fn start_replica(
        &self,
        tenant: &TenantId,
        def: &StationDef,
    ) -> Result<(), EngineError> {
        let name = def.config.name.clone();
        let station = match self.stations.get(tenant, &name) {
            Ok(s) => s,
            Err(_) => {
                self.create_station_now(tenant, def.config.clone())?;
                self.stations.get(tenant, &name)?
            }
        };
        // Before its definition changes: a station of one copy becoming
        // replicated takes no more direct writes from here on (a publish
        // meanwhile is refused, never stored outside the group).
        self.stations.mark_replicated(&station)?;
        if station.config() != def.config {
            self.update_station_now(tenant, def.config.clone())?;
        }
        if let Some(g) = station.replica.get() {
            // Placed here again before its retirement: it may elect again.
            g.set_elections(true);
            return Ok(());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(EngineError::ShuttingDown);
        };
        self.replicated.write().insert(def.group, station.clone());
        // At start the meta group is not attached yet: the group starts once it
        // is (and this node has its id).
        let engine = self.me.clone();
        let def = def.clone();
        runtime.spawn(async move {
            loop {
                let Some(e) = engine.upgrade() else { return };
                if let Some(meta) = e.meta()
                    && meta.id() != 0
                {
                    if let Err(err) = e.run_replica(&meta, &station, &def).await {
                        tracing::error!(station = %def.config.name, error = %err, "cannot start this node's replica");
                    }
                    return;
                }
                if e.cluster().is_some_and(|c| c.stopped()) {
                    return;
                }
                drop(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(())
    }

    async fn run_replica(
        &self,
        meta: &junction_cluster::meta::MetaGroup,
        station: &Arc<Station>,
        def: &StationDef,
    ) -> Result<(), EngineError> {
        let name = def.config.name.clone();
        let me = meta.id();
        let addrs: BTreeMap<String, String> = meta
            .status()
            .nodes
            .into_iter()
            .map(|(_, n, a)| (n, a))
            .collect();
        // The group's first membership: only the nodes it was created on make it
        // (the same on each); a node added later joins as the leader adds it.
        let founders = if def.founders.is_empty() {
            &def.replicas
        } else {
            &def.founders
        };
        let me_name = self
            .cluster()
            .map(|c| c.node().to_string())
            .unwrap_or_default();
        // A seeded group (a station of one copy made replicated) is founded
        // by the node that held it, alone: the others join empty and catch up
        // from its snapshot.
        let init = founders.contains(&me_name)
            && !def.moved
            && (def.seeded || def.founders.is_empty() || def.founders == def.replicas);
        let members: BTreeMap<u64, MetaNode> = def
            .members
            .iter()
            .filter(|(n, _)| init && (!def.seeded || founders.contains(n)))
            .map(|(name, id)| {
                (
                    *id,
                    MetaNode {
                        name: name.clone(),
                        addr: addrs.get(name).cloned().unwrap_or_default(),
                    },
                )
            })
            .collect();
        let host: std::sync::Weak<dyn ReplicaHost> = self.me.clone();
        let replicas = meta.replicas();
        let group = replicas
            .start(def.group, me, members, host)
            .await
            .map_err(EngineError::Storage)?;
        let seed = init && def.seeded && group.status().snapshot.is_none();
        if seed {
            // The leader adds no member until the group is seeded.
            self.replica_ops.changing.lock().insert(def.group);
        }
        let _ = station.replica.set(group.clone());
        tracing::info!(station = %name, group = def.group, "replica started");
        if seed {
            // Its log starts empty while the station has messages: the others
            // must get the station from a snapshot, never from the log. The
            // group's first snapshot is made, and the log it covers purged,
            // before the leader adds them (publishes go on meanwhile, stored
            // on this node alone as before the change).
            let mut tries = 0u32;
            loop {
                match group.seed().await {
                    Ok(()) => break,
                    Err(e) if group.failed().is_some() || tries >= 100 => {
                        return Err(EngineError::Storage(format!(
                            "station '{name}': cannot make the first snapshot of its new group (no replica is added): {e}"
                        )));
                    }
                    Err(e) => {
                        tries += 1;
                        tracing::warn!(station = %name, error = %e, "seeding a replica group; trying again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            self.replica_ops.changing.lock().remove(&def.group);
            tracing::info!(station = %name, group = def.group, "replica group seeded from this node's copy: the other replicas join");
        }
        Ok(())
    }

    /// This node no longer holds a replica of group `group` (the station was
    /// deleted): stops it and removes its Raft state.
    pub(crate) fn stop_replica(&self, group: u64) {
        self.replicated.write().remove(&group);
        if let (Some(meta), Ok(runtime)) = (self.meta(), tokio::runtime::Handle::try_current()) {
            runtime.block_on(meta.replicas().stop(group, true));
        }
    }

    /// Stores a publish in a replicated station: proposed to its group here when
    /// this node leads it, else sent to the leader (once: `forwarded` says it
    /// was sent here by a follower already).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn replicated_append(
        &self,
        tenant: &TenantId,
        station: &Station,
        group: &ReplicaGroup,
        message: &Message,
        options: &PublishOptions,
        lineage: &Bytes,
        forwarded: bool,
        encoded: Option<Bytes>,
        done: StoredCallback,
    ) {
        let name = station.name().to_string();
        if group.is_leader() {
            let body =
                encoded.unwrap_or_else(|| encode_store(tenant, &name, message, options, lineage));
            group.propose_then(
                publish_op(body, now_ns()),
                Box::new(move |r| {
                    done(match r {
                        Ok(b) => read_ack(&b, &name),
                        Err(e) => Err(propose_error(&name, e)),
                    })
                }),
            );
            return;
        }
        let (false, Some(cluster), Ok(runtime)) = (
            forwarded,
            self.cluster.get(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return done(Err(no_leader(&name)));
        };
        // A leader this node has no link to is gone (killed, or cut off): its
        // replicas elect another within about a second.
        let reachable = |l: &String| cluster.linked(l);
        let Some(leader) = group.leader().filter(reachable) else {
            // An election is on (or this node has not heard from the leader
            // yet): wait for one it can reach a little rather than refuse at
            // once (nothing was sent, so nothing can be stored twice).
            // Publishes held here meanwhile are not kept in order among
            // themselves.
            let (group, engine, tenant) = (group.clone(), self.me.clone(), tenant.clone());
            let (message, options, lineage) = (message.clone(), options.clone(), lineage.clone());
            runtime.spawn(async move {
                let deadline = tokio::time::Instant::now() + 2 * ELECTION_WAIT;
                let ready = loop {
                    let ready = match (group.is_leader(), group.leader(), engine.upgrade()) {
                        (true, ..) => true,
                        (false, Some(l), Some(e)) => e.cluster.get().is_some_and(|c| c.linked(&l)),
                        _ => false,
                    };
                    if ready || tokio::time::Instant::now() >= deadline {
                        break ready;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                let station = engine
                    .upgrade()
                    .and_then(|e| e.stations.get(&tenant, &name).ok());
                match (ready, engine.upgrade(), station) {
                    (true, Some(e), Some(station)) => e.replicated_append(
                        &tenant, &station, &group, &message, &options, &lineage, false, None, done,
                    ),
                    _ => done(Err(no_leader(&name))),
                }
            });
            return;
        };
        let body =
            encoded.unwrap_or_else(|| encode_store(tenant, &name, message, options, lineage));
        self.forwarders.send(
            cluster,
            &leader,
            Forward {
                station: name,
                body,
                done,
                replicated: true,
            },
        );
    }

    /// Stores a publish a peer sent (`kind` [`K_STORE`] or [`K_STORE_LEADER`])
    /// for a replicated station of this node.
    pub(crate) fn store_forwarded_replicated(
        &self,
        kind: u8,
        body: Bytes,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<PubAck, EngineError>>> {
        let call = decode_store(body.clone()).ok()?;
        let tenant = self.tenant_named(&call.tenant);
        let station = self.stations.get(&tenant, &call.station).ok()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let Some(group) = station.replica.get().cloned() else {
            if station.is_replicated() {
                // Its group has not started here yet (a restart): never stored
                // outside the group.
                let _ = tx.send(Err(EngineError::ReplicasUnavailable(format!(
                    "station '{}' is starting on this node",
                    station.name()
                ))));
                return Some(rx);
            }
            return None;
        };
        self.replicated_append(
            &tenant,
            &station,
            &group,
            &call.message,
            &call.options,
            &call.lineage,
            kind != K_STORE,
            Some(body),
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        Some(rx)
    }

    /// Runs an admin entry through a replicated station's group (on its leader;
    /// from a blocking thread) and answers what applying it answered here.
    pub(crate) fn propose_admin<T: for<'a> Deserialize<'a>>(
        &self,
        station: &Station,
        group: &ReplicaGroup,
        op: AdminOp,
    ) -> Result<T, EngineError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| EngineError::ShuttingDown)?;
        if !group.is_leader() {
            return Err(match group.leader() {
                Some(l) => EngineError::StationElsewhere {
                    station: station.name().to_string(),
                    node: l,
                },
                None => no_leader(station.name()),
            });
        }
        let wait = group.propose(admin_op(&op));
        let b = runtime
            .block_on(wait)
            .map_err(|e| propose_error(station.name(), e))?;
        read_answer(&b)
    }

    /// Proposes age expiry for the replicated stations this node leads (once a
    /// second, with the other limits' timer).
    pub(crate) fn replica_upkeep(&self) {
        self.expire_replicated();
        let led: Vec<(u64, Arc<Station>, ReplicaGroup)> = self
            .replicated
            .read()
            .iter()
            .filter_map(|(id, s)| {
                let g = s.replica.get()?;
                g.is_leader().then(|| (*id, s.clone(), g.clone()))
            })
            .collect();
        self.replica_ops
            .swept
            .lock()
            .retain(|id, _| led.iter().any(|(l, _, _)| l == id));
        for (id, station, group) in led {
            self.sweep_consumed(id, &station, &group);
            self.keep_placement(id, &group);
        }
    }

    /// Once per leadership: proposes the removal of messages every group is
    /// done with that are still stored (their removal was proposed by a leader
    /// that lost its place before it was committed).
    fn sweep_consumed(&self, id: u64, station: &Station, group: &ReplicaGroup) {
        {
            let mut swept = self.replica_ops.swept.lock();
            let (since, done) = swept.entry(id).or_insert((Instant::now(), false));
            // After a few seconds as leader: what was committed before it
            // became leader (group creations, positions) is applied by then.
            if *done || since.elapsed() < SWEEP_AFTER {
                return;
            }
            *done = true;
        }
        let seqs = super::stations::consumed_now(station);
        if !seqs.is_empty() {
            tracing::info!(
                station = station.name(),
                messages = seqs.len(),
                "new leader: removing messages already consumed"
            );
            spawn_logged(
                station.name(),
                "consumed messages",
                propose_consumed(group, station.name(), seqs),
            );
        }
    }

    /// On a group's leader: brings the group's voters in line with the
    /// placement, and re-places a replica unreachable for longer than the
    /// re-placement time (or reports the station under-replicated).
    fn keep_placement(&self, id: u64, group: &ReplicaGroup) {
        let Some((tenant, def)) = self.replica_ops.defs.read().get(&id).cloned() else {
            return;
        };
        let (Some(cluster), Some(meta)) = (self.cluster().cloned(), self.meta()) else {
            return;
        };
        if self.replica_ops.changing.lock().contains(&id) {
            return;
        }
        let want: std::collections::BTreeSet<u64> = def.members.values().copied().collect();
        if group.voters() != want {
            self.replica_ops.changing.lock().insert(id);
            let addrs: BTreeMap<String, String> = meta
                .status()
                .nodes
                .into_iter()
                .map(|(_, n, a)| (n, a))
                .collect();
            let members: BTreeMap<u64, MetaNode> = def
                .members
                .iter()
                .map(|(n, i)| {
                    (
                        *i,
                        MetaNode {
                            name: n.clone(),
                            addr: addrs.get(n).cloned().unwrap_or_default(),
                        },
                    )
                })
                .collect();
            let (group, engine, name) = (group.clone(), self.me.clone(), def.config.name.clone());
            tokio::spawn(async move {
                match group.change_members(members).await {
                    Ok(()) => tracing::info!(station = %name, "replica group membership changed"),
                    Err(e) => {
                        tracing::warn!(station = %name, error = %e, "replica group membership change failed; tried again")
                    }
                }
                if let Some(e) = engine.upgrade() {
                    e.replica_ops.changing.lock().remove(&id);
                }
            });
            return;
        }
        // A replica whose node came back under a new id (its data directory
        // was wiped, so the meta group gave it a new id): what the old id held
        // is gone for good, and the node answers no RPC meant for it. It is
        // re-placed at once: on a spare node, else on that same node under
        // its new id (it catches up from the leader like any new replica).
        let ids: BTreeMap<String, u64> = meta
            .status()
            .nodes
            .into_iter()
            .map(|(i, n, _)| (n, i))
            .collect();
        let wiped = def.replicas.iter().find_map(|n| {
            let (old, new) = (def.members.get(n)?, ids.get(n)?);
            (old != new && (n == cluster.node() || cluster.linked(n))).then(|| (n.clone(), *new))
        });
        if let Some((lost, new_id)) = wiped {
            let (to, to_id) = self
                .candidates(&def.replicas)
                .into_iter()
                .next()
                .unwrap_or((lost.clone(), new_id));
            self.replica_ops.changing.lock().insert(id);
            self.replica_down(
                &tenant,
                &def.config.name,
                format!(
                    "station '{}': {lost} came back without its data (new id {new_id}); its replica moves to {to} (id {to_id})",
                    def.config.name
                ),
            );
            let (engine, name) = (self.me.clone(), def.config.name.clone());
            tokio::spawn(async move {
                if let Some(e) = engine.upgrade() {
                    if let Err(err) = e.move_replica(&tenant, &def, &lost, &to, to_id).await {
                        tracing::warn!(station = %name, error = %err, "re-placing a wiped replica failed; tried again");
                    }
                    e.replica_ops.changing.lock().remove(&id);
                }
            });
            return;
        }
        // Replicas the leader cannot reach.
        let now = Instant::now();
        let after = *self.replica_ops.replace_after.lock();
        let mut overdue = Vec::new();
        {
            let mut down = self.replica_ops.down_since.lock();
            for n in &def.replicas {
                let key = (id, n.clone());
                if *n == cluster.node() || cluster.linked(n) {
                    down.remove(&key);
                    continue;
                }
                let since = *down.entry(key).or_insert(now);
                if now.duration_since(since) >= after {
                    overdue.push(n.clone());
                }
            }
        }
        if overdue.is_empty() {
            if self.replica_ops.under.lock().remove(&id) {
                tracing::info!(station = %def.config.name, "every replica is reachable again");
            }
            return;
        }
        let lost = overdue[0].clone();
        let spare = self.candidates(&def.replicas).into_iter().next();
        let Some((spare, spare_id)) = spare else {
            if self.replica_ops.under.lock().insert(id) {
                self.replica_down(
                    &tenant,
                    &def.config.name,
                    format!(
                        "station '{}' is under-replicated: replica on {lost} unreachable for over {}s and no spare node to move it to",
                        def.config.name,
                        after.as_secs()
                    ),
                );
            }
            return;
        };
        self.replica_ops.changing.lock().insert(id);
        self.replica_down(
            &tenant,
            &def.config.name,
            format!(
                "station '{}': replica on {lost} unreachable for over {}s; moving it to {spare}",
                def.config.name,
                after.as_secs()
            ),
        );
        let (engine, name) = (self.me.clone(), def.config.name.clone());
        tokio::spawn(async move {
            if let Some(e) = engine.upgrade() {
                if let Err(err) = e.move_replica(&tenant, &def, &lost, &spare, spare_id).await {
                    tracing::warn!(station = %name, error = %err, "re-placing a replica failed; tried again");
                }
                e.replica_ops.changing.lock().remove(&id);
                e.replica_ops.down_since.lock().remove(&(id, lost));
            }
        });
    }

    /// Logs and records a `replica_down` event about `station`.
    fn replica_down(&self, tenant: &TenantId, station: &str, text: String) {
        tracing::warn!("{text}");
        self.events.record(
            junction_api::SystemEventKind::ReplicaDown,
            super::events::About {
                tenant: Some(tenant),
                station: Some(station),
                ..Default::default()
            },
            text,
        );
    }

    /// Replaces `from` by `to` in a replicated station's placement (the meta
    /// group); its leader then changes the group's membership.
    async fn move_replica(
        &self,
        tenant: &TenantId,
        def: &StationDef,
        from: &str,
        to: &str,
        to_id: u64,
    ) -> Result<(), EngineError> {
        let meta = self.meta().ok_or(EngineError::ShuttingDown)?;
        let mut members = def.members.clone();
        members.remove(from);
        members.insert(to.to_string(), to_id);
        let replicas: Vec<String> = def
            .replicas
            .iter()
            .map(|r| if r == from { to.to_string() } else { r.clone() })
            .collect();
        let call = super::meta::MetaCall::SetReplicas {
            tenant: tenant.0.to_string(),
            name: def.config.name.clone(),
            replicas,
            members,
        };
        Self::replicate(&meta, call).await
    }

    /// Removes `peer`'s replica of a replicated station (JetStream
    /// `STREAM.PEER.REMOVE`): it is re-placed on a spare node, and refused when
    /// there is none (the station never drops below its replica count).
    pub(crate) async fn remove_peer(
        &self,
        tenant: &TenantId,
        name: &str,
        peer: &str,
    ) -> Result<(), EngineError> {
        let station = self.stations.get(tenant, name)?;
        let Some(group) = station.replica.get().cloned() else {
            return Err(EngineError::BadRequest(format!(
                "station '{name}' is not replicated"
            )));
        };
        let Some((_, def)) = self.replica_ops.defs.read().get(&group.id()).cloned() else {
            return Err(EngineError::StationNotFound);
        };
        if !def.replicas.iter().any(|r| r == peer) {
            return Err(EngineError::BadRequest(format!(
                "peer '{peer}' has no replica of station '{name}'"
            )));
        }
        let Some((spare, spare_id)) = self.candidates(&def.replicas).into_iter().next() else {
            return Err(EngineError::InsufficientResources(format!(
                "no spare node to move the replica on {peer} to; station '{name}' keeps its {} replicas",
                def.config.replicas
            )));
        };
        tracing::info!(station = %name, %peer, to = %spare, "peer removed from a replicated station");
        self.move_replica(tenant, &def, peer, &spare, spare_id)
            .await
    }

    /// This node's copy of a station that moved off it: removed once the
    /// group's membership change is over (after [`RETIRE_AFTER`]), if the
    /// placement still leaves it out.
    pub(crate) fn retire_replica(&self, tenant: &TenantId, def: &StationDef) {
        // Kept a while (the membership change may still need it), but it
        // calls no election meanwhile: left out of the voters, it would only
        // unseat the group's leader with a higher term.
        if let Some(g) = self
            .replicated
            .read()
            .get(&def.group)
            .and_then(|s| s.replica.get().cloned())
        {
            g.set_elections(false);
        }
        let (engine, tenant, def) = (self.me.clone(), tenant.clone(), def.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            tokio::time::sleep(RETIRE_AFTER).await;
            let Some(e) = engine.upgrade() else { return };
            let me = e.cluster().map(|c| c.node().to_string()).unwrap_or_default();
            let still_out = e
                .replica_ops
                .defs
                .read()
                .get(&def.group)
                .is_some_and(|(_, d)| !d.replicas.contains(&me));
            if !still_out {
                return;
            }
            let name = def.config.name.clone();
            let _ = tokio::task::spawn_blocking(move || {
                e.stop_replica(def.group);
                if let Err(err) = e.delete_station_now(&tenant, &name) {
                    tracing::warn!(station = %name, error = %err, "cannot remove the copy of a station that moved off this node");
                }
                e.placed.put(&tenant, def.config.clone(), def.node.clone(), def.created());
                tracing::info!(station = %name, "this node's replica retired (the station moved)");
            })
            .await;
        });
    }

    pub(crate) fn expire_replicated(&self) {
        let led: Vec<(Arc<Station>, ReplicaGroup)> = self
            .replicated
            .read()
            .values()
            .filter_map(|s| {
                let g = s.replica.get()?;
                (g.is_leader() && !s.config().max_age.is_zero()).then(|| (s.clone(), g.clone()))
            })
            .collect();
        for (station, group) in led {
            if !station.has_older_than(now_ns()) {
                continue;
            }
            let wait = group.propose(admin_op(&AdminOp::Expire { now_ns: now_ns() }));
            let name = station.name().to_string();
            tokio::spawn(async move {
                if let Err(e) = wait.await {
                    tracing::debug!(station = %name, error = %e, "age expiry not committed; tried again in a second");
                }
            });
        }
    }

    /// The replicas of a replicated station, as this node sees them.
    pub(crate) fn replica_infos(&self, group: &ReplicaGroup) -> Vec<ReplicaInfo> {
        // A follower knows little of the others: it shows what the leader
        // reported (about once a second).
        if !group.is_leader()
            && let Some(view) = self.replica_ops.leader_views.lock().get(&group.id())
        {
            return view.clone();
        }
        let status = group.status();
        let cluster = self.cluster.get();
        status
            .replicas
            .into_iter()
            .map(|r| ReplicaInfo {
                online: cluster.is_some_and(|c| c.node() == r.name || c.linked(&r.name)),
                name: r.name,
                leader: r.leader,
                current: r.current,
                lag: r.lag,
            })
            .collect()
    }

    fn apply_admin(&self, station: &Arc<Station>, op: AdminOp) -> Bytes {
        let tenant = station.tenant.clone();
        let name = station.name().to_string();
        match op {
            AdminOp::Expire { now_ns } => answer(Ok(station.expire(now_ns))),
            AdminOp::Purge { filter, seq, keep } => {
                answer(station.purge(&Purge { filter, seq, keep }))
            }
            AdminOp::DeleteMessage { seq } => answer(station.delete_message(seq)),
            AdminOp::DeadLetterDelete { seq } => answer(self.local_dead_letters(station).and_then(
                |dls| match dls.delete_message(seq) {
                    Err(EngineError::MessageNotFound) => Ok(()),
                    other => other,
                },
            )),
            AdminOp::DeadLetterPurge { filter, seq, keep } => answer(
                self.local_dead_letters(station)
                    .and_then(|dls| dls.purge(&Purge { filter, seq, keep })),
            ),
            AdminOp::Consumed { seqs } => {
                for seq in seqs {
                    station.remove_consumed(seq);
                }
                answer(Ok(()))
            }
            AdminOp::CreateGroup { config } => answer(
                self.stations
                    .create_group(&tenant, &name, *config)
                    .map(|(s, g)| self.group_info_of(&s, &g)),
            ),
            AdminOp::UpdateGroup { config } => answer(
                self.stations
                    .update_group(&tenant, &name, *config)
                    .map(|(s, g)| self.group_info_of(&s, &g)),
            ),
            AdminOp::DeleteGroup { group } => {
                answer(self.stations.delete_group(&tenant, &name, &group))
            }
            AdminOp::TierRecord { entry, summary } => {
                answer(tier_record(station, &entry, &summary))
            }
            AdminOp::TierDrop { firsts } => answer(match station.tier() {
                Some(tier) => tier.drop_firsts(station.store(), station.id, &firsts),
                None => Ok(()),
            }),
            AdminOp::Position { group, position } => {
                // The leader has it already (it is where it comes from).
                if station.replica.get().is_some_and(|r| r.is_leader()) {
                    return answer(Ok(()));
                }
                let g = station.groups.read().get(&group).cloned();
                answer(match g {
                    Some(g) => g.install_position(position.as_bytes()),
                    None => Ok(()),
                })
            }
        }
    }
}

impl ReplicaHost for StationEngine {
    fn snapshot_point(&self, group: u64) -> Result<Vec<u8>, String> {
        self.snapshot_point_of(group)
    }

    fn write_snapshot(
        &self,
        group: u64,
        point: &[u8],
        out: &mut dyn std::io::Write,
    ) -> Result<(), String> {
        self.write_snapshot_of(group, point, out)
    }

    fn install_snapshot(&self, group: u64, input: &mut dyn std::io::Read) -> Result<(), String> {
        self.install_snapshot_of(group, input)
    }

    fn volatile(&self, group: u64) -> bool {
        self.replicated
            .read()
            .get(&group)
            .is_some_and(|s| s.config().storage == junction_api::StorageKind::Memory)
    }

    fn apply(
        &self,
        group: u64,
        _index: u64,
        ops: Vec<Bytes>,
        first: usize,
        mark: &(dyn Fn(usize) -> RaftOp + Sync),
    ) -> Vec<BoxFuture<'static, Bytes>> {
        let ready = |b: Bytes| -> BoxFuture<'static, Bytes> { Box::pin(async move { b }) };
        let Some(station) = self.replicated.read().get(&group).cloned() else {
            let e = EngineError::Storage(format!("no station for replica group {group} here"));
            let b = answer::<()>(Err(e));
            return ops.iter().map(|_| ready(b.clone())).collect();
        };
        let mut out: Vec<BoxFuture<'static, Bytes>> = Vec::with_capacity(ops.len());
        // A run of publishes goes to the station as one batch (one store
        // write, marked with its last op); other ops are applied one by one.
        let mut run: Vec<(usize, u64, StoreCall)> = Vec::new();
        let flush = |run: &mut Vec<(usize, u64, StoreCall)>,
                     out: &mut Vec<BoxFuture<'static, Bytes>>| {
            let Some(last) = run.last().map(|r| r.0) else {
                return;
            };
            let mut appends = Vec::with_capacity(run.len());
            for (_, now, call) in run.iter() {
                let (tx, rx) = tokio::sync::oneshot::channel();
                appends.push(Append {
                    message: &call.message,
                    options: &call.options,
                    lineage: call.lineage.clone(),
                    now: *now,
                    done: Some(Box::new(move |r| {
                        let _ = tx.send(r);
                    })),
                });
                out.push(Box::pin(async move {
                    ack_answer(rx.await.unwrap_or(Err(EngineError::ShuttingDown)))
                }));
            }
            station.append_batch(appends, Some(mark(last)));
            run.clear();
        };
        for (k, mut body) in ops.into_iter().enumerate() {
            let k = first + k;
            if body.is_empty() {
                flush(&mut run, &mut out);
                out.push(ready(answer(Ok(()))));
                continue;
            }
            match body.get_u8() {
                OP_PUBLISH if body.remaining() >= 8 => {
                    let now = body.get_u64();
                    match decode_store(body) {
                        Ok(call) => run.push((k, now, call)),
                        Err(e) => {
                            flush(&mut run, &mut out);
                            out.push(ready(answer::<()>(Err(EngineError::BadRequest(e)))));
                        }
                    }
                }
                OP_DEAD_LETTER => {
                    flush(&mut run, &mut out);
                    out.push(ready(match decode_store(body) {
                        Ok(call) => answer(self.local_dead_letters(&station).map(|dls| {
                            dls.append(&call.message, &call.options, call.lineage, None);
                        })),
                        Err(e) => answer::<()>(Err(EngineError::BadRequest(e))),
                    }));
                }
                OP_ADMIN => {
                    flush(&mut run, &mut out);
                    out.push(ready(match serde_json::from_slice::<AdminOp>(&body) {
                        Ok(op) => self.apply_admin(&station, op),
                        Err(e) => answer::<()>(Err(EngineError::BadRequest(e.to_string()))),
                    }));
                }
                _ => {
                    flush(&mut run, &mut out);
                    out.push(ready(answer::<()>(Err(EngineError::BadRequest(
                        "unknown entry".into(),
                    )))));
                }
            }
        }
        flush(&mut run, &mut out);
        out
    }
}

/// Applies [`AdminOp::TierRecord`] to this replica's remote index.
fn tier_record(station: &Station, entry: &str, summary: &str) -> Result<bool, EngineError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(tier) = station.tier() else {
        // Every node of a cluster needs the same [tier] bucket: without one,
        // this replica keeps every message on its disk.
        tracing::error!(
            station = station.name(),
            "a segment of this replicated station was uploaded by its leader, but this node has no [tier] bucket configured: its copy keeps every message locally"
        );
        return Err(EngineError::invalid_config(
            "this node has no [tier] bucket configured",
        ));
    };
    let bad = |e: String| EngineError::BadRequest(format!("tier record: {e}"));
    let entry = b64.decode(entry).map_err(|e| bad(e.to_string()))?;
    let entry =
        junction_storage::tier::SegmentRef::decode(&entry).map_err(|e| bad(e.to_string()))?;
    let summary = b64.decode(summary).map_err(|e| bad(e.to_string()))?;
    let summary = junction_storage::tier::segment::SubjectSummary::decode(&summary)
        .map_err(|e| bad(e.to_string()))?;
    tier.record(station.store(), station.id, entry, &summary)
}

/// What a replicated station's snapshot holds besides its messages.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPoint {
    /// The station's last sequence (messages above it are not in the
    /// snapshot: entries after it publish them again on the replica).
    last_seq: u64,
    /// Every consumer group: its definition and position.
    groups: Vec<SnapshotGroup>,
    /// Its remote index (a tiered station): the messages below the leader's
    /// local log are in the bucket, not in the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tier: Option<super::tier::IndexCopy>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotGroup {
    config: GroupConfig,
    position: String,
}

/// Snapshot body: `u32` length + the point's JSON, then per message `u64`
/// sequence + `u32` length + the stored record, then a `u64` 0.
const SNAPSHOT_MAGIC: &[u8; 4] = b"JRS1";

fn read_exact(input: &mut dyn std::io::Read, n: usize) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; n];
    input
        .read_exact(&mut b)
        .map_err(|e| format!("snapshot cut short: {e}"))?;
    Ok(b)
}

fn read_u64(input: &mut dyn std::io::Read) -> Result<u64, String> {
    let b = read_exact(input, 8)?;
    Ok(u64::from_be_bytes(b.try_into().unwrap_or_default()))
}

fn read_u32(input: &mut dyn std::io::Read) -> Result<u32, String> {
    let b = read_exact(input, 4)?;
    Ok(u32::from_be_bytes(b.try_into().unwrap_or_default()))
}

impl StationEngine {
    /// This node's dead-letter station of replicated station `station`
    /// (made from its policy when missing).
    fn local_dead_letters(&self, station: &Station) -> Result<Arc<Station>, EngineError> {
        let name = junction_api::dead_letter_station(station.name());
        match self.stations.get(&station.tenant, &name) {
            Err(EngineError::StationNotFound) => self
                .stations
                .ensure_dead_letter(&station.tenant, &station.config()),
            other => other,
        }
    }

    fn replicated_station(&self, group: u64) -> Result<Arc<Station>, String> {
        self.replicated
            .read()
            .get(&group)
            .cloned()
            .ok_or_else(|| format!("no station for replica group {group} here"))
    }

    /// Waits until every write queued for `station` so far is fsynced.
    fn sync_station(&self, station: &Station) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.store().append(
            station.id,
            Vec::new(),
            junction_storage::Durability::Sync,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        match rx.recv() {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("the storage writer stopped".into()),
        }
    }

    fn snapshot_point_of(&self, group: u64) -> Result<Vec<u8>, String> {
        let station = self.replicated_station(group)?;
        let groups: Vec<_> = station.groups.read().values().cloned().collect();
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let position = g.position_json().map_err(|e| e.to_string())?;
            out.push(SnapshotGroup {
                config: g.config(),
                position: String::from_utf8(position).unwrap_or_default(),
            });
        }
        // The index before the last sequence: a segment recorded after it
        // is an entry after the snapshot, applied again on the replica.
        let tier = match station.tier() {
            Some(t) => Some(
                t.copy_index(station.store(), station.id)
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let point = SnapshotPoint {
            last_seq: station.last_seq(),
            groups: out,
            tier,
        };
        serde_json::to_vec(&point).map_err(|e| e.to_string())
    }

    fn write_snapshot_of(
        &self,
        group: u64,
        point: &[u8],
        out: &mut dyn std::io::Write,
    ) -> Result<(), String> {
        let station = self.replicated_station(group)?;
        let p: SnapshotPoint = serde_json::from_slice(point).map_err(|e| e.to_string())?;
        let io = |e: std::io::Error| e.to_string();
        out.write_all(SNAPSHOT_MAGIC).map_err(io)?;
        out.write_all(&(point.len() as u32).to_be_bytes())
            .map_err(io)?;
        out.write_all(point).map_err(io)?;
        let mut messages = 0u64;
        let mut put = |r: &junction_storage::Record| -> Result<(), String> {
            let body = junction_storage::record::encode(r);
            out.write_all(&r.seq.to_be_bytes()).map_err(io)?;
            out.write_all(&(body.len() as u32).to_be_bytes())
                .map_err(io)?;
            out.write_all(&body).map_err(io)?;
            messages += 1;
            Ok(())
        };
        if station.config().storage == junction_api::StorageKind::Memory {
            // A memory station's messages are in memory already (shared
            // buffers: the copy is of their handles, not their bytes).
            for r in station.memory_records(p.last_seq) {
                put(&r)?;
            }
        } else {
            // Streamed from the store, one record at a time.
            for item in self
                .store()
                .scan_between(station.id, 0, p.last_seq.saturating_add(1))
            {
                match item {
                    Ok(r) => put(&r)?,
                    Err((seq, e)) => {
                        tracing::error!(station = station.name(), ?seq, error = %e, "record left out of a snapshot");
                    }
                }
            }
        }
        out.write_all(&0u64.to_be_bytes()).map_err(io)?;
        tracing::info!(
            station = station.name(),
            last_seq = p.last_seq,
            messages,
            "replica snapshot written"
        );
        Ok(())
    }

    fn install_snapshot_of(&self, group: u64, input: &mut dyn std::io::Read) -> Result<(), String> {
        let station = self.replicated_station(group)?;
        let (tenant, name) = (station.tenant.clone(), station.name().to_string());
        if read_exact(input, 4)? != SNAPSHOT_MAGIC {
            return Err("not a replica snapshot".into());
        }
        let len = read_u32(input)? as usize;
        let p: SnapshotPoint =
            serde_json::from_slice(&read_exact(input, len)?).map_err(|e| e.to_string())?;
        // This copy's groups and messages go; the snapshot's come in.
        let old: Vec<String> = station.groups.read().keys().cloned().collect();
        for g in old {
            self.stations
                .delete_group(&tenant, &name, &g)
                .map_err(|e| e.to_string())?;
        }
        let messages = if station.config().storage == junction_api::StorageKind::Memory {
            let mut records = Vec::new();
            loop {
                let seq = read_u64(input)?;
                if seq == 0 {
                    break;
                }
                let len = read_u32(input)? as usize;
                let body = read_exact(input, len)?;
                records.push(
                    junction_storage::record::decode(seq, &body)
                        .map_err(|e| format!("snapshot record {seq}: {e:?}"))?,
                );
            }
            let n = records.len() as u64;
            station.load_memory(records, p.last_seq);
            n
        } else {
            self.install_stored(&station, input, p.last_seq)?
        };
        if let Some(tier) = station.tier() {
            tier.install_index(station.store(), station.id, &p.tier.unwrap_or_default())
                .map_err(|e| e.to_string())?;
        }
        for g in p.groups {
            let gname = g.config.name.clone();
            self.stations
                .create_group(&tenant, &name, g.config)
                .map_err(|e| e.to_string())?;
            if let Some(grp) = station.groups.read().get(&gname).cloned() {
                grp.install_position(g.position.as_bytes())
                    .map_err(|e| e.to_string())?;
            }
        }
        tracing::info!(station = %name, last_seq = p.last_seq, messages, "replica snapshot installed");
        Ok(())
    }

    /// Replaces a file station's stored messages with a snapshot's (read from
    /// `input`, after its point), and rebuilds its index; how many there were.
    fn install_stored(
        &self,
        station: &Station,
        input: &mut dyn std::io::Read,
        last_seq: u64,
    ) -> Result<u64, String> {
        self.sync_station(station)?;
        self.store()
            .delete_station_log(station.id)
            .map_err(|e| e.to_string())?;
        let mut batch = Vec::new();
        let mut messages = 0u64;
        loop {
            let seq = read_u64(input)?;
            if seq == 0 {
                break;
            }
            let len = read_u32(input)? as usize;
            let body = read_exact(input, len)?;
            let r = junction_storage::record::decode(seq, &body)
                .map_err(|e| format!("snapshot record {seq}: {e:?}"))?;
            batch.push(junction_storage::LogOp::Put(r));
            messages += 1;
            if batch.len() >= 512 {
                self.store().append(
                    station.id,
                    std::mem::take(&mut batch),
                    junction_storage::Durability::Interval(Duration::from_secs(1)),
                    Box::new(|_| {}),
                );
            }
        }
        if !batch.is_empty() {
            self.store().append(
                station.id,
                batch,
                junction_storage::Durability::Interval(Duration::from_secs(1)),
                Box::new(|_| {}),
            );
        }
        self.sync_station(station)?;
        self.store()
            .write_meta_batch(
                &[(
                    super::station::seq_floor_key(station.id),
                    last_seq.to_string().into_bytes(),
                )],
                &[],
            )
            .map_err(|e| e.to_string())?;
        station.reload(last_seq).map_err(|e| e.to_string())?;
        Ok(messages)
    }
}
