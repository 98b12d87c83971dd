//! The meta Raft group (openraft): what every node of a cluster agrees on that is
//! not message data. Membership, the node registry (ids are given out by the log
//! and never reused) and the definitions the host keeps there (stations, groups,
//! schemas, routing rules), as a map from key to JSON.
//!
//! - **Storage.** Log entries, the vote and the committed pointer go to the store's
//!   `raft` keyspace through the store's one ordered writer queue, fsynced by the
//!   group commit before openraft is told they are durable. The state machine is
//!   written there too, after every applied batch.
//! - **Network.** Raft RPCs, joins and forwarded proposals travel as calls over the
//!   existing links ([`crate::Cluster::call`]), one connection per node pair.
//! - **Forming.** A node with no identity yet asks its linked peers whether one of
//!   them is in a group; if one is, it joins through it (the leader gives it the
//!   next id, adds it as a learner and, while there are fewer than [`MAX_VOTERS`]
//!   voters, promotes it). If none is after [`SETTLE`], the node with the lowest
//!   name among those linked starts the group alone.
//! - **Changes.** A proposal made on a follower is forwarded to the leader. One
//!   membership change runs at a time (a lock on the leader).

// openraft's storage traits return its `StorageError` (over 200 bytes); the
// helpers that feed them return it too, rather than boxing and unboxing it.
#![allow(clippy::result_large_err)]

use crate::{CallError, CallHandler, Cluster};
use bytes::Bytes;
use futures::future::BoxFuture;
use junction_storage::Store;
use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    ChangeMembers, Entry, EntryPayload, ErrorVerb, LogId, RaftNetwork, RaftNetworkFactory,
    RaftSnapshotBuilder, ServerState, SnapshotMeta, StorageError, StoredMembership,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Cursor;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// A meta group member as Raft knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaNode {
    /// Node name (the links' name for it).
    pub name: String,
    /// Its cluster address.
    pub addr: String,
}

impl fmt::Display for MetaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

/// Definitions the host keeps in the group: key → JSON.
pub type Defs = BTreeMap<String, serde_json::Value>;

/// One change to [`Defs`]: the key and its new value (`None`: removed).
pub type Change = (String, Option<serde_json::Value>);

/// What the log holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// A node joins: it gets the next id (never one given before).
    AddNode {
        /// Node name.
        name: String,
        /// Cluster address.
        addr: String,
    },
    /// A node left or was removed; its id is never given again.
    RemoveNode {
        /// Its id.
        id: u64,
    },
    /// An admin call, planned against the definitions by the host on every node
    /// ([`MetaHost::plan`]).
    Admin {
        /// The call, as the host encodes it.
        call: serde_json::Value,
        /// Chosen by the proposing node: a proposal sent again (its answer was
        /// lost) is answered from [`MetaState::recent`], never applied twice.
        #[serde(default)]
        id: Option<String>,
    },
}

/// Most admin proposals whose answers are remembered for proposals sent again.
const RECENT: usize = 1000;

/// What applying a [`Command`] answered: a JSON value or an error text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer(pub Result<serde_json::Value, String>);

openraft::declare_raft_types!(
    /// The meta group's Raft types.
    pub MetaConfig:
        D = Command,
        R = Answer,
        NodeId = u64,
        Node = MetaNode,
);

type MetaRaft = openraft::Raft<MetaConfig>;
type SErr = StorageError<u64>;

/// Most voters; further nodes are learners.
pub const MAX_VOTERS: usize = 5;

/// A node that has been cut off from the meta quorum this long (more than an
/// election) closes its clients' connections, so that they fail over.
pub const CUT_OFF_AFTER: Duration = Duration::from_secs(3);

/// How long a node with no identity waits for a group to show up before the
/// lowest-named linked node starts one.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The side of the meta group the engine implements.
pub trait MetaHost: Send + Sync + 'static {
    /// Plans an admin call against the definitions: the changes it makes and the
    /// answer. Must be deterministic (every node plans every call).
    fn plan(
        &self,
        defs: &Defs,
        call: &serde_json::Value,
    ) -> Result<(Vec<Change>, serde_json::Value), String>;
    /// Definitions changed on this node: bring the engine in line.
    fn changed(&self, changes: Vec<Change>) -> BoxFuture<'static, ()>;
    /// The definitions as a whole (at start and after a snapshot was installed).
    fn reset(&self, defs: Defs) -> BoxFuture<'static, ()>;
}

/// Why a meta call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// No leader could be reached in time (no quorum, or an election is on).
    #[error("no meta leader reachable: {0}")]
    NoLeader(String),
    /// The call was refused (the host's plan, or a membership rule).
    #[error("{0}")]
    Refused(String),
}

// Call kinds on the links.
const K_APPEND: u8 = 1;
const K_VOTE: u8 = 2;
const K_SNAPSHOT: u8 = 3;
const K_PROBE: u8 = 10;
const K_JOIN: u8 = 11;
const K_PROPOSE: u8 = 12;
const K_REMOVE: u8 = 13;
/// Marks a leader-side call passed on by a follower: never passed on again.
const FORWARDED: u8 = 0x80;

pub use crate::raftlog::LogStore;
use crate::raftlog::{T_IDENTITY, T_SM, T_SNAP, get_json, key, put_json, serr, write};

