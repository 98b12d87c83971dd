//! The station engine: routing, fan-out, stations, consumer groups, dead letters,
//! schemas and lineage.
//!
//! It owns core publish/subscribe (a [`trie::SubjectTrie`] per tenant, live fan-out
//! to every matching subscription and one member per queue group, and the registry
//! of connected clients that monitoring reads) and the path of every publish:
//! reserved `Junction-*` headers stripped → content-based routing rules
//! (`routing`) → capture by a station (`stations`) → lineage stamp (`lineage`) →
//! schema validation (`schemas`) → append, with failures copied to the dead-letter
//! station (`dead_letter`) → live fan-out. Notable happenings (connects,
//! disconnects, operator kicks, slow consumers, schema violations, dead letters) go
//! to a bounded in-memory log (`events`), never on a plain publish.
//!
//! Invariants:
//! - No lock is held while a [`Subscriber`] is called: fan-out works on a cached,
//!   shared match result.
//! - A subscriber that reports [`Delivery::AcceptedLast`] or [`Delivery::Gone`] is
//!   removed after the fan-out, never during it.

mod advisories;
pub mod auth;
mod cluster;
mod dead_letter;
mod disk_guard;
mod events;
mod forward;
mod group;
mod ingress;
mod internal;
mod join;
mod lineage;
mod meta;
mod placement;
mod remote_group;
mod replicated;
mod republish;
mod routing;
mod schemas;
mod sourcing;
mod sourcing_remote;
mod station;
mod stations;
mod tenant_storage;
mod tenants;
mod tier;
mod trie;

use ahash::AHashMap;
use dead_letter::ResendTasks;
use ingress::{check_client_station, refuse_internal};
use junction_api::{
    AckKind, Admin, AdminFuture, Broker, ClientId, ClientKind, ClientRecord, ClientSnapshot,
    Credentials, Delivery, Denial, EngineError, FetchRequest, FetchSink, GroupConfig, GroupInfo,
    LineageGraph, LineageTrace, Message, MessageQuery, Monitor, NewClient, Protocol,
    PublishOptions, PublishOutcome, Purge, QueueGroup, ResendRequest, ResendStatus, RoutingRule,
    SchemaFormat, SchemaInfo, ServerSnapshot, StationConfig, StationInfo, StorageStats,
    StoredCallback, StoredMessage, Subject, SubjectFilter, Subscriber, SubscriptionId,
    SubscriptionSnapshot, SystemEvent, SystemEventKind, TenantId, TenantLimit,
};
use junction_storage::Store;
use parking_lot::{Mutex, RwLock};
use schemas::SchemaRegistry;
use stations::StationRegistry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;
use trie::{SubjectTrie, Subscription};

pub use auth::{Authenticator, PermissionsConfig, RulesConfig, StringList, User};
pub use disk_guard::{DiskPolicy, SelfChecks};

pub use join::{RestartHook, join_routes};

/// What the engine needs to know at start.
#[derive(Debug)]
pub struct EngineOptions {
    /// Server name shown to clients and in monitoring.
    pub server_name: String,
    /// Unique id of this server process.
    pub server_id: String,
    /// Most clients connected at once (0 = unlimited).
    pub max_connections: usize,
    /// Most subscriptions per client (0 = unlimited).
    pub max_subscriptions: usize,
    /// Who may connect.
    pub auth: Authenticator,
    /// Tenants besides the default one (`[[tenants]]`).
    pub tenants: Vec<TenantId>,
    /// Each tenant's limits, for those that have any.
    pub tenant_limits: AHashMap<TenantId, TenantLimits>,
    /// The remote tier (S3), when `[tier]` names a bucket.
    pub tier: Option<Arc<junction_storage::tier::Remote>>,
    /// Streams tenants import from others (`[[tenants.imports]]`).
    pub imports: Vec<StreamImport>,
    /// What each tenant exports, as configured (shown to operators).
    pub exports: AHashMap<TenantId, Vec<String>>,
    /// The tenant whose users are the operators (`$SYS`, or `system_account`);
    /// none: the default tenant's users are.
    pub system_tenant: Option<TenantId>,
    /// When stored writes are fenced on a nearly full disk.
    pub disk: DiskPolicy,
    /// The memory and consumer-lag self-checks' thresholds.
    pub self_checks: disk_guard::SelfChecks,
}

/// Messages one tenant publishes on `filter` are delivered in tenant `to` too,
/// on their subject with `prefix.` in front (nats-server's stream import of an
/// exported stream).
#[derive(Debug, Clone)]
pub struct StreamImport {
    /// The exporting tenant.
    pub from: TenantId,
    /// The subjects imported.
    pub filter: SubjectFilter,
    /// The importing tenant.
    pub to: TenantId,
    /// Put in front of the subject in the importing tenant (none: as is).
    pub prefix: Option<String>,
}

/// Reloads the configuration file: what changed, or why it was refused
/// (blocking: it reads the file and may hash passwords).
pub type ReloadHook = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Refuses one more of `what` when the tenant has `count` of `limit` already.
fn within_limit(
    tenant: &TenantId,
    what: TenantLimit,
    count: usize,
    limit: usize,
) -> Result<(), EngineError> {
    if count < limit {
        return Ok(());
    }
    tracing::info!(tenant = %tenant.0, limit, "{what} refused: the tenant is at its limit");
    Err(EngineError::TenantLimit { what, limit })
}

/// What one tenant may use (0: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimits {
    /// Connections at once, over every protocol.
    pub max_connections: usize,
    /// Stations (JetStream streams), not counting the broker's own.
    pub max_streams: usize,
    /// Consumer groups over all its stations.
    pub max_consumers: usize,
    /// Bytes of file storage over its stations (`None`: no limit; `Some(0)`: no
    /// file station at all, as nats-server's `max_file: 0`). See
    /// `tenant_storage` for how stations reserve it and messages use it.
    pub max_file: Option<u64>,
    /// Bytes of memory storage over its stations, as `max_file`.
    pub max_memory: Option<u64>,
}

struct ClientEntry {
    record: Arc<ClientRecord>,
    subscriptions: AHashMap<SubscriptionId, Arc<Subscription>>,
}

#[derive(Default)]
struct Counters {
    in_msgs: AtomicU64,
    in_bytes: AtomicU64,
    out_msgs: AtomicU64,
    out_bytes: AtomicU64,
    total_connections: AtomicU64,
    /// Front-ends' own clients (not connections) that have disconnected: taken off
    /// `total_connections`, which counts every `connect`.
    gone_not_connections: AtomicU64,
    slow_consumers: AtomicU64,
}

/// The broker's engine. One per process; shared by every front-end.
pub struct StationEngine {
    options: EngineOptions,
    start: SystemTime,
    default_tenant: TenantId,
    default_trie: Arc<SubjectTrie>,
    tenants: RwLock<AHashMap<TenantId, Arc<SubjectTrie>>>,
    clients: RwLock<AHashMap<ClientId, ClientEntry>>,
    next_client: AtomicU64,
    next_subscription: AtomicU64,
    queue_cursor: AtomicUsize,
    counters: Counters,
    stations: Arc<StationRegistry>,
    schemas: Arc<SchemaRegistry>,
    resends: Mutex<ResendTasks>,
    lineage: Arc<lineage::LineageLog>,
    routing: routing::RoutingTable,
    system: Arc<ClientRecord>,
    /// The engine's own client in each other tenant, made when first asked for.
    tenant_clients: RwLock<AHashMap<TenantId, Arc<ClientRecord>>>,
    /// Stream imports by exporting tenant.
    imports: AHashMap<TenantId, Vec<StreamImport>>,
    /// The client that publishes imported messages in each importing tenant;
    /// what it publishes is not imported again (no loops).
    import_clients: RwLock<AHashMap<TenantId, Arc<ClientRecord>>>,
    events: events::EventLog,
    /// This engine, for the admin calls that move their work to a blocking thread.
    me: std::sync::Weak<StationEngine>,
    /// The links to the other nodes, once the cluster is up (`cluster.rs`).
    cluster: std::sync::OnceLock<junction_cluster::Cluster>,
    /// Peers' interest, as subscriptions in the trie: (peer, interest) → it.
    remote: Mutex<cluster::RemoteInterest>,
    /// The cluster's meta group, once this node runs it (`meta.rs`).
    meta: std::sync::OnceLock<junction_cluster::meta::MetaGroup>,
    /// Cut off from the meta quorum for longer than an election (`meta.rs`).
    cut_off: std::sync::atomic::AtomicBool,
    /// Stations other nodes of the cluster hold (`placement.rs`).
    placed: placement::RemoteStations,
    /// Replicated stations this node has a replica of, by Raft group id
    /// (`replicated.rs`).
    replicated: RwLock<std::collections::HashMap<u64, Arc<station::Station>>>,
    /// Replicated stations' placements and their upkeep (`replicated.rs`).
    replica_ops: replicated::ReplicaOps,
    /// Publishes on their way to replicated stations' leaders elsewhere.
    forwarders: forward::Forwarders,
    /// Pull requests and acks for groups another node serves (`remote_group.rs`).
    remote_groups: remote_group::RemoteGroups,
    /// A front-end's cluster-wide stations being defined (`internal.rs`).
    internal_creating: Mutex<std::collections::HashSet<(TenantId, String)>>,
    /// Restarts the process in place (`join.rs`), installed by the server.
    restart_hook: std::sync::OnceLock<join::RestartHook>,
    /// Every tenant besides the default one, with its limits (`tenants.rs`).
    book: tenants::TenantBook,
    /// Reloads the configuration (`serve.rs`), installed by the server.
    reload_hook: std::sync::OnceLock<ReloadHook>,
    /// The webhooks (`notify/`), installed by the server.
    notification_centre: std::sync::OnceLock<Arc<dyn junction_api::NotificationCentre>>,
    /// Stored writes fenced on a nearly full disk (`disk_guard.rs`).
    disk: disk_guard::DiskGuard,
    /// Other self-checks' alarms (`disk_guard.rs`).
    alarms: disk_guard::Alarms,
    /// Failed logins not yet told in an `auth_failed` event (`tenants.rs`).
    auth_failures: Mutex<tenants::AuthFailures>,
    /// Per tenant, permission violations not yet told in an event.
    violations: Mutex<AHashMap<TenantId, tenants::AuthFailures>>,
    /// Stored bytes of tenants with a storage limit (`tenant_storage.rs`).
    storage_usage: tenant_storage::StorageUsage,
    /// Mirrors' and sources' running links and progress (`sourcing.rs`).
    sourcing: sourcing::Sourcing,
    /// Brokers stations may mirror or source from by name (`[remotes.<name>]`):
    /// name → (the tenant allowed to use it, the remote).
    remotes: RwLock<std::collections::HashMap<String, (TenantId, junction_api::RemoteOrigin)>>,
}

