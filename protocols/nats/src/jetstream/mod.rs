//! JetStream on Junction's stations and consumer groups.
//!
//! - [`api_types`]: the `$JS.API` JSON wire types (requests, responses, configs, error
//!   codes), ack reply subjects and payloads, and pull status messages, as nats-server
//!   2.10 emits and accepts them. Pure data and sans-I/O parsers; no engine calls.
//! - `convert`: stream ⇄ station mapping and engine error → API error.
//! - `api`: the `$JS.API.>` service (streams, account info) and its dispatch.
//! - `consumer_api`: consumers, pull requests and `$JS.ACK` handling.
//! - `direct`: `$JS.API.DIRECT.GET` (a stored message answered as a message).
//! - `push`: push consumers (a `deliver_subject`), delivered by a task per
//!   consumer on the stream's node, with heartbeats and flow control.
//!
//! A stream **is** a station and a durable consumer **is** a consumer group: what a
//! NATS client does here is visible to every other protocol.

mod api;
pub mod api_types;
mod consumer_api;
mod convert;
mod direct;
mod push;
mod sourcing;

pub use api::start;
pub use api_types::PubAck;
pub use convert::{
    FLUSH_INTERVAL_METADATA, SCHEMA_VIOLATION_ERR_CODE, api_error, schema_violation,
};
