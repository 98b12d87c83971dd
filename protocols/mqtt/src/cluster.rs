//! The MQTT front-end in a cluster: what it keeps in step with the same
//! front-end on the other nodes, through the engine's requests to peers
//! ([`Broker::broadcast_request`], delivered there to the broker's own
//! subscribers only):
//! - **Retained messages** are cluster-wide: every node keeps all of them (in its
//!   `$MQTT_rmsgs`), so a subscriber on any node gets the retained message set on
//!   any other. A set or a clear is stamped with the time it was made
//!   ([`H_MQTT_AT`]) and sent to every peer (`$MQTT.cluster.r.<subject>`, an empty
//!   payload for a clear); a node takes it when it is newer than what it has
//!   (last writer wins, by the setting node's clock). A clear is kept as a
//!   tombstone (an empty record), so an older copy arriving later cannot bring the
//!   message back. When a peer comes online (a restart, a healed partition) each
//!   node asks it for everything it holds, tombstones included (`$MQTT.cluster.sync`,
//!   again 5 s later), so they converge.
//! - **Client-id takeover** is cluster-wide: a client that connects on one node
//!   (`$MQTT.cluster.takeover`, its client id) makes any other node close its
//!   connection with that client id (MQTT 5 reason 0x8E), as one broker would.
//!
//! - **Persistent sessions** are cluster-wide: their records (`$MQTT_sess`) and
//!   queues (`$MQTT_msgs`, a consumer group per persistent subscription) are
//!   cluster-wide stations, replicated on three nodes when the cluster has three
//!   or more (`session.rs`), so a device resumes its session on any node, also
//!   after the node it used was lost. A session belongs to one node at a time
//!   (the record's `node`): the one it is connected to, or was last; that node
//!   runs its expiry and will. A client connecting elsewhere takes it over (the
//!   takeover notice above): the old node closes its connection and lets the
//!   session go without storing anything more of it.
//! - **Persistent subscriptions' filters** are known on every node
//!   (`$MQTT.cluster.d`, added or removed, and with the sync below), so a QoS 1/2
//!   publish on any node is queued for an offline session subscribed elsewhere.
//!
//! Only the default tenant's state is kept in step until tenants land.

use crate::broker::{MqttBroker, Tenant};
use crate::session::{H_MQTT_AT, H_MQTT_QOS, H_MQTT_RETAIN, RMSGS_PREFIX, Retained};
use bytes::Bytes;
use junction_api::{
    Delivery, EngineError, Headers, Message, PublishOptions, Subject, SubjectFilter, Subscriber,
    TenantId,
};
use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// Subject prefix of retained sets and clears sent to peers.
pub const R_PREFIX: &str = "$MQTT.cluster.r.";
/// Subject of a takeover notice (payload: the client id).
pub const TAKEOVER: &str = "$MQTT.cluster.takeover";
/// Subject of a request for every retained record (payload: the asking node).
pub const SYNC: &str = "$MQTT.cluster.sync";
/// Subject of a persistent subscription added or removed on a node (payload:
/// [`DurableNote`] as JSON).
pub const DURABLE: &str = "$MQTT.cluster.d";

/// A persistent QoS 1/2 subscription, as sent to peers.
#[derive(serde::Serialize, serde::Deserialize)]
struct DurableNote {
    client_id: String,
    filter: String,
    add: bool,
}
/// A sync is asked again this long after a peer came online, in case the peer's
/// front-end was not listening yet the first time.
const SYNC_AGAIN: Duration = Duration::from_secs(5);
/// How often the front-end looks for peers that came online.
const PEERS_EVERY: Duration = Duration::from_secs(1);
/// Every this many peer checks, the session store's leader expires the offline
/// sessions of nodes that are gone ([`MqttBroker::expire_orphans`]).
const SWEEP_EVERY_TICKS: u64 = 5;

/// Nanoseconds since the epoch: when a retained message was set or cleared.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct Inbox(mpsc::UnboundedSender<Message>);

impl Subscriber for Inbox {
    fn deliver(&self, message: &Message, _: junction_api::FanoutId) -> Delivery {
        match self.0.send(message.clone()) {
            Ok(()) => Delivery::Accepted,
            Err(_) => Delivery::Gone,
        }
    }