impl StationEngine {
    /// The store under every station.
    pub fn store(&self) -> &Store {
        self.stations.store()
    }

    /// Clean shutdown: writes every station's index snapshot (after the storage
    /// writer drained), so the next start does not scan the logs. Call it once
    /// nothing else writes; a write after it withdraws the snapshots.
    pub fn save_snapshots(&self) {
        match self.stations.save_snapshots() {
            Ok(()) => tracing::info!("station index snapshots written"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot write station index snapshots; the next start scans the logs")
            }
        }
    }

    /// An engine over `store`, with every station in it recovered.
    pub fn open(options: EngineOptions, store: Store) -> Result<Arc<Self>, EngineError> {
        let default_tenant = TenantId::default_tenant();
        let default_trie = Arc::new(SubjectTrie::default());
        let mut tenants = AHashMap::new();
        tenants.insert(default_tenant.clone(), default_trie.clone());
        let schemas = Arc::new(SchemaRegistry::load(store.clone())?);
        let routing = routing::RoutingTable::load(store.clone())?;
        let stations = Arc::new(StationRegistry::load(store)?);
        let system = Arc::new(ClientRecord::new(
            ClientId(0),
            default_tenant.clone(),
            &NewClient {
                protocol: Protocol::Nats,
                remote: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            },
        ));
        system.set_kind(ClientKind::Internal);
        let mut clients = AHashMap::new();
        clients.insert(
            system.id,
            ClientEntry {
                record: system.clone(),
                subscriptions: AHashMap::new(),
            },
        );
        let mut imports: AHashMap<TenantId, Vec<StreamImport>> = AHashMap::new();
        for i in &options.imports {
            imports.entry(i.from.clone()).or_default().push(i.clone());
        }
        let book = tenants::TenantBook::new(&options.tenants, &options.tenant_limits);
        let events = events::EventLog::new(&options.server_name);
        let engine = Arc::new_cyclic(|me| StationEngine {
            me: me.clone(),
            book,
            reload_hook: std::sync::OnceLock::new(),
            notification_centre: std::sync::OnceLock::new(),
            disk: disk_guard::DiskGuard::default(),
            alarms: disk_guard::Alarms::new(options.disk, options.self_checks),
            auth_failures: Mutex::new(tenants::AuthFailures::default()),
            violations: Mutex::new(AHashMap::new()),
            options,
            start: SystemTime::now(),
            default_tenant,
            default_trie,
            tenants: RwLock::new(tenants),
            clients: RwLock::new(clients),
            tenant_clients: RwLock::new(AHashMap::new()),
            imports,
            import_clients: RwLock::new(AHashMap::new()),
            next_client: AtomicU64::new(1),
            next_subscription: AtomicU64::new(1),
            queue_cursor: AtomicUsize::new(0),
            counters: Counters::default(),
            stations,
            schemas,
            resends: Mutex::new(ResendTasks::default()),
            lineage: Arc::new(lineage::LineageLog::default()),
            routing,
            system,
            events,
            cluster: std::sync::OnceLock::new(),
            remote: Mutex::new(AHashMap::new()),
            meta: std::sync::OnceLock::new(),
            cut_off: std::sync::atomic::AtomicBool::new(false),
            placed: placement::RemoteStations::default(),
            replicated: RwLock::new(std::collections::HashMap::new()),
            replica_ops: replicated::ReplicaOps::default(),
            forwarders: forward::Forwarders::default(),
            remote_groups: remote_group::RemoteGroups::default(),
            internal_creating: Mutex::new(std::collections::HashSet::new()),
            restart_hook: std::sync::OnceLock::new(),
            storage_usage: tenant_storage::StorageUsage::new(),
            sourcing: sourcing::Sourcing::default(),
            remotes: RwLock::new(std::collections::HashMap::new()),
        });
        if let Some(remote) = &engine.options.tier {
            engine.stations.set_tier(remote.clone())?;
        }
        engine.load_tenants()?;
        engine
            .start_event_writer()
            .map_err(|e| EngineError::Storage(format!("cannot start the event writer: {e}")))?;
        // The lineage index comes back from what storage kept, off the start-up
        // path: the broker serves while it fills.
        let stations = engine.stations.clone();
        let log = engine.lineage.clone();
        let spawned = std::thread::Builder::new()
            .name("lineage-rebuild".into())
            .spawn(move || {
                let n = lineage::rebuild(&stations, &log);
                tracing::debug!(messages = n, "lineage index restored from storage");
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "lineage index not restored: no thread");
        }
        Ok(engine)
    }

    /// The engine's options.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    fn trie(&self, tenant: &TenantId) -> Arc<SubjectTrie> {
        if Arc::ptr_eq(&tenant.0, &self.default_tenant.0) || *tenant == self.default_tenant {
            return self.default_trie.clone();
        }
        if let Some(t) = self.tenants.read().get(tenant) {
            return t.clone();
        }
        self.tenants
            .write()
            .entry(tenant.clone())
            .or_default()
            .clone()
    }

    fn remove_subscriptions(&self, client: ClientId, ids: &[SubscriptionId]) {
        let removed: Vec<(TenantId, Arc<Subscription>)> = {
            let mut clients = self.clients.write();
            let Some(entry) = clients.get_mut(&client) else {
                return;
            };
            let tenant = entry.record.tenant().clone();
            ids.iter()
                .filter_map(|id| entry.subscriptions.remove(id))
                .map(|s| (tenant.clone(), s))
                .collect()
        };
        for (tenant, sub) in removed {
            self.trie(&tenant).remove(&sub);
            if sub.shared {
                self.share_interest(&tenant, &sub, false);
            }
        }
    }

    /// Delivers `message` to every subscription matching `route`, one member per
    /// queue group; returns how many received it.
    fn fan_out(&self, from: &ClientRecord, route: &Subject, message: &Message) -> usize {
        let fanout = junction_api::FanoutId::next();
        let bytes = message.payload.len() as u64;
        let result = self.trie(from.tenant()).matches(route);
        let skip_self = from.no_echo();
        // What an MQTT client publishes carries the MQTT front-end's markers; only
        // MQTT subscribers get them (copied once, for the first other subscriber).
        let marked = from.protocol == Protocol::Mqtt;
        let mut unmarked: Option<std::borrow::Cow<'_, Message>> = None;
        let mut delivered = 0usize;
        // Deliveries to the engine's own subscriptions (JetStream API requests, acks)
        // are not messages out.
        let mut to_engine = 0usize;
        let mut done = Vec::new();
        // Peers with matching interest: (peer, its plain subscribers get it, queue
        // groups of which one of its members gets it).
        let mut peers: Vec<cluster::PeerForward<'_>> = Vec::new();
        for sub in &result.plain {
            if let Some(peer) = &sub.route {
                if cluster::forward_plain(&mut peers, peer) {
                    delivered += 1;
                }
                continue;
            }
            if skip_self && sub.client == from.id {
                continue;
            }
            let m: &Message = if marked && !sub.mqtt {
                unmarked.get_or_insert_with(|| lineage::strip_mqtt_markers(message))
            } else {
                message
            };
            if self.deliver_one(sub, m, fanout, &mut done) {
                delivered += 1;
                to_engine += usize::from(sub.client == self.system.id);
            }
        }
        // One step of the cursor per message: every group rotates through its members
        // (a step per group would skip members when several groups match).
        let start = if result.groups.is_empty() {
            0
        } else {
            self.queue_cursor.fetch_add(1, Ordering::Relaxed)
        };
        for (queue, members) in &result.groups {
            let n = members.len();
            for k in 0..n {
                let sub = &members[(start + k) % n];
                if let Some(peer) = &sub.route {
                    cluster::forward_queue(&mut peers, peer, queue);
                    delivered += 1;
                    break;
                }
                if skip_self && sub.client == from.id {
                    continue;
                }
                let m: &Message = if marked && !sub.mqtt {
                    unmarked.get_or_insert_with(|| lineage::strip_mqtt_markers(message))
                } else {
                    message
                };
                if self.deliver_one(sub, m, fanout, &mut done) {
                    delivered += 1;
                    to_engine += usize::from(sub.client == self.system.id);
                    break;
                }
            }
        }
        let counted = (delivered - to_engine) as u64;
        if counted > 0 {
            self.counters.out_msgs.fetch_add(counted, Ordering::Relaxed);
            self.counters
                .out_bytes
                .fetch_add(bytes * counted, Ordering::Relaxed);
        }
        for (client, id) in done {
            self.remove_subscriptions(client, &[id]);
        }
        if !peers.is_empty() {
            let route = (*route != message.subject).then_some(route);
            self.forward_to_peers(from.tenant(), message, route, marked, peers);
        }
        delivered
    }

    fn deliver_one(
        &self,
        sub: &Subscription,
        message: &Message,
        fanout: junction_api::FanoutId,
        done: &mut Vec<(ClientId, SubscriptionId)>,
    ) -> bool {
        match sub.subscriber.deliver(message, fanout) {
            Delivery::Accepted => true,
            Delivery::AcceptedLast => {
                done.push((sub.client, sub.id));
                true
            }
            Delivery::Gone => {
                done.push((sub.client, sub.id));
                false
            }
        }
    }
}

impl Broker for StationEngine {
    fn auth_required(&self) -> bool {
        self.options.auth.required()
    }

    fn uses_nonce(&self) -> bool {
        self.options.auth.has_nkeys()
    }

    fn maps_certificates(&self) -> bool {
        self.options.auth.maps_certificates()
    }

    fn scram_sha256(&self, user: &str) -> Option<junction_api::scram::ScramCredentials> {
        self.options.auth.scram_sha256(user)
    }

    fn authenticate_from(
        &self,
        credentials: &Credentials,
        remote: std::net::IpAddr,
    ) -> Result<junction_api::Identity, EngineError> {
        let result = self.options.auth.check_from(credentials, remote);
        self.after_login(&result, credentials, remote);
        result
    }

    fn permission_violation(&self, client: &ClientRecord, what: &str) {
        self.record_violation(client, what);
    }

