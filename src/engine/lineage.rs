//! Lineage: stamping stored messages with reserved `Junction-*` headers and a W3C
//! `traceparent`, remembering each message's path (producer → station → group
//! deliveries, and republishes that keep the `traceparent`), and counting the
//! station-level graph.
//!
//! Only messages a station stores are stamped (and so every delivery from a
//! station carries lineage). Core fan-out passes messages through as published,
//! minus any reserved header a client tried to set: a NATS core subscriber gets the
//! bytes the publisher sent, as with nats-server, and the core path pays nothing.
//!
//! The path index is in memory and bounded ([`MAX_RECORDS`] messages, oldest
//! forgotten first); the lineage headers themselves are stored with each message
//! and survive restarts.

use ahash::AHashMap;
use junction_api::{
    ClientRecord, FetchEnd, FetchSink, Headers, LINEAGE_CLIENT, LINEAGE_CONN_ID, LINEAGE_MSG_ID,
    LINEAGE_PROTOCOL, LINEAGE_RECEIVED, LINEAGE_SUBJECT, LineageDelivery, LineageEdge,
    LineageGraph, LineageMessage, LineageNodeKind, LineageTrace, Message, Protocol, TRACEPARENT,
    TenantId, is_reserved_header, trace_id_of,
};
use parking_lot::Mutex;
use rand::Rng;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most messages whose path is remembered.
pub const MAX_RECORDS: usize = 100_000;
/// Most deliveries remembered per message.
const MAX_DELIVERIES: usize = 32;
/// Seconds over which graph rates are averaged.
const RATE_WINDOW: usize = 60;

/// The protocol's name in lineage headers.
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Nats => "nats",
        Protocol::Mqtt => "mqtt",
        Protocol::Http => "http",
        Protocol::WebSocket => "websocket",
        _ => "other",
    }
}

/// `message` without reserved headers, copied only when it had some.
pub fn strip_reserved(message: &Message) -> Cow<'_, Message> {
    let Some(h) = &message.headers else {
        return Cow::Borrowed(message);
    };
    if !h.iter().any(|(n, _)| is_reserved_header(n)) {
        return Cow::Borrowed(message);
    }
    let mut clean = Headers::new();
    clean.set_status(h.status(), h.description().map(str::to_owned));
    for (n, v) in h.iter().filter(|(n, _)| !is_reserved_header(n)) {
        clean.append(n, v);
    }
    Cow::Owned(Message {
        subject: message.subject.clone(),
        reply: message.reply.clone(),
        headers: (!clean.is_empty()).then_some(clean),
        payload: message.payload.clone(),
    })
}

fn hex_id(bytes: usize) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(bytes * 2);
    for _ in 0..bytes {
        let b: u8 = rng.random();
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Clone)]
struct Edge {
    total: u64,
    /// (unix second, messages in it), indexed by second modulo the window.
    buckets: [(u64, u64); RATE_WINDOW],
}

impl Edge {
    fn new() -> Self {
        Edge {
            total: 0,
            buckets: [(0, 0); RATE_WINDOW],
        }
    }

    fn add(&mut self, now: u64) {
        self.total += 1;
        let b = &mut self.buckets[(now as usize) % RATE_WINDOW];
        if b.0 != now {
            *b = (now, 0);
        }
        b.1 += 1;
    }

    fn rate(&self, now: u64) -> f64 {
        let recent: u64 = self
            .buckets
            .iter()
            .filter(|(sec, _)| *sec + (RATE_WINDOW as u64) > now && *sec <= now)
            .map(|(_, n)| n)
            .sum();
        recent as f64 / RATE_WINDOW as f64
    }
}

struct Record {
    tenant: TenantId,
    message: LineageMessage,
    producer: String,
}

#[derive(Default)]
struct Inner {
    records: AHashMap<String, Record>,
    order: VecDeque<String>,
    traces: AHashMap<String, Vec<String>>,
    edges: AHashMap<(TenantId, String, String), Edge>,
    nodes: AHashMap<(TenantId, String), (LineageNodeKind, String)>,
}

impl Inner {
    fn evict(&mut self) {
        while self.order.len() > MAX_RECORDS {
            let Some(id) = self.order.pop_front() else {
                return;
            };
            if let Some(r) = self.records.remove(&id)
                && let Some(ids) = self.traces.get_mut(&r.message.trace_id)
            {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.traces.remove(&r.message.trace_id);
                }
            }
        }
    }

    fn count(
        &mut self,
        tenant: &TenantId,
        from: (&str, LineageNodeKind, &str),
        to: (&str, LineageNodeKind, &str),
    ) {
        let now = unix_secs(SystemTime::now());
        for (id, kind, name) in [from, to] {
            self.nodes
                .entry((tenant.clone(), id.to_string()))
                .or_insert_with(|| (kind, name.to_string()));
        }
        self.edges
            .entry((tenant.clone(), from.0.to_string(), to.0.to_string()))
            .or_insert_with(Edge::new)
            .add(now);
    }
}

