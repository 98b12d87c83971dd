//! The [`Engine`] trait: everything a front-end may ask of the broker.

use crate::{
    AckKind, BanInfo, BanKind, ClientId, ClientRecord, ClientSnapshot, Credentials, EngineError,
    FanoutId, FetchRequest, FetchSink, GroupConfig, GroupInfo, Identity, LineageGraph,
    LineageTrace, Message, MessageQuery, NewClient, PublishOptions, Purge, QueueGroup,
    ResendRequest, ResendStatus, RoutingRule, SchemaFormat, SchemaInfo, StationConfig, StationInfo,
    StoredCallback, StoredMessage, Subject, SubjectFilter, SubscriptionSnapshot, SystemEvent,
    TenantId, TenantInfo, TenantSpec,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

/// What an [`Admin`] call returns: a future that does the call's blocking work
/// (metadata writes and their fsync) on the engine's own blocking threads, so that
/// awaiting it never blocks a front-end's async worker. It owns what it needs
/// (`'static`): the caller may drop its borrows at once.
pub type AdminFuture<T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send + 'static>>;

/// A node's own replica of a replicated station (see [`Broker::replica_role`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRole {
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub role: String,
    /// The last Raft log index applied here.
    pub applied: u64,
    /// The log index of this node's newest snapshot of the station.
    pub snapshot_index: Option<u64>,
    /// Log entries up to this index were purged here (its snapshot has them).
    pub purged_index: Option<u64>,
    /// The first sequence on this node's own disk (a tiered station keeps
    /// older ones only in the bucket).
    pub local_first_seq: u64,
    /// Segments in this replica's remote index (0: not tiered).
    pub remote_segments: u64,
    /// The last sequence its remote index holds (0: none).
    pub remote_last_seq: u64,
}

/// Called once an ack sent with [`Engine::ack_committed`] is durable (or refused).
pub type AckDone = Box<dyn FnOnce(Result<(), EngineError>) + Send + 'static>;

/// A wait a front-end awaits before it reads more publishes: the broker is behind
/// forwarding them (a cluster link), as nats-server stalls a fast producer.
pub type Backpressure = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// An engine-wide subscription id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

/// What a [`Subscriber`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the client.
    Accepted,
    /// Queued, and that was the last one the subscription wanted (NATS `UNSUB sid max`):
    /// the engine removes the subscription.
    AcceptedLast,
    /// Not delivered: the subscription or its connection is gone. The engine removes
    /// the subscription.
    Gone,
}

/// A front-end's receiving end of one subscription.
///
/// `deliver` runs on the publisher's task, inside the engine's fan-out. It must queue
/// the message and return at once: never block, never await, never call back into the
/// engine.
pub trait Subscriber: Send + Sync + 'static {
    /// Queues `message` for the client. `fanout` names the publish being fanned
    /// out: every call for one publish gets the same id (so a front-end can send a
    /// client one copy for overlapping subscriptions), and no other publish has it.
    fn deliver(&self, message: &Message, fanout: FanoutId) -> Delivery;

    /// The protocol's own id for this subscription and its delivery count, for
    /// monitoring.
    fn describe(&self) -> (String, u64);
}

/// The result of a publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// How many subscriptions received the message live.
    pub delivered: usize,
    /// True when a station captured the message (its callback, if any, will run).
    pub captured: bool,
    /// Set when the engine refused the message as a whole, so that nothing was
    /// stored or delivered: [`EngineError::DroppedByRule`] (a routing rule dropped
    /// it) or [`EngineError::InternalSubject`] (the subject is the broker's own).
    /// When a station would have captured it, the stored callback got the same error.
    pub refused: Option<EngineError>,
}

/// Server-wide figures for monitoring (`/varz`).
#[derive(Debug, Clone)]
pub struct ServerSnapshot {
    /// Unique id of this server process.
    pub server_id: String,
    /// Configured server name.
    pub server_name: String,
    /// Junction version.
    pub version: String,
    /// When the server started.
    pub start: SystemTime,
    /// Clients connected now.
    pub connections: u64,
    /// Clients connected since start.
    pub total_connections: u64,
    /// Messages published into the server.
    pub in_msgs: u64,
    /// Payload bytes published into the server.
    pub in_bytes: u64,
    /// Messages delivered by the server.
    pub out_msgs: u64,
    /// Payload bytes delivered by the server.
    pub out_bytes: u64,
    /// Live subscriptions.
    pub subscriptions: u64,
    /// Clients disconnected as slow consumers since start.
    pub slow_consumers: u64,
    /// Messages a station did not store since start because their tenant's
    /// stations would have held more than its `max_file` / `max_memory`.
    pub tenant_storage_refused: u64,
}

/// A tenant's limits on its stations ([`Broker::station_quota`]); `None`: no
/// limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StationQuota {
    /// Stations.
    pub max_streams: Option<u64>,
    /// Consumer groups over all its stations.
    pub max_consumers: Option<u64>,
    /// Bytes of file storage over its stations.
    pub max_file: Option<u64>,
    /// Bytes of memory storage over its stations.
    pub max_memory: Option<u64>,
}

