//! What the MQTT scenarios share: hang guards, `rumqttc` v4/v5 clients whose event
//! loop runs on its own task and whose events are read with a deadline, and a raw
//! socket client that writes hand-built packets and reads the broker's bytes.
//!
//! Timeouts here only guard against hangs; no scenario asserts how long anything
//! takes.

#![allow(dead_code)]

use junction_conformance::TestBroker;
use rumqttc::Outgoing;
use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long any single step may hang before the test fails. A failure guard only.
pub const GUARD: Duration = Duration::from_secs(10);

/// A longer guard for steps that wait for a time-based behaviour (keep-alive,
/// expiry, will delay) or a restart.
pub const LONG_GUARD: Duration = Duration::from_secs(20);

/// Runs `f`, failing the test if it does not finish within [`GUARD`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    within_for(GUARD, what, f).await
}

/// Runs `f`, failing the test if it does not finish within `limit`.
pub async fn within_for<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A payload as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------
// rumqttc clients
// ---------------------------------------------------------------------------

/// One event of a client's event loop, version-neutral.
#[derive(Debug)]
enum Ev<P> {
    In(P),
    Out(Outgoing),
    /// The event loop failed (connection closed, refused, protocol error): its
    /// error, as text. The loop is not polled again, so it never reconnects.
    Closed(String),
}

/// A `rumqttc` client (v4 or v5) whose event loop runs on its own task.
pub struct Mqtt<C, P> {
    /// The client handle: publish, subscribe, disconnect.
    pub client: C,
    events: mpsc::UnboundedReceiver<Ev<P>>,
    /// Incoming packets read while waiting for something else.
    buffered: VecDeque<P>,
    closed: Option<String>,
    task: JoinHandle<()>,
}

impl<C, P> Drop for Mqtt<C, P> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A v3.1.1 client.
pub type V4 = Mqtt<rumqttc::AsyncClient, rumqttc::Packet>;
/// An MQTT 5 client.
pub type V5 = Mqtt<rumqttc::v5::AsyncClient, rumqttc::v5::mqttbytes::v5::Packet>;

impl<C, P: std::fmt::Debug> Mqtt<C, P> {
    async fn next_event(&mut self, what: &str) -> Ev<P> {
        if let Some(why) = &self.closed {
            panic!("waiting for {what}, but the connection is closed: {why}");
        }
        match within(what, self.events.recv()).await {
            Some(Ev::Closed(why)) => {
                self.closed = Some(why.clone());
                Ev::Closed(why)
            }
            Some(e) => e,
            None => Ev::Closed("event loop task ended".into()),
        }
    }

    /// Waits for an incoming packet `pick` accepts; others are kept for later.
    pub async fn wait_in<T>(&mut self, what: &str, mut pick: impl FnMut(&P) -> Option<T>) -> T {
        if let Some(i) = self.buffered.iter().position(|p| pick(p).is_some()) {
            let p = self.buffered.remove(i).expect("index in range");
            return pick(&p).expect("picked before");
        }
        loop {
            match self.next_event(what).await {
                Ev::In(p) => match pick(&p) {
                    Some(t) => return t,
                    None => self.buffered.push_back(p),
                },
                Ev::Out(_) => {}
                Ev::Closed(why) => panic!("connection closed while waiting for {what}: {why}"),
            }
        }
    }

    /// Waits for an outgoing event `pick` accepts (incoming packets are kept).
    async fn wait_out<T>(&mut self, what: &str, mut pick: impl FnMut(&Outgoing) -> Option<T>) -> T {
        loop {
            match self.next_event(what).await {
                Ev::In(p) => self.buffered.push_back(p),
                Ev::Out(o) => {
                    if let Some(t) = pick(&o) {
                        return t;
                    }
                }
                Ev::Closed(why) => panic!("connection closed while waiting for {what}: {why}"),
            }
        }
    }

    /// Waits until the connection ends (the broker closes it, or it sent a
    /// DISCONNECT); returns the event loop's error text and the packets that
    /// arrived before.
    pub async fn closed_within(&mut self, limit: Duration) -> (String, Vec<P>) {
        let mut seen: Vec<P> = self.buffered.drain(..).collect();
        if let Some(why) = &self.closed {
            return (why.clone(), seen);
        }
        within_for(limit, "the connection to close", async {
            loop {
                match self.events.recv().await {
                    Some(Ev::In(p)) => seen.push(p),
                    Some(Ev::Out(_)) => {}
                    Some(Ev::Closed(why)) => {
                        self.closed = Some(why.clone());
                        return (why, std::mem::take(&mut seen));
                    }
                    None => return ("event loop task ended".into(), std::mem::take(&mut seen)),
                }
            }
        })
        .await
    }

