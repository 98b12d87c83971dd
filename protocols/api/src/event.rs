//! System events: notable things the engine saw (clients coming and going,
//! operator disconnects, slow consumers, schema violations, dead letters, alarms),
//! kept in each tenant's bounded system station [`EVENTS_STATION`] (one JSON
//! message per event, [`SystemEvent::to_json`]) for the console, `/v1/events`,
//! any consumer and the webhooks.

use crate::{ClientId, Protocol};
use std::time::{Duration, UNIX_EPOCH};

/// The system station every tenant's events are kept in (about 100,000 events or
/// 7 days). Clients read it like any station; only the broker writes it.
pub const EVENTS_STATION: &str = "$sys_events";
/// Events are stored on `$sys.events.<kind>` (MQTT: `$sys/events/<kind>`).
pub const EVENTS_SUBJECT_PREFIX: &str = "$sys.events";

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SystemEventKind {
    /// A client connected.
    ClientConnected,
    /// A client's connection ended.
    ClientDisconnected,
    /// An operator disconnected a client ([`crate::Engine::close_client`]).
    ClientKicked,
    /// A client was disconnected as a slow consumer.
    SlowConsumer,
    /// A publish failed its station's schema.
    SchemaViolation,
    /// A consumer group gave up on a message (max deliveries, terminated): it went
    /// to the dead-letter station.
    DeadLetter,
    /// A replicated station has a replica that stayed unreachable past the
    /// re-placement time with no spare node to move it to (or it was moved).
    ReplicaDown,
    /// The configuration was reloaded (SIGHUP, `POST /v1/server/reload`).
    ConfigReloaded,
    /// A configuration reload was refused; the broker kept the configuration
    /// it had.
    ConfigReloadFailed,
    /// The data directory's disk is nearly full: stored writes are fenced.
    StorageFull,
    /// The disk has room again: stored writes resume.
    StorageFullCleared,
    /// An address or MQTT client id was banned: repeated failed logins, or an
    /// MQTT client id that connects too often (flapping).
    ClientBanned,
    /// Logins failed (aggregated: at most one event per 10 s, counting the
    /// failures since the one before).
    AuthFailed,
    /// A user's permissions refused a publish or subscription (aggregated per
    /// tenant: at most one event per 10 s, counting those since the one before).
    PermissionViolation,
    /// A self-check raised an alarm (its name and why in the message), such
    /// as `tls_certificate_expiring`.
    AlarmRaised,
    /// An alarm cleared.
    AlarmCleared,
    /// The broker started.
    ServerStarted,
    /// The broker is stopping.
    ServerStopping,
    /// A webhook's delivery gave up on an event (max attempts, or a receiver that
    /// refused it); the event went to the dead-letter station.
    WebhookFailed,
}

/// How much an event matters, lowest first. Webhooks send from a minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Severity {
    /// Routine: a client came or went, the configuration was reloaded.
    #[default]
    Info,
    /// Needs attention: a schema violation, a dead letter, an alarm raised.
    Warning,
    /// Something failed: stored writes fenced, a reload refused.
    Error,
    /// The broker cannot do its job (not used by a kind on its own today; an
    /// alarm can be raised at it).
    Critical,
}

impl Severity {
    /// `info`, `warning`, `error`, `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// Reads [`Severity::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "error" => Severity::Error,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// A threshold event's alarm: raised (`active`) or cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmState {
    /// `storage_full`, `storage_low`, `tls_certificate_expiring`, ...
    pub name: String,
    /// Raised (true) or cleared.
    pub active: bool,
}

impl SystemEventKind {
    /// The snake_case name, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            SystemEventKind::ClientConnected => "client_connected",
            SystemEventKind::ClientDisconnected => "client_disconnected",
            SystemEventKind::ClientKicked => "client_kicked",
            SystemEventKind::SlowConsumer => "slow_consumer",
            SystemEventKind::SchemaViolation => "schema_violation",
            SystemEventKind::DeadLetter => "dead_letter",
            SystemEventKind::ReplicaDown => "replica_down",
            SystemEventKind::ConfigReloaded => "config_reloaded",
            SystemEventKind::ConfigReloadFailed => "config_reload_failed",
            SystemEventKind::StorageFull => "storage_full",
            SystemEventKind::StorageFullCleared => "storage_full_cleared",
            SystemEventKind::ClientBanned => "client_banned",
            SystemEventKind::AuthFailed => "auth_failed",
            SystemEventKind::PermissionViolation => "permission_violation",
            SystemEventKind::AlarmRaised => "alarm_raised",
            SystemEventKind::AlarmCleared => "alarm_cleared",
            SystemEventKind::ServerStarted => "server_started",
            SystemEventKind::ServerStopping => "server_stopping",
            SystemEventKind::WebhookFailed => "webhook_failed",
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [SystemEventKind; 19] = [
        SystemEventKind::ClientConnected,
        SystemEventKind::ClientDisconnected,
        SystemEventKind::ClientKicked,
        SystemEventKind::SlowConsumer,
        SystemEventKind::SchemaViolation,
        SystemEventKind::DeadLetter,
        SystemEventKind::ReplicaDown,
        SystemEventKind::ConfigReloaded,
        SystemEventKind::ConfigReloadFailed,
        SystemEventKind::StorageFull,
        SystemEventKind::StorageFullCleared,
        SystemEventKind::ClientBanned,
        SystemEventKind::AuthFailed,
        SystemEventKind::PermissionViolation,
        SystemEventKind::AlarmRaised,
        SystemEventKind::AlarmCleared,
        SystemEventKind::ServerStarted,
        SystemEventKind::ServerStopping,
        SystemEventKind::WebhookFailed,
    ];

