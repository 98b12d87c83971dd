//! Broker-wide MQTT state: per-tenant session registry (takeover, expiry, wills),
//! retained messages, durable interest, and the listener.

use crate::MqttOptions;
use crate::frame::Will;
use crate::mailbox::{Event, Mailbox};
use crate::session::{
    self, H_MQTT_QOS, H_MQTT_RETAIN, H_MQTT_STORED, MSGS, MSGS_PREFIX, RMSGS, RMSGS_PREFIX,
    Retained, SessionRecord, StoredWill,
};
use bytes::Bytes;
use junction_api::{
    ClientRecord, Engine, EngineError, Headers, Message, NewClient, Protocol, PublishOptions,
    Purge, StoredCallback, Subject, SubjectFilter, TenantId,
};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The connection that owns a session now.
pub(crate) struct Online {
    pub conn: u64,
    /// Cancelled by the connection once it has released the session.
    pub done: CancellationToken,
    /// The connection's inbox: asked to store its session record again, or
    /// told to leave ([`crate::mailbox::Stop`]: a takeover, here or on another
    /// node of the cluster).
    pub mailbox: Arc<Mailbox>,
}

/// A client id's entry in the registry.
#[derive(Default)]
pub(crate) struct Slot {
    /// A persistent session with no connection.
    pub record: Option<Box<SessionRecord>>,
    pub online: Option<Online>,
    /// A delayed will waiting to be published.
    pub will: Option<CancellationToken>,
    /// The offline session's expiry timer.
    pub expiry: Option<CancellationToken>,
}

/// One tenant's MQTT state.
pub(crate) struct Tenant {
    pub id: TenantId,
    /// The front-end's own engine client (wills, `$SYS`, session records offline).
    pub client: Arc<ClientRecord>,
    pub slots: Mutex<HashMap<String, Slot>>,
    /// Topic → retained message.
    pub retained: RwLock<BTreeMap<String, Retained>>,
    /// In a cluster: subject → when its retained message was cleared (ns), so
    /// that an older set from a peer does not bring it back (`cluster.rs`).
    pub tombstones: RwLock<HashMap<String, u64>>,
    /// Filters of persistent QoS 1/2 subscriptions: (client id, raw filter) → the
    /// subject filters it maps to (without the `$MQTT.msgs.` prefix).
    pub durable: RwLock<HashMap<(String, String), Vec<SubjectFilter>>>,
    /// Held while the front-end's stations are made again.
    pub repairing: Mutex<()>,
}

impl Tenant {
    /// Does a persistent session hold the shared subscription `raw`
    /// (`$share/<group>/<filter>`)? Then its share group has a queue.
    pub fn share_queued(&self, raw: &str) -> bool {
        self.durable.read().keys().any(|(_, r)| r == raw)
    }

    /// Does a persistent QoS 1/2 subscription want MQTT publishes on `subject`?
    pub fn durable_match(&self, subject: &Subject) -> bool {
        self.durable
            .read()
            .values()
            .any(|fs| fs.iter().any(|f| f.matches(subject)))
    }
}

/// Why an inbound publish was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The MQTT 5 reason code.
    pub code: u8,
    /// Why, for the log and the reason string.
    pub why: String,
    /// Not the message's fault (storage, a full disk, the cluster): a 3.1.1
    /// client, which cannot be told, is not acknowledged and sends it again.
    pub retry: bool,
}

/// What an inbound publish's storage came to: done, or why not.
pub(crate) type StoreResult = Result<(), Refusal>;
type OnDone = Box<dyn FnOnce(StoreResult) + Send>;

/// Joins several storage completions into one answer for an inbound publish.
pub(crate) struct AckJoin {
    remaining: AtomicUsize,
    error: Mutex<Option<Refusal>>,
    on_done: Mutex<Option<OnDone>>,
}

struct Part(Arc<AckJoin>);

impl Drop for Part {
    fn drop(&mut self) {
        self.0.finish_one();
    }
}

impl AckJoin {
    /// A join that calls `on_done` once every part (and the guard) completed.
    pub fn new(on_done: impl FnOnce(StoreResult) + Send + 'static) -> Arc<Self> {
        Arc::new(AckJoin {
            remaining: AtomicUsize::new(1),
            error: Mutex::new(None),
            on_done: Mutex::new(Some(Box::new(on_done))),
        })
    }