    /// [`Self::closed_within`] with [`GUARD`].
    pub async fn closed(&mut self) -> (String, Vec<P>) {
        self.closed_within(GUARD).await
    }

    /// Everything that arrives during `d` (for "nothing more arrives" checks, after
    /// a positive sentinel whenever one is possible).
    pub async fn drain_for(&mut self, d: Duration) -> Vec<P> {
        let mut seen: Vec<P> = self.buffered.drain(..).collect();
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            match e {
                Ev::In(p) => seen.push(p),
                Ev::Out(_) => {}
                Ev::Closed(why) => {
                    self.closed = Some(why);
                    break;
                }
            }
        }
        seen
    }
}

/// v3.1.1 options for `client_id` against `broker`: keep-alive 30 s, clean session.
pub fn v4_options(broker: &TestBroker, client_id: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", broker.mqtt_port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1024 * 1024, 1024 * 1024);
    o
}

/// MQTT 5 options for `client_id` against `broker`: keep-alive 30 s, clean start,
/// session expiry 0.
pub fn v5_options(broker: &TestBroker, client_id: &str) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(client_id, "127.0.0.1", broker.mqtt_port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// Runs a v3.1.1 event loop until its first error.
fn spawn_v4(
    mut el: rumqttc::EventLoop,
) -> (mpsc::UnboundedReceiver<Ev<rumqttc::Packet>>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let e = match el.poll().await {
                Ok(rumqttc::Event::Incoming(p)) => Ev::In(p),
                Ok(rumqttc::Event::Outgoing(o)) => Ev::Out(o),
                Err(e) => {
                    let _ = tx.send(Ev::Closed(format!("{e:?}")));
                    return;
                }
            };
            if tx.send(e).is_err() {
                return;
            }
        }
    });
    (rx, task)
}

/// Runs an MQTT 5 event loop until its first error.
fn spawn_v5(
    mut el: rumqttc::v5::EventLoop,
) -> (
    mpsc::UnboundedReceiver<Ev<rumqttc::v5::mqttbytes::v5::Packet>>,
    JoinHandle<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let e = match el.poll().await {
                Ok(rumqttc::v5::Event::Incoming(p)) => Ev::In(p),
                Ok(rumqttc::v5::Event::Outgoing(o)) => Ev::Out(o),
                Err(e) => {
                    let _ = tx.send(Ev::Closed(format!("{e:?}")));
                    return;
                }
            };
            if tx.send(e).is_err() {
                return;
            }
        }
    });
    (rx, task)
}

impl V4 {
    /// Connects; `Err` holds the event loop's error (`Debug` text, which names the
    /// CONNACK return code) when the broker refused or closed the connection.
    pub async fn try_connect(
        options: rumqttc::MqttOptions,
    ) -> Result<(V4, rumqttc::ConnAck), String> {
        let (client, el) = rumqttc::AsyncClient::new(options, 100);
        let (events, task) = spawn_v4(el);
        let mut m = Mqtt {
            client,
            events,
            buffered: VecDeque::new(),
            closed: None,
            task,
        };
        loop {
            match m.next_event("CONNACK").await {
                Ev::In(rumqttc::Packet::ConnAck(ack)) => return Ok((m, ack)),
                Ev::In(other) => m.buffered.push_back(other),
                Ev::Out(_) => {}
                Ev::Closed(why) => return Err(why),
            }
        }
    }

    /// Connects, failing the test if the broker refuses.
    pub async fn connect(options: rumqttc::MqttOptions) -> (V4, rumqttc::ConnAck) {
        let (m, ack) = Self::try_connect(options)
            .await
            .unwrap_or_else(|e| panic!("v4 connect failed: {e}"));
        assert_eq!(
            ack.code,
            rumqttc::ConnectReturnCode::Success,
            "CONNACK {ack:?}"
        );
        (m, ack)
    }

