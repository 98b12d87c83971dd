//! Broker-side schemas over real sockets: the registry's admin API (reqwest), and
//! validation of every publish into a station with a schema, from HTTP (422 with
//! the validation errors) and NATS (a PubAck error with err_code 19001, core
//! publishes dropped), including version pinning, rollback and restarts.
//!
//! Timeouts only guard against hangs; no test asserts how long anything takes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "http_api/support.rs"]
mod support;

#[path = "schema_enforcement/nats_publish.rs"]
mod nats_publish;
#[path = "schema_enforcement/registry_admin.rs"]
mod registry_admin;
#[path = "schema_enforcement/versions_and_rollback.rs"]
mod versions_and_rollback;