/// This node's view of its cluster (`/v1/cluster`, `/varz`'s `cluster`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// The cluster's name.
    pub name: String,
    /// This node's name.
    pub node: String,
    /// The meta group's leader; `None` while there is none (an election, no
    /// quorum, or the group still forming).
    pub meta_leader: Option<String>,
    /// This node's meta group id (`None` until it has one).
    pub meta_id: Option<u64>,
    /// This node's role in the meta group: `leader`, `follower`, `learner`,
    /// `candidate` or `joining`.
    pub meta_role: String,
    /// Last meta log index applied on this node.
    pub meta_applied: u64,
    /// Every node this one knows, itself first.
    pub nodes: Vec<ClusterNode>,
    /// Messages that could not be forwarded to a peer (link down or its queue
    /// full) since start.
    pub dropped_forwards: u64,
}

/// One node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// Node name.
    pub name: String,
    /// Its cluster address.
    pub addr: String,
    /// A link to it is up (always, for this node).
    pub online: bool,
    /// A voter of the meta group.
    pub voter: bool,
    /// Its meta group id (`None` until it has one).
    pub id: Option<u64>,
    /// Meta log entries it is behind the leader; known when the answering node
    /// is the leader (`None` elsewhere, and for the leader itself).
    pub lag: Option<u64>,
    /// When it was last heard from.
    pub last_seen: SystemTime,
    /// This node.
    pub this: bool,
    /// Its client URLs (NATS `host:port`).
    pub client_urls: Vec<String>,
    /// Its HTTP API address (`host:port`), if it serves HTTP.
    pub http_url: Option<String>,
}

/// Storage figures for monitoring (`/metrics`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageStats {
    /// fsync latency histogram: `(upper bound in seconds, fsyncs at or below it)`,
    /// cumulative, ascending. The `+Inf` bucket is [`StorageStats::fsync_count`].
    pub fsync_buckets: Vec<(f64, u64)>,
    /// Total time spent in fsync, in seconds.
    pub fsync_sum_secs: f64,
    /// Number of fsyncs.
    pub fsync_count: u64,
    /// Disk space the store uses, in bytes.
    pub disk_bytes: u64,
    /// Of which the message log's tables (without the journal, which is
    /// given back only when it rotates): what deletes and compaction shrink.
    pub log_table_bytes: u64,
    /// Stored records found corrupt (checksum mismatch or undecodable) since start.
    pub corrupt_records: u64,
    /// The remote tier's counters, when the broker has one.
    pub tier: Option<TierStats>,
}

/// The remote tier's counters since start (`/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Segments uploaded.
    pub uploads: u64,
    /// Upload attempts that failed (each is retried).
    pub upload_errors: u64,
    /// Bytes uploaded.
    pub uploaded_bytes: u64,
    /// Remote block reads served from a cache (memory or disk).
    pub cache_hits: u64,
    /// Remote block reads that went to the bucket.
    pub cache_misses: u64,
    /// GET requests sent to the bucket for reads (a read-ahead GET fetches
    /// several blocks).
    pub get_requests: u64,
    /// The on-disk cache, when there is one.
    pub disk_cache: Option<DiskCacheStats>,
    /// Remote reads that failed (unavailable or corrupt).
    pub read_errors: u64,
    /// Segment objects or blocks that failed their checks.
    pub corrupt: u64,
    /// Station manifests written to the bucket.
    pub manifest_writes: u64,
    /// Manifest writes that failed (retried).
    pub manifest_errors: u64,
    /// Manifest writes refused because another writer changed the object.
    pub manifest_conflicts: u64,
    /// Segments restored into a remote index from a manifest.
    pub segments_restored: u64,
    /// Objects the reconciler deleted.
    pub orphans_removed: u64,
}

/// A station's manifest found in the bucket (`GET /v1/tier/manifests`): what
/// an operator who lost a broker's disk adopts into a new station.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierManifest {
    /// The unique id the objects are kept under (`stations/<uid>/`).
    pub uid: String,
    /// Segments the manifest lists.
    pub segments: u64,
    /// First sequence of the first segment (above the floor).
    pub first_seq: u64,
    /// Last sequence of the last segment.
    pub last_seq: u64,
    /// Messages in the segments.
    pub messages: u64,
    /// Their stored bytes.
    pub bytes: u64,
    /// Time of the oldest message (ns since the epoch).
    pub first_time_ns: u64,
    /// Time of the newest message.
    pub last_time_ns: u64,
    /// Up to 10 subjects of the segments' messages, to tell stations apart.
    pub subjects: Vec<String>,
    /// The station of this broker whose index uses these objects now.
    pub station: Option<(TenantId, String)>,
    /// The manifest could not be read (damaged); the rest is empty.
    pub error: Option<String>,
}