    /// A clean-session client with default options.
    pub async fn new(broker: &TestBroker, client_id: &str) -> V4 {
        Self::connect(v4_options(broker, client_id)).await.0
    }

    /// Subscribes and waits for the SUBACK; returns its return codes.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: rumqttc::QoS,
    ) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("subscribe request");
        let pkid = self
            .wait_out("SUBSCRIBE sent", |o| match o {
                Outgoing::Subscribe(p) => Some(*p),
                _ => None,
            })
            .await;
        self.wait_in("SUBACK", |p| match p {
            rumqttc::Packet::SubAck(a) if a.pkid == pkid => Some(a.return_codes.clone()),
            _ => None,
        })
        .await
    }

    /// Publishes and, for QoS 1/2, waits for the PUBACK / PUBCOMP; for QoS 0 waits
    /// until the packet is written.
    pub async fn publish(
        &mut self,
        topic: &str,
        qos: rumqttc::QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        self.client
            .publish(topic, qos, retain, payload)
            .await
            .expect("publish request");
        let pkid = self
            .wait_out("PUBLISH sent", |o| match o {
                Outgoing::Publish(p) => Some(*p),
                _ => None,
            })
            .await;
        match qos {
            rumqttc::QoS::AtMostOnce => {}
            rumqttc::QoS::AtLeastOnce => {
                self.wait_in("PUBACK", |p| {
                    matches!(p, rumqttc::Packet::PubAck(a) if a.pkid == pkid).then_some(())
                })
                .await
            }
            rumqttc::QoS::ExactlyOnce => {
                self.wait_in("PUBCOMP", |p| {
                    matches!(p, rumqttc::Packet::PubComp(a) if a.pkid == pkid).then_some(())
                })
                .await
            }
        }
    }

    /// The next PUBLISH from the broker.
    pub async fn recv(&mut self) -> rumqttc::Publish {
        self.wait_in("PUBLISH", |p| match p {
            rumqttc::Packet::Publish(m) => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// The next `n` PUBLISHes from the broker.
    pub async fn recv_n(&mut self, n: usize) -> Vec<rumqttc::Publish> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.recv().await);
        }
        out
    }

    /// PUBLISHes until one with `payload` arrives; returns all of them (it last).
    pub async fn recv_until(&mut self, payload: &[u8]) -> Vec<rumqttc::Publish> {
        let mut out = Vec::new();
        loop {
            let m = self.recv().await;
            let done = m.payload.as_ref() == payload;
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Sends DISCONNECT and waits for the connection to end.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("disconnect request");
        self.closed().await;
    }
}

impl V5 {
    /// Connects; `Err` holds the event loop's error (`Debug` text, which names the
    /// CONNACK reason code) when the broker refused or closed the connection.
    pub async fn try_connect(
        options: rumqttc::v5::MqttOptions,
    ) -> Result<(V5, rumqttc::v5::mqttbytes::v5::ConnAck), String> {
        let (client, el) = rumqttc::v5::AsyncClient::new(options, 100);
        let (events, task) = spawn_v5(el);
        let mut m = Mqtt {
            client,
            events,
            buffered: VecDeque::new(),
            closed: None,
            task,
        };
        loop {
            match m.next_event("CONNACK").await {
                Ev::In(P5::ConnAck(ack)) => return Ok((m, ack)),
                Ev::In(other) => m.buffered.push_back(other),
                Ev::Out(_) => {}
                Ev::Closed(why) => return Err(why),
            }
        }
    }

    /// Connects, failing the test if the broker refuses.
    pub async fn connect(
        options: rumqttc::v5::MqttOptions,
    ) -> (V5, rumqttc::v5::mqttbytes::v5::ConnAck) {
        let (m, ack) = Self::try_connect(options)
            .await
            .unwrap_or_else(|e| panic!("v5 connect failed: {e}"));
        assert_eq!(
            ack.code,
            rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success,
            "CONNACK {ack:?}"
        );
        (m, ack)
    }

    /// A clean-start client (session expiry 0) with default options.
    pub async fn new(broker: &TestBroker, client_id: &str) -> V5 {
        Self::connect(v5_options(broker, client_id)).await.0
    }

