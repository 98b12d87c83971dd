//! Idle sockets: a kept-alive connection that sends no new request within
//! `[http] idle_timeout` is closed (end of stream, no stray answer); a request in
//! flight (a long poll) is never cut by the header or idle timeouts.

use crate::raw::{connect, parse};
use crate::support::{Api, within};
use junction_conformance::broker_with;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_kept_alive_socket_is_closed() {
    let b = broker_with(|c| {
        c.http.header_timeout = Duration::from_secs(1);
        c.http.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut s = connect(b.running.http_addr().unwrap()).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // One whole answer, then the connection stays open (keep-alive) until idle.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let answer = loop {
        let n = within("the answer", s.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed before answering: {got:?}");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let answer = parse(&got);
            let length: usize = answer.header("content-length").unwrap().parse().unwrap();
            if got.len() >= end + 4 + length {
                assert_eq!(got.len(), end + 4 + length, "bytes beyond the answer");
                break answer;
            }
        }
    };
    assert_eq!(answer.status, 200);
    assert_ne!(answer.header("connection"), Some("close"));
    let n = within("the idle socket to close", s.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "idle close sent bytes: {:?}", &buf[..n]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_outlives_the_timeouts() {
    let b = broker_with(|c| {
        c.http.header_timeout = Duration::from_secs(1);
        c.http.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let api = Api::new(&b);
    api.station("LONG", &["long.>"]).await;
    api.group("LONG", "g", json!({})).await;
    // Waits three times the timeouts for a message that never comes: the answer
    // is the empty batch, not a cut connection.
    let messages = api.fetch("LONG", "g", 1, 3000).await;
    assert!(messages.is_empty(), "{messages:?}");
}