    /// A storage callback that is one part of the join. Dropped uncalled (nothing
    /// captured the message), it counts as done.
    pub fn part(self: &Arc<Self>) -> StoredCallback {
        self.remaining.fetch_add(1, Ordering::AcqRel);
        let part = Part(self.clone());
        Box::new(move |result| {
            if let Err(e) = result {
                let mut err = part.0.error.lock();
                if err.is_none() {
                    *err = Some(refusal_of(&e));
                }
            }
            drop(part);
        })
    }

    /// Releases the guard: the answer goes out once the parts are done.
    pub fn arm(self: &Arc<Self>) {
        self.finish_one();
    }

    fn finish_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(f) = self.on_done.lock().take()
        {
            let result = match self.error.lock().take() {
                Some(e) => Err(e),
                None => Ok(()),
            };
            f(result);
        }
    }
}

/// Why a publish was not stored, as MQTT says it.
pub(crate) fn refusal_of(e: &EngineError) -> Refusal {
    let code = reason_of(e);
    Refusal {
        code,
        why: e.to_string(),
        retry: code == 0x80 || matches!(e, EngineError::StorageFenced(_)),
    }
}

/// The MQTT 5 reason code for an engine refusal.
pub(crate) fn reason_of(e: &EngineError) -> u8 {
    match e {
        EngineError::MaxMessages
        | EngineError::MaxBytes
        | EngineError::MessageTooLarge
        | EngineError::TenantStorageFull { .. }
        | EngineError::StorageFenced(_) => 0x97,
        EngineError::AuthorizationViolation
        | EngineError::InternalSubject(_)
        | EngineError::InternalStation(_) => 0x87,
        EngineError::InvalidSubject(_) => 0x90,
        // Not stored for a reason that is not the message's (storage, or a
        // cluster node that holds the station did not answer): 0x80, which a
        // 3.1.1 client is never acknowledged for (it resends).
        EngineError::Storage(_)
        | EngineError::NodeUnreachable(_)
        | EngineError::StationElsewhere { .. }
        | EngineError::NoQuorum(_)
        | EngineError::ReplicasUnavailable(_)
        | EngineError::InsufficientResources(_)
        | EngineError::ShuttingDown => 0x80,
        EngineError::SchemaViolation(_) => 0x99,
        _ => 0x83,
    }
}

/// The MQTT front-end: shared by every connection.
pub struct MqttBroker {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) options: MqttOptions,
    tenants: Mutex<HashMap<TenantId, Arc<Tenant>>>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    next_conn: AtomicU64,
    /// Messages not delivered to an MQTT client because their subject has no MQTT
    /// topic (U+0000, invalid UTF-8, a wildcard character).
    pub(crate) undeliverable: AtomicU64,
    /// Messages discarded for one MQTT 5 client because the PUBLISH would exceed
    /// the Maximum Packet Size the client set (MQTT-3.1.2-25).
    pub(crate) too_large: AtomicU64,
    /// This node's name, in a cluster.
    pub(crate) node: Option<String>,
}

impl MqttBroker {
    /// Creates the front-end, loading the default tenant's sessions and retained
    /// messages if an earlier run left any.
    pub fn new(
        engine: Arc<dyn Engine>,
        options: MqttOptions,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, EngineError> {
        let node = engine.cluster().map(|c| c.node);
        let broker = Arc::new(MqttBroker {
            node,
            engine,
            options,
            tenants: Mutex::new(HashMap::new()),
            shutdown,
            tracker: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
            undeliverable: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
        });
        // MQTT state is made on first use, so a broker that never sees an MQTT client
        // has no `$MQTT_*` stations; state left by an earlier run is loaded now, so
        // offline sessions expire on time.
        let default = TenantId::default_tenant();
        if broker.engine.station_info(&default, session::SESS).is_ok() {
            match broker.tenant(&default) {
                Ok(_) => {}
                // In a cluster the session store may have no leader yet (its
                // replicas are starting too): loaded once it has one.
                Err(EngineError::ReplicasUnavailable(why)) if broker.node.is_some() => {
                    tracing::info!(%why, "MQTT state is loaded once the session store has a leader");
                    let weak = Arc::downgrade(&broker);
                    let shutdown = broker.shutdown.clone();
                    broker.tracker.spawn(async move {
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            }
                            let Some(broker) = weak.upgrade() else { return };
                            match broker.tenant(&TenantId::default_tenant()) {
                                Err(EngineError::ReplicasUnavailable(_)) => continue,
                                Err(e) => {
                                    tracing::error!(error = %e, "MQTT state not loaded");
                                    return;
                                }
                                Ok(_) => return,
                            }
                        }
                    });
                }
                Err(e) => return Err(e),
            }
        }
        crate::cluster::start(&broker)?;
        Ok(broker)
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A tenant's state if it was loaded (MQTT used here), without making it.
    pub(crate) fn loaded_tenant(&self, id: &TenantId) -> Option<Arc<Tenant>> {
        self.tenants.lock().get(id).cloned()
    }