    fn describe(&self) -> (String, u64) {
        ("$MQTT.cluster".into(), 0)
    }
}

/// Starts keeping this node's MQTT state in step with its peers' (when the
/// engine is in a cluster).
pub(crate) fn start(broker: &Arc<MqttBroker>) -> Result<(), EngineError> {
    if broker.engine.cluster().is_none() {
        return Ok(());
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let system = broker.engine.system_client();
    broker.engine.subscribe(
        &system,
        SubjectFilter::new("$MQTT.cluster.>")?,
        None,
        Arc::new(Inbox(tx)),
    )?;
    let weak = Arc::downgrade(broker);
    let shutdown = broker.shutdown.clone();
    broker.tracker.spawn(async move {
        loop {
            let m = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = rx.recv() => match m { Some(m) => m, None => return },
            };
            let Some(broker) = weak.upgrade() else { return };
            broker.from_peer(m);
        }
    });
    let weak: Weak<MqttBroker> = Arc::downgrade(broker);
    let shutdown = broker.shutdown.clone();
    broker.tracker.spawn(async move {
        let mut online: BTreeSet<String> = BTreeSet::new();
        let mut again: Vec<(tokio::time::Instant, String)> = Vec::new();
        let mut sweeps: u64 = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PEERS_EVERY) => {}
            }
            let Some(broker) = weak.upgrade() else { return };
            let Some(view) = broker.engine.cluster() else {
                continue;
            };
            let now: BTreeSet<String> = view
                .nodes
                .iter()
                .filter(|n| n.online && !n.this)
                .map(|n| n.name.clone())
                .collect();
            sweeps += 1;
            if sweeps.is_multiple_of(SWEEP_EVERY_TICKS) {
                broker.expire_orphans(&view.node, &now);
            }
            // A peer that came online (started, or back from a partition) is
            // asked for everything it holds, and again a little later.
            for peer in now.difference(&online) {
                broker.ask_sync(&view.node, peer);
                again.push((tokio::time::Instant::now() + SYNC_AGAIN, peer.clone()));
            }
            let due = tokio::time::Instant::now();
            again.retain(|(at, peer)| {
                if *at > due {
                    return true;
                }
                if now.contains(peer) {
                    broker.ask_sync(&view.node, peer);
                }
                false
            });
            online = now;
        }
    });
    Ok(())
}

impl MqttBroker {
    /// The default tenant's state, if MQTT was used here (or state was loaded):
    /// the `$MQTT_*` stations are made on first use, not by a peer's question.
    fn default_tenant(self: &Arc<Self>) -> Option<Arc<Tenant>> {
        self.loaded_tenant(&TenantId::default_tenant())
    }

    /// Tells the peers that a client connected here with `client_id`.
    pub(crate) fn announce_connect(&self, tenant: &Tenant, client_id: &str) {
        let m = Message::new(
            Subject::from_trusted(Bytes::from_static(TAKEOVER.as_bytes())),
            Bytes::copy_from_slice(client_id.as_bytes()),
        );
        self.engine.broadcast_request(&tenant.id, &m);
    }

    /// Offline sessions whose node is gone (not linked) and whose expiry has
    /// passed are discarded by the node that leads the session store, so they
    /// expire on time although their own node, which runs their timer, is
    /// down. A session whose node died while it was connected has no
    /// disconnect time and waits for that node (or for its device).
    fn expire_orphans(self: &Arc<Self>, me: &str, online: &BTreeSet<String>) {
        let Some(tenant) = self.default_tenant() else {
            return;
        };
        let leads = self
            .engine
            .replica_role(&tenant.id, crate::session::SESS)
            .is_some_and(|r| r.role == "leader");
        if !leads {
            return;
        }
        let now = crate::channel::now_ms();
        for record in crate::session::load_records(self.engine.as_ref(), &tenant.id) {
            let Some(node) = record.node.as_deref() else {
                continue;
            };
            if node == me || online.contains(node) || record.disconnected_ms == 0 {
                continue;
            }
            let expired =
                crate::broker::remaining_expiry(record.expiry, record.disconnected_ms, now)
                    .is_some_and(|left| left.is_zero());
            // Taken over here meanwhile: this node runs it.
            if !expired || tenant.slots.lock().contains_key(&record.client_id) {
                continue;
            }
            tracing::info!(client_id = %record.client_id, %node, "MQTT session expired (its node is gone)");
            self.discard_session(&tenant, &record);
        }
    }

