//! The REST gateway: `/v1` routes for producing, consuming, acknowledging and
//! administering stations and groups, live streams (Server-Sent Events and a
//! WebSocket), `/readyz`, and the OpenAPI document.
//!
//! Every `/v1` route is registered through `utoipa-axum`, so a route cannot exist
//! without its OpenAPI operation. Handlers reach the broker only through
//! [`junction_api::Engine`].
//!
//! Layers, outermost first: request id (`x-request-id`, generated when absent),
//! tracing, request-id propagation to the response, panic → 500 JSON, JSON
//! normalisation of non-JSON error responses, CORS (allowed origins from
//! [`ApiSettings::cors_origins`]), response compression (gzip, never for SSE or
//! WebSocket), request timeout (504), body limit (413), then authentication on
//! `/v1`.

mod auth;
mod bans;
mod browse;
mod consume;
mod dead_letter;
mod error;
mod events;
mod extract;
mod gateway_client;
mod groups;
mod holder;
mod kv;
mod lineage;
mod live;
mod notifications;
mod openapi;
mod options;
mod publish;
mod routing;
mod schemas;
mod server;
mod sse;
mod stations;
mod tenants;
#[cfg(test)]
mod tests;
mod tier;
mod wire;
mod ws;
mod ws_attach;

pub use auth::AuthMethods;
pub(crate) use auth::{Authenticated, require_for_monitoring};
pub(crate) use error::route_not_found;
pub use error::{AppError, ErrorBody, ErrorDetail};
pub use gateway_client::GATEWAY_CLIENT_NAME;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use gateway_client::GatewayClients;
use junction_api::Engine;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Whether the server takes traffic; `/readyz` answers 503 while it is false.
/// Clones share the flag.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A flag that starts ready.
    pub fn ready() -> Self {
        Readiness(Arc::new(AtomicBool::new(true)))
    }

    /// Sets the flag.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// Reads the flag.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::ready()
    }
}

/// What the gateway needs to know about the broker.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest payload (and request body) accepted, the broker's `max_payload`.
    pub max_payload: usize,
    /// Largest body of a batch publish.
    pub max_batch_bytes: usize,
    /// Longest a request may take before it is answered 504 (must exceed
    /// `max_wait`).
    pub request_timeout: Duration,
    /// Longest a fetch may wait for messages (`max_wait_ms`).
    pub max_wait: Duration,
    /// The listener's address, shown as the peer of the gateway's engine client.
    pub listen: SocketAddr,
    /// Readiness, flipped by the process on shutdown.
    pub readiness: Readiness,
    /// Origins allowed by CORS; `"*"` among them allows any (the default). A
    /// reload changes them ([`CorsOrigins::set`]).
    pub cors_origins: CorsOrigins,
    /// The kinds of credentials configured, named in a 401's body (both by default).
    pub auth_methods: auth::AuthMethods,
}

impl ApiSettings {
    /// Defaults for a broker whose `max_payload` is `max_payload`: batches up to
    /// 8 × that (at least 8 MiB), fetches wait up to 30 s, requests time out after
    /// 60 s.
    pub fn new(max_payload: usize) -> Self {
        ApiSettings {
            max_payload,
            max_batch_bytes: max_payload.saturating_mul(8).max(8 << 20),
            request_timeout: Duration::from_secs(60),
            max_wait: Duration::from_secs(30),
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            readiness: Readiness::ready(),
            cors_origins: CorsOrigins::default(),
            auth_methods: auth::AuthMethods::default(),
        }
    }
}

/// The origins CORS allows, shared with the process so that a configuration
/// reload changes them for the next request.
#[derive(Debug, Clone)]
pub struct CorsOrigins(Arc<parking_lot::RwLock<Vec<String>>>);

impl Default for CorsOrigins {
    /// Any origin (`"*"`).
    fn default() -> Self {
        CorsOrigins::new(vec!["*".into()])
    }
}

impl CorsOrigins {
    /// These origins; `"*"` among them allows any.
    pub fn new(origins: Vec<String>) -> Self {
        CorsOrigins(Arc::new(parking_lot::RwLock::new(origins)))
    }

    /// Replaces the origins allowed.
    pub fn set(&self, origins: Vec<String>) {
        *self.0.write() = origins;
    }

    /// The origins allowed now.
    pub fn get(&self) -> Vec<String> {
        self.0.read().clone()
    }
}

