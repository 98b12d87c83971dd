//! Dead-letter stations over real sockets: messages a group gave up on (max
//! deliveries, terminated over NATS and HTTP) and schema rejections land in
//! `$dls_<station>` as copies with `Junction-Dls-*` headers; nats-server-shaped
//! advisories are published; the DLS is browsed, consumed with JetStream, purged,
//! and re-sent (to the failing group or into the station) by a background task.
//!
//! Timeouts only guard against hangs; no test asserts how long anything takes
//! (time-based behaviour is polled for).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "http_api/support.rs"]
mod support;

#[path = "dead_letter/captures.rs"]
mod captures;
#[path = "dead_letter/lifecycle.rs"]
mod lifecycle;
#[path = "dead_letter/resend.rs"]
mod resend;
