//! The server as a whole: connected clients, server figures, readiness and the
//! OpenAPI document.

use super::ApiState;
use super::auth::Tenant;
use super::error::{AppError, ErrorBody};
use super::extract::ApiPath;
use super::wire::{millis, rfc3339};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use junction_api::{ClientId, ClientSnapshot, Protocol};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use utoipa::ToSchema;

/// One subscription of a client.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionJson {
    /// Subject filter.
    pub subject: String,
    /// Queue group, if any.
    pub queue: Option<String>,
    /// The protocol's own id for it.
    pub sid: String,
    /// Messages delivered through it.
    pub delivered: u64,
}

/// A connected client, whatever its protocol.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionJson {
    /// `nats`, `mqtt`, `http` or `websocket`.
    pub protocol: String,
    /// Process-unique client id (`cid` in `/connz`).
    pub id: u64,
    /// The tenant the client belongs to (`$G`: the default one).
    pub tenant: String,
    /// One of the broker's own clients, not a network connection: `junction-http`
    /// (publishes for HTTP requests) and `junction-mqtt` (the MQTT front-end's
    /// `$SYS` figures and wills). `/varz` and `/connz` leave these out.
    pub internal: bool,
    /// Name the client announced.
    pub name: Option<String>,
    /// Peer address.
    pub remote: String,
    /// When it connected.
    pub start: String,
    /// Last activity.
    pub last_activity: String,
    /// Authenticated user.
    pub user: Option<String>,
    /// Client library language.
    pub lang: Option<String>,
    /// Client library version.
    pub version: Option<String>,
    /// Messages published by the client.
    pub in_msgs: u64,
    /// Payload bytes published by the client.
    pub in_bytes: u64,
    /// Messages delivered to the client.
    pub out_msgs: u64,
    /// Payload bytes delivered to the client.
    pub out_bytes: u64,
    /// Bytes queued and not yet written.
    pub pending_bytes: u64,
    /// Its subscriptions.
    pub subscriptions: Vec<SubscriptionJson>,
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

impl From<ClientSnapshot> for ConnectionJson {
    fn from(c: ClientSnapshot) -> Self {
        ConnectionJson {
            protocol: protocol_name(c.protocol).to_string(),
            id: c.id.0,
            tenant: c.tenant.0.to_string(),
            internal: !c.kind.is_connection(),
            name: c.name.filter(|n| !n.is_empty()),
            remote: c.remote.to_string(),
            start: rfc3339(c.start),
            last_activity: rfc3339(UNIX_EPOCH + Duration::from_millis(c.last_activity_ms)),
            user: c.user.filter(|u| !u.is_empty()),
            lang: c.lang.filter(|l| !l.is_empty()),
            version: c.version.filter(|v| !v.is_empty()),
            in_msgs: c.in_msgs,
            in_bytes: c.in_bytes,
            out_msgs: c.out_msgs,
            out_bytes: c.out_bytes,
            pending_bytes: c.pending_bytes,
            subscriptions: c
                .subscriptions
                .into_iter()
                .map(|s| SubscriptionJson {
                    subject: s.subject,
                    queue: s.queue,
                    sid: s.sid,
                    delivered: s.delivered,
                })
                .collect(),
        }
    }
}

/// Connected clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    /// Clients by id, the broker's own ones (`"internal": true`) included. HTTP
    /// requests share one client per tenant, `junction-http`.
    pub connections: Vec<ConnectionJson>,
}

/// List connected clients of every protocol.
#[utoipa::path(
    get,
    path = "/v1/connections",
    tag = "server",
    responses((status = 200, description = "Connected clients", body = ConnectionList))
)]
pub async fn connections(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<super::auth::Authenticated>,
) -> Json<ConnectionList> {
    // The operators see every tenant's clients;
    // another tenant's users see their own.
    let every = auth.sees_every_tenant();
    let connections = state
        .engine
        .clients()
        .into_iter()
        .filter(|c| every || c.tenant == auth.0.tenant)
        .map(ConnectionJson::from)
        .collect();
    Json(ConnectionList { connections })
}