    /// A tenant's state, loading it on first use.
    pub(crate) fn tenant(self: &Arc<Self>, id: &TenantId) -> Result<Arc<Tenant>, EngineError> {
        if let Some(t) = self.tenants.lock().get(id) {
            return Ok(t.clone());
        }
        session::ensure_stations(self.engine.as_ref(), id)?;
        let client = self.engine.connect(
            NewClient {
                protocol: Protocol::Mqtt,
                remote: SocketAddr::from(([0, 0, 0, 0], 0)),
            },
            id.clone(),
        )?;
        // The broker's own publisher ($SYS figures, wills): not a connection.
        client.set_kind(junction_api::ClientKind::Internal);
        client.set_identity(Some("junction-mqtt".to_owned()), None, None, None);
        let (retained, tombstones) = session::load_retained(self.engine.as_ref(), id);
        let records = session::load_records(self.engine.as_ref(), id);
        let tenant = Arc::new(Tenant {
            id: id.clone(),
            client,
            slots: Mutex::new(HashMap::new()),
            retained: RwLock::new(retained),
            tombstones: RwLock::new(tombstones),
            durable: RwLock::new(HashMap::new()),
            repairing: Mutex::new(()),
        });
        let mut tenants = self.tenants.lock();
        if let Some(t) = tenants.get(id) {
            return Ok(t.clone());
        }
        tenants.insert(id.clone(), tenant.clone());
        drop(tenants);
        tracing::info!(
            tenant = %id.0,
            sessions = records.len(),
            retained = tenant.retained.read().len(),
            "MQTT state loaded"
        );
        let now = crate::channel::now_ms();
        for mut record in records {
            for (raw, opts) in &record.subs {
                if opts.qos > 0
                    && let Ok(m) = crate::topic::map_filter(raw)
                {
                    tenant
                        .durable
                        .write()
                        .insert((record.client_id.clone(), raw.clone()), m.subjects.clone());
                }
            }
            // In a cluster every node knows every session's persistent
            // subscriptions (so a publish on any node is queued for them), but
            // only the session's own node runs its expiry.
            if self.node.is_some() && record.node != self.node {
                continue;
            }
            if record.disconnected_ms == 0 {
                // The broker stopped while this session was connected.
                record.disconnected_ms = now;
                record.crashed = true;
            }
            let id = record.client_id.clone();
            let expiry = record.expiry;
            let left = remaining_expiry(expiry, record.disconnected_ms, now);
            let will = record.will.clone();
            let mut slots = tenant.slots.lock();
            let slot = slots.entry(id.clone()).or_default();
            slot.record = Some(Box::new(record));
            drop(slots);
            if let Some(left) = left {
                self.schedule_expiry(&tenant, &id, left);
            }
            // A delayed will pending when the broker stopped: published when
            // due (at once if it is past, or if the session ended meanwhile).
            if let Some(w) = will {
                self.schedule_stored_will(&tenant, &id, *w);
            }
        }
        Ok(tenant)
    }

