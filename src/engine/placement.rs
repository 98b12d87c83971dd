//! Stations in a cluster: each client station is defined in the meta group
//! (`station:<tenant>:<name>`, see `meta.rs`) with its **placement**, the node
//! that holds its messages and groups (the node the create came to). That node
//! keeps it as a station of its own, on the local durable path; every other node
//! knows it as a [`RemoteStation`]:
//! - a publish on any node that the station captures is sent to its node as a
//!   store call, answered once the message is stored there under the station's
//!   policy (fsynced by default); only then does the publisher get its ack
//!   (PubAck, MQTT PUBACK, HTTP 2xx). Calls from one node are stored in the order
//!   they were published there. A node that does not answer fails the publish
//!   with [`EngineError::NodeUnreachable`] (nothing is acknowledged);
//! - the station's state is sent by its node to every peer about once a second,
//!   so listings and station views on any node show it (that recent);
//! - requests a front-end cannot answer without the station (JetStream consumer
//!   and stream requests, acks) are passed to its node as they are
//!   ([`Broker::forward_request`](junction_api::Broker::forward_request)), and
//!   answered from there on their reply subject; HTTP's group and purge calls go
//!   to it as admin calls; pulls and acks made through the engine go to it over
//!   the link (`remote_group.rs`). What no call carries (a direct read of a
//!   station held elsewhere) fails with [`EngineError::StationElsewhere`], which
//!   names the node.
//!
//! Replicas (R3/R5) come with replicated stations: today a station lives on one
//! node, and is unavailable while that node is down.

use super::StationEngine;
use super::station::filters_of;
use ahash::AHashMap;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use junction_api::{
    EngineError, GroupConfig, GroupInfo, Message, PubAck, PublishOptions, Purge, ReplicaInfo,
    StationConfig, StationInfo, StationState, StoredCallback, Subject, SubjectFilter, TenantId,
};
use junction_cluster::{CallError, CallHandler, ForwardRef};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// A publish for a station held by the called node.
pub(crate) const K_STORE: u8 = 64;
/// One-way: the calling node's stations' states.
pub(crate) const K_STATES: u8 = 65;
/// One-way: a request for the called node's own services (JetStream API, acks).
pub(crate) const K_REQUEST: u8 = 66;
/// An admin call about a station held by the called node.
pub(crate) const K_ADMIN: u8 = 67;

/// How long an admin call to the station's node may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a node sends its stations' states to its peers.
pub(crate) const STATES_EVERY: Duration = Duration::from_secs(1);

/// A station that another node holds, as this node knows it.
pub(crate) struct RemoteStation {
    pub config: StationConfig,
    pub node: String,
    pub created: SystemTime,
    filters: Vec<SubjectFilter>,
    state: Mutex<StationState>,
    replicas: Mutex<Vec<ReplicaInfo>>,
}

impl RemoteStation {
    /// The bytes it stores, as its node last reported.
    pub fn stored_bytes(&self) -> u64 {
        self.state.lock().bytes
    }

    pub fn info(&self) -> StationInfo {
        StationInfo {
            config: self.config.clone(),
            created: self.created,
            state: self.state.lock().clone(),
            node: Some(self.node.clone()),
            replicas: self.replicas.lock().clone(),
            mirror: None,
            sources: Vec::new(),
        }
    }
}

/// Most subjects whose capturing remote station is remembered, per tenant.
const CAPTURE_CACHE_LIMIT: usize = 4096;

/// What captures a subject, remembered: (tenant, subject) → the station, if any.
type CaptureCache = AHashMap<(TenantId, Subject), Option<Arc<RemoteStation>>>;

/// The stations other nodes hold, by tenant and name.
#[derive(Default)]
pub(crate) struct RemoteStations {
    any: AtomicBool,
    by: RwLock<AHashMap<TenantId, BTreeMap<String, Arc<RemoteStation>>>>,
    /// Cleared whenever a station comes or goes.
    capture: RwLock<CaptureCache>,
}