/// Disconnect a client: an operator's kick. A NATS client gets
/// `-ERR 'Kicked by operator'`, an MQTT 5 client DISCONNECT 0x98 (Administrative
/// action), an MQTT 3.1.1 client a closed socket; the connection then ends as an
/// abnormal close (an MQTT will is published). The answer comes once the close is
/// signalled, not once the socket is gone.
#[utoipa::path(
    delete,
    path = "/v1/connections/{cid}",
    tag = "server",
    params(("cid" = u64, Path, description = "Client id (`id` in `/v1/connections`, `cid` in `/connz`)")),
    responses(
        (status = 204, description = "The client is being disconnected"),
        (status = 400, description = "`bad_request`: the id is not a number", body = ErrorBody),
        (status = 403, description = "`denied`: the client is not a connection of its own (HTTP requests)", body = ErrorBody),
        (status = 404, description = "`connection_not_found`", body = ErrorBody),
    )
)]
pub async fn disconnect(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Extension(auth): Extension<super::auth::Authenticated>,
    ApiPath(cid): ApiPath<u64>,
) -> Result<StatusCode, AppError> {
    // The operators see, and may disconnect, every tenant's clients.
    let tenant = match auth.is_operator() {
        true => state
            .engine
            .clients()
            .into_iter()
            .find(|c| c.id.0 == cid)
            .map(|c| c.tenant)
            .unwrap_or(tenant),
        false => tenant,
    };
    state
        .engine
        .close_client(&tenant, ClientId(cid), "Kicked by operator")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a node from the cluster (`junction cluster peer-remove NAME`): it
/// leaves the meta group, its id is retired for good, and it no longer shows in
/// `/v1/cluster`. Works on any node; the call goes to the meta leader. Stop the
/// node's process afterwards (or before: a dead node can be removed too).
#[utoipa::path(
    delete,
    path = "/v1/cluster/nodes/{name}",
    tag = "server",
    params(("name" = String, Path, description = "Node name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`bad_request`: not in a cluster, or no such node", body = ErrorBody),
        (status = 422, description = "`invalid_config`: the last voter cannot be removed", body = ErrorBody),
        (status = 503, description = "`no_quorum`: no meta leader reachable", body = ErrorBody)
    )
)]
pub async fn remove_node(
    State(state): State<Arc<ApiState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    state.engine.remove_cluster_node(&name).await?;
    tracing::info!(node = %name, "cluster node removed over HTTP");
    Ok(StatusCode::NO_CONTENT)
}

/// What `POST /v1/cluster/join` asks for.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// Cluster addresses (`host:port`, as `--join` takes them) of nodes of the
    /// cluster to join.
    pub routes: Vec<String>,
}

/// The answer to `POST /v1/cluster/join`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JoinJson {
    /// The routes the node dials after its restart.
    pub routes: Vec<String>,
    /// The node restarts in place now (the same process), then joins.
    pub restarting: bool,
}

/// Makes this node join another cluster (`junction cluster join ROUTE…`): a node
/// that is a cluster of one with nothing defined (started with
/// `--cluster-listen` and no `--join`) forgets its own meta group, restarts in
/// place (same process, arguments and data directory) and joins the cluster at
/// `routes` as a new node, getting every definition of it.
#[utoipa::path(
    post,
    path = "/v1/cluster/join",
    tag = "server",
    request_body = JoinRequest,
    responses(
        (status = 202, description = "The node restarts and joins", body = JoinJson),
        (status = 400, description = "`bad_request`: not a cluster node, or no valid route", body = ErrorBody),
        (status = 409, description = "`cluster_state_exists`: the node has peers or definitions that joining would drop", body = ErrorBody),
    )
)]
pub async fn join_cluster(
    State(state): State<Arc<ApiState>>,
    super::extract::JsonBody(request): super::extract::JsonBody<JoinRequest>,
) -> Result<(StatusCode, Json<JoinJson>), AppError> {
    state.engine.join_cluster(request.routes.clone()).await?;
    tracing::warn!(routes = ?request.routes, "cluster join asked over HTTP: restarting to join");
    Ok((
        StatusCode::ACCEPTED,
        Json(JoinJson {
            routes: request.routes,
            restarting: true,
        }),
    ))
}