/// What adopting a manifest into a station did (`POST
/// /v1/stations/{station}/tier/adopt`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierAdoption {
    /// Segments taken into the station's remote index.
    pub segments: u64,
    /// Segments the manifest lists that were missing from the bucket or
    /// failed their checks (logged, never served).
    pub skipped: u64,
    /// Messages in the adopted segments.
    pub messages: u64,
    /// First and last adopted sequence.
    pub first_seq: u64,
    /// Last adopted sequence; the station's next message gets a higher one.
    pub last_seq: u64,
    /// The old manifest was removed from the bucket (the station's own now
    /// lists the segments); false when the new one could not be written yet.
    pub old_manifest_removed: bool,
}

/// The remote tier's on-disk cache (`/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskCacheStats {
    /// Bytes of files in it now.
    pub bytes: u64,
    /// Files in it now.
    pub files: u64,
    /// Its bound (`tier.disk_cache_bytes`).
    pub capacity_bytes: u64,
    /// Bytes fetched from S3 waiting to be written to it.
    pub queued_bytes: u64,
    /// Reads served from it since start (also counted in `cache_hits`).
    pub hits: u64,
    /// Files that failed their checksum since start (deleted and refetched).
    pub corrupt: u64,
    /// Files written since start.
    pub writes: u64,
    /// Files removed to stay within the bound since start.
    pub evictions: u64,
    /// Files that could not be written, read or removed since start.
    pub errors: u64,
}

/// The broker, as every protocol front-end sees it: the three surfaces below, split
/// by what they may cost the caller.
///
/// - [`Broker`]: the message path (connect, publish, subscribe, fetch, ack).
///   Synchronous and cheap; never waits on I/O.
/// - [`Admin`]: changes to stations, groups, schemas, rules and clients. Each call
///   returns an [`AdminFuture`]; the engine does the blocking (an fsync) itself, off
///   the caller's thread.
/// - [`Monitor`]: snapshots, figures, health, events and lineage reads. Synchronous
///   reads of in-memory state; never a write.
///
/// No method has a default body: every engine implements every surface.
pub trait Engine: Broker + Admin + Monitor {}

impl<T: Broker + Admin + Monitor> Engine for T {}