    /// A tenant's state for a client that is connecting: in a cluster the
    /// front-end's cluster-wide stations may still be being defined (the
    /// cluster just formed), which is waited for, up to 10 s.
    pub(crate) async fn tenant_ready(
        self: &Arc<Self>,
        id: &TenantId,
    ) -> Result<Arc<Tenant>, EngineError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.tenant(id) {
                Err(EngineError::ReplicasUnavailable(why))
                    if self.node.is_some() && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(%why, "MQTT session store not ready yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                r => return r,
            }
        }
    }

    /// Every tenant loaded so far.
    pub(crate) fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.tenants.lock().values().cloned().collect()
    }

    /// Runs one connection (TCP or WebSocket) to the end.
    pub async fn handle<S>(self: &Arc<Self>, stream: S, remote: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        crate::connection::run(self.clone(), stream, remote, None).await;
    }

    /// Runs one TLS connection to the end; `certificate` is the client's
    /// verified certificate (DER), if it presented one.
    pub async fn handle_tls<S>(
        self: &Arc<Self>,
        stream: S,
        remote: SocketAddr,
        certificate: Option<Vec<u8>>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        crate::connection::run(self.clone(), stream, remote, certificate).await;
    }

    /// Starts an offline session's expiry timer.
    pub(crate) fn schedule_expiry(
        self: &Arc<Self>,
        tenant: &Arc<Tenant>,
        id: &str,
        after: Duration,
    ) {
        let token = CancellationToken::new();
        {
            let mut slots = tenant.slots.lock();
            let Some(slot) = slots.get_mut(id) else {
                return;
            };
            if let Some(old) = slot.expiry.replace(token.clone()) {
                old.cancel();
            }
        }
        let broker = self.clone();
        let tenant = tenant.clone();
        let id = id.to_owned();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = broker.shutdown.cancelled() => {}
                _ = tokio::time::sleep(after) => {
                    let record = {
                        let mut slots = tenant.slots.lock();
                        match slots.get_mut(&id) {
                            Some(slot) if slot.online.is_none() && slot.expiry.as_ref().is_some_and(|t| !t.is_cancelled()) => {
                                slot.expiry = None;
                                let r = slot.record.take().map(|r| *r);
                                if slot.will.is_none() {
                                    slots.remove(&id);
                                }
                                r
                            }
                            _ => None,
                        }
                    };
                    if let Some(record) = record {
                        tracing::info!(client_id = %id, "MQTT session expired");
                        broker.discard_session(&tenant, &record);
                    }
                }
            }
        });
    }

    /// Deletes a session's groups and record.
    pub(crate) fn discard_session(&self, tenant: &Tenant, record: &SessionRecord) {
        for raw in record.subs.keys() {
            tenant
                .durable
                .write()
                .remove(&(record.client_id.clone(), raw.clone()));
            self.announce_durable(tenant, &record.client_id, raw, false);
            // Whatever the subscription's QoS now: a group left by an earlier QoS 1/2
            // subscription to the same filter goes too. A share group's queue
            // goes with its last persistent member.
            if !raw.starts_with("$share/") || !tenant.share_queued(raw) {
                let group = crate::channel::group_name(&record.client_id, raw);
                let _ = self.engine.delete_internal_group(&tenant.id, MSGS, &group);
            }
        }
        session::delete_record(self.engine.as_ref(), &tenant.id, &record.client_id);
    }

    /// Publishes a will, now or after its delay (cancelled if the client comes back).
    pub(crate) fn schedule_will(
        self: &Arc<Self>,
        tenant: &Arc<Tenant>,
        client_id: &str,
        will: Will,
        delay: Duration,
    ) {
        if delay.is_zero() {
            self.publish_will(tenant, client_id, will);
            return;
        }
        self.will_after(
            tenant,
            client_id,
            delay,
            Box::new(move |broker: &MqttBroker, tenant: &Tenant, id: &str| {
                broker.publish_will(tenant, id, will)
            }),
        );
    }

    /// Publishes a delayed will kept in a session record (loaded after a
    /// restart) when it is due.
    fn schedule_stored_will(
        self: &Arc<Self>,
        tenant: &Arc<Tenant>,
        client_id: &str,
        w: StoredWill,
    ) {
        let delay = Duration::from_millis(w.due_ms.saturating_sub(crate::channel::now_ms()));
        self.will_after(
            tenant,
            client_id,
            delay,
            Box::new(move |broker: &MqttBroker, tenant: &Tenant, id: &str| {
                let Ok(subject) = crate::topic::topic_to_subject(&w.topic) else {
                    tracing::warn!(client_id = %id, topic = %w.topic, "stored will not published");
                    return;
                };
                let mut headers = Headers::new();
                for (k, v) in w.headers {
                    headers.append(k, v);
                }
                use base64::Engine as _;
                let payload = base64::engine::general_purpose::STANDARD
                    .decode(&w.payload)
                    .unwrap_or_default();
                let message = Message {
                    subject,
                    reply: w.reply.and_then(|r| Subject::new(Bytes::from(r)).ok()),
                    headers: Some(headers),
                    payload: Bytes::from(payload),
                };
                tracing::debug!(client_id = %id, topic = %w.topic, "publishing a will kept across a restart");
                broker.route(tenant, &tenant.client, message, w.qos, w.retain, &w.topic, None);
            }),
        );
    }

    /// Runs `publish` after `delay` unless the client comes back first, then
    /// takes the will out of the offline session's record.
    fn will_after(
        self: &Arc<Self>,
        tenant: &Arc<Tenant>,
        client_id: &str,
        delay: Duration,
        publish: PublishWill,
    ) {
        let token = CancellationToken::new();
        {
            let mut slots = tenant.slots.lock();
            let slot = slots.entry(client_id.to_owned()).or_default();
            if let Some(old) = slot.will.replace(token.clone()) {
                old.cancel();
            }
        }
        let broker = self.clone();
        let tenant = tenant.clone();
        let id = client_id.to_owned();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = broker.shutdown.cancelled() => {}
                _ = tokio::time::sleep(delay) => {
                    let cleared = {
                        let mut slots = tenant.slots.lock();
                        let mut cleared = None;
                        if let Some(slot) = slots.get_mut(&id) {
                            slot.will = None;
                            if slot.online.is_none()
                                && let Some(r) = slot.record.as_mut()
                                && r.will.take().is_some()
                            {
                                cleared = Some(r.clone());
                            }
                            if slot.online.is_none() && slot.record.is_none() {
                                slots.remove(&id);
                            }
                        }
                        cleared
                    };
                    publish(&broker, &tenant, &id);
                    // The record without the will, unless the session ends now
                    // anyway (its expiry deletes the record; a write racing it
                    // would bring it back).
                    if let Some(r) = cleared
                        && remaining_expiry(r.expiry, r.disconnected_ms, crate::channel::now_ms())
                            .is_some_and(|left| left > WILL_CLEAR_MARGIN)
                    {
                        broker.store_record(&tenant, &tenant.client, &r, None);
                    }
                }
            }
        });
    }

    fn publish_will(&self, tenant: &Tenant, client_id: &str, will: Will) {
        let subject = match crate::topic::topic_to_subject(&will.topic) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%client_id, topic = %will.topic, error = %e, "will not published");
                return;
            }
        };
        tracing::debug!(%client_id, topic = %will.topic, "publishing will");
        let qos = crate::frame::qos_num(will.qos);
        let message = crate::channel::build_message(
            subject,
            &will.topic,
            will.payload,
            qos,
            will.retain,
            &will.properties,
            client_id,
        );
        self.route(
            tenant,
            &tenant.client,
            message,
            qos,
            will.retain,
            &will.topic,
            None,
        );
    }

    /// The publish pipeline shared by clients and wills: retained store, live
    /// fan-out and station capture, and the copy for persistent sessions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn route(
        &self,
        tenant: &Tenant,
        from: &ClientRecord,
        mut message: Message,
        qos: u8,
        retain: bool,
        topic: &str,
        join: Option<&Arc<AckJoin>>,
    ) {
        let part = |j: Option<&Arc<AckJoin>>| j.map(AckJoin::part);
        // What the publisher asks of the station that stores it, from its user
        // properties (`msg-id` or `Nats-Msg-Id`, and the `Nats-Expected-*`
        // convention). The front-end's own copies of the same publish (retained,
        // queued for persistent sessions) are duplicates when it is, so they get
        // its de-duplication id; the preconditions are about the producer's
        // station only.
        let options = PublishOptions::from_headers(message.headers.as_ref());
        let copies = options.dedup_only();
        let durable = qos > 0 && tenant.durable_match(&message.subject);
        if durable {
            message
                .headers
                .get_or_insert_with(Default::default)
                .insert(H_MQTT_STORED, "1");
        }
        if retain {
            let stored_subject =
                Subject::from_trusted(Bytes::from(format!("{RMSGS_PREFIX}{}", message.subject)));
            // In a cluster, retained messages are kept on every node: stamped with
            // when they were set or cleared, and sent to the peers (`cluster.rs`).
            let clustered = self.engine.cluster().is_some();
            let at_ns = if clustered {
                crate::cluster::now_ns()
            } else {
                0
            };
            if message.payload.is_empty() && clustered {
                let key = message.subject.to_str_lossy().into_owned();
                tenant.retained.write().remove(topic);
                tenant.tombstones.write().insert(key, at_ns);
                let record = crate::cluster::tombstone(stored_subject, at_ns);
                self.store_internal(tenant, from, &record, &copies, part(join));
                self.announce_retained(tenant, &record);
            } else if message.payload.is_empty() {
                let cleared = tenant.retained.write().remove(topic);
                match self.engine.purge_internal_station(
                    &tenant.id,
                    RMSGS,
                    Purge {
                        filter: Some(stored_subject.to_string()),
                        ..Purge::default()
                    },
                ) {
                    Ok(_) => {}
                    // Nothing is stored, so nothing comes back after a restart.
                    Err(EngineError::StationNotFound) => {
                        tracing::error!(
                            station = RMSGS,
                            "MQTT station missing: making the front-end's stations again"
                        );
                        self.repair(tenant);
                    }
                    Err(e) => {
                        tracing::error!(%topic, error = %e, "cannot clear retained message");
                        // Still stored, so still retained.
                        if let Some(r) = cleared {
                            tenant.retained.write().insert(topic.to_owned(), r);
                        }
                        if let Some(part) = part(join) {
                            part(Err(EngineError::Storage(format!(
                                "retained message not cleared: {e}"
                            ))));
                        }
                    }
                }
            } else {
                if clustered {
                    tenant
                        .tombstones
                        .write()
                        .remove(&*message.subject.to_str_lossy());
                }
                tenant.retained.write().insert(
                    topic.to_owned(),
                    Retained {
                        subject: message.subject.clone(),
                        payload: message.payload.clone(),
                        qos,
                        headers: message.headers.clone(),
                        reply: message.reply.clone(),
                        volatile: false,
                        at_ns,
                    },
                );
                let mut copy = message.clone();
                copy.subject = stored_subject;
                copy.reply = None;
                let h = copy.headers.get_or_insert_with(Default::default);
                h.insert(H_MQTT_QOS, qos.to_string());
                h.insert(H_MQTT_RETAIN, "1");
                if clustered {
                    h.insert(crate::session::H_MQTT_AT, at_ns.to_string());
                }
                self.store_internal(tenant, from, &copy, &copies, part(join));
                if clustered {
                    self.announce_retained(tenant, &copy);
                }
            }
        }
        self.engine
            .publish_stored(from, &message, &options, part(join));
        if durable {
            let mut copy = message;
            copy.subject =
                Subject::from_trusted(Bytes::from(format!("{MSGS_PREFIX}{}", copy.subject)));
            self.store_internal(tenant, from, &copy, &copies, part(join));
        }
    }
}