/// Server-wide figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerJson {
    /// Unique id of this server process.
    pub server_id: String,
    /// Configured server name.
    pub server_name: String,
    /// Junction version.
    pub version: String,
    /// When the server started.
    pub start: String,
    /// Milliseconds since start.
    pub uptime_ms: u64,
    /// Clients connected now (connections only: not the broker's own clients).
    pub connections: u64,
    /// `server`: the figures are the server's; `tenant`: those of the caller's
    /// tenant (a tenant's user): its clients connected now and their traffic.
    pub scope: String,
    /// Clients connected since start (the server's only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_connections: Option<u64>,
    /// Messages published into the server by clients (HTTP requests included; not
    /// the broker's own replies, acks, advisories or `$SYS` figures).
    pub in_msgs: u64,
    /// Payload bytes published into the server.
    pub in_bytes: u64,
    /// Messages delivered by the server.
    pub out_msgs: u64,
    /// Payload bytes delivered by the server.
    pub out_bytes: u64,
    /// Live subscriptions.
    pub subscriptions: u64,
    /// Clients disconnected as slow consumers since start (the server's only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_consumers: Option<u64>,
    /// Stations of the caller's tenant.
    pub stations: usize,
    /// Largest payload accepted, in bytes.
    pub max_payload: usize,
    /// Whether credentials are required.
    pub auth_required: bool,
}

/// One node of the cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterNodeJson {
    /// Node name (`-n`).
    pub name: String,
    /// Its cluster address (empty when this node runs alone).
    pub addr: String,
    /// A link to it is up (always true for the node answering).
    pub online: bool,
    /// A voter of the meta group.
    pub voter: bool,
    /// Its meta group id: given by the meta log, never reused (null until it
    /// has one).
    pub id: Option<u64>,
    /// Meta log entries it is behind the leader: known when the answering node
    /// leads the meta group (null elsewhere, and for the leader itself).
    pub lag: Option<u64>,
    /// When it was last heard from.
    pub last_seen: String,
    /// The node answering this request.
    pub this: bool,
    /// Its NATS client URLs.
    pub client_urls: Vec<String>,
    /// Its HTTP API address (`host:port`; null: none known), where requests
    /// about the stations it holds are served.
    pub http_url: Option<String>,
}

/// The cluster as the answering node sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterJson {
    /// The cluster's name; null when this node runs alone.
    pub name: Option<String>,
    /// The meta group's leader; null during an election, without a quorum, and
    /// when running alone.
    pub meta_leader: Option<String>,
    /// The answering node's role in the meta group: `leader`, `follower`,
    /// `learner`, `candidate` or `joining` (`standalone` when running alone).
    pub meta_role: String,
    /// Last meta log index applied on the answering node.
    pub meta_applied: u64,
    /// Every node known, the answering one first.
    pub nodes: Vec<ClusterNodeJson>,
    /// Messages that could not be forwarded to a peer since start.
    pub dropped_forwards: u64,
    /// Replicated stations with fewer replicas online and current than
    /// configured, by name.
    pub under_replicated: Vec<String>,
}

