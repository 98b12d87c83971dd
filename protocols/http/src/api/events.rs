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
use junction_api::{EventFilter, Protocol, Severity, SystemEvent};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use utoipa::{IntoParams, ToSchema};

/// The most events one answer holds.
pub const MAX_EVENTS: usize = 1000;

/// Which events to return.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Most events to return: default 100, at most 1000.
    pub limit: Option<usize>,
    /// Only events with an id below this one (to page back: the last id of the
    /// previous answer).
    pub before: Option<u64>,
    /// Only these kinds, comma-separated (an alarm's name matches its alarm
    /// events too).
    pub kind: Option<String>,
    /// Only at least this severe: `info`, `warning`, `error`, `critical`.
    pub severity: Option<String>,
    /// Only about this station.
    pub station: Option<String>,
    /// Only about this client (its id or its name).
    pub client: Option<String>,
}

/// One system event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventJson {
    /// Its sequence in the tenant's `$sys_events` station on this node.
    pub id: u64,
    /// When it happened (RFC 3339).
    pub time: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// What happened (docs/operations.md lists every kind).
    #[schema(example = "schema_violation")]
    pub kind: String,
    /// `info`, `warning`, `error` or `critical`.
    #[schema(example = "warning")]
    pub severity: String,
    /// The client concerned: `{id, name, protocol}`.
    #[schema(value_type = Object)]
    pub client: serde_json::Value,
    /// The subject concerned (a refused publish's).
    pub subject: Option<String>,
    /// Figures for machines (a coalesced count, an alarm's figures).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// A threshold event's alarm: `{name, active}`.
    #[schema(value_type = Object)]
    pub alarm: serde_json::Value,
    /// The node that recorded it.
    pub node: String,
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
        let json = e.to_json();
        EventJson {
            id: e.id,
            time: rfc3339(UNIX_EPOCH + Duration::from_millis(e.time_ms)),
            tenant: e.tenant,
            kind: e.kind.as_str().to_string(),
            severity: e.severity.as_str().to_string(),
            client: json["client"].clone(),
            subject: e.subject,
            details: e.details,
            alarm: json["alarm"].clone(),
            node: e.node,
            protocol: e.protocol.map(|p| protocol_name(p).to_string()),
            client_id: e.client_id.map(|c| c.0),
            client_name: e.client_name,
            station: e.station,
            message: e.message,
        }
    }
}

/// System events, newest first, from the tenant's `$sys_events` station on this
/// node (about 100,000 events or 7 days are kept, across restarts).
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "server",
    params(EventsQuery),
    responses(
        (status = 200, description = "Recent events, newest first", body = EventList),
        (status = 400, description = "`invalid_query`: limit is not a number, or 0; an unknown kind or severity", body = ErrorBody),
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
    let bad = |what: String| AppError::new(StatusCode::BAD_REQUEST, "invalid_query", what);
    let kinds: Vec<String> = query
        .kind
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    let min_severity = match query.severity.as_deref() {
        None | Some("") => None,
        Some(s) => Some(Severity::parse(s).ok_or_else(|| {
            bad(format!(
                "unknown severity '{s}': use info, warning, error or critical"
            ))
        })?),
    };
    let filter = EventFilter {
        limit: limit.min(MAX_EVENTS),
        before: query.before,
        kinds,
        min_severity,
        station: query.station.filter(|s| !s.is_empty()),
        client: query.client.filter(|s| !s.is_empty()),
    };
    let events = state
        .engine
        .events(&tenant, &filter)
        .into_iter()
        .map(EventJson::from)
        .collect();
    Ok(Json(EventList { events }))
}
