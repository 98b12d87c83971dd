//! Content-based routing rules over real sockets: predicates on headers, JSON
//! payload fields and subject tokens; actions route (also store in stations), drop
//! and re-subject; the admin API and persistence.
//!
//! Timeouts only guard against hangs; no test asserts how long anything takes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "http_api/support.rs"]
mod support;

#[path = "routing/actions.rs"]
mod actions;
#[path = "routing/admin.rs"]
mod admin;
