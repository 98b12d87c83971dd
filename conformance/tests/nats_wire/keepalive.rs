//! Server PINGs and stale connections. These scenarios are time based: the tests
//! wait for what the server sends, and never assert how long anything took.

use super::support::Wire;
use junction_conformance::broker_with;
use std::time::Duration;

#[tokio::test]
async fn stale_connection_after_unanswered_pings() {
    let b = broker_with(|cfg| cfg.limits.ping_interval = Duration::from_millis(100)).await;
    let addr = b.nats_addr();
    // The bystander answers every PING until its check message arrives.
    let mut by = Wire::bystander(addr).await.strict();
    let bystander = tokio::spawn(async move {
        loop {
            let frame = by.next_frame().await;
            if frame == b"PING\r\n" {
                by.send(b"PONG\r\n").await;
            } else {
                return frame;
            }
        }
    });
    let mut w = Wire::open(addr).await.strict();
    w.send(b"CONNECT {\"verbose\":false}\r\n").await;
    // max_pings_out is 2: two PINGs go unanswered, the third tick closes.
    w.expect(b"PING\r\nPING\r\n-ERR 'Stale Connection'\r\n")
        .await;
    w.expect_closed().await;
    let mut p = Wire::client(addr).await;
    p.send(b"PUB bystander.check 2\r\nok\r\nPING\r\n").await;
    p.expect(b"PONG\r\n").await;
    assert_eq!(
        bystander.await.unwrap(),
        b"MSG bystander.check 1 2\r\nok\r\n"
    );
}

#[tokio::test]
async fn stale_connection_before_connect() {
    let b = broker_with(|cfg| cfg.limits.ping_interval = Duration::from_millis(100)).await;
    let mut w = Wire::open(b.nats_addr()).await.strict();
    w.expect(b"PING\r\nPING\r\n-ERR 'Stale Connection'\r\n")
        .await;
    w.expect_closed().await;
}

#[tokio::test]
async fn answering_pings_keeps_the_connection() {
    let b = broker_with(|cfg| cfg.limits.ping_interval = Duration::from_millis(50)).await;
    let mut w = Wire::open(b.nats_addr()).await.strict();
    w.send(b"CONNECT {\"verbose\":false}\r\n").await;
    // Far more PINGs than max_pings_out, each answered.
    for _ in 0..6 {
        w.expect(b"PING\r\n").await;
        w.send(b"PONG\r\n").await;
    }
    // Still open and served: a PING of ours gets a PONG (server PINGs may come
    // first).
    w.send(b"PING\r\n").await;
    loop {
        let frame = w.next_frame().await;
        if frame == b"PONG\r\n" {
            break;
        }
        assert_eq!(frame, b"PING\r\n", "{}", super::support::show(&frame));
        w.send(b"PONG\r\n").await;
    }
}

#[tokio::test]
async fn first_ping_follows_connect() {
    // With a long interval, the first PING still comes after CONNECT (at most 2 s,
    // which nats-server uses to measure the round trip).
    let b = broker_with(|cfg| cfg.limits.ping_interval = Duration::from_secs(3600)).await;
    let mut w = Wire::open(b.nats_addr()).await.strict();
    w.send(b"CONNECT {\"verbose\":false}\r\n").await;
    w.expect(b"PING\r\n").await;
    w.send(b"PONG\r\nPING\r\n").await;
    w.expect(b"PONG\r\n").await;
}
