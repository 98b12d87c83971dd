//! One MQTT connection: CONNECT, then the session state machine until the socket,
//! the client or the broker ends it.

mod inbound;
mod lifecycle;
mod outbound;
mod refuse;

pub(crate) use refuse::refuse;

use crate::broker::{AckJoin, MqttBroker, Tenant, header_qos, remaining_expiry};
use crate::io::MqttIo;
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
use junction_api::{
    AckKind, AckPolicy, ClientRecord, Credentials, DeliverPolicy, Delivered, EngineError,
    FetchRequest, GroupConfig, Headers, Identity, Message, NewClient, Protocol, QueueGroup,
    Subject, SubjectFilter, SubscriptionId,
};
use outbound::expires_at;
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
    framed: MqttIo<S>,
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
    /// The session was resumed after a crash ([`SessionRecord::crashed`]).
    after_crash: bool,
    client_recv_max: usize,
    aliases_out: HashMap<String, u16>,
    client_alias_max: u16,
    problem_info: bool,
    will: Option<Will>,
    keep_alive: Option<Duration>,
    last_in: Instant,
    /// The session has (or had) a record in `$MQTT_sess`.
    stored: bool,
    /// The client connected on another node of the cluster: the session moved
    /// there, and this connection stores nothing of it when it ends.
    moved: Arc<std::sync::atomic::AtomicBool>,
    /// Stored messages (`$MQTT_msgs` sequences) sent lately, so a second
    /// overlapping subscription's group does not send one again.
    recent_seqs: HashSet<u64>,
    recent_order: VecDeque<u64>,
    /// SUBACKs waiting for the session record, with the retained messages to send
    /// after them.
    after_suback: HashMap<u16, Vec<OutMsg>>,
}

/// Runs a connection to the end.
pub(crate) async fn run<S>(
    broker: Arc<MqttBroker>,
    stream: S,
    remote: SocketAddr,
    certificate: Option<Vec<u8>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut framed = MqttIo::new(stream, MqttCodec::Version(VersionCodec));
    let timeout = broker.options.connect_timeout;
    let version = match tokio::time::timeout(timeout, framed.next()).await {
        Ok(Some(Ok((MqttPacket::Version(v), _)))) => v,
        Ok(Some(Ok(_))) => return,
        Ok(Some(Err(e))) => {
            tracing::warn!(%remote, error = %e, "MQTT: bad CONNECT, closing");
            if matches!(e, DecodeError::InvalidProtocol) {
                // 3.1.1 §3.1.2.2: unsupported protocol level → return code 0x01.
                let _ = framed
                    .stream_mut()
                    .write_all(&[0x20, 0x02, 0x00, 0x01])
                    .await;
            }
            return;
        }
        Ok(None) => return,
        Err(_) => {
            tracing::debug!(%remote, "MQTT: no CONNECT within {timeout:?}, closing");
            return;
        }
    };
    let v5 = version == ProtocolVersion::MQTT5;
    // `max_packet_size` (our Maximum Packet Size) counts whole packets; the
    // codec bounds the remaining length.
    let max = crate::packets::max_remaining_length(broker.options.max_packet_size);
    *framed.codec_mut() = match version {
        ProtocolVersion::MQTT3 => MqttCodec::V3(v3::Codec::new(max)),
        ProtocolVersion::MQTT5 => MqttCodec::V5(v5::Codec::new(max, 0)),
    };
    // The CONNECT flags byte, checked before decoding: the codec lets some wrong
    // combinations through.
    let flags = tokio::time::timeout(timeout, async {
        loop {
            match crate::packets::connect_flags(framed.buffered()) {
                Some(f) => return Some(f),
                None if framed.read_more().await => {}
                None => return None,
            }
        }
    })
    .await;
    let Ok(Some(flags)) = flags else {
        return;
    };
    if let Err(why) = crate::packets::check_connect_flags(flags, v5) {
        malformed_connect(&mut framed, v5, remote, 0x81, why).await;
        return;
    }
    let info = match tokio::time::timeout(timeout, framed.next()).await {
        Ok(Some(Ok((packet, _)))) => match lift(packet) {
            In::Connect(info) => info,
            _ => return,
        },
        Ok(Some(Err(DecodeError::Io(e)))) => {
            tracing::debug!(%remote, error = %e, "MQTT: connection lost in CONNECT");
            return;
        }
        Ok(Some(Err(e))) => {
            let code = match e {
                DecodeError::MaxSizeExceeded { .. } => 0x95,
                DecodeError::InvalidClientId => 0x85,
                DecodeError::UnsupportedProtocolLevel => 0x84,
                _ => 0x81,
            };
            malformed_connect(&mut framed, v5, remote, code, &e.to_string()).await;
            return;
        }
        _ => return,
    };
    connect(broker, framed, v5, *info, remote, certificate).await;
}

