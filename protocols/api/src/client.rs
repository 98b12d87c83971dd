//! Clients (connections) as the engine sees them, whatever their protocol.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use crate::permissions::Permissions;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A process-unique client (connection) id, as shown in `/connz` as `cid`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ClientId(pub u64);

/// The tenant a connection belongs to (a NATS account). Everything lives in the
/// default tenant until multi-tenancy lands, but engine keys are namespaced by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub Arc<str>);

impl TenantId {
    /// The default tenant, named like NATS's global account.
    pub fn default_tenant() -> Self {
        TenantId(Arc::from("$G"))
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::default_tenant()
    }
}

/// The protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Protocol {
    /// NATS core and JetStream.
    Nats,
    /// MQTT 3.1, 3.1.1 and 5.0.
    Mqtt,
    /// HTTP REST.
    Http,
    /// Junction's WebSocket API.
    WebSocket,
}

/// What a client is, for monitoring: a network connection, or one of the broker's
/// own clients. Only connections are counted and listed as connections (`/varz`,
/// `/connz`, the console's overview).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientKind {
    /// A network connection (the default).
    #[default]
    Connection,
    /// A front-end's client that publishes for peers that are not connections
    /// (HTTP requests, `junction-http`). Not a connection; what it publishes counts
    /// as clients' messages.
    Gateway,
    /// The broker's own publisher: the engine's replies and advisories, the MQTT
    /// front-end's `$SYS` figures and wills (`junction-mqtt`). Not a connection; what
    /// it publishes is not counted as messages in.
    Internal,
}

impl ClientKind {
    /// True for a network connection.
    pub fn is_connection(self) -> bool {
        self == ClientKind::Connection
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => ClientKind::Gateway,
            2 => ClientKind::Internal,
            _ => ClientKind::Connection,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            ClientKind::Connection => 0,
            ClientKind::Gateway => 1,
            ClientKind::Internal => 2,
        }
    }
}

/// Credentials a client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// Nothing was presented.
    None,
    /// A user name and password.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// A bearer token.
    Token(String),
    /// A verified TLS client certificate (DER), mapped to a user by its names
    /// (`verify_and_map`).
    Certificate(Vec<u8>),
    /// An NKey: its public key, and the server's nonce signed by its seed.
    Nkey {
        /// The public key (`U…`).
        key: String,
        /// The nonce the server sent.
        nonce: String,
        /// The signature, base64 (URL-safe or standard).
        signature: String,
    },
    /// A SCRAM-SHA-256 proof (RFC 5802, 7677) for the keys
    /// [`crate::Broker::scram_sha256`] gave out for `user`.
    ScramSha256 {
        /// The user name (`n=` of the client-first-message).
        user: String,
        /// `client-first-message-bare,server-first-message,client-final-message-without-proof`.
        auth_message: String,
        /// The ClientProof (`p=`), decoded; empty when the client sent none
        /// that decodes (the login then fails and counts as a failure).
        proof: Vec<u8>,
    },
}

/// Who a client authenticated as: its tenant, its user name and what it may do.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The tenant (account) the user belongs to.
    pub tenant: TenantId,
    /// The user name, when the credentials named one.
    pub user: Option<Arc<str>>,
    /// What the user may publish and subscribe to; `None` allows everything.
    pub permissions: Option<Arc<Permissions>>,
}

impl Identity {
    /// Anyone, in the default tenant, with no limits: what a client gets when
    /// the broker requires no credentials.
    pub fn anonymous() -> Self {
        Identity::default()
    }
}

/// What a front-end tells the engine about a new connection.
#[derive(Debug, Clone)]
pub struct NewClient {
    /// The protocol spoken.
    pub protocol: Protocol,
    /// The peer's address.
    pub remote: SocketAddr,
}

/// Traffic counters for one client. Front-ends bump them; `/connz` reads them.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Messages the client published.
    pub in_msgs: AtomicU64,
    /// Payload bytes the client published.
    pub in_bytes: AtomicU64,
    /// Messages delivered to the client.
    pub out_msgs: AtomicU64,
    /// Payload bytes delivered to the client.
    pub out_bytes: AtomicU64,
    /// Bytes queued for the client and not yet written to its socket.
    pub pending_bytes: AtomicU64,
    /// Last time the client sent or received something, in ms since the epoch.
    pub last_activity_ms: AtomicU64,
}

