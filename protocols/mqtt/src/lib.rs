//! MQTT 3.1, 3.1.1 and 5.0 front-end for Junction.
//!
//! One listener serves every version: the CONNECT packet's protocol level picks the
//! codec (`rmqtt-codec`, chosen over `mqttbytes`; see `docs/mqtt.md`). The session
//! layer here is written once against MQTT 5 semantics and talks to the broker only
//! through [`junction_api::Engine`]:
//!
//! - topics map to subjects as nats-server maps them, with an escape for what
//!   nats-server refuses (spaces, control characters, `*`/`>` levels) ([`topic`]);
//! - nothing is acknowledged (CONNACK, SUBACK, PUBACK) that is not stored;
//! - live delivery is an engine subscription per filter (two for `a/#`);
//! - QoS 1/2 messages for persistent sessions, retained messages and session state
//!   are kept in three stations (`$MQTT_msgs`, `$MQTT_rmsgs`, `$MQTT_sess`), so they
//!   survive a restart; a persistent QoS 1/2 subscription is a consumer group
//!   (a shared one, its share group's, which every member takes from);
//! - a stored message is first sent with a packet id its sequence gives, so it
//!   keeps that id when it is sent again after a crash (MQTT-4.4.0-1).

mod auth;
pub mod bridge;
mod broker;
mod channel;
mod cluster;
mod connection;
mod enhanced_auth;
mod frame;
mod io;
mod mailbox;
mod refuse;
mod session;
mod sys;
pub mod topic;

pub use bridge::{BridgeConfig, BridgeProtocol, BridgeTopic};
pub use broker::{MqttBroker, MqttTls, serve, serve_listeners};
/// A socket-free harness for the session state machine, for tests and fuzzing.
#[doc(hidden)]
pub use channel::harness;

use std::time::Duration;

/// A topic authorization rule: what a user (or everyone) may not do.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AclRule {
    /// The user this rule applies to; `None` applies to everyone.
    pub user: Option<String>,
    /// Topic filters the user may not publish to.
    pub deny_publish: Vec<String>,
    /// Topic filters the user may not subscribe to (or receive from).
    pub deny_subscribe: Vec<String>,
}

/// Settings of the MQTT front-end.
#[derive(Debug, Clone)]
pub struct MqttOptions {
    /// Largest packet accepted (and advertised as Maximum Packet Size), bytes.
    pub max_packet_size: u32,
    /// Receive Maximum advertised: QoS 1/2 publishes a client may have unacknowledged.
    pub receive_maximum: u16,
    /// Topic Alias Maximum advertised.
    pub topic_alias_maximum: u16,
    /// Highest keep-alive allowed (0 = whatever the client asks); MQTT 5 clients are
    /// told through Server Keep Alive. 65535 (mosquitto's default) announces 65535
    /// to an MQTT 5 client asking for none and refuses no MQTT 3.1.1 client.
    pub max_keep_alive: u16,
    /// Deliver the front-end's lineage markers (`Junction-Origin-Protocol`,
    /// `Junction-Client-Name`, `Junction-Origin-Topic`) to MQTT 5 subscribers as
    /// user properties after the publisher's own. Off by default: MQTT-3.3.2-17
    /// wants user properties forwarded unaltered.
    pub lineage_properties: bool,
    /// Longest session expiry granted, seconds.
    pub max_session_expiry: u32,
    /// Live QoS 1/2 messages queued per client beyond its Receive Maximum; one more
    /// disconnects the client as a slow consumer.
    pub max_queued_messages: usize,
    /// Payload bytes queued for one client's live deliveries: beyond it QoS 0
    /// messages are dropped and a QoS 1/2 message disconnects the client as a slow
    /// consumer.
    pub max_pending: usize,
    /// How long a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// How often `$SYS/broker/...` topics are refreshed (zero: never).
    pub sys_interval: Duration,
    /// Topic authorization rules.
    pub acl: Vec<AclRule>,
    /// How long shutdown waits for connections to close.
    pub drain_timeout: Duration,
    /// Most sockets the TCP listener holds at once, its share of the process's
    /// file descriptors (0: no cap). One more gets CONNACK 0x97 Quota exceeded
    /// (3.1.1: 0x03) and is closed.
    pub max_connections: usize,
    /// MQTT 5 Response Information: the topic prefix a client that sets Request
    /// Response Information is given in CONNACK, followed by `/` and its client
    /// id (no `/` is added when the prefix ends in one). `None`: no Response
    /// Information is sent, as mosquitto does.
    pub response_information: Option<String>,
}

impl Default for MqttOptions {
    fn default() -> Self {
        MqttOptions {
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            max_keep_alive: u16::MAX,
            lineage_properties: false,
            max_session_expiry: u32::MAX,
            max_queued_messages: 10_000,
            max_pending: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            sys_interval: Duration::from_secs(10),
            acl: Vec::new(),
            drain_timeout: Duration::from_secs(5),
            max_connections: 0,
            response_information: None,
        }
    }
}