impl MqttBroker {
    /// Writes a session record; `done` gets the outcome once it is durable (or
    /// refused). See [`Self::store_internal`].
    pub(crate) fn store_record(
        &self,
        tenant: &Tenant,
        from: &ClientRecord,
        record: &SessionRecord,
        done: Option<StoredCallback>,
    ) {
        self.store_internal(
            tenant,
            from,
            &session::record_message(record),
            &PublishOptions::NONE,
            done,
        );
    }

    /// Stores a message in one of the front-end's own stations (`$MQTT_*`). When no
    /// station captured it (the station was deleted), the stations are made again
    /// ([`Self::repair`]) and it is stored once more; if that fails too, `done` gets
    /// an error, so nothing is acknowledged that is not stored.
    pub(crate) fn store_internal(
        &self,
        tenant: &Tenant,
        from: &ClientRecord,
        message: &Message,
        options: &PublishOptions,
        done: Option<StoredCallback>,
    ) {
        let done = Arc::new(Mutex::new(done));
        let forward = |slot: &Arc<Mutex<Option<StoredCallback>>>| -> StoredCallback {
            let slot = slot.clone();
            let subject = message.subject.clone();
            Box::new(move |result| {
                let f = slot.lock().take();
                if let Some(f) = f {
                    // Whatever the store said, for the client it is the broker's own
                    // state that failed (0x80), not a limit of theirs.
                    f(result.map_err(|e| {
                        tracing::error!(%subject, error = %e, "MQTT state not stored");
                        match e {
                            EngineError::Storage(_) => e,
                            e => EngineError::Storage(format!("MQTT state not stored: {e}")),
                        }
                    }));
                }
            })
        };
        let outcome = self
            .engine
            .publish_stored(from, message, options, Some(forward(&done)));
        if outcome.captured {
            return;
        }
        if let Some(e) = outcome.refused {
            // Refused as a whole (not for want of a station): nothing to make again.
            let f = done.lock().take();
            if let Some(f) = f {
                f(Err(EngineError::Storage(format!(
                    "MQTT state not stored: {e}"
                ))));
            }
            return;
        }
        tracing::error!(subject = %message.subject, "MQTT station missing: making the front-end's stations again");
        if self.repair(tenant)
            && self
                .engine
                .publish_stored(from, message, options, Some(forward(&done)))
                .captured
        {
            return;
        }
        let why = format!("no station stores {}", message.subject);
        tracing::error!("MQTT state not stored: {why}");
        let f = done.lock().take();
        if let Some(f) = f {
            f(Err(EngineError::Storage(why)));
        }
    }