    fn client_connecting(
        &self,
        client_id: &str,
        remote: std::net::IpAddr,
    ) -> Result<(), EngineError> {
        if self.options.auth.connecting(client_id)? {
            tracing::warn!(%remote, client_id, "MQTT client id banned: it connects too often (flapping)");
            self.events.record(
                SystemEventKind::ClientBanned,
                events::About {
                    tenant: self.system_tenant(),
                    ..Default::default()
                },
                format!("MQTT client id '{client_id}' from {remote} banned: it connects too often (flapping)"),
            );
            return Err(EngineError::Banned);
        }
        Ok(())
    }

    fn authenticate_client(
        &self,
        credentials: &Credentials,
        remote: std::net::IpAddr,
        client_id: Option<&str>,
    ) -> Result<junction_api::Identity, EngineError> {
        let result = self
            .options
            .auth
            .check_client(credentials, remote, client_id);
        self.after_login(&result, credentials, remote);
        result
    }

    fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> Result<junction_api::Identity, EngineError> {
        self.options.auth.check(credentials)
    }

    fn connect(
        &self,
        client: NewClient,
        tenant: TenantId,
    ) -> Result<Arc<ClientRecord>, EngineError> {
        // Cut off from the meta quorum: NATS and MQTT clients go to another node.
        if self.is_cut_off()
            && matches!(client.protocol, Protocol::Nats | Protocol::Mqtt)
            && client.remote.port() != 0
        {
            return Err(EngineError::NoQuorum(
                "this node is cut off from the cluster's meta quorum".into(),
            ));
        }
        // A tenant's connection limit counts NATS, MQTT and WebSocket clients
        // (nats-server counts its WebSocket clients too); not a front-end's own
        // clients (port 0, or HTTP's gateway clients) nor SSE streams (HTTP
        // responses).
        if client.remote.port() != 0
            && matches!(
                client.protocol,
                Protocol::Nats | Protocol::Mqtt | Protocol::WebSocket
            )
        {
            self.check_connection_limit(&tenant, None)?;
        }
        if client.remote.port() != 0
            && matches!(
                client.protocol,
                Protocol::Nats | Protocol::Mqtt | Protocol::WebSocket
            )
        {
            self.admit_connection_memory()?;
        }
        let mut clients = self.clients.write();
        // The system client is in the map but is not a connection.
        if self.options.max_connections > 0 && clients.len() > self.options.max_connections {
            return Err(EngineError::MaxConnections);
        }
        let id = ClientId(self.next_client.fetch_add(1, Ordering::Relaxed));
        let record = Arc::new(ClientRecord::new(id, tenant, &client));
        clients.insert(
            id,
            ClientEntry {
                record: record.clone(),
                subscriptions: AHashMap::new(),
            },
        );
        drop(clients);
        self.counters
            .total_connections
            .fetch_add(1, Ordering::Relaxed);
        self.events.record(
            SystemEventKind::ClientConnected,
            events::About {
                client: Some(&record),
                keep: Some(record.clone()),
                ..Default::default()
            },
            format!(
                "{} client {} connected from {}",
                protocol_word(record.protocol),
                id.0,
                record.remote
            ),
        );
        Ok(record)
    }

    fn disconnect(&self, client: ClientId) {
        let Some(entry) = self.clients.write().remove(&client) else {
            return;
        };
        let trie = self.trie(entry.record.tenant());
        for sub in entry.subscriptions.values() {
            trie.remove(sub);
        }
        let r = &entry.record;
        if !r.kind().is_connection() {
            self.counters
                .gone_not_connections
                .fetch_add(1, Ordering::Relaxed);
        }
        self.events.record(
            SystemEventKind::ClientDisconnected,
            events::About {
                client: Some(r),
                keep: Some(r.clone()),
                ..Default::default()
            },
            format!(
                "{} client {} disconnected (from {})",
                protocol_word(r.protocol),
                client.0,
                r.remote
            ),
        );
    }

    fn publish_stored(
        &self,
        from: &ClientRecord,
        message: &Message,
        options: &PublishOptions,
        stored: Option<StoredCallback>,
    ) -> PublishOutcome {
        // The broker's own messages (replies, advisories, `$SYS` figures) are not
        // messages in; HTTP requests, published through their gateway client, are.
        if from.kind() != ClientKind::Internal {
            self.counters.in_msgs.fetch_add(1, Ordering::Relaxed);
            self.counters
                .in_bytes
                .fetch_add(message.payload.len() as u64, Ordering::Relaxed);
        }
        let (message, captured) = match self.ingress(from, message, options, stored) {
            Ok(m) => m,
            Err(refused) => {
                return PublishOutcome {
                    refused: Some(refused),
                    ..PublishOutcome::default()
                };
            }
        };
        if captured.refused {
            return PublishOutcome {
                delivered: 0,
                captured: true,
                refused: None,
            };
        }
        let captured = captured.stored;
        let mut delivered = self.fan_out(from, &message.subject, &message);
        if !self.imports.is_empty() {
            delivered += self.deliver_imports(from, &message);
        }
        PublishOutcome {
            delivered,
            captured,
            refused: None,
        }
    }

    fn publish_routed(&self, from: &ClientRecord, route: &Subject, message: &Message) -> usize {
        self.fan_out(from, route, message)
    }

    fn count_messages(
        &self,
        tenant: &TenantId,
        name: &str,
        from: u64,
        filter: Option<&str>,
    ) -> Result<u64, EngineError> {
        let station = self.stations.get(tenant, name)?;
        let filters = match filter {
            Some(f) => vec![
                SubjectFilter::new(f.to_string())
                    .map_err(|e| EngineError::BadRequest(e.to_string()))?,
            ],
            None => Vec::new(),
        };
        Ok(station.count_from(from, &filters))
    }

