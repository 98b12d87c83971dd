//! The HTTP REST gateway over real sockets with reqwest (async-nats where a
//! scenario crosses protocols, tokio-tungstenite for the WebSocket): produce,
//! browse, fetch and ack through consumer groups, station and group admin, live
//! streams (SSE, WebSocket), errors, auth, idempotency and the OpenAPI document.
//!
//! Each module is named after the behaviour it proves. Timeouts only guard against
//! hangs; no test asserts how long anything takes (time-based behaviour is polled
//! for). Paths a real broker cannot be made to take on demand (storage failure and
//! handler panic → 500, not ready and client limit → 503) are covered by router
//! tests inside `junction-http`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "http_api/support.rs"]
mod support;

#[path = "http_api/admin_stations_groups.rs"]
mod admin_stations_groups;
#[path = "http_api/auth.rs"]
mod auth;
#[path = "http_api/compression_cors.rs"]
mod compression_cors;
#[path = "http_api/consume_long_poll.rs"]
mod consume_long_poll;
#[path = "http_api/errors.rs"]
mod errors;
#[path = "http_api/idempotency.rs"]
mod idempotency;
#[path = "http_api/key_value.rs"]
mod key_value;
#[path = "http_api/live_streams.rs"]
mod live_streams;
#[path = "http_api/metrics.rs"]
mod metrics;
#[path = "http_api/middleware.rs"]
mod middleware;
#[path = "http_api/openapi.rs"]
mod openapi;
#[path = "http_api/preconditions.rs"]
mod preconditions;
#[path = "http_api/produce_and_ack.rs"]
mod produce_and_ack;
#[path = "http_api/shared_group_with_nats.rs"]
mod shared_group_with_nats;
#[path = "http_api/ws_consumer_group.rs"]
mod ws_consumer_group;