impl ClientStats {
    /// Records that the client published a message of `bytes` payload bytes.
    pub fn record_in(&self, bytes: usize) {
        self.in_msgs.fetch_add(1, Ordering::Relaxed);
        self.in_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Records a delivery of `bytes` payload bytes to the client.
    pub fn record_out(&self, bytes: usize) {
        self.out_msgs.fetch_add(1, Ordering::Relaxed);
        self.out_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Marks the client active now.
    pub fn touch(&self) {
        self.last_activity_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Details a client states about itself after connecting.
#[derive(Debug, Clone, Default)]
struct ClientDetails {
    /// Shared with every lineage record of the client's messages.
    name: Option<Arc<str>>,
    lang: Option<String>,
    version: Option<String>,
    /// Shared like `name`.
    user: Option<Arc<str>>,
}

/// The engine's record of one connected client, shared by the engine and the
/// front-end that owns the connection.
#[derive(Debug)]
pub struct ClientRecord {
    /// Process-unique id.
    pub id: ClientId,
    /// Tenant the client was registered in (replaced once by its identity).
    tenant: TenantId,
    /// Who the client authenticated as, set once.
    identity: OnceLock<Identity>,
    /// Protocol spoken.
    pub protocol: Protocol,
    /// Peer address.
    pub remote: SocketAddr,
    /// When the client connected.
    pub start: SystemTime,
    /// Traffic counters.
    pub stats: ClientStats,
    no_echo: AtomicBool,
    kind: AtomicU8,
    details: Mutex<ClientDetails>,
    closer: CloseHandler,
}

/// Why the engine closes a connection from outside its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// An operator's disconnect, a changed user, a removed tenant: what is
    /// queued is written first, so a final error reaches the client.
    Kicked,
    /// Shed as a slow consumer (memory pressure): what is queued for it is
    /// dropped with it, at once, even mid-write.
    SlowConsumer,
}

/// What a front-end runs when the engine asks it to close a connection from outside
/// the connection's own task (an operator's disconnect).
type CloseFn = Box<dyn Fn(&str, CloseCause) + Send + Sync>;

/// The front-end's close callback; `Debug` without showing the closure.
#[derive(Default)]
struct CloseHandler(Mutex<Option<CloseFn>>);

impl std::fmt::Debug for CloseHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.lock().is_some() {
            "CloseHandler(set)"
        } else {
            "CloseHandler(none)"
        })
    }
}

impl ClientRecord {
    /// A record for a client that has just connected.
    pub fn new(id: ClientId, tenant: TenantId, new: &NewClient) -> Self {
        let record = ClientRecord {
            id,
            tenant,
            identity: OnceLock::new(),
            protocol: new.protocol,
            remote: new.remote,
            start: SystemTime::now(),
            stats: ClientStats::default(),
            no_echo: AtomicBool::new(false),
            kind: AtomicU8::new(ClientKind::Connection.to_u8()),
            details: Mutex::new(ClientDetails::default()),
            closer: CloseHandler::default(),
        };
        record.stats.touch();
        record
    }

    /// The tenant the client belongs to: its identity's, once it authenticated.
    pub fn tenant(&self) -> &TenantId {
        self.identity.get().map_or(&self.tenant, |i| &i.tenant)
    }

