//! The system events: each tenant's bounded system station `$sys_events`
//! ([`EVENTS_STATION`]), one JSON message per event on `$sys.events.<kind>`.
//!
//! Recording never blocks: [`EventLog::record`] puts the event in a bounded
//! channel (a full channel drops it and counts it,
//! `junction_events_dropped_total`), and one writer thread stores it. The
//! writer publishes it as the engine's own message, so the station captures it
//! and live subscribers of `$sys.events.>` (MQTT `$sys/events/#`) get it too.
//! A station is read by every protocol; `/v1/events` and the webhooks read
//! it back with [`StationEngine::read_events`].
//!
//! Connects and disconnects are coalesced: the first [`INDIVIDUAL`] of a
//! tenant in a [`WINDOW`] are stored one by one, the rest as one event that
//! counts them. They are stored at the end of a short settle time, so that a
//! NATS client's name (sent after it connected) is on its `client_connected`.
//! The writer also mirrors them to nats-server's `$SYS.ACCOUNT.<tenant>.CONNECT`
//! and `DISCONNECT` advisories, and alarms to MQTT `$SYS/broker/alarms/activate`
//! and `deactivate` (EMQX's shape), in the system tenant.

use super::StationEngine;
use bytes::Bytes;
use junction_api::{
    AlarmState, ClientRecord, EVENTS_STATION, EVENTS_SUBJECT_PREFIX, EngineError, EventFilter,
    Message, StationConfig, Subject, SystemEvent, SystemEventKind, TenantId,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// How many events may wait for the writer; past it they are dropped (counted).
pub(crate) const QUEUE: usize = 16_384;
/// The events station keeps about this many events...
pub(crate) const KEEP_EVENTS: i64 = 100_000;
/// ... or these many days of them.
pub(crate) const KEEP_DAYS: u64 = 7;
/// Connect or disconnect events of one tenant stored one by one per window.
pub(crate) const INDIVIDUAL: usize = 20;
/// The coalescing window.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// How long a connect or disconnect waits before it is stored (the client's
/// name arrives after it connected).
const SETTLE: Duration = Duration::from_millis(200);
/// The most stored events one read walks through.
const READ_WALK: u64 = 50_000;

struct Pending {
    tenant: TenantId,
    event: SystemEvent,
    /// The client, kept so that a name it announces after connecting is shown on
    /// its `client_connected` event too.
    client: Option<Arc<ClientRecord>>,
    at: Instant,
}

enum Job {
    Event(Box<Pending>),
    /// Store everything waiting, then answer.
    Flush(SyncSender<()>),
}

/// What the writer and the engine share: once closed (the broker stops), the
/// writer no longer takes hold of the engine, so the last handle to it is
/// always the broker's own (its store closes when the broker says so).
#[derive(Default)]
struct Gate {
    closed: std::sync::atomic::AtomicBool,
    /// Held by the writer while it holds the engine.
    writing: Mutex<()>,
}

/// The recording side, held by the engine.
pub(crate) struct EventLog {
    gate: Arc<Gate>,
    tx: SyncSender<Job>,
    rx: Mutex<Option<Receiver<Job>>>,
    node: String,
    dropped: AtomicU64,
    recorded: AtomicU64,
}

/// What an event is about, besides its kind and text.
#[derive(Default)]
pub(crate) struct About<'a> {
    pub tenant: Option<&'a TenantId>,
    pub client: Option<&'a ClientRecord>,
    /// The client's shared record, when the caller has it (see [`Pending::client`]).
    pub keep: Option<Arc<ClientRecord>>,
    pub station: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub details: Option<serde_json::Value>,
    pub alarm: Option<AlarmState>,
}