impl RemoteStations {
    pub fn put(&self, tenant: &TenantId, config: StationConfig, node: String, created: SystemTime) {
        let Ok(filters) = filters_of(&config) else {
            tracing::error!(station = %config.name, "a cluster station has invalid subjects; ignored");
            return;
        };
        let mut by = self.by.write();
        let t = by.entry(tenant.clone()).or_default();
        let state = t
            .get(&config.name)
            .filter(|old| old.node == node)
            .map(|old| old.state.lock().clone())
            .unwrap_or_default();
        t.insert(
            config.name.clone(),
            Arc::new(RemoteStation {
                config,
                node,
                created,
                filters,
                state: Mutex::new(state),
                replicas: Mutex::new(Vec::new()),
            }),
        );
        self.capture.write().clear();
        self.any.store(true, Ordering::Relaxed);
    }

    pub fn remove(&self, tenant: &TenantId, name: &str) -> bool {
        let removed = self
            .by
            .write()
            .get_mut(tenant)
            .is_some_and(|t| t.remove(name).is_some());
        if removed {
            self.capture.write().clear();
        }
        removed
    }

    pub fn get(&self, tenant: &TenantId, name: &str) -> Option<Arc<RemoteStation>> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        self.by.read().get(tenant)?.get(name).cloned()
    }

    /// The remote station that captures `subject`, if any.
    pub fn capture(&self, tenant: &TenantId, subject: &Subject) -> Option<Arc<RemoteStation>> {
        if !self.any.load(Ordering::Relaxed) || junction_api::is_never_stored(subject.as_bytes()) {
            return None;
        }
        let key = (tenant.clone(), subject.clone());
        if let Some(hit) = self.capture.read().get(&key) {
            return hit.clone();
        }
        let found = self
            .by
            .read()
            .get(tenant)?
            .values()
            .find(|s| s.filters.iter().any(|f| f.matches(subject)))
            .cloned();
        let mut cache = self.capture.write();
        if cache.len() >= CAPTURE_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, found.clone());
        found
    }

    /// Every remote station of `tenant`.
    pub fn of_tenant(&self, tenant: &TenantId) -> Vec<Arc<RemoteStation>> {
        self.by
            .read()
            .get(tenant)
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Names of the remote stations of `tenant`; only those whose subjects
    /// overlap `subject` when given.
    pub fn names(&self, tenant: &TenantId, subject: Option<&str>) -> Vec<String> {
        let by = self.by.read();
        let Some(t) = by.get(tenant) else {
            return Vec::new();
        };
        let filter = subject.and_then(|s| SubjectFilter::new(s.to_string()).ok());
        t.values()
            .filter(|s| match &filter {
                None => subject.is_none(),
                Some(f) => s
                    .filters
                    .iter()
                    .any(|g| super::station::filters_overlap(f, g)),
            })
            .map(|s| s.config.name.clone())
            .collect()
    }

    /// `node` leads the replicated station `name` now, with `replicas`.
    fn set_leader(&self, tenant: &TenantId, name: &str, node: &str, replicas: Vec<ReplicaInfo>) {
        let Some(s) = self.get(tenant, name) else {
            return;
        };
        if s.node != node {
            self.put(tenant, s.config.clone(), node.to_string(), s.created);
        }
        if let Some(s) = self.get(tenant, name) {
            *s.replicas.lock() = replicas;
        }
    }

    /// Takes the state `node` reports for one of its stations.
    fn set_state(&self, tenant: &TenantId, name: &str, node: &str, state: StationState) {
        if let Some(s) = self.get(tenant, name)
            && s.node == node
        {
            *s.state.lock() = state;
        }
    }
}

/// One station's state, as its node reports it.
#[derive(Serialize, Deserialize)]
struct StateNote {
    tenant: String,
    name: String,
    state: StationState,
    /// Sent by a replicated station's leader: it leads the station now.
    #[serde(default)]
    leader: bool,
    /// A replicated station's replicas, as its leader sees them.
    #[serde(default)]
    replicas: Vec<ReplicaInfo>,
}

