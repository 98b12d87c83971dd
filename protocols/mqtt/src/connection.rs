//! One MQTT connection's driver: the CONNECT handshake, then the loop that feeds
//! the [`MqttChannel`] what the socket, the mailbox and the timers produce, and
//! writes out what it encodes. All of the connection's waiting is here.

use crate::broker::{MqttBroker, Tenant, remaining_expiry};
use crate::channel::{Close, MqttChannel, Settings, Step, Wire, denied_publish, now_ms};
use crate::enhanced_auth::enhanced_auth;
use crate::frame::{ConnectInfo, In, Out, connack, lift, lower};
use crate::io::MqttIo;
use crate::mailbox::{Mailbox, Stop};
use crate::session::SessionRecord;
use crate::topic;
use bytestring::ByteString;
use futures::FutureExt;
use junction_api::{Credentials, EngineError, Identity, NewClient, Protocol};
use rmqtt_codec::error::DecodeError;
use rmqtt_codec::version::{ProtocolVersion, VersionCodec};
use rmqtt_codec::{MqttCodec, MqttPacket, v3, v5};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a socket write may block before the client is dropped.
pub(crate) const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Longest a connection waits for a congested cluster link before it reads on.
const BACKPRESSURE_WAIT: Duration = Duration::from_secs(10);
/// A packet read this long after the previous one was read on waking (the
/// connection was idle), not from a burst.
const WOKEN_AFTER: Duration = Duration::from_millis(1);
/// Encoded output written out before more mailbox events are handled.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// How long, and how many bytes, a connection closed for the client's error
/// reads and drops what the client still sends ([`Close::drain`]).
const DRAIN_FOR: Duration = Duration::from_secs(1);
const DRAIN_BYTES: usize = 1 << 20;

/// Runs a connection to the end.
///
/// Sized for idle connections (docs/mqtt.md, "What an idle connection costs"):
/// the handshake's future is boxed, made here outside the returned future (so the
/// socket and address it takes are not kept in the task too), and freed when it
/// ends; the connection's channel and socket are then one heap block that the
/// driver only borrows. An async fn keeps a value it moves into an awaited call
/// in its own frame as well: passed by value, the channel was held three times.
pub(crate) fn run<S>(
    broker: Arc<MqttBroker>,
    stream: S,
    remote: SocketAddr,
    certificate: Option<Vec<u8>>,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = Box::pin(handshake(broker.clone(), stream, remote, certificate));
    async move {
        let connection = handshake.await;
        if let Some(connection) = connection {
            drive(broker, connection).await;
        }
    }
}