/// The message path. Every method is synchronous, returns at once and never waits on
/// I/O: front-ends call it from their async workers (and the engine from its own
/// fan-out). Publishes that a station stores are acknowledged later, through their
/// [`StoredCallback`], once durable.
pub trait Broker: Send + Sync + 'static {
    /// Does this broker require credentials?
    fn auth_required(&self) -> bool;

    /// Checks credentials: who they belong to (tenant, user, permissions). May
    /// run a slow password hash (bcrypt); the engine runs it off the async
    /// workers and remembers recent successes.
    fn authenticate(&self, credentials: &Credentials) -> Result<Identity, EngineError>;

    /// Registers a new connection. Fails when the server is at its connection limit.
    fn connect(
        &self,
        client: NewClient,
        tenant: TenantId,
    ) -> Result<Arc<ClientRecord>, EngineError>;

    /// Removes a connection and every subscription it holds.
    fn disconnect(&self, client: ClientId);

    /// Publishes a message from `from`: live fan-out to every matching subscription,
    /// one member per queue group, and capture by the station whose subjects match.
    fn publish(&self, from: &ClientRecord, message: &Message) -> PublishOutcome {
        self.publish_stored(from, message, &PublishOptions::NONE, None)
    }

    /// Like [`Broker::publish`]; when a station captures the message, `stored` runs
    /// once it is durable under the station's policy, or refused (for instance with
    /// [`EngineError::SchemaViolation`], or [`EngineError::DroppedByRule`] when a
    /// routing rule dropped a message a station would have stored). When no station
    /// captures it, `stored` is dropped without being called. The engine strips
    /// reserved `Junction-*` headers from the message and stamps lineage on what a
    /// station stores.
    ///
    /// `options` is what the producer asks of the capturing station (its
    /// de-duplication id, preconditions), filled by the front-end from its
    /// protocol; the engine never reads header names for it, and stores the
    /// message's headers as they are.
    fn publish_stored(
        &self,
        from: &ClientRecord,
        message: &Message,
        options: &PublishOptions,
        stored: Option<StoredCallback>,
    ) -> PublishOutcome;

    /// The engine's own client, used to publish replies (acks, API responses).
    fn system_client(&self) -> Arc<ClientRecord>;

    /// The engine's own client in `tenant`: what a front-end's internal service
    /// publishes an answer to a client of that tenant with (its subjects are the
    /// tenant's). The default tenant's is [`Broker::system_client`].
    fn tenant_client(&self, tenant: &TenantId) -> Arc<ClientRecord> {
        let _ = tenant;
        self.system_client()
    }

    /// [`Broker::authenticate`] for a client at `remote`: an address that failed
    /// too often lately is refused before its credentials are even checked
    /// (no bcrypt for it), and each failure counts against it.
    fn authenticate_from(
        &self,
        credentials: &Credentials,
        remote: std::net::IpAddr,
    ) -> Result<Identity, EngineError> {
        let _ = remote;
        self.authenticate(credentials)
    }

    /// [`Broker::authenticate_from`] for a client that names itself with
    /// `client_id` (the MQTT CONNECT's client identifier; `None` where the
    /// protocol has no client identity, or the broker assigned it). A client
    /// id that failed too often lately, or that an operator banned, is refused
    /// with [`EngineError::Banned`] before its credentials are checked, from
    /// any address; each failure counts against its address and its client id.
    fn authenticate_client(
        &self,
        credentials: &Credentials,
        remote: std::net::IpAddr,
        client_id: Option<&str>,
    ) -> Result<Identity, EngineError> {
        let _ = client_id;
        self.authenticate_from(credentials, remote)
    }

    /// The SCRAM-SHA-256 keys of `user`, for a front-end that runs a SCRAM
    /// exchange (MQTT 5 enhanced authentication). The client's proof is then
    /// checked with [`Broker::authenticate_client`] and
    /// [`Credentials::ScramSha256`], so bans and failure counting apply as for
    /// a password. `None`: the broker has no users. A user name nobody has, and
    /// a user who cannot log in with SCRAM (its password is a bcrypt hash,
    /// which is not the password; it logs in with an NKey or a certificate
    /// only), get made-up keys that no proof matches, so a client cannot tell
    /// them from a wrong password.
    fn scram_sha256(&self, user: &str) -> Option<crate::scram::ScramCredentials> {
        let _ = user;
        None
    }

    /// Are TLS client certificates mapped to users (`verify_and_map`)? Then a
    /// front-end authenticates a TLS client with
    /// [`Credentials::Certificate`] instead of what it sent.
    fn maps_certificates(&self) -> bool {
        false
    }

    /// Do some users log in with an NKey? Then NATS sends a nonce in INFO for
    /// them to sign.
    fn uses_nonce(&self) -> bool {
        false
    }

    /// Records who `client` authenticated as (its tenant and permissions),
    /// refusing it when its tenant is at its connection limit
    /// ([`EngineError::TenantLimit`]). Front-ends that register a client
    /// before it authenticates (NATS) call this once its credentials check.
    fn join_tenant(&self, client: &ClientRecord, identity: Identity) -> Result<(), EngineError> {
        client.set_authenticated(identity);
        Ok(())
    }

    /// Every configured tenant, the default one first. Internal services that
    /// answer requests on subjects (the JetStream API) subscribe in each.
    fn tenants(&self) -> Vec<TenantId> {
        vec![TenantId::default_tenant()]
    }

    /// An MQTT client names itself `client_id` in its CONNECT (before any
    /// credentials are checked): refused with [`EngineError::Banned`] while the
    /// id is banned, and counted for flapping detection (an id that connects too
    /// often is banned, as EMQX's flapping detection does).
    fn client_connecting(
        &self,
        client_id: &str,
        remote: std::net::IpAddr,
    ) -> Result<(), EngineError> {
        let _ = (client_id, remote);
        Ok(())
    }

    /// Tells the engine that a permission refused `client` something (`what`:
    /// nats-server's words, `Permissions Violation for Publish to "x"`), for
    /// the operators' event log (rate-limited there). Never blocks.
    fn permission_violation(&self, client: &ClientRecord, what: &str) {
        let _ = (client, what);
    }

    /// Are `identity`'s users the broker's operators, who see every tenant in
    /// monitoring and edit tenants? The system tenant's users (`$SYS`, or the
    /// tenant named by `system_account`); without one, the default tenant's.
    fn is_operator(&self, identity: &Identity) -> bool {
        identity.tenant == TenantId::default_tenant()
    }

    /// Calls `hook` with each tenant made after start (over the API), so that
    /// an internal service that subscribes in every tenant (the JetStream API)
    /// serves it too. A tenant deleted and made again is announced again.
    fn on_new_tenant(&self, hook: Arc<dyn Fn(&TenantId) + Send + Sync>) {
        let _ = hook;
    }

    /// Counts a message a front-end delivered to one of its clients without a
    /// fan-out (a PubAck queued straight on the publisher's own inbox), so that
    /// `out_msgs`/`out_bytes` stay what the clients received.
    fn count_delivered(&self, payload_bytes: usize);

    /// Delivers `message` (keeping its own subject) to every subscription matching
    /// `route`: how a pull delivery reaches the member's inbox.
    fn publish_routed(&self, from: &ClientRecord, route: &Subject, message: &Message) -> usize;

    /// Whether anyone is subscribed to `subject` in `tenant` (here, or on
    /// another node of a cluster): a push group delivers only then.
    fn has_interest(&self, _tenant: &TenantId, _subject: &Subject) -> bool {
        true
    }

    /// The tenant's limits on stations (`[[tenants]] jetstream`), as JetStream's
    /// account info reports them. The default: none.
    fn station_quota(&self, _tenant: &TenantId) -> StationQuota {
        StationQuota::default()
    }

    /// A station's configuration and state (in memory).
    fn station_info(&self, tenant: &TenantId, name: &str) -> Result<StationInfo, EngineError>;

    /// Whether station `name` answers direct gets (JetStream `allow_direct`):
    /// read on every direct get, so cheaper than [`Broker::station_info`].
    /// False for a station that does not exist.
    fn allows_direct_get(&self, tenant: &TenantId, name: &str) -> bool {
        self.station_info(tenant, name)
            .is_ok_and(|info| info.config.allow_direct)
    }

    /// In a cluster, the node that holds station `name` when it is not this one
    /// (`None`: this node holds it, it does not exist, or there is no cluster).
    fn station_node(&self, tenant: &TenantId, name: &str) -> Option<String>;

    /// This node's replica of the replicated station `name`: its Raft role,
    /// applied index and snapshot. `None` when this node holds no replica of it.
    fn replica_role(&self, _tenant: &TenantId, _name: &str) -> Option<ReplicaRole> {
        None
    }

    /// Sends `message` to node `node`, where it goes to the broker's own
    /// subscribers only (its JetStream API and ack services), which answer on
    /// its reply subject as for a request made there: how a front-end passes a
    /// request about a station on another node to that node.
    fn forward_request(
        &self,
        node: &str,
        tenant: &TenantId,
        message: &Message,
    ) -> Result<(), EngineError>;

    /// Sends `message` to every other node of the cluster that a link is up to,
    /// where it goes to the broker's own subscribers only (as
    /// [`Broker::forward_request`]); returns how many nodes. How a front-end
    /// keeps its own state in step across nodes (MQTT retained messages and
    /// client-id takeover). 0 when there is no cluster.
    fn broadcast_request(&self, tenant: &TenantId, message: &Message) -> usize;

    /// Station names, sorted; only those capturing `subject` when given.
    fn station_names(&self, tenant: &TenantId, subject: Option<&str>) -> Vec<String>;

    /// Reads one stored message: a read of the store (its cache, or the page cache),
    /// never a write.
    fn get_message(
        &self,
        tenant: &TenantId,
        name: &str,
        query: MessageQuery,
    ) -> Result<StoredMessage, EngineError>;

    /// How many stored messages of station `name` at or after `from` are on
    /// subjects matching `filter` (every subject when `None`).
    fn count_messages(
        &self,
        _tenant: &TenantId,
        _name: &str,
        _from: u64,
        _filter: Option<&str>,
    ) -> Result<u64, EngineError> {
        Err(EngineError::BadRequest(
            "counting messages is not supported here".into(),
        ))
    }

    /// The newest sequence of every subject of station `name` matching one of
    /// `filters`, among sequences up to `up_to` (all when `None`), in order.
    fn last_sequences(
        &self,
        _tenant: &TenantId,
        _name: &str,
        _filters: &[String],
        _up_to: Option<u64>,
    ) -> Result<Vec<u64>, EngineError> {
        Err(EngineError::BadRequest(
            "last sequences are not supported here".into(),
        ))
    }

    /// A group's configuration and state.
    fn group_info(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
    ) -> Result<GroupInfo, EngineError>;

    /// Group names of a station, sorted.
    fn group_names(&self, tenant: &TenantId, station: &str) -> Result<Vec<String>, EngineError>;

    /// Queues a pull request; deliveries and the end go to `sink`.
    fn fetch(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
        request: FetchRequest,
        sink: std::sync::Arc<dyn FetchSink>,
    ) -> Result<(), EngineError>;

    /// Runs a group's timers now: expires pull requests that are due (a front-end
    /// calls this at a request's `expires` for a precise timeout), and redelivers
    /// what is due. The engine also runs every group's timers about every 50 ms.
    fn run_group_timers(&self, tenant: &TenantId, station: &str, group: &str);

    /// Acknowledges (or naks, or terminates) the delivery of `stream_seq`. The new
    /// position is written through the group-commit writer, not waited for.
    fn ack(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
        stream_seq: u64,
        kind: AckKind,
    ) -> Result<(), EngineError>;

    /// An ack whose sender waits for it (JetStream AckSync, an HTTP ack): `done`
    /// runs once the ack is as durable as the station promises. On a replicated
    /// station that is once the group's new position is committed on a quorum,
    /// so a message acknowledged this way is never delivered again, even after
    /// the leader is lost; elsewhere it is [`Engine::ack`] (positions are saved
    /// by housekeeping), then `done` at once.
    fn ack_committed(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
        stream_seq: u64,
        kind: AckKind,
        done: AckDone,
    ) {
        done(self.ack(tenant, station, group, stream_seq, kind));
    }

    /// Subscribes `from` to `filter`, optionally as a member of a queue group.
    fn subscribe(
        &self,
        from: &ClientRecord,
        filter: SubjectFilter,
        queue: Option<QueueGroup>,
        subscriber: Arc<dyn Subscriber>,
    ) -> Result<SubscriptionId, EngineError>;

    /// Removes a subscription. Unknown ids are ignored.
    fn unsubscribe(&self, from: &ClientRecord, id: SubscriptionId);

    /// Records that a client was disconnected as a slow consumer.
    fn slow_consumer(&self, client: &ClientRecord);

    /// `Some` while publishes should wait: a front-end awaits it (bounded by its
    /// own deadline) before reading more from a client. `None` almost always; a
    /// check is one atomic load.
    fn backpressure(&self) -> Option<Backpressure>;

    // --- A front-end's own state (MQTT sessions and retained messages). These
    // change metadata of the front-end's internal stations and groups, which the
    // engine makes durable before returning: unlike the rest of this surface they
    // wait for an fsync. Front-ends call them at session set-up and teardown, never
    // per message.

    /// Creates (or finds) one of a front-end's own internal stations, whose names
    /// start with `$` (MQTT's `$MQTT_sess`, …) and whose subjects are in reserved
    /// spaces. [`Admin::create_station`] refuses both: clients cannot reach them.
    /// Waits for the definition to be durable.
    fn create_internal_station(
        &self,
        tenant: &TenantId,
        config: StationConfig,
    ) -> Result<StationInfo, EngineError>;

    /// Purges messages of a front-end's own internal station; clients'
    /// [`Admin::purge_station`] refuses `$`-named stations (but dead-letter ones).
    /// Waits for the purge to be durable.
    fn purge_internal_station(
        &self,
        tenant: &TenantId,
        name: &str,
        purge: Purge,
    ) -> Result<u64, EngineError>;

    /// Creates a consumer group on a front-end's own internal station. Waits for the
    /// definition to be durable.
    fn create_internal_group(
        &self,
        tenant: &TenantId,
        station: &str,
        config: GroupConfig,
    ) -> Result<GroupInfo, EngineError>;

    /// Deletes a consumer group of a front-end's own internal station. Waits for the
    /// deletion to be durable.
    fn delete_internal_group(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
    ) -> Result<(), EngineError>;
}

