//! Random packet and timer sequences against one channel, checked by a model of
//! the client. The same body serves the seeded test
//! (`tests/mqtt_channel_invariants_hold_under_random_packet_sequences.rs`) and
//! the cargo-fuzz target (`fuzz/fuzz_targets/mqtt_channel.rs`): only the bytes
//! that choose the sequence differ.
//!
//! The channel subscribes to its own topics, so what it publishes flows back
//! out as deliveries. After every server packet the model checks:
//!
//! - no outgoing packet id is in use twice (an id is free again once the client
//!   sent PUBACK, PUBCOMP, or a PUBREC with an error code);
//! - outgoing QoS 1/2 in flight ≤ the client's Receive Maximum;
//! - every client PUBREC is answered by exactly one PUBREL (code 0 for a QoS 2
//!   delivery in flight, 0x92 for an id that is not);
//! - no delivery above the QoS granted (the highest granted to a filter that
//!   matches the topic) nor above the QoS it was published with;
//! - every inbound QoS 1/2 PUBLISH is answered exactly once (a QoS 2 resend gets
//!   its PUBREC again, at once while the first is held, after it while the first
//!   is still being stored), every PUBREL by one PUBCOMP, every
//!   SUBSCRIBE and UNSUBSCRIBE by one SUBACK / UNSUBACK with a code per filter,
//!   every PINGREQ by one PINGRESP;
//! - an alias in a delivery is within the client's Topic Alias Maximum, and an
//!   empty topic comes with an alias set before.
//!
//! At the end of a sequence (and at random points in it) the model waits,
//! counting mailbox events, until every answer owed has come, unless the
//! connection ended. A broken invariant panics with what the model saw.

use super::{ChannelHarness, ClientConnect, ClientPacket, Closed, ServerPacket};
use crate::broker::MqttBroker;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Bytes that choose a sequence; 0 once they run out.
pub struct Choices<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Choices<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Choices { bytes, at: 0 }
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// A number below `n`.
    fn below(&mut self, n: u8) -> u8 {
        self.byte() % n.max(1)
    }
}

/// What one sequence did, for the caller's totals.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub sequences: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub deliveries_qos1: u64,
    pub deliveries_qos2: u64,
    pub pubrels: u64,
    pub closed_by_server: u64,
    pub persistent: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.sequences += o.sequences;
        self.packets_in += o.packets_in;
        self.packets_out += o.packets_out;
        self.deliveries_qos1 += o.deliveries_qos1;
        self.deliveries_qos2 += o.deliveries_qos2;
        self.pubrels += o.pubrels;
        self.closed_by_server += o.closed_by_server;
        self.persistent += o.persistent;
    }
}

