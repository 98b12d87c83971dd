//! The HTTP listener: our own accept loop over hyper's HTTP/1 server, so that every
//! socket is counted and timed from the moment it is accepted.
//!
//! - **Connection cap.** At most [`HttpLimits::max_connections`] sockets at once.
//!   The slot belongs to the socket, so an upgraded connection (a WebSocket, MQTT
//!   over WebSocket) keeps it until it closes. One socket more is answered
//!   `503 {"error":{"code":"max_connections",…}}` with `Retry-After: 1` and closed.
//! - **Header timeout.** A request head must arrive in full within
//!   [`HttpLimits::header_timeout`] of the connection opening, or of the first byte
//!   of the next request on a kept-alive connection. A partial head is answered
//!   `408 {"error":{"code":"request_timeout",…}}` and the socket closed; a new
//!   connection that sent nothing is closed without an answer.
//! - **Idle timeout.** A kept-alive connection with no request in flight and no
//!   byte for [`HttpLimits::idle_timeout`] is closed. A request in flight (a long
//!   poll, a Server-Sent Events stream) is never cut by either timeout; the API's
//!   request timeout bounds what needs bounding.
//! - **Accept errors** (`EMFILE` when the process is out of file descriptors) back
//!   off from 5 ms to 1 s: the loop never spins. Refusals and accept errors are
//!   logged at most once per [`WARN_EVERY`], with a count.
//!
//! Shutdown: stop accepting, ask every connection to finish its request and close,
//! and wait for them (upgraded connections live on in their own tasks, as with
//! `axum::serve`).

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often a refusal or an accept error is logged at most (with a count).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Refused sockets being answered at once; beyond this a refused socket is closed
/// without an answer, so a flood cannot use the refusal path to hold descriptors.
const REFUSALS_AT_ONCE: usize = 64;

/// How long a refused socket may take to read its 503.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Limits of one HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Most sockets at once (0: no cap).
    pub max_connections: usize,
    /// Time a request head has to arrive in full.
    pub header_timeout: Duration,
    /// Time a kept-alive connection may sit with no request.
    pub idle_timeout: Duration,
    /// Serve HTTPS (and `wss://`) with this configuration; the handshake must
    /// finish within `header_timeout`.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Default for HttpLimits {
    /// No cap, 10 s for a request head, 60 s idle.
    fn default() -> Self {
        HttpLimits {
            max_connections: 0,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls: None,
        }
    }
}

/// A warning that is logged at most once per [`WARN_EVERY`], with how many times it
/// happened meanwhile. Owned by one task, so it needs no lock.
struct Throttled {
    last: Option<Instant>,
    count: u64,
}

impl Throttled {
    fn new() -> Self {
        Throttled {
            last: None,
            count: 0,
        }
    }

    /// Counts one occurrence; calls `log` with the count when it is time to log.
    fn hit(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            log(self.count);
            self.count = 0;
            self.last = Some(now);
        }
    }
}

/// The certificate an HTTPS client presented (DER, verified against
/// `tls.ca_file`), in each of its requests' extensions. With `verify_and_map`,
/// a request without an `Authorization` header logs in as its user, as an MQTT
/// client that names no user does.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<Vec<u8>>);

