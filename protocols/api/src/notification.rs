//! The notification centre as the front-ends see it: the webhooks that carry
//! system events out of the broker, listed with their health, made, changed,
//! deleted and tried over an admin API.
//!
//! The root crate's notifier implements [`NotificationCentre`] and hands it to
//! the engine at start ([`crate::Admin::notification_centre`] gives it back),
//! so a front-end manages webhooks without knowing how they are delivered.
//! A webhook's configuration travels as JSON (the `[[notifications.webhooks]]`
//! entry's fields): its typed form and its checks belong to the notifier.

use crate::AdminFuture;

/// What a secret reads as when a webhook is shown; given back unchanged in a
/// replacement, it keeps the secret the webhook had.
pub const REDACTED_SECRET: &str = "********";

/// Where a webhook is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookSource {
    /// `[[notifications.webhooks]]` in the configuration file: read-only over
    /// the API (the file is the one place it is defined).
    Config,
    /// Made over the API: kept in the store, back after a restart.
    Api,
}

/// How a webhook's deliveries are going, on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WebhookHealth {
    /// Events delivered (a digest counts its events).
    pub delivered: u64,
    /// POSTs that failed (each attempt).
    pub failed_attempts: u64,
    /// Events given up on (sent to the dead-letter station).
    pub dead_lettered: u64,
    /// The last failure, for people.
    pub last_error: Option<String>,
    /// Events waiting for it: its consumer groups' lag (not yet delivered,
    /// plus delivered and not yet acknowledged), over the tenants it covers.
    pub pending: u64,
}

/// One webhook, as operators see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WebhookInfo {
    /// Its name.
    pub name: String,
    /// Where it is defined.
    pub source: WebhookSource,
    /// Its configuration, `[[notifications.webhooks]]`'s fields as JSON, with
    /// the secret shown as [`REDACTED_SECRET`].
    pub config: serde_json::Value,
    /// How its deliveries are going.
    pub health: WebhookHealth,
}

/// What a receiver made of a test event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WebhookTestOutcome {
    /// The `Junction-Event-Id` the test went out with.
    pub event_id: String,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Whether it answered with a 2xx status.
    pub ok: bool,
    /// Why the POST failed (no answer, a timeout, a non-2xx status), for people.
    pub error: Option<String>,
}

/// The webhooks of this node: listed, made, changed, deleted and tried.
/// Methods that write keep the change in the store (fsynced) before they
/// answer, off the caller's async worker.
pub trait NotificationCentre: Send + Sync + 'static {
    /// Every webhook, sorted by name.
    fn webhooks(&self) -> Vec<WebhookInfo>;

    /// Makes or replaces webhook `name` from `config` (its fields as JSON; a
    /// `name` in it must be `name`), kept across restarts, and starts it; a
    /// replaced webhook keeps its position in the events. Fails with
    /// [`crate::EngineError::InvalidConfig`] for a configuration that does not
    /// read or check, and [`crate::EngineError::WebhookReadOnly`] for a webhook
    /// of the configuration file.
    fn put_webhook(&self, name: &str, config: serde_json::Value) -> AdminFuture<WebhookInfo>;

    /// Stops and forgets webhook `name` (made over the API), with its
    /// consumer groups. Fails with [`crate::EngineError::WebhookNotFound`] or
    /// [`crate::EngineError::WebhookReadOnly`].
    fn delete_webhook(&self, name: &str) -> AdminFuture<()>;

    /// POSTs one `test` event to webhook `name` now, once, as its deliveries
    /// are made (format, headers, signature), and answers what the receiver
    /// said. The event is not stored. Fails with
    /// [`crate::EngineError::WebhookNotFound`].
    fn test_webhook(&self, name: &str) -> AdminFuture<WebhookTestOutcome>;
}
