//! `GET /v1/ws`: a WebSocket for live subscribe and publish, with JSON text frames.
//!
//! Client → server (`ref` is optional and echoed in the reply):
//! - `{"op":"subscribe","sub":"s1","subject":"orders.>","queue"?:"q"}` →
//!   `{"op":"subscribed","sub":"s1"}`
//! - `{"op":"unsubscribe","sub":"s1"}` → `{"op":"unsubscribed","sub":"s1"}`
//! - `{"op":"publish","subject":"x","payload"|"payload_base64":…,"headers"?:{},
//!   "idempotency_key"?:"k","ref"?:…}` → `{"op":"published","ref",…}` with
//!   `station`, `seq`, `duplicate` once a station made it durable, or `delivered`
//! - `{"op":"ping"}` → `{"op":"pong"}`
//! - `{"op":"attach","id":"x","station":"s","group":"g","max_inflight"?:N}` →
//!   `{"op":"attached","id":"x"}`, then `{"op":"message","attach":"x","seq",…,
//!   "delivery_count","ack_token"}` per delivery (at least once, never more than
//!   `max_inflight` unacknowledged; see [`super::ws_attach`])
//! - `{"op":"ack","token"}`, `{"op":"nak","token","delay_ms"?}`,
//!   `{"op":"term","token","reason"?}`, `{"op":"in_progress","token"}`: settle a
//!   delivery (no reply unless it fails)
//! - `{"op":"detach","id":"x"}` → `{"op":"detached","id":"x"}`
//!
//! Server → client: `{"op":"message","sub":"s1","subject",…}` per delivery, and
//! `{"op":"error","ref"?,"error":{"code","message"}}` for a refused frame.
//!
//! One send task and one receive task, joined by `select!`: when either ends the
//! other is stopped and the connection's subscriptions are removed.

use super::ApiState;
use super::auth::Tenant;
use super::consume::parse_ack_token;
use super::error::{AppError, ErrorBody, ErrorDetail};
use super::live::{ChannelSubscriber, LiveClient, LiveMessageJson, OUTBOUND_QUEUE, Outbound};
use super::options::HttpOptions;
use super::publish::{Published, start_publish};
use super::wire::{HeadersJson, decode_payload, headers_from_json};
use super::ws_attach::{AttachRequest, Attachment, attach};
use axum::Extension;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use junction_api::{
    AckKind, Message, Protocol, QueueGroup, Subject, SubjectFilter, SubscriptionId, TenantId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// WebSocket close code for a slow consumer (policy violation).
const CLOSE_SLOW: u16 = 1008;

/// A frame from the client.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Subscribe {
        sub: String,
        subject: String,
        queue: Option<String>,
        #[serde(rename = "ref")]
        reference: Option<Value>,
    },
    Unsubscribe {
        sub: String,
        #[serde(rename = "ref")]
        reference: Option<Value>,
    },
    Publish {
        subject: String,
        #[serde(default)]
        headers: HeadersJson,
        payload: Option<String>,
        payload_base64: Option<String>,
        idempotency_key: Option<String>,
        #[serde(rename = "ref")]
        reference: Option<Value>,
    },
    Ping {
        #[serde(rename = "ref")]
        reference: Option<Value>,
    },
    Attach {
        id: String,
        station: String,
        group: String,
        #[serde(default = "default_max_inflight")]
        max_inflight: usize,
        #[serde(rename = "ref")]
        reference: Option<Value>,
    },
    Detach {
        id: String,
        #[serde(rename = "ref")]
        reference: Option<Value>,
    },
    Ack {
        token: String,
        #[serde(rename = "ref")]
        reference: Option<Value>,
    },
    Nak {
        token: String,
        delay_ms: Option<u64>,
        #[serde(rename = "ref")]
        reference: Option<Value>,
    },
    Term {
        token: String,
        reason: Option<String>,
        #[serde(rename = "ref")]
        reference: Option<Value>,
    },
    InProgress {
        token: String,
        #[serde(rename = "ref")]
        reference: Option<Value>,
    },
}

/// `max_inflight` of an attach that does not say.
fn default_max_inflight() -> usize {
    100
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    op: &'static str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a Value>,
    error: ErrorDetail,
}

pub(super) fn error_frame(reference: Option<&Value>, e: &AppError) -> String {
    serde_json::to_string(&ErrorFrame {
        op: "error",
        reference,
        error: e.detail(),
    })
    .unwrap_or_default()
}

/// A reply frame; fields that do not apply are left out.
#[derive(Serialize, Default)]
struct ReplyFrame {
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    station: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped_by: Option<String>,
}