    fn last_sequences(
        &self,
        tenant: &TenantId,
        name: &str,
        filters: &[String],
        up_to: Option<u64>,
    ) -> Result<Vec<u64>, EngineError> {
        let station = self.stations.get(tenant, name)?;
        let filters = filters
            .iter()
            .map(|f| {
                SubjectFilter::new(f.clone()).map_err(|e| EngineError::BadRequest(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(station.last_per_subject_up_to(&filters, up_to))
    }

    fn has_interest(&self, tenant: &TenantId, subject: &Subject) -> bool {
        let result = self.trie(tenant).matches(subject);
        !result.plain.is_empty() || !result.groups.is_empty()
    }

    fn create_internal_group(
        &self,
        tenant: &TenantId,
        station: &str,
        config: GroupConfig,
    ) -> Result<GroupInfo, EngineError> {
        if self.served_by_cluster(tenant, station) {
            return self.cluster_internal_group(tenant, station, config);
        }
        let (station, group) = self.stations.create_group(tenant, station, config)?;
        Ok(self.group_info_of(&station, &group))
    }

    fn delete_internal_group(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
    ) -> Result<(), EngineError> {
        if self.served_by_cluster(tenant, station) {
            return self.cluster_internal_group_delete(tenant, station, group);
        }
        self.stations.delete_group(tenant, station, group)
    }

    fn group_info(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
    ) -> Result<GroupInfo, EngineError> {
        let (station, group) = self
            .stations
            .group(tenant, station, group)
            .map_err(|e| self.elsewhere(tenant, station, e))?;
        Ok(self.group_info_of(&station, &group))
    }

    fn group_names(&self, tenant: &TenantId, station: &str) -> Result<Vec<String>, EngineError> {
        let station = self
            .stations
            .get(tenant, station)
            .map_err(|e| self.elsewhere(tenant, station, e))?;
        let mut names: Vec<String> = station.groups.read().keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    fn fetch(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
        request: FetchRequest,
        sink: Arc<dyn FetchSink>,
    ) -> Result<(), EngineError> {
        match self.group_node(tenant, station)? {
            Some(node) => self.fetch_remote(node, tenant, station, group, request, sink),
            None => self.fetch_local(tenant, station, group, request, sink),
        }
    }

    fn ack(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
        stream_seq: u64,
        kind: AckKind,
    ) -> Result<(), EngineError> {
        if let Some(node) = self.group_node(tenant, station)? {
            return self.ack_remote(&node, tenant, station, group, stream_seq, &kind);
        }
        let gave_up = self
            .stations
            .ack(tenant, station, group, stream_seq, kind)
            .map_err(|e| self.elsewhere(tenant, station, e))?;
        self.handle_gave_up(gave_up.into_iter().collect());
        Ok(())
    }

    fn ack_committed(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
        stream_seq: u64,
        kind: AckKind,
        done: junction_api::AckDone,
    ) {
        match self.group_node(tenant, station) {
            Err(e) => return done(Err(e)),
            Ok(Some(node)) => {
                return self.ack_committed_remote(
                    node,
                    (tenant, station, group, stream_seq, &kind),
                    done,
                );
            }
            Ok(None) => {}
        }
        match self
            .stations
            .ack_with(tenant, station, group, stream_seq, kind, true)
        {
            Err(e) => done(Err(self.elsewhere(tenant, station, e))),
            Ok((gave_up, wait)) => {
                self.handle_gave_up(gave_up.into_iter().collect());
                match (wait, tokio::runtime::Handle::try_current()) {
                    (Some(wait), Ok(runtime)) => {
                        runtime.spawn(async move { done(wait.await) });
                    }
                    (Some(_), Err(_)) => done(Err(EngineError::ShuttingDown)),
                    (None, _) => done(Ok(())),
                }
            }
        }
    }

    fn run_group_timers(&self, tenant: &TenantId, station: &str, group: &str) {
        // A group another node serves runs its timers there.
        if !matches!(self.group_node(tenant, station), Ok(None)) {
            return;
        }
        let gave_up = self.stations.tick_one(tenant, station, group);
        self.handle_gave_up(gave_up);
    }

    fn system_client(&self) -> Arc<ClientRecord> {
        self.system.clone()
    }

    fn tenant_client(&self, tenant: &TenantId) -> Arc<ClientRecord> {
        if *tenant == self.default_tenant {
            return self.system.clone();
        }
        self.internal_client(&self.tenant_clients, tenant)
    }

    fn join_tenant(
        &self,
        client: &ClientRecord,
        identity: junction_api::Identity,
    ) -> Result<(), EngineError> {
        self.check_connection_limit(&identity.tenant, Some(client.id))?;
        client.set_authenticated(identity);
        Ok(())
    }

    fn tenants(&self) -> Vec<TenantId> {
        let mut all = vec![self.default_tenant.clone()];
        all.extend(self.book.names());
        all
    }

    fn is_operator(&self, identity: &junction_api::Identity) -> bool {
        match self.system_tenant() {
            Some(system) => identity.tenant == *system,
            None => identity.tenant == self.default_tenant,
        }
    }

    fn on_new_tenant(&self, hook: Arc<dyn Fn(&TenantId) + Send + Sync>) {
        self.book.add_hook(hook);
    }

    fn count_delivered(&self, payload_bytes: usize) {
        self.counters.out_msgs.fetch_add(1, Ordering::Relaxed);
        self.counters
            .out_bytes
            .fetch_add(payload_bytes as u64, Ordering::Relaxed);
    }

    fn create_internal_station(
        &self,
        tenant: &TenantId,
        config: StationConfig,
    ) -> Result<StationInfo, EngineError> {
        if self.meta().is_some() && internal::is_cluster_scoped(&config) {
            return self.cluster_internal_station(tenant, config);
        }
        let station = self.stations.create(tenant, config)?;
        Ok(self.station_info_of(&station))
    }

    fn purge_internal_station(
        &self,
        tenant: &TenantId,
        name: &str,
        purge: Purge,
    ) -> Result<u64, EngineError> {
        if self.served_by_cluster(tenant, name) {
            return self.cluster_internal_purge(tenant, name, purge);
        }
        self.purge_in(tenant, name, purge)
    }

    fn station_info(&self, tenant: &TenantId, name: &str) -> Result<StationInfo, EngineError> {
        match self.stations.get(tenant, name) {
            Ok(station) => Ok(self.station_info_of(&station)),
            Err(e) => match self.placed.get(tenant, name) {
                Some(remote) => Ok(remote.info()),
                None => Err(e),
            },
        }
    }

    fn allows_direct_get(&self, tenant: &TenantId, name: &str) -> bool {
        match self.stations.get(tenant, name) {
            Ok(station) => station.allows_direct(),
            Err(_) => self
                .placed
                .get(tenant, name)
                .is_some_and(|remote| remote.config.allow_direct),
        }
    }

    fn station_node(&self, tenant: &TenantId, name: &str) -> Option<String> {
        if let Ok(s) = self.stations.get(tenant, name) {
            // A replicated station's requests go to its leader; with none, to
            // no node (the call fails as unreachable).
            if !s.is_replicated() {
                return None;
            }
            return match s.replica.get() {
                Some(g) if g.is_leader() => None,
                Some(g) => Some(g.leader().unwrap_or_default()),
                None => Some(String::new()),
            };
        }
        self.placed.get(tenant, name).map(|r| r.node.clone())
    }

    fn replica_role(&self, tenant: &TenantId, name: &str) -> Option<junction_api::ReplicaRole> {
        let s = self.stations.get(tenant, name).ok()?;
        let status = s.replica.get()?.status();
        let (remote_segments, remote_last_seq) = s
            .tier()
            .map_or((0, 0), |t| (t.totals(0).0, t.uploaded_through()));
        Some(junction_api::ReplicaRole {
            role: status.role,
            applied: status.applied,
            snapshot_index: status.snapshot,
            purged_index: status.purged,
            local_first_seq: s.local_counts().0,
            remote_segments,
            remote_last_seq,
        })
    }

    fn forward_request(
        &self,
        node: &str,
        tenant: &TenantId,
        message: &Message,
    ) -> Result<(), EngineError> {
        let cluster = self
            .cluster
            .get()
            .ok_or_else(|| EngineError::NodeUnreachable(node.to_string()))?;
        if cluster.notify(
            node,
            placement::K_REQUEST,
            placement::request_bytes(tenant, message),
        ) {
            Ok(())
        } else {
            Err(EngineError::NodeUnreachable(node.to_string()))
        }
    }

    fn broadcast_request(&self, tenant: &TenantId, message: &Message) -> usize {
        let Some(cluster) = self.cluster.get() else {
            return 0;
        };
        let body = placement::request_bytes(tenant, message);
        cluster
            .linked_peers()
            .iter()
            .filter(|p| cluster.notify(p, placement::K_REQUEST, body.clone()))
            .count()
    }

    fn station_quota(&self, tenant: &TenantId) -> junction_api::StationQuota {
        let Some(l) = self.limits_of(tenant) else {
            return junction_api::StationQuota::default();
        };
        let count = |n: usize| (n > 0).then_some(n as u64);
        junction_api::StationQuota {
            max_streams: count(l.max_streams),
            max_consumers: count(l.max_consumers),
            max_file: l.max_file,
            max_memory: l.max_memory,
        }
    }

    fn station_names(&self, tenant: &TenantId, subject: Option<&str>) -> Vec<String> {
        let mut names = self.stations.names(tenant, subject);
        // The system events station is read by name (`$sys_events`), not
        // listed: as nats-server's system streams, it is not the tenant's.
        names.retain(|n| n != junction_api::EVENTS_STATION);
        names.extend(self.placed.names(tenant, subject));
        names.sort();
        names.dedup();
        names
    }

    fn get_message(
        &self,
        tenant: &TenantId,
        name: &str,
        query: MessageQuery,
    ) -> Result<StoredMessage, EngineError> {
        match self.get_message_in(tenant, name, &query) {
            // A front-end's cluster-wide station with no copy here: read on
            // the node that holds it.
            Err(EngineError::StationNotFound)
                if ingress::is_internal_station(name) && self.served_by_cluster(tenant, name) =>
            {
                self.get_message_elsewhere(tenant, name, &query)
            }
            r => r.map_err(|e| self.elsewhere(tenant, name, e)),
        }
    }

    fn subscribe(
        &self,
        from: &ClientRecord,
        filter: SubjectFilter,
        queue: Option<QueueGroup>,
        subscriber: Arc<dyn Subscriber>,
    ) -> Result<SubscriptionId, EngineError> {
        let id = SubscriptionId(self.next_subscription.fetch_add(1, Ordering::Relaxed));
        let sub = Arc::new(Subscription {
            id,
            client: from.id,
            filter,
            queue,
            subscriber,
            mqtt: from.protocol == Protocol::Mqtt,
            route: None,
            shared: self.cluster.get().is_some() && from.kind() != ClientKind::Internal,
        });
        {
            let mut clients = self.clients.write();
            let Some(entry) = clients.get_mut(&from.id) else {
                return Err(EngineError::ShuttingDown);
            };
            if self.options.max_subscriptions > 0
                && entry.subscriptions.len() >= self.options.max_subscriptions
            {
                return Err(EngineError::MaxSubscriptions);
            }
            entry.subscriptions.insert(id, sub.clone());
        }
        let shared = sub.shared.then(|| sub.clone());
        self.trie(from.tenant()).insert(sub);
        if let Some(sub) = shared {
            self.share_interest(from.tenant(), &sub, true);
        }
        Ok(id)
    }

    fn unsubscribe(&self, from: &ClientRecord, id: SubscriptionId) {
        self.remove_subscriptions(from.id, &[id]);
    }

    fn backpressure(&self) -> Option<junction_api::Backpressure> {
        let cluster = self.cluster.get()?;
        if !cluster.congested() {
            return None;
        }
        let cluster = cluster.clone();
        Some(Box::pin(async move { cluster.room().await }))
    }

    fn slow_consumer(&self, client: &ClientRecord) {
        self.counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
        self.events.record(
            SystemEventKind::SlowConsumer,
            events::About {
                client: Some(client),
                ..Default::default()
            },
            format!(
                "{} client {} disconnected as a slow consumer",
                protocol_word(client.protocol),
                client.id.0
            ),
        );
    }
}

/// The admin surface: each call runs its blocking body ([`StationEngine`]'s
/// `*_now` methods) on a tokio blocking thread.
/// The admin calls themselves; the [`Admin`] methods add their advisories.
impl StationEngine {
    /// Runs `then` on this engine once `fut` succeeded (the advisories of an
    /// admin call, published on the node it was made on).
    fn advise_after<T: Send + 'static>(
        &self,
        fut: AdminFuture<T>,
        then: impl FnOnce(&StationEngine) + Send + 'static,
    ) -> AdminFuture<T> {
        let me = self.me.clone();
        Box::pin(async move {
            let out = fut.await;
            if out.is_ok()
                && let Some(me) = me.upgrade()
            {
                then(&me);
            }
            out
        })
    }

    fn create_station_call(
        &self,
        tenant: &TenantId,
        config: StationConfig,
    ) -> AdminFuture<StationInfo> {
        if let Err(e) = self
            .check_station_limit(tenant, &config.name)
            .and_then(|()| self.check_new_station_storage(tenant, &config))
        {
            return Box::pin(std::future::ready(Err(e)));
        }
        let tenant = tenant.clone();
        if let Some(meta) = self.meta() {
            let node = self.cluster().map(|c| c.node().to_string());
            return self.in_cluster(move |e| async move {
                check_client_station(&config)?;
                let config = stations::normalize(config)?;
                let (replicas, members, group) = if config.replicas > 1 {
                    let (replicas, members) = e.choose_replicas(config.replicas)?;
                    // Never 0 (one copy) and never the meta group's id.
                    let group = rand::random::<u64>().clamp(1, u64::MAX - 1);
                    (replicas, members, group)
                } else {
                    Default::default()
                };
                let call = meta::MetaCall::CreateStation {
                    tenant: tenant.0.to_string(),
                    config,
                    node: node.unwrap_or_default(),
                    now_ns: schemas::now(),
                    replicas,
                    members,
                    group,
                };
                e.cluster_station_call(meta, tenant, call).await
            });
        }
        self.blocking(move |e| e.create_station_now(&tenant, config))
    }

    fn update_station_call(
        &self,
        tenant: &TenantId,
        config: StationConfig,
    ) -> AdminFuture<StationInfo> {
        // A station that is not there is answered as such, whatever it asks.
        let exists = self.stations.get(tenant, &config.name).is_ok()
            || self.placed.get(tenant, &config.name).is_some();
        if exists && let Err(e) = self.check_storage_reservation(tenant, &config) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let tenant = tenant.clone();
        if let Some(meta) = self.meta() {
            return self.in_cluster(move |e| async move {
                check_client_station(&config)?;
                let config = stations::normalize(config)?;
                // Replicas 1, 3 or 5: the placement changes with the definition
                // (a station of one copy gets a group first).
                let call =
                    if let Some((replicas, members)) = e.resize_placement(&tenant, &config)? {
                        meta::MetaCall::ResizeStation {
                            tenant: tenant.0.to_string(),
                            config,
                            replicas,
                            members,
                        }
                    } else if let Some((replicas, members, group)) =
                        e.replicate_placement(&tenant, &config)?
                    {
                        meta::MetaCall::ReplicateStation {
                            tenant: tenant.0.to_string(),
                            config,
                            replicas,
                            members,
                            group,
                        }
                    } else {
                        meta::MetaCall::UpdateStation {
                            tenant: tenant.0.to_string(),
                            config,
                        }
                    };
                e.cluster_station_call(meta, tenant, call).await
            });
        }
        self.blocking(move |e| e.update_station_now(&tenant, config))
    }

    fn delete_station_call(&self, tenant: &TenantId, name: &str) -> AdminFuture<()> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        if let Some(meta) = self.meta()
            && !ingress::is_internal_station(&name)
        {
            return self.in_cluster(move |e| async move {
                let call = meta::MetaCall::DeleteStation {
                    tenant: tenant.0.to_string(),
                    name: name.clone(),
                };
                match Self::replicate(&meta, call).await {
                    // A station this node had before it joined the cluster.
                    Err(EngineError::StationNotFound) if e.stations.get(&tenant, &name).is_ok() => {
                        tokio::task::spawn_blocking(move || e.delete_station_now(&tenant, &name))
                            .await
                            .unwrap_or_else(|x| Err(EngineError::Storage(x.to_string())))
                    }
                    other => other,
                }
            });
        }
        self.blocking(move |e| e.delete_station_now(&tenant, &name))
    }

    fn create_group_call(
        &self,
        tenant: &TenantId,
        station: &str,
        config: GroupConfig,
    ) -> AdminFuture<GroupInfo> {
        if let Err(e) = self.check_group_limit(tenant, station, &config.name) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let (tenant, station) = (tenant.clone(), station.to_string());
        if let Some(node) = Broker::station_node(self, &tenant, &station) {
            return self.in_cluster(move |e| async move {
                let call = placement::StationCall::CreateGroup {
                    tenant: tenant.0.to_string(),
                    station,
                    config: Box::new(config),
                    internal: false,
                };
                StationEngine::group_from(e.call_station_node(&node, call).await?)
            });
        }
        self.blocking(move |e| e.create_group_now(&tenant, &station, config))
    }

    fn update_group_call(
        &self,
        tenant: &TenantId,
        station: &str,
        config: GroupConfig,
    ) -> AdminFuture<GroupInfo> {
        let (tenant, station) = (tenant.clone(), station.to_string());
        if let Some(node) = Broker::station_node(self, &tenant, &station) {
            return self.in_cluster(move |e| async move {
                let call = placement::StationCall::UpdateGroup {
                    tenant: tenant.0.to_string(),
                    station,
                    config: Box::new(config),
                };
                StationEngine::group_from(e.call_station_node(&node, call).await?)
            });
        }
        self.blocking(move |e| e.update_group_now(&tenant, &station, config))
    }

    fn delete_group_call(&self, tenant: &TenantId, station: &str, group: &str) -> AdminFuture<()> {
        let (tenant, station, group) = (tenant.clone(), station.to_string(), group.to_string());
        if let Some(node) = Broker::station_node(self, &tenant, &station) {
            return self.in_cluster(move |e| async move {
                let call = placement::StationCall::DeleteGroup {
                    tenant: tenant.0.to_string(),
                    station,
                    group,
                    internal: false,
                };
                e.call_station_node(&node, call).await.map(|_| ())
            });
        }
        self.blocking(move |e| e.delete_group_now(&tenant, &station, &group))
    }
}

impl Admin for StationEngine {
    fn create_station(&self, tenant: &TenantId, config: StationConfig) -> AdminFuture<StationInfo> {
        let (t, name) = (tenant.clone(), config.name.clone());
        // A create repeated with the same definition changes nothing: no advisory.
        let existed = Broker::station_info(self, tenant, &config.name).is_ok();
        let fut = self.create_station_call(tenant, config);
        self.advise_after(fut, move |e| {
            if !existed {
                e.stream_advisory(&t, &name, advisories::Action::Create)
            }
        })
    }

    fn update_station(&self, tenant: &TenantId, config: StationConfig) -> AdminFuture<StationInfo> {
        let (t, name) = (tenant.clone(), config.name.clone());
        let fut = self.update_station_call(tenant, config);
        self.advise_after(fut, move |e| {
            e.stream_advisory(&t, &name, advisories::Action::Modify)
        })
    }

    fn delete_station(&self, tenant: &TenantId, name: &str) -> AdminFuture<()> {
        let (t, n) = (tenant.clone(), name.to_string());
        let fut = self.delete_station_call(tenant, name);
        self.advise_after(fut, move |e| {
            e.stream_advisory(&t, &n, advisories::Action::Delete)
        })
    }

    fn remove_station_peer(&self, tenant: &TenantId, name: &str, peer: &str) -> AdminFuture<()> {
        let (tenant, name, peer) = (tenant.clone(), name.to_string(), peer.to_string());
        self.in_cluster(move |e| async move {
            e.stations
                .get(&tenant, &name)
                .map_err(|err| e.elsewhere(&tenant, &name, err))?;
            e.remove_peer(&tenant, &name, &peer).await
        })
    }

    fn tier_manifests(&self) -> AdminFuture<Vec<junction_api::TierManifest>> {
        self.in_cluster(move |e| async move {
            let remote = e.stations.tier().cloned().ok_or_else(|| {
                EngineError::BadRequest("the broker has no [tier] configured".into())
            })?;
            tier::manifests(&e.stations, &remote).await
        })
    }

    fn adopt_tier(
        &self,
        tenant: &TenantId,
        name: &str,
        uid: &str,
    ) -> AdminFuture<junction_api::TierAdoption> {
        let (tenant, name, uid) = (tenant.clone(), name.to_string(), uid.to_string());
        self.in_cluster(move |e| async move {
            let remote = e.stations.tier().cloned().ok_or_else(|| {
                EngineError::BadRequest("the broker has no [tier] configured".into())
            })?;
            let station = e
                .stations
                .get(&tenant, &name)
                .map_err(|err| e.elsewhere(&tenant, &name, err))?;
            tier::adopt(&e.stations, &station, &remote, &uid).await
        })
    }

    fn step_down_station(&self, tenant: &TenantId, name: &str) -> AdminFuture<String> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        self.in_cluster(move |e| async move {
            let station = e
                .stations
                .get(&tenant, &name)
                .map_err(|err| e.elsewhere(&tenant, &name, err))?;
            let (Some(group), Some(cluster)) =
                (station.replica.get().cloned(), e.cluster().cloned())
            else {
                return Err(EngineError::BadRequest(format!(
                    "station '{name}' is not replicated: it has no leader to change"
                )));
            };
            let to = group.step_down(&cluster).await.map_err(|err| {
                EngineError::ReplicasUnavailable(format!("station '{name}': {err}"))
            })?;
            tracing::info!(station = %name, to = %to, "station leader stepping down");
            Ok(to)
        })
    }

    fn purge_station(&self, tenant: &TenantId, name: &str, purge: Purge) -> AdminFuture<u64> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        if let Some(node) = Broker::station_node(self, &tenant, &name) {
            return self.in_cluster(move |e| async move {
                let call = placement::StationCall::Purge {
                    tenant: tenant.0.to_string(),
                    station: name,
                    filter: purge.filter,
                    seq: purge.seq,
                    keep: purge.keep,
                    internal: false,
                };
                let v = e.call_station_node(&node, call).await?;
                Ok(v.as_u64().unwrap_or(0))
            });
        }
        self.blocking(move |e| e.purge_station_now(&tenant, &name, purge))
    }

    fn delete_message(&self, tenant: &TenantId, name: &str, seq: u64) -> AdminFuture<()> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        if let Some(node) = Broker::station_node(self, &tenant, &name) {
            return self.in_cluster(move |e| async move {
                let call = placement::StationCall::DeleteMessage {
                    tenant: tenant.0.to_string(),
                    station: name,
                    seq,
                };
                e.call_station_node(&node, call).await.map(|_| ())
            });
        }
        self.blocking(move |e| e.delete_message_now(&tenant, &name, seq))
    }