/// An admin call for the node that holds a station.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum StationCall {
    Purge {
        tenant: String,
        station: String,
        filter: Option<String>,
        seq: Option<u64>,
        keep: Option<u64>,
        /// A front-end's own station (`internal.rs`): never a client's call.
        #[serde(default)]
        internal: bool,
    },
    DeleteMessage {
        tenant: String,
        station: String,
        seq: u64,
    },
    UpdateGroup {
        tenant: String,
        station: String,
        config: Box<GroupConfig>,
    },
    CreateGroup {
        tenant: String,
        station: String,
        config: Box<GroupConfig>,
        #[serde(default)]
        internal: bool,
    },
    DeleteGroup {
        tenant: String,
        station: String,
        group: String,
        #[serde(default)]
        internal: bool,
    },
    GetMessage {
        tenant: String,
        station: String,
        query: super::internal::QueryWire,
    },
    GroupInfo {
        tenant: String,
        station: String,
        group: String,
    },
}

/// A request's body ([`K_REQUEST`]): the message, for the called node's own
/// subscribers.
pub(crate) fn request_bytes(tenant: &TenantId, message: &Message) -> Bytes {
    junction_cluster::frame::message_bytes(ForwardRef {
        tenant: &tenant.0,
        message,
        origin_mqtt: false,
        plain: true,
        queues: &[],
        route: None,
    })
}

/// A store call's body: station name, options, lineage, then the message.
pub(crate) fn encode_store(
    tenant: &TenantId,
    station: &str,
    message: &Message,
    options: &PublishOptions,
    lineage: &Bytes,
) -> Bytes {
    // Most publishes ask nothing: no options is written as nothing (a plain
    // publish then costs no JSON here nor on every replica that applies it).
    let options = if *options == PublishOptions::NONE {
        Vec::new()
    } else {
        serde_json::to_vec(options).unwrap_or_default()
    };
    let msg = junction_cluster::frame::message_bytes(ForwardRef {
        tenant: &tenant.0,
        message,
        origin_mqtt: false,
        plain: false,
        queues: &[],
        route: None,
    });
    let mut b = BytesMut::with_capacity(16 + station.len() + options.len() + lineage.len());
    b.put_u16(station.len() as u16);
    b.put_slice(station.as_bytes());
    b.put_u32(options.len() as u32);
    b.put_slice(&options);
    b.put_u32(lineage.len() as u32);
    b.put_slice(lineage);
    b.put_slice(&msg);
    b.freeze()
}

pub(crate) struct StoreCall {
    pub tenant: String,
    pub station: String,
    pub options: PublishOptions,
    pub lineage: Bytes,
    pub message: Message,
}

pub(crate) fn decode_store(mut body: Bytes) -> Result<StoreCall, String> {
    let bad = || "malformed store call".to_string();
    let take = |n: usize, body: &mut Bytes| -> Result<Bytes, String> {
        if body.remaining() < n {
            return Err(bad());
        }
        Ok(body.split_to(n))
    };
    if body.remaining() < 2 {
        return Err(bad());
    }
    let n = body.get_u16() as usize;
    let station = String::from_utf8(take(n, &mut body)?.to_vec()).map_err(|_| bad())?;
    if body.remaining() < 4 {
        return Err(bad());
    }
    let n = body.get_u32() as usize;
    let options: PublishOptions = match n {
        0 => PublishOptions::NONE,
        n => serde_json::from_slice(&take(n, &mut body)?).map_err(|_| bad())?,
    };
    if body.remaining() < 4 {
        return Err(bad());
    }
    let n = body.get_u32() as usize;
    let lineage = take(n, &mut body)?;
    let f = junction_cluster::frame::message_from(body).map_err(|_| bad())?;
    Ok(StoreCall {
        tenant: f.tenant,
        station,
        options,
        lineage,
        message: f.message,
    })
}

pub(crate) fn answer_error(node: &str, e: CallError) -> EngineError {
    match e {
        CallError::Remote(text) => serde_json::from_str::<EngineError>(&text)
            .unwrap_or_else(|_| EngineError::Storage(format!("node {node}: {text}"))),
        CallError::Unreachable(_) | CallError::Timeout(_) => {
            EngineError::NodeUnreachable(node.to_string())
        }
    }
}

