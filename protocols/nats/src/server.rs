//! The NATS listener: accepts connections and runs each one until shutdown.

use crate::frame::Limits;
use crate::info::{ADVERTISED_VERSION, ServerInfo};
use junction_api::Engine;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Settings of the NATS front-end.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Server id shown in INFO.
    pub server_id: String,
    /// Server name shown in INFO.
    pub server_name: String,
    /// Host shown in INFO.
    pub host: String,
    /// Port shown in INFO.
    pub port: u16,
    /// Parser limits.
    pub limits: Limits,
    /// Bytes queued for one client before it is a slow consumer.
    pub max_pending: usize,
    /// Longest a socket write may take before the client is a slow consumer.
    pub write_deadline: Duration,
    /// How often the server pings an idle client.
    pub ping_interval: Duration,
    /// Unanswered pings before the connection is stale.
    pub max_pings_out: u32,
    /// How long a client has to send CONNECT when auth is required.
    pub auth_timeout: Duration,
    /// Whether credentials are required (shown in INFO).
    pub auth_required: bool,
    /// Whether the JetStream API is served (shown in INFO).
    pub jetstream: bool,
    /// How long shutdown waits for connections to flush.
    pub drain_timeout: Duration,
    /// Most sockets this listener holds at once, its share of the process's file
    /// descriptors (0: no cap). One more is answered
    /// `-ERR 'maximum connections exceeded'` and closed.
    pub max_connections: usize,
    /// Lame-duck mode: once it reads true, every client is sent an INFO with
    /// `"ldm": true` (nats-server's lame-duck signal; clients reconnect elsewhere),
    /// and so is every new one.
    pub lame_duck: Option<tokio::sync::watch::Receiver<bool>>,
    /// TLS (nats-server's `tls {}`): clients must use it; INFO says
    /// `tls_required`.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Time a TLS handshake may take.
    pub tls_timeout: Duration,
    /// The TLS handshake comes before INFO.
    pub tls_handshake_first: bool,
    /// Client certificates are required (INFO `tls_verify`).
    pub tls_verify: bool,
}

impl NatsOptions {
    /// The INFO JSON for one client.
    pub fn info_json(
        &self,
        client_id: u64,
        client_ip: IpAddr,
        auth_required: bool,
        connect_urls: Vec<String>,
        nonce: Option<String>,
    ) -> Vec<u8> {
        let ldm = self.in_lame_duck();
        self.info_json_with(
            client_id,
            client_ip,
            auth_required,
            connect_urls,
            ldm,
            nonce,
        )
    }

    /// Whether lame-duck mode is on.
    pub fn in_lame_duck(&self) -> bool {
        self.lame_duck.as_ref().is_some_and(|r| *r.borrow())
    }

    /// The INFO JSON for one client, with `ldm` as given.
    pub fn info_json_with(
        &self,
        client_id: u64,
        client_ip: IpAddr,
        auth_required: bool,
        connect_urls: Vec<String>,
        ldm: bool,
        nonce: Option<String>,
    ) -> Vec<u8> {
        let info = ServerInfo {
            server_id: self.server_id.clone(),
            server_name: self.server_name.clone(),
            version: ADVERTISED_VERSION.to_string(),
            proto: 1,
            go: "junction".to_string(),
            host: self.host.clone(),
            port: self.port,
            headers: true,
            auth_required,
            max_payload: self.limits.max_payload,
            jetstream: self.jetstream,
            client_id,
            client_ip: client_ip.to_string(),
            junction_version: env!("CARGO_PKG_VERSION").to_string(),
            connect_urls,
            nonce,
            ldm,
            tls_required: self.tls.is_some(),
            tls_verify: self.tls.is_some() && self.tls_verify,
            tls_available: false,
        };
        let mut json = serde_json::to_vec(&info).unwrap_or_default();
        // nats-server writes a space between the JSON and the CRLF.
        json.push(b' ');
        json
    }
}

/// Accepts NATS clients on `listener` until `shutdown` is cancelled, then waits (up
/// to `drain_timeout`) for every connection to flush and close.
pub async fn serve<E: Engine>(
    listener: TcpListener,
    engine: Arc<E>,
    options: NatsOptions,
    shutdown: CancellationToken,
) {
    let jetstream = if options.jetstream {
        match crate::jetstream::start(engine.clone(), shutdown.clone()) {
            Ok(task) => Some(task),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the JetStream API");
                None
            }
        }
    } else {
        None
    };
    let options = Arc::new(options);
    let tracker = TaskTracker::new();
    let slots =
        (options.max_connections > 0).then(|| Arc::new(Semaphore::new(options.max_connections)));
    // Refusals being written at once; beyond that a refused socket is just closed.
    let refusals = Arc::new(Semaphore::new(64));
    let (mut refused, mut last_warn) = (0u64, None::<Instant>);
    let mut backoff = Duration::ZERO;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, remote)) => {
                    backoff = Duration::ZERO;
                    let slot = match &slots {
                        None => None,
                        Some(s) => match s.clone().try_acquire_owned() {
                            Ok(p) => Some(p),
                            Err(_) => {
                                refused += 1;
                                if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                                    tracing::warn!(
                                        %remote, refused,
                                        "NATS connection refused: the listener is at its limit of {} connections",
                                        options.max_connections
                                    );
                                    (refused, last_warn) = (0, Some(Instant::now()));
                                }
                                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                                    let (options, auth) = (options.clone(), engine.auth_required());
                                    tokio::spawn(async move {
                                        crate::connection::refuse(socket, options, auth).await;
                                        drop(permit);
                                    });
                                }
                                continue;
                            }
                        },
                    };
                    let connection = crate::connection::run(
                        engine.clone(),
                        socket,
                        options.clone(),
                        shutdown.clone(),
                    );
                    tracker.spawn(async move {
                        connection.await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of file descriptors (EMFILE) and the like: back off, 5 ms
                    // doubling to 1 s, so the loop never spins.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    tracing::warn!(error = %e, retry_in = ?backoff, "accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(options.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some NATS connections did not close in time");
    }
    if let Some(task) = jetstream {
        let _ = task.await;
    }
}