/// Changes to what the broker holds: stations, groups, messages, schemas, routing
/// rules, dead-letter resends and client connections. Each method returns an
/// [`AdminFuture`] and does its blocking (metadata writes, fsync) inside the engine,
/// on a blocking thread: front-ends `.await` it from their async workers and never
/// wrap it in `spawn_blocking` themselves. Arguments are copied into the future
/// before the method returns.
pub trait Admin: Send + Sync + 'static {
    /// Creates a station. Creating one that exists with the same configuration
    /// returns it; with a different one fails with [`EngineError::StationNameInUse`].
    fn create_station(&self, tenant: &TenantId, config: StationConfig) -> AdminFuture<StationInfo>;

    /// Changes a station's configuration.
    fn update_station(&self, tenant: &TenantId, config: StationConfig) -> AdminFuture<StationInfo>;

    /// Deletes a station and its messages.
    fn delete_station(&self, tenant: &TenantId, name: &str) -> AdminFuture<()>;

    /// Removes messages; returns how many.
    fn purge_station(&self, tenant: &TenantId, name: &str, purge: Purge) -> AdminFuture<u64>;

    /// Moves `peer`'s replica of a replicated station to a spare node (called on
    /// its leader); refused when there is no spare.
    fn remove_station_peer(&self, _tenant: &TenantId, name: &str, _peer: &str) -> AdminFuture<()> {
        let name = name.to_string();
        Box::pin(async move {
            Err(EngineError::BadRequest(format!(
                "station '{name}' is not replicated: it has no peers to remove"
            )))
        })
    }

    /// The station manifests in the tier's bucket (operators: the bucket is
    /// the broker's, not a tenant's).
    fn tier_manifests(&self) -> AdminFuture<Vec<TierManifest>> {
        Box::pin(async {
            Err(EngineError::BadRequest(
                "the broker has no [tier] configured".into(),
            ))
        })
    }

    /// Takes the segments of the manifest under `uid` (a station of a broker
    /// whose disk was lost) into station `name`'s remote index. The station
    /// must be tiered, of one copy, and never have held a message.
    fn adopt_tier(&self, _tenant: &TenantId, _name: &str, _uid: &str) -> AdminFuture<TierAdoption> {
        Box::pin(async {
            Err(EngineError::BadRequest(
                "the broker has no [tier] configured".into(),
            ))
        })
    }

    /// Hands a replicated station's leadership to another replica (called on
    /// its leader); answers the replica asked to take over.
    fn step_down_station(&self, _tenant: &TenantId, name: &str) -> AdminFuture<String> {
        let name = name.to_string();
        Box::pin(async move {
            Err(EngineError::BadRequest(format!(
                "station '{name}' is not replicated: it has no leader to change"
            )))
        })
    }

    /// Deletes one stored message.
    fn delete_message(&self, tenant: &TenantId, name: &str, seq: u64) -> AdminFuture<()>;

    /// Creates a consumer group on a station; the same configuration again returns
    /// the existing group.
    fn create_group(
        &self,
        tenant: &TenantId,
        station: &str,
        config: GroupConfig,
    ) -> AdminFuture<GroupInfo>;

    /// Changes a group's definition in place: limits, timers, description,
    /// metadata, push settings (not where it starts, what it acks, its filters,
    /// or whether it is pushed to: [`EngineError::InvalidGroupConfig`]). Its
    /// position and pending deliveries are kept.
    fn update_group(
        &self,
        _tenant: &TenantId,
        _station: &str,
        _config: GroupConfig,
    ) -> AdminFuture<GroupInfo> {
        Box::pin(async {
            Err(EngineError::BadRequest(
                "consumer groups cannot be updated here".into(),
            ))
        })
    }

    /// Makes this node, a cluster of one with nothing defined, join the cluster
    /// reachable at `routes` (cluster addresses): it forgets its own meta group
    /// and restarts in place, then joins as a new node (`junction cluster
    /// join`). Refused ([`EngineError::ClusterStateExists`]) when it has peers
    /// or definitions; [`EngineError::BadRequest`] outside a cluster.
    fn join_cluster(&self, _routes: Vec<String>) -> AdminFuture<()> {
        Box::pin(async {
            Err(EngineError::BadRequest(
                "this broker does not run as a cluster node".into(),
            ))
        })
    }

    /// A group's configuration and state, asked of the node that serves the group
    /// when that is another node of the cluster ([`Broker::group_info`] answers
    /// only for groups this node serves).
    fn group_info_served(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
    ) -> AdminFuture<GroupInfo>;

    /// Deletes a group.
    fn delete_group(&self, tenant: &TenantId, station: &str, group: &str) -> AdminFuture<()>;

    /// Creates a schema with its first version. `definition` is the document as
    /// JSON text; it must compile.
    fn create_schema(
        &self,
        tenant: &TenantId,
        name: &str,
        format: SchemaFormat,
        definition: &str,
    ) -> AdminFuture<SchemaInfo>;

    /// Adds a version to a schema; it becomes the active version.
    fn add_schema_version(
        &self,
        tenant: &TenantId,
        name: &str,
        definition: &str,
    ) -> AdminFuture<SchemaInfo>;

    /// Makes an existing version the active one (a rollback, or a roll forward).
    fn activate_schema_version(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u32,
    ) -> AdminFuture<SchemaInfo>;

    /// Deletes a schema; refused ([`EngineError::SchemaInUse`]) while a station uses it.
    fn delete_schema(&self, tenant: &TenantId, name: &str) -> AdminFuture<()>;

    /// Creates or replaces a routing rule (by name).
    fn put_routing_rule(&self, tenant: &TenantId, rule: RoutingRule) -> AdminFuture<RoutingRule>;

    /// Deletes a routing rule.
    fn delete_routing_rule(&self, tenant: &TenantId, name: &str) -> AdminFuture<()>;

    /// Starts re-sending dead letters of `station` in the background; poll with
    /// [`Monitor::resend_status`].
    fn resend_dead_letters(
        &self,
        tenant: &TenantId,
        station: &str,
        request: ResendRequest,
    ) -> AdminFuture<ResendStatus>;

    /// Closes a client's connection from outside it (an operator's disconnect).
    /// The front-end tells the client why where its protocol can (NATS `-ERR`,
    /// MQTT 5 DISCONNECT 0x98) and ends the session as an abnormal close (an MQTT
    /// will is published). Fails with [`EngineError::ClientNotFound`] for an
    /// unknown id and [`EngineError::Denied`] for a client that cannot be closed
    /// (HTTP requests share one client).
    fn close_client(&self, tenant: &TenantId, client: ClientId, reason: &str) -> AdminFuture<()>;

    /// Reads the configuration file again and applies what can change while
    /// the broker runs (users, tenants, permissions, their limits, the token):
    /// what it changed, or why it was refused (the broker then keeps the
    /// configuration it had). Fails with [`EngineError::BadRequest`] when the
    /// broker was not started from a file it can read again.
    fn reload_config(&self) -> AdminFuture<String> {
        Box::pin(async {
            Err(EngineError::BadRequest(
                "this broker cannot reload its configuration".into(),
            ))
        })
    }

    /// Every tenant, for operators: users (without passwords), limits, usage.
    fn tenant_infos(&self) -> Vec<TenantInfo> {
        Vec::new()
    }

    /// Makes or replaces tenant `name` as `spec` says, kept across restarts. The
    /// connections of users it removes or changes are closed (they log in again
    /// under the new rules). Fails with [`EngineError::TenantReadOnly`] for the
    /// default tenant and tenants of the configuration file, and
    /// [`EngineError::InvalidConfig`] for a bad name, user or permission.
    fn put_tenant(&self, name: &str, spec: TenantSpec) -> AdminFuture<TenantInfo> {
        let _ = (name, spec);
        Box::pin(async {
            Err(EngineError::BadRequest(
                "this broker does not edit tenants".into(),
            ))
        })
    }

    /// Removes tenant `name` made over the API and closes its connections. Its
    /// stations stay on disk and are its again if it is made again.
    fn delete_tenant(&self, name: &str) -> AdminFuture<()> {
        let _ = name;
        Box::pin(async { Err(EngineError::TenantNotFound) })
    }

    /// The bans in force on this node (addresses and MQTT client ids), for
    /// operators, sorted by kind and then by who.
    fn bans(&self) -> Vec<BanInfo> {
        Vec::new()
    }

    /// Lifts the ban on `who` (an address or a client id, as `kind` says) and
    /// forgets its recent failures. Fails with [`EngineError::BanNotFound`]
    /// when no such ban is in force.
    fn lift_ban(&self, kind: BanKind, who: &str) -> AdminFuture<()> {
        let _ = (kind, who);
        Box::pin(async { Err(EngineError::BanNotFound) })
    }

    /// Bans `who` by hand for `ban_for`, replacing a ban it has. Fails with
    /// [`EngineError::BadRequest`] for an address that is not an IP address,
    /// an empty client id or a zero duration.
    fn ban(
        &self,
        kind: BanKind,
        who: &str,
        ban_for: std::time::Duration,
        reason: &str,
    ) -> AdminFuture<BanInfo> {
        let _ = (kind, who, ban_for, reason);
        Box::pin(async {
            Err(EngineError::BadRequest(
                "this broker does not ban clients".into(),
            ))
        })
    }

    /// The notification centre (webhooks), when this broker runs one.
    fn notification_centre(&self) -> Option<std::sync::Arc<dyn crate::NotificationCentre>> {
        None
    }

    /// Removes a node from the cluster's meta group (`junction cluster
    /// peer-remove`), wherever its leader is; its id is never given again. Fails
    /// with [`EngineError::BadRequest`] on a node that runs alone.
    fn remove_cluster_node(&self, name: &str) -> AdminFuture<()> {
        let _ = name;
        Box::pin(async {
            Err(EngineError::BadRequest(
                "this node is not in a cluster".into(),
            ))
        })
    }
}

