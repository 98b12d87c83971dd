//! The MQTT session state machine: packets, mailbox events and timer ticks in;
//! packets for the socket (encoded into [`Wire`]) and engine calls out.
//!
//! An [`MqttChannel`] does no I/O and never waits: the connection driver
//! ([`crate::connection`]) reads packets off the socket and feeds them in, hands
//! over what the mailbox collected (live and group deliveries, storage
//! completions), ticks the keep-alive timer, and writes out what the channel
//! encoded. An `Err(Close)` means "close the connection": the DISCONNECT (MQTT 5)
//! that says why is already encoded. QoS 1/2 inflight, packet ids, Receive
//! Maximum, topic aliases and keep-alive are plain data here.

pub mod harness;
mod inbound;
mod lifecycle;
mod outbound;

pub(crate) use lifecycle::PutAway;

use crate::broker::{AckJoin, MqttBroker, Tenant, header_qos};
use crate::frame::{In, Out, Will, lower, qos_num, qos_of};
use crate::mailbox::{Event, GroupSink, LiveSub, Mailbox, Stop};
use crate::session::{
    self, H_CONTENT_TYPE, H_MQTT_CORRELATION, H_MQTT_EXPIRES, H_MQTT_QOS, H_MQTT_RETAIN,
    H_MQTT_UTF8, H_ORIGIN_CLIENT, H_ORIGIN_PROTOCOL, H_ORIGIN_TOPIC, MSGS, MSGS_PREFIX, PendingOut,
    SessionRecord, SubOpts,
};
use crate::topic::{self, MappedFilter, TopicError};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use junction_api::{
    AckKind, AckPolicy, ClientRecord, DeliverPolicy, Delivered, EngineError, FetchRequest,
    GroupConfig, Headers, Message, QueueGroup, Subject, SubjectFilter, SubscriptionId,
};
use outbound::expires_at;
use rmqtt_codec::MqttCodec;
use rmqtt_codec::error::{DecodeError, EncodeError};
use rmqtt_codec::types::Publish;
use rmqtt_codec::v5::{PublishProperties, ToReasonCode};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a group fetch waits before it is renewed.
const FETCH_EXPIRES: Duration = Duration::from_secs(30);
/// Unacknowledged group deliveries are redelivered after this long even while the
/// client stays connected (MQTT itself never resends on a live connection).
const GROUP_ACK_WAIT: Duration = Duration::from_secs(3600);

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The consumer group of a persistent subscription. A shared subscription's
/// (`$share/<group>/<filter>`) is the share group's, whoever subscribes: its
/// members take turns at one queue.
pub(crate) fn group_name(client_id: &str, raw_filter: &str) -> String {
    if raw_filter.starts_with("$share/") {
        return format!("mqtt_share_{}", session::short_hash(raw_filter));
    }
    format!(
        "mqtt_{}_{}",
        session::short_hash(client_id),
        session::short_hash(&format!("{client_id}\u{0}{raw_filter}"))
    )
}

/// The consumer group on `$MQTT_msgs` of a persistent QoS 1/2 subscription to
/// `raw_filter`, which maps to the subject filters `subjects`.
pub(crate) fn durable_group(
    client_id: &str,
    raw_filter: &str,
    subjects: &[SubjectFilter],
) -> GroupConfig {
    GroupConfig {
        name: group_name(client_id, raw_filter),
        durable: true,
        description: Some(if raw_filter.starts_with("$share/") {
            format!("MQTT {raw_filter}")
        } else {
            format!("MQTT {client_id} {raw_filter}")
        }),
        deliver_policy: DeliverPolicy::New,
        ack_policy: AckPolicy::Explicit,
        ack_wait: GROUP_ACK_WAIT,
        max_deliver: -1,
        filter_subjects: subjects
            .iter()
            .map(|f| format!("{MSGS_PREFIX}{f}"))
            .collect(),
        max_ack_pending: -1,
        ..GroupConfig::default()
    }
}

