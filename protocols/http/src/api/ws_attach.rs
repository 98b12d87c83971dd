//! Consumer-group attach on `GET /v1/ws`: at-least-once delivery of a group's
//! messages to the socket, with credit-based flow control.
//!
//! An attachment is a task that issues engine pull requests (long polls with an
//! expiry, re-armed when they end) for as many messages as it has credit for:
//! `max_inflight` minus the deliveries this socket has not yet settled. A delivery
//! counts as in flight until it is acked, naked or terminated, or until the group's
//! `ack_wait` has passed (the engine then redelivers it, possibly elsewhere). So no
//! more than `max_inflight` messages are ever unacknowledged on one attachment.
//!
//! Deliveries are queued on the socket's bounded outbound channel from the sink
//! (called under the group's lock); a full channel marks the socket slow, and it is
//! closed with a close code rather than buffered without bound.

use super::consume::{MAX_FETCH_BATCH, ack_token};
use super::error::AppError;
use super::live::Outbound;
use super::wire::MessageJson;
use junction_api::{Delivered, Engine, FetchEnd, FetchRequest, FetchSink, GroupInfo, TenantId};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long one pull request waits before it is re-armed.
const LONG_POLL: Duration = Duration::from_secs(5);

/// How long past a request's expiry the attachment waits for the engine to end it.
const END_GRACE: Duration = Duration::from_secs(2);

/// Pause before retrying when too many requests wait on the group.
const BUSY_RETRY: Duration = Duration::from_millis(500);

/// A delivery frame of an attachment.
#[derive(Serialize)]
struct AttachMessageFrame<'a> {
    op: &'static str,
    attach: &'a str,
    #[serde(flatten)]
    message: MessageJson,
    delivery_count: u32,
    ack_token: String,
}

/// What an attachment's task and its sinks share.
pub struct AttachShared {
    /// The client's name for the attachment.
    pub id: Arc<str>,
    /// Station.
    pub station: String,
    /// Group.
    pub group: String,
    max_inflight: usize,
    ack_wait: Duration,
    /// Unsettled deliveries: station sequence → when delivered (or last extended).
    inflight: Mutex<HashMap<u64, Instant>>,
    freed: Notify,
    tx: mpsc::Sender<Outbound>,
    slow: Arc<AtomicBool>,
}

impl AttachShared {
    /// Credit left: `max_inflight` minus the deliveries still in flight (those
    /// older than `ack_wait` are the engine's to redeliver and no longer count).
    fn credit(&self) -> usize {
        let mut inflight = self.inflight.lock();
        let ack_wait = self.ack_wait;
        inflight.retain(|_, at| at.elapsed() < ack_wait);
        self.max_inflight.saturating_sub(inflight.len())
    }

    /// The delivery of `seq` was settled (ack, nak, term).
    pub fn settled(&self, seq: u64) {
        if self.inflight.lock().remove(&seq).is_some() {
            self.freed.notify_one();
        }
    }

    /// The delivery of `seq` is still being worked on.
    pub fn extended(&self, seq: u64) {
        if let Some(at) = self.inflight.lock().get_mut(&seq) {
            *at = Instant::now();
        }
    }

    fn error(&self, e: &AppError) {
        let _ = self
            .tx
            .try_send(Outbound::Text(super::ws::error_frame(None, e)));
    }
}

/// The sink of one pull request.
struct AttachSink {
    shared: Arc<AttachShared>,
    done: Mutex<Option<oneshot::Sender<FetchEnd>>>,
}

impl FetchSink for AttachSink {
    fn deliver(&self, delivered: &Delivered) -> bool {
        let done = self.done.lock();
        if done.as_ref().is_none_or(|tx| tx.is_closed()) {
            return false;
        }
        let s = &self.shared;
        let seq = delivered.message.seq;
        let frame = AttachMessageFrame {
            op: "message",
            attach: &s.id,
            message: MessageJson::from_stored(&delivered.message),
            delivery_count: delivered.delivery_count,
            ack_token: ack_token(&s.station, &s.group, seq, delivered.delivery_count),
        };
        let text = serde_json::to_string(&frame).unwrap_or_default();
        // Counted before it is queued, so that an ack racing the queueing finds it.
        s.inflight.lock().insert(seq, Instant::now());
        match s.tx.try_send(Outbound::Text(text)) {
            Ok(()) => true,
            Err(e) => {
                s.inflight.lock().remove(&seq);
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    s.slow.store(true, Ordering::Relaxed);
                }
                false
            }
        }
    }

    fn end(&self, end: FetchEnd) {
        if let Some(tx) = self.done.lock().take() {
            let _ = tx.send(end);
        }
    }

    fn heartbeat(&self) {}

    fn alive(&self) -> bool {
        self.done.lock().as_ref().is_some_and(|tx| !tx.is_closed())
    }
}