/// The headers [`LineageLog::stamp`] sets itself.
const STAMPED: [&str; 6] = [
    LINEAGE_MSG_ID,
    LINEAGE_PROTOCOL,
    LINEAGE_CONN_ID,
    LINEAGE_CLIENT,
    LINEAGE_SUBJECT,
    LINEAGE_RECEIVED,
];

/// The engine's lineage index.
#[derive(Default)]
pub(crate) struct LineageLog {
    inner: Mutex<Inner>,
}

impl LineageLog {
    /// Stamps the copy of `message` that a station stores: the producer's headers
    /// without reserved ones, the lineage headers, and a `traceparent` (kept when
    /// valid, created otherwise). Remembers the message; returns it and its id.
    pub fn stamp(&self, from: &ClientRecord, message: &Message) -> (Message, String) {
        let received = SystemTime::now();
        let msg_id = hex_id(16);
        let protocol = protocol_name(from.protocol);
        let client = from.name().filter(|n| !n.is_empty());
        let mut h = Headers::new();
        let mut trace = None;
        if let Some(original) = &message.headers {
            h.set_status(original.status(), original.description().map(str::to_owned));
            // Reserved headers a front-end vouches for (MQTT's origin topic) are kept;
            // the ones stamped below are always the engine's own.
            let vouched = from.protocol == junction_api::Protocol::Mqtt;
            for (n, v) in original.iter() {
                if is_reserved_header(n)
                    && (!vouched || STAMPED.iter().any(|s| s.eq_ignore_ascii_case(n)))
                {
                    continue;
                }
                if n.eq_ignore_ascii_case(TRACEPARENT) {
                    if trace.is_none()
                        && let Some(t) = trace_id_of(v)
                    {
                        trace = Some(t.to_string());
                        // W3C spells the name in lower case.
                        h.append(TRACEPARENT, v.trim());
                    }
                    continue;
                }
                h.append(n, v);
            }
        }
        let trace_id = match trace {
            Some(t) => t,
            None => {
                let t = hex_id(16);
                h.append(TRACEPARENT, format!("00-{t}-{}-01", hex_id(8)));
                t
            }
        };
        let subject = message.subject.to_str_lossy().into_owned();
        h.append(LINEAGE_MSG_ID, msg_id.clone());
        h.append(LINEAGE_PROTOCOL, protocol);
        h.append(LINEAGE_CONN_ID, from.id.0.to_string());
        if let Some(c) = &client {
            h.append(LINEAGE_CLIENT, c.replace(['\r', '\n'], " "));
        }
        h.append(LINEAGE_SUBJECT, subject.clone());
        h.append(
            LINEAGE_RECEIVED,
            humantime::format_rfc3339_nanos(received).to_string(),
        );
        let producer = format!(
            "producer:{protocol}:{}",
            client.as_deref().unwrap_or("anonymous")
        );
        let record = Record {
            tenant: from.tenant.clone(),
            producer,
            message: LineageMessage {
                msg_id: msg_id.clone(),
                trace_id: trace_id.clone(),
                protocol: protocol.to_string(),
                conn_id: from.id.0,
                client,
                subject,
                received,
                station: None,
                seq: None,
                deliveries: Vec::new(),
            },
        };
        {
            let mut inner = self.inner.lock();
            inner
                .traces
                .entry(trace_id)
                .or_default()
                .push(msg_id.clone());
            inner.order.push_back(msg_id.clone());
            inner.records.insert(msg_id.clone(), record);
            inner.evict();
        }
        let stamped = Message {
            subject: message.subject.clone(),
            reply: message.reply.clone(),
            headers: Some(h),
            payload: message.payload.clone(),
        };
        (stamped, msg_id)
    }

    /// The message `msg_id` was stored as `station`/`seq`.
    pub fn stored(&self, msg_id: &str, station: &str, seq: u64) {
        let mut inner = self.inner.lock();
        let Some(r) = inner.records.get_mut(msg_id) else {
            return;
        };
        r.message.station = Some(station.to_string());
        r.message.seq = Some(seq);
        let tenant = r.tenant.clone();
        let producer = r.producer.clone();
        let name = producer
            .strip_prefix("producer:")
            .unwrap_or(&producer)
            .replacen(':', " ", 1);
        let station_id = format!("station:{station}");
        inner.count(
            &tenant,
            (&producer, LineageNodeKind::Producer, &name),
            (&station_id, LineageNodeKind::Station, station),
        );
    }

    /// A group delivered a message.
    pub fn delivered(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
        headers: Option<&Headers>,
        delivery_count: u32,
    ) {
        let msg_id = headers.and_then(|h| h.get(LINEAGE_MSG_ID));
        let mut inner = self.inner.lock();
        if let Some(r) = msg_id.and_then(|id| inner.records.get_mut(id))
            && r.message.deliveries.len() < MAX_DELIVERIES
        {
            r.message.deliveries.push(LineageDelivery {
                group: group.to_string(),
                time: SystemTime::now(),
                delivery_count,
            });
        }
        let station_id = format!("station:{station}");
        let group_id = format!("group:{station}/{group}");
        inner.count(
            tenant,
            (&station_id, LineageNodeKind::Station, station),
            (&group_id, LineageNodeKind::Group, group),
        );
    }

