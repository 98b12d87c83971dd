//! Clustering for Junction: the links between nodes.
//!
//! Every node keeps one TCP link to every other node (a full mesh, as nats-server's
//! routes). A node is given a few addresses to dial (`--join`, `--routes`); each
//! link opens with a [`frame::Hello`] that lists the addresses its sender knows, so
//! the mesh completes from any one seed. Two nodes that dial each other at once
//! keep the link dialed by the node with the lower name and close the other; both
//! sides apply the same rule, so they agree without another round trip.
//!
//! Over a link travel:
//! - **interest**: a node tells its peers which subject filters (and queue groups)
//!   its own clients subscribe to, once per filter (counted locally), and withdraws
//!   it when the last local subscriber goes;
//! - **messages**: a publish crosses to a peer only if the peer has matching
//!   interest, once per peer, carrying whether the peer's plain subscribers get it
//!   and which of its queue groups deliver it to one member. A peer delivers what it
//!   receives to its own clients only; it never forwards it again (one hop), so a
//!   message reaches each node at most once.
//!
//! What it is not (yet): the meta Raft group (openraft) that will hold stations,
//! groups and membership; stations stay on the node that created them.

pub mod batch;
pub mod frame;
pub mod meta;
pub mod raftlog;
pub mod replica;

pub use frame::{Forward, ForwardRef, Interest};

use bytes::{Bytes, BytesMut};
use frame::{Frame, Hello, MAX_FRAME, VERSION};
use futures::StreamExt;
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The cluster's name; a peer with another name is refused.
    pub name: String,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// Where this node listens for its peers.
    pub listen: SocketAddr,
    /// The address peers dial to reach this node [default: the bound address].
    pub advertise: Option<String>,
    /// Peers' cluster addresses to dial at start (one is enough).
    pub seeds: Vec<String>,
    /// This node's client URLs (NATS `host:port`), for clients' `connect_urls`.
    pub client_urls: Vec<String>,
    /// This node's HTTP API address (`host:port`), if it serves HTTP.
    pub http_url: Option<String>,
}

/// What the cluster layer calls into: the station engine's side of the links.
pub trait Host: Send + Sync + 'static {
    /// A peer added (or withdrew) interest in a filter.
    fn remote_interest(&self, peer: &str, interest: &Interest, added: bool);
    /// A message from a peer, for this node's own subscribers.
    fn remote_message(&self, peer: &str, forward: Forward);
}

/// Answers calls a peer makes over a link (Raft traffic, forwarded admin calls).
pub trait CallHandler: Send + Sync + 'static {
    /// Handles one call of `kind` from `peer`; `Err` is an error text for the caller.
    fn call(
        &self,
        peer: &str,
        kind: u8,
        body: Bytes,
    ) -> futures::future::BoxFuture<'static, Result<Bytes, String>>;
}

/// Why a call to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No link to the peer is up.
    #[error("no link to node {0}")]
    Unreachable(String),
    /// No answer in time (the link may have gone down).
    #[error("node {0} did not answer in time")]
    Timeout(String),
    /// The peer answered with an error.
    #[error("{0}")]
    Remote(String),
}

/// One node of the cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Its cluster address.
    pub addr: String,
    /// A link to it is up.
    pub online: bool,
    /// When it was last heard from (this node: now).
    pub last_seen: SystemTime,
    /// This node.
    pub this: bool,
    /// Its client URLs.
    pub client_urls: Vec<String>,
    /// Its HTTP API address (`host:port`), if it serves HTTP.
    pub http_url: Option<String>,
}

/// Call kinds the engine answers ([`Cluster::set_engine_handler`]); the others
/// are the meta group's.
pub const ENGINE_KINDS: std::ops::RangeInclusive<u8> = 64..=127;

/// The call id of a one-way call ([`Cluster::notify`]): no answer is sent.
const NOTE: u64 = 0;

/// Most bytes queued on one link before forwards to it are dropped (counted): core
/// messages are at most once, as a slow consumer's are.
const LINK_BACKLOG: usize = 64 * 1024 * 1024;

/// A link with more than this queued makes the node's publishers wait
/// ([`Cluster::room`]) until it is under [`ROOM_BELOW`] again, as nats-server stalls
/// a producer whose route is behind.
const CONGESTED_ABOVE: usize = 4 * 1024 * 1024;
const ROOM_BELOW: usize = 1024 * 1024;