fn error_text(e: &EngineError) -> String {
    serde_json::to_string(e).unwrap_or_else(|_| e.to_string())
}

impl StationEngine {
    /// Sends a publish to the node that holds `station`; `done` gets its answer.
    pub(crate) fn store_remote(
        &self,
        tenant: &TenantId,
        station: &RemoteStation,
        message: &Message,
        options: &PublishOptions,
        lineage: &Bytes,
        done: StoredCallback,
    ) {
        let node = station.node.clone();
        let (Some(cluster), Ok(runtime)) =
            (self.cluster.get(), tokio::runtime::Handle::try_current())
        else {
            done(Err(EngineError::NodeUnreachable(node)));
            return;
        };
        let _in = runtime.enter();
        // The station's `subject_transform`, as a local station's.
        let transformed = station.config.subject_transform.as_ref().and_then(|t| {
            let subject = junction_api::CompiledTransform::new(&t.source, &t.destination)
                .ok()?
                .apply_subject(&message.subject)?;
            Some(Message {
                subject,
                ..message.clone()
            })
        });
        let message = transformed.as_ref().unwrap_or(message);
        // With the node's other forwarded publishes, in one call
        // (`super::forward`).
        let body = encode_store(tenant, &station.config.name, message, options, lineage);
        self.forwarders.send(
            cluster,
            &node,
            super::forward::Forward {
                station: station.config.name.clone(),
                body,
                done,
                replicated: false,
            },
        );
    }

    /// Whether the schema of a station another node holds accepts `message`
    /// (schemas are in the meta group: every node has them).
    pub(crate) fn remote_schema_accepts(
        &self,
        tenant: &TenantId,
        station: &RemoteStation,
        message: &Message,
    ) -> bool {
        let Some(name) = &station.config.schema else {
            return true;
        };
        match self
            .schemas
            .validator(tenant, name, station.config.schema_version)
        {
            Some((_, validator)) => {
                super::schemas::validate_payload(&validator, &message.payload).is_ok()
            }
            // Not here (yet): the station's node decides.
            None => true,
        }
    }

    /// Stores a publish a peer sent for a station this node holds; the answer
    /// comes once it is stored (or refused).
    pub(crate) fn store_forwarded(
        &self,
        body: Bytes,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<PubAck, EngineError>>, EngineError> {
        let call = decode_store(body).map_err(EngineError::BadRequest)?;
        let tenant = self.tenant_named(&call.tenant);
        let station = self.stations.get(&tenant, &call.station)?;
        if let Err(violation) = self.check_schema(&station, &call.message, &call.lineage) {
            self.events.record(
                junction_api::SystemEventKind::SchemaViolation,
                super::events::About {
                    tenant: Some(&tenant),
                    station: Some(station.name()),
                    ..Default::default()
                },
                violation.to_string(),
            );
            return Err(EngineError::SchemaViolation(violation));
        }
        self.admit_to_tenant_storage(&station, &call.message)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        station.append(
            &call.message,
            &call.options,
            call.lineage,
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        );
        Ok(rx)
    }

    /// Sends this node's stations' states to every peer (one-way).
    pub(crate) fn send_states(&self) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        let peers = cluster.linked_peers();
        if peers.is_empty() {
            return;
        }
        let notes: Vec<StateNote> = self
            .stations
            .all()
            .into_iter()
            // A front-end's own stations are this node's, but for its
            // cluster-wide ones (`internal.rs`), which are replicated.
            .filter(|s| !super::ingress::is_internal_station(s.name()) || s.is_replicated())
            // A replicated station is reported by its leader only.
            .filter(|s| !s.is_replicated() || s.replica.get().is_some_and(|g| g.is_leader()))
            .map(|s| StateNote {
                tenant: s.tenant.0.to_string(),
                name: s.name().to_string(),
                state: s.state(),
                leader: s.replica.get().is_some(),
                replicas: s
                    .replica
                    .get()
                    .map(|g| self.replica_infos(g))
                    .unwrap_or_default(),
            })
            .collect();
        if notes.is_empty() {
            return;
        }
        let body = Bytes::from(serde_json::to_vec(&notes).unwrap_or_default());
        for peer in peers {
            cluster.notify(&peer, K_STATES, body.clone());
        }
    }