    fn create_group(
        &self,
        tenant: &TenantId,
        station: &str,
        config: GroupConfig,
    ) -> AdminFuture<GroupInfo> {
        let (t, s, g) = (tenant.clone(), station.to_string(), config.name.clone());
        let existed = Broker::group_info(self, tenant, station, &config.name).is_ok();
        let pause = config.pause_until;
        let fut = self.create_group_call(tenant, station, config);
        self.advise_after(fut, move |e| {
            if !existed {
                e.consumer_advisory(&t, &s, &g, advisories::Action::Create);
                if pause.is_some() {
                    e.pause_advisory(&t, &s, &g, pause);
                }
            }
        })
    }

    fn update_group(
        &self,
        tenant: &TenantId,
        station: &str,
        config: GroupConfig,
    ) -> AdminFuture<GroupInfo> {
        let (t, s, g) = (tenant.clone(), station.to_string(), config.name.clone());
        // Where this node does not serve the group, its old pause is unknown:
        // only a new one is announced.
        let old = Broker::group_info(self, tenant, station, &config.name)
            .ok()
            .map(|i| i.config.pause_until);
        let pause = config.pause_until;
        let fut = self.update_group_call(tenant, station, config);
        self.advise_after(fut, move |e| {
            if old.map_or(pause.is_some(), |o| o != pause) {
                e.pause_advisory(&t, &s, &g, pause);
            }
        })
    }

    fn join_cluster(&self, routes: Vec<String>) -> AdminFuture<()> {
        self.blocking(move |e| e.join_cluster_now(routes))
    }

    fn group_info_served(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
    ) -> AdminFuture<GroupInfo> {
        let (tenant, station, group) = (tenant.clone(), station.to_string(), group.to_string());
        if let Some(node) = Broker::station_node(self, &tenant, &station) {
            return self.in_cluster(move |e| async move {
                let call = placement::StationCall::GroupInfo {
                    tenant: tenant.0.to_string(),
                    station,
                    group,
                };
                StationEngine::group_from(e.call_station_node(&node, call).await?)
            });
        }
        let answer = Broker::group_info(self, &tenant, &station, &group);
        Box::pin(async move { answer })
    }

