//! The per-connection outbound queue, and the [`Subscriber`] that fills it.
//!
//! Everything sent to one client (replies, `PING`, and messages fanned out from
//! other connections) is appended to one buffer under a short lock, never across an
//! `.await`. The connection's writer task swaps the buffer out and writes it. When the
//! buffer grows past `max_pending` bytes the client is a slow consumer: the buffer is
//! dropped and the connection is closed, as nats-server does, so memory stays bounded
//! and other clients are unaffected.

use crate::encode;
use bytes::{Bytes, BytesMut};
use junction_api::{ClientRecord, Delivery, Message, Permissions, ResponsePermission, Subscriber};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why a connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed its socket.
    ClientClosed,
    /// The client broke the protocol.
    ProtocolViolation,
    /// Credentials were wrong or missing.
    AuthorizationViolation,
    /// No CONNECT arrived in time.
    AuthenticationTimeout,
    /// Too many server PINGs went unanswered.
    StaleConnection,
    /// More than `max_pending` bytes were queued for the client.
    SlowConsumerPendingBytes,
    /// A write did not finish within the write deadline.
    SlowConsumerWriteDeadline,
    /// The socket failed.
    WriteError,
    /// The payload was over the limit.
    MaxPayloadExceeded,
    /// The control line was over the limit.
    MaxControlLineExceeded,
    /// The server is at its connection limit.
    MaxConnectionsExceeded,
    /// The server is shutting down.
    ServerShutdown,
    /// An operator disconnected the client (`DELETE /v1/connections/{cid}`).
    Kicked,
    /// Shed by the memory self-check: the client with the most queued for it.
    SlowConsumerMemoryPressure,
}

impl CloseReason {
    /// Text for logs and `/connz`, as nats-server words it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "Client Closed",
            CloseReason::ProtocolViolation => "Protocol Violation",
            CloseReason::AuthorizationViolation => "Authorization Violation",
            CloseReason::AuthenticationTimeout => "Authentication Timeout",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            CloseReason::SlowConsumerWriteDeadline => "Slow Consumer (Write Deadline)",
            CloseReason::WriteError => "Write Error",
            CloseReason::MaxPayloadExceeded => "Maximum Payload Exceeded",
            CloseReason::MaxControlLineExceeded => "Maximum Control Line Exceeded",
            CloseReason::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::Kicked => "Kicked",
            CloseReason::SlowConsumerMemoryPressure => "Slow Consumer (Memory Pressure)",
        }
    }

    /// True for the slow-consumer reasons the connection found itself (the
    /// engine records the one it shed).
    pub fn is_slow_consumer(self) -> bool {
        matches!(
            self,
            CloseReason::SlowConsumerPendingBytes | CloseReason::SlowConsumerWriteDeadline
        )
    }

    /// True when what is queued is dropped, even mid-write, rather than written.
    pub fn drops_queue(self) -> bool {
        self.is_slow_consumer() || self == CloseReason::SlowConsumerMemoryPressure
    }
}

struct OutState {
    buf: BytesMut,
    closing: Option<CloseReason>,
}

/// One connection's outbound queue.
pub struct Outbound {
    state: Mutex<OutState>,
    wake: Notify,
    closed: CancellationToken,
    max_pending: usize,
    headers: AtomicBool,
    client: Arc<ClientRecord>,
}

impl Outbound {
    /// A queue for `client`, closing it past `max_pending` bytes.
    pub fn new(client: Arc<ClientRecord>, max_pending: usize, closed: CancellationToken) -> Self {
        Outbound {
            state: Mutex::new(OutState {
                buf: BytesMut::with_capacity(4096),
                closing: None,
            }),
            wake: Notify::new(),
            closed,
            max_pending,
            headers: AtomicBool::new(false),
            client,
        }
    }

    /// The client this queue belongs to.
    pub fn client(&self) -> &Arc<ClientRecord> {
        &self.client
    }

    /// Sets whether the client understands `HMSG`.
    pub fn set_headers(&self, on: bool) {
        self.headers.store(on, Ordering::Relaxed);
    }

    /// Cancelled once the connection is closing.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// The close reason, once closing.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.state.lock().closing
    }

    /// Appends protocol bytes (a reply, `PING`, `-ERR`). False once closing.
    pub fn write(&self, f: impl FnOnce(&mut BytesMut)) -> bool {
        let mut st = self.state.lock();
        if st.closing.is_some() {
            return false;
        }
        let was_empty = st.buf.is_empty();
        f(&mut st.buf);
        self.after_append(st, was_empty)
    }

    fn after_append(&self, mut st: parking_lot::MutexGuard<'_, OutState>, was_empty: bool) -> bool {
        let pending = st.buf.len();
        if pending > self.max_pending {
            st.buf = BytesMut::new();
            st.closing = Some(CloseReason::SlowConsumerPendingBytes);
            drop(st);
            self.client.stats.pending_bytes.store(0, Ordering::Relaxed);
            self.closed.cancel();
            self.wake.notify_one();
            return false;
        }
        drop(st);
        self.client
            .stats
            .pending_bytes
            .store(pending as u64, Ordering::Relaxed);
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    /// Queues a message for subscription `sid`. False when the connection is closing.
    pub fn deliver(&self, sid: &[u8], message: &Message) -> bool {
        let with_headers = self.headers.load(Ordering::Relaxed);
        let block = match &message.headers {
            Some(h) if with_headers => Some(encode::header_block(h)),
            _ => None,
        };
        let reply = message.reply.as_ref().map(|r| r.as_bytes());
        let subject = message.subject.as_bytes();
        let mut st = self.state.lock();
        if st.closing.is_some() {
            return false;
        }
        let was_empty = st.buf.is_empty();
        match &block {
            Some(b) => encode::hmsg(&mut st.buf, subject, sid, reply, b, &message.payload),
            None => encode::msg(&mut st.buf, subject, sid, reply, &message.payload),
        }
        let ok = self.after_append(st, was_empty);
        if ok {
            self.client.stats.record_out(message.payload.len());
        }
        ok
    }

    /// Starts closing: what is queued is still written (so a final `-ERR` reaches the
    /// client), then the socket is closed. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let mut st = self.state.lock();
        if st.closing.is_none() {
            st.closing = Some(reason);
        }
        drop(st);
        self.closed.cancel();
        self.wake.notify_one();
    }

    /// Swaps the queued bytes into `spare` (which must be empty); returns the close
    /// reason once closing, so the writer closes after writing them.
    pub(crate) fn take(&self, spare: &mut BytesMut) -> Option<CloseReason> {
        let mut st = self.state.lock();
        std::mem::swap(&mut st.buf, spare);
        let close = st.closing;
        drop(st);
        self.client.stats.pending_bytes.store(0, Ordering::Relaxed);
        close
    }

    /// Waits until something is queued or the connection is closing.
    pub(crate) async fn wait(&self) {
        self.wake.notified().await;
    }
}