    /// The path of the trace that `id` (a message id or a trace id) belongs to.
    pub fn trace(&self, tenant: &TenantId, id: &str) -> Option<LineageTrace> {
        let inner = self.inner.lock();
        let trace_id = match inner.records.get(id) {
            Some(r) if r.tenant == *tenant => r.message.trace_id.clone(),
            _ => id.to_string(),
        };
        let mut messages: Vec<LineageMessage> = inner
            .traces
            .get(&trace_id)?
            .iter()
            .filter_map(|m| inner.records.get(m))
            .filter(|r| r.tenant == *tenant)
            .map(|r| r.message.clone())
            .collect();
        if messages.is_empty() {
            return None;
        }
        messages.sort_by_key(|m| m.received);
        Some(LineageTrace { trace_id, messages })
    }

    /// The station-level graph of `tenant`.
    pub fn graph(&self, tenant: &TenantId) -> LineageGraph {
        let inner = self.inner.lock();
        let now = unix_secs(SystemTime::now());
        let mut nodes: Vec<(String, LineageNodeKind, String)> = inner
            .nodes
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, id), (kind, name))| (id.clone(), *kind, name.clone()))
            .collect();
        nodes.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let mut edges: Vec<LineageEdge> = inner
            .edges
            .iter()
            .filter(|((t, _, _), _)| t == tenant)
            .map(|((_, from, to), e)| LineageEdge {
                from: from.clone(),
                to: to.clone(),
                messages: e.total,
                rate: e.rate(now),
            })
            .collect();
        edges.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        LineageGraph { nodes, edges }
    }
}

/// A pull request's sink that records each delivery's lineage, then passes it on.
pub(crate) struct TracedSink {
    pub inner: Arc<dyn FetchSink>,
    pub lineage: Arc<LineageLog>,
    pub tenant: TenantId,
    pub station: String,
    pub group: String,
}

impl FetchSink for TracedSink {
    fn deliver(&self, delivered: &junction_api::Delivered) -> bool {
        let ok = self.inner.deliver(delivered);
        if ok {
            self.lineage.delivered(
                &self.tenant,
                &self.station,
                &self.group,
                delivered.message.headers.as_ref(),
                delivered.delivery_count,
            );
        }
        ok
    }

    fn end(&self, end: FetchEnd) {
        self.inner.end(end);
    }

    fn heartbeat(&self) {
        self.inner.heartbeat();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use junction_api::{ClientId, NewClient, Subject};

    fn client() -> ClientRecord {
        ClientRecord::new(
            ClientId(7),
            TenantId::default_tenant(),
            &NewClient {
                protocol: Protocol::Http,
                remote: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            },
        )
    }

    #[test]
    fn stamps_strips_and_keeps_a_valid_traceparent() {
        let log = LineageLog::default();
        let mut h = Headers::new();
        h.append("Junction-Msg-Id", "forged");
        h.append("junction-dls-reason", "forged");
        h.append("X-App", "1");
        h.append(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let m = Message {
            subject: Subject::new("a.b".to_string()).unwrap(),
            reply: None,
            headers: Some(h),
            payload: bytes::Bytes::from_static(b"x"),
        };
        let (stamped, id) = log.stamp(&client(), &m);
        let h = stamped.headers.unwrap();
        assert_eq!(h.get(LINEAGE_MSG_ID), Some(id.as_str()));
        assert_eq!(h.get_all("Junction-Msg-Id").count(), 1);
        assert!(h.get("Junction-Dls-Reason").is_none());
        assert_eq!(h.get("X-App"), Some("1"));
        assert_eq!(h.get(LINEAGE_PROTOCOL), Some("http"));
        assert_eq!(h.get(LINEAGE_CONN_ID), Some("7"));
        assert_eq!(h.get(LINEAGE_SUBJECT), Some("a.b"));
        assert_eq!(
            h.get(TRACEPARENT),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        log.stored(&id, "s", 1);
        let t = log.trace(&TenantId::default_tenant(), &id).unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.messages[0].seq, Some(1));

        let stripped = strip_reserved(&m);
        assert!(matches!(stripped, Cow::Owned(_)));
        let sh = stripped.headers.clone().unwrap();
        assert_eq!(sh.len(), 2);
    }

    #[test]
    fn creates_a_traceparent_when_missing_or_invalid() {
        let log = LineageLog::default();
        let mut h = Headers::new();
        h.append("traceparent", "nonsense");
        let m = Message {
            subject: Subject::new("a".to_string()).unwrap(),
            reply: None,
            headers: Some(h),
            payload: bytes::Bytes::new(),
        };
        let (stamped, _) = log.stamp(&client(), &m);
        let h = stamped.headers.unwrap();
        let tp: Vec<&str> = h.get_all("traceparent").collect();
        assert_eq!(tp.len(), 1);
        assert!(trace_id_of(tp[0]).is_some(), "{tp:?}");
    }
}
