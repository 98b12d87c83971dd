//! Lineage: where a stored message came from, kept **beside** the message as a
//! compact binary [`LineageRecord`] (the storage record's lineage section), never
//! inside the headers its producer sent; the shapes of a message's path and of the
//! station-level graph; and the reserved `Junction-*` header names in which lineage
//! is rendered for a consumer that opts in ([`LineageRecord::render`]).
//!
//! By default every consumer, on every protocol, gets exactly the headers its
//! producer sent (MQTT-3.3.2-17; stock NATS clients compare them). Lineage reaches a
//! client only when it asks: a consumer group with
//! [`GroupConfig::lineage_headers`](crate::GroupConfig::lineage_headers), or the HTTP
//! request header [`LINEAGE_OPT_IN`].
//!
//! Every header starting with [`RESERVED_PREFIX`] belongs to the engine: it strips
//! them from what clients publish, so they cannot be forged.

use crate::{Headers, Protocol};
use bytes::{BufMut, Bytes, BytesMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Headers starting with this (ASCII case ignored) are the engine's.
pub const RESERVED_PREFIX: &str = "Junction-";
/// HTTP request header: `Junction-Lineage: true` on a fetch or a browse renders
/// each stored message's lineage as the `Junction-*` headers below.
pub const LINEAGE_OPT_IN: &str = "Junction-Lineage";
/// JetStream consumer metadata key: `"true"` sets the group's `lineage_headers`.
pub const LINEAGE_METADATA_KEY: &str = "junction.lineage_headers";
/// Header: a unique id the engine gives every stored message (32 hex digits).
pub const LINEAGE_MSG_ID: &str = "Junction-Msg-Id";
/// Header: the producer's protocol: `nats`, `mqtt`, `http` or `websocket`.
pub const LINEAGE_PROTOCOL: &str = "Junction-Origin-Protocol";
/// Header: the producer's connection id (as in `/connz` and `/v1/connections`).
pub const LINEAGE_CONN_ID: &str = "Junction-Conn-Id";
/// Header: the producer's client name (NATS `CONNECT` name, MQTT client id, the
/// HTTP caller's `User-Agent`), when it gave one.
pub const LINEAGE_CLIENT: &str = "Junction-Client-Name";
/// Header: the subject (or MQTT topic, as a subject) it was published on.
pub const LINEAGE_SUBJECT: &str = "Junction-Origin-Subject";
/// Header: when the engine received it (RFC 3339, UTC, nanoseconds).
pub const LINEAGE_RECEIVED: &str = "Junction-Received";
/// Header: the producer's address (`ip:port`; for HTTP, the caller's).
pub const LINEAGE_REMOTE: &str = "Junction-Remote-Addr";
/// Header: the user the producer authenticated as, when there was one.
pub const LINEAGE_USER: &str = "Junction-User";
/// Header: the W3C trace context. A producer's own `traceparent` is kept as one of
/// its headers (OpenTelemetry propagation) and gives the message its trace id;
/// otherwise the engine picks a trace id and renders a `traceparent` only for a
/// consumer that opts in to lineage. Not reserved: clients pass it on when they
/// republish, which links the hops of a trace.
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

/// Why a lineage section could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineageError {
    /// Shorter than its fields say.
    #[error("lineage record truncated")]
    Truncated,
    /// A version this release does not know.
    #[error("lineage record version {0} is not known")]
    UnknownVersion(u8),
    /// A field holds a value no encoder writes.
    #[error("lineage record field {0} is invalid")]
    Invalid(&'static str),
}

/// One stored message's lineage, as the engine keeps it beside the message.
///
/// Encoded form (all integers big-endian), version 1:
///
/// ```text
/// offset size
///  0     1    u8   version = 1
///  1     1    u8   protocol: 0 other, 1 nats, 2 mqtt, 3 http, 4 websocket
///  2     1    u8   flags: bit 0 the trace id came from the producer's traceparent,
///                         bit 1 client name follows, bit 2 remote address follows,
///                         bit 3 user follows (other bits: 0)
///  3    16    u128 message id
/// 19    16    u128 trace id
/// 35     8    u64  received, ns since the Unix epoch
/// 43     8    u64  producer's connection id
/// 51     …    [u8 len | client name, UTF-8]                    when bit 1
///             [u8 family 4 or 6 | 4 or 16 address bytes | u16 port] when bit 2
///             [u8 len | user, UTF-8]                           when bit 3
/// ```
///
/// 51 bytes when the producer gave no name; strings are cut to 255 bytes at a
/// character boundary. The subject is not repeated: it is the stored record's own.
/// Names are written inline rather than interned in a side table, so that a record
/// decodes on its own (after a restart, from a sealed range in S3, in a dead-letter
/// copy) and nothing on the publish path waits for an id to be allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageRecord {
    /// The message id (rendered as 32 hex digits).
    pub msg_id: u128,
    /// The W3C trace id.
    pub trace_id: u128,
    /// True when `trace_id` came from the producer's `traceparent`.
    pub trace_from_producer: bool,
    /// When the engine received it, ns since the Unix epoch.
    pub received_ns: u64,
    /// The producer's protocol.
    pub protocol: Protocol,
    /// The producer's connection id.
    pub conn_id: u64,
    /// The producer's name (NATS `CONNECT` name, MQTT client id, HTTP `User-Agent`),
    /// shared with its [`ClientRecord`](crate::ClientRecord): recording it per
    /// message costs a reference count, not a copy.
    pub client: Option<Arc<str>>,
    /// The producer's address (for HTTP, the caller's).
    pub remote: Option<SocketAddr>,
    /// The user it authenticated as.
    pub user: Option<Arc<str>>,
}