/// One NATS subscription: where its messages go and how many it still wants.
pub struct NatsSubscription {
    sid: Bytes,
    out: Arc<Outbound>,
    delivered: AtomicU64,
    /// Unsubscribe after this many deliveries in total; 0 means no limit.
    max: AtomicU64,
    /// Permission checks at delivery, for users with permissions.
    guard: Option<DeliveryGuard>,
}

/// What a subscription of a user with permissions checks as it delivers: deny
/// entries that a wider subscription could carry messages from, and the reply
/// subjects the user may answer once (`allow_responses`).
pub struct DeliveryGuard {
    /// The user's permissions.
    pub permissions: Arc<Permissions>,
    /// The subscription's queue group.
    pub queue: Option<String>,
    /// Filter every message through the subscribe deny list.
    pub check_deny: bool,
    /// Where reply subjects of delivered messages are recorded.
    pub replies: Option<Arc<Replies>>,
}

/// Reply subjects a user with `allow_responses` may publish to: each with when
/// it was received and how many replies it has had.
#[derive(Default)]
pub struct Replies(parking_lot::Mutex<HashMap<Bytes, (Instant, u32)>>);

/// More recorded replies than this and expired ones are dropped.
const REPLIES_PRUNE_AT: usize = 4096;

impl Replies {
    fn record(&self, reply: &Bytes, expires: Duration) {
        let mut map = self.0.lock();
        if map.len() >= REPLIES_PRUNE_AT {
            let now = Instant::now();
            map.retain(|_, (t, _)| expires.is_zero() || now.duration_since(*t) <= expires);
            if map.len() >= REPLIES_PRUNE_AT {
                map.clear();
            }
        }
        map.insert(reply.clone(), (Instant::now(), 0));
    }

    /// May one more reply be published to `subject`? Counts it when it may.
    pub fn allow(&self, subject: &[u8], limits: ResponsePermission) -> bool {
        let mut map = self.0.lock();
        let Some((at, n)) = map.get_mut(subject) else {
            return false;
        };
        *n += 1;
        let over = limits.max > 0 && *n > limits.max;
        let expired = !limits.expires.is_zero() && at.elapsed() > limits.expires;
        if over || expired {
            map.remove(subject);
            return false;
        }
        if limits.max > 0 && *n == limits.max {
            map.remove(subject);
        }
        true
    }
}

impl NatsSubscription {
    /// A subscription delivering to `out` under `sid`.
    pub fn new(sid: Bytes, out: Arc<Outbound>) -> Self {
        Self::guarded(sid, out, None)
    }

    /// A subscription that checks `guard` as it delivers.
    pub fn guarded(sid: Bytes, out: Arc<Outbound>, guard: Option<DeliveryGuard>) -> Self {
        NatsSubscription {
            sid,
            out,
            delivered: AtomicU64::new(0),
            max: AtomicU64::new(0),
            guard,
        }
    }

    /// Messages delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Sets the total delivery limit (`UNSUB sid max`).
    pub fn set_max(&self, max: u64) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// True once the limit is reached.
    pub fn is_done(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        max > 0 && self.delivered() >= max
    }
}

impl Subscriber for NatsSubscription {
    fn deliver(&self, message: &Message, _fanout: junction_api::FanoutId) -> Delivery {
        if let Some(guard) = &self.guard {
            if guard.check_deny
                && guard
                    .permissions
                    .deny_delivery(&message.subject, guard.queue.as_deref())
            {
                return Delivery::Accepted;
            }
            if let (Some(replies), Some(reply), Some(limits)) =
                (&guard.replies, &message.reply, guard.permissions.responses)
            {
                replies.record(reply.bytes(), limits.expires);
            }
        }
        let max = self.max.load(Ordering::Relaxed);
        let n = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if max > 0 && n > max {
            self.delivered.fetch_sub(1, Ordering::Relaxed);
            return Delivery::Gone;
        }
        if !self.out.deliver(&self.sid, message) {
            return Delivery::Gone;
        }
        if max > 0 && n == max {
            Delivery::AcceptedLast
        } else {
            Delivery::Accepted
        }
    }

    fn describe(&self) -> (String, u64) {
        (
            String::from_utf8_lossy(&self.sid).into_owned(),
            self.delivered(),
        )
    }
}