/// Reads the CONNECT and admits the client: the connection, or `None` once the
/// client was refused (and told so) or went away.
async fn handshake<S>(
    broker: Arc<MqttBroker>,
    stream: S,
    remote: SocketAddr,
    certificate: Option<Vec<u8>>,
) -> Option<Box<Connection<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut framed = MqttIo::new(stream, MqttCodec::Version(VersionCodec));
    let timeout = broker.options.connect_timeout;
    // mosquitto's bridge bit on the protocol level, cleared before the version
    // codec reads it. The CONNECT's first bytes are due within the same time
    // as the CONNECT itself.
    let peek = tokio::time::timeout(timeout, async {
        loop {
            match crate::frame::bridge_bit(framed.buffered()) {
                crate::frame::BridgeBit::NeedMore if framed.read_more().await => {}
                crate::frame::BridgeBit::At(i) => {
                    framed.buffered_mut()[i] &= 0x7F;
                    return true;
                }
                _ => return false,
            }
        }
    })
    .await;
    let Ok(bridge) = peek else {
        tracing::debug!(%remote, "MQTT: no CONNECT within {timeout:?}, closing");
        return None;
    };
    let version = match tokio::time::timeout(timeout, framed.next()).await {
        Ok(Some(Ok((MqttPacket::Version(v), _)))) => v,
        Ok(Some(Ok(_))) => return None,
        Ok(Some(Err(e))) => {
            tracing::warn!(%remote, error = %e, "MQTT: bad CONNECT, closing");
            if matches!(e, DecodeError::InvalidProtocol) {
                // 3.1.1 §3.1.2.2: unsupported protocol level → return code 0x01.
                let _ = framed
                    .stream_mut()
                    .write_all(&[0x20, 0x02, 0x00, 0x01])
                    .await;
            }
            return None;
        }
        Ok(None) => return None,
        Err(_) => {
            tracing::debug!(%remote, "MQTT: no CONNECT within {timeout:?}, closing");
            return None;
        }
    };
    let v5 = version == ProtocolVersion::MQTT5;
    // `max_packet_size` (our Maximum Packet Size) counts whole packets; the
    // codec bounds the remaining length.
    let max = crate::frame::max_remaining_length(broker.options.max_packet_size);
    *framed.codec_mut() = match version {
        ProtocolVersion::MQTT3 => MqttCodec::V3(v3::Codec::new(max)),
        ProtocolVersion::MQTT5 => MqttCodec::V5(v5::Codec::new(max, 0)),
    };
    // The CONNECT flags byte, checked before decoding: the codec lets some wrong
    // combinations through.
    let flags = tokio::time::timeout(timeout, async {
        loop {
            match crate::frame::connect_flags(framed.buffered()) {
                Some(f) => return Some(f),
                None if framed.read_more().await => {}
                None => return None,
            }
        }
    })
    .await;
    let Ok(Some(flags)) = flags else {
        return None;
    };
    if let Err(why) = crate::frame::check_connect_flags(flags, v5) {
        malformed_connect(&mut framed, v5, remote, 0x81, why).await;
        return None;
    }
    let info = match tokio::time::timeout(timeout, framed.next()).await {
        Ok(Some(Ok((packet, _)))) => match lift(packet) {
            In::Connect(mut info) => {
                info.bridge = bridge;
                info
            }
            _ => return None,
        },
        Ok(Some(Err(DecodeError::Io(e)))) => {
            tracing::debug!(%remote, error = %e, "MQTT: connection lost in CONNECT");
            return None;
        }
        Ok(Some(Err(e))) => {
            let code = match e {
                DecodeError::MaxSizeExceeded { .. } => 0x95,
                DecodeError::InvalidClientId => 0x85,
                DecodeError::UnsupportedProtocolLevel => 0x84,
                _ => 0x81,
            };
            malformed_connect(&mut framed, v5, remote, code, &e.to_string()).await;
            return None;
        }
        _ => return None,
    };
    connect(broker, framed, v5, *info, remote, certificate).await
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

pub(crate) async fn send_connack_error<S>(framed: &mut MqttIo<S>, v5: bool, code: u8, why: &str)
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
    info: ConnectInfo,
    remote: SocketAddr,
    certificate: Option<Vec<u8>>,
) -> Option<Box<Connection<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match admit(&broker, &mut framed, v5, info, remote, certificate).await {
        Ok(Admitted {
            mut channel,
            ack,
            conn_id,
            done,
        }) => {
            let first = channel.connected(ack);
            Some(Box::new(Connection {
                channel,
                framed,
                conn_id,
                done,
                first,
            }))
        }
        Err(Refused { answered: true, .. }) => None,
        Err(Refused {
            code,
            why,
            malformed: true,
            ..
        }) => {
            malformed_connect(&mut framed, v5, remote, code, &why).await;
            None
        }
        Err(Refused { code, why, .. }) => {
            send_connack_error(&mut framed, v5, code, &why).await;
            None
        }
    }
}

/// A CONNECT refused: the CONNACK's reason code and string.
pub(crate) struct Refused {
    pub code: u8,
    pub why: String,
    /// A malformed CONNECT ([`malformed_connect`]): MQTT 3.1.1 gets no CONNACK.
    pub malformed: bool,
    /// Already answered (an enhanced authentication exchange sends its own
    /// CONNACK): nothing more is sent.
    pub answered: bool,
}

impl Refused {
    fn new(code: u8, why: impl Into<String>) -> Self {
        Refused {
            code,
            why: why.into(),
            malformed: false,
            answered: false,
        }
    }

    fn answered() -> Self {
        Refused {
            code: 0x86,
            why: String::new(),
            malformed: false,
            answered: true,
        }
    }
}

/// A CONNECT accepted: the session's channel, the CONNACK it sends first, and
/// what ties the connection to its client id's slot.
pub(crate) struct Admitted {
    pub channel: MqttChannel,
    pub ack: v5::ConnectAck,
    pub conn_id: u64,
    /// Cancelled once the connection has let the session go.
    pub done: CancellationToken,
}

