//! Push consumers: a consumer group with a `deliver_subject`, whose messages
//! the server publishes to that subject as they come.
//!
//! Each push consumer has one **pusher** task on the node that holds its
//! stream (a replicated stream's leader). The pusher is a pull client of the
//! group: it issues long-poll fetches for as many messages as the group lets
//! out (`max_ack_pending`), and publishes each delivery to the deliver subject
//! with the same `$JS.ACK` reply subject a pull delivery has, so acks, naks,
//! redeliveries and the consumer's position are the group's, shared with every
//! other protocol.
//! - **Interest.** It delivers only while someone subscribes to the deliver
//!   subject (`push_bound`); an ephemeral push consumer without interest for
//!   its `inactive_threshold` is deleted, as nats-server does.
//! - **Idle heartbeats** (`idle_heartbeat`): `100 Idle Heartbeat` with
//!   `Nats-Last-Consumer` / `Nats-Last-Stream` when nothing was delivered for
//!   that long (and `Nats-Consumer-Stalled` while a flow-control request is
//!   unanswered), which is what ordered consumers check for gaps.
//! - **Flow control** (`flow_control`): after every [`FC_EVERY`] messages or
//!   [`FC_BYTES`] of payload, whichever comes first, a
//!   `100 FlowControl Request` with a reply subject; nothing more is delivered
//!   until the subscriber answers it (an empty publish to that reply, which
//!   clients do on their own).
//! - **Rate limit** (`rate_limit_bps`): payload bits delivered never run
//!   ahead of the rate since the pusher started.
//! - **Where it runs.** Started when the consumer is created, and by a scan
//!   every [`SCAN_EVERY`] of the streams this node holds, so a durable push
//!   consumer resumes after a restart or on a replicated stream's new leader.
//!   A pusher stops when its stream is held elsewhere or the consumer is gone.

use super::api_types::{ApiError, ConsumerConfig, JsErrorCode, status};
use crate::encode;
use bytes::Bytes;
use junction_api::{
    Delivered, Delivery, Engine, EngineError, FetchEnd, FetchRequest, FetchSink, Message,
    PushConfig, Subject, SubjectFilter, Subscriber, TenantId,
};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// How long one fetch of a pusher waits for messages.
const LONG_POLL: Duration = Duration::from_secs(1);

/// Most messages one fetch asks for.
const BATCH: usize = 256;

/// Messages between two flow-control requests.
const FC_EVERY: u64 = 512;

/// Payload bytes between two flow-control requests (whichever comes first):
/// what is on its way to a subscriber stays well under a client's pending
/// limit (64 MiB in nats-server and Junction).
const FC_BYTES: u64 = 4 << 20;

/// How often a node looks for push consumers of the streams it holds.
const SCAN_EVERY: Duration = Duration::from_secs(2);

/// How often a pusher with no interest looks again.
const INTEREST_POLL: Duration = Duration::from_millis(100);

/// Subject prefix of flow-control replies: `$JS.FC.<stream>.<consumer>.<n>`.
const FC_PREFIX: &str = "$JS.FC.";

/// Checks a push consumer's configuration as nats-server does (the deliver
/// subject against the stream's subjects is checked by the caller).
pub(crate) fn check_config(c: &ConsumerConfig) -> Result<(), ApiError> {
    let text = c.deliver_subject.as_str();
    if text.split('.').any(|t| t == "*" || t == ">") {
        return Err(JsErrorCode::ConsumerDeliverToWildcards.error());
    }
    Subject::new(c.deliver_subject.clone())
        .map_err(|_| JsErrorCode::ConsumerInvalidDeliverSubject.error())?;
    if text.starts_with('$') {
        return Err(JsErrorCode::ConsumerInvalidDeliverSubject.error());
    }
    if c.max_waiting != 0 {
        return Err(JsErrorCode::ConsumerPushMaxWaiting.error());
    }
    if c.max_batch != 0 || c.max_expires != 0 || c.max_bytes != 0 {
        return Err(JsErrorCode::ConsumerCreate
            .with_err("max_batch, max_expires and max_bytes are for pull consumers".to_string()));
    }
    if c.idle_heartbeat > 0 && c.idle_heartbeat < 100_000_000 {
        return Err(JsErrorCode::ConsumerSmallHeartbeat.error());
    }
    if c.flow_control && c.idle_heartbeat <= 0 {
        return Err(JsErrorCode::ConsumerWithFlowControlNeedsHeartbeats.error());
    }
    Ok(())
}