/// Serves `router` on `listener` within `limits` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let slots =
        (limits.max_connections > 0).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let limits = Arc::new(limits);
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut refused = Throttled::new();
    let mut failed = Throttled::new();
    let mut backoff = Duration::ZERO;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(a) => {
                backoff = Duration::ZERO;
                a
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                failed.hit(|n| {
                    tracing::warn!(listener = %local, error = %e, times = n, "HTTP accept failed; backing off")
                });
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let slot = match &slots {
            None => None,
            Some(s) => match s.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    let cap = limits.max_connections;
                    refused.hit(|n| {
                        tracing::warn!(
                            listener = %local, %remote, refused = n,
                            "HTTP connection refused: the listener is at its limit of {cap} connections"
                        )
                    });
                    if let Ok(permit) = refusals.clone().try_acquire_owned() {
                        tokio::spawn(refuse(stream, cap, permit));
                    }
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(connection(
            stream,
            remote,
            router.clone(),
            slot,
            limits.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Answers a socket beyond the cap with a 503 and closes it. The request head is
/// read first (HTTP clients take an answer that comes before their request for a
/// broken connection), and what the client sends after is read too, so the close
/// does not reset the answer away. A second for each.
async fn refuse(mut stream: TcpStream, cap: usize, _permit: OwnedSemaphorePermit) {
    let mut head = Vec::new();
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let mut buf = [0u8; 2048];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let body = format!(
        "{{\"error\":{{\"code\":\"max_connections\",\"message\":\"the HTTP listener is at its limit of {cap} connections; try again later\"}}}}"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

/// What the watchdog knows of one connection; written by the socket (bytes read),
/// the service (requests) and read by the watchdog. Times are milliseconds since
/// the connection opened.
struct Activity {
    opened: Instant,
    /// Requests whose response has not been written in full.
    in_flight: AtomicUsize,
    /// Responses written in full.
    served: AtomicU64,
    /// When the last response was written in full.
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived, or [`NONE`].
    first_byte: AtomicU64,
    /// [`LIVE`], [`CLOSE`] or [`ANSWER_408`]: set by the watchdog, acted on by the
    /// socket.
    verdict: AtomicU8,
}

const NONE: u64 = u64::MAX;
const LIVE: u8 = 0;
const CLOSE: u8 = 1;
const ANSWER_408: u8 = 2;

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(NONE),
            verdict: AtomicU8::new(LIVE),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn bytes_read(&self) {
        if self.first_byte.load(Ordering::Relaxed) == NONE {
            let now = self.now_ms();
            let _ =
                self.first_byte
                    .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.first_byte.store(NONE, Ordering::Relaxed);
    }

    fn response_done(&self) {
        self.idle_since.store(self.now_ms(), Ordering::Relaxed);
        self.first_byte.store(NONE, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// When the connection times out if nothing changes, and how it is closed then;
    /// `None` while a request is in flight.
    fn deadline(&self, limits: &HttpLimits) -> Option<(Instant, u8)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE / 2);
        let first = self.first_byte.load(Ordering::Relaxed);
        let (at, verdict) = if first != NONE {
            (first.saturating_add(ms(limits.header_timeout)), ANSWER_408)
        } else if self.served.load(Ordering::Relaxed) == 0 {
            (ms(limits.header_timeout), CLOSE)
        } else {
            let idle = self.idle_since.load(Ordering::Relaxed);
            (idle.saturating_add(ms(limits.idle_timeout)), CLOSE)
        };
        Some((self.opened + Duration::from_millis(at), verdict))
    }
}

/// Ends a request when dropped: with the response body once it is written in full,
/// or with the handler's future if the connection dies first.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.response_done();
    }
}

/// The socket as hyper sees it: notes when bytes arrive, holds the connection's
/// slot, and carries out the watchdog's verdict (a 408, then end of stream).
struct WatchedSocket {
    inner: TcpStream,
    activity: Arc<Activity>,
    header_timeout: Duration,
    _slot: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for WatchedSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.activity.verdict.load(Ordering::Relaxed) {
            LIVE => {}
            ANSWER_408 => {
                self.activity.verdict.store(CLOSE, Ordering::Relaxed);
                // Best effort, once: a short write to a socket that has sent
                // nothing back for seconds does not block.
                let answer = timeout_answer(self.header_timeout);
                let _ = Pin::new(&mut self.inner).poll_write(cx, answer.as_bytes());
                return Poll::Ready(Ok(()));
            }
            _ => return Poll::Ready(Ok(())),
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for WatchedSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The 408 a partial request head gets.
fn timeout_answer(limit: Duration) -> String {
    let body = format!(
        "{{\"error\":{{\"code\":\"request_timeout\",\"message\":\"the request head did not arrive within {}\"}}}}",
        humantime::format_duration(limit)
    );
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Runs one connection: hyper's HTTP/1 server (with upgrades) and its watchdog.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    slot: Option<OwnedSemaphorePermit>,
    limits: Arc<HttpLimits>,
    stop: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let socket = WatchedSocket {
        inner: stream,
        activity: activity.clone(),
        header_timeout: limits.header_timeout,
        _slot: slot,
    };
    let mut peer = None;
    let socket = match &limits.tls {
        None => tokio_util::either::Either::Left(socket),
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            match tokio::time::timeout(limits.header_timeout, acceptor.accept(socket)).await {
                Ok(Ok(tls)) => {
                    peer = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| PeerCertificate(Arc::new(c.to_vec())));
                    tokio_util::either::Either::Right(tls)
                }
                Ok(Err(e)) => {
                    tracing::info!(%remote, error = %e, "HTTPS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%remote, "HTTPS handshake timed out");
                    return;
                }
            }
        }
    };
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        requests.request_started();
        let in_flight = InFlight(requests.clone());
        request.extensions_mut().insert(ConnectInfo(remote));
        if let Some(p) = &peer {
            request.extensions_mut().insert(p.clone());
        }
        let mut router = router.clone();
        async move {
            let response = match tower::Service::call(&mut router, request).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            // The request ends when hyper drops the body, having written it.
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _ = &in_flight;
                    frame
                }))
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(socket), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    let mut condemned = false;
    loop {
        let wake = match activity.deadline(&limits) {
            _ if condemned => Instant::now() + Duration::from_secs(1),
            Some((at, _)) => at,
            // A request is in flight: look again later.
            None => Instant::now() + limits.header_timeout.min(limits.idle_timeout),
        };
        tokio::select! {
            biased;
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%remote, error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(wake) => {
                if condemned {
                    // The socket was told to end and hyper did not notice in time.
                    return;
                }
                if let Some((at, verdict)) = activity.deadline(&limits)
                    && at <= Instant::now()
                {
                    if verdict == ANSWER_408 {
                        tracing::info!(%remote, timeout = ?limits.header_timeout, "HTTP request head timed out; answering 408");
                    } else {
                        tracing::debug!(%remote, "HTTP connection idle; closing");
                    }
                    activity.verdict.store(verdict, Ordering::Relaxed);
                    condemned = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_the_connection() {
        let limits = HttpLimits {
            max_connections: 0,
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
            tls: None,
        };
        let a = Activity::new();
        let at = |a: &Activity| {
            a.deadline(&limits)
                .map(|(t, v)| (t.duration_since(a.opened).as_millis(), v))
        };
        // New and silent: the header timeout from the start, closed silently.
        assert_eq!(at(&a), Some((2000, CLOSE)));
        // A first byte: the header timeout from it, answered 408.
        a.first_byte.store(500, Ordering::Relaxed);
        assert_eq!(at(&a), Some((2500, ANSWER_408)));
        // A request in flight: no deadline.
        a.request_started();
        assert_eq!(at(&a), None);
        // Served and idle: the idle timeout from the end of the response.
        a.response_done();
        let idle = u128::from(a.idle_since.load(Ordering::Relaxed));
        assert_eq!(at(&a), Some((idle + 30_000, CLOSE)));
    }

    #[test]
    fn timeout_answer_is_json() {
        let answer = timeout_answer(Duration::from_secs(10));
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 408 Request Timeout\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(json["error"]["code"], "request_timeout");
    }
}
