//! The async-nats scenario suite: core NATS behaviour of a real Junction broker,
//! proved over real sockets with the official Rust client (and a raw TCP client
//! where the scenario needs one that misbehaves).
//!
//! Each module is named after the behaviour it proves. Timeouts only guard against
//! hangs; no test asserts how long anything takes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "nats_core/support.rs"]
mod support;

#[path = "nats_core/auth.rs"]
mod auth;
#[path = "nats_core/auto_unsubscribe.rs"]
mod auto_unsubscribe;
#[path = "nats_core/echo_off.rs"]
mod echo_off;
#[path = "nats_core/headers_round_trip.rs"]
mod headers_round_trip;
#[path = "nats_core/monitoring.rs"]
mod monitoring;
#[path = "nats_core/no_responders.rs"]
mod no_responders;
#[path = "nats_core/pubsub_wildcards.rs"]
mod pubsub_wildcards;
#[path = "nats_core/queue_groups.rs"]
mod queue_groups;
#[path = "nats_core/reconnect_after_restart.rs"]
mod reconnect_after_restart;
#[path = "nats_core/request_reply.rs"]
mod request_reply;
#[path = "nats_core/slow_consumer.rs"]
mod slow_consumer;