/// This node's pushers, and the flow-control replies they wait for.
pub(crate) struct Pushers<E: Engine> {
    engine: Weak<E>,
    /// Running pushers: (tenant, stream, consumer).
    running: Mutex<HashSet<Key>>,
    /// Groups the scan found to be pull groups (a group never turns into a
    /// push one; one made again under the same name as a push consumer is
    /// started by its create): not looked at again.
    pull: Mutex<HashSet<Key>>,
    /// Unanswered flow-control requests: reply subject → its waiter.
    flow: Mutex<HashMap<String, Arc<Notify>>>,
    tokens: AtomicU64,
}

/// A push consumer: its tenant, stream and name.
type Key = (TenantId, String, String);

/// Receives one tenant's flow-control replies (`$JS.FC.>`): wakes the pusher
/// here, or passes the reply on to the node that holds the stream.
struct FlowInbox<E: Engine> {
    pushers: Weak<Pushers<E>>,
    tenant: TenantId,
}

impl<E: Engine> Subscriber for FlowInbox<E> {
    fn deliver(&self, message: &Message, _fanout: junction_api::FanoutId) -> Delivery {
        let Some(pushers) = self.pushers.upgrade() else {
            return Delivery::Gone;
        };
        let subject = message.subject.to_str_lossy().into_owned();
        if let Some(waiter) = pushers.flow.lock().remove(&subject) {
            waiter.notify_one();
            return Delivery::Accepted;
        }
        let stream = subject
            .strip_prefix(FC_PREFIX)
            .and_then(|r| r.split('.').next())
            .unwrap_or_default();
        if let Some(engine) = pushers.engine.upgrade()
            && let Some(node) = engine.station_node(&self.tenant, stream)
        {
            let _ = engine.forward_request(&node, &self.tenant, message);
        }
        Delivery::Accepted
    }

    fn describe(&self) -> (String, u64) {
        ("$JS.FC".into(), 0)
    }
}