/// The cluster: its name and nodes, with which are linked now.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "server",
    responses((status = 200, description = "The cluster as this node sees it", body = ClusterJson))
)]
pub async fn cluster(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Json<ClusterJson> {
    let under_replicated: Vec<String> = state
        .engine
        .station_names(&tenant, None)
        .iter()
        .filter_map(|n| state.engine.station_info(&tenant, n).ok())
        .filter(super::stations::under_replicated)
        .map(|i| i.config.name)
        .collect();
    match state.engine.cluster() {
        Some(c) => Json(ClusterJson {
            name: Some(c.name),
            meta_leader: c.meta_leader,
            meta_role: c.meta_role,
            meta_applied: c.meta_applied,
            nodes: c
                .nodes
                .into_iter()
                .map(|n| ClusterNodeJson {
                    name: n.name,
                    addr: n.addr,
                    online: n.online,
                    voter: n.voter,
                    id: n.id,
                    lag: n.lag,
                    last_seen: if n.last_seen == std::time::UNIX_EPOCH {
                        String::new()
                    } else {
                        rfc3339(n.last_seen)
                    },
                    this: n.this,
                    client_urls: n.client_urls,
                    http_url: n.http_url,
                })
                .collect(),
            dropped_forwards: c.dropped_forwards,
            under_replicated,
        }),
        None => Json(ClusterJson {
            name: None,
            meta_leader: None,
            meta_role: "standalone".to_string(),
            meta_applied: 0,
            nodes: vec![ClusterNodeJson {
                name: state.engine.server_snapshot().server_name,
                addr: String::new(),
                online: true,
                voter: false,
                id: None,
                lag: None,
                last_seen: rfc3339(SystemTime::now()),
                this: true,
                client_urls: Vec::new(),
                http_url: None,
            }],
            dropped_forwards: 0,
            under_replicated: Vec::new(),
        }),
    }
}

/// Server-wide figures (a tenant's user: its tenant's).
#[utoipa::path(
    get,
    path = "/v1/server",
    tag = "server",
    responses((status = 200, description = "Server figures", body = ServerJson))
)]
pub async fn server(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Extension(auth): Extension<super::auth::Authenticated>,
) -> Json<ServerJson> {
    let s = state.engine.server_snapshot();
    let mut figures = ServerJson {
        server_id: s.server_id,
        server_name: s.server_name,
        version: s.version,
        start: rfc3339(s.start),
        uptime_ms: millis(
            SystemTime::now()
                .duration_since(s.start)
                .unwrap_or_default(),
        ),
        scope: "server".into(),
        connections: s.connections,
        total_connections: Some(s.total_connections),
        in_msgs: s.in_msgs,
        in_bytes: s.in_bytes,
        out_msgs: s.out_msgs,
        out_bytes: s.out_bytes,
        subscriptions: s.subscriptions,
        slow_consumers: Some(s.slow_consumers),
        stations: state.engine.station_names(&tenant, None).len(),
        max_payload: state.settings.max_payload,
        auth_required: state.engine.auth_required(),
    };
    // A tenant's user sees its tenant's figures: its clients connected now.
    if !auth.sees_every_tenant() {
        let clients: Vec<_> = state
            .engine
            .clients()
            .into_iter()
            .filter(|c| c.tenant == tenant)
            .collect();
        figures.scope = "tenant".into();
        figures.connections = clients.iter().filter(|c| c.kind.is_connection()).count() as u64;
        figures.total_connections = None;
        figures.slow_consumers = None;
        figures.in_msgs = clients.iter().map(|c| c.in_msgs).sum();
        figures.in_bytes = clients.iter().map(|c| c.in_bytes).sum();
        figures.out_msgs = clients.iter().map(|c| c.out_msgs).sum();
        figures.out_bytes = clients.iter().map(|c| c.out_bytes).sum();
        figures.subscriptions = clients.iter().map(|c| c.subscriptions.len() as u64).sum();
    }
    Json(figures)
}

/// What a reload changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadJson {
    /// For people: how many users were logged out, tenants added and removed.
    pub reloaded: String,
}

/// Reload the configuration (operators only), as SIGHUP does: the file is read
/// again; users, tenants, permissions, their limits and the token change at
/// once, and users removed or changed are logged out. Anything else that
/// changed refuses the whole reload (`422 invalid_config`, "config reload not
/// supported for …"), and the broker keeps the configuration it had.
#[utoipa::path(
    post,
    path = "/v1/server/reload",
    tag = "server",
    responses(
        (status = 200, description = "Reloaded", body = ReloadJson),
        (status = 400, description = "`bad_request`: the broker was not started from a configuration file", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
        (status = 422, description = "`invalid_config`: the file does not read or check, or changes what cannot change live; nothing changed", body = ErrorBody),
    )
)]
pub async fn reload(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<super::auth::Authenticated>,
) -> Result<Json<ReloadJson>, AppError> {
    auth.operators_only("configuration reloads")?;
    let reloaded = state.engine.reload_config().await?;
    Ok(Json(ReloadJson { reloaded }))
}

/// Readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyJson {
    /// `ready`.
    pub status: String,
}

/// Is the server ready for traffic? 503 once it is shutting down (`not_ready`),
/// and while storage refuses writes (`storage_unavailable`, with the reason, such
/// as "storage: no space left on device"; it lasts until a restart).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "server",
    security(()),
    responses(
        (status = 200, description = "Ready", body = ReadyJson),
        (status = 503, description = "Not ready: starting or shutting down (`not_ready`), storage failed (`storage_unavailable`), or stored writes are fenced on a nearly full disk (`storage_full`)", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<Arc<ApiState>>) -> Result<Json<ReadyJson>, AppError> {
    if !state.settings.readiness.is_ready() {
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the server is not ready (starting or shutting down)",
        ));
    }
    if let Err(reason) = state.engine.storage_health() {
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            reason,
        ));
    }
    // A nearly full disk: not ready for stored traffic (alive all the same).
    if let Some(reason) = state.engine.storage_fence() {
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_full",
            format!("stored writes fenced: {reason}"),
        ));
    }
    Ok(Json(ReadyJson {
        status: "ready".into(),
    }))
}

/// The OpenAPI 3 description of this API.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "server",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn openapi_json(State(state): State<Arc<ApiState>>) -> Response {
    let body = state.openapi.get().cloned().unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
