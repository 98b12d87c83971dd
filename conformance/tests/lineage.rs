//! Lineage over real sockets: what the engine stamps on stored messages (NATS and
//! HTTP producers), that clients cannot forge reserved headers, that core fan-out
//! is left as published, and the path and graph queries across a republish.
//!
//! Timeouts only guard against hangs; no test asserts how long anything takes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "http_api/support.rs"]
mod support;

#[path = "lineage/paths_and_graph.rs"]
mod paths_and_graph;
#[path = "lineage/stamping.rs"]
mod stamping;