    /// Tells the peers that a persistent QoS 1/2 subscription was added here (or
    /// removed), so their publishes are queued for it.
    pub(crate) fn announce_durable(
        &self,
        tenant: &Tenant,
        client_id: &str,
        filter: &str,
        add: bool,
    ) {
        if self.node.is_none() {
            return;
        }
        let m = durable_note(client_id, filter, add);
        self.engine.broadcast_request(&tenant.id, &m);
    }

    /// Sends a retained set (or a clear: empty payload) made here to the peers.
    /// `stored` is the record as `$MQTT_rmsgs` holds it.
    pub(crate) fn announce_retained(&self, tenant: &Tenant, stored: &Message) {
        if let Some(m) = peer_copy(stored) {
            self.engine.broadcast_request(&tenant.id, &m);
        }
    }

    /// Asks `peer` for everything it retains.
    fn ask_sync(&self, me: &str, peer: &str) {
        let m = Message::new(
            Subject::from_trusted(Bytes::from_static(SYNC.as_bytes())),
            Bytes::copy_from_slice(me.as_bytes()),
        );
        let _ = self
            .engine
            .forward_request(peer, &TenantId::default_tenant(), &m);
    }

    /// Sends everything retained here (tombstones too) to `peer`.
    fn send_retained_to(self: &Arc<Self>, peer: &str) {
        let Some(tenant) = self.default_tenant() else {
            return;
        };
        let mut records: Vec<Message> = tenant
            .retained
            .read()
            .values()
            .filter(|r| !r.volatile)
            .map(stored_form)
            .collect();
        records.extend(tenant.tombstones.read().iter().map(|(subject, at)| {
            tombstone(
                Subject::from_trusted(Bytes::from(format!("{RMSGS_PREFIX}{subject}"))),
                *at,
            )
        }));
        // Persistent subscriptions known here, for the peer's publishes.
        let durable: Vec<(String, String)> = tenant.durable.read().keys().cloned().collect();
        for (client_id, filter) in &durable {
            let m = durable_note(client_id, filter, true);
            if self.engine.forward_request(peer, &tenant.id, &m).is_err() {
                return;
            }
        }
        let n = records.len();
        for m in records.iter().filter_map(peer_copy) {
            if self.engine.forward_request(peer, &tenant.id, &m).is_err() {
                return;
            }
        }
        if n > 0 {
            tracing::debug!(%peer, records = n, "MQTT retained messages sent to a peer");
        }
    }