/// What the state machine holds; written whole after every applied batch, and
/// what a snapshot carries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetaState {
    /// Last applied entry.
    pub last_applied: Option<LogId<u64>>,
    /// Membership as of the last applied membership entry.
    pub membership: StoredMembership<u64, MetaNode>,
    /// The next node id to give out (ids start at 1).
    pub next_id: u64,
    /// Nodes with an id, by id.
    pub nodes: BTreeMap<u64, MetaNode>,
    /// The host's definitions.
    pub defs: Defs,
    /// Names of nodes removed from the cluster (and not back since).
    #[serde(default)]
    pub removed: BTreeSet<String>,
    /// The last admin proposals' ids and answers (at most [`RECENT`]).
    #[serde(default)]
    pub recent: std::collections::VecDeque<(String, Answer)>,
}

/// The meta state machine.
#[derive(Clone)]
pub struct StateMachine {
    store: Store,
    group: u64,
    state: Arc<RwLock<MetaState>>,
    host: Option<Weak<dyn MetaHost>>,
}

impl StateMachine {
    /// The state machine of `group`, loaded from `store`.
    pub fn open(
        store: Store,
        group: u64,
        host: Option<Weak<dyn MetaHost>>,
    ) -> Result<StateMachine, SErr> {
        let state = get_json::<MetaState>(&store, &key(group, T_SM, 0))?.unwrap_or_default();
        Ok(StateMachine {
            store,
            group,
            state: Arc::new(RwLock::new(state)),
            host,
        })
    }

    /// The state, shared (read it, never write it).
    pub fn state(&self) -> Arc<RwLock<MetaState>> {
        self.state.clone()
    }

    fn host(&self) -> Option<Arc<dyn MetaHost>> {
        self.host.as_ref().and_then(Weak::upgrade)
    }
}

fn apply_command(
    s: &mut MetaState,
    host: Option<&Arc<dyn MetaHost>>,
    index: u64,
    cmd: &Command,
    changes: &mut Vec<Change>,
) -> Answer {
    match cmd {
        Command::AddNode { name, addr } => {
            // A name seen before under another id (a wiped node) retires that id.
            s.nodes.retain(|_, n| n.name != *name);
            s.removed.remove(name);
            let id = s.next_id.max(1);
            s.next_id = id + 1;
            s.nodes.insert(
                id,
                MetaNode {
                    name: name.clone(),
                    addr: addr.clone(),
                },
            );
            Answer(Ok(serde_json::json!({ "id": id })))
        }
        Command::RemoveNode { id } => {
            if let Some(n) = s.nodes.remove(id) {
                s.removed.insert(n.name);
            }
            Answer(Ok(serde_json::Value::Null))
        }
        Command::Admin { call, id } => {
            if let Some(id) = id
                && let Some((_, answer)) = s.recent.iter().find(|(i, _)| i == id)
            {
                return answer.clone();
            }
            let answer = apply_admin(s, host, index, call, changes);
            if let Some(id) = id {
                if s.recent.len() >= RECENT {
                    s.recent.pop_front();
                }
                s.recent.push_back((id.clone(), answer.clone()));
            }
            answer
        }
    }
}

fn apply_admin(
    s: &mut MetaState,
    host: Option<&Arc<dyn MetaHost>>,
    index: u64,
    call: &serde_json::Value,
    changes: &mut Vec<Change>,
) -> Answer {
    match host {
        None => Answer(Err("no host to apply admin calls".into())),
        Some(h) => match h.plan(&s.defs, call) {
            Err(e) => Answer(Err(e)),
            Ok((planned, answer)) => {
                for (k, v) in &planned {
                    match v {
                        Some(v) => s.defs.insert(k.clone(), v.clone()),
                        None => s.defs.remove(k),
                    };
                }
                changes.extend(planned);
                Answer(Ok(serde_json::json!({ "index": index, "value": answer })))
            }
        },
    }
}