/// Builds the engine message for an MQTT publish: properties become headers, and
/// lineage headers say where it came from.
pub(crate) fn build_message(
    subject: Subject,
    topic: &str,
    payload: Bytes,
    qos: u8,
    retain: bool,
    props: &PublishProperties,
    client_id: &str,
) -> Message {
    let mut h = Headers::new();
    for (k, v) in &props.user_properties {
        // Lineage names are the broker's to set: a publisher's are dropped.
        if is_lineage_name(k) {
            continue;
        }
        // One of the front-end's own names is kept escaped, not dropped
        // (MQTT-3.3.2-17).
        h.append(
            session::stored_property_name(k, session::is_internal_header(k)).into_owned(),
            v.to_string(),
        );
    }
    // Appended, not inserted (no search per name): a user property with one
    // of these names was escaped above, and lineage names were dropped.
    h.append(H_ORIGIN_PROTOCOL, "mqtt");
    h.append(H_ORIGIN_CLIENT, client_id);
    h.append(H_ORIGIN_TOPIC, topic);
    h.append(H_MQTT_QOS, qos_str(qos));
    if retain {
        h.append(H_MQTT_RETAIN, "1");
    }
    if let Some(ct) = &props.content_type {
        h.insert(H_CONTENT_TYPE, ct.to_string());
    }
    if props.is_utf8_payload {
        h.insert(H_MQTT_UTF8, "1");
    }
    if let Some(c) = &props.correlation_data {
        h.insert(
            H_MQTT_CORRELATION,
            base64::engine::general_purpose::STANDARD.encode(c),
        );
    }
    if let Some(e) = props.message_expiry_interval {
        h.insert(
            H_MQTT_EXPIRES,
            (now_ms() + u64::from(e.get()) * 1000).to_string(),
        );
    }
    let reply = props
        .response_topic
        .as_ref()
        .and_then(|t| topic::topic_to_subject(t).ok());
    Message {
        subject,
        reply,
        headers: Some(h),
        payload,
    }
}

/// A QoS as its header value, without formatting a number per message.
fn qos_str(qos: u8) -> &'static str {
    match qos {
        0 => "0",
        1 => "1",
        _ => "2",
    }
}

/// Client-supplied user properties may not forge lineage (`Junction-…`).
fn is_lineage_name(name: &str) -> bool {
    name.get(..9)
        .is_some_and(|p| p.eq_ignore_ascii_case("junction-"))
}

/// Where an outgoing QoS 1/2 message came from.
#[derive(Debug, Clone)]
enum Origin {
    Live,
    Group { group: String, seq: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
enum OutState {
    AwaitAck,
    AwaitRec,
    AwaitComp,
}

/// A message on its way to the client.
#[derive(Debug, Clone)]
struct OutMsg {
    subject: Subject,
    payload: Bytes,
    headers: Option<Headers>,
    reply: Option<Subject>,
    qos: u8,
    retain: bool,
    dup: bool,
    sub_ids: Vec<u32>,
    origin: Origin,
}

struct ActiveSub {
    raw: String,
    opts: SubOpts,
    mapped: MappedFilter,
    engine_ids: Vec<SubscriptionId>,
    group: Option<String>,
    fetching: bool,
}

struct PendingIn {
    slot: u64,
    pkid: u16,
    qos: u8,
    result: Option<crate::broker::StoreResult>,
    /// A QoS 2 resend that came while the publish it repeats was being stored:
    /// it gets its own PUBREC, with that publish's outcome, once it is stored.
    echo: bool,
}

/// Why the connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// DISCONNECT 0x00: no will.
    Normal,
    /// DISCONNECT 0x04, a dropped socket or an error: the will goes out.
    WithWill,
    /// Another connection took the client id.
    TakenOver,
    /// The broker is stopping.
    Shutdown,
}

/// The channel's answer that the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Close {
    pub end: End,
    /// The client may still be writing: the driver sends what is encoded, stops
    /// writing, and reads and drops what the client still sends for a moment, so
    /// that the DISCONNECT's reason code arrives (MQTT-4.13.1, 4.13.2).
    pub drain: bool,
}

impl Close {
    pub(crate) const WITH_WILL: Close = Close {
        end: End::WithWill,
        drain: false,
    };
}

/// The result of handling one input.
pub(crate) type Step = Result<(), Close>;

/// Packets encoded for the socket, not yet written.
pub(crate) struct Wire {
    codec: MqttCodec,
    buf: BytesMut,
}

