//! Frames on an inter-node link: `u32 length | u8 kind | body`, big-endian, with
//! strings as `u16 length | bytes` and blobs as `u32 length | bytes`.
//!
//! Sans-I/O: [`Frame::encode`] appends to a buffer and [`Frame::decode`] reads one
//! frame body; a malformed frame is an error that closes the link, never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use junction_api::{Headers, Message, Subject};

/// Largest frame accepted from a peer (a message of up to 64 MiB plus its framing).
pub const MAX_FRAME: usize = 65 * 1024 * 1024;

/// Wire version; a peer with another one is refused at the handshake.
pub const VERSION: u16 = 2;

/// A subscription interest as it crosses a link.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interest {
    /// Tenant (NATS account) of the subscription.
    pub tenant: String,
    /// Subject filter, NATS syntax.
    pub filter: Bytes,
    /// Queue group, if any.
    pub queue: Option<Bytes>,
}

/// A message forwarded to a peer for its local subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Tenant (NATS account) it was published in.
    pub tenant: String,
    /// The message as published.
    pub message: Message,
    /// Published by an MQTT client (its subscribers keep the MQTT markers).
    pub origin_mqtt: bool,
    /// Deliver to the peer's plain subscribers.
    pub plain: bool,
    /// Queue groups of which the peer delivers to one local member each.
    pub queues: Vec<Bytes>,
    /// Deliver to the subscriptions matching this subject, not the message's
    /// own (a pull delivery to its requester's inbox).
    pub route: Option<Subject>,
}

/// A message to forward, borrowed (encoding needs no copy of the message).
#[derive(Debug, Clone, Copy)]
pub struct ForwardRef<'a> {
    /// Tenant (NATS account) it was published in.
    pub tenant: &'a str,
    /// The message as published.
    pub message: &'a Message,
    /// Published by an MQTT client.
    pub origin_mqtt: bool,
    /// Deliver to the peer's plain subscribers.
    pub plain: bool,
    /// Queue groups of which the peer delivers to one local member each.
    pub queues: &'a [Bytes],
    /// Deliver to the subscriptions matching this subject, not the message's own.
    pub route: Option<&'a Subject>,
}

/// What a node says about itself when a link opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Wire version ([`VERSION`]).
    pub version: u16,
    /// Cluster name.
    pub cluster: String,
    /// Node name.
    pub node: String,
    /// The address peers dial to reach this node's cluster listener.
    pub route_url: String,
    /// Its client URLs (NATS `host:port`), for clients' `connect_urls`.
    pub client_urls: Vec<String>,
    /// Cluster addresses of every peer it knows, so that the mesh completes.
    pub routes: Vec<String>,
    /// Its HTTP API address (`host:port`; empty: none), where the other nodes'
    /// HTTP front-ends pass requests about the stations it holds.
    pub http_url: String,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The first frame each side sends.
    Hello(Hello),
    /// More cluster addresses to dial.
    Routes(Vec<String>),
    /// Interest added (RS+ in nats-server's route protocol).
    Sub(Interest),
    /// Interest withdrawn (RS-).
    Unsub(Interest),
    /// A message for the peer's subscribers.
    Msg(Forward),
    /// Liveness probe; answered with [`Frame::Pong`].
    Ping,
    /// Answer to [`Frame::Ping`].
    Pong,
    /// A request to the peer (Raft traffic, admin calls forwarded to the meta
    /// leader), answered by a [`Frame::Reply`] with the same id.
    Call {
        /// Chosen by the caller, unique per node while the call is pending.
        id: u64,
        /// What is asked (the meta group's call kinds).
        kind: u8,
        /// The request, encoded by the caller.
        body: Bytes,
    },
    /// The answer to a [`Frame::Call`]: `ok` false carries an error text.
    Reply {
        /// The call's id.
        id: u64,
        /// The call succeeded.
        ok: bool,
        /// The answer, or the error text.
        body: Bytes,
    },
}