/// A malformed CONNECT. MQTT 5 answers with a CONNACK reason code and closes; 3.1.1
/// closes without a CONNACK (its return codes say nothing about malformed packets,
/// and "server unavailable" would make clients retry as if the server were down),
/// except for the rejected client identifier that 3.1.1 answers with code 2.
async fn malformed_connect<S>(
    framed: &mut MqttIo<S>,
    v5: bool,
    remote: SocketAddr,
    code: u8,
    why: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tracing::warn!(%remote, code, "MQTT: malformed CONNECT, closing: {why}");
    if v5 || code == 0x85 {
        send_connack_error(framed, v5, code, why).await;
    }
}

async fn send_connack_error<S>(framed: &mut MqttIo<S>, v5: bool, code: u8, why: &str)
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
    mut framed: MqttIo<S>,
    v5: bool,
    mut info: ConnectInfo,
    remote: SocketAddr,
    certificate: Option<Vec<u8>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let refuse = |client_id: &str, code: u8, why: &str| {
        tracing::info!(%remote, %client_id, code, "MQTT CONNECT refused: {why}");
    };
    // Client id rules.
    let mut assigned = None;
    // A client id the broker assigns names nobody: it is not counted or banned.
    let named = !info.client_id.is_empty();
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
    // A banned client id, or one that connects too often (flapping), is
    // refused before anything else: MQTT 5 "Banned" (0x8A), 3.1.1 0x05.
    if named
        && let Err(EngineError::Banned) = broker
            .engine
            .client_connecting(&info.client_id, remote.ip())
    {
        refuse(&info.client_id, 0x8A, "client id banned");
        send_connack_error(&mut framed, v5, 0x8A, "banned").await;
        return;
    }
    // Authentication: the same users as NATS.
    let identity = if broker.engine.auth_required() {
        let creds = match (&info.username, &info.password) {
            // verify_and_map: a client that names no user is the certificate's.
            (None, _) if certificate.is_some() && broker.engine.maps_certificates() => {
                Credentials::Certificate(certificate.clone().unwrap_or_default())
            }
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
        let client_id = named.then_some(info.client_id.as_str());
        match broker
            .engine
            .authenticate_client(&creds, remote.ip(), client_id)
        {
            Ok(t) => t,
            // A banned client id is told so, as EMQX does: MQTT 5 "Banned"
            // (0x8A), 3.1.1 "not authorized" (0x05, which 0x8A lowers to).
            Err(EngineError::Banned) => {
                refuse(&info.client_id, 0x8A, "client id banned");
                send_connack_error(&mut framed, v5, 0x8A, "banned").await;
                return;
            }
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
        Identity::anonymous()
    };
    let tenant_id = identity.tenant.clone();
    // The will must be a valid topic the user may publish to.
    if let Some(w) = &info.will {
        let subject = topic::topic_to_subject(&w.topic);
        if let Err(e) = &subject {
            // 3.1.1: a wildcard in the will topic is a malformed CONNECT (close, no
            // CONNACK); MQTT 5 has a reason code for it.
            let why = format!("will topic is not valid: {e}");
            malformed_connect(&mut framed, v5, remote, 0x90, &why).await;
            return;
        }
        let forbidden = match (&identity.permissions, &subject) {
            (Some(p), Ok(s)) => !p.may_publish(s.as_bytes()),
            _ => false,
        };
        if forbidden || denied_publish(&broker, info.username.as_deref(), &w.topic) {
            refuse(&info.client_id, 0x87, "will topic denied");
            send_connack_error(&mut framed, v5, 0x87, "not authorized to publish the will").await;
            return;
        }
    }
    // `max_keep_alive` as mosquitto has it: MQTT 3.1 and 3.1.1 cannot be told a
    // lower keep-alive, so a client asking for none or for more than the maximum
    // is refused with "identifier rejected" (0x02), before any session is touched.
    // The default, 65535 (mosquitto's), is the protocol's largest: it refuses no
    // 3.1.1 client (mosquitto's default takes keep-alive 0 from them too).
    let max_ka = broker.options.max_keep_alive;
    if !v5 && max_ka > 0 && max_ka < u16::MAX && (info.keep_alive == 0 || info.keep_alive > max_ka)
    {
        let why = format!(
            "keep alive {} s is not within the server's maximum of {max_ka} s",
            info.keep_alive
        );
        refuse(&info.client_id, 0x85, &why);
        send_connack_error(&mut framed, v5, 0x85, &why).await;
        return;
    }
    let tenant = match broker.tenant_ready(&tenant_id).await {
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
            let code = if matches!(
                e,
                EngineError::MaxConnections | EngineError::TenantLimit { .. }
            ) {
                0x97
            } else {
                0x88
            };
            refuse(&info.client_id, code, &e.to_string());
            send_connack_error(&mut framed, v5, code, &e.to_string()).await;
            return;
        }
    };
    client.set_authenticated(identity);
    client.set_identity(
        Some(info.client_id.clone()),
        Some("mqtt".to_owned()),
        Some(match info.level {
            3 => "3.1".to_owned(),
            4 => "3.1.1".to_owned(),
            _ => "5.0".to_owned(),
        }),
        client
            .identity()
            .and_then(|i| i.user.as_deref().map(str::to_string))
            .or_else(|| info.username.clone()),
    );

    // Take the session over from any other connection with this client id.
    let conn_id = broker.next_conn_id();
    // An operator's disconnect (`Engine::close_client`) cancels this.
    let operator = CancellationToken::new();
    {
        let operator = operator.clone();
        client.set_close_handler(move |_, _| operator.cancel());
    }
    let kick = CancellationToken::new();
    let done = CancellationToken::new();
    let mailbox = Mailbox::for_client(broker.options.max_pending, client.clone());
    let moved = Arc::new(std::sync::atomic::AtomicBool::new(false));
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
                        mailbox: mailbox.clone(),
                        moved: moved.clone(),
                    });
                    let record = slot.record.take();
                    // The expiry timer may not have run yet.
                    break record.filter(not_expired);
                }
            }
        };
        if let Some(w) = wait {
            tracing::info!(client_id = %info.client_id, "MQTT client id taken over");
            let _ = tokio::time::timeout(Duration::from_secs(5), w.cancelled()).await;
        }
    };
    // In a cluster, a connection with this client id on another node leaves,
    // and that node lets the session go (it stores nothing more of it).
    broker.announce_connect(&tenant, &info.client_id);
    // In a cluster the session may have been made, or last used, on another
    // node: its record is in the cluster-wide `$MQTT_sess`.
    let previous = match previous {
        None if broker.node.is_some() => {
            match crate::session::load_record(broker.engine.as_ref(), &tenant.id, &info.client_id) {
                Ok(r) => r.filter(not_expired),
                Err(e) => {
                    tracing::error!(client_id = %info.client_id, error = %e, "MQTT CONNECT refused: the session store cannot be read");
                    give_back(&broker, &tenant, &info.client_id, conn_id, None);
                    broker.engine.disconnect(client.id);
                    done.cancel();
                    send_connack_error(&mut framed, v5, 0x88, "session store unavailable").await;
                    return;
                }
            }
        }
        p => p,
    };
    // The broker (or, in a cluster, the session's node) stopped while the
    // session was connected: what its groups deliver again was sent before.
    let after_crash = previous
        .as_ref()
        .is_some_and(|r| r.crashed || r.disconnected_ms == 0);
    let expiry = info.session_expiry.min(broker.options.max_session_expiry);
    // Given back to the registry if this session cannot be stored.
    let resumed = previous.clone().filter(|_| !info.clean_start);
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
    record.node = broker.node.clone();
    // A pending delayed will is cancelled by the client coming back.
    record.will = None;
    record.crashed = false;

    // A persistent session is stored before CONNACK says it exists.
    if expiry > 0 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        broker.store_record(
            &tenant,
            &client,
            &record,
            Some(Box::new(move |result| {
                let _ = tx.send(result.map(|_| ()).map_err(|e| e.to_string()));
            })),
        );
        let stored = match tokio::time::timeout(WRITE_DEADLINE, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the store dropped the write".to_owned()),
            Err(_) => Err(format!("not stored within {WRITE_DEADLINE:?}")),
        };
        if let Err(why) = stored {
            tracing::error!(%remote, client_id = %info.client_id, "MQTT CONNECT refused: session state cannot be stored: {why}");
            give_back(&broker, &tenant, &info.client_id, conn_id, resumed);
            broker.engine.disconnect(client.id);
            done.cancel();
            send_connack_error(
                &mut framed,
                v5,
                0x88,
                &format!("session state cannot be stored: {why}"),
            )
            .await;
            return;
        }
    }

    let mut keep_alive = info.keep_alive;
    let mut server_keep_alive = None;
    // MQTT 5 is told the keep-alive the server uses (Server Keep Alive,
    // MQTT-3.2.2-21); without it the client's stands (MQTT-3.2.2-22).
    if v5 && max_ka > 0 && (keep_alive == 0 || keep_alive > max_ka) {
        keep_alive = max_ka;
        server_keep_alive = Some(max_ka);
    }
    // The client's Maximum Packet Size counts whole packets; the codec's limit is
    // on the remaining length, and its setter takes 5 bytes off what it is given
    // (MQTT-3.1.2-24, -25). (The codec reads 0 as "no limit": a client that
    // allows under 3 bytes, which no useful client does, is held to one byte.)
    if let (MqttCodec::V5(c), Some(m)) = (framed.codec_mut(), info.max_packet_size) {
        let remaining = crate::packets::max_remaining_length(m);
        c.set_max_outbound_size(if remaining > 0 { remaining + 5 } else { 1 });
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
        mailbox,
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
        after_crash: after_crash && present,
        client_recv_max: usize::from(info.receive_max.max(1)),
        aliases_out: HashMap::new(),
        client_alias_max: info.topic_alias_max,
        problem_info: info.request_problem_info,
        will: info.will.take(),
        keep_alive: (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
        last_in: Instant::now(),
        after_suback: HashMap::new(),
        stored: present || expiry > 0,
        moved,
        recent_seqs: HashSet::new(),
        recent_order: VecDeque::new(),
    };
    tracing::debug!(%remote, client_id = %conn.client_id, v5, present, expiry, "MQTT client connected");
    let end = if conn.write(Out::ConnAck(Box::new(ack))).await && conn.flush().await {
        conn.restore();
        if conn.flush().await {
            conn.main_loop(&kick, &operator).await
        } else {
            End::WithWill
        }
    } else {
        End::WithWill
    };
    conn.finish(end, conn_id, &done).await;
}