/// What is queued for one link's writer: frames encoded straight into one buffer
/// under a short lock, which the writer swaps out and writes whole.
struct LinkOut {
    buf: Mutex<BytesMut>,
    ready: tokio::sync::Notify,
    /// Bytes the writer took and is writing now.
    writing: AtomicUsize,
    /// Counted in [`Shared::congested`] now.
    over: std::sync::atomic::AtomicBool,
}

impl LinkOut {
    fn new() -> LinkOut {
        LinkOut {
            buf: Mutex::new(BytesMut::with_capacity(64 * 1024)),
            ready: tokio::sync::Notify::new(),
            writing: AtomicUsize::new(0),
            over: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Appends one frame unless the link is [`LINK_BACKLOG`] behind; says whether
    /// it did, and whether the link is now congested.
    fn push(&self, encode: impl FnOnce(&mut BytesMut)) -> (bool, bool) {
        let mut b = self.buf.lock();
        if b.len() > LINK_BACKLOG {
            return (false, true);
        }
        let was_empty = b.is_empty();
        encode(&mut b);
        let congested = b.len() + self.writing.load(Ordering::Relaxed) > CONGESTED_ABOVE;
        drop(b);
        if was_empty {
            self.ready.notify_one();
        }
        (true, congested)
    }

    fn push_frame(&self, frame: &Frame) {
        self.push(|b| frame.encode(b));
    }
}

/// A link with nothing received for this long is closed (pings go every
/// [`PING_EVERY`]).
const IDLE_TIMEOUT: Duration = Duration::from_secs(6);
const PING_EVERY: Duration = Duration::from_secs(2);

/// Waits between dials of an address that did not answer, doubling up to the last.
const REDIAL: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

/// The cluster layer of one node. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

struct Shared {
    config: ClusterConfig,
    route_url: String,
    host: Weak<dyn Host>,
    /// This node's own interest, counted.
    local: Mutex<HashMap<Interest, usize>>,
    peers: Mutex<Peers>,
    /// Addresses with a dialer running, and addresses found to be this node.
    dialing: Mutex<HashSet<String>>,
    cancel: CancellationToken,
    /// Forwards dropped because a link's queue was full.
    dropped: AtomicU64,
    next_link: AtomicU64,
    /// Links more than [`CONGESTED_ABOVE`] behind.
    congested: AtomicUsize,
    /// Woken when a congested link catches up.
    room: tokio::sync::Notify,
    /// Calls waiting for their reply, by id.
    calls: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<Result<Bytes, String>>>>,
    next_call: AtomicU64,
    handler: std::sync::OnceLock<Arc<dyn CallHandler>>,
    /// Answers the engine's calls (kinds [`ENGINE_KINDS`]).
    engine_handler: std::sync::OnceLock<Arc<dyn CallHandler>>,
    /// Seed addresses that turned out to be this node.
    selves: Mutex<HashSet<String>>,
}

#[derive(Default)]
struct Peers {
    links: HashMap<String, Link>,
    /// Links replaced by a preferred one, still read until their peer closes
    /// them: id → peer.
    retiring: HashMap<u64, String>,
    /// Each peer's interest, as received on its links (it outlives a link that
    /// is replaced).
    interest: HashMap<String, BTreeSet<Interest>>,
    /// Every node ever linked, for the cluster view.
    known: HashMap<String, Known>,
    /// Nodes removed from the cluster: dropped from `known` when their link goes.
    forgotten: HashSet<String>,
}

struct Known {
    addr: String,
    client_urls: Vec<String>,
    http_url: Option<String>,
    last_seen: SystemTime,
}

struct Link {
    id: u64,
    /// Dialed by the node with the lower name: kept when both dial.
    preferred: bool,
    out: Arc<LinkOut>,
    /// Its writer finishes what it has taken and closes its side: the link was
    /// replaced.
    retire: CancellationToken,
}

/// Why a link ended.
enum Outcome {
    /// It reached this very node (a seed list that names every node).
    Itself,
    Closed,
}

impl Cluster {
    /// Binds the cluster listener and starts dialing the seeds. `host` is held
    /// weakly: the cluster never keeps the engine alive.
    pub async fn start(
        config: ClusterConfig,
        host: Weak<dyn Host>,
        cancel: CancellationToken,
    ) -> std::io::Result<Cluster> {
        let listener = TcpListener::bind(config.listen).await?;
        let bound = listener.local_addr()?;
        let route_url = config
            .advertise
            .clone()
            .unwrap_or_else(|| bound.to_string());
        let shared = Arc::new(Shared {
            route_url,
            host,
            local: Mutex::new(HashMap::new()),
            peers: Mutex::new(Peers::default()),
            dialing: Mutex::new(HashSet::new()),
            cancel,
            dropped: AtomicU64::new(0),
            next_link: AtomicU64::new(1),
            congested: AtomicUsize::new(0),
            room: tokio::sync::Notify::new(),
            calls: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
            handler: std::sync::OnceLock::new(),
            engine_handler: std::sync::OnceLock::new(),
            selves: Mutex::new(HashSet::new()),
            config,
        });
        tracing::info!(node = %shared.config.node, cluster = %shared.config.name, addr = %bound, "cluster listener up");
        tokio::spawn(accept_loop(shared.clone(), listener));
        for seed in shared.config.seeds.clone() {
            Shared::dial(&shared, seed);
        }
        Ok(Cluster { shared })
    }

    /// The address peers reach this node at.
    pub fn route_url(&self) -> &str {
        &self.shared.route_url
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.shared.config.node
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// A local subscription was added (or removed): peers learn of the first
    /// subscriber of a filter and of the last one leaving.
    pub fn local_interest(&self, interest: Interest, added: bool) {
        let mut local = self.shared.local.lock();
        let changed = if added {
            let n = local.entry(interest.clone()).or_insert(0);
            *n += 1;
            *n == 1
        } else {
            match local.get_mut(&interest) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    local.remove(&interest);
                    true
                }
                None => false,
            }
        };
        if changed {
            let frame = if added {
                Frame::Sub(interest)
            } else {
                Frame::Unsub(interest)
            };
            let peers = self.shared.peers.lock();
            for link in peers.links.values() {
                link.out.push_frame(&frame);
            }
        }
    }

    /// Sends a message to `peer` for its subscribers. Dropped (and counted) when the
    /// link is gone or its queue is full.
    pub fn forward(&self, peer: &str, forward: ForwardRef<'_>) {
        let out = match self.shared.peers.lock().links.get(peer) {
            Some(link) => link.out.clone(),
            None => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let (queued, congested) = out.push(|b| frame::encode_msg(b, forward));
        if !queued {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if congested && !out.over.swap(true, Ordering::AcqRel) {
            self.shared.congested.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether a link is so far behind that publishers should wait
    /// ([`Cluster::room`]).
    pub fn congested(&self) -> bool {
        self.shared.congested.load(Ordering::Acquire) > 0
    }

    /// Returns once no link is congested (or the node stops).
    pub async fn room(&self) {
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.congested() || self.shared.cancel.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = self.shared.cancel.cancelled() => return,
            }
        }
    }

    /// Sets what answers peers' calls (once; later calls are ignored).
    pub fn set_handler(&self, handler: Arc<dyn CallHandler>) {
        let _ = self.shared.handler.set(handler);
    }

    /// Sets what answers the engine's calls (kinds in [`ENGINE_KINDS`]; once).
    pub fn set_engine_handler(&self, handler: Arc<dyn CallHandler>) {
        let _ = self.shared.engine_handler.set(handler);
    }

    /// Sends `peer` a one-way call (no answer comes back). Calls and notes to
    /// one peer are handled there in the order they were sent. False when no
    /// link to it is up.
    pub fn notify(&self, peer: &str, kind: u8, body: Bytes) -> bool {
        match self.link_out(peer) {
            Some(out) => {
                out.push_frame(&Frame::Call {
                    id: NOTE,
                    kind,
                    body,
                });
                true
            }
            None => false,
        }
    }

    /// What is queued for the link to `peer`, when one is up.
    fn link_out(&self, peer: &str) -> Option<Arc<LinkOut>> {
        self.shared
            .peers
            .lock()
            .links
            .get(peer)
            .map(|l| l.out.clone())
    }

    /// The peers a link is up to now.
    pub fn linked_peers(&self) -> Vec<String> {
        self.shared.peers.lock().links.keys().cloned().collect()
    }

    /// Calls `peer` and waits up to `timeout` for its answer.
    pub async fn call(
        &self,
        peer: &str,
        kind: u8,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        self.start_call(peer, kind, body, timeout).await
    }

    /// Sends a call to `peer` now (so calls made one after the other from one
    /// thread are handled there in that order) and returns the wait for its
    /// answer, up to `timeout`.
    pub fn start_call(
        &self,
        peer: &str,
        kind: u8,
        body: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Bytes, CallError>> + Send + 'static {
        let out = self.link_out(peer);
        let shared = self.shared.clone();
        let peer = peer.to_string();
        let sent = out.map(|out| {
            let id = shared.next_call.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = tokio::sync::oneshot::channel();
            shared.calls.lock().insert(id, tx);
            out.push_frame(&Frame::Call { id, kind, body });
            (id, rx)
        });
        async move {
            let Some((id, rx)) = sent else {
                return Err(CallError::Unreachable(peer));
            };
            let answer = tokio::time::timeout(timeout, rx).await;
            shared.calls.lock().remove(&id);
            match answer {
                Ok(Ok(Ok(body))) => Ok(body),
                Ok(Ok(Err(text))) => Err(CallError::Remote(text)),
                Ok(Err(_)) | Err(_) => Err(CallError::Timeout(peer)),
            }
        }
    }

    /// How many seed addresses this node was given that are not its own.
    pub fn seed_count(&self) -> usize {
        let me = self.shared.route_url.as_str();
        let selves = self.shared.selves.lock();
        self.shared
            .config
            .seeds
            .iter()
            .filter(|s| s.as_str() != me && !selves.contains(s.as_str()))
            .collect::<HashSet<_>>()
            .len()
    }

    /// Whether the node is stopping.
    pub fn stopped(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// Whether a link to `peer` is up.
    pub fn linked(&self, peer: &str) -> bool {
        self.shared.peers.lock().links.contains_key(peer)
    }

    /// Forgets a node that left the cluster: it no longer shows in [`Cluster::nodes`]
    /// (a link to it, if any, stays until it closes).
    pub fn forget(&self, peer: &str) {
        let mut peers = self.shared.peers.lock();
        if !peers.links.contains_key(peer) {
            peers.known.remove(peer);
        }
        peers.forgotten.insert(peer.to_string());
    }

    /// Forwards dropped since start (no link, or its queue full).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Every node this one knows, itself first.
    pub fn nodes(&self) -> Vec<NodeView> {
        let peers = self.shared.peers.lock();
        let mut out = vec![NodeView {
            name: self.shared.config.node.clone(),
            addr: self.shared.route_url.clone(),
            online: true,
            last_seen: SystemTime::now(),
            this: true,
            client_urls: self.shared.config.client_urls.clone(),
            http_url: self.shared.config.http_url.clone(),
        }];
        let mut others: Vec<NodeView> = peers
            .known
            .iter()
            .map(|(name, k)| NodeView {
                name: name.clone(),
                addr: k.addr.clone(),
                online: peers.links.contains_key(name),
                last_seen: k.last_seen,
                this: false,
                client_urls: k.client_urls.clone(),
                http_url: k.http_url.clone(),
            })
            .collect();
        others.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(others);
        out
    }

    /// Client URLs of the nodes linked now (for NATS `connect_urls`), this node's
    /// first.
    pub fn connect_urls(&self) -> Vec<String> {
        self.nodes()
            .into_iter()
            .filter(|n| n.online)
            .flat_map(|n| n.client_urls)
            .collect()
    }
}

fn encode(frame: &Frame) -> Bytes {
    let mut b = BytesMut::new();
    frame.encode(&mut b);
    b.freeze()
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, remote)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = run_link(shared, stream, None).await {
                        tracing::debug!(%remote, error = %e, "cluster link from a peer ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Shared {
    /// Starts dialing `addr` (once per address), for as long as the node runs.
    fn dial(shared: &Arc<Shared>, addr: String) {
        if addr == shared.route_url || !shared.dialing.lock().insert(addr.clone()) {
            return;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut attempt = 0usize;
            loop {
                if shared.cancel.is_cancelled() {
                    return;
                }
                let connected = tokio::select! {
                    _ = shared.cancel.cancelled() => return,
                    c = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&addr)) => c,
                };
                match connected {
                    Ok(Ok(stream)) => match run_link(shared.clone(), stream, Some(&addr)).await {
                        Ok(Outcome::Itself) => {
                            shared.selves.lock().insert(addr);
                            return;
                        }
                        Ok(Outcome::Closed) => attempt = 0,
                        Err(e) => {
                            tracing::debug!(%addr, error = %e, "cluster link ended");
                        }
                    },
                    Ok(Err(e)) => tracing::debug!(%addr, error = %e, "cannot reach a cluster peer"),
                    Err(_) => tracing::debug!(%addr, "cluster dial timed out"),
                }
                let wait = REDIAL[attempt.min(REDIAL.len() - 1)];
                attempt += 1;
                tokio::select! {
                    _ = shared.cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    fn hello(&self) -> Hello {
        let peers = self.peers.lock();
        let mut routes: Vec<String> = peers.known.values().map(|k| k.addr.clone()).collect();
        routes.push(self.route_url.clone());
        Hello {
            version: VERSION,
            cluster: self.config.name.clone(),
            node: self.config.node.clone(),
            route_url: self.route_url.clone(),
            client_urls: self.config.client_urls.clone(),
            routes,
            http_url: self.config.http_url.clone().unwrap_or_default(),
        }
    }

    /// Installs a link to `peer` unless a better one is up; sends it this node's
    /// interest. Returns the link's id, or `None` when it is not wanted.
    fn install(
        self: &Arc<Self>,
        hello: &Hello,
        preferred: bool,
        out: Arc<LinkOut>,
        retire: CancellationToken,
    ) -> Option<u64> {
        let local = self.local.lock();
        let mut peers = self.peers.lock();
        if let Some(old) = peers.links.get(&hello.node) {
            if old.preferred || !preferred {
                return None;
            }
            // Replaced by the preferred link. Nothing in flight is lost: what the
            // old link had not written yet goes first on the new one; the old
            // one writes what it took, closes its side and is read until the peer
            // (which replaces it too) closes it. The peer's interest stays.
            let old = peers.links.remove(&hello.node)?;
            let unsent = std::mem::take(&mut *old.out.buf.lock());
            out.push(|b| b.extend_from_slice(&unsent));
            old.retire.cancel();
            self.release(&old.out);
            peers.retiring.insert(old.id, hello.node.clone());
            tracing::debug!(peer = %hello.node, "cluster link replaced by the preferred one");
        }
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        for i in local.keys() {
            out.push_frame(&Frame::Sub(i.clone()));
        }
        peers.forgotten.remove(&hello.node);
        let is_new = !peers.known.contains_key(&hello.node);
        peers.known.insert(
            hello.node.clone(),
            Known {
                addr: hello.route_url.clone(),
                client_urls: hello.client_urls.clone(),
                http_url: (!hello.http_url.is_empty()).then(|| hello.http_url.clone()),
                last_seen: SystemTime::now(),
            },
        );
        // Tell the other peers about a node they may not know yet.
        if is_new {
            let routes = Frame::Routes(vec![hello.route_url.clone()]);
            for link in peers.links.values() {
                link.out.push_frame(&routes);
            }
        }
        peers.links.insert(
            hello.node.clone(),
            Link {
                id,
                preferred,
                out,
                retire,
            },
        );
        tracing::info!(peer = %hello.node, addr = %hello.route_url, "cluster link up");
        Some(id)
    }

    /// Removes link `id` to `peer` (if it is still the installed one) and its
    /// interest.
    fn uninstall(&self, peer: &str, id: u64) {
        let mut peers = self.peers.lock();
        if peers.retiring.remove(&id).is_some() {
            return;
        }
        if peers.links.get(peer).is_some_and(|l| l.id == id) {
            if let Some(link) = peers.links.remove(peer) {
                self.release(&link.out);
            }
            if peers.forgotten.contains(peer) {
                peers.known.remove(peer);
            }
            let gone = peers.interest.remove(peer).unwrap_or_default();
            if let Some(host) = self.host.upgrade() {
                for i in &gone {
                    host.remote_interest(peer, i, false);
                }
            }
            tracing::info!(%peer, "cluster link down");
        }
    }

    /// Interest received on link `id` of `peer` (the installed one or one being
    /// retired; any other is gone and ignored).
    fn remote_interest(&self, peer: &str, id: u64, interest: Interest, added: bool) {
        let mut peers = self.peers.lock();
        let live = peers.links.get(peer).is_some_and(|l| l.id == id)
            || peers.retiring.get(&id).is_some_and(|p| p == peer);
        if !live {
            return;
        }
        let set = peers.interest.entry(peer.to_string()).or_default();
        let changed = if added {
            set.insert(interest.clone())
        } else {
            set.remove(&interest)
        };
        if changed && let Some(host) = self.host.upgrade() {
            host.remote_interest(peer, &interest, added);
        }
    }

    /// A link that is gone (or caught up) no longer holds publishers back.
    fn release(&self, out: &LinkOut) {
        if out.over.swap(false, Ordering::AcqRel) {
            self.congested.fetch_sub(1, Ordering::AcqRel);
            self.room.notify_waiters();
        }
    }

    fn seen(&self, peer: &str) {
        if let Some(k) = self.peers.lock().known.get_mut(peer) {
            k.last_seen = SystemTime::now();
        }
    }
}

/// Reads one frame; `None` at a clean end of the stream.
async fn read_frame(
    rd: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
) -> std::io::Result<Option<Frame>> {
    match rd.next().await {
        None => Ok(None),
        Some(Err(e)) => Err(e),
        Some(Ok(body)) => Frame::decode(body.freeze())
            .map(Some)
            .map_err(|e| invalid(e.to_string())),
    }
}

fn invalid(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// Writes what is queued on a link until it closes: swaps the queue out and writes
/// it whole, then releases publishers once the link has caught up.
async fn write_link(
    shared: Arc<Shared>,
    out: Arc<LinkOut>,
    mut wr: OwnedWriteHalf,
    close: CancellationToken,
    retire: CancellationToken,
) {
    let mut spare = BytesMut::with_capacity(64 * 1024);
    loop {
        {
            let mut b = out.buf.lock();
            std::mem::swap(&mut *b, &mut spare);
            out.writing.store(spare.len(), Ordering::Relaxed);
        }
        if spare.is_empty() {
            if out.over.load(Ordering::Acquire) {
                shared.release(&out);
            }
            tokio::select! {
                _ = close.cancelled() => break,
                _ = out.ready.notified() => continue,
                _ = retire.cancelled() => {
                    // Replaced: the peer reads to the end, then closes its side.
                    let _ = wr.shutdown().await;
                    return;
                }
            }
        }
        let written = tokio::select! {
            _ = close.cancelled() => break,
            w = wr.write_all(&spare) => w,
        };
        if written.is_err() {
            break;
        }
        spare.clear();
        out.writing.store(0, Ordering::Relaxed);
        if out.over.load(Ordering::Acquire) && out.buf.lock().len() < ROOM_BELOW {
            shared.release(&out);
        }
    }
    close.cancel();
}

/// Runs one link from handshake to close. `dialed` is the address this node
/// dialed, or `None` for a link a peer opened.
async fn run_link(
    shared: Arc<Shared>,
    stream: TcpStream,
    dialed: Option<&str>,
) -> std::io::Result<Outcome> {
    stream.set_nodelay(true)?;
    let (rd, mut wr) = stream.into_split();
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec();
    let mut rd = FramedRead::with_capacity(rd, codec, 64 * 1024);
    wr.write_all(&encode(&Frame::Hello(shared.hello()))).await?;
    let hello = match tokio::time::timeout(Duration::from_secs(5), read_frame(&mut rd)).await {
        Err(_) => return Err(invalid("no hello within 5 s")),
        Ok(r) => match r? {
            Some(Frame::Hello(h)) => h,
            Some(_) => return Err(invalid("the first frame was not a hello")),
            None => return Err(invalid("closed before its hello")),
        },
    };
    if hello.version != VERSION {
        tracing::warn!(peer = %hello.node, version = hello.version, "cluster peer speaks another wire version; link refused");
        return Err(invalid("wire version"));
    }
    if hello.cluster != shared.config.name {
        tracing::warn!(peer = %hello.node, cluster = %hello.cluster, ours = %shared.config.name, "a node of another cluster tried to link; refused");
        return Err(invalid("cluster name"));
    }
    if hello.node == shared.config.node {
        if let Some(addr) = dialed {
            tracing::debug!(%addr, "this address is this node; not dialing it again");
        }
        return Ok(Outcome::Itself);
    }
    for addr in &hello.routes {
        Shared::dial(&shared, addr.clone());
    }
    let me = shared.config.node.as_str();
    let preferred = if dialed.is_some() {
        me < hello.node.as_str()
    } else {
        hello.node.as_str() < me
    };
    let out = Arc::new(LinkOut::new());
    let close = shared.cancel.child_token();
    let retire = CancellationToken::new();
    let Some(id) = shared.install(&hello, preferred, out.clone(), retire.clone()) else {
        // A link to this peer is up already; when it goes, the dialer comes back.
        if dialed.is_some() {
            wait_for_link_down(&shared, &hello.node).await;
        }
        return Ok(Outcome::Closed);
    };
    let peer = hello.node.clone();
    let writer = tokio::spawn(write_link(
        shared.clone(),
        out.clone(),
        wr,
        close.clone(),
        retire.clone(),
    ));
    let pinger_close = close.clone();
    let pinger_out = out.clone();
    let pinger_retire = retire.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = pinger_close.cancelled() => return,
                _ = pinger_retire.cancelled() => return,
                _ = tokio::time::sleep(PING_EVERY) => {}
            }
            pinger_out.push_frame(&Frame::Ping);
        }
    });
    let result = loop {
        let next = tokio::select! {
            _ = close.cancelled() => break Ok(()),
            r = tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut rd)) => r,
        };
        let frame = match next {
            Err(_) => break Err(invalid("peer silent")),
            Ok(Ok(None)) => break Ok(()),
            Ok(Err(e)) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    tracing::warn!(%peer, error = %e, "malformed frame from a cluster peer; link closed");
                }
                break Err(e);
            }
            Ok(Ok(Some(f))) => f,
        };
        match frame {
            Frame::Msg(f) => {
                if let Some(host) = shared.host.upgrade() {
                    host.remote_message(&peer, f);
                }
            }
            Frame::Sub(i) => shared.remote_interest(&peer, id, i, true),
            Frame::Unsub(i) => shared.remote_interest(&peer, id, i, false),
            Frame::Routes(routes) => {
                for addr in routes {
                    Shared::dial(&shared, addr);
                }
            }
            Frame::Ping => {
                shared.seen(&peer);
                out.push_frame(&Frame::Pong);
            }
            Frame::Pong => shared.seen(&peer),
            Frame::Call { id, kind, body } => {
                // The handler is called here, in the link's order (what it does
                // before its future first waits is ordered per link); its answer
                // is awaited on a task of its own.
                let handler = if ENGINE_KINDS.contains(&kind) {
                    shared.engine_handler.get()
                } else {
                    shared.handler.get()
                };
                let answer = handler.map(|h| h.call(&peer, kind, body));
                if id == NOTE {
                    if let Some(answer) = answer {
                        tokio::spawn(answer);
                    }
                    continue;
                }
                let shared = shared.clone();
                let peer = peer.clone();
                tokio::spawn(async move {
                    let answer = match answer {
                        Some(answer) => answer.await,
                        None => Err("this node is starting".to_string()),
                    };
                    let frame = match answer {
                        Ok(body) => Frame::Reply { id, ok: true, body },
                        Err(text) => Frame::Reply {
                            id,
                            ok: false,
                            body: Bytes::from(text),
                        },
                    };
                    let out = shared.peers.lock().links.get(&peer).map(|l| l.out.clone());
                    if let Some(out) = out {
                        out.push_frame(&frame);
                    }
                });
            }
            Frame::Reply { id, ok, body } => {
                if let Some(tx) = shared.calls.lock().remove(&id) {
                    let _ = tx.send(if ok {
                        Ok(body)
                    } else {
                        Err(String::from_utf8_lossy(&body).into_owned())
                    });
                }
            }
            Frame::Hello(_) => break Err(invalid("a second hello")),
        }
    };
    close.cancel();
    let _ = writer.await;
    shared.uninstall(&peer, id);
    result.map(|()| Outcome::Closed)
}

/// Waits until no link to `peer` is up (checked every 500 ms), or the node stops.
async fn wait_for_link_down(shared: &Shared, peer: &str) {
    loop {
        if !shared.peers.lock().links.contains_key(peer) {
            return;
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