    /// Starts sending this node's stations' states to its peers, once a
    /// [`STATES_EVERY`], while the engine lives.
    pub(crate) fn start_state_notes(&self) {
        let me = self.me.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(STATES_EVERY).await;
                let Some(engine) = me.upgrade() else { return };
                if engine.cluster.get().is_some_and(|c| c.stopped()) {
                    return;
                }
                engine.send_states();
            }
        });
    }

    /// Delivers a request a peer passed on to this node's own services (the
    /// broker's internal subscriptions), never to clients.
    fn deliver_request(&self, body: Bytes) {
        let Ok(f) = junction_cluster::frame::message_from(body) else {
            tracing::warn!("a peer sent a malformed request; ignored");
            return;
        };
        let tenant = self.tenant_named(&f.tenant);
        let result = self.trie(&tenant).matches(&f.message.subject);
        let fanout = junction_api::FanoutId::next();
        let mut done = Vec::new();
        // The broker's own subscriptions are the ones not shared with peers (in a
        // cluster every client subscription is).
        for sub in result
            .plain
            .iter()
            .filter(|s| s.route.is_none() && !s.shared)
        {
            self.deliver_one(sub, &f.message, fanout, &mut done);
        }
        for (client, id) in done {
            self.remove_subscriptions(client, &[id]);
        }
    }

    /// Runs an admin call a peer passed on, for a station this node holds.
    pub(crate) fn station_call(&self, call: StationCall) -> Result<serde_json::Value, EngineError> {
        let json = |v: Result<serde_json::Value, serde_json::Error>| {
            v.map_err(|e| EngineError::Storage(e.to_string()))
        };
        match call {
            StationCall::Purge {
                tenant,
                station,
                filter,
                seq,
                keep,
                internal,
            } => {
                let purge = Purge { filter, seq, keep };
                let tenant = self.tenant_named(&tenant);
                let n = if internal {
                    self.purge_any(&tenant, &station, purge)?
                } else {
                    self.purge_station_now(&tenant, &station, purge)?
                };
                Ok(n.into())
            }
            StationCall::GetMessage {
                tenant,
                station,
                query,
            } => {
                let m =
                    self.get_message_in(&self.tenant_named(&tenant), &station, &query.into())?;
                json(serde_json::to_value(
                    super::internal::StoredWire::from_stored(&m),
                ))
            }
            StationCall::DeleteMessage {
                tenant,
                station,
                seq,
            } => {
                self.delete_message_now(&self.tenant_named(&tenant), &station, seq)?;
                Ok(serde_json::Value::Null)
            }
            StationCall::UpdateGroup {
                tenant,
                station,
                config,
            } => {
                let tenant = self.tenant_named(&tenant);
                json(serde_json::to_value(
                    self.update_group_now(&tenant, &station, *config)?,
                ))
            }
            StationCall::CreateGroup {
                tenant,
                station,
                config,
                internal,
            } => {
                let tenant = self.tenant_named(&tenant);
                json(serde_json::to_value(if internal {
                    self.create_group_any(&tenant, &station, *config)?
                } else {
                    self.create_group_now(&tenant, &station, *config)?
                }))
            }
            StationCall::GroupInfo {
                tenant,
                station,
                group,
            } => json(serde_json::to_value(junction_api::Broker::group_info(
                self,
                &self.tenant_named(&tenant),
                &station,
                &group,
            )?)),
            StationCall::DeleteGroup {
                tenant,
                station,
                group,
                internal,
            } => {
                let tenant = self.tenant_named(&tenant);
                if internal {
                    self.delete_group_any(&tenant, &station, &group)?;
                } else {
                    self.delete_group_now(&tenant, &station, &group)?;
                }
                Ok(serde_json::Value::Null)
            }
        }
    }

    /// Makes an admin call on the node that holds a station.
    pub(crate) async fn call_station_node(
        &self,
        node: &str,
        call: StationCall,
    ) -> Result<serde_json::Value, EngineError> {
        let cluster = self
            .cluster
            .get()
            .ok_or_else(|| EngineError::NodeUnreachable(node.to_string()))?;
        let body = Bytes::from(serde_json::to_vec(&call).unwrap_or_default());
        let answer = cluster
            .call(node, K_ADMIN, body, ADMIN_TIMEOUT)
            .await
            .map_err(|e| answer_error(node, e))?;
        serde_json::from_slice(&answer).map_err(|e| EngineError::Storage(e.to_string()))
    }

    /// `e` for a station this node does not hold: [`EngineError::StationElsewhere`]
    /// when another node holds it.
    pub(crate) fn elsewhere(&self, tenant: &TenantId, name: &str, e: EngineError) -> EngineError {
        match (&e, self.placed.get(tenant, name)) {
            (EngineError::StationNotFound, Some(r)) => EngineError::StationElsewhere {
                station: name.to_string(),
                node: r.node.clone(),
            },
            _ => e,
        }
    }

    /// Decodes a group from an admin call's answer.
    pub(crate) fn group_from(v: serde_json::Value) -> Result<GroupInfo, EngineError> {
        serde_json::from_value(v).map_err(|e| EngineError::Storage(e.to_string()))
    }
}

