//! Consuming through a group: long-poll fetch and acknowledgements.
//!
//! A fetch is an engine pull request whose [`FetchSink`] collects deliveries and
//! completes a oneshot when the request ends, so the handler answers with everything
//! delivered. It is a `no_wait` request with an expiry: it waits for the first
//! message only, then takes what is available at once (like SQS long polling). Each message carries an `ack_token`: base64url of
//! `{station}:{group}:{seq}:{delivery_count}`, checked against the path on ack.

use super::ApiState;
use super::auth::Tenant;
use super::error::{AppError, ErrorBody};
use super::extract::{ApiPath, JsonBody};
use super::wire::MessageJson;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use junction_api::{AckKind, Delivered, FetchEnd, FetchRequest, FetchSink};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use utoipa::ToSchema;

/// Most messages one fetch may ask for.
pub const MAX_FETCH_BATCH: usize = 1000;

/// How long the handler waits, once `max_wait_ms` has passed, for the engine to end
/// a fetch before answering with what was delivered.
const END_GRACE: Duration = Duration::from_secs(2);

/// The engine-side expiry of a fetch with `max_wait_ms: 0`.
const MIN_EXPIRY: Duration = Duration::from_micros(1);

/// A fetch request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FetchBody {
    /// Most messages (1 to 1000, default 10).
    pub batch: usize,
    /// How long to wait for a first message when none is there, in milliseconds
    /// (default 5000, at most 30000; 0 answers at once).
    pub max_wait_ms: u64,
    /// Most payload bytes in total (0 = no limit).
    pub max_bytes: usize,
}

impl Default for FetchBody {
    fn default() -> Self {
        FetchBody {
            batch: 10,
            max_wait_ms: 5000,
            max_bytes: 0,
        }
    }
}

/// A delivered message.
#[derive(Debug, Serialize, ToSchema)]
pub struct FetchedMessage {
    /// The message.
    #[serde(flatten)]
    pub message: MessageJson,
    /// How many times it has been delivered, this time included.
    pub delivery_count: u32,
    /// Pass to the ack route to acknowledge, nak, terminate or extend it.
    pub ack_token: String,
}

/// What a fetch delivered.
#[derive(Debug, Serialize, ToSchema)]
pub struct FetchResponse {
    /// Delivered messages, possibly none.
    pub messages: Vec<FetchedMessage>,
}

/// Collects a fetch's deliveries; the oneshot fires when the engine ends it. Called
/// with the group's lock held, so it only queues.
struct Collector {
    state: Mutex<CollectorState>,
}

struct CollectorState {
    delivered: Vec<Delivered>,
    done: Option<oneshot::Sender<FetchEnd>>,
}

impl Collector {
    /// Takes what was delivered and refuses anything later (the member is gone).
    fn finish(&self) -> Vec<Delivered> {
        let mut s = self.state.lock();
        s.done = None;
        std::mem::take(&mut s.delivered)
    }
}

impl FetchSink for Collector {
    fn deliver(&self, delivered: &Delivered) -> bool {
        let mut s = self.state.lock();
        let open = s.done.as_ref().is_some_and(|tx| !tx.is_closed());
        if open {
            s.delivered.push(delivered.clone());
        }
        open
    }

    fn end(&self, end: FetchEnd) {
        if let Some(tx) = self.state.lock().done.take() {
            let _ = tx.send(end);
        }
    }

    fn heartbeat(&self) {}
}

/// The opaque token that acknowledges one delivery.
pub fn ack_token(station: &str, group: &str, seq: u64, delivery: u32) -> String {
    URL_SAFE_NO_PAD.encode(format!("{station}:{group}:{seq}:{delivery}"))
}

