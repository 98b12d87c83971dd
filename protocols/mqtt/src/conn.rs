//! One MQTT connection: CONNECT, then the session state machine until the socket,
//! the client or the broker ends it.

use crate::broker::{AckJoin, MqttBroker, Tenant, header_qos, remaining_expiry};
use crate::mailbox::{Event, GroupSink, LiveSub, Mailbox};
use crate::packets::{ConnectInfo, In, Out, Will, connack, lift, lower, qos_num, qos_of};
use crate::session::{
    self, H_CONTENT_TYPE, H_MQTT_CORRELATION, H_MQTT_EXPIRES, H_MQTT_QOS, H_MQTT_RETAIN,
    H_MQTT_UTF8, H_ORIGIN_CLIENT, H_ORIGIN_PROTOCOL, H_ORIGIN_TOPIC, MSGS, MSGS_PREFIX, PendingOut,
    SessionRecord, SubOpts,
};
use crate::topic::{self, MappedFilter, TopicError};
use base64::Engine as _;
use bytes::Bytes;
use bytestring::ByteString;
use futures::{SinkExt, StreamExt};
use junction_api::{
    AckKind, AckPolicy, ClientRecord, Credentials, DeliverPolicy, Delivered, EngineError,
    FetchRequest, GroupConfig, Headers, Message, NewClient, Protocol, QueueGroup, Subject,
    SubjectFilter, SubscriptionId, TenantId,
};
use rmqtt_codec::error::DecodeError;
use rmqtt_codec::types::Publish;
use rmqtt_codec::v5::{PublishProperties, ToReasonCode};
use rmqtt_codec::version::{ProtocolVersion, VersionCodec};
use rmqtt_codec::{MqttCodec, MqttPacket, v3, v5};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// How long a socket write may block before the client is dropped.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
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

/// The consumer group of a persistent subscription.
pub(crate) fn group_name(client_id: &str, raw_filter: &str) -> String {
    format!(
        "mqtt_{}_{}",
        session::short_hash(client_id),
        session::short_hash(&format!("{client_id}\u{0}{raw_filter}"))
    )
}

/// The `$MQTT_msgs` filters of a mapped MQTT filter.
pub(crate) fn msgs_filters(m: &MappedFilter) -> Vec<SubjectFilter> {
    m.subjects
        .iter()
        .filter_map(|f| SubjectFilter::new(Bytes::from(format!("{MSGS_PREFIX}{f}"))).ok())
        .collect()
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
        if is_reserved(k) {
            continue;
        }
        h.append(k.to_string(), v.to_string());
    }
    h.insert(H_ORIGIN_PROTOCOL, "mqtt");
    h.insert(H_ORIGIN_CLIENT, client_id);
    h.insert(H_ORIGIN_TOPIC, topic);
    h.insert(H_MQTT_QOS, qos.to_string());
    if retain {
        h.insert(H_MQTT_RETAIN, "1");
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

/// Client-supplied user properties may not forge lineage or front-end headers.
fn is_reserved(name: &str) -> bool {
    name.get(..9)
        .is_some_and(|p| p.eq_ignore_ascii_case("junction-"))
        || session::is_internal_header(name)
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
    result: Option<Result<(), (u8, String)>>,
}

/// Why the connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// DISCONNECT 0x00: no will.
    Normal,
    /// DISCONNECT 0x04, a dropped socket or an error: the will goes out.
    WithWill,
    /// Another connection took the client id.
    TakenOver,
    /// The broker is stopping.
    Shutdown,
}

struct Conn<S> {
    broker: Arc<MqttBroker>,
    tenant: Arc<Tenant>,
    framed: Framed<S, MqttCodec>,
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
    aliases_in: HashMap<u16, String>,
    outflight: BTreeMap<u16, (Origin, OutState)>,
    queue: VecDeque<OutMsg>,
    next_pkid: u16,
    reuse_pkids: HashMap<(String, u64), u16>,
    client_recv_max: usize,
    aliases_out: HashMap<String, u16>,
    client_alias_max: u16,
    problem_info: bool,
    will: Option<Will>,
    keep_alive: Option<Duration>,
    last_in: Instant,
    /// SUBACKs waiting for the session record, with the retained messages to send
    /// after them.
    after_suback: HashMap<u16, Vec<OutMsg>>,
}

/// Runs a connection to the end.
pub(crate) async fn run<S>(broker: Arc<MqttBroker>, stream: S, remote: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut framed = Framed::new(stream, MqttCodec::Version(VersionCodec));
    let timeout = broker.options.connect_timeout;
    let version = match tokio::time::timeout(timeout, framed.next()).await {
        Ok(Some(Ok((MqttPacket::Version(v), _)))) => v,
        Ok(Some(Ok(_))) => return,
        Ok(Some(Err(e))) => {
            tracing::warn!(%remote, error = %e, "MQTT: bad CONNECT, closing");
            if matches!(e, DecodeError::InvalidProtocol) {
                // 3.1.1 §3.1.2.2: unsupported protocol level → return code 0x01.
                let _ = framed.get_mut().write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            }
            return;
        }
        Ok(None) => return,
        Err(_) => {
            tracing::debug!(%remote, "MQTT: no CONNECT within {timeout:?}, closing");
            return;
        }
    };
    let max = broker.options.max_packet_size;
    *framed.codec_mut() = match version {
        ProtocolVersion::MQTT3 => MqttCodec::V3(v3::Codec::new(max)),
        ProtocolVersion::MQTT5 => MqttCodec::V5(v5::Codec::new(max, 0)),
    };
    let v5 = version == ProtocolVersion::MQTT5;
    let info = match tokio::time::timeout(timeout, framed.next()).await {
        Ok(Some(Ok((packet, _)))) => match lift(packet) {
            In::Connect(info) => info,
            _ => return,
        },
        Ok(Some(Err(e))) => {
            tracing::warn!(%remote, error = %e, "MQTT: malformed CONNECT, closing");
            let code = match e {
                DecodeError::MaxSizeExceeded { .. } => 0x95,
                DecodeError::InvalidClientId => 0x85,
                DecodeError::UnsupportedProtocolLevel => 0x84,
                _ => 0x81,
            };
            send_connack_error(&mut framed, v5, code, &e.to_string()).await;
            return;
        }
        _ => return,
    };
    connect(broker, framed, v5, *info, remote).await;
}

