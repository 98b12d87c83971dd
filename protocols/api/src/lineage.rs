//! Lineage: the reserved headers the engine stamps on every message a station
//! stores, and the shapes of a message's path and of the station-level graph.
//!
//! Every header starting with [`RESERVED_PREFIX`] belongs to the engine: it strips
//! them from what clients publish, so they cannot be forged.

use std::time::SystemTime;

/// Headers starting with this (ASCII case ignored) are the engine's.
pub const RESERVED_PREFIX: &str = "Junction-";
/// Header: a unique id the engine gives every stored message (32 hex digits).
pub const LINEAGE_MSG_ID: &str = "Junction-Msg-Id";
/// Header: the producer's protocol: `nats`, `mqtt`, `http` or `websocket`.
pub const LINEAGE_PROTOCOL: &str = "Junction-Origin-Protocol";
/// Header: the producer's connection id (as in `/connz` and `/v1/connections`).
pub const LINEAGE_CONN_ID: &str = "Junction-Conn-Id";
/// Header: the producer's client name (NATS `CONNECT` name, MQTT client id), when
/// it gave one.
pub const LINEAGE_CLIENT: &str = "Junction-Client-Name";
/// Header: the subject (or MQTT topic, as a subject) it was published on.
pub const LINEAGE_SUBJECT: &str = "Junction-Origin-Subject";
/// Header: when the engine received it (RFC 3339, UTC, nanoseconds).
pub const LINEAGE_RECEIVED: &str = "Junction-Received";
/// Header: the W3C trace context; kept when the producer sent a valid one, created
/// otherwise. Not reserved: clients pass it on when they republish.
pub const TRACEPARENT: &str = "traceparent";

/// Is `name` a reserved header?
pub fn is_reserved_header(name: &str) -> bool {
    name.get(..RESERVED_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX))
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`), when
/// it is valid.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && s.bytes().any(|b| b != b'0')
    };
    match parts.as_slice() {
        [version, trace, parent, flags, ..]
            if version.len() == 2
                && *version != "ff"
                && version.bytes().all(|b| b.is_ascii_hexdigit())
                && hex(trace, 32)
                && hex(parent, 16)
                && flags.len() == 2
                && flags.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            if *version == "00" && parts.len() != 4 {
                return None;
            }
            Some(trace)
        }
        _ => None,
    }
}

/// A consumer group's delivery of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageDelivery {
    /// The group.
    pub group: String,
    /// When it was delivered.
    pub time: SystemTime,
    /// Which delivery of that group it was (1 = first).
    pub delivery_count: u32,
}

/// One message on a path: who produced it, where it was stored, who got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageMessage {
    /// `Junction-Msg-Id`.
    pub msg_id: String,
    /// The trace it belongs to.
    pub trace_id: String,
    /// Producer's protocol.
    pub protocol: String,
    /// Producer's connection id.
    pub conn_id: u64,
    /// Producer's name, if any.
    pub client: Option<String>,
    /// Subject published on.
    pub subject: String,
    /// When the engine received it.
    pub received: SystemTime,
    /// The station that stored it, once stored.
    pub station: Option<String>,
    /// Its sequence there.
    pub seq: Option<u64>,
    /// Deliveries to consumer groups, in order (at most 32 kept).
    pub deliveries: Vec<LineageDelivery>,
}

/// The path of a trace: every message with its trace id, in the order received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageTrace {
    /// W3C trace id.
    pub trace_id: String,
    /// The hops.
    pub messages: Vec<LineageMessage>,
}

/// What a node of the lineage graph is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineageNodeKind {
    /// Producers of one protocol and client name.
    Producer,
    /// A station.
    Station,
    /// A consumer group (of a station).
    Group,
}

/// An edge of the lineage graph: messages that went from one node to another.
#[derive(Debug, Clone, PartialEq)]
pub struct LineageEdge {
    /// Source node id (`producer:<protocol>:<name>`, `station:<name>`).
    pub from: String,
    /// Target node id (`station:<name>`, `group:<station>/<group>`).
    pub to: String,
    /// Messages since start.
    pub messages: u64,
    /// Messages per second over the last minute.
    pub rate: f64,
}

/// The station-level graph: producers → stations → groups.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineageGraph {
    /// Nodes: (id, kind, display name).
    pub nodes: Vec<(String, LineageNodeKind, String)>,
    /// Edges.
    pub edges: Vec<LineageEdge>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent() {
        let t = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_of(t), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            trace_id_of("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of("garbage"), None);
        assert!(is_reserved_header("junction-msg-id"));
        assert!(!is_reserved_header("Junction"));
    }
}