/// The station sequence a token names, if it is one of this group's.
pub fn parse_ack_token(token: &str, station: &str, group: &str) -> Option<u64> {
    let raw = URL_SAFE_NO_PAD.decode(token.trim().as_bytes()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let rest = text
        .strip_prefix(station)?
        .strip_prefix(':')?
        .strip_prefix(group)?
        .strip_prefix(':')?;
    let (seq, delivery) = rest.split_once(':')?;
    delivery.parse::<u32>().ok()?;
    seq.parse::<u64>().ok().filter(|s| *s > 0)
}

/// Fetch messages from a group (long poll).
///
/// Answers as soon as messages are there: with up to `batch` of those available
/// right away. When there are none, waits up to `max_wait_ms` for the first to
/// arrive, and answers with an empty list if none does. Delivered messages are pending until
/// acknowledged; unacknowledged ones are redelivered after the group's `ack_wait`,
/// to HTTP and NATS members alike.
#[utoipa::path(
    post,
    path = "/v1/stations/{station}/groups/{group}/fetch",
    tag = "consume",
    params(
        ("station" = String, Path, description = "Station name"),
        ("group" = String, Path, description = "Group name"),
        ("Junction-Lineage" = Option<bool>, Header, description = "`true`: render each message's lineage as `Junction-*` headers (default: exactly the producer's headers)"),
    ),
    request_body = FetchBody,
    responses(
        (status = 200, description = "What was delivered", body = FetchResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "No such station or group", body = ErrorBody),
        (status = 422, description = "batch or max_wait_ms out of range, or beyond the group's limits", body = ErrorBody),
        (status = 429, description = "Too many fetch requests are waiting on this group", body = ErrorBody),
    )
)]
pub async fn fetch(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((station, group)): ApiPath<(String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<FetchBody>,
) -> Result<Json<FetchResponse>, AppError> {
    let lineage = super::wire::wants_lineage(&headers)?;
    if body.batch == 0 || body.batch > MAX_FETCH_BATCH {
        return Err(AppError::invalid(
            "invalid_batch",
            format!("batch must be between 1 and {MAX_FETCH_BATCH}"),
        ));
    }
    let max_wait = state.settings.max_wait;
    let wait = Duration::from_millis(body.max_wait_ms);
    if wait > max_wait {
        return Err(AppError::invalid(
            "invalid_max_wait",
            format!("max_wait_ms may be at most {}", max_wait.as_millis()),
        ));
    }
    let (tx, rx) = oneshot::channel();
    let collector = Arc::new(Collector {
        state: Mutex::new(CollectorState {
            delivered: Vec::new(),
            done: Some(tx),
        }),
    });
    // `no_wait` with an expiry: wait up to `max_wait` for the first message, then
    // deliver what is there right away (up to `batch`) and end. The expiry is never
    // zero, so that the timers always end the request, also when the group is at
    // `max_ack_pending` (which a no_wait request without expiry would wait out).
    let request = FetchRequest {
        batch: body.batch,
        max_bytes: body.max_bytes,
        expires: Some(wait.max(MIN_EXPIRY)),
        no_wait: true,
        idle_heartbeat: None,
        pull_request: false,
    };
    state
        .engine
        .fetch(&tenant, &station, &group, request, collector.clone())?;
    let mut rx = rx;
    let end = match tokio::time::timeout(wait, &mut rx).await {
        Ok(end) => end.ok(),
        Err(_) => {
            // Due now: have the engine end the request instead of waiting for its
            // next timer round.
            state.engine.run_group_timers(&tenant, &station, &group);
            tokio::time::timeout(END_GRACE, rx)
                .await
                .ok()
                .and_then(Result::ok)
        }
    };
    let delivered = collector.finish();
    if delivered.is_empty() {
        match end {
            Some(FetchEnd::MaxWaiting) => {
                return Err(AppError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_waiting",
                    "too many fetch requests are waiting on this group; retry later",
                ));
            }
            Some(FetchEnd::GroupDeleted) => {
                return Err(junction_api::EngineError::GroupNotFound.into());
            }
            _ => {}
        }
    }
    if end == Some(FetchEnd::ExceedsLimits) {
        return Err(AppError::invalid(
            "exceeds_group_limits",
            "the request asks for more than the group allows (max_batch, max_expires, max_bytes)",
        ));
    }
    let messages = delivered
        .iter()
        .map(|d| FetchedMessage {
            message: MessageJson::from_stored_with(&d.message, lineage),
            delivery_count: d.delivery_count,
            ack_token: ack_token(&station, &group, d.message.seq, d.delivery_count),
        })
        .collect();
    Ok(Json(FetchResponse { messages }))
}

/// A negative acknowledgement: redeliver, optionally after a delay.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NakItem {
    /// The delivery's ack token.
    pub token: String,
    /// Redeliver no sooner than this many milliseconds from now.
    pub delay_ms: Option<u64>,
}

/// A termination: never redeliver.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TermItem {
    /// The delivery's ack token.
    pub token: String,
    /// Why: logged, sent in the NATS terminated advisory, and copied to the
    /// dead-letter station (`Junction-Dls-Term-Reason`) when the station keeps them.
    pub reason: Option<String>,
}

