//! The system log: recent events the engine recorded (clients connecting and
//! disconnecting, operator disconnects, slow consumers, schema violations, dead
//! letters), newest first (docs/http.md).

use super::ApiState;
use super::auth::Tenant;
use super::error::{AppError, ErrorBody};
use super::extract::ApiQuery;
use super::wire::rfc3339;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use junction_api::{Protocol, SystemEvent};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use utoipa::{IntoParams, ToSchema};

/// The most events one answer holds (and the most the broker keeps).
pub const MAX_EVENTS: usize = 1000;

/// How many events to return.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Most events to return: default 100, at most 1000.
    pub limit: Option<usize>,
}

/// One system event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventJson {
    /// Increasing for the life of the broker process.
    pub id: u64,
    /// When it happened (RFC 3339).
    pub time: String,
    /// `client_connected`, `client_disconnected`, `client_kicked`,
    /// `slow_consumer`, `schema_violation` or `dead_letter`.
    #[schema(example = "schema_violation")]
    pub kind: String,
    /// The protocol of the client concerned: `nats`, `mqtt`, `http`, `websocket`.
    pub protocol: Option<String>,
    /// The client concerned (`id` in `/v1/connections`).
    pub client_id: Option<u64>,
    /// That client's name (an MQTT client id).
    pub client_name: Option<String>,
    /// The station concerned.
    pub station: Option<String>,
    /// What happened, for people.
    pub message: String,
}

/// Recent events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// Newest first.
    pub events: Vec<EventJson>,
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Nats => "nats",
        Protocol::Mqtt => "mqtt",
        Protocol::Http => "http",
        Protocol::WebSocket => "websocket",
        _ => "other",
    }
}

impl From<SystemEvent> for EventJson {
    fn from(e: SystemEvent) -> Self {
        EventJson {
            id: e.id,
            time: rfc3339(UNIX_EPOCH + Duration::from_millis(e.time_ms)),
            kind: e.kind.as_str().to_string(),
            protocol: e.protocol.map(|p| protocol_name(p).to_string()),
            client_id: e.client_id.map(|c| c.0),
            client_name: e.client_name,
            station: e.station,
            message: e.message,
        }
    }
}

/// Recent system events, newest first. The broker keeps the last 1000 in memory;
/// a restart starts an empty log.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "server",
    params(EventsQuery),
    responses(
        (status = 200, description = "Recent events, newest first", body = EventList),
        (status = 400, description = "`invalid_query`: limit is not a number, or 0", body = ErrorBody),
    )
)]
pub async fn list_events(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<EventList>, AppError> {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit must be at least 1",
        ));
    }
    let events = state
        .engine
        .events(&tenant, limit.min(MAX_EVENTS))
        .into_iter()
        .map(EventJson::from)
        .collect();
    Ok(Json(EventList { events }))
}
