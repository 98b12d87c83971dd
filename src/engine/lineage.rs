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
use bytes::Bytes;
use junction_api::{
    ClientRecord, FetchEnd, FetchSink, Headers, LineageDelivery, LineageEdge, LineageGraph,
    LineageMessage, LineageNodeKind, LineageRecord, LineageTrace, Message, Subject, TRACEPARENT,
    TenantId, hex_id, is_reserved_header, parse_hex_id, protocol_name, trace_id_of,
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
/// Most edges the station-level graph keeps. Each producer (a client name and
/// address) that ever published makes an edge of about 1 KiB (its rate window),
/// so without a bound the graph grew with every distinct client, for good: MQTT
/// clients with random ids made it about 0.8 KiB per client id (heaptrack, the
/// channel invariants test at 20,000 sequences). A full graph forgets the
/// quarter of its edges that were quiet longest, and the nodes only they named.
const MAX_EDGES: usize = 4096;

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

/// A random, non-zero prefix for the message ids of one run of the broker.
fn random_epoch() -> u64 {
    loop {
        let epoch: u64 = rand::rng().random();
        if epoch != 0 {
            return epoch;
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
fn producer_of(from: &ClientRecord) -> (Option<Arc<str>>, Option<SocketAddr>, Option<Arc<str>>) {
    let (name, user) = from.name_and_user();
    (
        name.filter(|n| !n.is_empty()),
        Some(from.remote),
        user.filter(|u| !u.is_empty()),
    )
}

/// The graph node of a record's producer: `producer:<protocol>:<name>`, the name
/// being the client name, else the caller's IP address, else `anonymous`.
fn producer_node_id(r: &LineageRecord) -> String {
    let name = match (&r.client, &r.remote) {
        (Some(c), _) => c.to_string(),
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

    /// The last second a message was counted in (0: none since start-up).
    fn last_active(&self) -> u64 {
        self.buckets.iter().map(|b| b.0).max().unwrap_or(0)
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
    subject: Subject,
    station: Option<Arc<str>>,
    seq: Option<u64>,
    deliveries: Vec<(Arc<str>, SystemTime, u32)>,
}

impl Entry {
    fn message(&self) -> LineageMessage {
        let r = &self.record;
        LineageMessage {
            msg_id: hex_id(r.msg_id),
            trace_id: hex_id(r.trace_id),
            protocol: protocol_name(r.protocol).to_string(),
            conn_id: r.conn_id,
            client: r.client.as_deref().map(str::to_owned),
            remote: r.remote.map(|a| a.to_string()),
            user: r.user.as_deref().map(str::to_owned),
            subject: self.subject.to_str_lossy().into_owned(),
            received: r.received(),
            station: self.station.as_deref().map(str::to_owned),
            seq: self.seq,
            deliveries: self
                .deliveries
                .iter()
                .map(|(group, time, delivery_count)| LineageDelivery {
                    group: group.to_string(),
                    time: *time,
                    delivery_count: *delivery_count,
                })
                .collect(),
        }
    }
}

/// The graph node of a producer connection, kept so that counting its messages
/// formats nothing: valid while the connection's protocol, name and address are
/// the ones it was made from (HTTP callers share one connection id).
struct ProducerNode {
    protocol: junction_api::Protocol,
    client: Option<Arc<str>>,
    remote: Option<SocketAddr>,
    node: Node,
}

/// A graph node: its id (`producer:<protocol>:<name>`, `station:<name>`,
/// `group:<station>/<group>`), kind and display name.
#[derive(Clone)]
struct Node {
    id: Arc<str>,
    kind: LineageNodeKind,
    name: Arc<str>,
}

/// Most entries of each cache; a full cache is emptied and starts again.
const NODE_CACHE: usize = 4096;

/// Where a message was put in the index ([`LineageLog::record`]): handed back to
/// [`LineageLog::stored`], which then finds it without a lookup.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    number: u64,
    msg_id: u128,
}

/// A recorded message: its encoded lineage record (the storage record's
/// lineage section) and its place in the index.
pub(crate) struct Recorded {
    pub lineage: Bytes,
    pub ticket: Ticket,
}

/// The station-level graph: nodes, and edges counted per message.
#[derive(Default)]
struct Graph {
    /// tenant → node id → node.
    nodes: AHashMap<TenantId, AHashMap<Arc<str>, Node>>,
    /// Every edge: (tenant, from id, to id, counts).
    edges: Vec<(TenantId, Arc<str>, Arc<str>, Edge)>,
    /// (tenant, from id, to id) → index in `edges`.
    by_name: AHashMap<(TenantId, Arc<str>, Arc<str>), usize>,
    /// The edges callers already counted, by the addresses of the three shared
    /// strings they named them with → index in `edges`. The value keeps those
    /// strings alive, so an address is never reused for another name while it is
    /// here: counting a message is one lookup of three integers.
    by_addr: AHashMap<(usize, usize, usize), Pinned>,
}

/// An index in [`Graph::edges`], with the strings whose addresses found it.
type Pinned = (usize, [Arc<str>; 3]);

fn addr(s: &Arc<str>) -> usize {
    Arc::as_ptr(s) as *const u8 as usize
}

impl Graph {
    /// Counts one message on the edge named by the shared strings `key` (tenant,
    /// and whatever stands for the two ends), finding the nodes with `nodes` the
    /// first time this key is seen.
    fn count(
        &mut self,
        tenant: &TenantId,
        key: [&Arc<str>; 2],
        at: u64,
        nodes: impl FnOnce() -> (Node, Node),
    ) {
        let k = (addr(&tenant.0), addr(key[0]), addr(key[1]));
        if let Some((i, _)) = self.by_addr.get(&k) {
            self.edges[*i].3.add(at);
            return;
        }
        let (from, to) = nodes();
        let name_key = (tenant.clone(), from.id.clone(), to.id.clone());
        if !self.by_name.contains_key(&name_key) && self.edges.len() >= MAX_EDGES {
            // Before the new edge's nodes go in: they are named by no edge yet.
            self.forget_quiet();
        }
        let tenant_nodes = self.nodes.entry(tenant.clone()).or_default();
        for n in [&from, &to] {
            if !tenant_nodes.contains_key(&n.id) {
                tenant_nodes.insert(n.id.clone(), n.clone());
            }
        }
        let i = match self.by_name.get(&name_key) {
            Some(i) => *i,
            None => {
                self.edges
                    .push((tenant.clone(), from.id, to.id, Edge::new()));
                self.by_name.insert(name_key, self.edges.len() - 1);
                self.edges.len() - 1
            }
        };
        self.edges[i].3.add(at);
        if self.by_addr.len() >= NODE_CACHE {
            self.by_addr.clear();
        }
        self.by_addr
            .insert(k, (i, [tenant.0.clone(), key[0].clone(), key[1].clone()]));
    }

    /// Drops the quarter of the edges quiet longest, and the nodes no edge left
    /// names; the indexes are made again.
    fn forget_quiet(&mut self) {
        let mut edges = std::mem::take(&mut self.edges);
        edges.sort_by_key(|e| std::cmp::Reverse(e.3.last_active()));
        edges.truncate(MAX_EDGES - MAX_EDGES / 4);
        self.by_addr.clear();
        self.by_name = edges
            .iter()
            .enumerate()
            .map(|(i, (t, from, to, _))| ((t.clone(), from.clone(), to.clone()), i))
            .collect();
        let named: ahash::AHashSet<(&TenantId, &Arc<str>)> = edges
            .iter()
            .flat_map(|(t, from, to, _)| [(t, from), (t, to)])
            .collect();
        for (tenant, nodes) in &mut self.nodes {
            nodes.retain(|id, _| named.contains(&(tenant, id)));
        }
        self.nodes.retain(|_, nodes| !nodes.is_empty());
        self.edges = edges;
    }
}

/// The producer node of `r`'s connection, from `cache` when its connection was seen
/// with the same protocol, name and address.
fn producer_node_cached<'a>(
    cache: &'a mut AHashMap<u64, ProducerNode>,
    r: &LineageRecord,
) -> &'a Node {
    let fresh = !matches!(cache.get(&r.conn_id), Some(p)
        if p.protocol == r.protocol && p.client == r.client && p.remote == r.remote);
    if fresh {
        if cache.len() >= NODE_CACHE {
            cache.clear();
        }
        cache.insert(
            r.conn_id,
            ProducerNode {
                protocol: r.protocol,
                client: r.client.clone(),
                remote: r.remote,
                node: producer_node(r),
            },
        );
    }
    &cache[&r.conn_id].node
}

/// The graph node of a record's producer.
fn producer_node(r: &LineageRecord) -> Node {
    let id = producer_node_id(r);
    let name = id
        .strip_prefix("producer:")
        .unwrap_or(&id)
        .replacen(':', " ", 1);
    Node {
        id: Arc::from(id),
        kind: LineageNodeKind::Producer,
        name: Arc::from(name),
    }
}

fn station_node(station: &str) -> Node {
    Node {
        id: Arc::from(format!("station:{station}")),
        kind: LineageNodeKind::Station,
        name: Arc::from(station),
    }
}

/// Where [`Inner::ring`]'s numbering starts, so that restored (older) messages
/// can be put in front of it.
const FIRST_NUMBER: u64 = 1 << 62;

struct Inner {
    /// The newest [`MAX_RECORDS`] messages, oldest first; `ring[i]` is message
    /// number `first + i`.
    ring: VecDeque<Entry>,
    first: u64,
    /// The high 64 bits of every message id this run gives out; the low 64 bits
    /// are the message's number, so an id finds its entry without a lookup
    /// table (ids are unique across restarts by the random epoch, and never
    /// zero).
    epoch: u64,
    /// Message id → number, for the messages restored at start-up only (their
    /// ids carry an earlier run's epoch).
    ids: AHashMap<u128, u64>,
    /// Trace id → its messages, for traces with more than one message (a producer's
    /// own `traceparent`); a message whose trace is its own is found by its id.
    traces: AHashMap<u128, Vec<u128>>,
    /// Connection id → its producer node.
    producers: AHashMap<u64, ProducerNode>,
    graph: Graph,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            ring: VecDeque::new(),
            first: FIRST_NUMBER,
            epoch: random_epoch(),
            ids: AHashMap::new(),
            traces: AHashMap::new(),
            producers: AHashMap::new(),
            graph: Graph::default(),
        }
    }
}

impl Inner {
    fn get(&self, number: u64) -> Option<&Entry> {
        self.ring
            .get(usize::try_from(number.checked_sub(self.first)?).ok()?)
    }

    fn get_mut(&mut self, number: u64) -> Option<&mut Entry> {
        self.ring
            .get_mut(usize::try_from(number.checked_sub(self.first)?).ok()?)
    }

    /// The number of the message with id `id`, while it is remembered.
    fn number_of(&self, id: u128) -> Option<u64> {
        if (id >> 64) as u64 == self.epoch {
            let number = id as u64;
            if self.get(number).is_some_and(|e| e.record.msg_id == id) {
                return Some(number);
            }
        }
        self.ids.get(&id).copied()
    }

    fn by_id(&self, id: u128) -> Option<&Entry> {
        self.get(self.number_of(id)?)
    }

    fn evict(&mut self) {
        while self.ring.len() > MAX_RECORDS {
            let Some(r) = self.ring.pop_front() else {
                return;
            };
            let number = self.first;
            self.first += 1;
            let id = r.record.msg_id;
            if (id >> 64) as u64 != self.epoch && self.ids.get(&id) == Some(&number) {
                self.ids.remove(&id);
            }
            if r.record.trace_from_producer
                && let Some(ids) = self.traces.get_mut(&r.record.trace_id)
            {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.traces.remove(&r.record.trace_id);
                }
            }
        }
    }
}