/// A frame that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cluster frame: {0}")]
pub struct Malformed(pub &'static str);

const HELLO: u8 = 1;
const ROUTES: u8 = 2;
const SUB: u8 = 3;
const UNSUB: u8 = 4;
const MSG: u8 = 5;
const PING: u8 = 6;
const PONG: u8 = 7;
const CALL: u8 = 8;
const REPLY: u8 = 9;

fn put_str(b: &mut BytesMut, s: &[u8]) {
    let s = &s[..s.len().min(usize::from(u16::MAX))];
    b.put_u16(s.len() as u16);
    b.put_slice(s);
}

fn put_blob(b: &mut BytesMut, s: &[u8]) {
    b.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    b.put_slice(s);
}

fn put_list(b: &mut BytesMut, items: &[String]) {
    b.put_u16(items.len().min(usize::from(u16::MAX)) as u16);
    for s in items.iter().take(usize::from(u16::MAX)) {
        put_str(b, s.as_bytes());
    }
}

fn put_interest(b: &mut BytesMut, i: &Interest) {
    put_str(b, i.tenant.as_bytes());
    put_str(b, &i.filter);
    match &i.queue {
        Some(q) => {
            b.put_u8(1);
            put_str(b, q);
        }
        None => b.put_u8(0),
    }
}

struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), Malformed> {
        if self.0.remaining() < n {
            Err(Malformed("truncated"))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }
    fn u16(&mut self) -> Result<u16, Malformed> {
        self.need(2)?;
        Ok(self.0.get_u16())
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        self.need(4)?;
        Ok(self.0.get_u32())
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        self.need(8)?;
        Ok(self.0.get_u64())
    }
    fn bytes(&mut self, n: usize) -> Result<Bytes, Malformed> {
        self.need(n)?;
        Ok(self.0.split_to(n))
    }
    fn str_bytes(&mut self) -> Result<Bytes, Malformed> {
        let n = usize::from(self.u16()?);
        self.bytes(n)
    }
    fn string(&mut self) -> Result<String, Malformed> {
        String::from_utf8(self.str_bytes()?.to_vec()).map_err(|_| Malformed("utf-8"))
    }
    fn blob(&mut self) -> Result<Bytes, Malformed> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }
    fn list(&mut self) -> Result<Vec<String>, Malformed> {
        let n = self.u16()?;
        (0..n).map(|_| self.string()).collect()
    }
    fn flag(&mut self) -> Result<bool, Malformed> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed("flag")),
        }
    }
    fn interest(&mut self) -> Result<Interest, Malformed> {
        let tenant = self.string()?;
        let filter = self.str_bytes()?;
        let queue = if self.flag()? {
            Some(self.str_bytes()?)
        } else {
            None
        };
        Ok(Interest {
            tenant,
            filter,
            queue,
        })
    }
}

