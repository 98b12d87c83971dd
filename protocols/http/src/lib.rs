//! HTTP front-end for Junction.
//!
//! What it owns:
//! - the REST gateway under `/v1` ([`api_router`]): publish to subjects and
//!   stations (single and batch), browse stations, fetch and acknowledge through
//!   consumer groups (long poll), station and group admin, live streams (Server-Sent
//!   Events and a WebSocket), connections and server figures, `/readyz`, and its
//!   OpenAPI 3 document at `/v1/openapi.json` (see `docs/http.md`);
//! - the NATS-style monitoring endpoints (`/healthz`, `/varz`, `/connz`,
//!   [`monitor_router`]) served on the main HTTP listener and on the nats-server
//!   compatible monitoring port (`-m`);
//! - MQTT over WebSocket at `/mqtt` ([`mqtt_ws_router`]), bridged to whatever MQTT
//!   handler the process wires in;
//! - Prometheus `GET /metrics` ([`metrics_router`]) on the main HTTP listener,
//!   computed from engine snapshots at scrape time and open like `/healthz`.
//!
//! - the embedded web console ([`junction_gui`]) at `/`, with single-page-app
//!   fallback: any other `GET` path outside the API's prefixes answers the app's
//!   `index.html` (see `docs/gui.md`).
//!
//! - its own listener ([`serve`]): a connection cap, a request-head timeout and
//!   an idle timeout per socket ([`HttpLimits`]), so slow or idle clients cannot
//!   hold file descriptors that other protocols need.
//!
//! What it is not: it reads and writes the broker only through
//! [`junction_api::Engine`]; it never reaches into the engine, storage or cluster.
//! The console is static files; it reaches the broker only through this API.
//!
//! Invariants worth naming:
//! - Every error answer is `{"error":{"code","message"}}` with a stable snake_case
//!   code; internal failures are logged and answered 500 without details.
//! - A publish that a station captures is answered only once the station reports it
//!   durable, so a 201 means the same as a JetStream PubAck.
//! - An HTTP consumer group is the engine's consumer group: HTTP and NATS members of
//!   one group share its messages, acknowledgements and redeliveries.

mod api;
mod gui;
mod listener;
mod metrics;
mod monitor;
mod mqtt_ws;
mod process;
mod websocket;

pub use api::{
    ApiSettings, AppError, AuthMethods, CorsOrigins, ErrorBody, ErrorDetail, GATEWAY_CLIENT_NAME,
    Readiness, api_router,
};
pub use listener::{HttpLimits, serve};
pub use metrics::metrics_router;
pub use monitor::{MonitorSettings, monitor_router};
pub use mqtt_ws::{MqttStreamHandler, mqtt_ws_router};
