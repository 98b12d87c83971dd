//! NATS-style monitoring: `/healthz`, `/varz` and `/connz`, with nats-server's JSON
//! field names so existing dashboards and scripts can read them.
//!
//! `/varz` and `/connz` name clients, their addresses and subscriptions: with
//! [`MonitorSettings::require_credentials`] they take the API's credentials
//! (Bearer or Basic) when the broker has any. `/healthz` stays open for probes.

use crate::process;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use junction_api::{ClientSnapshot, Engine, Protocol};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Static facts about the server that `/varz` reports.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// NATS listen host.
    pub host: String,
    /// NATS listen port.
    pub port: u16,
    /// Monitoring host.
    pub http_host: String,
    /// Monitoring port.
    pub http_port: u16,
    /// Advertised nats-server compatible version.
    pub version: String,
    /// Credentials are required.
    pub auth_required: bool,
    /// Most connections.
    pub max_connections: usize,
    /// Server ping interval.
    pub ping_interval: Duration,
    /// Unanswered pings before a connection is stale.
    pub ping_max: u32,
    /// Time allowed for CONNECT when auth is on.
    pub auth_timeout: Duration,
    /// Longest control line.
    pub max_control_line: usize,
    /// Largest payload.
    pub max_payload: usize,
    /// Bytes queued per client before it is a slow consumer.
    pub max_pending: usize,
    /// Socket write deadline.
    pub write_deadline: Duration,
    /// `/varz` and `/connz` require the API's credentials (when the broker has any).
    pub require_credentials: bool,
}

struct MonitorState<E> {
    engine: Arc<E>,
    settings: MonitorSettings,
}

/// The monitoring routes, ready to merge into a router or serve alone.
pub fn monitor_router<E: Engine>(engine: Arc<E>, settings: MonitorSettings) -> Router {
    let required = settings.require_credentials;
    let state = Arc::new(MonitorState {
        engine: engine.clone(),
        settings,
    });
    let guarded = Router::new()
        .route("/varz", get(varz::<E>))
        .route("/connz", get(connz::<E>))
        .with_state(state.clone());
    behind_credentials(guarded, engine, required).merge(
        Router::new()
            .route("/healthz", get(healthz::<E>))
            .with_state(state),
    )
}

/// Puts `router`'s routes behind the API's credentials when `required` (and the
/// broker has credentials): 401 with `WWW-Authenticate` without them.
pub(crate) fn behind_credentials<E: Engine>(
    router: Router,
    engine: Arc<E>,
    required: bool,
) -> Router {
    if !required {
        return router;
    }
    let engine: Arc<dyn Engine> = engine;
    router.route_layer(axum::middleware::from_fn_with_state(
        engine,
        crate::api::require_for_monitoring,
    ))
}

fn pretty(value: &impl Serialize) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "monitoring response failed to encode");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `/healthz`'s query, as nats-server's.
#[derive(Debug, Default, serde::Deserialize)]
struct HealthQuery {
    /// Only the server, not its storage (JetStream).
    #[serde(rename = "js-server-only", default)]
    js_server_only: Option<String>,
    /// Accepted: JetStream (stations) is always on here.
    #[serde(rename = "js-enabled-only", default)]
    _js_enabled_only: Option<String>,
}

/// nats-server's `/healthz`: `{"status":"ok"}`, or 503 with
/// `{"status":"unavailable","error":…}` when storage has failed (nats-server does
/// the same when JetStream cannot write). A failed store only recovers by
/// restarting, which is what an orchestrator's liveness probe does on a 503.
/// `?js-server-only=true` asks about the server alone (200 while it runs);
/// `?js-enabled-only=true` is accepted (stations are always on).
async fn healthz<E: Engine>(
    State(state): State<Arc<MonitorState<E>>>,
    query: Result<Query<HealthQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let server_only = query
        .ok()
        .and_then(|Query(q)| q.js_server_only)
        .is_some_and(|v| !matches!(v.as_str(), "false" | "0" | "f" | "F" | "FALSE"));
    let storage = if server_only {
        Ok(())
    } else {
        state.engine.storage_health()
    };
    let (status, body) = match storage {
        Ok(()) => (StatusCode::OK, json!({"status": "ok"})),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "error": reason}),
        ),
    };
    (
        status,
        [(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        )],
        Json(body),
    )
        .into_response()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// nats-server's uptime format: `1y2d3h4m5s`, leading zero units dropped.
