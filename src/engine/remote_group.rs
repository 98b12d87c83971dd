//! Consumer groups of a station another node serves: pull requests and acks made
//! on this node for a station held by another node (R1), or led by another
//! replica (R3/R5), go to that node over the cluster link, so a front-end
//! consumes from any node with the same [`Engine::fetch`](junction_api::Engine::fetch)
//! and [`Engine::ack`](junction_api::Engine::ack) calls as on the station's own.
//!
//! - **Fetch.** The caller gives the request a token and sends it one way
//!   ([`K_FETCH`]); the serving node runs it against its group with a sink that
//!   sends each delivery, heartbeat and the end back one way ([`K_FETCHED`]), in
//!   order on the one link. The caller hands them to the front-end's sink.
//! - **A sink that is gone** (the client left) makes the caller send the delivery
//!   back as a nak, so it is redelivered at once rather than after `ack_wait`,
//!   and cancel the request ([`K_FETCH_CANCEL`]).
//! - **A link that drops, or a leader that moves**, ends the caller's requests to
//!   that node (as an expired request, with everything still wanted), at most one
//!   group tick (about 50 ms) later; the front-end asks again, now of the new
//!   leader. What the old node delivered and nobody acked is redelivered by its
//!   group after `ack_wait`, as for any member that went away.
//! - **Acks** go one way ([`K_ACK`]); an ack whose sender waits (AckSync, HTTP) is
//!   a call ([`K_ACK_SYNC`]) answered once the serving node has made it durable.

use super::StationEngine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use junction_api::{
    AckKind, Broker, Delivered, EngineError, FetchEnd, FetchRequest, FetchSink, Message,
    StoredMessage, TenantId,
};
use junction_cluster::ForwardRef;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

/// One way, caller → serving node: a pull request.
pub(crate) const K_FETCH: u8 = 69;
/// One way, serving node → caller: a delivery, heartbeat or end of a request.
pub(crate) const K_FETCHED: u8 = 70;
/// One way, caller → serving node: a request's member is gone.
pub(crate) const K_FETCH_CANCEL: u8 = 71;
/// One way, caller → serving node: an ack, nak, progress or term.
pub(crate) const K_ACK: u8 = 72;
/// A call: an ack answered once it is durable ([`Engine::ack_committed`](junction_api::Engine::ack_committed)).
pub(crate) const K_ACK_SYNC: u8 = 73;

/// How long an ack whose sender waits may take on the serving node.
const ACK_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// The requests this node sent to others, and those others sent to it.
#[derive(Default)]
pub(crate) struct RemoteGroups {
    next_token: AtomicU64,
    /// Requests this node sent, by token.
    sent: Mutex<HashMap<u64, Sent>>,
    /// Requests peers sent to this node, by (peer, token).
    served: Mutex<HashMap<(String, u64), Arc<ServedSink>>>,
    /// Deliveries sent to each peer and not yet settled there: if the link to
    /// it drops (the node died), they are given back to their groups at once
    /// rather than after `ack_wait`.
    outstanding: Mutex<HashMap<String, std::collections::HashSet<Outstanding>>>,
}

/// A delivery sent to a peer: (tenant, station, group, sequence).
type Outstanding = (String, String, String, u64);

struct Sent {
    node: String,
    tenant: TenantId,
    station: String,
    group: String,
    batch: usize,
    sink: Arc<dyn FetchSink>,
}

