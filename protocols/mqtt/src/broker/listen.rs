//! The MQTT listeners: plain TCP and TLS, each connection under the
//! connection cap.

use super::MqttBroker;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

/// MQTT over TLS on a listener (8883): the server configuration and the time a
/// handshake may take.
#[derive(Clone)]
pub struct MqttTls {
    /// rustls's server configuration (certificate, client verification).
    pub config: Arc<tokio_rustls::rustls::ServerConfig>,
    /// Time a TLS handshake may take.
    pub timeout: Duration,
}

/// Accepts MQTT clients on `listener` until `broker`'s shutdown token is cancelled,
/// then waits (up to the drain timeout) for connections to close.
pub async fn serve(listener: TcpListener, broker: Arc<MqttBroker>) {
    serve_listeners(vec![(listener, None)], broker).await;
}

/// Accepts MQTT clients on each listener (plain, or TLS with its
/// [`MqttTls`]) until `broker`'s shutdown token is cancelled, then waits (up to
/// the drain timeout) for connections to close.
pub async fn serve_listeners(
    listeners: Vec<(TcpListener, Option<MqttTls>)>,
    broker: Arc<MqttBroker>,
) {
    if !broker.options.sys_interval.is_zero() {
        let b = broker.clone();
        broker.tracker.spawn(crate::sys::run(b));
    }
    let tracker = TaskTracker::new();
    // One connection cap for the listeners together.
    let cap = broker.options.max_connections;
    let slots = (cap > 0).then(|| Arc::new(tokio::sync::Semaphore::new(cap)));
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(listener, tls)| {
            accept_loop(
                listener,
                tls,
                broker.clone(),
                tracker.clone(),
                slots.clone(),
            )
        })
        .collect();
    futures::future::join_all(loops).await;
    tracker.close();
    broker.tracker.close();
    let drain = broker.options.drain_timeout;
    if tokio::time::timeout(drain, async {
        tracker.wait().await;
        broker.tracker.wait().await;
    })
    .await
    .is_err()
    {
        tracing::warn!("MQTT connections still open after the drain timeout");
    }
    for t in broker.tenants() {
        broker.engine.disconnect(t.client.id);
    }
}

/// One listener's accept loop; its connections run on `tracker`.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<MqttTls>,
    broker: Arc<MqttBroker>,
    tracker: TaskTracker,
    slots: Option<Arc<tokio::sync::Semaphore>>,
) {
    if let Ok(addr) = listener.local_addr() {
        let how = if tls.is_some() { " over TLS" } else { "" };
        tracing::info!("Listening for MQTT clients{how} on {addr}");
    }
    let cap = broker.options.max_connections;
    let acceptor = tls
        .as_ref()
        .map(|t| (tokio_rustls::TlsAcceptor::from(t.config.clone()), t.timeout));
    // Refusals being answered at once; beyond that a refused socket is just closed.
    let refusals = Arc::new(tokio::sync::Semaphore::new(64));
    let (mut refused, mut last_warn) = (0u64, None::<std::time::Instant>);
    let mut backoff = Duration::ZERO;
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    backoff = Duration::ZERO;
                    let _ = stream.set_nodelay(true);
                    let slot = match &slots {
                        None => None,
                        Some(s) => match s.clone().try_acquire_owned() {
                            Ok(p) => Some(p),
                            Err(_) => {
                                refused += 1;
                                if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                                    tracing::warn!(
                                        %remote, refused,
                                        "MQTT connection refused: the listener is at its limit of {cap} connections"
                                    );
                                    (refused, last_warn) = (0, Some(std::time::Instant::now()));
                                }
                                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                                    let max = broker.options.max_packet_size;
                                    tokio::spawn(async move {
                                        crate::refuse::refuse(stream, remote, max).await;
                                        drop(permit);
                                    });
                                }
                                continue;
                            }
                        },
                    };
                    let b = broker.clone();
                    let Some((acceptor, limit)) = acceptor.clone() else {
                        // A task of its own type: the TLS one's larger state
                        // does not size it (docs/mqtt.md, idle connections).
                        // A combinator, not an `async` block: awaited there, the
                        // connection's future would be held twice.
                        let connection = crate::connection::run(b, stream, remote, None);
                        tracker.spawn(futures::FutureExt::map(connection, move |()| drop(slot)));
                        continue;
                    };
                    tracker.spawn(async move {
                        match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let certificate = tls
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .map(|c| c.as_ref().to_vec());
                                b.handle_tls(tls, remote, certificate).await
                            }
                            Ok(Err(e)) => {
                                tracing::info!(%remote, error = %e, "MQTT TLS handshake failed");
                            }
                            Err(_) => tracing::info!(%remote, "MQTT TLS handshake timed out"),
                        }
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of file descriptors (EMFILE) and the like: back off, 5 ms
                    // doubling to 1 s, so the loop never spins.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    tracing::warn!(error = %e, retry_in = ?backoff, "MQTT accept failed");
                    tokio::select! {
                        _ = broker.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }
}