/// A session record whose session has not expired (it is connected, or its
/// expiry has time left).
fn not_expired(r: &SessionRecord) -> bool {
    r.disconnected_ms == 0
        || remaining_expiry(r.expiry, r.disconnected_ms, now_ms())
            .is_none_or(|left| !left.is_zero())
}

/// A CONNECT that failed after taking the client id: the registry gets the session
/// it held back (with its expiry timer), or forgets the id.
fn give_back(
    broker: &Arc<MqttBroker>,
    tenant: &Arc<Tenant>,
    client_id: &str,
    conn_id: u64,
    resumed: Option<SessionRecord>,
) {
    let expiry = resumed
        .as_ref()
        .and_then(|r| remaining_expiry(r.expiry, r.disconnected_ms, now_ms()));
    {
        let mut slots = tenant.slots.lock();
        let Some(slot) = slots.get_mut(client_id) else {
            return;
        };
        if slot.online.as_ref().is_none_or(|o| o.conn != conn_id) {
            return;
        }
        slot.online = None;
        slot.record = resumed;
        if slot.record.is_none() && slot.will.is_none() {
            slots.remove(client_id);
            return;
        }
    }
    if let Some(left) = expiry {
        broker.schedule_expiry(tenant, client_id, left);
    }
}

fn denied_publish(broker: &MqttBroker, user: Option<&str>, topic: &str) -> bool {
    broker.options.acl.iter().any(|r| {
        (r.user.is_none() || r.user.as_deref() == user)
            && r.deny_publish
                .iter()
                .any(|f| topic::filter_matches(f, topic))
    })
}