impl Wire {
    /// `codec` encodes: for MQTT 5 it holds the client's Maximum Packet Size.
    pub(crate) fn new(codec: MqttCodec) -> Self {
        Wire {
            codec,
            buf: BytesMut::new(),
        }
    }

    /// What is encoded and not yet written.
    pub(crate) fn pending(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    fn encode(&mut self, packet: rmqtt_codec::MqttPacket) -> Result<(), EncodeError> {
        use tokio_util::codec::Encoder;
        self.codec.encode(packet, &mut self.buf)
    }
}

/// What the handshake settled for a connection, from its CONNECT and the
/// broker's limits.
pub(crate) struct Settings {
    pub v5: bool,
    pub client_id: String,
    pub username: Option<String>,
    /// The Session Expiry Interval granted at CONNECT.
    pub connect_expiry: u32,
    /// The resumed session was left by a crash: what its groups deliver again
    /// was sent before.
    pub after_crash: bool,
    pub client_recv_max: u16,
    pub client_alias_max: u16,
    pub problem_info: bool,
    pub will: Option<Will>,
    /// Seconds; 0 is none.
    pub keep_alive: u16,
    /// The session has (or had) a record in `$MQTT_sess`.
    pub stored: bool,
    /// The client authenticated with SCRAM-SHA-256 (MQTT 5 enhanced
    /// authentication), so it may re-authenticate.
    pub scram: bool,
    /// The client is a bridge (mosquitto's bridge bit on a 3.1.1 CONNECT).
    pub bridge: bool,
}

/// One client's session on one connection.
pub(crate) struct MqttChannel {
    broker: Arc<MqttBroker>,
    tenant: Arc<Tenant>,
    wire: Wire,
    v5: bool,
    client: Arc<ClientRecord>,
    client_id: String,
    username: Option<String>,
    mailbox: Arc<Mailbox>,
    record: SessionRecord,
    connect_expiry: u32,
    subs: HashMap<u32, ActiveSub>,
    sub_keys: HashMap<String, u32>,
    next_sub_key: u32,
    acks_in: VecDeque<PendingIn>,
    next_slot: u64,
    outflight: BTreeMap<u16, (Origin, OutState)>,
    queue: VecDeque<OutMsg>,
    next_pkid: u16,
    /// The session was resumed after a crash ([`SessionRecord::crashed`]).
    after_crash: bool,
    client_recv_max: usize,
    client_alias_max: u16,
    problem_info: bool,
    will: Option<Box<Will>>,
    keep_alive: Option<Duration>,
    last_in: Instant,
    /// When the client's activity was last recorded ([`junction_api::ClientStats::touch`]).
    last_touch: Instant,
    /// The session has (or had) a record in `$MQTT_sess`.
    stored: bool,
    /// Authenticated with SCRAM-SHA-256: AUTH 0x19 re-authenticates.
    scram: bool,
    /// A bridge (mosquitto's bridge bit): its subscriptions are No Local and
    /// Retain As Published.
    bridge: bool,
    /// State most connections never need, made on first use: an idle
    /// connection does not carry its empty tables.
    rare: Option<Box<Rare>>,
}

/// A channel's state that most connections never use.
#[derive(Default)]
struct Rare {
    /// Topic aliases the client set (MQTT 5).
    aliases_in: HashMap<u16, String>,
    /// Topic aliases the server set.
    aliases_out: HashMap<String, u16>,
    /// Packet ids of stored messages sent before, to send them with again.
    reuse_pkids: HashMap<(String, u64), u16>,
    /// Stored messages (`$MQTT_msgs` sequences) sent lately, so a second
    /// overlapping subscription's group does not send one again.
    recent_seqs: HashSet<u64>,
    recent_order: VecDeque<u64>,
    /// SUBACKs waiting for the session record, with the retained messages to send
    /// after them.
    after_suback: HashMap<u16, Vec<OutMsg>>,
    /// A re-authentication under way: the server-first-message was sent.
    reauth: Option<crate::auth::ScramServer>,
    /// Stored messages the client PUBREC'd before the session was resumed
    /// (group, sequence): done with if their group delivers them again.
    released: HashSet<(String, u64)>,
}

impl MqttChannel {
    /// The rarely used state, made now if it was not.
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Default::default)
    }

    /// A channel for a session the handshake took over (or made), with its
    /// record as resumed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        broker: Arc<MqttBroker>,
        tenant: Arc<Tenant>,
        client: Arc<ClientRecord>,
        mailbox: Arc<Mailbox>,
        wire: Wire,
        record: SessionRecord,
        settings: Settings,
        now: Instant,
    ) -> Self {
        MqttChannel {
            broker,
            tenant,
            wire,
            v5: settings.v5,
            client,
            client_id: settings.client_id,
            username: settings.username,
            mailbox,
            record,
            connect_expiry: settings.connect_expiry,
            subs: HashMap::new(),
            sub_keys: HashMap::new(),
            next_sub_key: 1,
            acks_in: VecDeque::new(),
            next_slot: 1,
            outflight: BTreeMap::new(),
            queue: VecDeque::new(),
            next_pkid: 1,
            after_crash: settings.after_crash,
            client_recv_max: usize::from(settings.client_recv_max.max(1)),
            client_alias_max: settings.client_alias_max,
            problem_info: settings.problem_info,
            will: settings.will.map(Box::new),
            // The client's keep-alive and half as long again (MQTT-3.1.2-22).
            keep_alive: (settings.keep_alive > 0)
                .then(|| Duration::from_millis(u64::from(settings.keep_alive) * 1500)),
            last_in: now,
            last_touch: now,
            stored: settings.stored,
            scram: settings.scram,
            bridge: settings.bridge,
            rare: None,
        }
    }

    /// Sends CONNACK, then resumes the session: its subscriptions are live
    /// again, PUBRELs it owed are sent, and its groups are asked for what they
    /// hold.
    pub(crate) fn connected(&mut self, ack: rmqtt_codec::v5::ConnectAck) -> Step {
        self.write(Out::ConnAck(Box::new(ack)))?;
        self.restore();
        Ok(())
    }

    /// Where the engine and the storage leave what is for this connection.
    pub(crate) fn mailbox(&self) -> Arc<Mailbox> {
        self.mailbox.clone()
    }

    /// The client's id.
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Packets encoded for the socket.
    pub(crate) fn wire(&mut self) -> &mut Wire {
        &mut self.wire
    }

    /// When the client, silent since its last packet, is past its keep-alive.
    pub(crate) fn keep_alive_deadline(&self) -> Option<Instant> {
        self.keep_alive.map(|k| self.last_in + k)
    }

    /// When the client's last packet was read (or the channel made).
    pub(crate) fn last_in(&self) -> Instant {
        self.last_in
    }

    /// Time passed: a client silent beyond its keep-alive is disconnected.
    pub(crate) fn tick(&mut self, now: Instant) -> Step {
        match self.keep_alive_deadline() {
            Some(d) if now >= d => Err(self.disconnect(0x8D, "keep alive timeout")),
            _ => Ok(()),
        }
    }

    /// Told from outside to end ([`Stop`]).
    pub(crate) fn stop(&mut self, why: Stop) -> Close {
        match why {
            Stop::TakenOver | Stop::Moved => self.taken_over(),
            Stop::Operator => self.kicked(),
        }
    }

    /// Another connection took the client id over.
    fn taken_over(&mut self) -> Close {
        self.disconnect(0x8E, "session taken over");
        Close {
            end: End::TakenOver,
            drain: false,
        }
    }

    /// An operator disconnected the client (`Engine::close_client`). MQTT 5 0x98
    /// Administrative action; MQTT 3.1.1 has no server DISCONNECT, so the socket
    /// just closes. An abnormal end: the will goes out.
    fn kicked(&mut self) -> Close {
        self.disconnect(0x98, "Kicked by operator")
    }

    /// The broker is stopping.
    pub(crate) fn shutting_down(&mut self) -> Close {
        self.disconnect(0x8B, "server shutting down");
        Close {
            end: End::Shutdown,
            drain: false,
        }
    }
}

pub(crate) fn denied_publish(broker: &MqttBroker, user: Option<&str>, topic: &str) -> bool {
    broker.options.acl.iter().any(|r| {
        (r.user.is_none() || r.user.as_deref() == user)
            && r.deny_publish
                .iter()
                .any(|f| topic::filter_matches(f, topic))
    })
}