impl RaftStateMachine<MetaConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, MetaNode>), SErr> {
        let s = self.state.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Answer>, SErr>
    where
        I: IntoIterator<Item = Entry<MetaConfig>> + Send,
        I::IntoIter: Send,
    {
        let host = self.host();
        let mut answers = Vec::new();
        let mut changes = Vec::new();
        let snapshot = {
            let mut s = self.state.write();
            for e in entries {
                s.last_applied = Some(e.log_id);
                answers.push(match &e.payload {
                    EntryPayload::Blank => Answer(Ok(serde_json::Value::Null)),
                    EntryPayload::Normal(cmd) => {
                        apply_command(&mut s, host.as_ref(), e.log_id.index, cmd, &mut changes)
                    }
                    EntryPayload::Membership(m) => {
                        // Members are registered (the founder's id 1 comes from
                        // the first membership entry); ids only ever grow.
                        for (id, node) in m.nodes() {
                            if !s.nodes.contains_key(id) && *id >= s.next_id {
                                s.nodes.insert(*id, node.clone());
                            }
                            s.next_id = s.next_id.max(id + 1);
                        }
                        s.membership = StoredMembership::new(Some(e.log_id), m.clone());
                        Answer(Ok(serde_json::Value::Null))
                    }
                });
            }
            put_json(key(self.group, T_SM, 0), &*s)?
        };
        write(&self.store, vec![snapshot]).await?;
        if !changes.is_empty()
            && let Some(h) = host
        {
            h.changed(changes).await;
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, MetaNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let data = snapshot.into_inner();
        let mut installed: MetaState =
            serde_json::from_slice(&data).map_err(|e| serr(ErrorVerb::Read, e))?;
        installed.last_applied = meta.last_log_id;
        installed.membership = meta.last_membership.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        write(
            &self.store,
            vec![
                put_json(key(self.group, T_SM, 0), &installed)?,
                put_json(key(self.group, T_SNAP, 0), &stored)?,
            ],
        )
        .await?;
        let defs = installed.defs.clone();
        *self.state.write() = installed;
        if let Some(h) = self.host() {
            h.reset(defs).await;
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<MetaConfig>>, SErr> {
        let stored: Option<StoredSnapshot> = get_json(&self.store, &key(self.group, T_SNAP, 0))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, MetaNode>,
    data: Vec<u8>,
}

impl RaftSnapshotBuilder<MetaConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetaConfig>, SErr> {
        let (data, meta) = {
            let s = self.state.read();
            let data = serde_json::to_vec(&*s).map_err(|e| serr(ErrorVerb::Write, e))?;
            let meta = SnapshotMeta {
                last_log_id: s.last_applied,
                last_membership: s.membership.clone(),
                snapshot_id: format!(
                    "{}-{}",
                    s.last_applied.map_or(0, |l| l.index),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis())
                ),
            };
            (data, meta)
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        write(
            &self.store,
            vec![put_json(key(self.group, T_SNAP, 0), &stored)?],
        )
        .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// Raft RPCs over the links.
#[derive(Clone)]
struct Net {
    cluster: Cluster,
}

struct NetConn {
    cluster: Cluster,
    target: u64,
    name: String,
}

impl RaftNetworkFactory<MetaConfig> for Net {
    type Network = NetConn;
    async fn new_client(&mut self, target: u64, node: &MetaNode) -> NetConn {
        NetConn {
            cluster: self.cluster.clone(),
            target,
            name: node.name.clone(),
        }
    }
}

impl NetConn {
    async fn rpc<
        Req: Serialize,
        Resp: for<'a> Deserialize<'a>,
        E: std::error::Error + for<'a> Deserialize<'a>,
    >(
        &self,
        kind: u8,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<u64, MetaNode, RaftError<u64, E>>> {
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer = self
            .cluster
            .call(&self.name, kind, Bytes::from(body), timeout)
            .await
            // Any failure to get an answer (no link, no answer in time, the peer
            // not in the group yet) is Unreachable: openraft backs off before
            // trying that node again.
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let result: Result<Resp, RaftError<u64, E>> = serde_json::from_slice(&answer)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<MetaConfig> for NetConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MetaConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, MetaNode, RaftError<u64>>> {
        self.rpc(K_APPEND, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<MetaConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, MetaNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.rpc(K_SNAPSHOT, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, MetaNode, RaftError<u64>>> {
        self.rpc(K_VOTE, &rpc, option.hard_ttl()).await
    }
}

/// This node's identity in the group, kept once given.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    id: u64,
    cluster: String,
}

/// Forgets this node's meta group (its id, votes, log and state): it then looks
/// for a group to join at its next start, as a new node. Only for a node that
/// was a cluster of one with nothing defined (`junction cluster join`).
pub async fn forget_meta(store: &Store) -> Result<(), String> {
    crate::raftlog::remove_group(store, GROUP)
        .await
        .map_err(|e| e.to_string())
}

/// The cluster a data directory's store belongs to, once its node was given a
/// meta group id there; checked before anything binds.
pub fn stored_cluster(store: &Store) -> Result<Option<String>, String> {
    get_json::<Identity>(store, &key(GROUP, T_IDENTITY, 0))
        .map(|i| i.map(|i| i.cluster))
        .map_err(|e| e.to_string())
}

/// What a probe answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Probe {
    /// The answering node is in a group.
    member: bool,
    /// Its id there (0: none).
    #[serde(default)]
    id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Join {
    name: String,
    addr: String,
}

/// The meta group's view, for status pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaStatus {
    /// This node's id (0 until it has one).
    pub id: u64,
    /// The leader's name, when one is known.
    pub leader: Option<String>,
    /// Voters' names.
    pub voters: BTreeSet<String>,
    /// Learners' names.
    pub learners: BTreeSet<String>,
    /// Every node with an id: (id, name, address).
    pub nodes: Vec<(u64, String, String)>,
    /// Names of nodes removed from the cluster.
    pub removed: BTreeSet<String>,
    /// This node's Raft role: "leader", "follower", "candidate", "learner" or
    /// "joining".
    pub role: String,
    /// Last log index applied here.
    pub applied: u64,
    /// How many meta log entries each member is behind the leader, by name
    /// (known on the leader only; empty elsewhere).
    pub lag: BTreeMap<String, u64>,
}

/// One node's handle on the meta group. Cheap to clone.
#[derive(Clone)]
pub struct MetaGroup {
    inner: Arc<MetaInner>,
}

struct MetaInner {
    cluster: Cluster,
    store: Store,
    host: Option<Weak<dyn MetaHost>>,
    raft: tokio::sync::OnceCell<(MetaRaft, Arc<RwLock<MetaState>>)>,
    /// One membership change at a time (on the leader).
    changing: tokio::sync::Mutex<()>,
    started: Instant,
    /// Log entries between snapshots.
    snapshot_every: u64,
    /// The replicated stations' groups on this node.
    replicas: Arc<crate::replica::Replicas>,
}

const GROUP: u64 = 0;

/// Meta log entries between snapshots, by default ([`MetaGroup::start`]).
pub const SNAPSHOT_EVERY: u64 = 1000;

fn raft_config(cluster: &str, snapshot_every: u64) -> Result<Arc<openraft::Config>, String> {
    // fsync of a small write takes ~0.2 ms at p50 and a few ms at p99 here
    // (`junction_storage_fsync_seconds`): the election timeout is over 10× a
    // slow fsync, and short enough that a dead leader is replaced in under 2 s.
    let config = openraft::Config {
        cluster_name: cluster.to_string(),
        heartbeat_interval: 150,
        election_timeout_min: 750,
        election_timeout_max: 1100,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_every.max(1)),
        max_in_snapshot_log_to_keep: (snapshot_every / 10).min(100),
        purge_batch_size: 1,
        ..Default::default()
    };
    config.validate().map(Arc::new).map_err(|e| e.to_string())
}

impl MetaGroup {
    /// Starts this node's side of the meta group: resumes its identity if it has
    /// one, else looks for a group to join (or starts one).
    /// A snapshot is taken every `snapshot_every` log entries ([`SNAPSHOT_EVERY`]
    /// by default): the log before it is purged, and a node that joins or falls
    /// behind is sent the snapshot instead of the entries.
    pub async fn start(
        cluster: Cluster,
        store: Store,
        host: Option<Weak<dyn MetaHost>>,
        snapshot_every: u64,
    ) -> Result<MetaGroup, String> {
        let inner = Arc::new(MetaInner {
            cluster: cluster.clone(),
            store: store.clone(),
            host,
            raft: tokio::sync::OnceCell::new(),
            changing: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            snapshot_every,
            replicas: Arc::new(crate::replica::Replicas::new(cluster.clone(), store)),
        });
        let group = MetaGroup { inner };
        cluster.set_handler(Arc::new(Handler(Arc::downgrade(&group.inner))));
        let identity: Option<Identity> =
            get_json(&group.inner.store, &key(GROUP, T_IDENTITY, 0)).map_err(|e| e.to_string())?;
        match identity {
            Some(i) if i.cluster == cluster.name() => {
                group.run_raft(i.id).await?;
                tracing::info!(id = i.id, "meta group resumed");
            }
            Some(i) => {
                return Err(format!(
                    "this data directory belongs to cluster {:?}, not {:?}",
                    i.cluster,
                    cluster.name()
                ));
            }
            None => {
                let g = group.clone();
                tokio::spawn(async move { g.find_group().await });
            }
        }
        Ok(group)
    }

    async fn run_raft(&self, id: u64) -> Result<MetaRaft, String> {
        let sm = StateMachine::open(self.inner.store.clone(), GROUP, self.inner.host.clone())
            .map_err(|e| e.to_string())?;
        let state = sm.state();
        if let Some(h) = self.inner.host.as_ref().and_then(Weak::upgrade) {
            let defs = state.read().defs.clone();
            h.reset(defs).await;
        }
        let raft = MetaRaft::new(
            id,
            raft_config(self.inner.cluster.name(), self.inner.snapshot_every)?,
            Net {
                cluster: self.inner.cluster.clone(),
            },
            LogStore::new(self.inner.store.clone(), GROUP),
            sm,
        )
        .await
        .map_err(|e| e.to_string())?;
        let _ = self.inner.raft.set((raft.clone(), state));
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.cluster.stopped() {
                    return;
                }
                MetaGroup { inner }.control().await;
            }
        });
        Ok(raft)
    }

    fn raft(&self) -> Option<&MetaRaft> {
        self.inner.raft.get().map(|(r, _)| r)
    }

    /// The state as applied on this node.
    pub fn state(&self) -> Option<MetaState> {
        self.inner.raft.get().map(|(_, s)| s.read().clone())
    }

    async fn save_identity(&self, id: u64) -> Result<(), String> {
        let identity = Identity {
            id,
            cluster: self.inner.cluster.name().to_string(),
        };
        write(
            &self.inner.store,
            vec![put_json(key(GROUP, T_IDENTITY, 0), &identity).map_err(|e| e.to_string())?],
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Until this node is in a group: join one a linked peer is in, or start one.
    async fn find_group(&self) {
        let me = self.inner.cluster.node().to_string();
        let addr = self.inner.cluster.route_url().to_string();
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if self.stopped() {
                return;
            }
            let peers: Vec<String> = self
                .inner
                .cluster
                .nodes()
                .into_iter()
                .filter(|n| n.online && !n.this)
                .map(|n| n.name)
                .collect();
            let mut member = None;
            for p in &peers {
                if let Ok(b) = self
                    .inner
                    .cluster
                    .call(p, K_PROBE, Bytes::new(), Duration::from_secs(2))
                    .await
                    && serde_json::from_slice::<Probe>(&b).is_ok_and(|pr| pr.member)
                {
                    member = Some(p.clone());
                    break;
                }
            }
            if let Some(p) = member {
                let join = Join {
                    name: me.clone(),
                    addr: addr.clone(),
                };
                let body = Bytes::from(serde_json::to_vec(&join).unwrap_or_default());
                match self
                    .inner
                    .cluster
                    .call(&p, K_JOIN, body, Duration::from_secs(10))
                    .await
                {
                    Ok(b) => {
                        let id = match serde_json::from_slice::<Answer>(&b) {
                            Ok(Answer(Ok(v))) => v["id"].as_u64(),
                            Ok(Answer(Err(e))) => {
                                tracing::info!(via = %p, error = %e, "joining the meta group was refused; retrying");
                                None
                            }
                            Err(e) => {
                                tracing::warn!(via = %p, error = %e, "unreadable join answer");
                                None
                            }
                        };
                        let Some(id) = id else {
                            continue;
                        };
                        if let Err(e) = self.save_identity(id).await {
                            tracing::error!(error = %e, "cannot keep this node's meta id");
                            continue;
                        }
                        if let Err(e) = self.run_raft(id).await {
                            tracing::error!(error = %e, "cannot start the meta group");
                            return;
                        }
                        tracing::info!(id, via = %p, "joined the meta group");
                        // The leader adds it as a learner once its Raft answers.
                        return;
                    }
                    Err(e) => {
                        tracing::info!(via = %p, error = %e, "joining the meta group failed; retrying");
                        continue;
                    }
                }
            }
            if self.inner.started.elapsed() < SETTLE {
                continue;
            }
            if peers.iter().any(|p| *p < me) {
                continue;
            }
            // Every seed this node was given must be linked (or 30 s gone by), so
            // that two halves of a mesh still forming do not each start a group.
            let seeds = self.inner.cluster.seed_count();
            if peers.len() < seeds && self.inner.started.elapsed() < Duration::from_secs(30) {
                continue;
            }
            // The lowest-named node that sees no group starts one, with id 1.
            if let Err(e) = self.save_identity(1).await {
                tracing::error!(error = %e, "cannot keep this node's meta id");
                continue;
            }
            let raft = match self.run_raft(1).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the meta group");
                    return;
                }
            };
            let node = MetaNode {
                name: me.clone(),
                addr: addr.clone(),
            };
            // The first membership entry registers this node as id 1.
            if let Err(e) = raft.initialize(BTreeMap::from([(1u64, node)])).await {
                tracing::warn!(error = %e, "meta group initialize");
            }
            tracing::info!(node = %me, "started the meta group");
            return;
        }
    }

    /// The leader's id and name, as this node knows it.
    fn leader(&self) -> Option<(u64, String)> {
        let (raft, state) = self.inner.raft.get()?;
        let m = raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let name = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.name.clone())
            .or_else(|| state.read().nodes.get(&id).map(|n| n.name.clone()))?;
        Some((id, name))
    }

    fn is_leader(&self) -> bool {
        self.raft()
            .is_some_and(|r| r.metrics().borrow().state == ServerState::Leader)
    }

    /// Proposes a command; forwarded to the leader when this node is not it.
    /// Waits up to 5 s for a leader.
    pub async fn propose(&self, cmd: Command) -> Result<serde_json::Value, MetaError> {
        let body = serde_json::to_vec(&cmd).map_err(|e| MetaError::Refused(e.to_string()))?;
        self.leader_call(K_PROPOSE, Bytes::from(body)).await
    }

    /// Runs a call on the leader (here when this node is it), retrying while
    /// there is no leader, for up to 5 s.
    async fn leader_call(&self, kind: u8, body: Bytes) -> Result<serde_json::Value, MetaError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = String::from("no leader elected");
        loop {
            let outcome = if self.is_leader() {
                Some(self.on_leader(kind, body.clone()).await)
            } else if let Some((_, name)) = self.leader() {
                Some(
                    self.inner
                        .cluster
                        .call(&name, kind, body.clone(), LEADER_CALL_TIMEOUT)
                        .await
                        .map_err(leader_call_error),
                )
            } else {
                None
            };
            match outcome {
                Some(Ok(b)) => {
                    let answer: Answer = serde_json::from_slice(&b)
                        .map_err(|e| MetaError::Refused(e.to_string()))?;
                    return answer.0.map_err(MetaError::Refused);
                }
                Some(Err(text)) if text.starts_with(RETRY) => {
                    last = text[RETRY.len()..].to_string()
                }
                Some(Err(text)) => return Err(MetaError::Refused(text)),
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(MetaError::NoLeader(last));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A leader-side call made by a peer: handled here when this node leads, else
    /// passed on once to the leader it knows (marked, so it is not passed on again).
    async fn to_leader(&self, kind: u8, body: Bytes) -> Result<Bytes, String> {
        if self.is_leader() {
            return self.on_leader(kind, body).await;
        }
        match self.leader() {
            Some((_, name)) if name != self.inner.cluster.node() => self
                .inner
                .cluster
                .call(&name, kind | FORWARDED, body, LEADER_CALL_TIMEOUT)
                .await
                .map_err(leader_call_error),
            _ => Err(format!("{RETRY}no meta leader known")),
        }
    }

    /// A leader-side call: answers an encoded [`Answer`], or an error text that
    /// starts with [`RETRY`] when the caller should try again (not the leader
    /// any more).
    async fn on_leader(&self, kind: u8, body: Bytes) -> Result<Bytes, String> {
        let Some(raft) = self.raft() else {
            return Err(format!("{RETRY}this node is not in the meta group yet"));
        };
        if !self.is_leader() {
            return Err(format!("{RETRY}not the meta leader"));
        }
        let answer = match kind {
            K_PROPOSE => {
                let cmd: Command = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                // A leader cut off from its quorum proposes nothing: the caller
                // gets "no leader" and nothing is changed.
                if !matches!(
                    tokio::time::timeout(Duration::from_secs(1), raft.ensure_linearizable()).await,
                    Ok(Ok(_))
                ) {
                    return Err(format!("{RETRY}no quorum confirms this leader"));
                }
                match tokio::time::timeout(PROPOSE_TIMEOUT, raft.client_write(cmd)).await {
                    Ok(r) => write_answer(r)?,
                    Err(_) => return Err(UNCONFIRMED.to_string()),
                }
            }
            K_JOIN => {
                let join: Join = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                self.admit(raft, join).await?
            }
            K_REMOVE => {
                let name: String = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                self.remove_node(raft, &name).await?
            }
            _ => return Err(format!("unknown meta call {kind}")),
        };
        serde_json::to_vec(&answer)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    /// Leader: gives a joining node its id, adds it as a learner and promotes it
    /// while there are fewer than [`MAX_VOTERS`] voters.
    async fn admit(&self, raft: &MetaRaft, join: Join) -> Result<Answer, String> {
        let _one = self.inner.changing.lock().await;
        let state = self.state().unwrap_or_default();
        // A node of that name with an id already: a wiped node coming back. Its
        // old id leaves the membership and is never given again.
        let old: Vec<u64> = state
            .nodes
            .iter()
            .filter(|(_, n)| n.name == join.name)
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            self.drop_member(raft, *id).await?;
        }
        let answer = write_answer(
            raft.client_write(Command::AddNode {
                name: join.name.clone(),
                addr: join.addr.clone(),
            })
            .await,
        )?;
        let Some(id) = answer.0.as_ref().ok().and_then(|v| v["id"].as_u64()) else {
            return Ok(answer);
        };
        // The joiner starts its Raft once it has the id; the membership
        // controller adds it as a learner once it answers, and promotes it once
        // it has caught up.
        tracing::info!(id, node = %join.name, "node admitted to the meta group");
        Ok(answer)
    }

    /// The leader's membership controller, once a second: one change per round,
    /// under the one-change lock.
    /// - a node in the registry but not in the membership (just admitted) is added
    ///   as a learner once it answers under that id;
    /// - a member that is not in the registry (retired) is taken out;
    /// - while there are fewer than [`MAX_VOTERS`] voters, a learner that has
    ///   caught up is promoted.
    async fn control(&self) {
        let Some(raft) = self.raft().cloned() else {
            return;
        };
        let m = raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return;
        }
        let Some(state) = self.state() else {
            return;
        };
        let _one = self.inner.changing.lock().await;
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
        // Retired ids still in the membership.
        if let Some(ghost) = members.iter().find(|id| !state.nodes.contains_key(id)) {
            let change = if voters.contains(ghost) {
                ChangeMembers::RemoveVoters(BTreeSet::from([*ghost]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([*ghost]))
            };
            if voters.len() > 1 || !voters.contains(ghost) {
                match raft.change_membership(change, false).await {
                    Ok(_) => tracing::info!(id = ghost, "meta group: retired id taken out"),
                    Err(e) => {
                        tracing::info!(id = ghost, error = %e, "meta group: taking a retired id out failed")
                    }
                }
            }
            return;
        }
        // Admitted nodes not yet learners.
        for (id, node) in &state.nodes {
            if members.contains(id) {
                continue;
            }
            let answers = self
                .inner
                .cluster
                .call(&node.name, K_PROBE, Bytes::new(), Duration::from_secs(1))
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<Probe>(&b).ok())
                .is_some_and(|p| p.member && p.id == *id);
            if answers {
                match raft.add_learner(*id, node.clone(), false).await {
                    Ok(_) => tracing::info!(id, node = %node.name, "meta group: learner added"),
                    Err(e) => tracing::info!(id, error = %e, "meta group: adding a learner failed"),
                }
                return;
            }
        }
        // Promote a caught-up learner.
        if voters.len() < MAX_VOTERS {
            let last = m.last_log_index.unwrap_or(0);
            let caught_up = |id: &u64| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned())
                    .flatten()
                    .is_some_and(|l| l.index + 1 >= last)
            };
            if let Some(l) = membership.learner_ids().find(|id| caught_up(id)) {
                match raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([l])), true)
                    .await
                {
                    Ok(_) => tracing::info!(id = l, "meta group: node promoted to voter"),
                    Err(e) => tracing::info!(id = l, error = %e, "meta group: promotion failed"),
                }
            }
        }
    }

    /// Leader: takes `id` out of the membership (voter or learner) and retires it.
    async fn drop_member(&self, raft: &MetaRaft, id: u64) -> Result<(), String> {
        // Retired first: a leader removing itself stops leading once the
        // membership change commits.
        write_answer(raft.client_write(Command::RemoveNode { id }).await)?;
        let m = raft.metrics().borrow().membership_config.clone();
        if m.membership().voter_ids().any(|v| v == id) {
            write_answer(
                raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                    .await,
            )?;
        } else if m.membership().get_node(&id).is_some() {
            write_answer(
                raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await,
            )?;
        }
        Ok(())
    }

    /// Leader: removes the node called `name` from the group.
    async fn remove_node(&self, raft: &MetaRaft, name: &str) -> Result<Answer, String> {
        let _one = self.inner.changing.lock().await;
        let state = self.state().unwrap_or_default();
        let Some(id) = state
            .nodes
            .iter()
            .find(|(_, n)| n.name == name)
            .map(|(id, _)| *id)
        else {
            return Ok(Answer(Err(format!("no node {name:?} in the cluster"))));
        };
        let m = raft.metrics().borrow().clone();
        let voters = m.membership_config.membership().voter_ids().count();
        if voters <= 1
            && m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == id)
        {
            return Ok(Answer(Err("cannot remove the last voter".to_string())));
        }
        self.drop_member(raft, id).await?;
        tracing::info!(id, node = %name, "node removed from the meta group");
        Ok(Answer(Ok(serde_json::json!({ "removed": name, "id": id }))))
    }

    /// Runs an admin call through the group and waits until this node has applied
    /// it: the host's answer.
    pub async fn admin(&self, call: serde_json::Value) -> Result<serde_json::Value, MetaError> {
        let id = format!(
            "{}-{:016x}{:016x}",
            self.inner.cluster.node(),
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let out = self.propose(Command::Admin { call, id: Some(id) }).await?;
        let index = out["index"].as_u64().unwrap_or(0);
        self.wait_applied(index, Duration::from_secs(5)).await?;
        Ok(out["value"].clone())
    }

    /// Waits until this node has applied the log up to `index`.
    pub async fn wait_applied(&self, index: u64, within: Duration) -> Result<(), MetaError> {
        let Some(raft) = self.raft() else {
            return Err(MetaError::NoLeader(
                "this node is not in the meta group yet".into(),
            ));
        };
        let mut rx = raft.metrics();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if rx.borrow().last_applied.is_some_and(|l| l.index >= index) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(MetaError::NoLeader(format!(
                        "this node has not applied entry {index} yet"
                    )));
                }
            }
        }
    }

    /// Removes the node called `name` from the group (on the leader, wherever it
    /// is). Its links are forgotten here; each node forgets it as the change
    /// applies.
    pub async fn remove(&self, name: &str) -> Result<serde_json::Value, MetaError> {
        let body = serde_json::to_vec(name).map_err(|e| MetaError::Refused(e.to_string()))?;
        let out = self.leader_call(K_REMOVE, Bytes::from(body)).await?;
        self.inner.cluster.forget(name);
        Ok(out)
    }

    /// The group as this node sees it.
    pub fn status(&self) -> MetaStatus {
        let Some((raft, state)) = self.inner.raft.get() else {
            return MetaStatus {
                role: "joining".into(),
                ..Default::default()
            };
        };
        let m = raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let name_of = |id: u64| membership.get_node(&id).map(|n| n.name.clone());
        let voters: BTreeSet<String> = membership.voter_ids().filter_map(name_of).collect();
        let learners: BTreeSet<String> = membership.learner_ids().filter_map(name_of).collect();
        let s = state.read();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Follower => "follower",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let role = if role == "follower" && !membership.voter_ids().any(|v| v == m.id) {
            "learner"
        } else {
            role
        };
        MetaStatus {
            id: m.id,
            leader: self.leader().map(|(_, n)| n),
            voters,
            learners,
            nodes: s
                .nodes
                .iter()
                .map(|(id, n)| (*id, n.name.clone(), n.addr.clone()))
                .collect(),
            removed: s.removed.clone(),
            role: role.to_string(),
            applied: m.last_applied.map_or(0, |l| l.index),
            lag: m
                .replication
                .as_ref()
                .map(|r| {
                    let last = m.last_log_index.unwrap_or(0);
                    r.iter()
                        .filter_map(|(id, matched)| {
                            let behind = last.saturating_sub(matched.map_or(0, |l| l.index));
                            name_of(*id).map(|n| (n, behind))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether this node, a member of the group, cannot reach a quorum now: as
    /// leader, a quorum does not confirm its leadership within a second (a
    /// heartbeat round, openraft's `ensure_linearizable`); otherwise it knows no
    /// leader, or has no link to the one it knows. A node not in a group yet is
    /// never cut off (it is joining).
    pub async fn cut_off(&self) -> bool {
        let Some(raft) = self.raft() else {
            return false;
        };
        let m = raft.metrics().borrow().clone();
        if m.state == ServerState::Leader {
            // A leader alone in its membership always has its quorum.
            if m.membership_config.membership().voter_ids().count() <= 1 {
                return false;
            }
            return !matches!(
                tokio::time::timeout(Duration::from_secs(1), raft.ensure_linearizable()).await,
                Ok(Ok(_))
            );
        }
        match self.leader() {
            None => true,
            Some((_, name)) => !self.inner.cluster.linked(&name),
        }
    }

    /// Whether the node is stopping.
    pub fn stopped(&self) -> bool {
        self.inner.cluster.stopped()
    }

    /// The replicated stations' groups on this node.
    pub fn replicas(&self) -> Arc<crate::replica::Replicas> {
        self.inner.replicas.clone()
    }

    /// This node's id in the meta group (0 until it has one).
    pub fn id(&self) -> u64 {
        self.raft().map_or(0, |r| r.metrics().borrow().id)
    }

    /// Stops this node's Raft (the replicated stations' groups first).
    pub async fn shutdown(&self) {
        self.inner.replicas.shutdown().await;
        if let Some(r) = self.raft() {
            let _ = r.shutdown().await;
        }
    }
}

/// Error texts that start with this ask the caller to retry (leadership moved).
const RETRY: &str = "retry: ";

/// A proposal the leader's quorum did not confirm in time: its outcome is unknown
/// (it may still be applied if the quorum comes back with it).
pub const UNCONFIRMED: &str = "the change was not confirmed by a quorum within 5 s; it may still be applied once the quorum is back";

/// Longest a leader waits for its quorum to commit a proposal.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a call waits for the leader's answer: longer than the leader's own
/// quorum check and [`PROPOSE_TIMEOUT`], so that a slow commit is reported by the
/// leader, not guessed at here.
const LEADER_CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// A failed call to the leader: tried again, with the same proposal, until the
/// caller's deadline.
fn leader_call_error(e: CallError) -> String {
    match e {
        CallError::Remote(text) => text,
        // Admin proposals carry an id and are applied once however often they
        // are sent; joins and removals are idempotent enough (a join retires
        // the id it was given before).
        CallError::Unreachable(_) | CallError::Timeout(_) => format!("{RETRY}{e}"),
    }
}

fn write_answer(
    r: Result<
        openraft::raft::ClientWriteResponse<MetaConfig>,
        RaftError<u64, ClientWriteError<u64, MetaNode>>,
    >,
) -> Result<Answer, String> {
    match r {
        Ok(resp) => Ok(resp.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(format!("{RETRY}leader moved to {:?}", f.leader_id))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => Err(e.to_string()),
        Err(e) => Err(format!("{RETRY}{e}")),
    }
}

fn to_bytes<T: Serialize>(v: &T) -> Result<Bytes, String> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

struct Handler(Weak<MetaInner>);

impl CallHandler for Handler {
    fn call(
        &self,
        _peer: &str,
        kind: u8,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, String>> {
        let inner = self.0.upgrade();
        Box::pin(async move {
            let Some(inner) = inner else {
                return Err("this node is stopping".to_string());
            };
            let group = MetaGroup { inner };
            match kind {
                K_PROBE => to_bytes(&Probe {
                    member: group.raft().is_some(),
                    id: group.raft().map_or(0, |r| r.metrics().borrow().id),
                }),
                K_APPEND => {
                    let raft = group.raft().ok_or("not in the meta group yet")?;
                    let req: AppendEntriesRequest<MetaConfig> =
                        serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                    to_bytes(&raft.append_entries(req).await)
                }
                K_VOTE => {
                    let raft = group.raft().ok_or("not in the meta group yet")?;
                    let req: VoteRequest<u64> =
                        serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                    to_bytes(&raft.vote(req).await)
                }
                K_SNAPSHOT => {
                    let raft = group.raft().ok_or("not in the meta group yet")?;
                    let req: InstallSnapshotRequest<MetaConfig> =
                        serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                    to_bytes(&raft.install_snapshot(req).await)
                }
                K_JOIN | K_PROPOSE | K_REMOVE => group.to_leader(kind, body).await,
                crate::replica::K_R_APPEND..=crate::replica::K_R_ELECT => {
                    group.inner.replicas.handle(kind, body).await
                }
                k if k & FORWARDED != 0 => group.on_leader(k & !FORWARDED, body).await,
                _ => Err(format!("unknown meta call {kind}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts calls: each adds one to `n`.
    struct Counter;

    impl MetaHost for Counter {
        fn plan(
            &self,
            defs: &Defs,
            _: &serde_json::Value,
        ) -> Result<(Vec<Change>, serde_json::Value), String> {
            let n = defs.get("n").and_then(|v| v.as_u64()).unwrap_or(0) + 1;
            Ok((vec![("n".into(), Some(n.into()))], n.into()))
        }
        fn changed(&self, _: Vec<Change>) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
        fn reset(&self, _: Defs) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    #[test]
    fn a_proposal_sent_twice_is_applied_once_and_ids_are_never_given_twice() {
        let host: Arc<dyn MetaHost> = Arc::new(Counter);
        let mut s = MetaState::default();
        let mut changes = Vec::new();
        let call = Command::Admin {
            call: serde_json::Value::Null,
            id: Some("a".into()),
        };
        let first = apply_command(&mut s, Some(&host), 5, &call, &mut changes);
        let again = apply_command(&mut s, Some(&host), 6, &call, &mut changes);
        assert_eq!(s.defs["n"], 1);
        assert_eq!(first.0, again.0);
        let other = Command::Admin {
            call: serde_json::Value::Null,
            id: Some("b".into()),
        };
        apply_command(&mut s, Some(&host), 7, &other, &mut changes);
        assert_eq!(s.defs["n"], 2);

        // A node that joins again (a wiped one) gets a new id; the old one is
        // retired, and a removed id is never given again.
        let add = |name: &str| Command::AddNode {
            name: name.into(),
            addr: "a:1".into(),
        };
        let id = |a: Answer| a.0.unwrap()["id"].as_u64().unwrap();
        let n1 = id(apply_command(&mut s, None, 8, &add("n1"), &mut changes));
        let n2 = id(apply_command(&mut s, None, 9, &add("n2"), &mut changes));
        let n1_again = id(apply_command(&mut s, None, 10, &add("n1"), &mut changes));
        assert!(n1 < n2 && n2 < n1_again);
        assert!(!s.nodes.contains_key(&n1));
        apply_command(
            &mut s,
            None,
            11,
            &Command::RemoveNode { id: n2 },
            &mut changes,
        );
        assert!(s.removed.contains("n2"));
        let n3 = id(apply_command(&mut s, None, 12, &add("n3"), &mut changes));
        assert!(n3 > n1_again);
    }
}