/// Acknowledgements for deliveries of one group.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AckBody {
    /// Done with these.
    pub ack: Vec<String>,
    /// Redeliver these.
    pub nak: Vec<NakItem>,
    /// Never redeliver these.
    pub term: Vec<TermItem>,
    /// Still working on these: restart their ack timers.
    pub in_progress: Vec<String>,
}

/// How many of each kind were applied.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct AckResponse {
    /// Acknowledged.
    pub acked: usize,
    /// Negatively acknowledged.
    pub naked: usize,
    /// Terminated.
    pub termed: usize,
    /// Ack timers restarted.
    pub in_progress: usize,
}

/// Acknowledge deliveries.
///
/// Every token is checked first (it must come from a fetch on this station and
/// group); one bad token refuses the whole request and nothing is applied. Tokens
/// of deliveries that are no longer pending (already acked, or redelivered after
/// `ack_wait`) are accepted and have no effect, as in JetStream.
#[utoipa::path(
    post,
    path = "/v1/stations/{station}/groups/{group}/ack",
    tag = "consume",
    params(
        ("station" = String, Path, description = "Station name"),
        ("group" = String, Path, description = "Group name"),
    ),
    request_body = AckBody,
    responses(
        (status = 200, description = "Applied", body = AckResponse),
        (status = 400, description = "Malformed JSON or an invalid ack token", body = ErrorBody),
        (status = 404, description = "No such station or group", body = ErrorBody),
    )
)]
pub async fn ack(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((station, group)): ApiPath<(String, String)>,
    JsonBody(body): JsonBody<AckBody>,
) -> Result<Json<AckResponse>, AppError> {
    let seq = |token: &str| {
        parse_ack_token(token, &station, &group).ok_or_else(|| {
            AppError::bad_request(
                "invalid_ack_token",
                format!("'{token}' is not an ack token of group '{group}' on station '{station}'"),
            )
        })
    };
    let mut actions: Vec<(u64, AckKind)> = Vec::new();
    for t in &body.ack {
        actions.push((seq(t)?, AckKind::Ack));
    }
    for n in &body.nak {
        actions.push((
            seq(&n.token)?,
            AckKind::Nak(n.delay_ms.map(Duration::from_millis)),
        ));
    }
    for t in &body.term {
        actions.push((seq(&t.token)?, AckKind::Term(t.reason.clone())));
    }
    for t in &body.in_progress {
        actions.push((seq(t)?, AckKind::InProgress));
    }
    state.engine.group_info(&tenant, &station, &group)?;
    let mut out = AckResponse::default();
    let last = actions.len().saturating_sub(1);
    for (i, (seq, kind)) in actions.into_iter().enumerate() {
        let counter = match kind {
            AckKind::Ack => &mut out.acked,
            AckKind::Nak(_) => &mut out.naked,
            AckKind::Term(_) => &mut out.termed,
            AckKind::InProgress => &mut out.in_progress,
        };
        *counter += 1;
        if i < last {
            state.engine.ack(&tenant, &station, &group, seq, kind)?;
            continue;
        }
        // The 2xx means the acks are durable: on a replicated station, the
        // group's position after the last of them (which holds every earlier
        // one) is committed on a quorum.
        let (tx, rx) = tokio::sync::oneshot::channel();
        state.engine.ack_committed(
            &tenant,
            &station,
            &group,
            seq,
            kind,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await
            .unwrap_or(Err(junction_api::EngineError::ShuttingDown))?;
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_tokens_round_trip_and_are_scoped() {
        let t = ack_token("S", "G", 42, 3);
        assert_eq!(parse_ack_token(&t, "S", "G"), Some(42));
        assert_eq!(parse_ack_token(&t, "S", "H"), None);
        assert_eq!(parse_ack_token(&t, "T", "G"), None);
        assert_eq!(parse_ack_token("not-a-token", "S", "G"), None);
        // A group whose name extends another's cannot borrow its tokens.
        let long = ack_token("S", "G:1", 5, 1);
        assert_eq!(parse_ack_token(&long, "S", "G"), None);
        assert_eq!(parse_ack_token(&long, "S", "G:1"), Some(5));
        assert_eq!(parse_ack_token(&ack_token("S", "G", 0, 1), "S", "G"), None);
    }
}