    fn delete_group(&self, tenant: &TenantId, station: &str, group: &str) -> AdminFuture<()> {
        let (t, s, g) = (tenant.clone(), station.to_string(), group.to_string());
        let fut = self.delete_group_call(tenant, station, group);
        self.advise_after(fut, move |e| {
            e.consumer_advisory(&t, &s, &g, advisories::Action::Delete)
        })
    }

    fn create_schema(
        &self,
        tenant: &TenantId,
        name: &str,
        format: SchemaFormat,
        definition: &str,
    ) -> AdminFuture<SchemaInfo> {
        let (tenant, name, definition) = (tenant.clone(), name.to_string(), definition.to_string());
        if let Some(meta) = self.meta() {
            let call = meta::MetaCall::CreateSchema {
                tenant: tenant.0.to_string(),
                name,
                format: format.as_str().to_string(),
                definition,
                now_ns: schemas::now(),
            };
            return self.in_cluster(move |e| e.cluster_schema_call(meta, tenant, call));
        }
        self.blocking(move |e| e.create_schema_now(&tenant, &name, format, &definition))
    }

    fn add_schema_version(
        &self,
        tenant: &TenantId,
        name: &str,
        definition: &str,
    ) -> AdminFuture<SchemaInfo> {
        let (tenant, name, definition) = (tenant.clone(), name.to_string(), definition.to_string());
        if let Some(meta) = self.meta() {
            let call = meta::MetaCall::AddSchemaVersion {
                tenant: tenant.0.to_string(),
                name,
                definition,
                now_ns: schemas::now(),
            };
            return self.in_cluster(move |e| e.cluster_schema_call(meta, tenant, call));
        }
        self.blocking(move |e| e.add_schema_version_now(&tenant, &name, &definition))
    }

    fn activate_schema_version(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u32,
    ) -> AdminFuture<SchemaInfo> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        if let Some(meta) = self.meta() {
            let call = meta::MetaCall::ActivateSchemaVersion {
                tenant: tenant.0.to_string(),
                name,
                version,
            };
            return self.in_cluster(move |e| e.cluster_schema_call(meta, tenant, call));
        }
        self.blocking(move |e| e.activate_schema_version_now(&tenant, &name, version))
    }

    fn delete_schema(&self, tenant: &TenantId, name: &str) -> AdminFuture<()> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        if let Some(meta) = self.meta() {
            return self.in_cluster(move |e| async move {
                // In use by a station of this node: refused here (stations are
                // per node until they are replicated).
                let users = e.schema_users(&tenant, &name);
                if !users.is_empty() {
                    return Err(EngineError::SchemaInUse {
                        schema: name,
                        stations: users,
                    });
                }
                let call = meta::MetaCall::DeleteSchema {
                    tenant: tenant.0.to_string(),
                    name,
                };
                Self::replicate(&meta, call).await
            });
        }
        self.blocking(move |e| e.delete_schema_now(&tenant, &name))
    }

    fn put_routing_rule(&self, tenant: &TenantId, rule: RoutingRule) -> AdminFuture<RoutingRule> {
        let tenant = tenant.clone();
        if let Some(meta) = self.meta() {
            return self.in_cluster(move |e| async move {
                e.check_routing_rule(&tenant, &rule)?;
                let name = rule.name.clone();
                let call = meta::MetaCall::PutRoutingRule {
                    tenant: tenant.0.to_string(),
                    rule,
                };
                Self::replicate(&meta, call).await?;
                e.routing
                    .list(&tenant)
                    .into_iter()
                    .find(|r| r.name == name)
                    .ok_or(EngineError::RoutingRuleNotFound)
            });
        }
        self.blocking(move |e| e.put_routing_rule_now(&tenant, rule))
    }

    fn delete_routing_rule(&self, tenant: &TenantId, name: &str) -> AdminFuture<()> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        if let Some(meta) = self.meta() {
            let call = meta::MetaCall::DeleteRoutingRule {
                tenant: tenant.0.to_string(),
                name,
            };
            return self.in_cluster(move |_| async move { Self::replicate(&meta, call).await });
        }
        self.blocking(move |e| e.delete_routing_rule_now(&tenant, &name))
    }

    fn resend_dead_letters(
        &self,
        tenant: &TenantId,
        station: &str,
        request: ResendRequest,
    ) -> AdminFuture<ResendStatus> {
        let (tenant, station) = (tenant.clone(), station.to_string());
        self.blocking(move |e| e.resend_dead_letters_now(&tenant, &station, request))
    }

    fn close_client(&self, tenant: &TenantId, client: ClientId, reason: &str) -> AdminFuture<()> {
        let (tenant, reason) = (tenant.clone(), reason.to_string());
        self.blocking(move |e| e.close_client_now(&tenant, client, &reason))
    }

    fn notification_centre(&self) -> Option<Arc<dyn junction_api::NotificationCentre>> {
        self.notification_centre.get().cloned()
    }

    fn reload_config(&self) -> AdminFuture<String> {
        let hook = self.reload_hook.get().cloned();
        Box::pin(async move {
            let hook = hook.ok_or_else(|| {
                EngineError::BadRequest(
                    "this broker was not started from a configuration it can read again".into(),
                )
            })?;
            tokio::task::spawn_blocking(move || hook())
                .await
                .map_err(|e| EngineError::Storage(format!("reload failed: {e}")))?
                .map_err(EngineError::invalid_config)
        })
    }

    fn tenant_infos(&self) -> Vec<junction_api::TenantInfo> {
        self.tenant_infos_now()
    }

    fn put_tenant(
        &self,
        name: &str,
        spec: junction_api::TenantSpec,
    ) -> AdminFuture<junction_api::TenantInfo> {
        let name = name.to_string();
        if let Some(meta) = self.meta() {
            return self.in_cluster(move |e| async move {
                let (engine, n) = (e.clone(), name.clone());
                let spec = tokio::task::spawn_blocking(move || engine.prepare_tenant(&n, spec))
                    .await
                    .map_err(|err| EngineError::Storage(format!("tenant check failed: {err}")))??;
                let call = meta::MetaCall::PutTenant {
                    name: name.clone(),
                    spec,
                };
                Self::replicate(&meta, call).await?;
                e.tenant_info(&TenantId(Arc::from(name.as_str())))
                    .ok_or(EngineError::TenantNotFound)
            });
        }
        self.blocking(move |e| e.put_tenant_now(&name, spec))
    }

    fn delete_tenant(&self, name: &str) -> AdminFuture<()> {
        let name = name.to_string();
        if let Some(meta) = self.meta() {
            return self.in_cluster(move |e| async move {
                e.check_delete_tenant(&name)?;
                Self::replicate(&meta, meta::MetaCall::DeleteTenant { name }).await
            });
        }
        self.blocking(move |e| e.delete_tenant_now(&name))
    }

    fn bans(&self) -> Vec<junction_api::BanInfo> {
        self.options.auth.bans()
    }

    // Bans live in memory: nothing to wait for.
    fn lift_ban(&self, kind: junction_api::BanKind, who: &str) -> AdminFuture<()> {
        let lifted = self.options.auth.lift_ban(kind, who);
        Box::pin(async move { lifted })
    }

    fn ban(
        &self,
        kind: junction_api::BanKind,
        who: &str,
        ban_for: std::time::Duration,
        reason: &str,
    ) -> AdminFuture<junction_api::BanInfo> {
        let made = self.options.auth.ban(kind, who, ban_for, reason);
        Box::pin(async move { made })
    }

    fn remove_cluster_node(&self, name: &str) -> AdminFuture<()> {
        let name = name.to_string();
        let meta = self.meta();
        Box::pin(async move {
            let meta = meta
                .ok_or_else(|| EngineError::BadRequest("this node is not in a cluster".into()))?;
            meta.remove(&name).await.map(|_| ()).map_err(|e| match e {
                junction_cluster::meta::MetaError::NoLeader(why) => EngineError::NoQuorum(why),
                junction_cluster::meta::MetaError::Refused(why) if why.starts_with("no node") => {
                    EngineError::BadRequest(why)
                }
                junction_cluster::meta::MetaError::Refused(why) => EngineError::invalid_config(why),
            })
        })
    }
}

impl Monitor for StationEngine {
    fn server_snapshot(&self) -> ServerSnapshot {
        // Connections only: not the engine's client nor a front-end's own ones
        // (`junction-http`, `junction-mqtt`), as nats-server leaves out its internal
        // clients.
        let (connections, subscriptions, not_connections) = {
            let clients = self.clients.read();
            let mut connections = 0u64;
            let mut subs = 0u64;
            let mut others = 0u64;
            for c in clients.values() {
                if c.record.kind().is_connection() {
                    connections += 1;
                    subs += c.subscriptions.len() as u64;
                } else if c.record.id != self.system.id {
                    others += 1;
                }
            }
            (connections, subs, others)
        };
        let c = &self.counters;
        let not_connections = not_connections + c.gone_not_connections.load(Ordering::Relaxed);
        ServerSnapshot {
            server_id: self.options.server_id.clone(),
            server_name: self.options.server_name.clone(),
            version: crate::VERSION.to_string(),
            start: self.start,
            connections,
            total_connections: c
                .total_connections
                .load(Ordering::Relaxed)
                .saturating_sub(not_connections),
            in_msgs: c.in_msgs.load(Ordering::Relaxed),
            in_bytes: c.in_bytes.load(Ordering::Relaxed),
            out_msgs: c.out_msgs.load(Ordering::Relaxed),
            out_bytes: c.out_bytes.load(Ordering::Relaxed),
            subscriptions,
            slow_consumers: c.slow_consumers.load(Ordering::Relaxed),
            tenant_storage_refused: self.storage_usage.refused(),
        }
    }

    fn clients(&self) -> Vec<ClientSnapshot> {
        let clients = self.clients.read();
        let mut out: Vec<ClientSnapshot> = clients
            .values()
            .filter(|e| e.record.id != self.system.id)
            .map(|e| e.record.snapshot(describe(e)))
            .collect();
        out.sort_by_key(|c| c.id);
        out
    }

    fn client_subscriptions(&self, client: ClientId) -> Vec<SubscriptionSnapshot> {
        self.clients
            .read()
            .get(&client)
            .map(describe)
            .unwrap_or_default()
    }

    fn storage_fence(&self) -> Option<String> {
        self.disk_fence()
    }