impl ReplyFrame {
    fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A delivery frame: `op` first, then the message.
#[derive(Serialize)]
struct MessageFrame {
    op: &'static str,
    #[serde(flatten)]
    message: LiveMessageJson,
}

/// Open a WebSocket for live subscribe and publish, and consumer-group attach.
///
/// See docs/http.md for the frame protocol: JSON text frames with an `op` of
/// `subscribe`, `unsubscribe`, `publish`, `ping`, `attach`, `detach`, `ack`, `nak`,
/// `term` or `in_progress`; live deliveries arrive as `{"op":"message","sub",…}`,
/// group deliveries as `{"op":"message","attach",…,"ack_token"}`.
#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "consume",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 426, description = "`upgrade_required`: a `Sec-WebSocket-Version` other than 13 (the answer carries `Sec-WebSocket-Version: 13`)", body = ErrorBody),
        (status = 503, description = "The broker is at its connection limit", body = ErrorBody),
    )
)]
pub async fn websocket(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Extension(auth): Extension<super::auth::Authenticated>,
    remote: Option<Extension<ConnectInfo<SocketAddr>>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return Ok(crate::websocket::refuse_upgrade(rejection)),
    };
    let live = LiveClient::connect(&state, &tenant, Protocol::WebSocket, remote, "websocket")?;
    live.client.set_authenticated(auth.0);
    // Base64 makes a payload a third larger; leave room for the rest of the frame.
    let max_frame = state
        .settings
        .max_payload
        .saturating_mul(2)
        .saturating_add(64 * 1024);
    Ok(upgrade
        .max_message_size(max_frame)
        .on_upgrade(move |socket| session(socket, state, live, tenant)))
}

async fn session(socket: WebSocket, state: Arc<ApiState>, live: LiveClient, tenant: TenantId) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Outbound>(OUTBOUND_QUEUE);
    let slow = Arc::new(AtomicBool::new(false));

    // A protocol error found by the receive task: the send task owns the sink, so
    // it writes the Close frame.
    let (close_tx, mut close_rx) = oneshot::channel::<CloseFrame>();
    let send_slow = slow.clone();
    let mut send_task = tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                biased;
                close = &mut close_rx => {
                    if let Ok(frame) = close {
                        let _ = sink.send(WsMessage::Close(Some(frame))).await;
                    }
                    return false;
                }
                item = rx.recv() => match item {
                    Some(item) => item,
                    None => return false,
                },
            };
            let text = match item {
                Outbound::Delivery { sub, message } => serde_json::to_string(&MessageFrame {
                    op: "message",
                    message: LiveMessageJson::new(Some(&sub), &message),
                })
                .unwrap_or_default(),
                Outbound::Text(text) => text,
            };
            if sink.send(WsMessage::Text(text.into())).await.is_err() {
                return false;
            }
            if send_slow.load(Ordering::Relaxed) {
                let _ = sink
                    .send(WsMessage::Close(Some(CloseFrame {
                        code: CLOSE_SLOW,
                        reason: "slow consumer".into(),
                    })))
                    .await;
                return true;
            }
        }
    });

    let recv_state = state.clone();
    let client = live.client.clone();
    let recv_slow = slow.clone();
    let mut recv_task = tokio::spawn(async move {
        let mut subscriptions: HashMap<String, SubscriptionId> = HashMap::new();
        let mut attachments: HashMap<String, Attachment> = HashMap::new();
        let close = loop {
            let frame = match stream.next().await {
                None => break None,
                Some(Ok(frame)) => frame,
                Some(Err(e)) => break crate::websocket::close_for(&e),
            };
            let text = match frame {
                WsMessage::Text(t) => t,
                WsMessage::Binary(_) => {
                    let e = AppError::bad_request("invalid_frame", "frames are JSON text");
                    if tx
                        .send(Outbound::Text(error_frame(None, &e)))
                        .await
                        .is_err()
                    {
                        break None;
                    }
                    continue;
                }
                // Read on: the library answers the Close (1002 for a code the RFC
                // forbids) as the next read flushes it, then the stream ends.
                WsMessage::Close(_) => continue,
                _ => continue,
            };
            client.stats.touch();
            let request: ClientFrame = match serde_json::from_str(text.as_str()) {
                Ok(r) => r,
                Err(e) => {
                    let e = AppError::bad_request("invalid_json", format!("invalid frame: {e}"));
                    if tx
                        .send(Outbound::Text(error_frame(None, &e)))
                        .await
                        .is_err()
                    {
                        break None;
                    }
                    continue;
                }
            };
            let answer = match request {
                ClientFrame::Attach { .. }
                | ClientFrame::Detach { .. }
                | ClientFrame::Ack { .. }
                | ClientFrame::Nak { .. }
                | ClientFrame::Term { .. }
                | ClientFrame::InProgress { .. } => {
                    handle_group(
                        &recv_state,
                        &tenant,
                        &tx,
                        &recv_slow,
                        &mut attachments,
                        request,
                    )
                    .await
                }
                request => handle(
                    &recv_state,
                    &client,
                    &tx,
                    &recv_slow,
                    &mut subscriptions,
                    request,
                ),
            };
            if let Some(text) = answer
                && tx.send(Outbound::Text(text)).await.is_err()
            {
                break None;
            }
        };
        if let Some(frame) = close {
            let _ = close_tx.send(frame);
        }
    });

    let slow_close = tokio::select! {
        closed_slow = &mut send_task => {
            recv_task.abort();
            closed_slow.unwrap_or(false)
        }
        _ = &mut recv_task => {
            // Let the send task write a Close frame for a protocol error.
            let closed_slow = tokio::time::timeout(Duration::from_secs(1), &mut send_task).await;
            send_task.abort();
            matches!(closed_slow, Ok(Ok(true)))
        }
    };
    if slow_close || slow.load(Ordering::Relaxed) {
        live.slow_consumer();
    }
    drop(live);
}