/// A running attachment; its task stops when this is dropped.
pub struct Attachment {
    /// Shared state, for acknowledgements.
    pub shared: Arc<AttachShared>,
    task: JoinHandle<()>,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What an attach asks for.
pub struct AttachRequest {
    /// The client's name for it.
    pub id: String,
    /// Station.
    pub station: String,
    /// Group.
    pub group: String,
    /// Most unacknowledged deliveries.
    pub max_inflight: usize,
}

/// Starts delivering a group's messages to the socket behind `tx`; `attached` (the
/// confirmation frame) is queued first, so it always precedes the first delivery.
pub fn attach(
    engine: &Arc<dyn Engine>,
    tenant: &TenantId,
    request: AttachRequest,
    info: GroupInfo,
    tx: mpsc::Sender<Outbound>,
    slow: Arc<AtomicBool>,
    attached: String,
) -> Result<Attachment, AppError> {
    if request.max_inflight == 0 || request.max_inflight > MAX_FETCH_BATCH {
        return Err(AppError::invalid(
            "invalid_max_inflight",
            format!("max_inflight must be between 1 and {MAX_FETCH_BATCH}"),
        ));
    }
    let shared = Arc::new(AttachShared {
        id: Arc::from(request.id.as_str()),
        station: request.station,
        group: request.group,
        max_inflight: request.max_inflight,
        ack_wait: info.config.ack_wait.max(Duration::from_millis(1)),
        inflight: Mutex::new(HashMap::new()),
        freed: Notify::new(),
        tx,
        slow,
    });
    if shared.tx.try_send(Outbound::Text(attached)).is_err() {
        shared.slow.store(true, Ordering::Relaxed);
        return Err(AppError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "slow_consumer",
            "the socket's send queue is full",
        ));
    }
    let task = tokio::spawn(pump(engine.clone(), tenant.clone(), shared.clone()));
    Ok(Attachment { shared, task })
}

/// Issues pull requests while there is credit, until the attachment is dropped or
/// the group refuses.
async fn pump(engine: Arc<dyn Engine>, tenant: TenantId, shared: Arc<AttachShared>) {
    loop {
        let credit = shared.credit();
        if credit == 0 {
            // Wait for a settlement, or for the oldest delivery to pass ack_wait.
            let _ = tokio::time::timeout(shared.ack_wait, shared.freed.notified()).await;
            continue;
        }
        let (done_tx, mut done_rx) = oneshot::channel();
        let sink = Arc::new(AttachSink {
            shared: shared.clone(),
            done: Mutex::new(Some(done_tx)),
        });
        let request = FetchRequest {
            batch: credit,
            max_bytes: 0,
            expires: Some(LONG_POLL),
            no_wait: false,
            idle_heartbeat: None,
            pull_request: false,
        };
        if let Err(e) = engine.fetch(&tenant, &shared.station, &shared.group, request, sink) {
            // In a cluster the group's node may be unreachable for a while (a
            // replicated station electing a new leader): ask again, as a NATS
            // pull consumer would.
            if matches!(
                e,
                junction_api::EngineError::ReplicasUnavailable(_)
                    | junction_api::EngineError::NodeUnreachable(_)
                    | junction_api::EngineError::StationElsewhere { .. }
            ) {
                tracing::debug!(station = %shared.station, group = %shared.group, error = %e, "attachment waits for the group's node");
                tokio::time::sleep(BUSY_RETRY).await;
                continue;
            }
            shared.error(&e.into());
            return;
        }
        let end = match tokio::time::timeout(LONG_POLL, &mut done_rx).await {
            Ok(end) => end.ok(),
            Err(_) => {
                engine.run_group_timers(&tenant, &shared.station, &shared.group);
                tokio::time::timeout(END_GRACE, done_rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        match end {
            Some(FetchEnd::MaxWaiting) => tokio::time::sleep(BUSY_RETRY).await,
            Some(FetchEnd::GroupDeleted) => {
                shared.error(&junction_api::EngineError::GroupNotFound.into());
                return;
            }
            Some(FetchEnd::ExceedsLimits) => {
                shared.error(&AppError::invalid(
                    "exceeds_group_limits",
                    "max_inflight asks for more than the group allows (max_batch, max_expires)",
                ));
                return;
            }
            _ => {}
        }
    }
}
