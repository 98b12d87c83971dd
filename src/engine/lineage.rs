//! Lineage: the compact binary record ([`LineageRecord`]) the engine keeps beside
//! every stored message (the storage record's lineage section), the index of
//! message paths (producer → station → group deliveries, and republishes that keep
//! the producer's `traceparent`), and the station-level graph.
//!
//! The engine never writes lineage into a message's headers: every consumer gets
//! exactly the headers its producer sent, and the producer's own `traceparent`
//! travels on as one of them (its trace id becomes the message's). A consumer that
//! opts in (a group's `lineage_headers`, the HTTP `Junction-Lineage` request
//! header) gets the record rendered as `Junction-*` headers on delivery.
//!
//! The path index is bounded ([`MAX_RECORDS`] messages, oldest forgotten first) and
//! survives a restart: [`LineageLog::restore`] refills it from the lineage sections
//! of the newest stored records (see `StationEngine::rebuild_lineage`). Deliveries
//! to groups are remembered in memory only; the producer → station edges of the
//! graph are counted again from the restored records.

use ahash::AHashMap;
use junction_api::{
    ClientRecord, FetchEnd, FetchSink, Headers, LineageDelivery, LineageEdge, LineageGraph,
    LineageMessage, LineageNodeKind, LineageRecord, LineageTrace, Message, TRACEPARENT, TenantId,
    hex_id, is_reserved_header, parse_hex_id, protocol_name, trace_id_of,
};
use parking_lot::Mutex;
use rand::Rng;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most messages whose path is remembered.
///
/// Each costs about 400 bytes of memory. 100,000 made the index the broker's
/// largest memory user (over 100 MiB at its peak, measured with heaptrack during
/// the station publish benchmark); older messages keep their lineage on disk,
/// beside the message, where `Junction-Lineage: true` reads it.
pub const MAX_RECORDS: usize = 16_384;
/// Most deliveries remembered per message.
const MAX_DELIVERIES: usize = 32;
/// Seconds over which graph rates are averaged.
const RATE_WINDOW: usize = 60;

/// `message` without reserved headers, copied only when it had some.
pub fn strip_reserved(message: &Message) -> Cow<'_, Message> {
    strip(message, is_reserved_header)
}

/// The headers the MQTT front-end sets on what its clients publish, so that it can
/// honour No Local and trust its own `Mqtt-*` headers on the way out. They are the
/// front-end's, not the producer's: no consumer of another protocol sees them, and
/// stations other than the front-end's own do not store them (the lineage record
/// says the same thing).
pub const MQTT_MARKERS: [&str; 3] = [
    "Junction-Origin-Protocol",
    "Junction-Client-Name",
    "Junction-Origin-Topic",
];

fn is_mqtt_marker(name: &str) -> bool {
    MQTT_MARKERS.iter().any(|m| m.eq_ignore_ascii_case(name))
}

/// `message` without the MQTT front-end's markers, copied only when it had some.
pub fn strip_mqtt_markers(message: &Message) -> Cow<'_, Message> {
    strip(message, is_mqtt_marker)
}

fn strip(message: &Message, drop: impl Fn(&str) -> bool) -> Cow<'_, Message> {
    let Some(h) = &message.headers else {
        return Cow::Borrowed(message);
    };
    if !h.iter().any(|(n, _)| drop(n)) {
        return Cow::Borrowed(message);
    }
    let mut clean = Headers::new();
    clean.set_status(h.status(), h.description().map(str::to_owned));
    for (n, v) in h.iter().filter(|(n, _)| !drop(n)) {
        clean.append(n, v);
    }
    Cow::Owned(Message {
        subject: message.subject.clone(),
        reply: message.reply.clone(),
        headers: (!clean.is_empty()).then_some(clean),
        payload: message.payload.clone(),
    })
}

