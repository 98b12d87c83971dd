//! A client that stops reading is a slow consumer: once more than `max_pending`
//! bytes are queued for it, the broker drops what was queued, closes its connection
//! and counts it in `/varz`, while every other client carries on untouched.

use crate::support::{LONG_GUARD, connect, next, sync, varz_until, within, within_for};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const MAX_PAYLOAD: usize = 64 * 1024;
const MAX_PENDING: usize = 256 * 1024;
const CHUNK: usize = 32 * 1024;
/// 32 MiB in all: far more than `max_pending` plus every socket buffer in between.
const FLOOD: usize = 1024;
/// Every this many flood messages, one message goes to the bystander.
const BYSTANDER_EVERY: usize = 64;

/// A raw client subscribed to `big` that has read up to its PONG and then stops
/// reading. Its receive buffer is kept small so the kernel cannot absorb the flood.
async fn stalled_subscriber(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut stream = within("raw connect", socket.connect(addr)).await.unwrap();
    stream
        .write_all(b"CONNECT {\"verbose\":false}\r\nSUB big 1\r\nPING\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    within("PONG on the raw connection", async {
        while !seen.windows(6).any(|w| w == b"PONG\r\n") {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed before PONG: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_reader_is_disconnected_and_others_are_unaffected() {
    let broker = junction_conformance::broker_with(|cfg| {
        cfg.limits.max_payload = MAX_PAYLOAD;
        cfg.limits.max_pending = MAX_PENDING;
    })
    .await;

    let publisher = connect(&broker).await;
    let bystander = connect(&broker).await;
    let mut other = bystander.subscribe("other").await.unwrap();
    sync(&bystander).await;
    let mut raw = stalled_subscriber(broker.nats_addr()).await;

    // Flood the stalled subscriber, with traffic for the bystander mixed in.
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let mut expected_other = Vec::new();
    for i in 0..FLOOD {
        publisher.publish("big", chunk.clone()).await.unwrap();
        if i % BYSTANDER_EVERY == 0 {
            let payload = format!("during-{i}");
            publisher
                .publish("other", Bytes::from(payload.clone()))
                .await
                .unwrap();
            expected_other.push(payload);
        }
    }
    // Once this returns the broker has routed the whole flood.
    within_for(LONG_GUARD, "the broker to take the flood", sync(&publisher)).await;

    // Start reading again: whatever was written before the cut-off drains, then the
    // server's close shows as end of stream (or a reset).
    let published = FLOOD * CHUNK;
    let mut drained = 0usize;
    within_for(
        LONG_GUARD,
        "the server to close the stalled connection",
        async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match raw.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        },
    )
    .await;
    assert!(
        drained < published,
        "the stalled client got all {published} bytes ({drained}); nothing was dropped"
    );

    let varz = varz_until(&broker, "slow_consumers >= 1", |v| {
        v["slow_consumers"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(
        varz["connections"], 2,
        "only the publisher and the bystander remain: {varz}"
    );

    // The bystander got everything meant for it, in order, and still does.
    for i in 0..5 {
        let payload = format!("after-{i}");
        publisher
            .publish("other", Bytes::from(payload.clone()))
            .await
            .unwrap();
        expected_other.push(payload);
    }
    publisher.flush().await.unwrap();
    for want in &expected_other {
        let m = next(&mut other, want).await;
        assert_eq!(m.payload, want.as_str());
    }

    // The publisher is still connected and usable.
    let mut check = publisher.subscribe("publisher.check").await.unwrap();
    publisher
        .publish("publisher.check", Bytes::from_static(b"alive"))
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    assert_eq!(
        next(&mut check, "publisher round trip").await.payload,
        "alive"
    );
}