    /// Reads [`SystemEventKind::as_str`]'s names.
    pub fn parse(s: &str) -> Option<SystemEventKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The severity an event of this kind has unless its recorder says otherwise.
    pub fn severity(self) -> Severity {
        use SystemEventKind::*;
        match self {
            ClientConnected | ClientDisconnected | ConfigReloaded | StorageFullCleared
            | AlarmCleared | ServerStarted | ServerStopping => Severity::Info,
            ClientKicked | SlowConsumer | SchemaViolation | DeadLetter | ClientBanned
            | AuthFailed | PermissionViolation | AlarmRaised => Severity::Warning,
            ReplicaDown | ConfigReloadFailed | StorageFull | WebhookFailed => Severity::Error,
        }
    }
}

/// One system event.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemEvent {
    /// Its sequence in its tenant's [`EVENTS_STATION`] on this node (0 before
    /// it is stored).
    pub id: u64,
    /// When it happened, in ms since the Unix epoch.
    pub time_ms: u64,
    /// The tenant it belongs to (broker-wide events: the system tenant's).
    pub tenant: String,
    /// What happened.
    pub kind: SystemEventKind,
    /// How much it matters.
    pub severity: Severity,
    /// The protocol of the client concerned, if any.
    pub protocol: Option<Protocol>,
    /// The client concerned, if any.
    pub client_id: Option<ClientId>,
    /// That client's announced name (an MQTT client id), if any.
    pub client_name: Option<String>,
    /// The station concerned, if any.
    pub station: Option<String>,
    /// The subject concerned (of a refused publish), if any.
    pub subject: Option<String>,
    /// For people.
    pub message: String,
    /// Figures for machines (a count of coalesced events, an alarm's reason,
    /// ...); `Null` when there are none.
    pub details: serde_json::Value,
    /// A threshold event's alarm, raised or cleared.
    pub alarm: Option<AlarmState>,
    /// The node that recorded it.
    pub node: String,
}

fn protocol_str(p: Protocol) -> &'static str {
    match p {
        Protocol::Nats => "nats",
        Protocol::Mqtt => "mqtt",
        Protocol::Http => "http",
        Protocol::WebSocket => "websocket",
    }
}

fn parse_protocol(s: &str) -> Option<Protocol> {
    Some(match s {
        "nats" => Protocol::Nats,
        "mqtt" => Protocol::Mqtt,
        "http" => Protocol::Http,
        "websocket" => Protocol::WebSocket,
        _ => return None,
    })
}

impl SystemEvent {
    /// An event of `kind` now, at its kind's severity, about nothing in
    /// particular.
    pub fn new(kind: SystemEventKind, message: String) -> Self {
        SystemEvent {
            id: 0,
            time_ms: std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            tenant: String::new(),
            kind,
            severity: kind.severity(),
            protocol: None,
            client_id: None,
            client_name: None,
            station: None,
            subject: None,
            message,
            details: serde_json::Value::Null,
            alarm: None,
            node: String::new(),
        }
    }