/// A stored message's lineage read back from storage at start-up.
pub(crate) struct Restored {
    pub tenant: TenantId,
    pub station: Arc<str>,
    pub seq: u64,
    pub subject: Subject,
    pub record: LineageRecord,
}

/// The engine's lineage index.
#[derive(Default)]
pub(crate) struct LineageLog {
    inner: Mutex<Inner>,
}

impl LineageLog {
    /// Records a message a station is about to store and encodes its lineage
    /// record. The message itself is not touched: its trace id is the one in the
    /// producer's `traceparent` when that is valid, a new one otherwise.
    pub fn record(&self, from: &ClientRecord, message: &Message) -> Recorded {
        let producer_trace = message
            .headers
            .as_ref()
            .and_then(|h| h.get(TRACEPARENT))
            .and_then(trace_id_of)
            .and_then(parse_hex_id);
        let (client, remote, user) = producer_of(from);
        let received_ns = now_ns();
        let mut inner = self.inner.lock();
        let number = inner.first + inner.ring.len() as u64;
        let msg_id = (u128::from(inner.epoch) << 64) | u128::from(number);
        let record = LineageRecord {
            msg_id,
            // A message that starts its trace names it with its own id: its path is
            // found from either without a trace list of its own.
            trace_id: producer_trace.unwrap_or(msg_id),
            trace_from_producer: producer_trace.is_some(),
            received_ns,
            protocol: from.protocol,
            conn_id: from.id.0,
            client,
            remote,
            user,
        };
        if let Some(trace) = producer_trace {
            inner.traces.entry(trace).or_default().push(msg_id);
        }
        inner.ring.push_back(Entry {
            tenant: from.tenant().clone(),
            record: record.clone(),
            subject: message.subject.clone(),
            station: None,
            seq: None,
            deliveries: Vec::new(),
        });
        inner.evict();
        drop(inner);
        let lineage = record.encode();
        Recorded {
            lineage,
            ticket: Ticket { number, msg_id },
        }
    }

