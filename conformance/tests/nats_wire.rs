#![allow(clippy::unwrap_used, clippy::expect_used)]
//! NATS wire "golden" tests: raw bytes in over a real TCP socket, exact bytes out.
//!
//! No NATS client library is involved: every test writes protocol bytes with a plain
//! `TcpStream` and compares what comes back byte for byte with what nats-server 2.10
//! sends. Each test starts its own in-process broker on an ephemeral port.

mod nats_wire {
    pub mod support;

    mod auth;
    mod errors;
    mod headers;
    mod keepalive;
    mod limits;
    mod ping_pong;
    mod pub_sub;
    mod puback_routing;
}
