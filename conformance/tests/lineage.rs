//! Lineage over real sockets: stock clients get exactly the headers their producer
//! sent (lineage is kept beside the message), clients cannot forge reserved
//! headers, consumers that opt in get lineage headers, HTTP producers are named by
//! their caller, the index survives a restart, and the path and graph queries
//! follow a republish.
//!
//! Timeouts only guard against hangs; no test asserts how long anything takes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "http_api/support.rs"]
mod support;

#[path = "lineage/headers_as_published.rs"]
mod headers_as_published;
#[path = "lineage/opt_in_and_restart.rs"]
mod opt_in_and_restart;
#[path = "lineage/paths_and_graph.rs"]
mod paths_and_graph;