async fn send_connack_error<S>(framed: &mut Framed<S, MqttCodec>, v5: bool, code: u8, why: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ack = connack(code);
    ack.reason_string = Some(ByteString::from(why));
    if let Some(p) = lower(Out::ConnAck(Box::new(ack)), v5) {
        let _ = tokio::time::timeout(WRITE_DEADLINE, framed.send(p)).await;
    }
}

async fn connect<S>(
    broker: Arc<MqttBroker>,
    mut framed: Framed<S, MqttCodec>,
    v5: bool,
    mut info: ConnectInfo,
    remote: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let refuse = |client_id: &str, code: u8, why: &str| {
        tracing::info!(%remote, %client_id, code, "MQTT CONNECT refused: {why}");
    };
    // Client id rules.
    let mut assigned = None;
    if info.client_id.is_empty() {
        if info.level == 3 || (!v5 && !info.clean_start) {
            refuse(&info.client_id, 0x85, "empty client id");
            send_connack_error(&mut framed, v5, 0x85, "client identifier not valid").await;
            return;
        }
        let id = format!("junction-{:016x}", rand::random::<u64>());
        if v5 {
            assigned = Some(id.clone());
        }
        info.client_id = id;
    }
    if info.auth_method.is_some() {
        refuse(&info.client_id, 0x8C, "enhanced authentication");
        send_connack_error(
            &mut framed,
            v5,
            0x8C,
            "enhanced authentication is not supported",
        )
        .await;
        return;
    }
    // Authentication: the same users as NATS.
    let tenant_id = if broker.engine.auth_required() {
        let creds = match (&info.username, &info.password) {
            (Some(u), p) => Credentials::UserPassword {
                user: u.clone(),
                password: p
                    .as_ref()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default(),
            },
            (None, Some(p)) => Credentials::Token(String::from_utf8_lossy(p).into_owned()),
            (None, None) => Credentials::None,
        };
        let presented = !matches!(creds, Credentials::None);
        match broker.engine.authenticate(&creds) {
            Ok(t) => t,
            Err(_) => {
                let code = if presented { 0x86 } else { 0x87 };
                refuse(&info.client_id, code, "authentication failed");
                send_connack_error(
                    &mut framed,
                    v5,
                    code,
                    if presented {
                        "bad user name or password"
                    } else {
                        "not authorized"
                    },
                )
                .await;
                return;
            }
        }
    } else {
        TenantId::default_tenant()
    };
    // The will must be a valid topic the user may publish to.
    if let Some(w) = &info.will {
        if topic::topic_to_subject(&w.topic).is_err() {
            refuse(&info.client_id, 0x90, "invalid will topic");
            send_connack_error(&mut framed, v5, 0x90, "will topic is not valid").await;
            return;
        }
        if denied_publish(&broker, info.username.as_deref(), &w.topic) {
            refuse(&info.client_id, 0x87, "will topic denied");
            send_connack_error(&mut framed, v5, 0x87, "not authorized to publish the will").await;
            return;
        }
    }
    let tenant = match broker.tenant(&tenant_id) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "MQTT state unavailable");
            send_connack_error(&mut framed, v5, 0x88, "server unavailable").await;
            return;
        }
    };
    let client = match broker.engine.connect(
        NewClient {
            protocol: Protocol::Mqtt,
            remote,
        },
        tenant_id,
    ) {
        Ok(c) => c,
        Err(e) => {
            let code = if matches!(e, EngineError::MaxConnections) {
                0x97
            } else {
                0x88
            };
            refuse(&info.client_id, code, &e.to_string());
            send_connack_error(&mut framed, v5, code, &e.to_string()).await;
            return;
        }
    };
    client.set_identity(
        Some(info.client_id.clone()),
        Some("mqtt".to_owned()),
        Some(match info.level {
            3 => "3.1".to_owned(),
            4 => "3.1.1".to_owned(),
            _ => "5.0".to_owned(),
        }),
        info.username.clone(),
    );

    // Take the session over from any other connection with this client id.
    let conn_id = broker.next_conn_id();
    let kick = CancellationToken::new();
    let done = CancellationToken::new();
    let previous = loop {
        let wait = {
            let mut slots = tenant.slots.lock();
            let slot = slots.entry(info.client_id.clone()).or_default();
            match &slot.online {
                Some(o) => {
                    o.kick.cancel();
                    Some(o.done.clone())
                }
                None => {
                    if let Some(w) = slot.will.take() {
                        w.cancel();
                    }
                    if let Some(e) = slot.expiry.take() {
                        e.cancel();
                    }
                    slot.online = Some(crate::broker::Online {
                        conn: conn_id,
                        kick: kick.clone(),
                        done: done.clone(),
                    });
                    break slot.record.take();
                }
            }
        };
        if let Some(w) = wait {
            tracing::info!(client_id = %info.client_id, "MQTT client id taken over");
            let _ = tokio::time::timeout(Duration::from_secs(5), w.cancelled()).await;
        }
    };
    let expiry = info.session_expiry.min(broker.options.max_session_expiry);
    let (record, present) = match previous {
        Some(r) if !info.clean_start => (r, true),
        Some(r) => {
            broker.discard_session(&tenant, &r);
            (SessionRecord::default(), false)
        }
        None => (SessionRecord::default(), false),
    };
    let mut record = record;
    record.client_id = info.client_id.clone();
    record.expiry = expiry;
    record.disconnected_ms = 0;

    let mut keep_alive = info.keep_alive;
    let mut server_keep_alive = None;
    let max_ka = broker.options.max_keep_alive;
    if max_ka > 0 && (keep_alive == 0 || keep_alive > max_ka) {
        keep_alive = max_ka;
        server_keep_alive = Some(max_ka);
    }
    if let (MqttCodec::V5(c), Some(m)) = (framed.codec_mut(), info.max_packet_size) {
        c.set_max_outbound_size(m);
    }

    let mut ack = connack(0);
    ack.session_present = present;
    if v5 {
        ack.receive_max =
            NonZeroU16::new(broker.options.receive_maximum).unwrap_or(NonZeroU16::MAX);
        ack.max_packet_size = Some(broker.options.max_packet_size);
        ack.topic_alias_max = broker.options.topic_alias_maximum;
        ack.assigned_client_id = assigned.map(ByteString::from);
        ack.server_keepalive_sec = server_keep_alive;
        if expiry != info.session_expiry {
            ack.session_expiry_interval_secs = Some(expiry);
        }
    }
    let mut conn = Conn {
        mailbox: Mailbox::new(broker.options.max_queued_messages),
        broker: broker.clone(),
        tenant: tenant.clone(),
        framed,
        v5,
        client: client.clone(),
        client_id: info.client_id.clone(),
        username: info.username.clone(),
        record,
        connect_expiry: expiry,
        subs: HashMap::new(),
        sub_keys: HashMap::new(),
        next_sub_key: 1,
        acks_in: VecDeque::new(),
        next_slot: 1,
        aliases_in: HashMap::new(),
        outflight: BTreeMap::new(),
        queue: VecDeque::new(),
        next_pkid: 1,
        reuse_pkids: HashMap::new(),
        client_recv_max: usize::from(info.receive_max.max(1)),
        aliases_out: HashMap::new(),
        client_alias_max: info.topic_alias_max,
        problem_info: info.request_problem_info,
        will: info.will.take(),
        keep_alive: (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
        last_in: Instant::now(),
        after_suback: HashMap::new(),
    };
    tracing::debug!(%remote, client_id = %conn.client_id, v5, present, expiry, "MQTT client connected");
    let end = if conn.write(Out::ConnAck(Box::new(ack))).await && conn.flush().await {
        conn.restore();
        if conn.flush().await {
            conn.main_loop(&kick).await
        } else {
            End::WithWill
        }
    } else {
        End::WithWill
    };
    conn.finish(end, conn_id, &done).await;
}

