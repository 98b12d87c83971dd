//! The NATS part of the hostile battery (issue 12): what an attacker or a careless
//! client sends over NATS core and the JetStream API, and the exact answer it must
//! get. Each module is one class of input; every test also checks that nothing
//! was lost or changed behind the answer (a bystander still served, internal state
//! intact).
//!
//! Raw bytes where a well-behaved client cannot send the input, async-nats
//! otherwise. Timeouts only guard against hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "jetstream/support.rs"]
mod js;
#[path = "nats_wire/support.rs"]
mod wire;

#[path = "hostile_nats/connect.rs"]
mod connect;
#[path = "hostile_nats/internal_state.rs"]
mod internal_state;
#[path = "hostile_nats/limits_and_names.rs"]
mod limits_and_names;
#[path = "hostile_nats/routing_rules.rs"]
mod routing_rules;
#[path = "hostile_nats/subjects.rs"]
mod subjects;
