//! `GET /v1/subjects/{filter}/events`: live messages on a subject filter as
//! Server-Sent Events. Nothing is stored or acknowledged; this is the core
//! publish/subscribe view, like a NATS subscription.

use super::ApiState;
use super::auth::Tenant;
use super::error::{AppError, ErrorBody, ErrorDetail};
use super::extract::{ApiPath, ApiQuery};
use super::live::{ChannelSubscriber, LiveClient, LiveMessageJson, OUTBOUND_QUEUE, Outbound};
use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use junction_api::{Protocol, QueueGroup, SubjectFilter};
use serde::Deserialize;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use utoipa::IntoParams;

/// Options of an event stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Join this queue group: each message goes to one member of the group.
    pub queue: Option<String>,
}

/// One stream's state, owned by the response body.
struct EventStream {
    live: LiveClient,
    rx: mpsc::Receiver<Outbound>,
    slow: Arc<AtomicBool>,
}

fn message_event(item: Outbound) -> Event {
    match item {
        Outbound::Delivery { message, .. } => {
            let json = LiveMessageJson::new(None, &message);
            Event::default()
                .event("message")
                .json_data(&json)
                .unwrap_or_else(|_| Event::default().event("message").data("{}"))
        }
        Outbound::Text(text) => Event::default().event("message").data(text),
    }
}

fn slow_event() -> Event {
    let detail = ErrorDetail {
        code: "slow_consumer".into(),
        message: "the client did not keep up; the stream is closed".into(),
        errors: Vec::new(),
    };
    Event::default()
        .event("error")
        .json_data(ErrorBody { error: detail })
        .unwrap_or_else(|_| Event::default().event("error").data("slow_consumer"))
}

fn events(stream: EventStream) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(stream, |mut s| async move {
        match s.rx.recv().await {
            Some(item) => Some((Ok(message_event(item)), s)),
            None if s.slow.swap(false, Ordering::Relaxed) => {
                s.live.slow_consumer();
                Some((Ok(slow_event()), s))
            }
            None => None,
        }
    })
}

/// Stream live messages on a subject filter (Server-Sent Events).
///
/// Each message is an event named `message` whose data is a JSON object with
/// `subject`, `reply` (if any), `headers` and `payload` or `payload_base64`. A client
/// that falls too far behind gets an `error` event (`slow_consumer`) and the stream
/// ends. Comments are sent every 15 s to keep the connection open.
#[utoipa::path(
    get,
    path = "/v1/subjects/{filter}/events",
    tag = "consume",
    params(
        ("filter" = String, Path, description = "A subject filter; `*` and `>` allowed, e.g. `orders.>`"),
        EventsQuery,
    ),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream"),
        (status = 400, description = "Invalid filter or queue name", body = ErrorBody),
        (status = 503, description = "The broker is at its connection limit", body = ErrorBody),
    )
)]
pub async fn subject_events(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Extension(auth): Extension<super::auth::Authenticated>,
    ApiPath(filter): ApiPath<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    remote: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    auth.may_subscribe(&filter, query.queue.as_deref())?;
    let filter = SubjectFilter::new(filter)
        .map_err(|e| AppError::bad_request("invalid_subject", format!("filter: {e}")))?;
    let queue = query
        .queue
        .map(QueueGroup::new)
        .transpose()
        .map_err(|e| AppError::bad_request("invalid_subject", format!("queue: {e}")))?;
    let live = LiveClient::connect(&state, &tenant, Protocol::Http, remote, "sse")?;
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let slow = Arc::new(AtomicBool::new(false));
    let subscriber = ChannelSubscriber::new(
        Arc::from(filter.to_str_lossy().as_ref()),
        tx,
        slow.clone(),
        live.client.clone(),
    );
    state
        .engine
        .subscribe(&live.client, filter, queue, Arc::new(subscriber))?;
    Ok(Sse::new(events(EventStream { live, rx, slow }))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
