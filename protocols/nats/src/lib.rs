//! NATS front-end for Junction: wire codec, session state machine and server.
//!
//! Layout, after the EMQX gateway shape:
//! - [`frame`] and [`encode`]: the wire format, sans-I/O (pure functions over bytes;
//!   fuzzed by `fuzz/`);
//! - [`codec`]: the `tokio-util` decoder around [`frame::parse`];
//! - [`channel`]: the session state machine (operations in, replies and engine calls
//!   out, no I/O);
//! - [`outbound`]: the bounded per-connection send queue and slow-consumer policy;
//! - `connection`: the async driver (read task and write task);
//! - [`server`]: the accept loop and graceful shutdown.
//!
//! What it is not: it has no storage or routing of its own. Everything goes through
//! [`junction_api::Engine`]. Behaviour follows nats-server 2.10 (`server/parser.go`,
//! `server/client.go`), including its exact `-ERR` texts and where it closes.

pub mod channel;
pub mod codec;
mod connection;
pub mod encode;
pub mod frame;
pub mod info;
pub mod jetstream;
pub mod outbound;
pub mod server;

pub use server::{NatsOptions, serve};