fn denied_publish(broker: &MqttBroker, user: Option<&str>, topic: &str) -> bool {
    broker.options.acl.iter().any(|r| {
        (r.user.is_none() || r.user.as_deref() == user)
            && r.deny_publish
                .iter()
                .any(|f| topic::filter_matches(f, topic))
    })
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn persistent(&self) -> bool {
        self.record.expiry > 0
    }

    /// Queues a packet for the socket; false when the socket is gone.
    async fn write(&mut self, out: Out) -> bool {
        let out = if self.problem_info {
            out
        } else {
            strip_reason(out)
        };
        let Some(packet) = lower(out, self.v5) else {
            return true;
        };
        match tokio::time::timeout(WRITE_DEADLINE, self.framed.feed(packet)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(client_id = %self.client_id, error = %e, "MQTT write failed");
                false
            }
            Err(_) => {
                tracing::info!(client_id = %self.client_id, "MQTT client too slow to read, closing");
                false
            }
        }
    }

    async fn flush(&mut self) -> bool {
        matches!(
            tokio::time::timeout(WRITE_DEADLINE, self.framed.flush()).await,
            Ok(Ok(()))
        )
    }

    /// A v5 DISCONNECT (v3 just closes), logged.
    async fn disconnect(&mut self, code: u8, why: &str) {
        tracing::info!(client_id = %self.client_id, code, "MQTT disconnecting client: {why}");
        self.write(Out::Disconnect(code, Some(why.to_owned())))
            .await;
        self.flush().await;
    }

    /// Re-establishes a resumed session's subscriptions and resends PUBRELs.
    fn restore(&mut self) {
        let subs: Vec<(String, SubOpts)> = self
            .record
            .subs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (raw, opts) in subs {
            if let Ok(mapped) = topic::map_filter(&raw)
                && let Err(e) = self.activate(&raw, opts, mapped)
            {
                tracing::warn!(client_id = %self.client_id, filter = %raw, error = %e, "cannot restore subscription");
            }
        }
        for p in std::mem::take(&mut self.record.pending_out) {
            self.reuse_pkids.insert((p.group, p.seq), p.pkid);
        }
        let pubrels: Vec<u16> = self.record.pubrel_out.iter().copied().collect();
        for pkid in pubrels {
            self.outflight
                .insert(pkid, (Origin::Live, OutState::AwaitComp));
            self.mailbox.push(Event::Send(Out::PubRel(pkid, 0)));
        }
        if self.persistent() {
            session::write_record(
                self.broker.engine.as_ref(),
                &self.client,
                &self.record,
                None,
            );
        }
        let keys: Vec<u32> = self.subs.keys().copied().collect();
        for k in keys {
            self.maybe_fetch(k);
        }
    }

    async fn main_loop(&mut self, kick: &CancellationToken) -> End {
        loop {
            let deadline = self.keep_alive.map(|k| self.last_in + k);
            tokio::select! {
                biased;
                _ = kick.cancelled() => {
                    self.disconnect(0x8E, "session taken over").await;
                    return End::TakenOver;
                }
                _ = self.broker.shutdown.cancelled() => {
                    self.disconnect(0x8B, "server shutting down").await;
                    return End::Shutdown;
                }
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    self.disconnect(0x8D, "keep alive timeout").await;
                    return End::WithWill;
                }
                frame = self.framed.next() => {
                    self.last_in = Instant::now();
                    self.client.stats.touch();
                    match frame {
                        Some(Ok((packet, _))) => {
                            if let Some(end) = self.handle(lift(packet)).await {
                                return end;
                            }
                        }
                        Some(Err(DecodeError::Io(e))) => {
                            tracing::debug!(client_id = %self.client_id, error = %e, "MQTT connection lost");
                            return End::WithWill;
                        }
                        Some(Err(e)) => {
                            let code = u8::from(e.to_reason_code());
                            self.disconnect(code, &e.to_string()).await;
                            return End::WithWill;
                        }
                        None => return End::WithWill,
                    }
                }
                _ = self.mailbox.wait() => {}
            }
            if !self.drain().await || !self.flush().await {
                return End::WithWill;
            }
        }
    }

    /// Handles everything in the mailbox.
    async fn drain(&mut self) -> bool {
        let (events, dropped) = self.mailbox.take();
        if dropped > 0 {
            tracing::warn!(client_id = %self.client_id, dropped, "MQTT client queue full: live messages dropped");
        }
        for e in events {
            let ok = match e {
                Event::Live { message, subs, .. } => self.on_live(message, &subs).await,
                Event::Group { sub, delivered } => self.on_group(sub, *delivered).await,
                Event::GroupEnd { sub } => {
                    if let Some(s) = self.subs.get_mut(&sub) {
                        s.fetching = false;
                    }
                    self.maybe_fetch(sub);
                    true
                }
                Event::Stored { slot, result } => {
                    if let Some(p) = self.acks_in.iter_mut().find(|p| p.slot == slot) {
                        p.result = Some(result);
                    }
                    self.flush_acks().await
                }
                Event::Send(out) => {
                    let after = match &out {
                        Out::SubAck(pkid, ..) => self.after_suback.remove(pkid),
                        _ => None,
                    };
                    let mut ok = self.write(out).await;
                    for m in after.into_iter().flatten() {
                        ok = ok && self.enqueue(m).await;
                    }
                    ok
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// Sends PUBACK/PUBREC for completed inbound publishes, in arrival order.
    async fn flush_acks(&mut self) -> bool {
        while self.acks_in.front().is_some_and(|p| p.result.is_some()) {
            let Some(p) = self.acks_in.pop_front() else {
                break;
            };
            let (code, why) = match p.result {
                Some(Err((code, why))) => {
                    tracing::warn!(client_id = %self.client_id, pkid = p.pkid, code, "MQTT publish refused: {why}");
                    (code, Some(why))
                }
                _ => (0, None),
            };
            let out = if p.qos == 1 {
                Out::PubAck(p.pkid, code, why)
            } else {
                if code >= 0x80 {
                    self.record.qos2_in.remove(&p.pkid);
                }
                Out::PubRec(p.pkid, code, why)
            };
            if !self.write(out).await {
                return false;
            }
        }
        true
    }

    /// Handles one packet; `Some` ends the connection.
    async fn handle(&mut self, packet: In) -> Option<End> {
        match packet {
            In::Publish(p) => return self.on_publish(*p).await,
            In::PubAck(pkid) => self.on_puback(pkid),
            In::PubRec(pkid, code) => {
                if !self.on_pubrec(pkid, code).await {
                    return Some(End::WithWill);
                }
            }
            In::PubRel(pkid) => {
                if !self.on_pubrel(pkid).await {
                    return Some(End::WithWill);
                }
            }
            In::PubComp(pkid) => {
                if let Some((_, OutState::AwaitComp)) = self.outflight.get(&pkid) {
                    self.outflight.remove(&pkid);
                }
                self.record.pubrel_out.remove(&pkid);
            }
            In::Subscribe { pkid, id, filters } => {
                return self.on_subscribe(pkid, id, filters).await;
            }
            In::Unsubscribe { pkid, filters } => {
                if !self.on_unsubscribe(pkid, filters).await {
                    return Some(End::WithWill);
                }
            }
            In::Ping => {
                if !self.write(Out::PingResp).await {
                    return Some(End::WithWill);
                }
            }
            In::Disconnect {
                reason,
                session_expiry,
            } => {
                if let Some(e) = session_expiry {
                    if self.connect_expiry == 0 && e != 0 {
                        self.disconnect(
                            0x82,
                            "session expiry cannot be set on DISCONNECT after CONNECT set 0",
                        )
                        .await;
                        return Some(End::WithWill);
                    }
                    self.record.expiry = e.min(self.broker.options.max_session_expiry);
                }
                return Some(if reason == 0x04 {
                    End::WithWill
                } else {
                    End::Normal
                });
            }
            In::Connect(_) => {
                self.disconnect(0x82, "second CONNECT on a connection")
                    .await;
                return Some(End::WithWill);
            }
            In::Auth => {
                self.disconnect(0x82, "AUTH without enhanced authentication")
                    .await;
                return Some(End::WithWill);
            }
            In::ServerOnly => {
                self.disconnect(0x82, "packet type a client may not send")
                    .await;
                return Some(End::WithWill);
            }
        }
        self.pump()
            .await
            .then_some(())
            .map_or(Some(End::WithWill), |_| None)
    }

    async fn on_publish(&mut self, mut p: Publish) -> Option<End> {
        let qos = qos_num(p.qos);
        let pkid = p.packet_id.map(|x| x.get()).unwrap_or(0);
        let props = p.properties.take().unwrap_or_default();
        // Topic aliases (MQTT 5).
        if let Some(alias) = props.topic_alias.map(|a| a.get()) {
            if alias > self.broker.options.topic_alias_maximum {
                self.disconnect(0x94, "topic alias out of range").await;
                return Some(End::WithWill);
            }
            if p.topic.is_empty() {
                match self.aliases_in.get(&alias) {
                    Some(t) => p.topic = ByteString::from(t.clone()),
                    None => {
                        self.disconnect(0x82, "unknown topic alias").await;
                        return Some(End::WithWill);
                    }
                }
            } else {
                self.aliases_in.insert(alias, p.topic.to_string());
            }
        }
        let topic_name = p.topic.to_string();
        let subject = match topic::topic_to_subject(&topic_name) {
            Ok(s) => s,
            Err(e) => {
                let why = format!("invalid topic name '{topic_name}': {e}");
                self.disconnect(0x90, &why).await;
                return Some(End::WithWill);
            }
        };
        // QoS 2 resend of a publish we already hold: answer again, store nothing.
        if qos == 2 && self.record.qos2_in.contains(&pkid) {
            if !self.acks_in.iter().any(|a| a.pkid == pkid)
                && !self.write(Out::PubRec(pkid, 0, None)).await
            {
                return Some(End::WithWill);
            }
            return None;
        }
        if qos > 0 {
            let inflight =
                self.acks_in.iter().filter(|a| a.qos == 1).count() + self.record.qos2_in.len();
            if self.v5 && inflight >= usize::from(self.broker.options.receive_maximum) {
                self.disconnect(0x93, "receive maximum exceeded").await;
                return Some(End::WithWill);
            }
        }
        let refuse = |code: u8, why: String| -> Option<(u8, String)> { Some((code, why)) };
        let mut refused = None;
        if topic_name.starts_with("$SYS") || subject.as_bytes().starts_with(b"$MQTT.") {
            refused = refuse(0x87, format!("topic '{topic_name}' is reserved"));
        } else if denied_publish(&self.broker, self.username.as_deref(), &topic_name) {
            refused = refuse(0x87, format!("not authorized to publish to '{topic_name}'"));
        } else if props.is_utf8_payload && std::str::from_utf8(&p.payload).is_err() {
            refused = refuse(
                0x99,
                "payload is not UTF-8 as its format indicator says".to_owned(),
            );
        }
        if let Some((code, why)) = refused {
            tracing::info!(client_id = %self.client_id, topic = %topic_name, code, "MQTT publish refused: {why}");
            let ok = match qos {
                0 => true,
                1 => self.write(Out::PubAck(pkid, code, Some(why))).await,
                _ => {
                    if !self.v5 {
                        self.record.qos2_in.insert(pkid);
                    }
                    self.write(Out::PubRec(pkid, code, Some(why))).await
                }
            };
            return (!ok).then_some(End::WithWill);
        }
        self.client.stats.record_in(p.payload.len());
        let message = build_message(
            subject,
            &topic_name,
            p.payload,
            qos,
            p.retain,
            &props,
            &self.client_id,
        );
        if qos == 0 {
            self.broker.route(
                &self.tenant,
                &self.client,
                message,
                0,
                p.retain,
                &topic_name,
                None,
            );
            return None;
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        let mailbox = self.mailbox.clone();
        let join = AckJoin::new(move |result| {
            mailbox.push(Event::Stored { slot, result });
        });
        self.acks_in.push_back(PendingIn {
            slot,
            pkid,
            qos,
            result: None,
        });
        self.broker.route(
            &self.tenant,
            &self.client,
            message,
            qos,
            p.retain,
            &topic_name,
            Some(&join),
        );
        if qos == 2 {
            self.record.qos2_in.insert(pkid);
            if self.persistent() {
                session::write_record(
                    self.broker.engine.as_ref(),
                    &self.client,
                    &self.record,
                    Some(join.part()),
                );
            }
        }
        join.arm();
        None
    }

    async fn on_pubrel(&mut self, pkid: u16) -> bool {
        if self.record.qos2_in.remove(&pkid) {
            if self.persistent() {
                let mailbox = self.mailbox.clone();
                session::write_record(
                    self.broker.engine.as_ref(),
                    &self.client,
                    &self.record,
                    Some(Box::new(move |_| {
                        mailbox.push(Event::Send(Out::PubComp(pkid, 0)));
                    })),
                );
                true
            } else {
                self.write(Out::PubComp(pkid, 0)).await
            }
        } else {
            self.write(Out::PubComp(pkid, 0x92)).await
        }
    }

    fn on_puback(&mut self, pkid: u16) {
        if let Some((origin, OutState::AwaitAck)) = self.outflight.get(&pkid).cloned() {
            self.outflight.remove(&pkid);
            self.ack_origin(&origin, AckKind::Ack);
        }
    }

    async fn on_pubrec(&mut self, pkid: u16, code: u8) -> bool {
        match self.outflight.get(&pkid).cloned() {
            Some((origin, OutState::AwaitRec)) => {
                self.ack_origin(&origin, AckKind::Ack);
                if code >= 0x80 {
                    self.outflight.remove(&pkid);
                    return true;
                }
                self.outflight
                    .insert(pkid, (Origin::Live, OutState::AwaitComp));
                self.record.pubrel_out.insert(pkid);
                self.write(Out::PubRel(pkid, 0)).await
            }
            Some((_, OutState::AwaitComp)) => self.write(Out::PubRel(pkid, 0)).await,
            _ => self.write(Out::PubRel(pkid, 0x92)).await,
        }
    }

    fn ack_origin(&self, origin: &Origin, kind: AckKind) {
        if let Origin::Group { group, seq, .. } = origin
            && let Err(e) = self
                .broker
                .engine
                .ack(&self.tenant.id, MSGS, group, *seq, kind)
        {
            tracing::debug!(client_id = %self.client_id, error = %e, "MQTT group ack failed");
        }
    }

    async fn on_subscribe(
        &mut self,
        pkid: u16,
        id: Option<u32>,
        filters: Vec<(String, rmqtt_codec::v5::SubscriptionOptions)>,
    ) -> Option<End> {
        let mut codes = Vec::with_capacity(filters.len());
        let mut retained_out = Vec::new();
        for (raw, o) in filters {
            let opts = SubOpts {
                qos: qos_num(o.qos).min(2),
                no_local: o.no_local,
                retain_as_published: o.retain_as_published,
                retain_handling: u8::from(o.retain_handling),
                id,
            };
            let mapped = match topic::map_filter(&raw) {
                Ok(m) => m,
                Err(e) => {
                    tracing::info!(client_id = %self.client_id, filter = %raw, error = %e, "MQTT subscribe refused");
                    codes.push(if self.v5 { 0x8F } else { 0x80 });
                    continue;
                }
            };
            if mapped.share.is_some() && opts.no_local {
                self.disconnect(0x82, "No Local on a shared subscription")
                    .await;
                return Some(End::WithWill);
            }
            if self.denied_subscribe_filter(&mapped.topic_filter) {
                tracing::info!(client_id = %self.client_id, filter = %raw, "MQTT subscribe denied by ACL");
                codes.push(if self.v5 { 0x87 } else { 0x80 });
                continue;
            }
            let existed = self.sub_keys.contains_key(&raw);
            if existed {
                self.deactivate(&raw, false);
            }
            match self.activate(&raw, opts.clone(), mapped.clone()) {
                Ok(key) => {
                    self.record.subs.insert(raw.clone(), opts.clone());
                    codes.push(opts.qos);
                    let send_retained = mapped.share.is_none()
                        && (opts.retain_handling == 0 || (opts.retain_handling == 1 && !existed));
                    if send_retained {
                        retained_out.extend(self.retained_for(&mapped, &opts, key));
                    }
                }
                Err(e) => {
                    tracing::warn!(client_id = %self.client_id, filter = %raw, error = %e, "MQTT subscribe failed");
                    codes.push(0x80);
                }
            }
        }
        let out = Out::SubAck(pkid, codes, None);
        if self.persistent() {
            self.after_suback.insert(pkid, retained_out);
            let mailbox = self.mailbox.clone();
            session::write_record(
                self.broker.engine.as_ref(),
                &self.client,
                &self.record,
                Some(Box::new(move |_| {
                    mailbox.push(Event::Send(out));
                })),
            );
        } else {
            if !self.write(out).await {
                return Some(End::WithWill);
            }
            for m in retained_out {
                if !self.enqueue(m).await {
                    return Some(End::WithWill);
                }
            }
        }
        let keys: Vec<u32> = self.subs.keys().copied().collect();
        for k in keys {
            self.maybe_fetch(k);
        }
        None
    }

    fn denied_subscribe_filter(&self, filter: &str) -> bool {
        self.broker.options.acl.iter().any(|r| {
            (r.user.is_none() || r.user.as_deref() == self.username.as_deref())
                && r.deny_subscribe
                    .iter()
                    .any(|d| topic::filter_within(filter, d))
        })
    }

    fn denied_receive(&self, topic_name: &str) -> bool {
        self.broker.options.acl.iter().any(|r| {
            (r.user.is_none() || r.user.as_deref() == self.username.as_deref())
                && r.deny_subscribe
                    .iter()
                    .any(|d| topic::filter_matches(d, topic_name))
        })
    }

    fn retained_for(&self, mapped: &MappedFilter, opts: &SubOpts, key: u32) -> Vec<OutMsg> {
        let now = now_ms();
        let retained = self.tenant.retained.read();
        let mut out = Vec::new();
        for (t, r) in retained.iter() {
            if !topic::filter_matches(&mapped.topic_filter, t) || self.denied_receive(t) {
                continue;
            }
            if expires_at(r.headers.as_ref()).is_some_and(|e| e <= now) {
                continue;
            }
            let _ = key;
            out.push(OutMsg {
                subject: r.subject.clone(),
                payload: r.payload.clone(),
                headers: r.headers.clone(),
                reply: r.reply.clone(),
                qos: r.qos.min(opts.qos),
                retain: true,
                dup: false,
                sub_ids: opts.id.into_iter().collect(),
                origin: Origin::Live,
            });
        }
        out
    }

    /// Creates the engine side of a subscription: live subscriptions, and for a
    /// persistent QoS 1/2 one its consumer group.
    fn activate(
        &mut self,
        raw: &str,
        opts: SubOpts,
        mapped: MappedFilter,
    ) -> Result<u32, EngineError> {
        let key = self.next_sub_key;
        self.next_sub_key += 1;
        let durable = self.persistent() && opts.qos > 0 && mapped.share.is_none();
        let mut group = None;
        if durable {
            let name = group_name(&self.client_id, raw);
            let filters = msgs_filters(&mapped);
            let config = GroupConfig {
                name: name.clone(),
                durable: true,
                description: Some(format!("MQTT {} {}", self.client_id, raw)),
                deliver_policy: DeliverPolicy::New,
                ack_policy: AckPolicy::Explicit,
                ack_wait: GROUP_ACK_WAIT,
                max_deliver: -1,
                filter_subjects: filters.iter().map(|f| f.to_string()).collect(),
                max_ack_pending: -1,
                ..GroupConfig::default()
            };
            match self
                .broker
                .engine
                .create_group(&self.tenant.id, MSGS, config)
            {
                Ok(_) | Err(EngineError::GroupExists) => {}
                Err(e) => return Err(e),
            }
            self.tenant
                .durable
                .write()
                .insert((self.client_id.clone(), raw.to_owned()), filters);
            group = Some(name);
        }
        let queue = match &mapped.share {
            Some(g) => Some(QueueGroup::new(Bytes::from(g.clone()))?),
            None => None,
        };
        let mut ids = Vec::new();
        for f in &mapped.subjects {
            let live = Arc::new(LiveSub {
                mailbox: self.mailbox.clone(),
                sub: key,
                filter: raw.to_owned(),
                wild_first: mapped.wild_first,
                no_local: opts.no_local.then(|| self.client_id.clone()),
                durable,
                delivered: AtomicU64::new(0),
            });
            match self
                .broker
                .engine
                .subscribe(&self.client, f.clone(), queue.clone(), live)
            {
                Ok(id) => ids.push(id),
                Err(e) => {
                    for id in ids {
                        self.broker.engine.unsubscribe(&self.client, id);
                    }
                    return Err(e);
                }
            }
        }
        self.subs.insert(
            key,
            ActiveSub {
                raw: raw.to_owned(),
                opts,
                mapped,
                engine_ids: ids,
                group,
                fetching: false,
            },
        );
        self.sub_keys.insert(raw.to_owned(), key);
        Ok(key)
    }

    /// Removes a subscription's engine side; `delete_group` also drops its stored
    /// backlog (UNSUBSCRIBE, or the session ending).
    fn deactivate(&mut self, raw: &str, delete_group: bool) -> bool {
        let Some(key) = self.sub_keys.remove(raw) else {
            return false;
        };
        if let Some(sub) = self.subs.remove(&key) {
            for id in sub.engine_ids {
                self.broker.engine.unsubscribe(&self.client, id);
            }
            if let Some(g) = &sub.group
                && delete_group
            {
                self.tenant
                    .durable
                    .write()
                    .remove(&(self.client_id.clone(), raw.to_owned()));
                let _ = self.broker.engine.delete_group(&self.tenant.id, MSGS, g);
            }
            let _ = (&sub.raw, &sub.opts, &sub.mapped);
        }
        true
    }

    async fn on_unsubscribe(&mut self, pkid: u16, filters: Vec<String>) -> bool {
        let mut codes = Vec::with_capacity(filters.len());
        for raw in filters {
            let existed = self.deactivate(&raw, true);
            self.record.subs.remove(&raw);
            codes.push(if existed { 0x00 } else { 0x11 });
        }
        let out = Out::UnsubAck(pkid, codes);
        if self.persistent() {
            let mailbox = self.mailbox.clone();
            session::write_record(
                self.broker.engine.as_ref(),
                &self.client,
                &self.record,
                Some(Box::new(move |_| {
                    mailbox.push(Event::Send(out));
                })),
            );
            true
        } else {
            self.write(out).await
        }
    }

    /// Room for more QoS 1/2 messages towards the client.
    fn credit(&self) -> usize {
        self.client_recv_max
            .saturating_sub(self.outflight.len() + self.queue.len())
    }

    fn maybe_fetch(&mut self, key: u32) {
        let credit = self.credit();
        let Some(sub) = self.subs.get_mut(&key) else {
            return;
        };
        let Some(group) = sub.group.clone() else {
            return;
        };
        if sub.fetching || credit == 0 {
            return;
        }
        sub.fetching = true;
        let sink = Arc::new(GroupSink {
            mailbox: self.mailbox.clone(),
            sub: key,
        });
        let request = FetchRequest {
            batch: credit.min(256),
            expires: Some(FETCH_EXPIRES),
            ..FetchRequest::default()
        };
        if let Err(e) = self
            .broker
            .engine
            .fetch(&self.tenant.id, MSGS, &group, request, sink)
        {
            tracing::warn!(client_id = %self.client_id, error = %e, "MQTT group fetch failed");
            if let Some(sub) = self.subs.get_mut(&key) {
                sub.fetching = false;
            }
        }
    }

    async fn on_live(&mut self, message: Message, keys: &[u32]) -> bool {
        let pub_qos = header_qos(&message);
        let retained = message.headers.as_ref().and_then(|h| h.get(H_MQTT_RETAIN)) == Some("1");
        let mut qos = None;
        let mut retain = false;
        let mut ids = Vec::new();
        for k in keys {
            let Some(sub) = self.subs.get(k) else {
                continue;
            };
            let q = pub_qos.min(sub.opts.qos);
            qos = Some(qos.map_or(q, |x: u8| x.max(q)));
            retain |= retained && sub.opts.retain_as_published;
            if let Some(id) = sub.opts.id {
                ids.push(id);
            }
        }
        let Some(qos) = qos else {
            return true;
        };
        let topic_name = topic::subject_to_topic(message.subject.as_bytes());
        if self.denied_receive(&topic_name) {
            return true;
        }
        self.enqueue(OutMsg {
            subject: message.subject,
            payload: message.payload,
            headers: message.headers,
            reply: message.reply,
            qos,
            retain,
            dup: false,
            sub_ids: ids,
            origin: Origin::Live,
        })
        .await
    }

    async fn on_group(&mut self, key: u32, d: Delivered) -> bool {
        let Some(sub) = self.subs.get(&key) else {
            return true;
        };
        let Some(group) = sub.group.clone() else {
            return true;
        };
        let seq = d.message.seq;
        if self.outflight.values().any(|(o, _)| matches!(o, Origin::Group { group: g, seq: s, .. } if *g == group && *s == seq))
            || self.queue.iter().any(|m| matches!(&m.origin, Origin::Group { group: g, seq: s, .. } if *g == group && *s == seq))
        {
            return true;
        }
        let m = d.message;
        let Some(rest) = m.subject.as_bytes().strip_prefix(MSGS_PREFIX.as_bytes()) else {
            return true;
        };
        let subject = Subject::from_trusted(Bytes::copy_from_slice(rest));
        let pub_qos = m
            .headers
            .as_ref()
            .and_then(|h| h.get(H_MQTT_QOS))
            .and_then(|q| q.parse().ok())
            .unwrap_or(1u8);
        let retained = m.headers.as_ref().and_then(|h| h.get(H_MQTT_RETAIN)) == Some("1");
        let msg = OutMsg {
            subject,
            payload: m.payload,
            headers: m.headers,
            reply: None,
            qos: pub_qos.min(sub.opts.qos).max(1),
            retain: retained && sub.opts.retain_as_published,
            dup: d.delivery_count > 1,
            sub_ids: sub.opts.id.into_iter().collect(),
            origin: Origin::Group { group, seq },
        };
        self.enqueue(msg).await
    }

    /// Sends a message now, or queues it until the client has room.
    async fn enqueue(&mut self, m: OutMsg) -> bool {
        if m.qos == 0 {
            return self.send_publish(m).await;
        }
        if self.outflight.len() < self.client_recv_max && self.queue.is_empty() {
            return self.send_publish(m).await;
        }
        if matches!(m.origin, Origin::Live)
            && self.queue.len() >= self.broker.options.max_queued_messages
        {
            tracing::warn!(client_id = %self.client_id, "MQTT client queue full: message dropped");
            return true;
        }
        self.queue.push_back(m);
        true
    }

    /// Sends queued messages while the client has room, and asks groups for more.
    async fn pump(&mut self) -> bool {
        while self.outflight.len() < self.client_recv_max {
            let Some(m) = self.queue.pop_front() else {
                break;
            };
            if !self.send_publish(m).await {
                return false;
            }
        }
        let keys: Vec<u32> = self
            .subs
            .iter()
            .filter(|(_, s)| s.group.is_some() && !s.fetching)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.maybe_fetch(k);
        }
        true
    }

    fn alloc_pkid(&mut self) -> u16 {
        let reserved: HashSet<u16> = self.reuse_pkids.values().copied().collect();
        for _ in 0..=u16::MAX {
            let id = self.next_pkid;
            self.next_pkid = if self.next_pkid == u16::MAX {
                1
            } else {
                self.next_pkid + 1
            };
            if !self.outflight.contains_key(&id) && !reserved.contains(&id) {
                return id;
            }
        }
        1
    }

    async fn send_publish(&mut self, m: OutMsg) -> bool {
        let now = now_ms();
        let expiry = match expires_at(m.headers.as_ref()) {
            Some(e) if e <= now => {
                self.ack_origin(&m.origin, AckKind::Ack);
                return true;
            }
            Some(e) => NonZeroU32::new(((e - now).div_ceil(1000)) as u32),
            None => None,
        };
        let mut topic_name = topic::subject_to_topic(m.subject.as_bytes());
        let mut alias = None;
        if self.v5 && self.client_alias_max > 0 {
            match self.aliases_out.get(&topic_name) {
                Some(a) => {
                    alias = NonZeroU16::new(*a);
                    topic_name.clear();
                }
                None => {
                    let next = self.aliases_out.len() as u16 + 1;
                    if next <= self.client_alias_max {
                        self.aliases_out.insert(topic_name.clone(), next);
                        alias = NonZeroU16::new(next);
                    }
                }
            }
        }
        let properties = self.v5.then(|| out_properties(&m, expiry, alias));
        let pkid = match &m.origin {
            Origin::Group { group, seq, .. } if m.qos > 0 => self
                .reuse_pkids
                .remove(&(group.clone(), *seq))
                .filter(|p| !self.outflight.contains_key(p)),
            _ => None,
        };
        let pkid = if m.qos > 0 {
            Some(pkid.unwrap_or_else(|| self.alloc_pkid()))
        } else {
            None
        };
        let size = m.payload.len();
        let publish = Publish {
            dup: m.dup && m.qos > 0,
            retain: m.retain,
            qos: qos_of(m.qos),
            topic: ByteString::from(topic_name),
            packet_id: pkid.and_then(NonZeroU16::new),
            payload: m.payload,
            properties,
        };
        let packet = match lower(Out::Publish(Box::new(publish)), self.v5) {
            Some(p) => p,
            None => return true,
        };
        match tokio::time::timeout(WRITE_DEADLINE, self.framed.feed(packet)).await {
            Ok(Ok(())) => {}
            Ok(Err(e @ rmqtt_codec::error::EncodeError::OverMaxPacketSize { .. })) => {
                // Larger than the client's Maximum Packet Size: the spec says drop it.
                tracing::info!(client_id = %self.client_id, error = %e, "MQTT message too large for the client, dropped");
                self.ack_origin(&m.origin, AckKind::Ack);
                return true;
            }
            _ => return false,
        }
        self.client.stats.record_out(size);
        if let Some(pkid) = pkid {
            let state = if m.qos == 1 {
                OutState::AwaitAck
            } else {
                OutState::AwaitRec
            };
            self.outflight.insert(pkid, (m.origin, state));
        } else {
            self.ack_origin(&m.origin, AckKind::Ack);
        }
        true
    }

    /// Ends the connection: will, session state, engine clean-up.
    async fn finish(mut self, end: End, conn_id: u64, done: &CancellationToken) {
        let _ = self.framed.close().await;
        // Undelivered group messages go back to their groups (redelivered, with
        // DUP, when the session resumes).
        let leftovers = self.mailbox.close();
        for e in leftovers {
            if let Event::Group { sub, delivered } = e
                && let Some(g) = self.subs.get(&sub).and_then(|s| s.group.clone())
            {
                let _ = self.broker.engine.ack(
                    &self.tenant.id,
                    MSGS,
                    &g,
                    delivered.message.seq,
                    AckKind::Nak(None),
                );
            }
        }
        let queued: Vec<OutMsg> = self.queue.drain(..).collect();
        for m in queued {
            self.ack_origin(&m.origin, AckKind::Nak(None));
        }
        let mut pending = Vec::new();
        let inflight: Vec<(u16, (Origin, OutState))> =
            std::mem::take(&mut self.outflight).into_iter().collect();
        for (pkid, (origin, state)) in inflight {
            if let Origin::Group { group, seq, .. } = &origin
                && state != OutState::AwaitComp
            {
                self.ack_origin(&origin, AckKind::Nak(None));
                pending.push(PendingOut {
                    pkid,
                    group: group.clone(),
                    seq: *seq,
                });
            }
        }
        let raws: Vec<String> = self.sub_keys.keys().cloned().collect();
        let persistent = self.persistent();
        for raw in &raws {
            self.deactivate(raw, false);
        }
        self.broker.engine.disconnect(self.client.id);
        let will = if end == End::Normal {
            None
        } else {
            self.will.take()
        };
        let tenant = self.tenant.clone();
        let record = if persistent {
            self.record.pending_out = pending;
            self.record.disconnected_ms = now_ms();
            session::write_record(
                self.broker.engine.as_ref(),
                &tenant.client,
                &self.record,
                None,
            );
            Some(self.record.clone())
        } else {
            None
        };
        {
            let mut slots = tenant.slots.lock();
            if let Some(slot) = slots.get_mut(&self.client_id)
                && slot.online.as_ref().is_some_and(|o| o.conn == conn_id)
            {
                slot.online = None;
                slot.record = record.clone();
                if record.is_none() && slot.will.is_none() {
                    slots.remove(&self.client_id);
                }
            }
        }
        if !persistent {
            // A clean session's groups and record go with it.
            self.broker.discard_session(&tenant, &self.record);
        } else if end != End::TakenOver
            && let Some(left) =
                remaining_expiry(self.record.expiry, self.record.disconnected_ms, now_ms())
        {
            self.broker.schedule_expiry(&tenant, &self.client_id, left);
        }
        if let Some(w) = will
            && end != End::Shutdown
        {
            let delay = Duration::from_secs(u64::from(w.delay.min(self.record.expiry)));
            self.broker
                .schedule_will(&tenant, &self.client_id, w, delay);
        }
        tracing::debug!(client_id = %self.client_id, ?end, "MQTT client disconnected");
        done.cancel();
    }
}

fn expires_at(h: Option<&Headers>) -> Option<u64> {
    h.and_then(|h| h.get(H_MQTT_EXPIRES))
        .and_then(|v| v.parse().ok())
}

/// MQTT 5 properties of an outgoing message: headers become user properties.
fn out_properties(
    m: &OutMsg,
    expiry: Option<NonZeroU32>,
    alias: Option<NonZeroU16>,
) -> PublishProperties {
    let mut p = PublishProperties {
        topic_alias: alias,
        message_expiry_interval: expiry,
        subscription_ids: m
            .sub_ids
            .iter()
            .filter_map(|i| NonZeroU32::new(*i))
            .collect(),
        response_topic: m
            .reply
            .as_ref()
            .map(|r| ByteString::from(topic::subject_to_topic(r.as_bytes()))),
        ..Default::default()
    };
    if let Some(h) = &m.headers {
        for (k, v) in h.iter() {
            if session::is_internal_header(k) {
                continue;
            }
            p.user_properties.push((
                ByteString::from(k.to_owned()),
                ByteString::from(v.to_owned()),
            ));
        }
        p.content_type = h
            .get(H_CONTENT_TYPE)
            .map(|c| ByteString::from(c.to_owned()));
        p.is_utf8_payload = h.get(H_MQTT_UTF8) == Some("1");
        p.correlation_data = h
            .get(H_MQTT_CORRELATION)
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
            .map(Bytes::from);
    }
    p
}

/// Without Request Problem Information, reason strings go only in CONNACK and
/// DISCONNECT.
fn strip_reason(out: Out) -> Out {
    match out {
        Out::PubAck(p, c, _) => Out::PubAck(p, c, None),
        Out::PubRec(p, c, _) => Out::PubRec(p, c, None),
        Out::SubAck(p, c, _) => Out::SubAck(p, c, None),
        other => other,
    }
}

impl From<TopicError> for EngineError {
    fn from(e: TopicError) -> Self {
        EngineError::BadRequest(e.to_string())
    }
}
