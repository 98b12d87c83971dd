//! The hostile battery, HTTP and WebSocket part: what an attacker or a careless
//! client sends, and the exact answer the broker must give (status code, JSON
//! error body, WebSocket close code), over real sockets: raw TCP for what no
//! well-behaved client would send, reqwest, tokio-tungstenite, async-nats and
//! rumqttc for the clients that must keep working meanwhile.
//!
//! One module per behaviour class. Timeouts only guard against hangs; nothing
//! asserts how long anything takes (timeouts are configured short and their
//! effect is counted, not timed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "http_api/support.rs"]
mod support;

#[path = "hostile_http/raw.rs"]
mod raw;

#[path = "hostile_http/connection_cap.rs"]
mod connection_cap;
#[path = "hostile_http/idle_sockets.rs"]
mod idle_sockets;
#[path = "hostile_http/listener_shares.rs"]
mod listener_shares;
#[path = "hostile_http/malformed_json.rs"]
mod malformed_json;
#[path = "hostile_http/monitoring_auth.rs"]
mod monitoring_auth;
#[path = "hostile_http/oversized_bodies.rs"]
mod oversized_bodies;
#[path = "hostile_http/slow_headers.rs"]
mod slow_headers;
#[path = "hostile_http/websocket_protocol_errors.rs"]
mod websocket_protocol_errors;
#[path = "hostile_http/websocket_version.rs"]
mod websocket_version;