/// CORS: answered by a permissive layer (any origin, as `"*"`), narrowed by
/// this middleware around it to the configured origins when they are not
/// `"*"`: an allowed origin is echoed, any other gets no
/// `Access-Control-Allow-Origin` (the browser then refuses the response).
async fn narrow_cors(
    axum::extract::State(origins): axum::extract::State<CorsOrigins>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let origin = req.headers().get(axum::http::header::ORIGIN).cloned();
    let mut resp = next.run(req).await;
    let allowed = origins.0.read();
    if allowed.iter().any(|o| o == "*") {
        return resp;
    }
    let headers = resp.headers_mut();
    match origin {
        Some(o) if allowed.iter().any(|a| a.as_bytes() == o.as_bytes()) => {
            headers.insert(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        }
        _ => {
            headers.remove(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN);
        }
    }
    resp
}

/// What every handler shares.
pub struct ApiState {
    engine: Arc<dyn Engine>,
    settings: ApiSettings,
    clients: GatewayClients,
    openapi: OnceLock<bytes::Bytes>,
}

const REQUEST_ID: &str = "x-request-id";

/// The `/v1` routes and their OpenAPI document, without state or layers.
fn v1_routes(state: &Arc<ApiState>) -> OpenApiRouter<Arc<ApiState>> {
    let settings = &state.settings;
    let single = OpenApiRouter::new()
        .routes(routes!(publish::publish_subject))
        .routes(routes!(publish::publish_to_station, browse::list_messages))
        .routes(routes!(browse::get_message, browse::delete_message))
        .routes(routes!(stations::create_station, stations::list_stations))
        .routes(routes!(
            stations::get_station,
            stations::update_station,
            stations::delete_station
        ))
        .routes(routes!(stations::purge_station))
        .routes(routes!(browse::replica))
        .routes(routes!(stations::step_down))
        .routes(routes!(stations::peer_remove))
        .routes(routes!(tier::list_manifests))
        .routes(routes!(tier::adopt))
        .routes(routes!(schemas::create_schema, schemas::list_schemas))
        .routes(routes!(schemas::get_schema, schemas::delete_schema))
        .routes(routes!(schemas::add_schema_version))
        .routes(routes!(schemas::rollback_schema))
        .routes(routes!(
            dead_letter::list_dead_letters,
            dead_letter::purge_dead_letters
        ))
        .routes(routes!(dead_letter::resend))
        .routes(routes!(dead_letter::resend_status))
        .routes(routes!(lineage::get_graph))
        .routes(routes!(lineage::get_lineage))
        .routes(routes!(routing::put_rule, routing::list_rules))
        .routes(routes!(routing::get_rule, routing::delete_rule))
        .routes(routes!(groups::create_group, groups::list_groups))
        .routes(routes!(groups::get_group, groups::delete_group))
        .routes(routes!(kv::list_keys))
        .routes(routes!(kv::get_key, kv::put_key, kv::delete_key))
        .routes(routes!(kv::key_history))
        .routes(routes!(consume::fetch))
        .routes(routes!(consume::ack))
        .routes(routes!(server::connections))
        .routes(routes!(server::disconnect))
        .routes(routes!(events::list_events))
        .routes(routes!(tenants::list_tenants))
        .routes(routes!(
            tenants::get_tenant,
            tenants::put_tenant,
            tenants::delete_tenant
        ))
        .routes(routes!(notifications::list_alarms))
        .routes(routes!(notifications::list_webhooks))
        .routes(routes!(
            notifications::get_webhook,
            notifications::put_webhook,
            notifications::delete_webhook
        ))
        .routes(routes!(notifications::test_webhook))
        .routes(routes!(bans::list_bans, bans::ban))
        .routes(routes!(bans::lift_ban))
        .routes(routes!(server::server))
        .routes(routes!(server::reload))
        .routes(routes!(server::cluster))
        .routes(routes!(server::remove_node))
        .routes(routes!(server::join_cluster))
        .routes(routes!(server::openapi_json))
        .routes(routes!(sse::subject_events))
        .routes(routes!(ws::websocket))
        .layer(RequestBodyLimitLayer::new(settings.max_payload))
        .layer(DefaultBodyLimit::disable());
    let batch = OpenApiRouter::new()
        .routes(routes!(publish::publish_batch))
        .layer(RequestBodyLimitLayer::new(settings.max_batch_bytes))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(single)
        .merge(batch)
        // Inside authentication: a station's data is served by its node.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            holder::to_holder,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .routes(routes!(server::readyz))
}

/// The REST gateway's routes with every layer, ready to merge with
/// [`crate::monitor_router`] on the main HTTP listener.
pub fn api_router<E: Engine>(engine: Arc<E>, settings: ApiSettings) -> Router {
    let engine: Arc<dyn Engine> = engine;
    let state = Arc::new(ApiState {
        clients: GatewayClients::new(engine.clone(), settings.listen),
        engine,
        settings,
        openapi: OnceLock::new(),
    });
    let (router, spec) = v1_routes(&state).split_for_parts();
    let document = spec.to_json().map(bytes::Bytes::from).unwrap_or_else(|e| {
        tracing::error!(error = %e, "OpenAPI document failed to encode");
        bytes::Bytes::from_static(b"{}")
    });
    let _ = state.openapi.set(document);
    let request_id = HeaderName::from_static(REQUEST_ID);
    let timeout = state.settings.request_timeout;
    let cors = CorsLayer::permissive();
    let origins = state.settings.cors_origins.clone();
    // Server-Sent Events must reach the client as they are written; a WebSocket
    // upgrade has no body to compress.
    let compress = DefaultPredicate::new()
        .and(NotForContentType::const_new("text/event-stream"))
        .and(|status: StatusCode, _: _, _: &_, _: &_| status != StatusCode::SWITCHING_PROTOCOLS);
    // Any other path: the embedded web console (its files, or its entry page for
    // the app's own routes); unknown API paths still answer the JSON 404.
    router
        .fallback(crate::gui::fallback)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                        let id = req
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        tracing::info_span!(
                            "http",
                            method = %req.method(),
                            path = %req.uri().path(),
                            request_id = %id,
                        )
                    }),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::custom(error::panic_response))
                .layer(CompressionLayer::new().gzip(true).compress_when(compress))
                .layer(axum::middleware::map_response(error::normalize))
                .layer(axum::middleware::from_fn_with_state(origins, narrow_cors))
                .layer(cors)
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    timeout,
                )),
        )
}
