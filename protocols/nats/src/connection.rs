//! The async driver of one NATS connection: a read task that feeds the
//! [`NatsChannel`], and a write task that drains the [`Outbound`] queue.

use crate::channel::NatsChannel;
use crate::codec::{CodecError, NatsCodec};
use crate::encode;
use crate::outbound::{CloseReason, Outbound};
use crate::server::NatsOptions;
use bytes::BytesMut;
use junction_api::{Engine, EngineError, NewClient, Protocol, TenantId};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

const READ_CHUNK: usize = 64 * 1024;
const FIRST_PING: Duration = Duration::from_secs(2);

/// Runs one connection until it closes.
pub(crate) async fn run<E: Engine>(
    engine: Arc<E>,
    socket: TcpStream,
    options: Arc<NatsOptions>,
    shutdown: CancellationToken,
) {
    let Ok(remote) = socket.peer_addr() else {
        return;
    };
    let _ = socket.set_nodelay(true);
    let new = NewClient {
        protocol: Protocol::Nats,
        remote,
    };
    let client = match engine.connect(new, TenantId::default_tenant()) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%remote, error = %e, "connection refused");
            let why = match e {
                EngineError::MaxConnections => Some("maximum connections exceeded"),
                EngineError::NoQuorum(_) => Some("cluster meta quorum lost"),
                _ => None,
            };
            let (_reader, writer) = socket.into_split();
            refuse_with(writer, &options, remote, engine.auth_required(), why).await;
            return;
        }
    };
    let span = tracing::debug_span!("nats", cid = client.id.0, %remote);
    let _enter = span.enter();
    tracing::debug!("client connected");
    let connect_urls: Vec<String> = engine
        .cluster()
        .map(|c| {
            c.nodes
                .into_iter()
                .filter(|n| n.online)
                .flat_map(|n| n.client_urls)
                .collect()
        })
        .unwrap_or_default();
    // NKey users sign a fresh random nonce (as nats-server's, base64 URL-safe
    // characters).
    let nonce = engine.uses_nonce().then(|| {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..15)
            .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
            .collect::<String>()
    });
    let info = options.info_json(
        client.id.0,
        remote.ip(),
        engine.auth_required(),
        connect_urls.clone(),
        nonce.clone(),
    );
    let Some(tls) = options.tls.clone() else {
        let (reader, writer) = socket.into_split();
        return session(
            engine,
            client,
            reader,
            writer,
            options,
            shutdown,
            Some(info),
            connect_urls,
            (nonce, None),
        )
        .await;
    };
    // TLS: INFO in clear text first (the client starts TLS after reading it),
    // or, with `handshake_first`, the handshake first and INFO inside it. A
    // client that speaks plain text on this port fails the handshake and is
    // closed.
    let mut socket = socket;
    if !options.tls_handshake_first {
        let mut first = BytesMut::new();
        encode::info(&mut first, &info);
        if socket.write_all(&first).await.is_err() {
            engine.disconnect(client.id);
            return;
        }
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let stream = match tokio::time::timeout(options.tls_timeout, acceptor.accept(socket)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::info!(%remote, error = %e, "TLS handshake failed");
            engine.disconnect(client.id);
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "TLS handshake timed out");
            engine.disconnect(client.id);
            return;
        }
    };
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec());
    let (reader, writer) = tokio::io::split(stream);
    let info = options.tls_handshake_first.then_some(info);
    session(
        engine,
        client,
        reader,
        writer,
        options,
        shutdown,
        info,
        connect_urls,
        (nonce, certificate),
    )
    .await;
}

