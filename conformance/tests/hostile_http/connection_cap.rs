//! The HTTP connection cap (`limits.max_http_connections`): it counts sockets, not
//! requests, so half-open sockets and WebSockets hold their slot; one socket more
//! is answered `503 {"error":{"code":"max_connections"}}` with `Retry-After: 1`
//! and closed, and once a slot frees requests are served again.

use crate::raw::{connect, exchange};
use crate::support::{Api, poll_until, within};
use junction_conformance::broker_with;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread")]
async fn one_socket_beyond_the_cap_gets_503() {
    let b = broker_with(|c| {
        c.limits.max_http_connections = 4;
        // Long enough that the held sockets keep their slots through the test.
        c.http.header_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = b.running.http_addr().unwrap();
    let ws_url = format!("ws://{addr}/v1/ws");

    // Two half-open sockets and two WebSockets take the four slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(addr).await;
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    let (mut ws1, _) = within("WebSocket 1", tokio_tungstenite::connect_async(&ws_url))
        .await
        .unwrap();
    let (ws2, _) = within("WebSocket 2", tokio_tungstenite::connect_async(&ws_url))
        .await
        .unwrap();

    // A fifth socket: raw, then with reqwest.
    let answer = exchange(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    answer.expect_error(503, "max_connections");
    assert_eq!(answer.header("retry-after"), Some("1"), "{answer:?}");
    let api = Api::new(&b);
    api.get("/healthz")
        .await
        .expect_error(503, "max_connections");

    // A WebSocket closes: its slot is free again.
    ws1.close(None).await.unwrap();
    poll_until(
        "GET /healthz answers 200 once a WebSocket closed",
        || async { api.get("/healthz").await.status.as_u16() == 200 },
    )
    .await;
    drop((ws2, held));
}