/// The handshake past the CONNECT packet, without the socket: the client id,
/// authentication and will rules, takeover of the client id, the session
/// resumed (or made) and stored, and the settings the CONNACK announces.
/// `codec` is the connection's: for MQTT 5 it is given the client's Maximum
/// Packet Size, and the channel's encoder is a copy of it. A refusal is logged
/// here; the caller sends its CONNACK. The connection driver and the channel
/// harness ([`crate::harness`]) both use it.
pub(crate) async fn admit<S>(
    broker: &Arc<MqttBroker>,
    framed: &mut MqttIo<S>,
    v5: bool,
    mut info: ConnectInfo,
    remote: SocketAddr,
    certificate: Option<Vec<u8>>,
) -> Result<Admitted, Refused>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let broker = broker.clone();
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
            return Err(Refused::new(0x85, "client identifier not valid"));
        }
        let id = format!("junction-{:016x}", rand::random::<u64>());
        if v5 {
            assigned = Some(id.clone());
        }
        info.client_id = id;
    }
    // A banned client id, or one that connects too often (flapping), is
    // refused before anything else: MQTT 5 "Banned" (0x8A), 3.1.1 0x05.
    if named
        && let Err(EngineError::Banned) = broker
            .engine
            .client_connecting(&info.client_id, remote.ip())
    {
        refuse(&info.client_id, 0x8A, "client id banned");
        return Err(Refused::new(0x8A, "banned"));
    }
    // MQTT 5 enhanced authentication (SCRAM-SHA-256), when CONNECT names a method.
    let enhanced = match info.auth_method.take() {
        Some(method) => {
            let data = info.auth_data.take().unwrap_or_default();
            let id = named.then_some(info.client_id.as_str());
            let done = enhanced_auth(&broker, framed, method, &data, remote, id)
                .await
                .ok_or_else(Refused::answered)?;
            info.username = Some(done.user.clone());
            Some(done)
        }
        None => None,
    };
    // Authentication: the same users as NATS.
    let identity = if let Some(done) = &enhanced {
        done.identity.clone()
    } else if broker.engine.auth_required() {
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
                return Err(Refused::new(0x8A, "banned"));
            }
            Err(_) => {
                let code = if presented { 0x86 } else { 0x87 };
                refuse(&info.client_id, code, "authentication failed");
                return Err(Refused::new(
                    code,
                    if presented {
                        "bad user name or password"
                    } else {
                        "not authorized"
                    },
                ));
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
            return Err(Refused {
                code: 0x90,
                why,
                malformed: true,
                answered: false,
            });
        }
        let forbidden = match (&identity.permissions, &subject) {
            (Some(p), Ok(s)) => !p.may_publish(s.as_bytes()),
            _ => false,
        };
        if forbidden || denied_publish(&broker, info.username.as_deref(), &w.topic) {
            refuse(&info.client_id, 0x87, "will topic denied");
            return Err(Refused::new(0x87, "not authorized to publish the will"));
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
        return Err(Refused::new(0x85, why));
    }
    let tenant = match broker.tenant_ready(&tenant_id).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "MQTT state unavailable");
            return Err(Refused::new(0x88, "server unavailable"));
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
            return Err(Refused::new(code, e.to_string()));
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
    let done = CancellationToken::new();
    let mailbox = Mailbox::for_client(broker.options.max_pending, client.clone());
    // An operator's disconnect (`Engine::close_client`) stops the connection.
    // (Weak: the mailbox holds the client record, which holds this handler.)
    {
        let mailbox = Arc::downgrade(&mailbox);
        client.set_close_handler(move |_, _| {
            if let Some(m) = mailbox.upgrade() {
                m.stop(Stop::Operator);
            }
        });
    }
    let previous = loop {
        let wait = {
            let mut slots = tenant.slots.lock();
            let slot = slots.entry(info.client_id.clone()).or_default();
            match &slot.online {
                Some(o) => {
                    o.mailbox.stop(Stop::TakenOver);
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
                        done: done.clone(),
                        mailbox: mailbox.clone(),
                    });
                    let record = slot.record.take().map(|r| *r);
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
                    return Err(Refused::new(0x88, "session store unavailable"));
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
            return Err(Refused::new(
                0x88,
                format!("session state cannot be stored: {why}"),
            ));
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
        let remaining = crate::frame::max_remaining_length(m);
        c.set_max_outbound_size(if remaining > 0 { remaining + 5 } else { 1 });
    }

    let mut ack = connack(0);
    let mut scram_authenticated = false;
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
        if let Some(done) = enhanced {
            scram_authenticated = true;
            ack.auth_method = Some(ByteString::from_static(crate::auth::SCRAM_SHA_256));
            ack.auth_data = Some(done.server_final);
        }
        if info.request_response_info
            && let Some(prefix) = &broker.options.response_information
        {
            let sep = if prefix.ends_with('/') { "" } else { "/" };
            // A client id with a wildcard character would make it a filter,
            // not a topic the client could publish to: then none is sent.
            if info.client_id.contains(['+', '#']) {
                tracing::info!(client_id = %info.client_id, "MQTT Response Information not sent: the client id has a wildcard character");
            } else {
                ack.response_info =
                    Some(ByteString::from(format!("{prefix}{sep}{}", info.client_id)));
            }
        }
    }
    // The encoder: MQTT 5 holds the client's Maximum Packet Size.
    let encoder = match framed.codec_mut() {
        MqttCodec::V3(c) => MqttCodec::V3(c.clone()),
        MqttCodec::V5(c) => MqttCodec::V5(c.clone()),
        MqttCodec::Version(_) => MqttCodec::Version(VersionCodec),
    };
    let settings = Settings {
        v5,
        client_id: info.client_id.clone(),
        username: info.username.clone(),
        connect_expiry: expiry,
        after_crash: after_crash && present,
        client_recv_max: info.receive_max,
        client_alias_max: info.topic_alias_max,
        problem_info: info.request_problem_info,
        will: info.will.take(),
        keep_alive,
        stored: present || expiry > 0,
        scram: scram_authenticated,
        bridge: info.bridge,
    };
    let channel = MqttChannel::new(
        broker.clone(),
        tenant,
        client,
        mailbox,
        Wire::new(encoder),
        record,
        settings,
        std::time::Instant::now(),
    );
    tracing::debug!(%remote, client_id = %channel.client_id(), v5, present, expiry, bridge = info.bridge, "MQTT client connected");
    Ok(Admitted {
        channel,
        ack,
        conn_id,
        done,
    })
}