impl<E: Engine> Pushers<E> {
    /// Starts the scan for push consumers (each tenant's flow-control inbox is
    /// [`Pushers::serve_tenant`]).
    pub(crate) fn start(engine: &Arc<E>) -> Result<Arc<Pushers<E>>, EngineError> {
        let pushers = Arc::new(Pushers {
            engine: Arc::downgrade(engine),
            running: Mutex::new(HashSet::new()),
            pull: Mutex::new(HashSet::new()),
            flow: Mutex::new(HashMap::new()),
            tokens: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&pushers);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SCAN_EVERY).await;
                let Some(p) = weak.upgrade() else { return };
                p.scan();
            }
        });
        Ok(pushers)
    }

    /// Subscribes to the flow-control replies of `tenant`'s push consumers.
    pub(crate) fn serve_tenant(
        self: &Arc<Self>,
        engine: &Arc<E>,
        tenant: TenantId,
    ) -> Result<(), EngineError> {
        let client = engine.tenant_client(&tenant);
        engine.subscribe(
            &client,
            SubjectFilter::new(format!("{FC_PREFIX}>"))?,
            None,
            Arc::new(FlowInbox {
                pushers: Arc::downgrade(self),
                tenant,
            }),
        )?;
        Ok(())
    }

    /// Starts pushers for the push consumers of the streams this node holds.
    fn scan(self: &Arc<Self>) {
        let Some(engine) = self.engine.upgrade() else {
            return;
        };
        // Groups seen now: the pull groups remembered are kept to these (pull
        // consumers come and go).
        let mut seen: HashSet<Key> = HashSet::new();
        for tenant in engine.tenants() {
            for stream in engine.station_names(&tenant, None) {
                if engine.station_node(&tenant, &stream).is_some() {
                    continue;
                }
                let Ok(names) = engine.group_names(&tenant, &stream) else {
                    continue;
                };
                seen.extend(
                    names
                        .iter()
                        .map(|n| (tenant.clone(), stream.clone(), n.clone())),
                );
                for name in names {
                    let key = (tenant.clone(), stream.clone(), name);
                    if self.running.lock().contains(&key) || self.pull.lock().contains(&key) {
                        continue;
                    }
                    self.ensure(&key.0, &key.1, &key.2);
                }
            }
        }
        self.pull.lock().retain(|k| seen.contains(k));
    }

    /// Starts the pusher of `stream`'s consumer `name` when it is a push
    /// consumer held here and none runs.
    pub(crate) fn ensure(self: &Arc<Self>, tenant: &TenantId, stream: &str, name: &str) {
        let Some(engine) = self.engine.upgrade() else {
            return;
        };
        if engine.station_node(tenant, stream).is_some() {
            return;
        }
        let Ok(info) = engine.group_info(tenant, stream, name) else {
            return;
        };
        let key = (tenant.clone(), stream.to_string(), name.to_string());
        if info.config.push.is_none() {
            self.pull.lock().insert(key);
            return;
        }
        self.pull.lock().remove(&key);
        if !self.running.lock().insert(key.clone()) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let (tenant, stream, name) = key.clone();
            me.push(&tenant, &stream, &name).await;
            me.running.lock().remove(&key);
        });
    }

    /// Sends a status message (a header block) to `to`, with `reply`.
    fn status(engine: &E, tenant: &TenantId, to: &Subject, block: &[u8], reply: Option<Subject>) {
        let Ok(headers) = encode::parse_header_block(block) else {
            return;
        };
        let message = Message {
            subject: to.clone(),
            reply,
            headers: Some(headers),
            payload: Bytes::new(),
        };
        let system = engine.tenant_client(tenant);
        engine.publish_routed(&system, to, &message);
    }

    /// The pusher of one consumer: runs until the consumer is gone, its stream
    /// is held elsewhere, or (an ephemeral one) it lost interest.
    async fn push(self: &Arc<Self>, tenant: &TenantId, stream: &str, name: &str) {
        let tenant = tenant.clone();
        let shared = Arc::new(PushState::default());
        let mut no_interest_since: Option<Instant> = None;
        let mut last_sent = Instant::now();
        let mut since_fc = 0u64;
        let mut bytes_since_fc = 0u64;
        let started = Instant::now();
        loop {
            let Some(engine) = self.engine.upgrade() else {
                return;
            };
            if engine.station_node(&tenant, stream).is_some() {
                tracing::debug!(
                    stream,
                    consumer = name,
                    "push consumer's stream held elsewhere now"
                );
                return;
            }
            let Ok(info) = engine.group_info(&tenant, stream, name) else {
                return;
            };
            let Some(push) = info.config.push.clone() else {
                return;
            };
            let Ok(deliver) = Subject::new(push.deliver_subject.clone()) else {
                return;
            };
            if !engine.has_interest(&tenant, &deliver) {
                let since = *no_interest_since.get_or_insert_with(Instant::now);
                if !info.config.durable && since.elapsed() >= info.config.inactive_threshold {
                    tracing::debug!(
                        stream,
                        consumer = name,
                        "ephemeral push consumer without interest: deleted"
                    );
                    let _ = engine.delete_group(&tenant, stream, name).await;
                    return;
                }
                drop(engine);
                tokio::time::sleep(INTEREST_POLL).await;
                continue;
            }
            no_interest_since = None;
            if push.flow_control && (since_fc >= FC_EVERY || bytes_since_fc >= FC_BYTES) {
                if !self
                    .flow_control(&engine, &tenant, stream, name, &deliver, &push, &shared)
                    .await
                {
                    continue;
                }
                since_fc = 0;
                bytes_since_fc = 0;
            }
            if push.rate_limit_bps > 0 {
                // Never ahead of `rate_limit_bps` since the pusher started.
                let bits = shared.bytes.load(Ordering::Acquire).saturating_mul(8);
                let due =
                    started + Duration::from_secs_f64(bits as f64 / push.rate_limit_bps as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    drop(engine);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            let (done_tx, done_rx) = oneshot::channel();
            let sink = Arc::new(PushSink {
                engine: Arc::downgrade(&engine),
                tenant: tenant.clone(),
                deliver: deliver.clone(),
                stream: stream.to_string(),
                consumer: name.to_string(),
                state: shared.clone(),
                budget: push
                    .flow_control
                    .then(|| FC_BYTES.saturating_sub(bytes_since_fc)),
                sent_bytes: AtomicU64::new(0),
                done: Mutex::new(Some(done_tx)),
            });
            let batch = if push.flow_control {
                BATCH.min(usize::try_from(FC_EVERY - since_fc).unwrap_or(BATCH))
            } else if push.rate_limit_bps > 0 {
                // Small fetches, so the pace is kept between them.
                8
            } else {
                BATCH
            }
            .max(1);
            let expires = if push.idle_heartbeat.is_zero() {
                LONG_POLL
            } else {
                push.idle_heartbeat
                    .saturating_sub(last_sent.elapsed())
                    .clamp(Duration::from_millis(10), LONG_POLL)
            };
            let request = FetchRequest {
                batch,
                max_bytes: 0,
                expires: Some(expires),
                no_wait: false,
                idle_heartbeat: None,
                pull_request: false,
            };
            let before = shared.delivered.load(Ordering::Acquire);
            let bytes_before = shared.bytes.load(Ordering::Acquire);
            if let Err(e) = engine.fetch(&tenant, stream, name, request, sink) {
                match e {
                    EngineError::GroupNotFound | EngineError::StationNotFound => return,
                    other => {
                        tracing::debug!(stream, consumer = name, error = %other, "push fetch refused; trying again");
                        drop(engine);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
            let end = match tokio::time::timeout(expires + Duration::from_millis(50), done_rx).await
            {
                Ok(end) => end.ok(),
                Err(_) => {
                    engine.run_group_timers(&tenant, stream, name);
                    None
                }
            };
            drop(engine);
            let sent = shared.delivered.load(Ordering::Acquire) - before;
            since_fc += sent;
            bytes_since_fc += shared.bytes.load(Ordering::Acquire) - bytes_before;
            if sent > 0 {
                last_sent = Instant::now();
            }
            match end {
                Some(PushEnd::Fetch(FetchEnd::GroupDeleted)) => return,
                // The flow-control budget is spent: asked for at the top.
                Some(PushEnd::FlowControl) => {}
                Some(PushEnd::NoInterest) => {
                    tokio::time::sleep(INTEREST_POLL).await;
                }
                Some(PushEnd::Fetch(FetchEnd::MaxWaiting)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => {}
            }
            if !push.idle_heartbeat.is_zero() && last_sent.elapsed() >= push.idle_heartbeat {
                if let Some(engine) = self.engine.upgrade() {
                    Self::status(
                        &engine,
                        &tenant,
                        &deliver,
                        &status::idle_heartbeat(
                            shared.consumer_seq.load(Ordering::Acquire),
                            shared.stream_seq.load(Ordering::Acquire),
                            None,
                        ),
                        None,
                    );
                }
                last_sent = Instant::now();
            }
        }
    }

    /// Sends a flow-control request and waits for its answer, sending
    /// heartbeats that name it meanwhile. `false` when it was not answered
    /// before interest went away (the caller looks again).
    #[allow(clippy::too_many_arguments)]
    async fn flow_control(
        self: &Arc<Self>,
        engine: &Arc<E>,
        tenant: &TenantId,
        stream: &str,
        name: &str,
        deliver: &Subject,
        push: &PushConfig,
        shared: &PushState,
    ) -> bool {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        let reply = format!("{FC_PREFIX}{stream}.{name}.{n}");
        let Ok(reply_subject) = Subject::new(reply.clone()) else {
            return true;
        };
        let waiter = Arc::new(Notify::new());
        self.flow.lock().insert(reply.clone(), waiter.clone());
        Self::status(
            &**engine,
            tenant,
            deliver,
            status::FLOW_CONTROL_REQUEST,
            Some(reply_subject),
        );
        let tick = if push.idle_heartbeat.is_zero() {
            Duration::from_secs(1)
        } else {
            push.idle_heartbeat
        };
        loop {
            if tokio::time::timeout(tick, waiter.notified()).await.is_ok() {
                return true;
            }
            if !engine.has_interest(tenant, deliver)
                || engine.group_info(tenant, stream, name).is_err()
            {
                self.flow.lock().remove(&reply);
                return false;
            }
            Self::status(
                &**engine,
                tenant,
                deliver,
                &status::idle_heartbeat(
                    shared.consumer_seq.load(Ordering::Acquire),
                    shared.stream_seq.load(Ordering::Acquire),
                    Some(&reply),
                ),
                None,
            );
        }
    }
}

/// What a pusher's deliveries have come to.
#[derive(Default)]
struct PushState {
    /// Messages delivered, and their payload bytes.
    delivered: AtomicU64,
    bytes: AtomicU64,
    /// The last delivery's consumer and stream sequences (for heartbeats).
    consumer_seq: AtomicU64,
    stream_seq: AtomicU64,
}

/// How one fetch of a pusher ended.
enum PushEnd {
    Fetch(FetchEnd),
    /// A delivery found nobody subscribed.
    NoInterest,
    /// The bytes allowed before the next flow-control request were sent.
    FlowControl,
}

/// The sink of one fetch of a pusher: publishes each delivery to the deliver
/// subject.
struct PushSink<E: Engine> {
    engine: Weak<E>,
    tenant: TenantId,
    deliver: Subject,
    stream: String,
    consumer: String,
    state: Arc<PushState>,
    /// With flow control: payload bytes this fetch may send.
    budget: Option<u64>,
    sent_bytes: AtomicU64,
    done: Mutex<Option<oneshot::Sender<PushEnd>>>,
}

impl<E: Engine> PushSink<E> {
    fn finish(&self, end: PushEnd) {
        if let Some(tx) = self.done.lock().take() {
            let _ = tx.send(end);
        }
    }
}

impl<E: Engine> FetchSink for PushSink<E> {
    fn deliver(&self, d: &Delivered) -> bool {
        if self.done.lock().as_ref().is_none_or(|tx| tx.is_closed()) {
            return false;
        }
        if let Some(budget) = self.budget
            && self.sent_bytes.load(Ordering::Acquire) >= budget
        {
            // Not delivered (it stays the group's next): a flow-control
            // request goes first.
            self.finish(PushEnd::FlowControl);
            return false;
        }
        let Some(engine) = self.engine.upgrade() else {
            return false;
        };
        let message = super::consumer_api::delivery_message(&self.stream, &self.consumer, d);
        let system = engine.tenant_client(&self.tenant);
        if engine.publish_routed(&system, &self.deliver, &message) == 0 {
            // Nobody subscribed any more: not delivered (it stays the group's
            // next), and this fetch is over.
            self.finish(PushEnd::NoInterest);
            return false;
        }
        self.state
            .consumer_seq
            .store(d.consumer_seq, Ordering::Release);
        self.state
            .stream_seq
            .store(d.message.seq, Ordering::Release);
        let size = d.message.payload.len() as u64;
        self.state.bytes.fetch_add(size, Ordering::AcqRel);
        self.sent_bytes.fetch_add(size, Ordering::AcqRel);
        self.state.delivered.fetch_add(1, Ordering::AcqRel);
        true
    }

    fn end(&self, end: FetchEnd) {
        self.finish(PushEnd::Fetch(end));
    }

    fn heartbeat(&self) {}

    fn alive(&self) -> bool {
        self.done.lock().as_ref().is_some_and(|tx| !tx.is_closed())
    }
}