    /// Subscribes with `filter`'s options (and properties) and waits for the SUBACK.
    pub async fn subscribe_with(
        &mut self,
        filter: rumqttc::v5::mqttbytes::v5::Filter,
        props: Option<rumqttc::v5::mqttbytes::v5::SubscribeProperties>,
    ) -> Vec<rumqttc::v5::mqttbytes::v5::SubscribeReasonCode> {
        match props {
            Some(p) => {
                self.client
                    .subscribe_many_with_properties([filter], p)
                    .await
            }
            None => self.client.subscribe_many([filter]).await,
        }
        .expect("subscribe request");
        let pkid = self
            .wait_out("SUBSCRIBE sent", |o| match o {
                Outgoing::Subscribe(p) => Some(*p),
                _ => None,
            })
            .await;
        self.wait_in("SUBACK", |p| match p {
            P5::SubAck(a) if a.pkid == pkid => Some(a.return_codes.clone()),
            _ => None,
        })
        .await
    }

    /// Subscribes with default options and waits for the SUBACK.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: rumqttc::v5::mqttbytes::QoS,
    ) -> Vec<rumqttc::v5::mqttbytes::v5::SubscribeReasonCode> {
        self.subscribe_with(rumqttc::v5::mqttbytes::v5::Filter::new(filter, qos), None)
            .await
    }

    /// Publishes (with properties) and, for QoS 1/2, waits for the PUBACK / PUBREC
    /// (returns its reason) and for QoS 2 the PUBCOMP when the PUBREC succeeded.
    pub async fn publish_with(
        &mut self,
        topic: &str,
        qos: rumqttc::v5::mqttbytes::QoS,
        retain: bool,
        payload: impl Into<bytes::Bytes>,
        props: Option<rumqttc::v5::mqttbytes::v5::PublishProperties>,
    ) -> Option<String> {
        match props {
            Some(p) => {
                self.client
                    .publish_with_properties(topic, qos, retain, payload, p)
                    .await
            }
            None => self.client.publish(topic, qos, retain, payload).await,
        }
        .expect("publish request");
        let pkid = self
            .wait_out("PUBLISH sent", |o| match o {
                Outgoing::Publish(p) => Some(*p),
                _ => None,
            })
            .await;
        use rumqttc::v5::mqttbytes::QoS;
        match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(
                self.wait_in("PUBACK", |p| match p {
                    P5::PubAck(a) if a.pkid == pkid => Some(format!("{:?}", a.reason)),
                    _ => None,
                })
                .await,
            ),
            QoS::ExactlyOnce => {
                let rec = self
                    .wait_in("PUBREC", |p| match p {
                        P5::PubRec(a) if a.pkid == pkid => Some(format!("{:?}", a.reason)),
                        _ => None,
                    })
                    .await;
                if rec == "Success" || rec == "NoMatchingSubscribers" {
                    self.wait_in("PUBCOMP", |p| {
                        matches!(p, P5::PubComp(a) if a.pkid == pkid).then_some(())
                    })
                    .await;
                }
                Some(rec)
            }
        }
    }

    /// Publishes without properties; see [`Self::publish_with`].
    pub async fn publish(
        &mut self,
        topic: &str,
        qos: rumqttc::v5::mqttbytes::QoS,
        retain: bool,
        payload: impl Into<bytes::Bytes>,
    ) -> Option<String> {
        self.publish_with(topic, qos, retain, payload, None).await
    }

    /// The next PUBLISH from the broker.
    pub async fn recv(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        self.wait_in("PUBLISH", |p| match p {
            P5::Publish(m) => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// The next `n` PUBLISHes from the broker.
    pub async fn recv_n(&mut self, n: usize) -> Vec<rumqttc::v5::mqttbytes::v5::Publish> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.recv().await);
        }
        out
    }

    /// PUBLISHes until one with `payload` arrives; returns all of them (it last).
    pub async fn recv_until(&mut self, payload: &[u8]) -> Vec<rumqttc::v5::mqttbytes::v5::Publish> {
        let mut out = Vec::new();
        loop {
            let m = self.recv().await;
            let done = m.payload.as_ref() == payload;
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Sends DISCONNECT (normal) and waits for the connection to end.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("disconnect request");
        self.closed().await;
    }
}

/// MQTT 5 packets as `rumqttc` decodes them.
pub use rumqttc::v5::mqttbytes::v5::Packet as P5;

// ---------------------------------------------------------------------------
// Raw sockets and hand-built packets
// ---------------------------------------------------------------------------