/// A connection past CONNECT: its channel (the CONNACK already encoded in it)
/// and its socket.
struct Connection<S> {
    channel: MqttChannel,
    framed: MqttIo<S>,
    conn_id: u64,
    /// Cancelled once the connection has let the session go.
    done: CancellationToken,
    /// What encoding the CONNACK said: the connection may end at once.
    first: Step,
}

/// Runs a connection past CONNECT to its end: the socket, the timers and the
/// mailbox feed the channel, and what it encodes goes out.
async fn drive<S>(broker: Arc<MqttBroker>, mut connection: Box<Connection<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Fields reached through the box, never moved out of it: moved into this
    // frame they would be kept here as well as in the box.
    let Connection {
        channel,
        framed,
        first,
        ..
    } = &mut *connection;
    let close = match *first {
        Ok(()) => match main_loop(&broker, channel, framed).await {
            Err(close) => close,
            Ok(never) => match never {},
        },
        Err(close) => close,
    };
    // Boxed: the closing states (the drain's read buffer among them) would
    // otherwise size the task for its whole life.
    let put_away = Box::pin(finish(framed, channel, close)).await;
    // Nothing is awaited from here on: moving out costs the frame nothing.
    let Connection {
        channel,
        conn_id,
        done,
        ..
    } = *connection;
    channel.release(put_away, conn_id);
    done.cancel();
}

/// Ends a connection: sends what the channel encoded last (the DISCONNECT), lets
/// a client that may still be writing read it, decides what becomes of the
/// session, and closes the socket.
async fn finish<S>(
    framed: &mut MqttIo<S>,
    channel: &mut MqttChannel,
    close: Close,
) -> crate::channel::PutAway
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if close.drain {
        // The client may still be writing: let it read the reason before the
        // socket goes.
        let _ = write_out(framed, channel).await;
        framed.shutdown_and_drain(DRAIN_FOR, DRAIN_BYTES).await;
    } else {
        let _ = write_out(framed, channel).await;
    }
    let put_away = channel.put_away(close.end);
    let _ = tokio::time::timeout(WRITE_DEADLINE, framed.close()).await;
    put_away
}