    /// The one shape an event has everywhere (the station's message, `/v1/events`,
    /// a webhook's body): `{id, time, tenant, kind, severity, client, station,
    /// subject, message, details, alarm, node}`, `time` in RFC 3339 and `client`
    /// `{id, name, protocol}` or null.
    pub fn to_json(&self) -> serde_json::Value {
        let time =
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(self.time_ms));
        let client = match (self.client_id, &self.client_name, self.protocol) {
            (None, None, None) => serde_json::Value::Null,
            (id, name, protocol) => serde_json::json!({
                "id": id.map(|c| c.0),
                "name": name,
                "protocol": protocol.map(protocol_str),
            }),
        };
        let alarm = self
            .alarm
            .as_ref()
            .map(|a| serde_json::json!({"name": a.name, "active": a.active}));
        serde_json::json!({
            "id": self.id,
            "time": time.to_string(),
            "tenant": self.tenant,
            "kind": self.kind.as_str(),
            "severity": self.severity.as_str(),
            "client": client,
            "station": self.station,
            "subject": self.subject,
            "message": self.message,
            "details": self.details,
            "alarm": alarm,
            "node": self.node,
        })
    }

    /// Reads [`SystemEvent::to_json`]'s shape back (a stored event), with `id`
    /// its sequence. `None` for anything else.
    pub fn from_json(id: u64, json: &[u8]) -> Option<SystemEvent> {
        let v: serde_json::Value = serde_json::from_slice(json).ok()?;
        let str_of = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let time = humantime::parse_rfc3339_weak(v.get("time")?.as_str()?).ok()?;
        let client = v.get("client").filter(|c| c.is_object());
        let alarm = v.get("alarm").filter(|a| a.is_object()).and_then(|a| {
            Some(AlarmState {
                name: a.get("name")?.as_str()?.to_string(),
                active: a.get("active")?.as_bool()?,
            })
        });
        Some(SystemEvent {
            id,
            time_ms: time.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64,
            tenant: str_of("tenant").unwrap_or_default(),
            kind: SystemEventKind::parse(v.get("kind")?.as_str()?)?,
            severity: Severity::parse(v.get("severity")?.as_str()?)?,
            protocol: client
                .and_then(|c| c.get("protocol"))
                .and_then(|p| p.as_str())
                .and_then(parse_protocol),
            client_id: client
                .and_then(|c| c.get("id"))
                .and_then(|i| i.as_u64())
                .map(ClientId),
            client_name: client
                .and_then(|c| c.get("name"))
                .and_then(|n| n.as_str())
                .map(str::to_string),
            station: str_of("station"),
            subject: str_of("subject"),
            message: str_of("message").unwrap_or_default(),
            details: v.get("details").cloned().unwrap_or_default(),
            alarm,
            node: str_of("node").unwrap_or_default(),
        })
    }
}

/// Which events a reader wants (`/v1/events`' query): every condition given
/// must hold.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// At most this many, newest first.
    pub limit: usize,
    /// Only ids below this one (paging back).
    pub before: Option<u64>,
    /// Only these kinds (an alarm event also matches its alarm's name).
    pub kinds: Vec<String>,
    /// Only at least this severe.
    pub min_severity: Option<Severity>,
    /// Only about this station.
    pub station: Option<String>,
    /// Only about this client (its id, or its name).
    pub client: Option<String>,
}

impl EventFilter {
    /// Does `e` pass?
    pub fn matches(&self, e: &SystemEvent) -> bool {
        (self.kinds.is_empty()
            || self
                .kinds
                .iter()
                .any(|k| k == e.kind.as_str() || e.alarm.as_ref().is_some_and(|a| a.name == *k)))
            && self.min_severity.is_none_or(|s| e.severity >= s)
            && self
                .station
                .as_ref()
                .is_none_or(|s| e.station.as_deref() == Some(s.as_str()))
            && self.client.as_ref().is_none_or(|c| {
                e.client_name.as_deref() == Some(c.as_str())
                    || e.client_id.is_some_and(|id| id.0.to_string() == *c)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back_as_it_was_written() {
        let mut e = SystemEvent::new(SystemEventKind::AlarmRaised, "disk 91% full".into());
        e.tenant = "$SYS".into();
        e.protocol = Some(Protocol::Mqtt);
        e.client_id = Some(ClientId(7));
        e.client_name = Some("sensor-1".into());
        e.station = Some("orders".into());
        e.subject = Some("orders.new".into());
        e.details = serde_json::json!({"used_percent": 91.2});
        e.alarm = Some(AlarmState {
            name: "storage_low".into(),
            active: true,
        });
        e.node = "n1".into();
        let json = serde_json::to_vec(&e.to_json()).unwrap();
        let back = SystemEvent::from_json(42, &json).unwrap();
        assert_eq!(
            back,
            SystemEvent {
                id: 42,
                ..e.clone()
            }
        );
        assert!(SystemEvent::from_json(1, b"{}").is_none());
        assert!(SystemEvent::from_json(1, b"not json").is_none());
        let f = EventFilter {
            kinds: vec!["storage_low".into()],
            min_severity: Some(Severity::Warning),
            client: Some("7".into()),
            ..EventFilter::default()
        };
        assert!(f.matches(&back));
        assert!(
            !EventFilter {
                min_severity: Some(Severity::Error),
                ..EventFilter::default()
            }
            .matches(&back)
        );
        for k in SystemEventKind::ALL {
            assert_eq!(SystemEventKind::parse(k.as_str()), Some(k));
        }
    }
}