    /// Makes the front-end's stations again after one went missing (deleted behind
    /// the front-end's back), with what they must hold: the consumer groups of
    /// persistent subscriptions, the records of offline sessions, and (through
    /// their connections) those of connected ones. Messages that were queued in a
    /// deleted `$MQTT_msgs` are gone; nothing acknowledged from now on is.
    pub(crate) fn repair(&self, tenant: &Tenant) -> bool {
        let _one_at_a_time = tenant.repairing.lock();
        if let Err(e) = session::ensure_stations(self.engine.as_ref(), &tenant.id) {
            tracing::error!(tenant = %tenant.id.0, error = %e, "cannot make the MQTT front-end's stations again");
            return false;
        }
        let durable: Vec<((String, String), Vec<SubjectFilter>)> = tenant
            .durable
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ((client_id, raw), subjects) in durable {
            let config = crate::channel::durable_group(&client_id, &raw, &subjects);
            match self.engine.create_internal_group(&tenant.id, MSGS, config) {
                Ok(_) | Err(EngineError::GroupExists) => {}
                Err(e) => {
                    tracing::error!(%client_id, filter = %raw, error = %e, "cannot make a persistent subscription's group again");
                }
            }
        }
        let (records, online): (Vec<SessionRecord>, Vec<Arc<Mailbox>>) = {
            let slots = tenant.slots.lock();
            (
                slots
                    .values()
                    .filter_map(|s| s.record.as_deref().cloned())
                    .collect(),
                slots
                    .values()
                    .filter_map(|s| s.online.as_ref().map(|o| o.mailbox.clone()))
                    .collect(),
            )
        };
        for record in &records {
            let message = session::record_message(record);
            if !self
                .engine
                .publish_stored(&tenant.client, &message, &PublishOptions::NONE, None)
                .captured
            {
                tracing::error!(client_id = %record.client_id, "MQTT session record not stored again");
            }
        }
        for mailbox in online {
            mailbox.push(Event::StoreRecord);
        }
        tracing::warn!(tenant = %tenant.id.0, offline_sessions = records.len(), "MQTT front-end's stations made again");
        true
    }
}