fn random_id() -> u128 {
    loop {
        let id: u128 = rand::rng().random();
        if id != 0 {
            return id;
        }
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Who published, as lineage records it. HTTP requests publish through one gateway
/// client, so the HTTP front-end names each caller on a per-request record (see
/// [`junction_api::ClientRecord::for_caller`]).
fn producer_of(from: &ClientRecord) -> (Option<String>, Option<SocketAddr>, Option<String>) {
    let (name, user) = from.name_and_user();
    (
        name.filter(|n| !n.is_empty()),
        Some(from.remote),
        user.filter(|u| !u.is_empty()),
    )
}

/// The graph node of a record's producer: `producer:<protocol>:<name>`, the name
/// being the client name, else the caller's IP address, else `anonymous`.
fn producer_node(r: &LineageRecord) -> String {
    let name = match (&r.client, &r.remote) {
        (Some(c), _) => c.clone(),
        (None, Some(a)) => a.ip().to_string(),
        (None, None) => "anonymous".to_string(),
    };
    format!("producer:{}:{name}", protocol_name(r.protocol))
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
        if b.0 > now {
            // An older message (restored at start-up): counted, not in the rate.
            return;
        }
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

struct Entry {
    tenant: TenantId,
    record: LineageRecord,
    subject: String,
    station: Option<Arc<str>>,
    seq: Option<u64>,
    deliveries: Vec<LineageDelivery>,
}

impl Entry {
    fn message(&self) -> LineageMessage {
        let r = &self.record;
        LineageMessage {
            msg_id: hex_id(r.msg_id),
            trace_id: hex_id(r.trace_id),
            protocol: protocol_name(r.protocol).to_string(),
            conn_id: r.conn_id,
            client: r.client.clone(),
            remote: r.remote.map(|a| a.to_string()),
            user: r.user.clone(),
            subject: self.subject.clone(),
            received: r.received(),
            station: self.station.as_deref().map(str::to_owned),
            seq: self.seq,
            deliveries: self.deliveries.clone(),
        }
    }
}

/// The graph node of a producer connection, kept so that counting its messages
/// formats nothing: valid while the connection's protocol, name and address are
/// the ones it was made from (HTTP callers share one connection id).
struct ProducerNode {
    protocol: junction_api::Protocol,
    client: Option<String>,
    remote: Option<SocketAddr>,
    /// `producer:<protocol>:<name>`.
    id: Arc<str>,
    /// `<protocol> <name>`.
    name: Arc<str>,
}

/// Most entries of each node cache; a full cache is emptied and starts again.
const NODE_CACHE: usize = 4096;

#[derive(Default)]
struct Inner {
    /// Boxed, so that the table itself stays small (24 bytes a slot).
    records: AHashMap<u128, Box<Entry>>,
    order: VecDeque<u128>,
    /// Trace id → its messages, for traces with more than one message (a producer's
    /// own `traceparent`); a message whose trace is its own is found by its id.
    traces: AHashMap<u128, Vec<u128>>,
    /// Connection id → its producer node.
    producers: AHashMap<u64, ProducerNode>,
    /// Station name → (`station:<name>`, the name).
    station_nodes: AHashMap<String, (Arc<str>, Arc<str>)>,
    /// tenant → from node → to node → edge: looked up with borrowed names, so
    /// counting a message allocates only for a node or edge never seen before.
    edges: AHashMap<TenantId, AHashMap<String, AHashMap<String, Edge>>>,
    /// tenant → node id → (kind, display name).
    nodes: AHashMap<TenantId, AHashMap<String, (LineageNodeKind, String)>>,
}

/// The producer node of `r`'s connection, from `cache` when its connection was seen
/// with the same protocol, name and address.
fn producer_node_cached(
    cache: &mut AHashMap<u64, ProducerNode>,
    r: &LineageRecord,
) -> (Arc<str>, Arc<str>) {
    if let Some(p) = cache.get(&r.conn_id)
        && p.protocol == r.protocol
        && p.client == r.client
        && p.remote == r.remote
    {
        return (p.id.clone(), p.name.clone());
    }
    let id = producer_node(r);
    let name = id
        .strip_prefix("producer:")
        .unwrap_or(&id)
        .replacen(':', " ", 1);
    let node = ProducerNode {
        protocol: r.protocol,
        client: r.client.clone(),
        remote: r.remote,
        id: Arc::from(id),
        name: Arc::from(name),
    };
    let out = (node.id.clone(), node.name.clone());
    if cache.len() >= NODE_CACHE {
        cache.clear();
    }
    cache.insert(r.conn_id, node);
    out
}

impl Inner {
    /// (`station:<name>`, name) of a station.
    fn station_node(&mut self, station: &str) -> (Arc<str>, Arc<str>) {
        if let Some(n) = self.station_nodes.get(station) {
            return n.clone();
        }
        if self.station_nodes.len() >= NODE_CACHE {
            self.station_nodes.clear();
        }
        let n: (Arc<str>, Arc<str>) = (Arc::from(format!("station:{station}")), Arc::from(station));
        self.station_nodes.insert(station.to_string(), n.clone());
        n
    }

    fn forget(&mut self, id: u128) {
        if let Some(r) = self.records.remove(&id)
            && r.record.trace_from_producer
            && let Some(ids) = self.traces.get_mut(&r.record.trace_id)
        {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.traces.remove(&r.record.trace_id);
            }
        }
    }

    fn evict(&mut self) {
        while self.order.len() > MAX_RECORDS {
            let Some(id) = self.order.pop_front() else {
                return;
            };
            self.forget(id);
        }
    }

    fn count(
        &mut self,
        tenant: &TenantId,
        from: (&str, LineageNodeKind, &str),
        to: (&str, LineageNodeKind, &str),
        at: u64,
    ) {
        if !self.nodes.contains_key(tenant) {
            self.nodes.insert(tenant.clone(), AHashMap::new());
        }
        if let Some(nodes) = self.nodes.get_mut(tenant) {
            for (id, kind, name) in [from, to] {
                if !nodes.contains_key(id) {
                    nodes.insert(id.to_string(), (kind, name.to_string()));
                }
            }
        }
        if !self.edges.contains_key(tenant) {
            self.edges.insert(tenant.clone(), AHashMap::new());
        }
        let Some(by_from) = self.edges.get_mut(tenant) else {
            return;
        };
        if !by_from.contains_key(from.0) {
            by_from.insert(from.0.to_string(), AHashMap::new());
        }
        let Some(by_to) = by_from.get_mut(from.0) else {
            return;
        };
        match by_to.get_mut(to.0) {
            Some(edge) => edge.add(at),
            None => {
                let mut edge = Edge::new();
                edge.add(at);
                by_to.insert(to.0.to_string(), edge);
            }
        }
    }

    fn count_stored(&mut self, tenant: &TenantId, record: &LineageRecord, station: &str, at: u64) {
        self.count_producer(tenant, &producer_node(record), station, at);
    }

    /// Counts a message from the producer node `producer` stored in `station`.
    fn count_producer(&mut self, tenant: &TenantId, producer: &str, station: &str, at: u64) {
        let name = producer
            .strip_prefix("producer:")
            .unwrap_or(producer)
            .replacen(':', " ", 1);
        let station_id = format!("station:{station}");
        self.count(
            tenant,
            (producer, LineageNodeKind::Producer, &name),
            (&station_id, LineageNodeKind::Station, station),
            at,
        );
    }
}

/// A stored message's lineage read back from storage at start-up.
pub(crate) struct Restored {
    pub tenant: TenantId,
    pub station: String,
    pub seq: u64,
    pub subject: String,
    pub record: LineageRecord,
}

/// The engine's lineage index.
#[derive(Default)]
pub(crate) struct LineageLog {
    inner: Mutex<Inner>,
}

impl LineageLog {
    /// The lineage record of a message a station is about to store, remembered in
    /// the index. The message itself is not touched: its trace id is the one in the
    /// producer's `traceparent` when that is valid, a new one otherwise.
    pub fn record(&self, from: &ClientRecord, message: &Message) -> LineageRecord {
        let producer_trace = message
            .headers
            .as_ref()
            .and_then(|h| h.get(TRACEPARENT))
            .and_then(trace_id_of)
            .and_then(parse_hex_id);
        let (client, remote, user) = producer_of(from);
        let msg_id = random_id();
        let record = LineageRecord {
            msg_id,
            // A message that starts its trace names it with its own id: its path is
            // found from either without a trace list of its own.
            trace_id: producer_trace.unwrap_or(msg_id),
            trace_from_producer: producer_trace.is_some(),
            received_ns: now_ns(),
            protocol: from.protocol,
            conn_id: from.id.0,
            client,
            remote,
            user,
        };
        let entry = Entry {
            tenant: from.tenant.clone(),
            record: record.clone(),
            subject: message.subject.to_str_lossy().into_owned(),
            station: None,
            seq: None,
            deliveries: Vec::new(),
        };
        let mut inner = self.inner.lock();
        if record.trace_from_producer {
            inner
                .traces
                .entry(record.trace_id)
                .or_default()
                .push(record.msg_id);
        }
        inner.order.push_back(record.msg_id);
        inner.records.insert(record.msg_id, Box::new(entry));
        inner.evict();
        record
    }

    /// The message `msg_id` was stored as `station`/`seq`.
    pub fn stored(&self, msg_id: u128, station: &str, seq: u64) {
        let mut inner = self.inner.lock();
        let Some(r) = inner.records.get_mut(&msg_id) else {
            return;
        };
        r.seq = Some(seq);
        let tenant = r.tenant.clone();
        let (producer, name) = {
            let Inner {
                records, producers, ..
            } = &mut *inner;
            let Some(r) = records.get(&msg_id) else {
                return;
            };
            producer_node_cached(producers, &r.record)
        };
        let (station_id, station_name) = inner.station_node(station);
        if let Some(r) = inner.records.get_mut(&msg_id) {
            r.station = Some(station_name);
        }
        inner.count(
            &tenant,
            (&producer, LineageNodeKind::Producer, &name),
            (&station_id, LineageNodeKind::Station, station),
            unix_secs(SystemTime::now()),
        );
    }

    /// Refills the index with what storage kept (at start-up, before or while new
    /// messages arrive): the newest [`MAX_RECORDS`] by receive time, older than
    /// anything already remembered. A message already known (a routed copy in a
    /// second station) keeps its first place.
    pub fn restore(&self, mut restored: Vec<Restored>) -> usize {
        restored.sort_by_key(|r| std::cmp::Reverse(r.record.received_ns));
        let mut inner = self.inner.lock();
        let mut added = 0;
        for r in restored {
            if inner.order.len() >= MAX_RECORDS {
                break;
            }
            if inner.records.contains_key(&r.record.msg_id) {
                continue;
            }
            inner.count_stored(
                &r.tenant,
                &r.record,
                &r.station,
                r.record.received_ns / 1_000_000_000,
            );
            let id = r.record.msg_id;
            if r.record.trace_from_producer || r.record.trace_id != id {
                inner.traces.entry(r.record.trace_id).or_default().push(id);
            }
            // Newest first, each in front of the last: the oldest ends up first,
            // and is forgotten first.
            inner.order.push_front(id);
            inner.records.insert(
                id,
                Box::new(Entry {
                    tenant: r.tenant,
                    record: r.record,
                    subject: r.subject,
                    station: Some(Arc::from(r.station.as_str())),
                    seq: Some(r.seq),
                    deliveries: Vec::new(),
                }),
            );
            added += 1;
        }
        added
    }

    /// A group delivered a message (`lineage`: its stored lineage section).
    pub fn delivered(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
        lineage: &[u8],
        delivery_count: u32,
    ) {
        let msg_id = LineageRecord::msg_id_of(lineage);
        let mut inner = self.inner.lock();
        if let Some(r) = msg_id.and_then(|id| inner.records.get_mut(&id))
            && r.deliveries.len() < MAX_DELIVERIES
        {
            r.deliveries.push(LineageDelivery {
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
            unix_secs(SystemTime::now()),
        );
    }

    /// The path of the trace that `id` (a message id or a trace id) belongs to.
    pub fn trace(&self, tenant: &TenantId, id: &str) -> Option<LineageTrace> {
        let id = parse_hex_id(&id.to_ascii_lowercase())?;
        let inner = self.inner.lock();
        let trace_id = match inner.records.get(&id) {
            Some(r) if r.tenant == *tenant => r.record.trace_id,
            _ => id,
        };
        let mut ids: Vec<u128> = inner.traces.get(&trace_id).cloned().unwrap_or_default();
        if inner.records.contains_key(&trace_id) && !ids.contains(&trace_id) {
            ids.push(trace_id);
        }
        let mut messages: Vec<LineageMessage> = ids
            .iter()
            .filter_map(|m| inner.records.get(m))
            .filter(|r| r.tenant == *tenant)
            .map(|e| e.message())
            .collect();
        if messages.is_empty() {
            return None;
        }
        messages.sort_by_key(|m| m.received);
        Some(LineageTrace {
            trace_id: hex_id(trace_id),
            messages,
        })
    }

    /// The station-level graph of `tenant`.
    pub fn graph(&self, tenant: &TenantId) -> LineageGraph {
        let inner = self.inner.lock();
        let now = unix_secs(SystemTime::now());
        let mut nodes: Vec<(String, LineageNodeKind, String)> = inner
            .nodes
            .get(tenant)
            .into_iter()
            .flatten()
            .map(|(id, (kind, name))| (id.clone(), *kind, name.clone()))
            .collect();
        nodes.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let mut edges: Vec<LineageEdge> = inner
            .edges
            .get(tenant)
            .into_iter()
            .flatten()
            .flat_map(|(from, to)| to.iter().map(move |(to, e)| (from, to, e)))
            .map(|(from, to, e)| LineageEdge {
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

/// Refills `log` from the lineage sections of the newest stored messages: at most
/// [`MAX_RECORDS`] read from each station (newest first, so the time this takes
/// does not grow with the messages kept), the newest [`MAX_RECORDS`] of all kept.
/// Dead-letter copies are left out: they share the original's message id. Returns
/// how many messages the index got back.
pub(crate) fn rebuild(stations: &super::stations::StationRegistry, log: &LineageLog) -> usize {
    let mut restored: Vec<Restored> = Vec::new();
    for station in stations.all() {
        if station.name().starts_with(junction_api::DLS_PREFIX) {
            continue;
        }
        for (seq, subject, lineage) in station.newest_lineage(MAX_RECORDS) {
            let Ok(record) = LineageRecord::decode(&lineage) else {
                continue;
            };
            restored.push(Restored {
                tenant: station.tenant.clone(),
                station: station.name().to_string(),
                seq,
                subject: String::from_utf8_lossy(&subject).into_owned(),
                record,
            });
        }
        if restored.len() > 2 * MAX_RECORDS {
            restored.sort_by_key(|r| std::cmp::Reverse(r.record.received_ns));
            restored.truncate(MAX_RECORDS);
        }
    }
    log.restore(restored)
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
                &delivered.message.lineage,
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
    use junction_api::{ClientId, NewClient, Protocol, Subject};

    fn client() -> ClientRecord {
        let c = ClientRecord::new(
            ClientId(7),
            TenantId::default_tenant(),
            &NewClient {
                protocol: Protocol::Nats,
                remote: std::net::SocketAddr::from(([127, 0, 0, 1], 4000)),
            },
        );
        c.set_identity(Some("svc".into()), None, None, Some("alice".into()));
        c
    }

    fn message(headers: Option<Headers>) -> Message {
        Message {
            subject: Subject::new("a.b".to_string()).unwrap(),
            reply: None,
            headers,
            payload: bytes::Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn records_beside_the_message_and_takes_the_producers_trace_id() {
        let log = LineageLog::default();
        let mut h = Headers::new();
        h.append(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let m = message(Some(h));
        let r = log.record(&client(), &m);
        assert_eq!(hex_id(r.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(r.trace_from_producer);
        assert_eq!(r.protocol, Protocol::Nats);
        assert_eq!(r.conn_id, 7);
        assert_eq!(r.client.as_deref(), Some("svc"));
        assert_eq!(r.user.as_deref(), Some("alice"));
        assert_eq!(
            r.remote,
            Some(std::net::SocketAddr::from(([127, 0, 0, 1], 4000)))
        );
        log.stored(r.msg_id, "s", 1);
        let tenant = TenantId::default_tenant();
        let t = log.trace(&tenant, &hex_id(r.msg_id)).unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.messages[0].seq, Some(1));
        assert_eq!(t.messages[0].subject, "a.b");
        assert!(log.trace(&tenant, "not hex").is_none());
    }

    #[test]
    fn creates_a_trace_id_when_the_traceparent_is_missing_or_invalid() {
        let log = LineageLog::default();
        let mut h = Headers::new();
        h.append("traceparent", "nonsense");
        let r = log.record(&client(), &message(Some(h)));
        assert!(!r.trace_from_producer);
        assert_ne!(r.trace_id, 0);
        let r2 = log.record(&client(), &message(None));
        assert_ne!(r.trace_id, r2.trace_id);
        assert_ne!(r.msg_id, r2.msg_id);
    }

    #[test]
    fn restore_keeps_the_newest_behind_what_is_known() {
        let log = LineageLog::default();
        let live = log.record(&client(), &message(None));
        let tenant = TenantId::default_tenant();
        let old = |n: u64| Restored {
            tenant: tenant.clone(),
            station: "s".into(),
            seq: n,
            subject: "a.b".into(),
            record: LineageRecord {
                msg_id: u128::from(n),
                received_ns: n,
                ..live.clone()
            },
        };
        assert_eq!(log.restore(vec![old(1), old(2), old(2)]), 2);
        let inner = log.inner.lock();
        assert_eq!(
            inner.order.iter().copied().collect::<Vec<_>>(),
            vec![1, 2, live.msg_id]
        );
        drop(inner);
        let t = log.trace(&tenant, &hex_id(1)).unwrap();
        assert_eq!(t.messages[0].station.as_deref(), Some("s"));
        let g = log.graph(&tenant);
        assert_eq!(g.edges[0].from, "producer:nats:svc");
        assert_eq!(g.edges[0].messages, 2);
    }

    #[test]
    fn strips_only_what_it_must() {
        let mut h = Headers::new();
        h.append("Junction-Msg-Id", "forged");
        h.append("Junction-Origin-Protocol", "mqtt");
        h.append("X-App", "1");
        let m = message(Some(h));
        let reserved = strip_reserved(&m);
        assert_eq!(reserved.headers.as_ref().unwrap().len(), 1);
        let markers = strip_mqtt_markers(&m);
        let mh = markers.headers.as_ref().unwrap();
        assert_eq!(mh.get("Junction-Msg-Id"), Some("forged"));
        assert_eq!(mh.get("X-App"), Some("1"));
        assert!(mh.get("Junction-Origin-Protocol").is_none());
        let plain = message(None);
        assert!(matches!(strip_mqtt_markers(&plain), Cow::Borrowed(_)));
    }
}
