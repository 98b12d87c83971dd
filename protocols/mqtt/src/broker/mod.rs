//! Broker-wide MQTT state: the per-tenant registry of sessions (takeover),
//! retained messages and durable interest. The rest is split by concern:
//! `sessions` (expiry and wills), `retained` (retained messages), `publish`
//! (the publish pipeline and the front-end's own stores) and `listen` (the
//! listeners).

mod listen;
mod publish;
mod retained;
mod sessions;

pub use listen::{MqttTls, serve, serve_listeners};
pub(crate) use publish::{AckJoin, Refusal, StoreResult, header_qos};
pub(crate) use sessions::{remaining_expiry, stored_will};

use crate::MqttOptions;
use crate::mailbox::Mailbox;
use crate::session::{self, Retained, SessionRecord};
use junction_api::{
    ClientRecord, Engine, EngineError, NewClient, Protocol, Subject, SubjectFilter, TenantId,
};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
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
}