/// The variable-length "remaining length" encoding.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// A UTF-8 string (or binary data) with its two-byte length.
pub fn lstr(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// A packet: first byte, remaining length, body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// A v3.1.1 CONNECT (no will, no credentials).
pub fn connect_v4(client_id: &str, clean: bool, keep_alive: u16) -> Vec<u8> {
    let mut body = lstr(b"MQTT");
    body.push(4);
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend(keep_alive.to_be_bytes());
    body.extend(lstr(client_id.as_bytes()));
    packet(0x10, &body)
}

/// An MQTT 5 CONNECT with the given (already encoded) properties.
pub fn connect_v5(client_id: &str, clean: bool, keep_alive: u16, props: &[u8]) -> Vec<u8> {
    let mut body = lstr(b"MQTT");
    body.push(5);
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend(keep_alive.to_be_bytes());
    body.extend(varint(props.len()));
    body.extend_from_slice(props);
    body.extend(lstr(client_id.as_bytes()));
    packet(0x10, &body)
}

/// A PUBLISH; `props` is `Some` (encoded properties) for MQTT 5.
pub fn publish_raw(
    topic: &[u8],
    qos: u8,
    pkid: u16,
    dup: bool,
    retain: bool,
    payload: &[u8],
    props: Option<&[u8]>,
) -> Vec<u8> {
    let first = 0x30 | (u8::from(dup) << 3) | (qos << 1) | u8::from(retain);
    let mut body = lstr(topic);
    if qos > 0 {
        body.extend(pkid.to_be_bytes());
    }
    if let Some(p) = props {
        body.extend(varint(p.len()));
        body.extend_from_slice(p);
    }
    body.extend_from_slice(payload);
    packet(first, &body)
}

/// A SUBSCRIBE for one filter; `props` is `Some` for MQTT 5; `options` is the
/// options byte (QoS in the low bits).
pub fn subscribe_raw(pkid: u16, filter: &str, options: u8, props: Option<&[u8]>) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if let Some(p) = props {
        body.extend(varint(p.len()));
        body.extend_from_slice(p);
    }
    body.extend(lstr(filter.as_bytes()));
    body.push(options);
    packet(0x82, &body)
}

/// PUBREL (v3.1.1 form, which MQTT 5 also accepts: reason 0, no properties).
pub fn pubrel(pkid: u16) -> Vec<u8> {
    packet(0x62, &pkid.to_be_bytes())
}

/// PUBACK (short form).
pub fn puback(pkid: u16) -> Vec<u8> {
    packet(0x40, &pkid.to_be_bytes())
}

/// PUBREC (short form).
pub fn pubrec(pkid: u16) -> Vec<u8> {
    packet(0x50, &pkid.to_be_bytes())
}

/// PUBCOMP (short form).
pub fn pubcomp(pkid: u16) -> Vec<u8> {
    packet(0x70, &pkid.to_be_bytes())
}

/// PINGREQ.
pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
/// DISCONNECT (v3.1.1; MQTT 5 normal disconnection).
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// One packet read back: its first byte and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPacket {
    /// Type and flags.
    pub first: u8,
    /// Everything after the remaining length.
    pub body: Vec<u8>,
}

impl RawPacket {
    /// The packet type (high nibble).
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    /// The packet id of an ack (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK).
    pub fn pkid(&self) -> u16 {
        u16::from_be_bytes([self.body[0], self.body[1]])
    }

    /// The reason code of an MQTT 5 ack (0 when omitted).
    pub fn ack_reason(&self) -> u8 {
        self.body.get(2).copied().unwrap_or(0)
    }

    /// The reason code of an MQTT 5 DISCONNECT (0 when omitted).
    pub fn disconnect_reason(&self) -> u8 {
        self.body.first().copied().unwrap_or(0)
    }

    /// The topic and payload of a PUBLISH; `v5` skips the properties.
    pub fn publish_parts(&self, v5: bool) -> (String, Vec<u8>) {
        let b = &self.body;
        let tl = usize::from(u16::from_be_bytes([b[0], b[1]]));
        let topic = String::from_utf8_lossy(&b[2..2 + tl]).into_owned();
        let mut i = 2 + tl;
        if (self.first >> 1) & 3 > 0 {
            i += 2;
        }
        if v5 {
            let (len, used) = read_varint(&b[i..]);
            i += used + len;
        }
        (topic, b[i..].to_vec())
    }