/// What monitoring reads: in-memory snapshots and counters. Synchronous and cheap;
/// never a write, never an fsync.
pub trait Monitor: Send + Sync + 'static {
    /// Server-wide figures.
    fn server_snapshot(&self) -> ServerSnapshot;

    /// Every connected client, with its subscriptions.
    fn clients(&self) -> Vec<ClientSnapshot>;

    /// The subscriptions one client holds.
    fn client_subscriptions(&self, client: ClientId) -> Vec<SubscriptionSnapshot>;

    /// Storage figures: fsync latency and disk use. Reading them is cheap (atomic
    /// loads and a directory size), never a write.
    fn storage_stats(&self) -> StorageStats;

    /// The alarms raised now, as `(name, why)`, sorted by name
    /// (`storage_full`, `tls_certificate_expiring`).
    fn alarms(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// System events dropped because the event writer was behind, and events
    /// recorded, since start.
    fn event_counts(&self) -> (u64, u64) {
        (0, 0)
    }

    /// Why stored writes are fenced (the data directory's disk is nearly
    /// full), if they are: readiness fails with it while liveness holds.
    fn storage_fence(&self) -> Option<String> {
        None
    }

    /// Whether storage still takes writes: `Err` carries why not (for instance
    /// "storage: no space left on device"). Once storage has failed it stays failed
    /// until the process restarts. Cheap: an atomic load.
    fn storage_health(&self) -> Result<(), String>;

    /// A schema with all its versions.
    fn schema_info(&self, tenant: &TenantId, name: &str) -> Result<SchemaInfo, EngineError>;

    /// Every schema of a tenant, sorted by name.
    fn schemas(&self, tenant: &TenantId) -> Vec<SchemaInfo>;

    /// Every routing rule of a tenant, in evaluation order.
    fn routing_rules(&self, tenant: &TenantId) -> Vec<RoutingRule>;

    /// A resend task's progress.
    fn resend_status(
        &self,
        tenant: &TenantId,
        station: &str,
        task: u64,
    ) -> Result<ResendStatus, EngineError>;

    /// The path of a message: `id` is a `Junction-Msg-Id` or a W3C trace id; the
    /// answer holds every message of that trace the engine still remembers.
    fn lineage(&self, tenant: &TenantId, id: &str) -> Result<LineageTrace, EngineError>;

    /// The station-level graph of producers, stations and groups, with rates.
    fn lineage_graph(&self, tenant: &TenantId) -> LineageGraph;

    /// The most recent system events of `tenant` that pass `filter`, newest
    /// first, read from the tenant's [`crate::EVENTS_STATION`] on this node.
    fn events(&self, tenant: &TenantId, filter: &crate::EventFilter) -> Vec<SystemEvent>;

    /// The cluster as this node sees it; `None` when it runs alone.
    fn cluster(&self) -> Option<ClusterSnapshot>;
}