#[derive(Serialize, Deserialize)]
struct FetchCall {
    token: u64,
    tenant: String,
    station: String,
    group: String,
    batch: usize,
    #[serde(default)]
    max_bytes: usize,
    #[serde(default)]
    expires_ms: Option<u64>,
    #[serde(default)]
    no_wait: bool,
    #[serde(default)]
    heartbeat_ms: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct CancelCall {
    token: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum AckWire {
    Ack,
    Nak { delay_ms: Option<u64> },
    Progress,
    Term { reason: Option<String> },
}

impl From<&AckKind> for AckWire {
    fn from(k: &AckKind) -> Self {
        match k {
            AckKind::Ack => AckWire::Ack,
            AckKind::Nak(d) => AckWire::Nak {
                delay_ms: d.map(|d| d.as_millis() as u64),
            },
            AckKind::InProgress => AckWire::Progress,
            AckKind::Term(r) => AckWire::Term { reason: r.clone() },
        }
    }
}

impl From<AckWire> for AckKind {
    fn from(k: AckWire) -> Self {
        match k {
            AckWire::Ack => AckKind::Ack,
            AckWire::Nak { delay_ms } => AckKind::Nak(delay_ms.map(Duration::from_millis)),
            AckWire::Progress => AckKind::InProgress,
            AckWire::Term { reason } => AckKind::Term(reason),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct AckCall {
    tenant: String,
    station: String,
    group: String,
    seq: u64,
    kind: AckWire,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "end", rename_all = "snake_case")]
enum EndWire {
    Complete,
    NoMessages,
    Timeout { messages: usize, bytes: usize },
    MaxBytes { messages: usize, bytes: usize },
    MaxWaiting,
    ExceedsLimits,
    GroupDeleted,
    PushBased,
}

impl From<FetchEnd> for EndWire {
    fn from(e: FetchEnd) -> Self {
        match e {
            FetchEnd::Complete => EndWire::Complete,
            FetchEnd::NoMessages => EndWire::NoMessages,
            FetchEnd::Timeout { messages, bytes } => EndWire::Timeout { messages, bytes },
            FetchEnd::MaxBytes { messages, bytes } => EndWire::MaxBytes { messages, bytes },
            FetchEnd::MaxWaiting => EndWire::MaxWaiting,
            FetchEnd::ExceedsLimits => EndWire::ExceedsLimits,
            FetchEnd::GroupDeleted => EndWire::GroupDeleted,
            FetchEnd::PushBased => EndWire::PushBased,
        }
    }
}

impl From<EndWire> for FetchEnd {
    fn from(e: EndWire) -> Self {
        match e {
            EndWire::Complete => FetchEnd::Complete,
            EndWire::NoMessages => FetchEnd::NoMessages,
            EndWire::Timeout { messages, bytes } => FetchEnd::Timeout { messages, bytes },
            EndWire::MaxBytes { messages, bytes } => FetchEnd::MaxBytes { messages, bytes },
            EndWire::MaxWaiting => FetchEnd::MaxWaiting,
            EndWire::ExceedsLimits => FetchEnd::ExceedsLimits,
            EndWire::GroupDeleted => FetchEnd::GroupDeleted,
            EndWire::PushBased => FetchEnd::PushBased,
        }
    }
}

/// What the serving node sends back about a request.
#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Fetched {
    /// A delivery; the message follows the header. Its group is named, so
    /// that a caller that no longer knows the request gives it back.
    Msg {
        token: u64,
        tenant: String,
        station: String,
        group: String,
        seq: u64,
        time_ns: u64,
        consumer_seq: u64,
        delivery_count: u32,
        pending: u64,
    },
    Heartbeat {
        token: u64,
    },
    End {
        token: u64,
        #[serde(flatten)]
        end: EndWire,
    },
}

/// `u32` length + JSON header, then (for a delivery) `u32` length + lineage and
/// the message as the link encodes one.
fn encode_fetched(head: &Fetched, delivered: Option<&Delivered>) -> Bytes {
    let json = serde_json::to_vec(head).unwrap_or_default();
    let mut b = BytesMut::with_capacity(json.len() + 64);
    b.put_u32(json.len() as u32);
    b.put_slice(&json);
    if let Some(d) = delivered {
        let m = &d.message;
        b.put_u32(m.lineage.len() as u32);
        b.put_slice(&m.lineage);
        b.put_slice(&stored_bytes(m));
    }
    b.freeze()
}

/// A stored message's subject, headers and payload as the cluster link encodes
/// a message.
pub(crate) fn stored_bytes(m: &StoredMessage) -> Bytes {
    let mut message = Message::new(m.subject.clone(), m.payload.clone());
    message.headers = m.headers.clone();
    junction_cluster::frame::message_bytes(ForwardRef {
        tenant: "",
        message: &message,
        origin_mqtt: false,
        plain: false,
        queues: &[],
        route: None,
    })
}

fn decode_fetched(mut body: Bytes) -> Result<(Fetched, Option<(Bytes, Message)>), String> {
    let bad = || "malformed fetch answer".to_string();
    if body.remaining() < 4 {
        return Err(bad());
    }
    let n = body.get_u32() as usize;
    if body.remaining() < n {
        return Err(bad());
    }
    let head: Fetched = serde_json::from_slice(&body.split_to(n)).map_err(|_| bad())?;
    if !matches!(head, Fetched::Msg { .. }) {
        return Ok((head, None));
    }
    if body.remaining() < 4 {
        return Err(bad());
    }
    let n = body.get_u32() as usize;
    if body.remaining() < n {
        return Err(bad());
    }
    let lineage = body.split_to(n);
    let f = junction_cluster::frame::message_from(body).map_err(|_| bad())?;
    Ok((head, Some((lineage, f.message))))
}

/// The sink of a request served for a peer: sends what the group gives it back
/// over the link.
struct ServedSink {
    engine: std::sync::Weak<StationEngine>,
    peer: String,
    token: u64,
    gone: AtomicBool,
    tenant: String,
    station: String,
    group: String,
}

impl ServedSink {
    fn send(&self, head: &Fetched, delivered: Option<&Delivered>) -> bool {
        if self.gone.load(Ordering::Acquire) {
            return false;
        }
        let Some(engine) = self.engine.upgrade() else {
            return false;
        };
        let Some(cluster) = engine.cluster.get() else {
            return false;
        };
        let sent = cluster.notify(&self.peer, K_FETCHED, encode_fetched(head, delivered));
        if !sent {
            self.gone.store(true, Ordering::Release);
        }
        sent
    }

    fn forget(&self) {
        if let Some(engine) = self.engine.upgrade() {
            engine
                .remote_groups
                .served
                .lock()
                .remove(&(self.peer.clone(), self.token));
        }
    }
}

impl FetchSink for ServedSink {
    fn deliver(&self, d: &Delivered) -> bool {
        let time_ns = d
            .message
            .time
            .duration_since(UNIX_EPOCH)
            .map(|t| t.as_nanos() as u64)
            .unwrap_or(0);
        let head = Fetched::Msg {
            token: self.token,
            tenant: self.tenant.clone(),
            station: self.station.clone(),
            group: self.group.clone(),
            seq: d.message.seq,
            time_ns,
            consumer_seq: d.consumer_seq,
            delivery_count: d.delivery_count,
            pending: d.pending,
        };
        let sent = self.send(&head, Some(d));
        if !sent {
            self.forget();
        } else if let Some(engine) = self.engine.upgrade() {
            engine
                .remote_groups
                .outstanding
                .lock()
                .entry(self.peer.clone())
                .or_default()
                .insert((
                    self.tenant.clone(),
                    self.station.clone(),
                    self.group.clone(),
                    d.message.seq,
                ));
        }
        sent
    }

    fn end(&self, end: FetchEnd) {
        let head = Fetched::End {
            token: self.token,
            end: end.into(),
        };
        self.send(&head, None);
        self.forget();
    }

    fn heartbeat(&self) {
        self.send(&Fetched::Heartbeat { token: self.token }, None);
    }
}

impl StationEngine {
    /// The node that serves station `name`'s groups when it is not this one:
    /// `Ok(None)` when this node does (or the station is unknown here: the local
    /// path answers that), `Err` when it is replicated and has no leader now.
    pub(crate) fn group_node(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<String>, EngineError> {
        // One node: it serves everything (no lookup on the ack path).
        if self.cluster.get().is_none() {
            return Ok(None);
        }
        match self.station_node(tenant, name) {
            None => Ok(None),
            Some(node) if node.is_empty() => Err(super::replicated::no_leader(name)),
            // A replicated station's leader this node has no link to is gone
            // (killed or cut off): the replicas are electing another.
            Some(node)
                if !self.cluster.get().is_some_and(|c| c.linked(&node))
                    && self
                        .stations
                        .get(tenant, name)
                        .is_ok_and(|s| s.is_replicated()) =>
            {
                Err(super::replicated::no_leader(name))
            }
            Some(node) => Ok(Some(node)),
        }
    }

    /// Sends a pull request to the node that serves the group.
    pub(crate) fn fetch_remote(
        &self,
        node: String,
        tenant: &TenantId,
        station: &str,
        group: &str,
        request: FetchRequest,
        sink: Arc<dyn FetchSink>,
    ) -> Result<(), EngineError> {
        let cluster = self
            .cluster
            .get()
            .ok_or_else(|| EngineError::NodeUnreachable(node.clone()))?;
        let token = self
            .remote_groups
            .next_token
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let call = FetchCall {
            token,
            tenant: tenant.0.to_string(),
            station: station.to_string(),
            group: group.to_string(),
            batch: request.batch,
            max_bytes: request.max_bytes,
            expires_ms: request.expires.map(|d| d.as_millis() as u64),
            no_wait: request.no_wait,
            heartbeat_ms: request.idle_heartbeat.map(|d| d.as_millis() as u64),
        };
        // Registered before it is sent: the answer may come back at once.
        self.remote_groups.sent.lock().insert(
            token,
            Sent {
                node: node.clone(),
                tenant: tenant.clone(),
                station: station.to_string(),
                group: group.to_string(),
                batch: request.batch,
                sink,
            },
        );
        let body = Bytes::from(serde_json::to_vec(&call).unwrap_or_default());
        if !cluster.notify(&node, K_FETCH, body) {
            self.remote_groups.sent.lock().remove(&token);
            return Err(EngineError::NodeUnreachable(node));
        }
        Ok(())
    }

    /// Sends an ack to the node that serves the group.
    pub(crate) fn ack_remote(
        &self,
        node: &str,
        tenant: &TenantId,
        station: &str,
        group: &str,
        seq: u64,
        kind: &AckKind,
    ) -> Result<(), EngineError> {
        let cluster = self
            .cluster
            .get()
            .ok_or_else(|| EngineError::NodeUnreachable(node.to_string()))?;
        let body = ack_body(tenant, station, group, seq, kind);
        if cluster.notify(node, K_ACK, body) {
            Ok(())
        } else {
            Err(EngineError::NodeUnreachable(node.to_string()))
        }
    }

    /// Sends an ack whose sender waits to the node that serves the group; `done`
    /// gets its answer.
    pub(crate) fn ack_committed_remote(
        &self,
        node: String,
        ack: (&TenantId, &str, &str, u64, &AckKind),
        done: junction_api::AckDone,
    ) {
        let (Some(cluster), Ok(runtime)) =
            (self.cluster.get(), tokio::runtime::Handle::try_current())
        else {
            done(Err(EngineError::NodeUnreachable(node)));
            return;
        };
        let (tenant, station, group, seq, kind) = ack;
        let body = ack_body(tenant, station, group, seq, kind);
        let wait = cluster.start_call(&node, K_ACK_SYNC, body, ACK_SYNC_TIMEOUT);
        runtime.spawn(async move {
            done(
                wait.await
                    .map(|_| ())
                    .map_err(|e| super::placement::answer_error(&node, e)),
            )
        });
    }

    /// Ends the requests sent to nodes that no longer serve their group (the link
    /// dropped, or another replica leads now) and cancels those whose member is
    /// gone; gives back what was delivered to a peer whose link dropped. Every
    /// group tick (about 50 ms).
    pub(crate) fn check_remote_fetches(&self) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        self.release_lost_peers();
        if self.remote_groups.sent.lock().is_empty() {
            return;
        }
        // (token, node, linked, the member is still there)
        let stale: Vec<(u64, String, bool, bool)> = {
            let sent = self.remote_groups.sent.lock();
            sent.iter()
                .filter_map(|(token, s)| {
                    let linked = cluster.linked(&s.node);
                    let serves = matches!(self.group_node(&s.tenant, &s.station), Ok(Some(ref n)) if *n == s.node);
                    let alive = s.sink.alive();
                    (!linked || !serves || !alive).then(|| (*token, s.node.clone(), linked, alive))
                })
                .collect()
        };
        for (token, node, linked, alive) in stale {
            let Some(s) = self.remote_groups.sent.lock().remove(&token) else {
                continue;
            };
            if linked {
                cancel(cluster, &node, token);
            }
            if alive {
                tracing::debug!(station = %s.station, group = %s.group, %node, "pull request to a node that no longer serves the group ended");
                s.sink.end(FetchEnd::Timeout {
                    messages: s.batch,
                    bytes: 0,
                });
            }
        }
    }

    /// A peer settled a delivery (anything but "in progress"): it is no longer
    /// outstanding at any peer (a redelivery may have gone to another one).
    fn settled(&self, _peer: &str, a: &AckCall) {
        if matches!(a.kind, AckWire::Progress) {
            return;
        }
        let key = (a.tenant.clone(), a.station.clone(), a.group.clone(), a.seq);
        let mut outstanding = self.remote_groups.outstanding.lock();
        outstanding.retain(|_, set| {
            set.remove(&key);
            !set.is_empty()
        });
    }

    /// Peers whose link dropped: their requests end here, and what they were
    /// delivered and never settled goes back to its group (redelivered now, to
    /// whichever member asks next).
    pub(crate) fn release_lost_peers(&self) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        let lost: Vec<String> = {
            let outstanding = self.remote_groups.outstanding.lock();
            let served = self.remote_groups.served.lock();
            outstanding
                .keys()
                .chain(served.keys().map(|(p, _)| p))
                .filter(|p| !cluster.linked(p))
                .cloned()
                .collect()
        };
        for peer in lost {
            self.remote_groups.served.lock().retain(|(p, _), sink| {
                if *p == peer {
                    sink.gone.store(true, Ordering::Release);
                    false
                } else {
                    true
                }
            });
            let given_back = self
                .remote_groups
                .outstanding
                .lock()
                .remove(&peer)
                .unwrap_or_default();
            if given_back.is_empty() {
                continue;
            }
            tracing::info!(%peer, deliveries = given_back.len(), "deliveries to a node whose link dropped are given back to their groups");
            for (tenant, station, group, seq) in given_back {
                let tenant = self.tenant_named(&tenant);
                if let Err(e) = self.ack(&tenant, &station, &group, seq, AckKind::Nak(None)) {
                    tracing::debug!(%station, %group, seq, error = %e, "delivery not given back");
                }
            }
        }
    }

    /// A remote-group call from `peer` (the kinds above); `None` for other kinds.
    pub(crate) fn remote_group_call(
        &self,
        peer: &str,
        kind: u8,
        body: Bytes,
    ) -> Option<futures::future::BoxFuture<'static, Result<Bytes, String>>> {
        match kind {
            K_FETCH => {
                self.serve_fetch(peer, &body);
                Some(Box::pin(async { Ok(Bytes::new()) }))
            }
            K_FETCHED => {
                self.fetched(peer, body);
                Some(Box::pin(async { Ok(Bytes::new()) }))
            }
            K_FETCH_CANCEL => {
                if let Ok(c) = serde_json::from_slice::<CancelCall>(&body)
                    && let Some(s) = self
                        .remote_groups
                        .served
                        .lock()
                        .remove(&(peer.to_string(), c.token))
                {
                    s.gone.store(true, Ordering::Release);
                }
                Some(Box::pin(async { Ok(Bytes::new()) }))
            }
            K_ACK => {
                match serde_json::from_slice::<AckCall>(&body) {
                    Ok(a) => {
                        self.settled(peer, &a);
                        let tenant = self.tenant_named(&a.tenant);
                        if let Err(e) =
                            self.ack(&tenant, &a.station, &a.group, a.seq, a.kind.into())
                        {
                            tracing::debug!(%peer, station = %a.station, group = %a.group, error = %e, "ack passed on by a peer failed");
                        }
                    }
                    Err(e) => tracing::warn!(%peer, error = %e, "a peer sent a malformed ack"),
                }
                Some(Box::pin(async { Ok(Bytes::new()) }))
            }
            K_ACK_SYNC => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                match serde_json::from_slice::<AckCall>(&body) {
                    Ok(a) => {
                        self.settled(peer, &a);
                        let tenant = self.tenant_named(&a.tenant);
                        self.ack_committed(
                            &tenant,
                            &a.station,
                            &a.group,
                            a.seq,
                            a.kind.into(),
                            Box::new(move |r| {
                                let _ = tx.send(r);
                            }),
                        );
                    }
                    Err(e) => {
                        let _ = tx.send(Err(EngineError::Storage(format!("malformed ack: {e}"))));
                    }
                }
                Some(Box::pin(async move {
                    match rx.await {
                        Ok(Ok(())) => Ok(Bytes::new()),
                        Ok(Err(e)) => {
                            Err(serde_json::to_string(&e).unwrap_or_else(|_| e.to_string()))
                        }
                        Err(_) => {
                            Err(serde_json::to_string(&EngineError::ShuttingDown)
                                .unwrap_or_default())
                        }
                    }
                }))
            }
            _ => None,
        }
    }