/// The front-end settings the sequences assume: a small server Receive Maximum
/// and Topic Alias Maximum, so that both limits are reached.
pub fn options() -> crate::MqttOptions {
    crate::MqttOptions {
        receive_maximum: 4,
        topic_alias_maximum: 2,
        ..crate::MqttOptions::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
enum OutState {
    AwaitAck,
    AwaitRec,
    AwaitComp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InQos2 {
    /// Not acknowledged yet: a resend gets no answer of its own.
    Storing,
    /// PUBREC sent, PUBREL not yet received.
    Held,
}

/// Answers the client is owed, by kind and packet id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owed {
    PubAck(u16),
    PubRec(u16),
    PubComp(u16, u8),
    PubRel(u16, u8),
    SubAck(u16, usize),
    UnsubAck(u16, usize),
    PingResp,
}

struct Model {
    v5: bool,
    prefix: String,
    recv_max: usize,
    alias_max: u16,
    out: HashMap<u16, OutState>,
    in_qos2: HashMap<u16, InQos2>,
    /// QoS 1 publishes not yet acknowledged, per id (a client may reuse one).
    in_qos1: HashMap<u16, usize>,
    owed: HashMap<Owed, usize>,
    /// Every grant this sequence: a message queued before a later grant or an
    /// UNSUBSCRIBE may still go out at the QoS it had then.
    grants: Vec<(String, u8)>,
    /// SUBSCRIBEs not answered yet: their filters and the QoS asked.
    pending_subs: Vec<(u16, Vec<(String, u8)>)>,
    /// Per message number: topic and QoS published with.
    published: HashMap<u32, (String, u8)>,
    next_msg: u32,
    /// Aliases the server set in deliveries.
    aliases: HashMap<u16, String>,
    /// Aliases the client set in its publishes.
    aliases_in: HashMap<u16, String>,
    log: Vec<String>,
    totals: Totals,
}

impl Model {
    fn fail(&self, what: &str) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(40).rev().collect();
        panic!("MQTT channel invariant broken: {what}\nlast steps:\n{tail:#?}");
    }

    fn owe(&mut self, o: Owed) {
        // 3.1.1 PUBREL and PUBCOMP carry no reason code.
        let o = match o {
            Owed::PubRel(id, _) if !self.v5 => Owed::PubRel(id, 0),
            Owed::PubComp(id, _) if !self.v5 => Owed::PubComp(id, 0),
            o => o,
        };
        *self.owed.entry(o).or_default() += 1;
    }

    fn settle_owed(&mut self, o: Owed) -> bool {
        match self.owed.get_mut(&o) {
            Some(n) if *n > 0 => {
                *n -= 1;
                if *n == 0 {
                    self.owed.remove(&o);
                }
                true
            }
            _ => false,
        }
    }

    fn owes(&self) -> bool {
        !self.owed.is_empty()
    }

    fn topic(&self, n: u8) -> String {
        match n % 3 {
            0 => format!("{}/a", self.prefix),
            1 => format!("{}/b", self.prefix),
            _ => format!("{}/c/d", self.prefix),
        }
    }

    fn filter(&self, n: u8) -> String {
        match n % 4 {
            0 => format!("{}/#", self.prefix),
            1 => format!("{}/a", self.prefix),
            2 => format!("{}/+", self.prefix),
            _ => format!("{}/c/#", self.prefix),
        }
    }

    /// The highest QoS granted to a filter matching `topic`, or asked in a
    /// SUBSCRIBE not yet answered (the server may deliver before its SUBACK,
    /// MQTT 3.8.4).
    fn granted_for(&self, topic: &str) -> Option<u8> {
        self.grants
            .iter()
            .chain(self.pending_subs.iter().flat_map(|(_, f)| f.iter()))
            .filter(|(f, _)| crate::topic::filter_matches(f, topic))
            .map(|(_, q)| *q)
            .max()
    }

    /// The client sent `p`: what it is owed now.
    fn client_sent(&mut self, p: &ClientPacket) {
        self.totals.packets_in += 1;
        self.log.push(format!("client: {p:?}"));
        match p {
            ClientPacket::Publish { qos: 1, pkid, .. } => {
                *self.in_qos1.entry(*pkid).or_default() += 1;
                self.owe(Owed::PubAck(*pkid));
            }
            ClientPacket::Publish { qos: 2, pkid, .. } => match self.in_qos2.get(pkid) {
                Some(InQos2::Storing | InQos2::Held) => self.owe(Owed::PubRec(*pkid)),
                None => {
                    self.in_qos2.insert(*pkid, InQos2::Storing);
                    self.owe(Owed::PubRec(*pkid));
                }
            },
            ClientPacket::Publish { .. } => {}
            ClientPacket::PubAck(id) => {
                if self.out.get(id) == Some(&OutState::AwaitAck) {
                    self.out.remove(id);
                }
            }
            ClientPacket::PubRec(id, code) => {
                let code = if self.v5 { *code } else { 0 };
                match self.out.get(id) {
                    Some(OutState::AwaitRec) if code >= 0x80 => {
                        self.out.remove(id);
                    }
                    Some(OutState::AwaitRec) => {
                        self.out.insert(*id, OutState::AwaitComp);
                        self.owe(Owed::PubRel(*id, 0));
                    }
                    Some(OutState::AwaitComp) => self.owe(Owed::PubRel(*id, 0)),
                    _ => self.owe(Owed::PubRel(*id, 0x92)),
                }
            }
            ClientPacket::PubRel(id) => {
                let known = self.in_qos2.remove(id).is_some();
                self.owe(Owed::PubComp(*id, if known { 0 } else { 0x92 }));
            }
            ClientPacket::PubComp(id) => {
                if self.out.get(id) == Some(&OutState::AwaitComp) {
                    self.out.remove(id);
                    // A PUBCOMP before the PUBREL it answers: the client broke
                    // the flow, and no PUBREL is owed any more.
                    self.owed.remove(&Owed::PubRel(*id, 0));
                }
            }
            ClientPacket::Subscribe { pkid, filters, .. } => {
                self.owe(Owed::SubAck(*pkid, filters.len()));
            }
            ClientPacket::Unsubscribe { pkid, filters } => {
                self.owe(Owed::UnsubAck(*pkid, filters.len()));
            }
            ClientPacket::PingReq => self.owe(Owed::PingResp),
            ClientPacket::Disconnect { .. } | ClientPacket::Connect(_) => {}
        }
    }

    /// The server sent `p`: is it owed, and does it keep the rules?
    fn server_sent(&mut self, p: ServerPacket) {
        self.totals.packets_out += 1;
        self.log.push(format!("server: {p:?}"));
        let v5 = self.v5;
        let code = |c: u8| if v5 { c } else { 0 };
        match p {
            ServerPacket::ConnAck(_) => self.fail("a second CONNACK"),
            ServerPacket::Publish(d) => self.delivery(d),
            ServerPacket::PubAck { pkid, .. } => {
                if !self.settle_owed(Owed::PubAck(pkid)) {
                    self.fail(&format!("PUBACK {pkid} not owed"));
                }
                if let Some(n) = self.in_qos1.get_mut(&pkid) {
                    *n -= 1;
                    if *n == 0 {
                        self.in_qos1.remove(&pkid);
                    }
                }
            }
            ServerPacket::PubRec { pkid, code: c } => {
                if !self.settle_owed(Owed::PubRec(pkid)) {
                    self.fail(&format!("PUBREC {pkid} not owed"));
                }
                if c >= 0x80 {
                    self.in_qos2.remove(&pkid);
                } else if self.in_qos2.get(&pkid) == Some(&InQos2::Storing) {
                    self.in_qos2.insert(pkid, InQos2::Held);
                }
            }
            ServerPacket::PubComp { pkid, code: c } => {
                if !self.settle_owed(Owed::PubComp(pkid, code(c))) {
                    self.fail(&format!("PUBCOMP {pkid} code {c:#x} not owed"));
                }
            }
            ServerPacket::PubRel { pkid, code: c } => {
                self.totals.pubrels += 1;
                if !self.settle_owed(Owed::PubRel(pkid, code(c))) {
                    self.fail(&format!(
                        "PUBREL {pkid} code {c:#x} answers no PUBREC (or one twice)"
                    ));
                }
            }
            ServerPacket::SubAck { pkid, codes } => {
                let n = codes.len();
                if !self.settle_owed(Owed::SubAck(pkid, n)) {
                    self.fail(&format!("SUBACK {pkid} with {n} codes not owed"));
                }
                if let Some(i) = self
                    .pending_subs
                    .iter()
                    .position(|(id, f)| *id == pkid && f.len() == n)
                {
                    let (_, filters) = self.pending_subs.remove(i);
                    for ((f, asked), c) in filters.into_iter().zip(codes) {
                        if c < 0x80 {
                            if c > asked {
                                self.fail(&format!("granted QoS {c} above the {asked} asked"));
                            }
                            self.grants.push((f, c));
                        }
                    }
                }
            }
            ServerPacket::UnsubAck { pkid, codes } => {
                let n = if v5 {
                    codes.len()
                } else {
                    // 3.1.1 UNSUBACK has no codes: any count owed will do.
                    match self.owed.keys().find_map(|o| match o {
                        Owed::UnsubAck(id, n) if *id == pkid => Some(*n),
                        _ => None,
                    }) {
                        Some(n) => n,
                        None => self.fail(&format!("UNSUBACK {pkid} not owed")),
                    }
                };
                if !self.settle_owed(Owed::UnsubAck(pkid, n)) {
                    self.fail(&format!("UNSUBACK {pkid} with {n} codes not owed"));
                }
            }
            ServerPacket::PingResp => {
                if !self.settle_owed(Owed::PingResp) {
                    self.fail("PINGRESP not owed");
                }
            }
            ServerPacket::Disconnect { .. } => {}
        }
    }

    fn delivery(&mut self, d: super::Delivery) {
        let topic = if d.topic.is_empty() {
            match d.topic_alias.and_then(|a| self.aliases.get(&a)) {
                Some(t) => t.clone(),
                None => self.fail(&format!(
                    "empty topic with unknown alias {:?}",
                    d.topic_alias
                )),
            }
        } else {
            d.topic.clone()
        };
        if let Some(a) = d.topic_alias {
            if a == 0 || a > self.alias_max {
                self.fail(&format!(
                    "alias {a} beyond the client's maximum {}",
                    self.alias_max
                ));
            }
            self.aliases.insert(a, topic.clone());
        }
        let Some(granted) = self.granted_for(&topic) else {
            self.fail(&format!("delivery on {topic} that no subscription matched"));
        };
        if d.qos > granted {
            self.fail(&format!(
                "delivery at QoS {} above the {granted} granted",
                d.qos
            ));
        }
        let n = d
            .payload
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        match n.and_then(|n| self.published.get(&n)) {
            Some((t, q)) => {
                if *t != topic {
                    self.fail(&format!("message published on {t} delivered on {topic}"));
                }
                if d.qos > *q {
                    self.fail(&format!(
                        "delivery at QoS {} above the {q} published",
                        d.qos
                    ));
                }
            }
            None => self.fail(&format!("delivery of a message never published: {d:?}")),
        }
        match d.qos {
            0 => {
                if d.pkid != 0 {
                    self.fail("QoS 0 delivery with a packet id");
                }
            }
            q => {
                if q == 1 {
                    self.totals.deliveries_qos1 += 1;
                } else {
                    self.totals.deliveries_qos2 += 1;
                }
                if d.pkid == 0 {
                    self.fail("QoS 1/2 delivery with packet id 0");
                }
                if let Some(s) = self.out.get(&d.pkid) {
                    self.fail(&format!("packet id {} in use twice (it is {s:?})", d.pkid));
                }
                self.out.insert(
                    d.pkid,
                    if q == 1 {
                        OutState::AwaitAck
                    } else {
                        OutState::AwaitRec
                    },
                );
                if self.out.len() > self.recv_max {
                    self.fail(&format!(
                        "{} QoS 1/2 deliveries in flight, Receive Maximum {}",
                        self.out.len(),
                        self.recv_max
                    ));
                }
            }
        }
    }
}

/// One sequence, chosen by `choices`, against a new channel named `client_id`
/// on `broker` (made with [`options`]). Panics when an invariant breaks.
pub async fn run(broker: &Arc<MqttBroker>, client_id: &str, choices: &mut Choices<'_>) -> Totals {
    let setup = choices.byte();
    let v5 = setup & 1 == 1;
    // One sequence in eight has a persistent session: its stores are fsynced.
    let persistent = setup & 0b1110 == 0;
    let recv_max = 1 + usize::from((setup >> 4) % 4);
    let alias_max = u16::from((setup >> 6) % 3);
    let keep_alive = if choices.below(4) == 0 { 5 } else { 0 };
    let mut connect = if v5 {
        ClientConnect::v5(client_id)
    } else {
        ClientConnect::v311(client_id)
    };
    connect.keep_alive = keep_alive;
    if v5 {
        connect.receive_maximum = Some(recv_max as u16);
        connect.topic_alias_maximum = alias_max;
        // Persistent, but gone soon after the sequence.
        connect.session_expiry = if persistent { 1 } else { 0 };
    } else {
        connect.clean_start = !persistent;
    }
    let mut h = match ChannelHarness::connect(broker, &connect).await {
        Ok(h) => h,
        Err(r) => panic!("CONNECT refused: {r:?}"),
    };
    let mut m = Model {
        v5,
        prefix: format!("fz/{client_id}"),
        recv_max: if v5 { recv_max } else { usize::from(u16::MAX) },
        alias_max: if v5 { alias_max } else { 0 },
        out: HashMap::new(),
        in_qos2: HashMap::new(),
        in_qos1: HashMap::new(),
        owed: HashMap::new(),
        grants: Vec::new(),
        pending_subs: Vec::new(),
        published: HashMap::new(),
        next_msg: 0,
        aliases: HashMap::new(),
        aliases_in: HashMap::new(),
        log: vec![format!("{connect:?}")],
        totals: Totals {
            sequences: 1,
            persistent: u64::from(persistent),
            ..Totals::default()
        },
    };
    match h.packets().as_slice() {
        [ServerPacket::ConnAck(a)] if a.code == 0 => {}
        other => m.fail(&format!("CONNACK expected: {other:?}")),
    }
    // A subscription of its own: what it publishes comes back.
    let first = ClientPacket::Subscribe {
        pkid: 1,
        filters: vec![(m.filter(0), choices.below(3))],
        id: None,
    };
    let mut closed = step(&mut h, &mut m, first, false);
    if closed.is_none() {
        closed = settle(&mut h, &mut m).await;
    }
    while closed.is_none() && !choices.done() {
        let op = choices.below(20);
        let packet = match op {
            0..=6 => {
                let qos = choices.below(3);
                let pkid = 1 + u16::from(choices.below(6));
                let mut topic = m.topic(choices.below(3));
                let sel = choices.byte();
                let mut topic_alias = None;
                if v5 && sel.is_multiple_of(4) {
                    // Aliases up to one past the server's maximum (2).
                    topic_alias = Some(1 + u16::from(sel / 4 % 3));
                    if sel & 0x80 != 0 {
                        topic.clear();
                    }
                }
                let n = m.next_msg;
                m.next_msg += 1;
                let mut payload = n.to_be_bytes().to_vec();
                payload.push(qos);
                // The topic an alias stands for is the server's to know: the
                // model learns it from the alias table it keeps as the client.
                let real = if topic.is_empty() {
                    topic_alias.and_then(|a| m.aliases_in.get(&a).cloned())
                } else {
                    if let Some(a) = topic_alias {
                        m.aliases_in.insert(a, topic.clone());
                    }
                    Some(topic.clone())
                };
                if let Some(t) = real {
                    m.published.insert(n, (t, qos));
                }
                ClientPacket::Publish {
                    topic,
                    qos,
                    pkid,
                    payload: Bytes::from(payload),
                    retain: false,
                    dup: choices.below(8) == 0,
                    topic_alias,
                }
            }
            7..=9 => {
                let id = pick_id(&m, choices);
                ClientPacket::PubAck(id)
            }
            10..=11 => {
                let id = pick_id(&m, choices);
                let code = if choices.below(6) == 0 { 0x80 } else { 0 };
                ClientPacket::PubRec(id, code)
            }
            12 => {
                let id = 1 + u16::from(choices.below(6));
                ClientPacket::PubRel(id)
            }
            13 => {
                let id = pick_id(&m, choices);
                ClientPacket::PubComp(id)
            }
            14 => {
                let pkid = 1 + u16::from(choices.below(8));
                let n = 1 + choices.below(2);
                let filters: Vec<(String, u8)> = (0..n)
                    .map(|_| (m.filter(choices.byte()), choices.below(3)))
                    .collect();
                ClientPacket::Subscribe {
                    pkid,
                    filters,
                    id: None,
                }
            }
            15 => ClientPacket::Unsubscribe {
                pkid: 1 + u16::from(choices.below(8)),
                filters: vec![m.filter(choices.byte())],
            },
            16 => ClientPacket::PingReq,
            17 => {
                let secs = u64::from(choices.below(8));
                m.log.push(format!("tick {secs} s"));
                if let Err(c) = h.tick(Duration::from_secs(secs)) {
                    closed = Some(c);
                }
                drain(&mut h, &mut m);
                continue;
            }
            18 => {
                closed = settle(&mut h, &mut m).await;
                continue;
            }
            _ => {
                if choices.below(4) == 0 {
                    ClientPacket::Disconnect {
                        code: if choices.below(2) == 0 { 0 } else { 4 },
                        session_expiry: None,
                    }
                } else {
                    ClientPacket::PingReq
                }
            }
        };
        // One packet in four is read in a burst with the next: what the
        // engine stored meanwhile is seen only after both.
        let burst = choices.below(4) == 0;
        closed = step(&mut h, &mut m, packet, burst);
    }
    if closed.is_none() {
        closed = settle(&mut h, &mut m).await;
    }
    match closed {
        None if m.owes() => m.fail(&format!("answers never sent: {:?}", m.owed)),
        Some(c) if c.ending != super::Ending::Normal => m.totals.closed_by_server += 1,
        _ => {}
    }
    drop(h);
    if persistent {
        // A clean start ends the session (and its consumer group on the
        // sessions station), so that a long fuzz run keeps a bounded broker: a
        // 3.1.1 persistent session would otherwise stay for good.
        let mut clean = if v5 {
            ClientConnect::v5(client_id)
        } else {
            ClientConnect::v311(client_id)
        };
        clean.clean_start = true;
        match ChannelHarness::connect(broker, &clean).await {
            Ok(h) => {
                h.finish();
            }
            Err(r) => panic!("clean-start CONNECT refused: {r:?}"),
        }
    }
    m.totals
}

/// An id to acknowledge: mostly one in flight, so flows complete.
fn pick_id(m: &Model, choices: &mut Choices<'_>) -> u16 {
    let sel = choices.byte();
    if !sel.is_multiple_of(4) && !m.out.is_empty() {
        let mut ids: Vec<u16> = m.out.keys().copied().collect();
        ids.sort_unstable();
        return ids[usize::from(sel / 4) % ids.len()];
    }
    1 + u16::from(sel % 8)
}

/// Sends `p`; in a `burst`, the mailbox is left for the next packet (read in
/// the same burst).
fn step(h: &mut ChannelHarness, m: &mut Model, p: ClientPacket, burst: bool) -> Option<Closed> {
    m.client_sent(&p);
    if let ClientPacket::Subscribe { pkid, filters, .. } = &p {
        m.pending_subs.push((*pkid, filters.clone()));
    }
    let r = if burst { h.send_in_burst(p) } else { h.send(p) };
    drain(h, m);
    r.err()
}

fn drain(h: &mut ChannelHarness, m: &mut Model) {
    for p in h.packets() {
        m.server_sent(p);
    }
}

/// Waits, counting mailbox events, until every answer owed has come or the
/// connection ended.
async fn settle(h: &mut ChannelHarness, m: &mut Model) -> Option<Closed> {
    loop {
        let r = h.handover();
        drain(h, m);
        if let Err(c) = r {
            return Some(c);
        }
        if !m.owes() {
            return None;
        }
        match h.wait_for_more().await {
            Ok(true) => {}
            Ok(false) => m.fail(&format!(
                "answers not sent within {:?}: {:?}",
                super::WAIT_BOUND,
                m.owed
            )),
            Err(c) => {
                drain(h, m);
                return Some(c);
            }
        }
    }
}