/// Bytes before the optional fields.
const FIXED: usize = 51;

fn protocol_byte(p: Protocol) -> u8 {
    match p {
        Protocol::Nats => 1,
        Protocol::Mqtt => 2,
        Protocol::Http => 3,
        Protocol::WebSocket => 4,
    }
}

/// The protocol's name in lineage (`nats`, `mqtt`, `http`, `websocket`).
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Nats => "nats",
        Protocol::Mqtt => "mqtt",
        Protocol::Http => "http",
        Protocol::WebSocket => "websocket",
    }
}

fn short(s: &str) -> &str {
    if s.len() <= 255 {
        return s;
    }
    let mut end = 255;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A message id or trace id as 32 lower-case hex digits.
pub fn hex_id(id: u128) -> String {
    format!("{id:032x}")
}

/// A 32-hex-digit id, parsed.
pub fn parse_hex_id(s: &str) -> Option<u128> {
    (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(s, 16).ok())
        .flatten()
}

impl LineageRecord {
    /// The encoded record.
    pub fn encode(&self) -> Bytes {
        let client = self.client.as_deref().map(short);
        let user = self.user.as_deref().map(short);
        let mut b = BytesMut::with_capacity(FIXED + 2 + 19 + 64);
        b.put_u8(1);
        b.put_u8(protocol_byte(self.protocol));
        let flags = u8::from(self.trace_from_producer)
            | (u8::from(client.is_some()) << 1)
            | (u8::from(self.remote.is_some()) << 2)
            | (u8::from(user.is_some()) << 3);
        b.put_u8(flags);
        b.put_u128(self.msg_id);
        b.put_u128(self.trace_id);
        b.put_u64(self.received_ns);
        b.put_u64(self.conn_id);
        if let Some(c) = client {
            b.put_u8(c.len() as u8);
            b.put_slice(c.as_bytes());
        }
        if let Some(addr) = self.remote {
            match addr.ip() {
                IpAddr::V4(ip) => {
                    b.put_u8(4);
                    b.put_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    b.put_u8(6);
                    b.put_slice(&ip.octets());
                }
            }
            b.put_u16(addr.port());
        }
        if let Some(u) = user {
            b.put_u8(u.len() as u8);
            b.put_slice(u.as_bytes());
        }
        b.freeze()
    }

    /// Reads an encoded record.
    pub fn decode(buf: &[u8]) -> Result<Self, LineageError> {
        let mut r = Cursor { buf, pos: 0 };
        let version = r.u8()?;
        if version != 1 {
            return Err(LineageError::UnknownVersion(version));
        }
        let protocol = match r.u8()? {
            1 => Protocol::Nats,
            2 => Protocol::Mqtt,
            3 => Protocol::Http,
            4 => Protocol::WebSocket,
            _ => return Err(LineageError::Invalid("protocol")),
        };
        let flags = r.u8()?;
        if flags & !0x0f != 0 {
            return Err(LineageError::Invalid("flags"));
        }
        let msg_id = u128::from_be_bytes(r.array()?);
        let trace_id = u128::from_be_bytes(r.array()?);
        let received_ns = u64::from_be_bytes(r.array()?);
        let conn_id = u64::from_be_bytes(r.array()?);
        let client = if flags & 2 != 0 {
            Some(Arc::from(r.string()?))
        } else {
            None
        };
        let remote = if flags & 4 != 0 {
            let ip = match r.u8()? {
                4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
                6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
                _ => return Err(LineageError::Invalid("address family")),
            };
            Some(SocketAddr::new(ip, u16::from_be_bytes(r.array()?)))
        } else {
            None
        };
        let user = if flags & 8 != 0 {
            Some(Arc::from(r.string()?))
        } else {
            None
        };
        Ok(LineageRecord {
            msg_id,
            trace_id,
            trace_from_producer: flags & 1 != 0,
            received_ns,
            protocol,
            conn_id,
            client,
            remote,
            user,
        })
    }

    /// The message id of an encoded record, without decoding the rest.
    pub fn msg_id_of(buf: &[u8]) -> Option<u128> {
        if buf.first() != Some(&1) {
            return None;
        }
        Some(u128::from_be_bytes(buf.get(3..19)?.try_into().ok()?))
    }

    /// When the engine received it.
    pub fn received(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.received_ns)
    }

    /// Renders the record as the `Junction-*` lineage headers (replacing any of the
    /// same name) for a consumer that opted in. `subject` is the stored message's.
    /// A `traceparent` is added only when the producer sent none: a producer's own is
    /// already among the headers.
    pub fn render(&self, subject: &str, headers: &mut Headers) {
        headers.insert(LINEAGE_MSG_ID, hex_id(self.msg_id));
        headers.insert(LINEAGE_PROTOCOL, protocol_name(self.protocol));
        headers.insert(LINEAGE_CONN_ID, self.conn_id.to_string());
        if let Some(c) = &self.client {
            headers.insert(LINEAGE_CLIENT, one_line(c));
        }
        if let Some(a) = &self.remote {
            headers.insert(LINEAGE_REMOTE, a.to_string());
        }
        if let Some(u) = &self.user {
            headers.insert(LINEAGE_USER, one_line(u));
        }
        headers.insert(LINEAGE_SUBJECT, subject);
        headers.insert(
            LINEAGE_RECEIVED,
            humantime::format_rfc3339_nanos(self.received()).to_string(),
        );
        if !self.trace_from_producer && headers.get(TRACEPARENT).is_none() {
            // The parent id is the low half of the message id: stable across
            // redeliveries, so a consumer sees the same context each time.
            headers.insert(
                TRACEPARENT,
                format!(
                    "00-{}-{:016x}-01",
                    hex_id(self.trace_id),
                    self.msg_id as u64
                ),
            );
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Renders the lineage section `lineage` of a message stored on `subject` into
/// `headers` (see [`LineageRecord::render`]); nothing when it is empty or unreadable.
pub fn render_lineage(lineage: &[u8], subject: &str, headers: &mut Option<Headers>) {
    if lineage.is_empty() {
        return;
    }
    if let Ok(r) = LineageRecord::decode(lineage) {
        r.render(subject, headers.get_or_insert_with(Headers::new));
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], LineageError> {
        let end = self.pos.checked_add(n).ok_or(LineageError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(LineageError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, LineageError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], LineageError> {
        self.take(N)?
            .try_into()
            .map_err(|_| LineageError::Truncated)
    }

    fn string(&mut self) -> Result<String, LineageError> {
        let n = usize::from(self.u8()?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| LineageError::Invalid("string"))
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
    /// Producer's name, if any (for HTTP, the caller's `User-Agent`).
    pub client: Option<String>,
    /// Producer's address (for HTTP, the caller's), when known.
    pub remote: Option<String>,
    /// The user the producer authenticated as, if any.
    pub user: Option<String>,
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

    fn sample() -> LineageRecord {
        LineageRecord {
            msg_id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            trace_from_producer: true,
            received_ns: 1_700_000_000_123_456_789,
            protocol: Protocol::Http,
            conn_id: 42,
            client: Some("curl/8.5.0".into()),
            remote: Some("127.0.0.1:50000".parse().unwrap()),
            user: Some("alice".into()),
        }
    }

    #[test]
    fn record_layout_byte_by_byte() {
        let r = LineageRecord {
            client: None,
            remote: None,
            user: None,
            ..sample()
        };
        let b = r.encode();
        assert_eq!(b.len(), FIXED);
        assert_eq!(b[0], 1, "version");
        assert_eq!(b[1], 3, "http");
        assert_eq!(b[2], 0b0001, "trace from producer, nothing optional");
        assert_eq!(&b[3..19], &r.msg_id.to_be_bytes());
        assert_eq!(&b[19..35], &r.trace_id.to_be_bytes());
        assert_eq!(&b[35..43], &r.received_ns.to_be_bytes());
        assert_eq!(&b[43..51], &42u64.to_be_bytes());
        assert_eq!(LineageRecord::decode(&b), Ok(r.clone()));
        assert_eq!(LineageRecord::msg_id_of(&b), Some(r.msg_id));

        let full = sample();
        let b = full.encode();
        assert_eq!(b[2], 0b1111);
        let mut tail = vec![10u8];
        tail.extend_from_slice(b"curl/8.5.0");
        tail.extend_from_slice(&[4, 127, 0, 0, 1]);
        tail.extend_from_slice(&50000u16.to_be_bytes());
        tail.push(5);
        tail.extend_from_slice(b"alice");
        assert_eq!(&b[FIXED..], &tail[..]);
        assert_eq!(LineageRecord::decode(&b), Ok(full));
    }

    #[test]
    fn record_round_trips_and_refuses_damage() {
        for protocol in [
            Protocol::Nats,
            Protocol::Mqtt,
            Protocol::Http,
            Protocol::WebSocket,
        ] {
            let r = LineageRecord {
                protocol,
                remote: Some("[::1]:4222".parse().unwrap()),
                client: Some(Arc::from("é".repeat(200))),
                ..sample()
            };
            let back = LineageRecord::decode(&r.encode()).unwrap();
            assert_eq!(back.protocol, protocol);
            assert_eq!(back.remote, r.remote);
            // Cut to 255 bytes at a character boundary.
            assert_eq!(back.client.as_deref(), Some("é".repeat(127).as_str()));
        }
        let b = sample().encode();
        for n in 0..b.len() {
            assert!(LineageRecord::decode(&b[..n]).is_err(), "cut at {n}");
        }
        let mut v = b.to_vec();
        v[0] = 9;
        assert_eq!(
            LineageRecord::decode(&v),
            Err(LineageError::UnknownVersion(9))
        );
        let mut v = b.to_vec();
        v[1] = 77;
        assert_eq!(
            LineageRecord::decode(&v),
            Err(LineageError::Invalid("protocol"))
        );
    }

    #[test]
    fn renders_the_lineage_headers() {
        let mut h = Some(Headers::new());
        render_lineage(&sample().encode(), "a.b", &mut h);
        let h = h.unwrap();
        assert_eq!(
            h.get(LINEAGE_MSG_ID),
            Some("0123456789abcdef0011223344556677")
        );
        assert_eq!(h.get(LINEAGE_PROTOCOL), Some("http"));
        assert_eq!(h.get(LINEAGE_CONN_ID), Some("42"));
        assert_eq!(h.get(LINEAGE_CLIENT), Some("curl/8.5.0"));
        assert_eq!(h.get(LINEAGE_REMOTE), Some("127.0.0.1:50000"));
        assert_eq!(h.get(LINEAGE_USER), Some("alice"));
        assert_eq!(h.get(LINEAGE_SUBJECT), Some("a.b"));
        assert_eq!(
            h.get(LINEAGE_RECEIVED),
            Some("2023-11-14T22:13:20.123456789Z")
        );
        // The producer's own traceparent is among its headers, not rendered again.
        assert_eq!(h.get(TRACEPARENT), None);

        let own = LineageRecord {
            trace_from_producer: false,
            ..sample()
        };
        let mut h = None;
        render_lineage(&own.encode(), "a.b", &mut h);
        let tp = h.unwrap().get(TRACEPARENT).map(str::to_owned).unwrap();
        assert_eq!(
            tp,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0011223344556677-01"
        );
        assert_eq!(trace_id_of(&tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(
            parse_hex_id("4bf92f3577b34da6a3ce929d0e0e4736"),
            Some(own.trace_id)
        );
        assert_eq!(parse_hex_id("xyz"), None);
    }
}