    /// A notice from a peer.
    fn from_peer(self: &Arc<Self>, m: Message) {
        let subject = m.subject.as_bytes();
        if subject == TAKEOVER.as_bytes() {
            let client_id = String::from_utf8_lossy(&m.payload).into_owned();
            if let Some(tenant) = self.default_tenant() {
                let mut slots = tenant.slots.lock();
                if let Some(slot) = slots.get_mut(&client_id) {
                    // The session moved to that node: its expiry and delayed
                    // will are that node's now.
                    if let Some(e) = slot.expiry.take() {
                        e.cancel();
                    }
                    if let Some(w) = slot.will.take() {
                        w.cancel();
                    }
                    slot.record = None;
                    match &slot.online {
                        Some(online) => {
                            tracing::info!(%client_id, "MQTT client id taken over on another node");
                            online.mailbox.stop(crate::mailbox::Stop::Moved);
                        }
                        None => {
                            slots.remove(&client_id);
                        }
                    }
                }
            }
            return;
        }
        if subject == DURABLE.as_bytes() {
            let Ok(note) = serde_json::from_slice::<DurableNote>(&m.payload) else {
                tracing::warn!("a peer sent a malformed persistent-subscription note");
                return;
            };
            let tenant = match self.tenant(&TenantId::default_tenant()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot keep a peer's persistent subscription");
                    return;
                }
            };
            let key = (note.client_id, note.filter);
            if note.add {
                // (A shared one too: its share group's queue is cluster-wide.)
                if let Ok(mapped) = crate::topic::map_filter(&key.1) {
                    tenant.durable.write().insert(key, mapped.subjects);
                }
            } else {
                tenant.durable.write().remove(&key);
            }
            return;
        }
        if subject == SYNC.as_bytes() {
            let peer = String::from_utf8_lossy(&m.payload).into_owned();
            self.send_retained_to(&peer);
            return;
        }
        if let Some(rest) = subject.strip_prefix(R_PREFIX.as_bytes()) {
            let subject = Subject::from_trusted(Bytes::copy_from_slice(rest));
            self.take_retained(subject, m);
        }
    }

    /// Takes a peer's retained set or clear when it is newer than ours.
    fn take_retained(self: &Arc<Self>, subject: Subject, m: Message) {
        // Retained state from a peer is MQTT use: the stations are made for it.
        let tenant = match self.tenant(&TenantId::default_tenant()) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot keep a peer's retained message");
                return;
            }
        };
        let Ok(topic) = crate::topic::subject_to_topic(subject.as_bytes()) else {
            return;
        };
        let at = at_of(m.headers.as_ref());
        let key = subject.to_str_lossy().into_owned();
        {
            let ours = tenant
                .retained
                .read()
                .get(&topic)
                .map(|r| r.at_ns)
                .or_else(|| tenant.tombstones.read().get(&key).copied());
            if ours.is_some_and(|ours| ours >= at) {
                return;
            }
        }
        let stored_subject = Subject::from_trusted(Bytes::from(format!("{RMSGS_PREFIX}{key}")));
        let record = Message {
            subject: stored_subject.clone(),
            reply: None,
            headers: m.headers.clone(),
            payload: m.payload.clone(),
        };
        if m.payload.is_empty() {
            tenant.retained.write().remove(&topic);
            tenant.tombstones.write().insert(key, at);
        } else {
            tenant.tombstones.write().remove(&key);
            tenant
                .retained
                .write()
                .insert(topic, Retained::stored(subject, m.payload, m.headers, at));
        }
        let client = tenant.client.clone();
        self.store_internal(&tenant, &client, &record, &PublishOptions::NONE, None);
    }
}

fn durable_note(client_id: &str, filter: &str, add: bool) -> Message {
    let note = DurableNote {
        client_id: client_id.to_owned(),
        filter: filter.to_owned(),
        add,
    };
    Message::new(
        Subject::from_trusted(Bytes::from_static(DURABLE.as_bytes())),
        Bytes::from(serde_json::to_vec(&note).unwrap_or_default()),
    )
}

/// A retained message as `$MQTT_rmsgs` stores it.
fn stored_form(r: &Retained) -> Message {
    let mut headers = r.headers.clone().unwrap_or_default();
    headers.insert(H_MQTT_QOS, r.qos.to_string());
    headers.insert(H_MQTT_RETAIN, "1");
    headers.insert(H_MQTT_AT, r.at_ns.to_string());
    Message {
        subject: Subject::from_trusted(Bytes::from(format!("{RMSGS_PREFIX}{}", r.subject))),
        reply: None,
        headers: Some(headers),
        payload: r.payload.clone(),
    }
}

/// The record of a clear made at `at`.
pub(crate) fn tombstone(stored_subject: Subject, at: u64) -> Message {
    let mut headers = Headers::new();
    headers.insert(H_MQTT_AT, at.to_string());
    Message {
        subject: stored_subject,
        reply: None,
        headers: Some(headers),
        payload: Bytes::new(),
    }
}

/// A `$MQTT_rmsgs` record as sent to peers (`$MQTT.cluster.r.<subject>`).
fn peer_copy(stored: &Message) -> Option<Message> {
    let rest = stored
        .subject
        .as_bytes()
        .strip_prefix(RMSGS_PREFIX.as_bytes())?;
    let mut subject = R_PREFIX.as_bytes().to_vec();
    subject.extend_from_slice(rest);
    Some(Message {
        subject: Subject::from_trusted(Bytes::from(subject)),
        reply: None,
        headers: stored.headers.clone(),
        payload: stored.payload.clone(),
    })
}

/// When a retained record was made (0: before clusters stamped them).
pub(crate) fn at_of(headers: Option<&Headers>) -> u64 {
    headers
        .and_then(|h| h.get(H_MQTT_AT))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