/// How long an offline session has left; `None`: it never expires.
pub(crate) fn remaining_expiry(expiry: u32, disconnected_ms: u64, now_ms: u64) -> Option<Duration> {
    if expiry == u32::MAX {
        return None;
    }
    let total = u64::from(expiry) * 1000;
    let gone = now_ms.saturating_sub(disconnected_ms);
    Some(Duration::from_millis(total.saturating_sub(gone)))
}

/// MQTT over TLS on a listener (8883): the server configuration and the time a
/// handshake may take.
#[derive(Clone)]
pub struct MqttTls {
    /// rustls's server configuration (certificate, client verification).
    pub config: Arc<tokio_rustls::rustls::ServerConfig>,
    /// Time a TLS handshake may take.
    pub timeout: Duration,
}

/// Accepts MQTT clients on `listener` until `broker`'s shutdown token is cancelled,
/// then waits (up to the drain timeout) for connections to close.
pub async fn serve(listener: TcpListener, broker: Arc<MqttBroker>) {
    serve_listeners(vec![(listener, None)], broker).await;
}

/// Accepts MQTT clients on each listener (plain, or TLS with its
/// [`MqttTls`]) until `broker`'s shutdown token is cancelled, then waits (up to
/// the drain timeout) for connections to close.
pub async fn serve_listeners(
    listeners: Vec<(TcpListener, Option<MqttTls>)>,
    broker: Arc<MqttBroker>,
) {
    if !broker.options.sys_interval.is_zero() {
        let b = broker.clone();
        broker.tracker.spawn(crate::sys::run(b));
    }
    let tracker = TaskTracker::new();
    // One connection cap for the listeners together.
    let cap = broker.options.max_connections;
    let slots = (cap > 0).then(|| Arc::new(tokio::sync::Semaphore::new(cap)));
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(listener, tls)| {
            accept_loop(
                listener,
                tls,
                broker.clone(),
                tracker.clone(),
                slots.clone(),
            )
        })
        .collect();
    futures::future::join_all(loops).await;
    tracker.close();
    broker.tracker.close();
    let drain = broker.options.drain_timeout;
    if tokio::time::timeout(drain, async {
        tracker.wait().await;
        broker.tracker.wait().await;
    })
    .await
    .is_err()
    {
        tracing::warn!("MQTT connections still open after the drain timeout");
    }
    for t in broker.tenants() {
        broker.engine.disconnect(t.client.id);
    }
}