    /// Runs a peer's pull request against the group here.
    fn serve_fetch(&self, peer: &str, body: &[u8]) {
        let call: FetchCall = match serde_json::from_slice(body) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "a peer sent a malformed pull request");
                return;
            }
        };
        let sink = Arc::new(ServedSink {
            engine: self.me.clone(),
            peer: peer.to_string(),
            token: call.token,
            gone: AtomicBool::new(false),
            tenant: call.tenant.clone(),
            station: call.station.clone(),
            group: call.group.clone(),
        });
        self.remote_groups
            .served
            .lock()
            .insert((peer.to_string(), call.token), sink.clone());
        let tenant = self.tenant_named(&call.tenant);
        let request = FetchRequest {
            batch: call.batch,
            max_bytes: call.max_bytes,
            expires: call.expires_ms.map(Duration::from_millis),
            no_wait: call.no_wait,
            idle_heartbeat: call.heartbeat_ms.map(Duration::from_millis),
            pull_request: false,
        };
        // Served here only: a request is never passed on twice (a leader that
        // moved meanwhile makes the caller ask again).
        let local = match self.group_node(&tenant, &call.station) {
            Ok(None) => {
                self.fetch_local(&tenant, &call.station, &call.group, request, sink.clone())
            }
            Ok(Some(node)) => Err(EngineError::StationElsewhere {
                station: call.station.clone(),
                node,
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = local {
            tracing::debug!(%peer, station = %call.station, group = %call.group, error = %e, "pull request from a peer refused");
            // The caller ends it as an expired request and asks again; a group
            // that is gone ends it for good.
            let end = match e {
                EngineError::GroupNotFound | EngineError::StationNotFound => FetchEnd::GroupDeleted,
                _ => FetchEnd::Timeout {
                    messages: call.batch,
                    bytes: call.max_bytes,
                },
            };
            sink.end(end);
        }
    }

    /// A delivery, heartbeat or end from the node serving a request this node sent.
    fn fetched(&self, peer: &str, body: Bytes) {
        let (head, message) = match decode_fetched(body) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "a peer sent a malformed pull answer");
                return;
            }
        };
        match head {
            Fetched::Heartbeat { token } => {
                let sink = self
                    .remote_groups
                    .sent
                    .lock()
                    .get(&token)
                    .map(|s| s.sink.clone());
                if let Some(sink) = sink {
                    sink.heartbeat();
                }
            }
            Fetched::End { token, end } => {
                let sent = self.remote_groups.sent.lock().remove(&token);
                if let Some(s) = sent {
                    s.sink.end(end.into());
                }
            }
            Fetched::Msg {
                token,
                tenant,
                station,
                group,
                seq,
                time_ns,
                consumer_seq,
                delivery_count,
                pending,
            } => {
                let Some((lineage, message)) = message else {
                    return;
                };
                let target = self
                    .remote_groups
                    .sent
                    .lock()
                    .get(&token)
                    .map(|s| s.sink.clone());
                let delivered = Delivered {
                    message: StoredMessage {
                        seq,
                        subject: message.subject,
                        headers: message.headers,
                        payload: message.payload,
                        time: UNIX_EPOCH + Duration::from_nanos(time_ns),
                        lineage,
                    },
                    consumer_seq,
                    delivery_count,
                    pending,
                };
                let taken = match &target {
                    Some(sink) => sink.deliver(&delivered),
                    None => false,
                };
                if taken {
                    return;
                }
                // Nobody here wants it: stop the request, then give the message
                // back at once (in that order on the link, so that it is not
                // redelivered to this request again).
                if let Some(cluster) = self.cluster.get() {
                    cancel(cluster, peer, token);
                    let tenant = self.tenant_named(&tenant);
                    let body = ack_body(&tenant, &station, &group, seq, &AckKind::Nak(None));
                    cluster.notify(peer, K_ACK, body);
                }
                if let Some(s) = self.remote_groups.sent.lock().remove(&token) {
                    s.sink.end(FetchEnd::Timeout {
                        messages: s.batch,
                        bytes: 0,
                    });
                }
            }
        }
    }
}