    fn alarms(&self) -> Vec<(String, String)> {
        self.active_alarms()
    }

    fn event_counts(&self) -> (u64, u64) {
        (self.events.dropped(), self.events.recorded())
    }

    fn storage_health(&self) -> Result<(), String> {
        match self.stations.store().failure() {
            None => Ok(()),
            Some(reason) => Err(format!("storage: {reason}")),
        }
    }

    fn storage_stats(&self) -> StorageStats {
        let store = self.stations.store();
        let fsync = store.fsync_histogram();
        StorageStats {
            fsync_buckets: fsync.buckets,
            fsync_sum_secs: fsync.sum_secs,
            fsync_count: fsync.count,
            disk_bytes: store.disk_space(),
            log_table_bytes: store.log_table_space(),
            corrupt_records: store.corrupt_records(),
            tier: self.stations.tier().map(|r| {
                let c = &r.counters;
                let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                junction_api::TierStats {
                    uploads: n(&c.uploads),
                    upload_errors: n(&c.upload_errors),
                    uploaded_bytes: n(&c.uploaded_bytes),
                    cache_hits: n(&c.cache_hits),
                    cache_misses: n(&c.cache_misses),
                    get_requests: n(&c.get_requests),
                    manifest_writes: n(&c.manifest_writes),
                    manifest_errors: n(&c.manifest_errors),
                    manifest_conflicts: n(&c.manifest_conflicts),
                    segments_restored: n(&c.segments_restored),
                    orphans_removed: n(&c.orphans_removed),
                    disk_cache: r.disk_cache().map(|d| {
                        let (bytes, files) = d.usage();
                        let c = &d.counters;
                        junction_api::DiskCacheStats {
                            bytes,
                            files,
                            capacity_bytes: d.capacity(),
                            queued_bytes: d.queued_bytes(),
                            hits: n(&c.hits),
                            corrupt: n(&c.corrupt),
                            writes: n(&c.writes),
                            evictions: n(&c.evictions),
                            errors: n(&c.errors),
                        }
                    }),
                    read_errors: n(&c.read_errors),
                    corrupt: n(&c.corrupt),
                }
            }),
        }
    }

    fn schema_info(&self, tenant: &TenantId, name: &str) -> Result<SchemaInfo, EngineError> {
        self.schemas
            .info(tenant, name, self.schema_users(tenant, name))
    }

    fn schemas(&self, tenant: &TenantId) -> Vec<SchemaInfo> {
        self.schemas
            .names(tenant)
            .into_iter()
            .filter_map(|n| self.schema_info(tenant, &n).ok())
            .collect()
    }

    fn resend_status(
        &self,
        tenant: &TenantId,
        station: &str,
        task: u64,
    ) -> Result<ResendStatus, EngineError> {
        self.stations.get(tenant, station)?;
        self.resends.lock().status(station, task)
    }

    fn lineage(&self, tenant: &TenantId, id: &str) -> Result<LineageTrace, EngineError> {
        self.lineage
            .trace(tenant, id)
            .ok_or(EngineError::MessageNotFound)
    }

    fn lineage_graph(&self, tenant: &TenantId) -> LineageGraph {
        self.lineage.graph(tenant)
    }

    fn routing_rules(&self, tenant: &TenantId) -> Vec<RoutingRule> {
        self.routing.list(tenant)
    }

    fn events(&self, tenant: &TenantId, filter: &junction_api::EventFilter) -> Vec<SystemEvent> {
        self.read_events(tenant, filter)
    }

    fn cluster(&self) -> Option<junction_api::ClusterSnapshot> {
        self.cluster_snapshot()
    }
}

/// The admin operations' bodies. They write metadata and wait for it to be durable
/// (an fsync), so they run on a blocking thread: [`Admin`] calls them through
/// [`StationEngine::blocking`].
impl StationEngine {
    /// Publishes `message` in every tenant that imports it from `from`'s;
    /// returns how many received it there.
    fn deliver_imports(&self, from: &ClientRecord, message: &Message) -> usize {
        let Some(routes) = self.imports.get(from.tenant()) else {
            return 0;
        };
        if self
            .import_clients
            .read()
            .get(from.tenant())
            .is_some_and(|c| c.id == from.id)
        {
            return 0;
        }
        let mut delivered = 0;
        for route in routes.iter().filter(|r| r.filter.matches(&message.subject)) {
            let subject = match &route.prefix {
                Some(p) => format!("{p}.{}", message.subject.to_str_lossy()),
                None => message.subject.to_str_lossy().into_owned(),
            };
            let Ok(subject) = Subject::new(subject) else {
                continue;
            };
            let clean = if from.protocol == Protocol::Mqtt {
                lineage::strip_mqtt_markers(message).into_owned()
            } else {
                message.clone()
            };
            let imported = Message {
                subject,
                // Replies stay in the exporting tenant.
                reply: None,
                headers: clean.headers,
                payload: clean.payload,
            };
            let client = self.import_client(&route.to);
            delivered +=
                Broker::publish_stored(self, &client, &imported, &PublishOptions::default(), None)
                    .delivered;
        }
        delivered
    }

    fn import_client(&self, tenant: &TenantId) -> Arc<ClientRecord> {
        self.internal_client(&self.import_clients, tenant)
    }

    /// The engine's own client of `tenant` kept in `made`, registered (as an
    /// internal client) the first time it is asked for.
    fn internal_client(
        &self,
        made: &RwLock<AHashMap<TenantId, Arc<ClientRecord>>>,
        tenant: &TenantId,
    ) -> Arc<ClientRecord> {
        if let Some(c) = made.read().get(tenant) {
            return c.clone();
        }
        let mut made = made.write();
        if let Some(c) = made.get(tenant) {
            return c.clone();
        }
        let id = ClientId(self.next_client.fetch_add(1, Ordering::Relaxed));
        let record = Arc::new(ClientRecord::new(
            id,
            tenant.clone(),
            &NewClient {
                protocol: Protocol::Nats,
                remote: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            },
        ));
        record.set_kind(ClientKind::Internal);
        self.clients.write().insert(
            id,
            ClientEntry {
                record: record.clone(),
                subscriptions: AHashMap::new(),
            },
        );
        made.insert(tenant.clone(), record.clone());
        record
    }

    fn limits_of(&self, tenant: &TenantId) -> Option<TenantLimits> {
        self.book.limits_of(tenant)
    }

    /// The tenant's stations, not counting the broker's own (`$…`).
    fn client_stations(&self, tenant: &TenantId) -> Vec<String> {
        let mut names = Broker::station_names(self, tenant, None);
        names.retain(|n| !ingress::is_internal_station(n));
        names
    }

    /// Refuses a new station beyond the tenant's `max_streams`.
    fn check_station_limit(&self, tenant: &TenantId, name: &str) -> Result<(), EngineError> {
        let Some(limits) = self.limits_of(tenant).filter(|l| l.max_streams > 0) else {
            return Ok(());
        };
        let names = self.client_stations(tenant);
        if names.iter().any(|n| n == name) {
            return Ok(());
        }
        within_limit(
            tenant,
            TenantLimit::Streams,
            names.len(),
            limits.max_streams,
        )
    }

    /// Refuses a new station whose `max_bytes` does not fit the tenant's storage
    /// limits. Creating one that exists already is not checked: it answers with
    /// the station as it is, or that the name is taken (as nats-server does).
    fn check_new_station_storage(
        &self,
        tenant: &TenantId,
        config: &StationConfig,
    ) -> Result<(), EngineError> {
        if self.stations.get(tenant, &config.name).is_ok()
            || self.placed.get(tenant, &config.name).is_some()
        {
            return Ok(());
        }
        self.check_storage_reservation(tenant, config)
    }

    /// Refuses a new consumer group beyond the tenant's `max_consumers`.
    fn check_group_limit(
        &self,
        tenant: &TenantId,
        station: &str,
        name: &str,
    ) -> Result<(), EngineError> {
        let Some(limits) = self.limits_of(tenant).filter(|l| l.max_consumers > 0) else {
            return Ok(());
        };
        if ingress::is_internal_station(station) {
            return Ok(());
        }
        if Broker::group_names(self, tenant, station).is_ok_and(|g| g.iter().any(|g| g == name)) {
            return Ok(());
        }
        let count: usize = self
            .client_stations(tenant)
            .iter()
            .filter_map(|s| Broker::group_names(self, tenant, s).ok())
            .map(|g| g.len())
            .sum();
        within_limit(tenant, TenantLimit::Consumers, count, limits.max_consumers)
    }

    /// Refuses one more connection of `tenant` beyond its `max_connections`
    /// (`except`: the client asking, counted already).
    fn check_connection_limit(
        &self,
        tenant: &TenantId,
        except: Option<ClientId>,
    ) -> Result<(), EngineError> {
        let Some(limits) = self.limits_of(tenant).filter(|l| l.max_connections > 0) else {
            return Ok(());
        };
        let count = self
            .clients
            .read()
            .values()
            .filter(|c| {
                Some(c.record.id) != except
                    && c.record.kind().is_connection()
                    && matches!(
                        c.record.protocol,
                        Protocol::Nats | Protocol::Mqtt | Protocol::WebSocket
                    )
                    && c.record.tenant() == tenant
            })
            .count();
        within_limit(
            tenant,
            TenantLimit::Connections,
            count,
            limits.max_connections,
        )
    }
}