/// Appends a message frame, with its length prefix, to `b`.
pub fn encode_msg(b: &mut BytesMut, m: ForwardRef<'_>) {
    let start = b.len();
    b.put_u32(0);
    encode_msg_body(b, m);
    let len = (b.len() - start - 4) as u32;
    b[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn encode_msg_body(b: &mut BytesMut, m: ForwardRef<'_>) {
    b.put_u8(MSG);
    put_str(b, m.tenant.as_bytes());
    put_str(b, m.message.subject.as_bytes());
    match &m.message.reply {
        Some(r) => {
            b.put_u8(1);
            put_str(b, r.as_bytes());
        }
        None => b.put_u8(0),
    }
    match &m.message.headers {
        Some(h) => {
            b.put_u8(1);
            let pairs: Vec<(&str, &str)> = h.iter().take(usize::from(u16::MAX)).collect();
            b.put_u16(pairs.len() as u16);
            for (n, v) in pairs {
                put_str(b, n.as_bytes());
                put_blob(b, v.as_bytes());
            }
            match h.status() {
                Some(code) => {
                    b.put_u8(1);
                    b.put_u16(code);
                    put_str(b, h.description().unwrap_or("").as_bytes());
                }
                None => b.put_u8(0),
            }
        }
        None => b.put_u8(0),
    }
    b.put_u8(u8::from(m.origin_mqtt));
    b.put_u8(u8::from(m.plain));
    b.put_u16(m.queues.len().min(usize::from(u16::MAX)) as u16);
    for q in m.queues.iter().take(usize::from(u16::MAX)) {
        put_str(b, q);
    }
    match m.route {
        Some(r) => {
            b.put_u8(1);
            put_str(b, r.as_bytes());
        }
        None => b.put_u8(0),
    }
    put_blob(b, m.payload_bytes());
}

/// A message as a call's body carries it (the message frame's encoding, without
/// the length prefix); [`message_from`] reads it back.
pub fn message_bytes(m: ForwardRef<'_>) -> Bytes {
    let mut b = BytesMut::new();
    encode_msg_body(&mut b, m);
    b.freeze()
}

/// Reads a message written by [`message_bytes`].
pub fn message_from(body: Bytes) -> Result<Forward, Malformed> {
    match Frame::decode(body)? {
        Frame::Msg(f) => Ok(f),
        _ => Err(Malformed("not a message")),
    }
}

impl ForwardRef<'_> {
    fn payload_bytes(&self) -> &Bytes {
        &self.message.payload
    }
}

impl Frame {
    /// Appends the frame, with its length prefix, to `b`.
    pub fn encode(&self, b: &mut BytesMut) {
        let start = b.len();
        b.put_u32(0);
        match self {
            Frame::Hello(h) => {
                b.put_u8(HELLO);
                b.put_u16(h.version);
                put_str(b, h.cluster.as_bytes());
                put_str(b, h.node.as_bytes());
                put_str(b, h.route_url.as_bytes());
                put_list(b, &h.client_urls);
                put_list(b, &h.routes);
                put_str(b, h.http_url.as_bytes());
            }
            Frame::Routes(routes) => {
                b.put_u8(ROUTES);
                put_list(b, routes);
            }
            Frame::Sub(i) => {
                b.put_u8(SUB);
                put_interest(b, i);
            }
            Frame::Unsub(i) => {
                b.put_u8(UNSUB);
                put_interest(b, i);
            }
            Frame::Msg(m) => encode_msg_body(
                b,
                ForwardRef {
                    tenant: &m.tenant,
                    message: &m.message,
                    origin_mqtt: m.origin_mqtt,
                    plain: m.plain,
                    queues: &m.queues,
                    route: m.route.as_ref(),
                },
            ),
            Frame::Ping => b.put_u8(PING),
            Frame::Pong => b.put_u8(PONG),
            Frame::Call { id, kind, body } => {
                b.put_u8(CALL);
                b.put_u64(*id);
                b.put_u8(*kind);
                put_blob(b, body);
            }
            Frame::Reply { id, ok, body } => {
                b.put_u8(REPLY);
                b.put_u64(*id);
                b.put_u8(u8::from(*ok));
                put_blob(b, body);
            }
        }
        let len = (b.len() - start - 4) as u32;
        b[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Reads one frame body (without its length prefix).
    pub fn decode(body: Bytes) -> Result<Frame, Malformed> {
        let mut r = Reader(body);
        let frame = match r.u8()? {
            HELLO => Frame::Hello(Hello {
                version: r.u16()?,
                cluster: r.string()?,
                node: r.string()?,
                route_url: r.string()?,
                client_urls: r.list()?,
                routes: r.list()?,
                http_url: r.string()?,
            }),
            ROUTES => Frame::Routes(r.list()?),
            SUB => Frame::Sub(r.interest()?),
            UNSUB => Frame::Unsub(r.interest()?),
            MSG => {
                let tenant = r.string()?;
                let subject = Subject::new(r.str_bytes()?).map_err(|_| Malformed("subject"))?;
                let reply = if r.flag()? {
                    Some(Subject::new(r.str_bytes()?).map_err(|_| Malformed("reply"))?)
                } else {
                    None
                };
                let headers = if r.flag()? {
                    let n = r.u16()?;
                    let mut h = Headers::new();
                    for _ in 0..n {
                        let name = r.string()?;
                        let value = String::from_utf8(r.blob()?.to_vec())
                            .map_err(|_| Malformed("utf-8"))?;
                        h.append(name, value);
                    }
                    if r.flag()? {
                        let code = r.u16()?;
                        let d = r.string()?;
                        h.set_status(Some(code), (!d.is_empty()).then_some(d));
                    }
                    Some(h)
                } else {
                    None
                };
                let origin_mqtt = r.flag()?;
                let plain = r.flag()?;
                let n = r.u16()?;
                let queues = (0..n)
                    .map(|_| r.str_bytes())
                    .collect::<Result<Vec<_>, _>>()?;
                let route = if r.flag()? {
                    Some(Subject::new(r.str_bytes()?).map_err(|_| Malformed("route"))?)
                } else {
                    None
                };
                let payload = r.blob()?;
                Frame::Msg(Forward {
                    tenant,
                    message: Message {
                        subject,
                        reply,
                        headers,
                        payload,
                    },
                    origin_mqtt,
                    plain,
                    queues,
                    route,
                })
            }
            PING => Frame::Ping,
            PONG => Frame::Pong,
            CALL => Frame::Call {
                id: r.u64()?,
                kind: r.u8()?,
                body: r.blob()?,
            },
            REPLY => Frame::Reply {
                id: r.u64()?,
                ok: r.flag()?,
                body: r.blob()?,
            },
            _ => return Err(Malformed("kind")),
        };
        if r.0.has_remaining() {
            return Err(Malformed("trailing bytes"));
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) {
        let mut b = BytesMut::new();
        f.encode(&mut b);
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        assert_eq!(len, b.len() - 4);
        let body = b.freeze().slice(4..);
        assert_eq!(Frame::decode(body.clone()).unwrap(), f);
        // Every truncation is an error, never a panic.
        for cut in 0..body.len() {
            assert!(Frame::decode(body.slice(..cut)).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn every_frame_round_trips_and_truncations_are_refused() {
        round_trip(Frame::Hello(Hello {
            version: VERSION,
            cluster: "c".into(),
            node: "n1".into(),
            route_url: "127.0.0.1:7001".into(),
            client_urls: vec!["127.0.0.1:4222".into()],
            http_url: "127.0.0.1:8080".into(),
            routes: vec!["127.0.0.1:7002".into(), "127.0.0.1:7003".into()],
        }));
        round_trip(Frame::Routes(vec!["a:1".into()]));
        let i = Interest {
            tenant: "$G".into(),
            filter: Bytes::from_static(b"orders.>"),
            queue: Some(Bytes::from_static(b"workers")),
        };
        round_trip(Frame::Sub(i.clone()));
        round_trip(Frame::Unsub(Interest { queue: None, ..i }));
        let mut headers = Headers::with_status(503, Some("No Responders"));
        headers.append("a", "b");
        round_trip(Frame::Msg(Forward {
            tenant: "$G".into(),
            message: Message {
                subject: Subject::new("orders.eu").unwrap(),
                reply: Some(Subject::new("_INBOX.x.1").unwrap()),
                headers: Some(headers),
                payload: Bytes::from_static(b"hello"),
            },
            origin_mqtt: true,
            plain: true,
            queues: vec![Bytes::from_static(b"q")],
            route: Some(Subject::new("_INBOX.y.2").unwrap()),
        }));
        round_trip(Frame::Msg(Forward {
            tenant: "$G".into(),
            message: Message::new(Subject::new("a").unwrap(), Bytes::new()),
            origin_mqtt: false,
            plain: false,
            queues: vec![],
            route: None,
        }));
        round_trip(Frame::Ping);
        round_trip(Frame::Pong);
        round_trip(Frame::Call {
            id: 7,
            kind: 3,
            body: Bytes::from_static(b"{}"),
        });
        round_trip(Frame::Reply {
            id: u64::MAX,
            ok: false,
            body: Bytes::from_static(b"no leader"),
        });
        assert!(Frame::decode(Bytes::from_static(&[99])).is_err());
        assert!(Frame::decode(Bytes::from_static(&[PING, 0])).is_err());
    }
}