/// Writes out what the channel encoded; false when the socket is gone or the
/// client does not read within [`WRITE_DEADLINE`].
async fn write_out<S>(framed: &mut MqttIo<S>, channel: &mut MqttChannel) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if channel.wire().pending().is_empty() {
        return true;
    }
    match tokio::time::timeout(WRITE_DEADLINE, framed.write_from(channel.wire().pending())).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(client_id = %channel.client_id(), error = %e, "MQTT write failed");
            false
        }
        Err(_) => {
            tracing::info!(client_id = %channel.client_id(), "MQTT client too slow to read, closing");
            false
        }
    }
}

/// Feeds the channel until it, the socket, the client or the broker ends the
/// connection.
async fn main_loop<S>(
    broker: &Arc<MqttBroker>,
    channel: &mut MqttChannel,
    framed: &mut MqttIo<S>,
) -> Result<std::convert::Infallible, Close>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mailbox = channel.mailbox();
    let mut last_read = Instant::now();
    loop {
        if !write_out(framed, channel).await {
            return Err(Close::WITH_WILL);
        }
        // A takeover, here or on another node, or an operator's disconnect.
        if let Some(why) = mailbox.stopped() {
            return Err(channel.stop(why));
        }
        // A cluster link behind: read no more publishes until it catches up
        // (at most BACKPRESSURE_WAIT; past that the link drops what does not fit).
        if let Some(wait) = broker.engine.backpressure() {
            let _ = tokio::time::timeout(BACKPRESSURE_WAIT, wait).await;
        }
        let deadline = channel.keep_alive_deadline();
        let step = tokio::select! {
            biased;
            _ = broker.shutdown.cancelled() => Err(channel.shutting_down()),
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d.into()).await, None => std::future::pending().await } } => {
                channel.tick(std::time::Instant::now())
            }
            frame = framed.next() => {
                let now = Instant::now();
                // Read on waking, not in the middle of a burst already
                // buffered (packets of a burst come microseconds apart).
                let woke = now.duration_since(last_read) >= WOKEN_AFTER;
                last_read = now;
                // Packets that reached the broker together are handled in
                // the order they arrived, as mosquitto's single loop does: the
                // runtime runs the connection woken last first, so a PUBLISH
                // read on waking yields once, and a SUBSCRIBE another client
                // sent just before it is in force when it fans out (MQTT 4.6,
                // 3.8.4; `subscription_live_before_suback_mqtt_3_8_4.rs`).
                // The rest of a burst does not yield: a task switch per
                // PUBLISH would cost QoS 0 throughput for nothing.
                if woke
                    && matches!(
                        &frame,
                        Some(Ok((MqttPacket::V5(v5::Packet::Publish(_)), _)))
                            | Some(Ok((MqttPacket::V3(v3::Packet::Publish(_)), _)))
                    )
                {
                    tokio::task::yield_now().await;
                }
                let now = now.into_std();
                let mut step = feed(channel, frame, now);
                // Take every packet already read before answering, so a burst of
                // publishes is acknowledged with one write. They arrived with the
                // first: the clock is not read again.
                for _ in 0..64 {
                    if step.is_err() {
                        break;
                    }
                    match framed.next().now_or_never() {
                        Some(frame) => step = feed(channel, frame, now),
                        None => break,
                    }
                }
                step
            }
            _ = mailbox.wait() => Ok(()),
        };
        step?;
        // Everything in the mailbox, written out as it grows.
        let (events, dropped) = mailbox.take();
        channel.on_mailbox(dropped)?;
        for event in events {
            channel.on_event(event)?;
            if channel.wire().pending().len() >= WRITE_HIGH_WATER
                && !write_out(framed, channel).await
            {
                return Err(Close::WITH_WILL);
            }
        }
    }
}

/// One read from the socket into the channel.
fn feed(
    channel: &mut MqttChannel,
    frame: Option<Result<(MqttPacket, u32), DecodeError>>,
    now: std::time::Instant,
) -> Step {
    match frame {
        Some(frame) => channel.on_frame(frame.map(|(packet, _)| packet), now),
        None => Err(Close::WITH_WILL),
    }
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
        slot.record = resumed.map(Box::new);
        if slot.record.is_none() && slot.will.is_none() {
            slots.remove(client_id);
            return;
        }
    }
    if let Some(left) = expiry {
        broker.schedule_expiry(tenant, client_id, left);
    }
}

/// A session record whose session has not expired (it is connected, or its
/// expiry has time left).
fn not_expired(r: &SessionRecord) -> bool {
    r.disconnected_ms == 0
        || remaining_expiry(r.expiry, r.disconnected_ms, now_ms())
            .is_none_or(|left| !left.is_zero())
}