    /// The packet id of a QoS 1/2 PUBLISH.
    pub fn publish_pkid(&self) -> u16 {
        let tl = usize::from(u16::from_be_bytes([self.body[0], self.body[1]]));
        u16::from_be_bytes([self.body[2 + tl], self.body[3 + tl]])
    }
}

fn read_varint(b: &[u8]) -> (usize, usize) {
    let mut n = 0usize;
    let mut mult = 1usize;
    for (i, byte) in b.iter().enumerate() {
        n += usize::from(byte & 0x7f) * mult;
        mult *= 128;
        if byte & 0x80 == 0 {
            return (n, i + 1);
        }
    }
    (n, b.len())
}

/// A raw MQTT connection: write bytes, read packets.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Opens a TCP connection to the broker's MQTT port.
    pub async fn open(broker: &TestBroker) -> Raw {
        let stream = within("TCP connect", TcpStream::connect(broker.mqtt_addr()))
            .await
            .expect("TCP connect");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Opens a connection and sends `connect`, expecting a successful CONNACK.
    pub async fn connected(broker: &TestBroker, connect: &[u8]) -> Raw {
        let mut r = Raw::open(broker).await;
        r.send(connect).await;
        let ack = r.read().await.expect("CONNACK, not a close");
        assert_eq!(ack.kind(), 2, "expected CONNACK, got {ack:?}");
        assert_eq!(ack.body[1], 0, "CONNACK refused: {ack:?}");
        r
    }

    /// Writes bytes (a write error is ignored: the broker may already have closed).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = within("socket write", async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await;
    }

    /// The next packet, or `None` once the broker closed the connection.
    pub async fn read(&mut self) -> Option<RawPacket> {
        self.read_within(GUARD).await
    }

    /// [`Self::read`] with another guard.
    pub async fn read_within(&mut self, limit: Duration) -> Option<RawPacket> {
        within_for(limit, "a packet or a close", async {
            loop {
                if let Some(p) = self.take_packet() {
                    return Some(p);
                }
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
    }

    fn take_packet(&mut self) -> Option<RawPacket> {
        if self.buf.len() < 2 {
            return None;
        }
        let mut len = 0usize;
        let mut mult = 1usize;
        let mut i = 1;
        loop {
            let b = *self.buf.get(i)?;
            len += usize::from(b & 0x7f) * mult;
            mult *= 128;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        if self.buf.len() < i + len {
            return None;
        }
        let first = self.buf[0];
        let body = self.buf[i..i + len].to_vec();
        self.buf.drain(..i + len);
        Some(RawPacket { first, body })
    }

    /// The next packet of type `kind`, skipping (and returning) others; panics if
    /// the connection closes first.
    pub async fn expect(&mut self, kind: u8) -> RawPacket {
        loop {
            match self.read().await {
                Some(p) if p.kind() == kind => return p,
                Some(_) => {}
                None => panic!("connection closed while waiting for packet type {kind}"),
            }
        }
    }

    /// Reads until the broker closes the connection; returns what it sent before.
    pub async fn until_closed(&mut self) -> Vec<RawPacket> {
        self.until_closed_within(GUARD).await
    }

    /// [`Self::until_closed`] with another guard.
    pub async fn until_closed_within(&mut self, limit: Duration) -> Vec<RawPacket> {
        within_for(limit, "the broker to close the connection", async {
            let mut seen = Vec::new();
            while let Some(p) = self.read_within(limit).await {
                seen.push(p);
            }
            seen
        })
        .await
    }

    /// Everything that arrives during `d` without the connection closing.
    pub async fn drain_for(&mut self, d: Duration) -> Vec<RawPacket> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(p) = self.take_packet() {
                seen.push(p);
                continue;
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => panic!("connection closed; got {seen:?}"),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return seen,
            }
        }
    }
}

/// Proves the broker still serves: a fresh v3.1.1 client round-trips a message.
pub async fn still_serves(broker: &TestBroker) {
    let mut c = V4::new(broker, "still-serves").await;
    c.subscribe("health/check", rumqttc::QoS::AtLeastOnce).await;
    c.publish("health/check", rumqttc::QoS::AtLeastOnce, false, "ok")
        .await;
    let m = c.recv().await;
    assert_eq!(&m.payload[..], b"ok");
    c.disconnect().await;
}