    /// The message of `ticket` was stored as `station`/`seq`.
    pub fn stored(&self, ticket: Ticket, station: &Arc<str>, seq: u64) {
        let mut inner = self.inner.lock();
        let Inner {
            ring,
            first,
            producers,
            graph,
            ..
        } = &mut *inner;
        let Some(r) = usize::try_from(ticket.number.wrapping_sub(*first))
            .ok()
            .and_then(|i| ring.get_mut(i))
            .filter(|r| r.record.msg_id == ticket.msg_id)
        else {
            return;
        };
        r.seq = Some(seq);
        r.station = Some(station.clone());
        let producer = producer_node_cached(producers, &r.record);
        graph.count(
            &r.tenant,
            [&producer.id, station],
            r.record.received_ns / 1_000_000_000,
            || (producer.clone(), station_node(station)),
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
            if inner.ring.len() >= MAX_RECORDS {
                break;
            }
            let id = r.record.msg_id;
            if inner.number_of(id).is_some() {
                continue;
            }
            {
                let Inner {
                    producers, graph, ..
                } = &mut *inner;
                let producer = producer_node_cached(producers, &r.record);
                graph.count(
                    &r.tenant,
                    [&producer.id, &r.station],
                    r.record.received_ns / 1_000_000_000,
                    || (producer.clone(), station_node(&r.station)),
                );
            }
            if r.record.trace_from_producer || r.record.trace_id != id {
                inner.traces.entry(r.record.trace_id).or_default().push(id);
            }
            // Newest first, each in front of the last: the oldest ends up first,
            // and is forgotten first.
            inner.first -= 1;
            let number = inner.first;
            inner.ids.insert(id, number);
            inner.ring.push_front(Entry {
                tenant: r.tenant,
                record: r.record,
                subject: r.subject,
                station: Some(r.station),
                seq: Some(r.seq),
                deliveries: Vec::new(),
            });
            added += 1;
        }
        added
    }

