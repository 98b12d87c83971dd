//! JetStream API over real sockets with async-nats's `jetstream` module: stations
//! seen as streams, consumer groups seen as pull consumers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "jetstream/smoke.rs"]
mod smoke;
