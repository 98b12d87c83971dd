//! A front-end's own stations that are **cluster-wide** (MQTT's session records
//! and session queues, `$MQTT_sess` and `$MQTT_msgs`): asked for with the
//! metadata `junction.scope = "cluster"`, they are defined in the meta group like
//! a client's station, replicated (R3) when the cluster was started with at least
//! three nodes, held by the node that made them otherwise. So a front-end on any
//! node reads and changes the same state, and it survives the loss of a node.
//!
//! The front-end's calls for its own state are synchronous (made at session
//! set-up and teardown, never per message); on such a station they are run
//! where the station is served (its leader, or the node that holds it) and
//! waited for in place ([`tokio::task::block_in_place`]), as they wait for an
//! fsync on a station of this node.

use super::StationEngine;
use super::placement::StationCall;
use junction_api::{
    AdminFuture, Broker, EngineError, GroupConfig, GroupInfo, MessageQuery, Purge, StationConfig,
    StationInfo, StoredMessage, TenantId,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, UNIX_EPOCH};

/// Metadata key a front-end sets on an internal station that must be
/// cluster-wide; its value [`SCOPE_CLUSTER`].
pub const SCOPE_KEY: &str = "junction.scope";
/// See [`SCOPE_KEY`].
pub const SCOPE_CLUSTER: &str = "cluster";

/// Is `config` a front-end's own cluster-wide station (a reserved `$` name with
/// [`SCOPE_KEY`] = [`SCOPE_CLUSTER`])? Clients' creates refuse `$` names before
/// this is ever asked.
pub(crate) fn is_cluster_scoped(config: &StationConfig) -> bool {
    super::ingress::is_internal_station(&config.name)
        && config.metadata.get(SCOPE_KEY).map(String::as_str) == Some(SCOPE_CLUSTER)
}

/// A message query as a peer is asked it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub(crate) enum QueryWire {
    Seq { seq: u64 },
    LastBySubject { subject: String },
    NextBySubject { seq: u64, subject: String },
    FirstAtOrAfter { time_ns: u64 },
}

impl From<&MessageQuery> for QueryWire {
    fn from(q: &MessageQuery) -> Self {
        match q {
            MessageQuery::Seq(seq) => QueryWire::Seq { seq: *seq },
            MessageQuery::LastBySubject(s) => QueryWire::LastBySubject { subject: s.clone() },
            MessageQuery::NextBySubject { seq, subject } => QueryWire::NextBySubject {
                seq: *seq,
                subject: subject.clone(),
            },
            MessageQuery::FirstAtOrAfter(t) => QueryWire::FirstAtOrAfter {
                time_ns: t
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
            },
        }
    }
}

impl From<QueryWire> for MessageQuery {
    fn from(q: QueryWire) -> Self {
        match q {
            QueryWire::Seq { seq } => MessageQuery::Seq(seq),
            QueryWire::LastBySubject { subject } => MessageQuery::LastBySubject(subject),
            QueryWire::NextBySubject { seq, subject } => {
                MessageQuery::NextBySubject { seq, subject }
            }
            QueryWire::FirstAtOrAfter { time_ns } => {
                MessageQuery::FirstAtOrAfter(UNIX_EPOCH + Duration::from_nanos(time_ns))
            }
        }
    }
}

/// A stored message as a peer answers it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredWire {
    seq: u64,
    time_ns: u64,
    /// The message (subject, headers, payload) as the cluster link encodes one.
    message: Vec<u8>,
    lineage: Vec<u8>,
}

impl StoredWire {
    pub(crate) fn from_stored(m: &StoredMessage) -> Self {
        let bytes = super::remote_group::stored_bytes(m);
        StoredWire {
            seq: m.seq,
            time_ns: m
                .time
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            message: bytes.to_vec(),
            lineage: m.lineage.to_vec(),
        }
    }

    fn into_stored(self) -> Result<StoredMessage, EngineError> {
        let f = junction_cluster::frame::message_from(bytes::Bytes::from(self.message))
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        Ok(StoredMessage {
            seq: self.seq,
            subject: f.message.subject,
            headers: f.message.headers,
            payload: f.message.payload,
            time: UNIX_EPOCH + Duration::from_nanos(self.time_ns),
            lineage: bytes::Bytes::from(self.lineage),
        })
    }
}

/// How long a call on a cluster-wide station waits for it to have a leader.
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Waits in place for an admin call made from a front-end's synchronous call.
fn wait<T: Send + 'static>(call: AdminFuture<T>) -> Result<T, EngineError> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| EngineError::ShuttingDown)?;
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Err(EngineError::Storage(
            "a cluster-wide station is served only on a multi-threaded runtime".into(),
        ));
    }
    tokio::task::block_in_place(|| handle.block_on(call))
}

impl StationEngine {
    /// Is `name` a station of the cluster that this node does not serve on its
    /// own: replicated, or held by another node?
    pub(crate) fn served_by_cluster(&self, tenant: &TenantId, name: &str) -> bool {
        if self.meta().is_none() {
            return false;
        }
        match self.stations.get(tenant, name) {
            Ok(s) => s.is_replicated(),
            Err(_) => self.placed.get(tenant, name).is_some(),
        }
    }