/// Runs a connection whose transport is ready (TCP, or TLS after its
/// handshake): `info` is queued first unless it was already sent.
#[allow(clippy::too_many_arguments)]
async fn session<E, R, W>(
    engine: Arc<E>,
    client: Arc<junction_api::ClientRecord>,
    reader: R,
    writer: W,
    options: Arc<NatsOptions>,
    shutdown: CancellationToken,
    info: Option<Vec<u8>>,
    connect_urls: Vec<String>,
    (nonce, certificate): (Option<String>, Option<Vec<u8>>),
) where
    E: Engine,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let remote = client.remote;
    let closed = shutdown.child_token();
    let out = Arc::new(Outbound::new(
        client.clone(),
        options.max_pending,
        closed.clone(),
    ));
    // An operator's disconnect: a final -ERR, then the socket closes as it does
    // after any other -ERR. The record holds the queue weakly.
    let kick = Arc::downgrade(&out);
    client.set_close_handler(move |why, cause| {
        if let Some(out) = kick.upgrade() {
            match cause {
                junction_api::CloseCause::Kicked => {
                    out.write(|b| encode::err(b, why));
                    out.close(CloseReason::Kicked);
                }
                junction_api::CloseCause::SlowConsumer => {
                    out.close(CloseReason::SlowConsumerMemoryPressure);
                }
            }
        }
    });
    if let Some(info) = &info {
        out.write(|b| encode::info(b, info));
    }
    // Lame-duck mode, when it comes: the same INFO with "ldm": true.
    let ldm_info = options.info_json_with(
        client.id.0,
        remote.ip(),
        engine.auth_required(),
        connect_urls,
        true,
        nonce.clone(),
    );
    let ldm_out = out.clone();
    let on_lame_duck = move || {
        ldm_out.write(|b| encode::info(b, &ldm_info));
    };
    let write_task = tokio::spawn(write_loop(writer, out.clone(), options.write_deadline));
    let mut channel = NatsChannel::new(
        engine.clone(),
        client.clone(),
        out.clone(),
        options.max_pings_out,
    );
    channel.set_nonce(nonce);
    channel.set_certificate(certificate);
    let reason = read_loop(
        reader,
        &mut channel,
        &options,
        &closed,
        &shutdown,
        on_lame_duck,
    )
    .await;
    out.close(reason);
    let _ = write_task.await;
    let reason = out.close_reason().unwrap_or(reason);
    engine.disconnect(client.id);
    if reason.is_slow_consumer() {
        engine.slow_consumer(&client);
        tracing::warn!(
            name = client.name().unwrap_or_default(),
            "Slow Consumer Detected: {}",
            reason.as_str()
        );
    }
    tracing::debug!(reason = reason.as_str(), "client closed");
}

/// Refuses a connection beyond the listener's share of file descriptors the way
/// nats-server refuses one beyond `max_connections`: INFO, then
/// `-ERR 'maximum connections exceeded'`, then close. Gives up after a second.
pub(crate) async fn refuse(socket: TcpStream, options: Arc<NatsOptions>, auth_required: bool) {
    let Ok(remote) = socket.peer_addr() else {
        return;
    };
    let (_reader, writer) = socket.into_split();
    let why = Some("maximum connections exceeded");
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        refuse_with(writer, &options, remote, auth_required, why),
    )
    .await;
}

async fn refuse_with(
    mut writer: impl AsyncWrite + Unpin,
    options: &NatsOptions,
    remote: std::net::SocketAddr,
    auth_required: bool,
    why: Option<&str>,
) {
    let mut buf = BytesMut::new();
    encode::info(
        &mut buf,
        &options.info_json(0, remote.ip(), auth_required, Vec::new(), None),
    );
    if let Some(why) = why {
        encode::err(&mut buf, why);
    }
    let _ = writer.write_all(&buf).await;
    let _ = writer.shutdown().await;
}

async fn read_loop<E: Engine>(
    mut reader: impl AsyncRead + Unpin,
    channel: &mut NatsChannel<E>,
    options: &NatsOptions,
    closed: &CancellationToken,
    shutdown: &CancellationToken,
    on_lame_duck: impl Fn(),
) -> CloseReason {
    let mut codec = NatsCodec::new(options.limits);
    // A client that connected in lame-duck mode had it in its first INFO.
    let mut lame_duck = options.lame_duck.clone();
    let mut ldm_pending = lame_duck.is_some() && !options.in_lame_duck();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut connected = channel.is_connected();
    let mut force_ping = false;
    let ping = tokio::time::sleep(options.ping_interval);
    tokio::pin!(ping);
    let auth = tokio::time::sleep(options.auth_timeout);
    tokio::pin!(auth);
    let auth_armed = options.auth_required;
    loop {
        let step = tokio::select! {
            biased;
            _ = closed.cancelled() => {
                return if shutdown.is_cancelled() { CloseReason::ServerShutdown } else { CloseReason::WriteError };
            }
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return CloseReason::ClientClosed,
                Ok(_) => {
                    let step = drain(&mut codec, &mut buf, channel);
                    channel.end_of_read();
                    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                        buf.reserve(READ_CHUNK);
                    }
                    step
                }
            },
            _ = &mut ping => {
                let step = channel.ping_tick(force_ping);
                force_ping = false;
                ping.as_mut().reset(Instant::now() + options.ping_interval);
                step
            }
            _ = &mut auth, if auth_armed && !connected => channel.auth_timeout(),
            on = lame_duck_changed(&mut lame_duck), if ldm_pending => {
                match on {
                    Some(true) => {
                        ldm_pending = false;
                        on_lame_duck();
                    }
                    Some(false) => {}
                    None => ldm_pending = false,
                }
                Ok(())
            }
        };
        if let Err(reason) = step {
            return reason;
        }
        // A cluster link behind: read no more publishes until it catches up (at
        // most the write deadline, then the link drops what does not fit).
        if let Some(wait) = channel.engine().backpressure() {
            let _ = tokio::time::timeout(options.write_deadline, wait).await;
        }
        if !connected && channel.is_connected() {
            connected = true;
            force_ping = true;
            ping.as_mut()
                .reset(Instant::now() + options.ping_interval.min(FIRST_PING));
        }
    }
}

