//! Lineage queries: the path of a message (or a whole trace) across stations and
//! groups, and the station-level graph of producers, stations and groups.

use super::ApiState;
use super::auth::Tenant;
use super::error::{AppError, ErrorBody};
use super::extract::ApiPath;
use super::wire::rfc3339;
use axum::extract::State;
use axum::{Extension, Json};
use junction_api::{EngineError, LineageMessage, LineageNodeKind};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// A group's delivery of a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryHop {
    /// The consumer group.
    pub group: String,
    /// When (RFC 3339).
    pub time: String,
    /// Which delivery of that group it was (1 = first).
    pub delivery_count: u32,
}

/// One message of a trace.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineageMessageJson {
    /// `Junction-Msg-Id`.
    pub msg_id: String,
    /// The producer's protocol: `nats`, `mqtt`, `http`, `websocket`.
    pub protocol: String,
    /// The producer's connection id.
    pub conn_id: u64,
    /// The producer's client name, if it gave one (for HTTP, the caller's
    /// `User-Agent`).
    pub client: Option<String>,
    /// The producer's address (for HTTP, the caller's).
    pub remote: Option<String>,
    /// The user the producer authenticated as, if any.
    pub user: Option<String>,
    /// The subject it was published on.
    pub subject: String,
    /// When the broker received it (RFC 3339).
    pub received: String,
    /// The station that stored it.
    pub station: Option<String>,
    /// Its sequence there.
    pub seq: Option<u64>,
    /// Deliveries to consumer groups, in order.
    pub deliveries: Vec<DeliveryHop>,
}

impl From<&LineageMessage> for LineageMessageJson {
    fn from(m: &LineageMessage) -> Self {
        LineageMessageJson {
            msg_id: m.msg_id.clone(),
            protocol: m.protocol.clone(),
            conn_id: m.conn_id,
            client: m.client.clone(),
            remote: m.remote.clone(),
            user: m.user.clone(),
            subject: m.subject.clone(),
            received: rfc3339(m.received),
            station: m.station.clone(),
            seq: m.seq,
            deliveries: m
                .deliveries
                .iter()
                .map(|d| DeliveryHop {
                    group: d.group.clone(),
                    time: rfc3339(d.time),
                    delivery_count: d.delivery_count,
                })
                .collect(),
        }
    }
}

/// The path of a trace: producer → station → group → republish → station …
#[derive(Debug, Serialize, ToSchema)]
pub struct LineageJson {
    /// The W3C trace id shared by every hop.
    pub trace_id: String,
    /// Every message of the trace, in the order the broker received them.
    pub messages: Vec<LineageMessageJson>,
}

/// A node of the graph.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeJson {
    /// `producer:<protocol>:<client name or anonymous>`, `station:<name>`,
    /// `group:<station>/<group>`.
    pub id: String,
    /// `producer`, `station` or `group`.
    pub kind: String,
    /// For display.
    pub name: String,
}

/// An edge of the graph.
#[derive(Debug, Serialize, ToSchema)]
pub struct EdgeJson {
    /// Source node id.
    pub from: String,
    /// Target node id.
    pub to: String,
    /// Messages since the broker started.
    pub messages: u64,
    /// Messages per second, averaged over the last minute.
    pub rate: f64,
}

/// The station-level graph.
#[derive(Debug, Serialize, ToSchema)]
pub struct GraphJson {
    /// Producers, stations and groups.
    pub nodes: Vec<NodeJson>,
    /// Producer → station (stored) and station → group (delivered).
    pub edges: Vec<EdgeJson>,
}

/// The path of a message.
///
/// `id` is a message's `Junction-Msg-Id` or a W3C trace id (the middle part of a
/// `traceparent`). The answer holds every message of that trace the broker still
/// remembers: messages republished with the same `traceparent` are hops of one
/// path.
#[utoipa::path(
    get,
    path = "/v1/lineage/{id}",
    tag = "lineage",
    params(("id" = String, Path, description = "A Junction-Msg-Id or a trace id")),
    responses(
        (status = 200, description = "The path", body = LineageJson),
        (status = 404, description = "`lineage_not_found`: unknown, or forgotten", body = ErrorBody),
    )
)]
pub async fn get_lineage(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<LineageJson>, AppError> {
    let trace = state.engine.lineage(&tenant, &id).map_err(|e| match e {
        EngineError::MessageNotFound => AppError::new(
            axum::http::StatusCode::NOT_FOUND,
            "lineage_not_found",
            format!("no message or trace '{id}' is known (the broker remembers the last 100000 messages)"),
        ),
        other => other.into(),
    })?;
    Ok(Json(LineageJson {
        trace_id: trace.trace_id,
        messages: trace
            .messages
            .iter()
            .map(LineageMessageJson::from)
            .collect(),
    }))
}

/// The lineage graph.
///
/// Producers (by protocol and client name), stations and consumer groups, with the
/// messages that went along each edge and their rate over the last minute.
#[utoipa::path(
    get,
    path = "/v1/lineage/graph",
    tag = "lineage",
    responses((status = 200, description = "The graph", body = GraphJson))
)]
pub async fn get_graph(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Json<GraphJson> {
    let g = state.engine.lineage_graph(&tenant);
    Json(GraphJson {
        nodes: g
            .nodes
            .into_iter()
            .map(|(id, kind, name)| NodeJson {
                id,
                kind: match kind {
                    LineageNodeKind::Producer => "producer",
                    LineageNodeKind::Station => "station",
                    LineageNodeKind::Group => "group",
                }
                .into(),
                name,
            })
            .collect(),
        edges: g
            .edges
            .into_iter()
            .map(|e| EdgeJson {
                from: e.from,
                to: e.to,
                messages: e.messages,
                rate: e.rate,
            })
            .collect(),
    })
}