/// Answers the engine's calls from peers (kinds in `junction_cluster::ENGINE_KINDS`).
pub(crate) struct EngineCalls(pub std::sync::Weak<StationEngine>);

impl CallHandler for EngineCalls {
    fn call(&self, peer: &str, kind: u8, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>> {
        let Some(engine) = self.0.upgrade() else {
            return Box::pin(async { Err("this node is stopping".to_string()) });
        };
        // What must keep the link's order (stores, requests) is done here, before
        // the future; the wait for the answer is the future.
        if let Some(answer) = engine.remote_group_call(peer, kind, body.clone()) {
            return answer;
        }
        match kind {
            super::forward::K_STORE_BATCH => engine.store_forwarded_batch(body),
            K_STORE | super::replicated::K_STORE_LEADER => match engine
                .store_forwarded_replicated(kind, body.clone())
                .map(Ok)
                .unwrap_or_else(|| engine.store_forwarded(body))
            {
                Ok(rx) => Box::pin(async move {
                    match rx.await {
                        Ok(Ok(ack)) => serde_json::to_vec(&ack)
                            .map(Bytes::from)
                            .map_err(|e| e.to_string()),
                        Ok(Err(e)) => Err(error_text(&e)),
                        Err(_) => Err(error_text(&EngineError::ShuttingDown)),
                    }
                }),
                Err(e) => {
                    let text = error_text(&e);
                    Box::pin(async move { Err(text) })
                }
            },
            K_STATES => {
                if let Ok(notes) = serde_json::from_slice::<Vec<StateNote>>(&body) {
                    for n in notes {
                        let tenant = engine.tenant_named(&n.tenant);
                        if n.leader {
                            // A follower's own copy: keep the leader's view.
                            if let Ok(s) = engine.stations.get(&tenant, &n.name)
                                && let Some(g) = s.replica.get()
                            {
                                engine
                                    .replica_ops
                                    .leader_views
                                    .lock()
                                    .insert(g.id(), n.replicas);
                                continue;
                            }
                            engine.placed.set_leader(&tenant, &n.name, peer, n.replicas);
                        }
                        engine.placed.set_state(&tenant, &n.name, peer, n.state);
                    }
                }
                Box::pin(async { Ok(Bytes::new()) })
            }
            K_REQUEST => {
                engine.deliver_request(body);
                Box::pin(async { Ok(Bytes::new()) })
            }
            K_ADMIN => Box::pin(async move {
                let call: StationCall = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                let answer = tokio::task::spawn_blocking(move || engine.station_call(call))
                    .await
                    .map_err(|e| e.to_string())?;
                match answer {
                    Ok(v) => serde_json::to_vec(&v)
                        .map(Bytes::from)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(error_text(&e)),
                }
            }),
            _ => Box::pin(async move { Err(format!("unknown engine call {kind}")) }),
        }
    }
}
