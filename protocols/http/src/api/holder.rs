//! In a cluster, a request about a station's data (`/v1/stations/{name}/…`: its
//! messages, groups, fetches, acks, dead letters, purges) made on a node that does
//! not hold the station is passed to the node that does, over HTTP, and its answer
//! is returned as it is. Requests about the station itself (`/v1/stations/{name}`:
//! view, update, delete) are answered here: its definition is on every node.
//!
//! The request goes out with [`FORWARDED`] set, and a request that has it is never
//! passed on again. WebSocket upgrades are not passed on: an attachment pulls
//! from the holder through the engine, over the cluster link. When the holder
//! does not answer, the client gets 503 `node_unreachable`; a publish is then
//! not acknowledged.

use super::ApiState;
use super::auth::Tenant;
use super::error::AppError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Set on a request one node passes to another.
pub const FORWARDED: &str = "junction-forwarded-by";

/// The longest a passed request may take: a fetch waits up to its `max_wait`,
/// and the gateway's own timeout answers first.
const TIMEOUT: Duration = Duration::from_secs(90);

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::HOST,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
    header::ACCEPT_ENCODING,
];

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// The station a path is about, for the paths its holder answers (a
/// key-value bucket's paths are about its station `KV_<bucket>`).
fn station_of(path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/v1/kv/") {
        let bucket = rest.split('/').next().filter(|b| !b.is_empty())?;
        return Some(format!(
            "KV_{}",
            percent_encoding::percent_decode_str(bucket).decode_utf8_lossy()
        ));
    }
    let rest = path.strip_prefix("/v1/stations/")?;
    let (station, tail) = rest.split_once('/')?;
    if station.is_empty() || tail.is_empty() {
        return None;
    }
    Some(
        percent_encoding::percent_decode_str(station)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Middleware (inside authentication): passes a request about a station's data to
/// the node that holds the station, when that is another node.
pub async fn to_holder(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(station) = station_of(request.uri().path()) else {
        return next.run(request).await;
    };
    // A node's own replica is read where it is asked.
    if request.uri().path().ends_with("/replica") {
        return next.run(request).await;
    }
    if request.headers().contains_key(FORWARDED) {
        return next.run(request).await;
    }
    let Some(tenant) = request.extensions().get::<Tenant>().map(|t| t.0.clone()) else {
        return next.run(request).await;
    };
    let Some(node) = state.engine.station_node(&tenant, &station) else {
        return next.run(request).await;
    };
    let unreachable = || {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_unreachable",
            format!("node {node}, which holds station '{station}', did not answer"),
        )
        .into_response()
    };
    let holder = state
        .engine
        .cluster()
        .and_then(|c| c.nodes.into_iter().find(|n| n.name == node));
    match holder {
        Some(h) if !h.online => {
            tracing::info!(%station, %node, "the station's node is not linked; request refused");
            unreachable()
        }
        // It serves no HTTP (the handler answers, with 421 `station_elsewhere`
        // where it needs the station), or a WebSocket (attachments pull
        // through the engine).
        Some(h) if h.http_url.is_none() || request.headers().contains_key(header::UPGRADE) => {
            next.run(request).await
        }
        Some(h) => {
            let address = h.http_url.unwrap_or_default();
            match pass(request, &address, &state).await {
                Ok(response) => response,
                Err(e) => {
                    tracing::warn!(%station, %node, error = %e, "request not passed to the station's node");
                    unreachable()
                }
            }
        }
        None => unreachable(),
    }
}

/// Sends `request` to `address` and returns its answer.
async fn pass(request: Request, address: &str, state: &ApiState) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let body = axum::body::to_bytes(body, state.settings.max_batch_bytes)
        .await
        .map_err(|e| format!("request body: {e}"))?;
    let mut out = client()
        .request(parts.method.clone(), format!("http://{address}{path}"))
        .body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(name) {
            out = out.header(name, value);
        }
    }
    let node = state.engine.cluster().map(|c| c.node).unwrap_or_default();
    out = out.header(FORWARDED, node);
    let answer = out.send().await.map_err(|e| e.to_string())?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_below_a_station_go_to_its_node() {
        assert_eq!(
            station_of("/v1/stations/orders/messages").as_deref(),
            Some("orders")
        );
        assert_eq!(
            station_of("/v1/stations/a%20b/groups/g/fetch").as_deref(),
            Some("a b")
        );
        assert_eq!(station_of("/v1/stations/orders"), None);
        assert_eq!(station_of("/v1/stations/orders/"), None);
        assert_eq!(station_of("/v1/stations"), None);
        assert_eq!(station_of("/v1/schemas/x/versions"), None);
    }
}