impl EventLog {
    /// A log whose events name `node` as their recorder. Nothing is stored
    /// until [`StationEngine::start_event_writer`] runs.
    pub fn new(node: &str) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        EventLog {
            gate: Arc::default(),
            tx,
            rx: Mutex::new(Some(rx)),
            node: node.to_string(),
            dropped: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
        }
    }

    /// Queues an event for its station; never blocks (a full queue drops it).
    pub fn record(&self, kind: SystemEventKind, about: About<'_>, message: String) {
        let client = about.client;
        let tenant = about
            .tenant
            .or(client.map(|c| c.tenant()))
            .cloned()
            .unwrap_or_default();
        let mut event = SystemEvent::new(kind, message);
        event.tenant = tenant.0.to_string();
        event.protocol = client.map(|c| c.protocol);
        event.client_id = client.map(|c| c.id);
        event.client_name = client.and_then(|c| c.name()).filter(|n| !n.is_empty());
        event.station = about.station.map(str::to_string);
        event.subject = about.subject.map(str::to_string);
        event.details = about.details.unwrap_or_default();
        event.alarm = about.alarm;
        event.node = self.node.clone();
        let job = Job::Event(Box::new(Pending {
            tenant,
            event,
            client: about.keep,
            at: Instant::now(),
        }));
        match self.tx.try_send(job) {
            Ok(()) => {
                self.recorded.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                if self
                    .dropped
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(1000)
                {
                    tracing::warn!(
                        "system event dropped: the event writer is behind (junction_events_dropped_total counts them)"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events queued for storing.
    pub fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Stops storing: from now on the writer drops what it gets. Waits for
    /// an event being stored.
    pub fn close(&self) {
        self.gate.closed.store(true, Ordering::Release);
        drop(self.gate.writing.lock());
    }

    /// Waits (at most `within`) until every event recorded so far is stored.
    pub fn flush(&self, within: Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.tx.try_send(Job::Flush(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(within).is_ok()
    }
}

/// The configuration of a tenant's events station.
pub(crate) fn events_station_config() -> StationConfig {
    StationConfig {
        name: EVENTS_STATION.to_string(),
        description: Some("system events (written by the broker; read-only)".into()),
        subjects: vec![format!("{EVENTS_SUBJECT_PREFIX}.>")],
        max_msgs: KEEP_EVENTS,
        max_age: Duration::from_secs(KEEP_DAYS * 24 * 3600),
        // Events a webhook gave up on are kept beside it ($dls_$sys_events).
        dead_letter: junction_api::DeadLetterPolicy {
            terminated: true,
            max_deliveries: true,
            ..junction_api::DeadLetterPolicy::default()
        },
        ..StationConfig::default()
    }
}

/// Coalescing of one tenant's connects or disconnects.
#[derive(Default)]
struct Flood {
    window_start: Option<Instant>,
    stored: usize,
    /// Held back in this window: how many, and a few client names or ids.
    held: u64,
    sample: Vec<String>,
}

/// The writer's state.
struct Writer {
    engine: std::sync::Weak<StationEngine>,
    /// Answered once the last event stored is durable (and readable).
    last_stored: Option<Receiver<()>>,
    gate: Arc<Gate>,
    node: String,
    /// Connects and disconnects settling (see [`SETTLE`]).
    settling: Vec<Pending>,
    floods: HashMap<(TenantId, SystemEventKind), Flood>,
}

fn is_flood_kind(kind: SystemEventKind) -> bool {
    matches!(
        kind,
        SystemEventKind::ClientConnected | SystemEventKind::ClientDisconnected
    )
}

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
        loop {
            let wait = self.settling.first().map_or(Duration::from_secs(1), |p| {
                SETTLE.saturating_sub(p.at.elapsed())
            });
            match rx.recv_timeout(wait) {
                Ok(Job::Event(p)) => {
                    if is_flood_kind(p.event.kind) {
                        self.settling.push(*p);
                    } else {
                        // Stored in the order they happened: the connects
                        // still settling go first (a client's name came with
                        // its CONNECT, before anything it did).
                        self.settle(true);
                        self.store(*p);
                    }
                }
                Ok(Job::Flush(done)) => {
                    self.settle(true);
                    self.close_windows(true);
                    // Readable once stored: wait for the last append's answer.
                    if let Some(stored) = self.last_stored.take() {
                        let _ = stored.recv_timeout(Duration::from_secs(5));
                    }
                    let _ = done.send(());
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.settle(true);
                    self.close_windows(true);
                    return;
                }
            }
            self.settle(false);
            self.close_windows(false);
        }
    }

    /// Stores the connects and disconnects that have settled (all of them
    /// with `all`), coalescing floods.
    fn settle(&mut self, all: bool) {
        while let Some(p) = self.settling.first() {
            if !all && p.at.elapsed() < SETTLE {
                return;
            }
            let mut p = self.settling.remove(0);
            if p.event.client_name.is_none() {
                p.event.client_name = p
                    .client
                    .as_ref()
                    .and_then(|c| c.name())
                    .filter(|n| !n.is_empty());
            }
            let key = (p.tenant.clone(), p.event.kind);
            let flood = self.floods.entry(key).or_default();
            let now = Instant::now();
            if flood.window_start.is_none_or(|s| now - s >= WINDOW) && flood.held == 0 {
                flood.window_start = Some(now);
                flood.stored = 0;
            }
            if flood.stored < INDIVIDUAL {
                flood.stored += 1;
                self.mirror_connection(&p);
                self.store(p);
            } else {
                flood.held += 1;
                if flood.sample.len() < 10 {
                    flood
                        .sample
                        .push(p.event.client_name.clone().unwrap_or_else(|| {
                            p.event.client_id.map_or(String::new(), |c| c.0.to_string())
                        }));
                }
                self.mirror_connection(&p);
            }
        }
    }

    /// Ends the coalescing windows that are over (all with `all`): one event
    /// counts what each held back.
    fn close_windows(&mut self, all: bool) {
        let now = Instant::now();
        let mut summaries = Vec::new();
        self.floods.retain(|(tenant, kind), f| {
            let over = f.window_start.is_none_or(|s| now - s >= WINDOW);
            if !(over || all) {
                return true;
            }
            if f.held > 0 {
                summaries.push((tenant.clone(), *kind, f.held, std::mem::take(&mut f.sample)));
            }
            false
        });
        for (tenant, kind, held, sample) in summaries {
            let verb = if kind == SystemEventKind::ClientConnected {
                "connected"
            } else {
                "disconnected"
            };
            let mut event = SystemEvent::new(
                kind,
                format!(
                    "{held} more clients {verb} within {} s (coalesced; some: {})",
                    WINDOW.as_secs(),
                    sample.join(", ")
                ),
            );
            event.tenant = tenant.0.to_string();
            event.details = serde_json::json!({"coalesced": held, "sample": sample});
            event.node = self.node.clone();
            self.store(Pending {
                tenant,
                event,
                client: None,
                at: Instant::now(),
            });
        }
    }

    /// Stores one event in its tenant's station (made when missing) and tells
    /// live subscribers of the `$sys.events` space.
    fn store(&mut self, p: Pending) {
        let _writing = self.gate.writing.lock();
        if self.gate.closed.load(Ordering::Acquire) {
            return;
        }
        let Some(engine) = self.engine.upgrade() else {
            return;
        };
        let station = match engine.events_station(&p.tenant) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(tenant = %p.tenant.0, error = %e, "system events station unavailable; event not stored: {}", p.event.message);
                return;
            }
        };
        let subject = Subject::from_trusted(Bytes::from(format!(
            "{EVENTS_SUBJECT_PREFIX}.{}",
            p.event.kind.as_str()
        )));
        let Ok(json) = serde_json::to_vec(&p.event.to_json()) else {
            return;
        };
        let message = Message::new(subject, Bytes::from(json));
        let kind = p.event.kind.as_str();
        let (stored_tx, stored_rx) = std::sync::mpsc::sync_channel(1);
        station.append(
            &message,
            &junction_api::PublishOptions::NONE,
            Bytes::new(),
            Some(Box::new(move |r| {
                if let Err(e) = &r {
                    tracing::warn!(kind, error = %e, "system event not stored");
                }
                let _ = stored_tx.send(());
            })),
        );
        // Appends are answered in order: the last one answered means all are.
        self.last_stored = Some(stored_rx);
        engine.publish_feed(&p.tenant, &message);
        if let Some(alarm) = &p.event.alarm {
            engine.mirror_alarm(alarm, &p.event);
        }
    }

    fn mirror_connection(&self, p: &Pending) {
        let _writing = self.gate.writing.lock();
        if self.gate.closed.load(Ordering::Acquire) {
            return;
        }
        if let (Some(engine), Some(client)) = (self.engine.upgrade(), &p.client) {
            engine.mirror_connection(p.event.kind, client, &p.event);
        }
    }
}

impl StationEngine {
    /// Starts the thread that stores recorded events (once).
    pub(crate) fn start_event_writer(self: &Arc<Self>) -> std::io::Result<()> {
        let Some(rx) = self.events.rx.lock().take() else {
            return Ok(());
        };
        let writer = Writer {
            engine: Arc::downgrade(self),
            last_stored: None,
            gate: self.events.gate.clone(),
            node: self.events.node.clone(),
            settling: Vec::new(),
            floods: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("junction-events".into())
            .spawn(move || writer.run(rx))
            .map(|_| ())
    }

    /// `tenant`'s events station, made if missing.
    pub(crate) fn events_station(
        &self,
        tenant: &TenantId,
    ) -> Result<Arc<super::station::Station>, EngineError> {
        match self.stations.get(tenant, EVENTS_STATION) {
            Ok(s) => Ok(s),
            Err(EngineError::StationNotFound) => {
                match self.stations.create(tenant, events_station_config()) {
                    Err(EngineError::StationNameInUse) => self.stations.get(tenant, EVENTS_STATION),
                    other => other,
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `tenant`'s stored events that pass `filter`, newest first.
    pub(crate) fn read_events(&self, tenant: &TenantId, filter: &EventFilter) -> Vec<SystemEvent> {
        let Ok(station) = self.stations.get(tenant, EVENTS_STATION) else {
            return Vec::new();
        };
        let state = station.state();
        let mut seq = state.last_seq;
        if let Some(before) = filter.before {
            seq = seq.min(before.saturating_sub(1));
        }
        let mut out = Vec::new();
        let mut walked = 0;
        while seq >= state.first_seq.max(1) && out.len() < filter.limit && walked < READ_WALK {
            walked += 1;
            if let Ok(Some(m)) = station.read_message(seq)
                && let Some(e) = SystemEvent::from_json(seq, &m.payload)
                && filter.matches(&e)
            {
                out.push(e);
            }
            seq -= 1;
        }
        out
    }

    /// Waits (at most `within`) until every event recorded so far is stored.
    pub fn flush_events(&self, within: Duration) -> bool {
        self.events.flush(within)
    }

    /// Stores what was recorded (at most `within`), then stops storing
    /// events: the broker is stopping.
    pub fn close_events(&self, within: Duration) {
        self.events.flush(within);
        self.events.close();
    }

    /// The tenants whose events station exists on this node.
    pub(crate) fn events_tenants(&self) -> Vec<TenantId> {
        self.stations.tenants_with(EVENTS_STATION)
    }

    /// Webhook `name` gave up on events: a `webhook_failed` event (which that
    /// webhook does not deliver) and the alarm `webhook_failing:<name>`,
    /// cleared by its next delivery.
    pub(crate) fn webhook_gave_up(&self, name: &str, why: &str) {
        self.events.record(
            SystemEventKind::WebhookFailed,
            About {
                tenant: self.system_tenant(),
                details: Some(serde_json::json!({ "webhook": name })),
                ..About::default()
            },
            why.to_string(),
        );
        self.raise_alarm(&format!("webhook_failing:{name}"), why);
    }

    /// An event of `kind` from the broker itself, as it would be recorded
    /// (its tenant the advisory tenant, its node this one), but not recorded:
    /// a webhook's test.
    pub(crate) fn unrecorded_event(&self, kind: SystemEventKind, message: String) -> SystemEvent {
        let mut e = SystemEvent::new(kind, message);
        e.tenant = self.advisory_tenant().0.to_string();
        e.node = self.events.node.clone();
        e
    }

    /// Where the broker's own advisories go: the system tenant, or the
    /// default one when none is configured.
    fn advisory_tenant(&self) -> TenantId {
        self.system_tenant()
            .cloned()
            .unwrap_or_else(|| self.default_tenant.clone())
    }

    /// nats-server's `$SYS.ACCOUNT.<tenant>.CONNECT|DISCONNECT` advisory.
    fn mirror_connection(&self, kind: SystemEventKind, client: &ClientRecord, e: &SystemEvent) {
        if client.kind() != junction_api::ClientKind::Connection {
            return;
        }
        let (what, kind_type) = match kind {
            SystemEventKind::ClientConnected => ("CONNECT", "client_connect"),
            SystemEventKind::ClientDisconnected => ("DISCONNECT", "client_disconnect"),
            _ => return,
        };
        let (name, user) = client.name_and_user();
        let user = client.identity().and_then(|i| i.user.clone()).or(user);
        let now = std::time::SystemTime::now();
        let mut body = serde_json::json!({
            "type": format!("io.nats.server.advisory.v1.{kind_type}"),
            "id": format!("{}-{}", e.node, client.id.0),
            "timestamp": humantime::format_rfc3339_nanos(now).to_string(),
            "server": {"name": self.options.server_name, "id": self.options.server_name},
            "client": {
                "start": humantime::format_rfc3339_nanos(client.start).to_string(),
                "host": client.remote.ip().to_string(),
                "id": client.id.0,
                "acc": client.tenant().0.as_ref(),
                "user": user.as_deref(),
                "name": name.as_deref().unwrap_or(""),
                "kind": "Client",
                "client_type": protocol_client_type(client.protocol),
            },
        });
        if kind == SystemEventKind::ClientDisconnected {
            let s = &client.stats;
            body["sent"] = serde_json::json!({
                "msgs": s.out_msgs.load(Ordering::Relaxed),
                "bytes": s.out_bytes.load(Ordering::Relaxed),
            });
            body["received"] = serde_json::json!({
                "msgs": s.in_msgs.load(Ordering::Relaxed),
                "bytes": s.in_bytes.load(Ordering::Relaxed),
            });
            body["reason"] = serde_json::Value::from("Client Closed");
        }
        let Ok(subject) = Subject::new(format!("$SYS.ACCOUNT.{}.{what}", client.tenant().0)) else {
            return;
        };
        let Ok(json) = serde_json::to_vec(&body) else {
            return;
        };
        self.publish_feed(
            &self.advisory_tenant(),
            &Message::new(subject, Bytes::from(json)),
        );
    }

    /// Delivers a system feed message (`$sys.events.…`, `$SYS.…`) live in
    /// `tenant`, only to subscriptions that name the `$` space (whose filter
    /// starts with `$`): a `>` or `#` subscriber never gets the broker's own
    /// feeds, as MQTT keeps `$` topics from `#` and nats-server keeps its
    /// system events out of accounts. Events only: never on a publish's path.
    pub(crate) fn publish_feed(&self, tenant: &TenantId, message: &Message) {
        let result = self.trie(tenant).matches(&message.subject);
        let names_dollar = |s: &super::trie::Subscription| {
            s.route.is_none() && s.filter.as_bytes().first() == Some(&b'$')
        };
        let fanout = junction_api::FanoutId::next();
        let mut done = Vec::new();
        for sub in result.plain.iter().filter(|s| names_dollar(s)) {
            self.deliver_one(sub, message, fanout, &mut done);
        }
        for (_, members) in &result.groups {
            if let Some(sub) = members.iter().find(|s| names_dollar(s)) {
                self.deliver_one(sub, message, fanout, &mut done);
            }
        }
        for (client, id) in done {
            self.remove_subscriptions(client, &[id]);
        }
    }

    /// An alarm raised or cleared, on MQTT `$SYS/broker/alarms/activate` or
    /// `deactivate` (subject `$SYS.broker.alarms.…`).
    fn mirror_alarm(&self, alarm: &AlarmState, e: &SystemEvent) {
        let what = if alarm.active {
            "activate"
        } else {
            "deactivate"
        };
        let body = serde_json::json!({
            "name": alarm.name,
            "message": e.message,
            "node": e.node,
            "time": e.time_ms,
            "details": e.details,
        });
        let subject = Subject::from_trusted(Bytes::from(format!("$SYS.broker.alarms.{what}")));
        let Ok(json) = serde_json::to_vec(&body) else {
            return;
        };
        self.publish_feed(
            &self.advisory_tenant(),
            &Message::new(subject, Bytes::from(json)),
        );
    }
}

fn protocol_client_type(p: junction_api::Protocol) -> &'static str {
    match p {
        junction_api::Protocol::Nats => "nats",
        junction_api::Protocol::Mqtt => "mqtt",
        junction_api::Protocol::Http => "http",
        junction_api::Protocol::WebSocket => "websocket",
        _ => "other",
    }
}