    /// A group delivered a message (`lineage`: its stored lineage section).
    fn delivered(&self, sink: &TracedSink, lineage: &[u8], delivery_count: u32) {
        let msg_id = LineageRecord::msg_id_of(lineage);
        let mut inner = self.inner.lock();
        if let Some(number) = msg_id.and_then(|id| inner.number_of(id))
            && let Some(r) = inner.get_mut(number)
            && r.deliveries.len() < MAX_DELIVERIES
        {
            r.deliveries
                .push((sink.group.clone(), SystemTime::now(), delivery_count));
        }
        inner.graph.count(
            &sink.tenant,
            [&sink.station_node.id, &sink.group_node.id],
            unix_secs(SystemTime::now()),
            || (sink.station_node.clone(), sink.group_node.clone()),
        );
    }

    /// The path of the trace that `id` (a message id or a trace id) belongs to.
    pub fn trace(&self, tenant: &TenantId, id: &str) -> Option<LineageTrace> {
        let id = parse_hex_id(&id.to_ascii_lowercase())?;
        let inner = self.inner.lock();
        let trace_id = match inner.by_id(id) {
            Some(r) if r.tenant == *tenant => r.record.trace_id,
            _ => id,
        };
        let mut ids: Vec<u128> = inner.traces.get(&trace_id).cloned().unwrap_or_default();
        if inner.by_id(trace_id).is_some() && !ids.contains(&trace_id) {
            ids.push(trace_id);
        }
        let mut messages: Vec<LineageMessage> = ids
            .iter()
            .filter_map(|m| inner.by_id(*m))
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
            .graph
            .nodes
            .get(tenant)
            .into_iter()
            .flatten()
            .map(|(id, n)| (id.to_string(), n.kind, n.name.to_string()))
            .collect();
        nodes.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let mut edges: Vec<LineageEdge> = inner
            .graph
            .edges
            .iter()
            .filter(|(t, ..)| t == tenant)
            .map(|(_, from, to, e)| LineageEdge {
                from: from.to_string(),
                to: to.to_string(),
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
                station: station.name_arc(),
                seq,
                subject: Subject::from_trusted(subject),
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
    inner: Arc<dyn FetchSink>,
    lineage: Arc<LineageLog>,
    tenant: TenantId,
    group: Arc<str>,
    station_node: Node,
    group_node: Node,
}

impl TracedSink {
    pub fn new(
        inner: Arc<dyn FetchSink>,
        lineage: Arc<LineageLog>,
        tenant: TenantId,
        station: &str,
        group: &str,
    ) -> Self {
        let group: Arc<str> = Arc::from(group);
        TracedSink {
            inner,
            lineage,
            tenant,
            station_node: station_node(station),
            group_node: Node {
                id: Arc::from(format!("group:{station}/{group}")),
                kind: LineageNodeKind::Group,
                name: group.clone(),
            },
            group,
        }
    }
}

impl FetchSink for TracedSink {
    fn deliver(&self, delivered: &junction_api::Delivered) -> bool {
        let ok = self.inner.deliver(delivered);
        if ok {
            self.lineage
                .delivered(self, &delivered.message.lineage, delivered.delivery_count);
        }
        ok
    }

    fn end(&self, end: FetchEnd) {
        self.inner.end(end);
    }

    fn heartbeat(&self) {
        self.inner.heartbeat();
    }

    fn alive(&self) -> bool {
        self.inner.alive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use junction_api::{ClientId, NewClient, Protocol, Subject};

    #[test]
    fn the_graph_keeps_a_bounded_number_of_edges_and_forgets_the_quietest() {
        let mut g = Graph::default();
        let tenant = TenantId::default_tenant();
        let station: Arc<str> = Arc::from("station:s");
        let node = |id: &str, kind| Node {
            id: Arc::from(id),
            kind,
            name: Arc::from(id),
        };
        // One edge per distinct producer, each counted at its own second: the
        // later the producer, the more recently active its edge.
        let producers = 3 * MAX_EDGES;
        for i in 0..producers {
            let id: Arc<str> = Arc::from(format!("producer:mqtt:c{i}"));
            g.count(&tenant, [&id, &station], 1_000 + i as u64, || {
                (
                    node(&id, LineageNodeKind::Producer),
                    node(&station, LineageNodeKind::Station),
                )
            });
        }
        assert!(g.edges.len() <= MAX_EDGES, "{} edges", g.edges.len());
        assert_eq!(g.by_name.len(), g.edges.len());
        // Nodes: the producers of the edges kept, and the station.
        assert_eq!(g.nodes[&tenant].len(), g.edges.len() + 1);
        let newest = format!("producer:mqtt:c{}", producers - 1);
        assert!(g.nodes[&tenant].contains_key(newest.as_str()));
        assert!(!g.nodes[&tenant].contains_key("producer:mqtt:c0"));
        // An edge kept goes on counting where it was.
        let id: Arc<str> = Arc::from(newest.as_str());
        g.count(&tenant, [&id, &station], 99_999, || {
            (
                node(&id, LineageNodeKind::Producer),
                node(&station, LineageNodeKind::Station),
            )
        });
        assert!(g.edges.len() <= MAX_EDGES);
        let i = g.by_name[&(tenant.clone(), id.clone(), station.clone())];
        assert_eq!(g.edges[i].3.total, 2);
    }

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
        let recorded = log.record(&client(), &m);
        let r = LineageRecord::decode(&recorded.lineage).unwrap();
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
        log.stored(recorded.ticket, &Arc::from("s"), 1);
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
        let r = LineageRecord::decode(&log.record(&client(), &message(Some(h))).lineage).unwrap();
        assert!(!r.trace_from_producer);
        assert_ne!(r.trace_id, 0);
        let r2 = LineageRecord::decode(&log.record(&client(), &message(None)).lineage).unwrap();
        assert_ne!(r.trace_id, r2.trace_id);
        assert_ne!(r.msg_id, r2.msg_id);
    }

    #[test]
    fn restore_keeps_the_newest_behind_what_is_known() {
        let log = LineageLog::default();
        let live = LineageRecord::decode(&log.record(&client(), &message(None)).lineage).unwrap();
        let tenant = TenantId::default_tenant();
        let old = |n: u64| Restored {
            tenant: tenant.clone(),
            station: "s".into(),
            seq: n,
            subject: Subject::new("a.b").unwrap(),
            record: LineageRecord {
                msg_id: u128::from(n),
                received_ns: n,
                ..live.clone()
            },
        };
        assert_eq!(log.restore(vec![old(1), old(2), old(2)]), 2);
        let inner = log.inner.lock();
        assert_eq!(
            inner
                .ring
                .iter()
                .map(|e| e.record.msg_id)
                .collect::<Vec<_>>(),
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
    fn the_ring_forgets_the_oldest_and_a_late_ticket_changes_nothing() {
        let log = LineageLog::default();
        let first = log.record(&client(), &message(None));
        let first_id = LineageRecord::decode(&first.lineage).unwrap().msg_id;
        for _ in 0..MAX_RECORDS {
            log.record(&client(), &message(None));
        }
        let tenant = TenantId::default_tenant();
        assert!(log.trace(&tenant, &hex_id(first_id)).is_none());
        // Stored after it was forgotten: no entry, no edge.
        log.stored(first.ticket, &Arc::from("s"), 1);
        assert!(log.graph(&tenant).edges.is_empty());
        let inner = log.inner.lock();
        assert_eq!(inner.ring.len(), MAX_RECORDS);
        assert!(
            inner.ids.is_empty(),
            "only restored messages are in the id table"
        );
        drop(inner);
        let last = log.record(&client(), &message(None));
        let station: Arc<str> = Arc::from("s");
        log.stored(last.ticket, &station, 7);
        log.stored(last.ticket, &station, 7);
        let id = LineageRecord::decode(&last.lineage).unwrap().msg_id;
        let t = log.trace(&tenant, &hex_id(id)).unwrap();
        assert_eq!(t.messages[0].seq, Some(7));
        assert_eq!(t.messages[0].station.as_deref(), Some("s"));
        let g = log.graph(&tenant);
        assert_eq!(g.edges.len(), 1);
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