fn ack_body(tenant: &TenantId, station: &str, group: &str, seq: u64, kind: &AckKind) -> Bytes {
    let call = AckCall {
        tenant: tenant.0.to_string(),
        station: station.to_string(),
        group: group.to_string(),
        seq,
        kind: kind.into(),
    };
    Bytes::from(serde_json::to_vec(&call).unwrap_or_default())
}

fn cancel(cluster: &junction_cluster::Cluster, node: &str, token: u64) {
    let body = Bytes::from(serde_json::to_vec(&CancelCall { token }).unwrap_or_default());
    cluster.notify(node, K_FETCH_CANCEL, body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_survives_the_wire() {
        let mut headers = junction_api::Headers::new();
        headers.insert("Nats-Msg-Id", "a1");
        let d = Delivered {
            message: StoredMessage {
                seq: 42,
                subject: junction_api::Subject::from_trusted(Bytes::from_static(b"orders.eu")),
                headers: Some(headers),
                payload: Bytes::from_static(b"hello"),
                time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
                lineage: Bytes::from_static(b"lin"),
            },
            consumer_seq: 7,
            delivery_count: 2,
            pending: 3,
        };
        let head = Fetched::Msg {
            token: 9,
            tenant: "$G".into(),
            station: "orders".into(),
            group: "billing".into(),
            seq: 42,
            time_ns: 1_700_000_000_123_456_789,
            consumer_seq: 7,
            delivery_count: 2,
            pending: 3,
        };
        let (back, m) = decode_fetched(encode_fetched(&head, Some(&d))).unwrap();
        assert!(matches!(
            back,
            Fetched::Msg {
                token: 9,
                seq: 42,
                consumer_seq: 7,
                delivery_count: 2,
                pending: 3,
                ..
            }
        ));
        let (lineage, m) = m.unwrap();
        assert_eq!(&lineage[..], b"lin");
        assert_eq!(&m.payload[..], b"hello");
        assert_eq!(m.subject.as_bytes(), b"orders.eu");
        assert_eq!(m.headers.unwrap().get("Nats-Msg-Id"), Some("a1"));
    }

    #[test]
    fn ends_and_acks_survive_the_wire() {
        let head = Fetched::End {
            token: 3,
            end: FetchEnd::Timeout {
                messages: 5,
                bytes: 10,
            }
            .into(),
        };
        let (back, m) = decode_fetched(encode_fetched(&head, None)).unwrap();
        assert!(m.is_none());
        match back {
            Fetched::End { token, end } => {
                assert_eq!(token, 3);
                assert_eq!(
                    FetchEnd::from(end),
                    FetchEnd::Timeout {
                        messages: 5,
                        bytes: 10
                    }
                );
            }
            _ => panic!("not an end"),
        }
        for k in [
            AckKind::Ack,
            AckKind::Nak(Some(Duration::from_millis(250))),
            AckKind::Nak(None),
            AckKind::InProgress,
            AckKind::Term(Some("bad".into())),
        ] {
            let wire = serde_json::to_vec(&AckWire::from(&k)).unwrap();
            let back: AckWire = serde_json::from_slice(&wire).unwrap();
            assert_eq!(AckKind::from(back), k);
        }
        assert!(decode_fetched(Bytes::from_static(b"\0\0\0\x09{\"t\":1}")).is_err());
        assert!(decode_fetched(Bytes::from_static(b"\0\0")).is_err());
    }
}
