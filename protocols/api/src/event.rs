//! System events: notable things the engine saw (clients coming and going,
//! operator disconnects, slow consumers, schema violations, dead letters), kept in
//! a bounded in-memory log for the console's notifications page.

use crate::{ClientId, Protocol};

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
        }
    }
}

/// One system event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemEvent {
    /// Increasing from 1 for the life of the process.
    pub id: u64,
    /// When it happened, in ms since the Unix epoch.
    pub time_ms: u64,
    /// What happened.
    pub kind: SystemEventKind,
    /// The protocol of the client concerned, if any.
    pub protocol: Option<Protocol>,
    /// The client concerned, if any.
    pub client_id: Option<ClientId>,
    /// That client's announced name (an MQTT client id), if any.
    pub client_name: Option<String>,
    /// The station concerned, if any.
    pub station: Option<String>,
    /// For people.
    pub message: String,
}