fn uptime(d: Duration) -> String {
    let mut s = d.as_secs();
    let years = s / (365 * 86400);
    s %= 365 * 86400;
    let days = s / 86400;
    s %= 86400;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if years > 0 {
        format!("{years}y{days}d{h}h{m}m{sec}s")
    } else if days > 0 {
        format!("{days}d{h}h{m}m{sec}s")
    } else if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

#[derive(Serialize)]
struct Varz {
    server_id: String,
    server_name: String,
    version: String,
    junction_version: String,
    proto: u8,
    go: &'static str,
    host: String,
    port: u16,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    auth_required: bool,
    max_connections: usize,
    ping_interval: u128,
    ping_max: u32,
    http_host: String,
    http_port: u16,
    auth_timeout: f64,
    max_control_line: usize,
    max_payload: usize,
    max_pending: usize,
    write_deadline: u128,
    start: String,
    now: String,
    uptime: String,
    mem: u64,
    cores: usize,
    cpu: f64,
    connections: u64,
    total_connections: u64,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    slow_consumers: u64,
    subscriptions: u64,
    /// nats-server's cluster block: empty when running alone.
    cluster: serde_json::Value,
}

async fn varz<E: Engine>(State(state): State<Arc<MonitorState<E>>>) -> Response {
    let snap = state.engine.server_snapshot();
    let s = &state.settings;
    let now = SystemTime::now();
    let up = now.duration_since(snap.start).unwrap_or_default();
    let cpu = if up.as_secs_f64() > 0.0 {
        (process::cpu_seconds() / up.as_secs_f64() * 1000.0).round() / 10.0
    } else {
        0.0
    };
    pretty(&Varz {
        server_id: snap.server_id,
        server_name: snap.server_name,
        version: s.version.clone(),
        junction_version: snap.version,
        proto: 1,
        go: "junction",
        host: s.host.clone(),
        port: s.port,
        auth_required: s.auth_required,
        max_connections: s.max_connections,
        ping_interval: s.ping_interval.as_nanos(),
        ping_max: s.ping_max,
        http_host: s.http_host.clone(),
        http_port: s.http_port,
        auth_timeout: s.auth_timeout.as_secs_f64(),
        max_control_line: s.max_control_line,
        max_payload: s.max_payload,
        max_pending: s.max_pending,
        write_deadline: s.write_deadline.as_nanos(),
        start: rfc3339(snap.start),
        now: rfc3339(now),
        uptime: uptime(up),
        mem: process::rss_bytes(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        connections: snap.connections,
        total_connections: snap.total_connections,
        in_msgs: snap.in_msgs,
        out_msgs: snap.out_msgs,
        in_bytes: snap.in_bytes,
        out_bytes: snap.out_bytes,
        slow_consumers: snap.slow_consumers,
        subscriptions: snap.subscriptions,
        cluster: match state.engine.cluster() {
            None => serde_json::json!({}),
            Some(c) => {
                let me = c.nodes.iter().find(|n| n.this);
                let (addr, port) = me
                    .and_then(|n| n.addr.rsplit_once(':'))
                    .map_or((String::new(), 0u16), |(h, p)| {
                        (h.to_string(), p.parse().unwrap_or(0))
                    });
                let urls: Vec<&str> = c
                    .nodes
                    .iter()
                    .filter(|n| !n.this)
                    .map(|n| n.addr.as_str())
                    .collect();
                serde_json::json!({
                    "name": c.name,
                    "addr": addr,
                    "cluster_port": port,
                    "urls": urls,
                })
            }
        },
    })
}

#[derive(Deserialize, Default)]
struct ConnzQuery {
    sort: Option<String>,
    subs: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
    cid: Option<u64>,
}

#[derive(Serialize)]
struct Connz {
    server_id: String,
    now: String,
    num_connections: usize,
    total: usize,
    offset: usize,
    limit: usize,
    connections: Vec<ConnInfo>,
}

#[derive(Serialize)]
struct ConnInfo {
    cid: u64,
    kind: &'static str,
    #[serde(rename = "type")]
    kind_type: &'static str,
    ip: String,
    port: u16,
    start: String,
    last_activity: String,
    uptime: String,
    idle: String,
    pending_bytes: u64,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lang: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriptions_list: Option<Vec<String>>,
}

fn protocol_type(p: Protocol) -> &'static str {
    match p {
        Protocol::Nats => "nats",
        Protocol::Mqtt => "mqtt",
        Protocol::Http => "http",
        Protocol::WebSocket => "websocket",
        _ => "other",
    }
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_string()).into_response()
}