    /// Who the client authenticated as, if it did.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.get()
    }

    /// The client's permissions; `None` allows everything.
    pub fn permissions(&self) -> Option<&Arc<Permissions>> {
        self.identity.get().and_then(|i| i.permissions.as_ref())
    }

    /// Records who the client authenticated as. Call it once, before the client
    /// subscribes or publishes: its tenant decides where both go. False if an
    /// identity was already set (the first one stays).
    pub fn set_authenticated(&self, identity: Identity) -> bool {
        self.identity.set(identity).is_ok()
    }

    /// Registers how the owning front-end closes this connection when asked from
    /// outside its task ([`ClientRecord::request_close`]). The callback must only
    /// signal the connection's task (cancel a token, queue a final error) and return
    /// at once: it runs on the caller's thread, never awaits and must not call back
    /// into the engine. It should hold the connection's state weakly: the engine
    /// may keep the record (its event log does) after the connection has ended.
    pub fn set_close_handler(&self, close: impl Fn(&str, CloseCause) + Send + Sync + 'static) {
        *self.closer.0.lock() = Some(Box::new(close));
    }

    /// Asks the owning front-end to close the connection, giving `reason` to the
    /// client where the protocol can carry it. False when the front-end registered
    /// no way to do so (HTTP requests, the engine's own client). `before` runs
    /// first, only when the connection can be closed, so whatever it records
    /// (the engine's "kicked" event) comes before the front-end's "disconnected".
    pub fn request_close(&self, reason: &str, before: impl FnOnce()) -> bool {
        self.request_close_as(CloseCause::Kicked, reason, before)
    }

    /// [`ClientRecord::request_close`] for `cause`.
    pub fn request_close_as(&self, cause: CloseCause, reason: &str, before: impl FnOnce()) -> bool {
        match self.closer.0.lock().as_ref() {
            Some(close) => {
                before();
                close(reason, cause);
                true
            }
            None => false,
        }
    }

    /// True when the front-end can close this connection on request.
    pub fn can_close(&self) -> bool {
        self.closer.0.lock().is_some()
    }

    /// When true, the client's own publishes are not delivered back to it.
    pub fn no_echo(&self) -> bool {
        self.no_echo.load(Ordering::Relaxed)
    }

    /// Sets whether the client's own publishes are delivered back to it.
    pub fn set_no_echo(&self, no_echo: bool) {
        self.no_echo.store(no_echo, Ordering::Relaxed);
    }

    /// What the client is (a connection unless its front-end says otherwise).
    pub fn kind(&self) -> ClientKind {
        ClientKind::from_u8(self.kind.load(Ordering::Relaxed))
    }

    /// Marks a front-end's own client, right after [`crate::Engine::connect`]: it is
    /// then left out of connection counts and lists (see [`ClientKind`]).
    pub fn set_kind(&self, kind: ClientKind) {
        self.kind.store(kind.to_u8(), Ordering::Relaxed);
    }

    /// Records the name, language and version a client announced.
    pub fn set_identity(
        &self,
        name: Option<String>,
        lang: Option<String>,
        version: Option<String>,
        user: Option<String>,
    ) {
        let mut d = self.details.lock();
        d.name = name.map(Arc::from);
        d.lang = lang;
        d.version = version;
        d.user = user.map(Arc::from);
    }

    /// A record naming one caller of a gateway client (an HTTP request): the same
    /// id, tenant, protocol and kind as `self`, with the caller's address, name
    /// (its `User-Agent`) and authenticated user. Publishing with it makes lineage
    /// name the caller rather than the shared gateway; traffic is still counted on
    /// `self`, the client the engine knows.
    pub fn for_caller(
        &self,
        remote: SocketAddr,
        name: Option<String>,
        user: Option<String>,
    ) -> ClientRecord {
        let record = ClientRecord::new(
            self.id,
            self.tenant().clone(),
            &NewClient {
                protocol: self.protocol,
                remote,
            },
        );
        record.set_kind(self.kind());
        record.set_no_echo(self.no_echo());
        record.set_identity(name, None, None, user);
        record
    }

    /// The client's name and authenticated user (what lineage records), shared
    /// rather than copied, without the rest of the details.
    pub fn name_and_user(&self) -> (Option<Arc<str>>, Option<Arc<str>>) {
        let d = self.details.lock();
        (d.name.clone(), d.user.clone())
    }

    /// The client's name, if it announced one.
    pub fn name(&self) -> Option<String> {
        self.details.lock().name.as_deref().map(str::to_owned)
    }

    /// A point-in-time copy for monitoring.
    pub fn snapshot(&self, subscriptions: Vec<SubscriptionSnapshot>) -> ClientSnapshot {
        let d = self.details.lock().clone();
        let s = &self.stats;
        ClientSnapshot {
            id: self.id,
            tenant: self.tenant().clone(),
            kind: self.kind(),
            protocol: self.protocol,
            remote: self.remote,
            start: self.start,
            last_activity_ms: s.last_activity_ms.load(Ordering::Relaxed),
            in_msgs: s.in_msgs.load(Ordering::Relaxed),
            in_bytes: s.in_bytes.load(Ordering::Relaxed),
            out_msgs: s.out_msgs.load(Ordering::Relaxed),
            out_bytes: s.out_bytes.load(Ordering::Relaxed),
            pending_bytes: s.pending_bytes.load(Ordering::Relaxed),
            name: d.name.as_deref().map(str::to_owned),
            lang: d.lang,
            version: d.version,
            user: d.user.as_deref().map(str::to_owned),
            subscriptions,
        }
    }
}

/// One subscription, as shown by monitoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSnapshot {
    /// The subject filter.
    pub subject: String,
    /// The queue group, if any.
    pub queue: Option<String>,
    /// The front-end's own id for it (the NATS `sid`).
    pub sid: String,
    /// Messages delivered through it.
    pub delivered: u64,
}

/// A point-in-time copy of a client's record, for `/connz` and the admin API.
#[derive(Debug, Clone)]
pub struct ClientSnapshot {
    /// Process-unique id.
    pub id: ClientId,
    /// The tenant the client belongs to.
    pub tenant: TenantId,
    /// A connection, or one of the broker's own clients.
    pub kind: ClientKind,
    /// Protocol spoken.
    pub protocol: Protocol,
    /// Peer address.
    pub remote: SocketAddr,
    /// When the client connected.
    pub start: SystemTime,
    /// Last activity, ms since the epoch.
    pub last_activity_ms: u64,
    /// Messages published by the client.
    pub in_msgs: u64,
    /// Payload bytes published by the client.
    pub in_bytes: u64,
    /// Messages delivered to the client.
    pub out_msgs: u64,
    /// Payload bytes delivered to the client.
    pub out_bytes: u64,
    /// Bytes queued and not yet written.
    pub pending_bytes: u64,
    /// Announced name.
    pub name: Option<String>,
    /// Announced client library language.
    pub lang: Option<String>,
    /// Announced client library version.
    pub version: Option<String>,
    /// Authenticated user.
    pub user: Option<String>,
    /// The client's subscriptions.
    pub subscriptions: Vec<SubscriptionSnapshot>,
}