/// The next change of lame-duck mode: whether it is on now, or `None` once it
/// can no longer change.
async fn lame_duck_changed(watch: &mut Option<tokio::sync::watch::Receiver<bool>>) -> Option<bool> {
    match watch {
        Some(r) => match r.changed().await {
            Ok(()) => Some(*r.borrow()),
            Err(_) => None,
        },
        None => None,
    }
}

/// Handles every whole operation in `buf`.
fn drain<E: Engine>(
    codec: &mut NatsCodec,
    buf: &mut BytesMut,
    channel: &mut NatsChannel<E>,
) -> Result<(), CloseReason> {
    loop {
        if let Some(&first) = buf.first() {
            channel.check_op_start(first)?;
        }
        match codec.decode(buf) {
            Ok(Some(op)) => channel.handle(op)?,
            Ok(None) => return Ok(()),
            Err(CodecError::Frame(e)) => return channel.frame_error(&e),
            Err(CodecError::Io(_)) => return Err(CloseReason::ClientClosed),
        }
    }
}

/// A write buffer bigger than this is given back when traffic drops, judged
/// over [`SHRINK_AFTER`] ([`write_loop`]).
const SHRINK_ABOVE: usize = 1024 * 1024;
const SHRINK_AFTER: Duration = Duration::from_secs(2);

async fn write_loop(mut writer: impl AsyncWrite + Unpin, out: Arc<Outbound>, deadline: Duration) {
    let mut spare = BytesMut::with_capacity(READ_CHUNK);
    let mut peak = 0usize;
    let mut since = Instant::now();
    loop {
        let close = out.take(&mut spare);
        let wrote = !spare.is_empty();
        if wrote {
            let write = tokio::time::timeout(deadline, writer.write_all(&spare));
            tokio::pin!(write);
            let mut watching = true;
            let result = loop {
                tokio::select! {
                    r = &mut write => break Some(r),
                    // A slow consumer is dropped at once, even mid-write; any other
                    // close lets the write finish so a final -ERR reaches the client.
                    _ = out.closed().cancelled(), if watching => {
                        if out.close_reason().is_some_and(CloseReason::drops_queue) {
                            break None;
                        }
                        watching = false;
                    }
                }
            };
            match result {
                Some(Ok(Ok(()))) => {}
                None => return,
                Some(Ok(Err(_))) => {
                    out.close(CloseReason::WriteError);
                    return;
                }
                Some(Err(_)) => {
                    out.close(CloseReason::SlowConsumerWriteDeadline);
                    return;
                }
            }
            let written = spare.len();
            spare.clear();
            // A buffer sized for the traffic is kept: regrowing one costs a copy
            // and fresh pages per doubling (with a fixed 8 MiB cap, a fifth of the
            // CPU of a 1 KiB pub/sub went to page faults). It is given back once
            // no write for a while needed an eighth of it.
            peak = peak.max(written);
            if since.elapsed() >= SHRINK_AFTER {
                if spare.capacity() > SHRINK_ABOVE && spare.capacity() / 8 > peak {
                    spare = BytesMut::with_capacity(READ_CHUNK);
                }
                peak = 0;
                since = Instant::now();
            }
        }
        if close.is_some() {
            let _ = writer.shutdown().await;
            return;
        }
        if !wrote {
            out.wait().await;
        }
    }
}