async fn connz<E: Engine>(
    State(state): State<Arc<MonitorState<E>>>,
    auth: Option<axum::Extension<crate::api::Authenticated>>,
    query: Result<Query<ConnzQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad_request(&e.body_text()),
    };
    let with_subs = match q.subs.as_deref() {
        None | Some("0" | "false" | "f" | "F" | "FALSE" | "False") => false,
        Some("1" | "true" | "t" | "T" | "TRUE" | "True" | "detail") => true,
        Some(other) => {
            return bad_request(&format!("Error decoding boolean for 'subs': {other}"));
        }
    };
    // Connections only, as nats-server leaves out its internal clients: not the
    // HTTP gateway's or the MQTT front-end's own clients (`/v1/connections` lists them).
    let mut clients: Vec<ClientSnapshot> = state.engine.clients();
    clients.retain(|c| c.kind.is_connection());
    // A tenant's user sees its tenant's connections; the operators see all.
    if let Some(axum::Extension(auth)) = &auth
        && !auth.sees_every_tenant()
    {
        clients.retain(|c| c.tenant == auth.0.tenant);
    }
    if let Some(cid) = q.cid {
        clients.retain(|c| c.id.0 == cid);
    }
    match q.sort.as_deref().unwrap_or("cid") {
        "cid" => clients.sort_by_key(|c| c.id),
        "start" => clients.sort_by_key(|c| c.start),
        "subs" => clients.sort_by_key(|c| std::cmp::Reverse(c.subscriptions.len())),
        "pending" => clients.sort_by_key(|c| std::cmp::Reverse(c.pending_bytes)),
        "msgs_to" => clients.sort_by_key(|c| std::cmp::Reverse(c.out_msgs)),
        "msgs_from" => clients.sort_by_key(|c| std::cmp::Reverse(c.in_msgs)),
        "bytes_to" => clients.sort_by_key(|c| std::cmp::Reverse(c.out_bytes)),
        "bytes_from" => clients.sort_by_key(|c| std::cmp::Reverse(c.in_bytes)),
        "last" => clients.sort_by_key(|c| std::cmp::Reverse(c.last_activity_ms)),
        "idle" => clients.sort_by_key(|c| c.last_activity_ms),
        "uptime" => clients.sort_by_key(|c| c.start),
        other => return bad_request(&format!("Invalid sorting option: {other}")),
    }
    let total = clients.len();
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(1024);
    let now = SystemTime::now();
    let connections: Vec<ConnInfo> = clients
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|c| {
            let last = SystemTime::UNIX_EPOCH + Duration::from_millis(c.last_activity_ms);
            let subs = c.subscriptions.len();
            ConnInfo {
                cid: c.id.0,
                kind: "Client",
                kind_type: protocol_type(c.protocol),
                ip: c.remote.ip().to_string(),
                port: c.remote.port(),
                start: rfc3339(c.start),
                last_activity: rfc3339(last),
                uptime: uptime(now.duration_since(c.start).unwrap_or_default()),
                idle: uptime(now.duration_since(last).unwrap_or_default()),
                pending_bytes: c.pending_bytes,
                in_msgs: c.in_msgs,
                out_msgs: c.out_msgs,
                in_bytes: c.in_bytes,
                out_bytes: c.out_bytes,
                subscriptions: subs,
                name: c.name.filter(|n| !n.is_empty()),
                lang: c.lang.filter(|n| !n.is_empty()),
                version: c.version.filter(|n| !n.is_empty()),
                subscriptions_list: (with_subs && subs > 0)
                    .then(|| c.subscriptions.into_iter().map(|s| s.subject).collect()),
            }
        })
        .collect();
    pretty(&Connz {
        server_id: state.engine.server_snapshot().server_id,
        now: rfc3339(now),
        num_connections: connections.len(),
        total,
        offset,
        limit,
        connections,
    })
}

#[cfg(test)]
mod tests {
    use super::uptime;
    use std::time::Duration;

    #[test]
    fn uptime_drops_leading_zero_units() {
        assert_eq!(uptime(Duration::from_secs(45)), "45s");
        assert_eq!(uptime(Duration::from_secs(187)), "3m7s");
        assert_eq!(uptime(Duration::from_secs(3605)), "1h0m5s");
        assert_eq!(
            uptime(Duration::from_secs(2 * 86400 + 3 * 3600 + 4 * 60 + 5)),
            "2d3h4m5s"
        );
    }
}