/// One listener's accept loop; its connections run on `tracker`.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<MqttTls>,
    broker: Arc<MqttBroker>,
    tracker: TaskTracker,
    slots: Option<Arc<tokio::sync::Semaphore>>,
) {
    if let Ok(addr) = listener.local_addr() {
        let how = if tls.is_some() { " over TLS" } else { "" };
        tracing::info!("Listening for MQTT clients{how} on {addr}");
    }
    let cap = broker.options.max_connections;
    let acceptor = tls
        .as_ref()
        .map(|t| (tokio_rustls::TlsAcceptor::from(t.config.clone()), t.timeout));
    // Refusals being answered at once; beyond that a refused socket is just closed.
    let refusals = Arc::new(tokio::sync::Semaphore::new(64));
    let (mut refused, mut last_warn) = (0u64, None::<std::time::Instant>);
    let mut backoff = Duration::ZERO;
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    backoff = Duration::ZERO;
                    let _ = stream.set_nodelay(true);
                    let slot = match &slots {
                        None => None,
                        Some(s) => match s.clone().try_acquire_owned() {
                            Ok(p) => Some(p),
                            Err(_) => {
                                refused += 1;
                                if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                                    tracing::warn!(
                                        %remote, refused,
                                        "MQTT connection refused: the listener is at its limit of {cap} connections"
                                    );
                                    (refused, last_warn) = (0, Some(std::time::Instant::now()));
                                }
                                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                                    let max = broker.options.max_packet_size;
                                    tokio::spawn(async move {
                                        crate::refuse::refuse(stream, remote, max).await;
                                        drop(permit);
                                    });
                                }
                                continue;
                            }
                        },
                    };
                    let b = broker.clone();
                    let Some((acceptor, limit)) = acceptor.clone() else {
                        // A task of its own type: the TLS one's larger state
                        // does not size it (docs/mqtt.md, idle connections).
                        // A combinator, not an `async` block: awaited there, the
                        // connection's future would be held twice.
                        let connection = crate::connection::run(b, stream, remote, None);
                        tracker.spawn(futures::FutureExt::map(connection, move |()| drop(slot)));
                        continue;
                    };
                    tracker.spawn(async move {
                        match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let certificate = tls
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .map(|c| c.as_ref().to_vec());
                                b.handle_tls(tls, remote, certificate).await
                            }
                            Ok(Err(e)) => {
                                tracing::info!(%remote, error = %e, "MQTT TLS handshake failed");
                            }
                            Err(_) => tracing::info!(%remote, "MQTT TLS handshake timed out"),
                        }
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of file descriptors (EMFILE) and the like: back off, 5 ms
                    // doubling to 1 s, so the loop never spins.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    tracing::warn!(error = %e, retry_in = ?backoff, "MQTT accept failed");
                    tokio::select! {
                        _ = broker.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }
}

/// Header value helper.
pub(crate) fn header_qos(message: &Message) -> u8 {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(H_MQTT_QOS))
        .and_then(|q| q.parse().ok())
        .unwrap_or(0)
}

/// Publishes a will (for a tenant and a client id) when its delay is over.
type PublishWill = Box<dyn FnOnce(&MqttBroker, &Tenant, &str) + Send>;

/// A session's expiry closer than this when its delayed will is published: the
/// record is not written again without the will (the expiry deletes it).
const WILL_CLEAR_MARGIN: Duration = Duration::from_secs(2);

/// A delayed will as the session record keeps it: the message it publishes
/// (built as it will be published), due at `due_ms`.
pub(crate) fn stored_will(client_id: &str, w: &Will, due_ms: u64) -> Option<StoredWill> {
    let subject = crate::topic::topic_to_subject(&w.topic).ok()?;
    let qos = crate::frame::qos_num(w.qos);
    let m = crate::channel::build_message(
        subject,
        &w.topic,
        w.payload.clone(),
        qos,
        w.retain,
        &w.properties,
        client_id,
    );
    use base64::Engine as _;
    Some(StoredWill {
        topic: w.topic.clone(),
        qos,
        retain: w.retain,
        payload: base64::engine::general_purpose::STANDARD.encode(&m.payload),
        headers: m
            .headers
            .as_ref()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        reply: m
            .reply
            .as_ref()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned()),
        due_ms,
    })
}