    /// Creates (or finds) a front-end's cluster-wide station. While it is being
    /// defined in the meta group this answers `ReplicasUnavailable`; the
    /// front-end asks again.
    pub(crate) fn cluster_internal_station(
        &self,
        tenant: &TenantId,
        config: StationConfig,
    ) -> Result<StationInfo, EngineError> {
        if let Ok(info) = Broker::station_info(self, tenant, &config.name) {
            // Ready once it has a leader (just defined, its replicas elect one).
            self.group_node(tenant, &config.name)?;
            return Ok(info);
        }
        let name = config.name.clone();
        let key = (tenant.clone(), name.clone());
        let first = self.internal_creating.lock().insert(key.clone());
        if first
            && let (Some(me), Ok(runtime)) =
                (self.me.upgrade(), tokio::runtime::Handle::try_current())
        {
            let tenant = tenant.clone();
            runtime.spawn(async move {
                match me.clone().define_internal(tenant, config).await {
                    Ok(info) => {
                        tracing::info!(station = %info.config.name, replicas = info.config.replicas, "front-end station defined in the cluster")
                    }
                    Err(EngineError::StationNameInUse) => {}
                    Err(e) => {
                        tracing::info!(station = %key.1, error = %e, "front-end station not defined in the cluster yet")
                    }
                }
                me.internal_creating.lock().remove(&key);
            });
        }
        Err(EngineError::ReplicasUnavailable(format!(
            "station '{name}' is being defined in the cluster; try again"
        )))
    }

    /// Defines a front-end's station in the meta group: R3 when the cluster was
    /// started with three nodes or more (and waits until three are members),
    /// one copy on this node otherwise.
    async fn define_internal(
        self: std::sync::Arc<Self>,
        tenant: TenantId,
        mut config: StationConfig,
    ) -> Result<StationInfo, EngineError> {
        let (Some(meta), Some(cluster)) = (self.meta(), self.cluster()) else {
            return Err(EngineError::ShuttingDown);
        };
        let expected = cluster.seed_count() + 1;
        let node = cluster.node().to_string();
        config.replicas = if expected >= 3 { 3 } else { 1 };
        let config = super::stations::normalize(config)?;
        let (replicas, members, group) = if config.replicas > 1 {
            let (replicas, members) = self.choose_replicas(config.replicas)?;
            (
                replicas,
                members,
                rand::random::<u64>().clamp(1, u64::MAX - 1),
            )
        } else {
            Default::default()
        };
        let call = super::meta::MetaCall::CreateStation {
            tenant: tenant.0.to_string(),
            config,
            node,
            now_ns: super::schemas::now(),
            replicas,
            members,
            group,
        };
        self.cluster_station_call(meta, tenant, call).await
    }

    /// [`Broker::create_internal_group`] on a cluster-wide station.
    pub(crate) fn cluster_internal_group(
        &self,
        tenant: &TenantId,
        station: &str,
        config: GroupConfig,
    ) -> Result<GroupInfo, EngineError> {
        let call = StationCall::CreateGroup {
            tenant: tenant.0.to_string(),
            station: station.to_string(),
            config: Box::new(config),
            internal: true,
        };
        let v = self.station_call_anywhere(tenant, station, call)?;
        Self::group_from(v)
    }

    /// [`Broker::delete_internal_group`] on a cluster-wide station.
    pub(crate) fn cluster_internal_group_delete(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
    ) -> Result<(), EngineError> {
        let call = StationCall::DeleteGroup {
            tenant: tenant.0.to_string(),
            station: station.to_string(),
            group: group.to_string(),
            internal: true,
        };
        self.station_call_anywhere(tenant, station, call)
            .map(|_| ())
    }

    /// [`Broker::purge_internal_station`] on a cluster-wide station.
    pub(crate) fn cluster_internal_purge(
        &self,
        tenant: &TenantId,
        station: &str,
        purge: Purge,
    ) -> Result<u64, EngineError> {
        let call = StationCall::Purge {
            tenant: tenant.0.to_string(),
            station: station.to_string(),
            filter: purge.filter,
            seq: purge.seq,
            keep: purge.keep,
            internal: true,
        };
        let v = self.station_call_anywhere(tenant, station, call)?;
        Ok(v.as_u64().unwrap_or(0))
    }

    /// Reads a message of a station another node holds, from that node (a
    /// station this node has a copy of is read here).
    pub(crate) fn get_message_elsewhere(
        &self,
        tenant: &TenantId,
        station: &str,
        query: &MessageQuery,
    ) -> Result<StoredMessage, EngineError> {
        let call = StationCall::GetMessage {
            tenant: tenant.0.to_string(),
            station: station.to_string(),
            query: query.into(),
        };
        let v = self.station_call_anywhere(tenant, station, call)?;
        let wire: StoredWire =
            serde_json::from_value(v).map_err(|e| EngineError::Storage(e.to_string()))?;
        wire.into_stored()
    }

    /// Runs `call` where the station is served (here when this node leads it)
    /// and waits for its answer.
    fn station_call_anywhere(
        &self,
        tenant: &TenantId,
        station: &str,
        call: StationCall,
    ) -> Result<serde_json::Value, EngineError> {
        let me = self.me.upgrade().ok_or(EngineError::ShuttingDown)?;
        let (tenant, station) = (tenant.clone(), station.to_string());
        wait(Box::pin(async move {
            // A replicated station between leaders (an election takes about
            // 2 s) is waited for, up to LEADER_WAIT.
            let deadline = tokio::time::Instant::now() + LEADER_WAIT;
            let node = loop {
                match me.group_node(&tenant, &station) {
                    Err(EngineError::ReplicasUnavailable(_))
                        if tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    r => break r?,
                }
            };
            match node {
                Some(node) => me.call_station_node(&node, call).await,
                None => tokio::task::spawn_blocking(move || me.station_call(call))
                    .await
                    .unwrap_or_else(|e| Err(EngineError::Storage(e.to_string()))),
            }
        }))
    }
}