impl StationEngine {
    /// Runs `f` on a blocking thread of the current tokio runtime, with an owned
    /// handle on this engine.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StationEngine) -> Result<T, EngineError> + Send + 'static,
    ) -> AdminFuture<T> {
        let me = self.me.upgrade();
        Box::pin(async move {
            let me = me.ok_or(EngineError::ShuttingDown)?;
            tokio::task::spawn_blocking(move || f(&me))
                .await
                .unwrap_or_else(|e| Err(EngineError::Storage(format!("admin task failed: {e}"))))
        })
    }

    /// Runs an async admin body with an owned handle on this engine (calls that
    /// go through the cluster's meta group).
    fn in_cluster<T, F>(
        &self,
        f: impl FnOnce(Arc<StationEngine>) -> F + Send + 'static,
    ) -> AdminFuture<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, EngineError>> + Send + 'static,
    {
        let me = self.me.upgrade();
        Box::pin(async move {
            let me = me.ok_or(EngineError::ShuttingDown)?;
            f(me).await
        })
    }

    pub(crate) fn create_group_now(
        &self,
        tenant: &TenantId,
        station: &str,
        config: GroupConfig,
    ) -> Result<GroupInfo, EngineError> {
        ingress::refuse_internal_group(station)?;
        self.create_group_any(tenant, station, config)
    }

    /// Creates a group here (through the log on a replicated station this node
    /// leads), whoever's station it is.
    pub(crate) fn create_group_any(
        &self,
        tenant: &TenantId,
        station: &str,
        config: GroupConfig,
    ) -> Result<GroupInfo, EngineError> {
        if let Ok(s) = self.stations.get(tenant, station)
            && let Some(g) = s.replica.get()
        {
            return self.propose_admin(
                &s,
                g,
                replicated::AdminOp::CreateGroup {
                    config: Box::new(config),
                },
            );
        }
        let (station, group) = self.stations.create_group(tenant, station, config)?;
        Ok(self.group_info_of(&station, &group))
    }

    /// Updates a group here (through the log on a replicated station this
    /// node leads).
    pub(crate) fn update_group_now(
        &self,
        tenant: &TenantId,
        station: &str,
        config: GroupConfig,
    ) -> Result<GroupInfo, EngineError> {
        ingress::refuse_internal_group(station)?;
        if let Ok(s) = self.stations.get(tenant, station)
            && let Some(g) = s.replica.get()
        {
            // Checked here first: a refused update is not written to the log.
            let (_, group) = self.stations.group(tenant, station, &config.name)?;
            group::check_update(&group.config(), &group::normalize(config.clone())?)?;
            return self.propose_admin(
                &s,
                g,
                replicated::AdminOp::UpdateGroup {
                    config: Box::new(config),
                },
            );
        }
        let (station, group) = self.stations.update_group(tenant, station, config)?;
        Ok(self.group_info_of(&station, &group))
    }

    pub(crate) fn delete_group_now(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
    ) -> Result<(), EngineError> {
        ingress::refuse_internal_group(station)?;
        self.delete_group_any(tenant, station, group)
    }

    /// Deletes a group here (through the log on a replicated station this node
    /// leads), whoever's station it is.
    pub(crate) fn delete_group_any(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
    ) -> Result<(), EngineError> {
        if let Ok(s) = self.stations.get(tenant, station)
            && let Some(g) = s.replica.get()
        {
            let op = replicated::AdminOp::DeleteGroup {
                group: group.to_string(),
            };
            return self.propose_admin(&s, g, op);
        }
        self.stations.delete_group(tenant, station, group)
    }

    pub(crate) fn create_station_now(
        &self,
        tenant: &TenantId,
        config: StationConfig,
    ) -> Result<StationInfo, EngineError> {
        // A front-end's cluster-wide station comes from the meta group (a
        // client's create was checked before it was proposed).
        if self.meta().is_none() || !internal::is_cluster_scoped(&config) {
            check_client_station(&config)?;
        }
        self.check_station_schema(tenant, &config)?;
        tier::check_policy(&config, self.stations.tier().is_some())?;
        station::compact::check_policy(&config)?;
        if config.replicas > 1 && self.meta().is_none() {
            return Err(EngineError::InvalidConfig(
                junction_api::ConfigError::ReplicasUnsupported,
            ));
        }
        let station = self.stations.create(tenant, config)?;
        self.sync_dead_letter(tenant, &station.config())?;
        Ok(self.station_info_of(&station))
    }

    pub(crate) fn update_station_now(
        &self,
        tenant: &TenantId,
        config: StationConfig,
    ) -> Result<StationInfo, EngineError> {
        if self.meta().is_none() || !internal::is_cluster_scoped(&config) {
            check_client_station(&config)?;
        }
        self.check_station_schema(tenant, &config)?;
        tier::check_policy(&config, self.stations.tier().is_some())?;
        station::compact::check_policy(&config)?;
        let station = self.stations.update(tenant, config)?;
        self.sync_dead_letter(tenant, &station.config())?;
        Ok(self.station_info_of(&station))
    }

    pub(crate) fn delete_station_now(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<(), EngineError> {
        if name.starts_with(junction_api::DLS_PREFIX) {
            return Err(EngineError::Denied(Denial::DeadLetterStationDelete));
        }
        refuse_internal(name, false)?;
        self.stations.delete(tenant, name)?;
        match self
            .stations
            .delete(tenant, &junction_api::dead_letter_station(name))
        {
            Ok(()) | Err(EngineError::StationNotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn purge_station_now(
        &self,
        tenant: &TenantId,
        name: &str,
        purge: Purge,
    ) -> Result<u64, EngineError> {
        refuse_internal(name, true)?;
        self.purge_any(tenant, name, purge)
    }

    /// Purges here (through the log on a replicated station this node leads),
    /// whoever's station it is.
    pub(crate) fn purge_any(
        &self,
        tenant: &TenantId,
        name: &str,
        purge: Purge,
    ) -> Result<u64, EngineError> {
        // A replicated station's dead letters: purged on every replica.
        if let Some(parent) = name.strip_prefix(junction_api::DLS_PREFIX)
            && let Ok(s) = self.stations.get(tenant, parent)
            && s.is_replicated()
            && let Some(g) = s.replica.get()
        {
            let op = replicated::AdminOp::DeadLetterPurge {
                filter: purge.filter,
                seq: purge.seq,
                keep: purge.keep,
            };
            return self.propose_admin(&s, g, op);
        }
        if let Ok(s) = self.stations.get(tenant, name)
            && let Some(g) = s.replica.get()
        {
            let op = replicated::AdminOp::Purge {
                filter: purge.filter,
                seq: purge.seq,
                keep: purge.keep,
            };
            return self.propose_admin(&s, g, op);
        }
        self.purge_in(tenant, name, purge)
    }

    pub(crate) fn delete_message_now(
        &self,
        tenant: &TenantId,
        name: &str,
        seq: u64,
    ) -> Result<(), EngineError> {
        refuse_internal(name, true)?;
        let s = self.stations.get(tenant, name)?;
        if let Some(g) = s.replica.get() {
            return self.propose_admin(&s, g, replicated::AdminOp::DeleteMessage { seq });
        }
        s.delete_message(seq)
    }

    pub(crate) fn create_schema_now(
        &self,
        tenant: &TenantId,
        name: &str,
        format: SchemaFormat,
        definition: &str,
    ) -> Result<SchemaInfo, EngineError> {
        self.schemas.create(tenant, name, format, definition)
    }

    pub(crate) fn add_schema_version_now(
        &self,
        tenant: &TenantId,
        name: &str,
        definition: &str,
    ) -> Result<SchemaInfo, EngineError> {
        let users = self.schema_users(tenant, name);
        self.schemas.add_version(tenant, name, definition, users)
    }

    pub(crate) fn activate_schema_version_now(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u32,
    ) -> Result<SchemaInfo, EngineError> {
        let users = self.schema_users(tenant, name);
        self.schemas.activate(tenant, name, version, users)
    }

    pub(crate) fn delete_schema_now(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<(), EngineError> {
        let users = self.schema_users(tenant, name);
        if !users.is_empty() {
            return Err(EngineError::SchemaInUse {
                schema: name.to_string(),
                stations: users,
            });
        }
        self.schemas.delete(tenant, name)
    }

    pub(crate) fn resend_dead_letters_now(
        &self,
        tenant: &TenantId,
        station: &str,
        request: ResendRequest,
    ) -> Result<ResendStatus, EngineError> {
        self.start_resend(tenant, station, request)
    }

    pub(crate) fn put_routing_rule_now(
        &self,
        tenant: &TenantId,
        rule: RoutingRule,
    ) -> Result<RoutingRule, EngineError> {
        self.check_routing_rule(tenant, &rule)?;
        self.routing.put(tenant, rule)
    }

    /// A rule's stations must exist (on this node).
    pub(crate) fn check_routing_rule(
        &self,
        tenant: &TenantId,
        rule: &RoutingRule,
    ) -> Result<(), EngineError> {
        if let Some(stations) = &rule.action.route {
            for s in stations {
                self.stations.get(tenant, s).map_err(|_| {
                    EngineError::invalid_config(format!(
                        "routing rule '{}': station '{s}' not found",
                        rule.name
                    ))
                })?;
            }
        }
        routing::check(rule)
    }

    pub(crate) fn delete_routing_rule_now(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<(), EngineError> {
        self.routing.delete(tenant, name)
    }

    pub(crate) fn close_client_now(
        &self,
        tenant: &TenantId,
        client: ClientId,
        reason: &str,
    ) -> Result<(), EngineError> {
        let record = self
            .clients
            .read()
            .get(&client)
            .filter(|e| e.record.id != self.system.id && e.record.tenant() == tenant)
            .map(|e| e.record.clone())
            .ok_or(EngineError::ClientNotFound)?;
        // The front-end's callback only signals its task; no engine lock is held.
        let closed = record.request_close(reason, || {
            self.events.record(
                SystemEventKind::ClientKicked,
                events::About {
                    client: Some(&record),
                    keep: Some(record.clone()),
                    ..Default::default()
                },
                format!(
                    "{} client {} disconnected by an operator",
                    protocol_word(record.protocol),
                    client.0
                ),
            )
        });
        if closed {
            tracing::info!(
                cid = client.0,
                protocol = protocol_word(record.protocol),
                name = record.name().unwrap_or_default(),
                "client disconnected by an operator: {reason}"
            );
            Ok(())
        } else {
            Err(EngineError::Denied(Denial::NotAConnection(client)))
        }
    }
}

/// A protocol as a word for event messages.
fn protocol_word(p: Protocol) -> &'static str {
    match p {
        Protocol::Nats => "NATS",
        Protocol::Mqtt => "MQTT",
        Protocol::Http => "HTTP",
        Protocol::WebSocket => "WebSocket",
        _ => "other",
    }
}

fn describe(entry: &ClientEntry) -> Vec<SubscriptionSnapshot> {
    let mut subs: Vec<&Arc<Subscription>> = entry.subscriptions.values().collect();
    subs.sort_by_key(|s| s.id);
    subs.iter()
        .map(|s| {
            let (sid, delivered) = s.subscriber.describe();
            SubscriptionSnapshot {
                subject: s.filter.to_str_lossy().into_owned(),
                queue: s.queue.as_ref().map(|q| q.to_str_lossy().into_owned()),
                sid,
                delivered,
            }
        })
        .collect()
}