/// Applies one request; returns the immediate reply, if any (a publish that a
/// station captures replies later, from its own task).
fn handle(
    state: &Arc<ApiState>,
    client: &Arc<junction_api::ClientRecord>,
    tx: &mpsc::Sender<Outbound>,
    slow: &Arc<AtomicBool>,
    subscriptions: &mut HashMap<String, SubscriptionId>,
    request: ClientFrame,
) -> Option<String> {
    match request {
        ClientFrame::Ping { reference } => Some(
            ReplyFrame {
                op: "pong",
                reference,
                ..Default::default()
            }
            .text(),
        ),
        ClientFrame::Subscribe {
            sub,
            subject,
            queue,
            reference,
        } => {
            let result = (|| {
                if subscriptions.contains_key(&sub) {
                    return Err(AppError::new(
                        axum::http::StatusCode::CONFLICT,
                        "subscription_exists",
                        format!("subscription '{sub}' exists"),
                    ));
                }
                super::auth::check_subscribe(
                    client.permissions().map(|p| &**p),
                    &subject,
                    queue.as_deref(),
                )?;
                let filter = SubjectFilter::new(subject).map_err(|e| {
                    AppError::bad_request("invalid_subject", format!("subject: {e}"))
                })?;
                let queue = queue
                    .map(QueueGroup::new)
                    .transpose()
                    .map_err(|e| AppError::bad_request("invalid_subject", format!("queue: {e}")))?;
                let subscriber = ChannelSubscriber::new(
                    Arc::from(sub.as_str()),
                    tx.clone(),
                    slow.clone(),
                    client.clone(),
                );
                let id = state
                    .engine
                    .subscribe(client, filter, queue, Arc::new(subscriber))?;
                subscriptions.insert(sub.clone(), id);
                Ok(())
            })();
            Some(match result {
                Ok(()) => ReplyFrame {
                    op: "subscribed",
                    sub: Some(sub),
                    reference,
                    ..Default::default()
                }
                .text(),
                Err(e) => error_frame(reference.as_ref(), &e),
            })
        }
        ClientFrame::Unsubscribe { sub, reference } => Some(match subscriptions.remove(&sub) {
            Some(id) => {
                state.engine.unsubscribe(client, id);
                ReplyFrame {
                    op: "unsubscribed",
                    sub: Some(sub),
                    reference,
                    ..Default::default()
                }
                .text()
            }
            None => error_frame(
                reference.as_ref(),
                &AppError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "subscription_not_found",
                    format!("no subscription '{sub}'"),
                ),
            ),
        }),
        ClientFrame::Publish {
            subject,
            headers,
            payload,
            payload_base64,
            idempotency_key,
            reference,
        } => {
            let message = (|| {
                let subject = Subject::new(subject).map_err(|e| {
                    AppError::bad_request("invalid_subject", format!("subject: {e}"))
                })?;
                super::auth::check_publish(
                    client.permissions().map(|p| &**p),
                    &subject.to_str_lossy(),
                )?;
                let payload = decode_payload(payload, payload_base64)?;
                let max = state.settings.max_payload;
                if payload.len() > max {
                    return Err(AppError::payload_too_large(payload.len(), max));
                }
                let mut headers = headers_from_json(&headers)?;
                if let Some(key) = idempotency_key {
                    headers.insert("Nats-Msg-Id", key);
                }
                Ok(Message {
                    subject,
                    reply: None,
                    headers: (!headers.is_empty()).then_some(headers),
                    payload,
                })
            })();
            let message = message.and_then(|m| {
                let options = HttpOptions::of(None, m.headers.as_ref())?;
                Ok((m, options))
            });
            let (message, options) = match message {
                Ok(m) => m,
                Err(e) => return Some(error_frame(reference.as_ref(), &e)),
            };
            let pending = start_publish(state, client, client, &message, &options);
            let tx = tx.clone();
            tokio::spawn(async move {
                let text = match pending.outcome().await {
                    Ok(Published::Stored(ack)) => ReplyFrame {
                        op: "published",
                        reference,
                        station: Some(ack.station),
                        seq: Some(ack.seq),
                        duplicate: Some(ack.duplicate),
                        ..Default::default()
                    }
                    .text(),
                    Ok(Published::Live(n)) => ReplyFrame {
                        op: "published",
                        reference,
                        delivered: Some(n),
                        ..Default::default()
                    }
                    .text(),
                    Ok(Published::Dropped(rule)) => ReplyFrame {
                        op: "published",
                        reference,
                        delivered: Some(0),
                        dropped_by: Some(rule),
                        ..Default::default()
                    }
                    .text(),
                    Err(e) => error_frame(reference.as_ref(), &e),
                };
                let _ = tx.send(Outbound::Text(text)).await;
            });
            None
        }
        ClientFrame::Attach { .. }
        | ClientFrame::Detach { .. }
        | ClientFrame::Ack { .. }
        | ClientFrame::Nak { .. }
        | ClientFrame::Term { .. }
        | ClientFrame::InProgress { .. } => None,
    }
}

/// Applies a consumer-group request: attach, detach, or the settlement of a
/// delivery. Returns the immediate reply, if any.
async fn handle_group(
    state: &Arc<ApiState>,
    tenant: &TenantId,
    tx: &mpsc::Sender<Outbound>,
    slow: &Arc<AtomicBool>,
    attachments: &mut HashMap<String, Attachment>,
    request: ClientFrame,
) -> Option<String> {
    let (token, kind, reference) = match request {
        ClientFrame::Attach {
            id,
            station,
            group,
            max_inflight,
            reference,
        } => {
            if attachments.contains_key(&id) {
                let e = AppError::new(
                    axum::http::StatusCode::CONFLICT,
                    "attachment_exists",
                    format!("attachment '{id}' exists"),
                );
                return Some(error_frame(reference.as_ref(), &e));
            }
            // Asked of the node that serves the group (in a cluster, maybe
            // another node: the attachment then pulls from there).
            let info = match state
                .engine
                .group_info_served(tenant, &station, &group)
                .await
            {
                Ok(info) => info,
                Err(e) => return Some(error_frame(reference.as_ref(), &e.into())),
            };
            let request = AttachRequest {
                id: id.clone(),
                station,
                group,
                max_inflight,
            };
            // `attached` is queued by `attach` itself, before the first delivery.
            let attached = ReplyFrame {
                op: "attached",
                id: Some(id.clone()),
                reference: reference.clone(),
                ..Default::default()
            }
            .text();
            return match attach(
                &state.engine,
                tenant,
                request,
                info,
                tx.clone(),
                slow.clone(),
                attached,
            ) {
                Ok(a) => {
                    attachments.insert(id, a);
                    None
                }
                Err(e) => Some(error_frame(reference.as_ref(), &e)),
            };
        }
        ClientFrame::Detach { id, reference } => {
            return Some(match attachments.remove(&id) {
                Some(_) => ReplyFrame {
                    op: "detached",
                    id: Some(id),
                    reference,
                    ..Default::default()
                }
                .text(),
                None => error_frame(
                    reference.as_ref(),
                    &AppError::new(
                        axum::http::StatusCode::NOT_FOUND,
                        "attachment_not_found",
                        format!("no attachment '{id}'"),
                    ),
                ),
            });
        }
        ClientFrame::Ack { token, reference } => (token, AckKind::Ack, reference),
        ClientFrame::Nak {
            token,
            delay_ms,
            reference,
        } => (
            token,
            AckKind::Nak(delay_ms.map(Duration::from_millis)),
            reference,
        ),
        ClientFrame::Term {
            token,
            reason,
            reference,
        } => (token, AckKind::Term(reason), reference),
        ClientFrame::InProgress { token, reference } => (token, AckKind::InProgress, reference),
        _ => return None,
    };
    let found = attachments.values().find_map(|a| {
        let s = &a.shared;
        parse_ack_token(&token, &s.station, &s.group).map(|seq| (s.clone(), seq))
    });
    let Some((shared, seq)) = found else {
        let e = AppError::bad_request(
            "invalid_ack_token",
            format!("'{token}' is not an ack token of an attachment of this socket"),
        );
        return Some(error_frame(reference.as_ref(), &e));
    };
    let in_progress = kind == AckKind::InProgress;
    match state
        .engine
        .ack(tenant, &shared.station, &shared.group, seq, kind)
    {
        Ok(()) => {
            if in_progress {
                shared.extended(seq);
            } else {
                shared.settled(seq);
            }
            None
        }
        Err(e) => Some(error_frame(reference.as_ref(), &e.into())),
    }
}
