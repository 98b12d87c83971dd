//! `UNSUB sid max`: the broker delivers exactly `max` messages to the subscription,
//! then drops it, and the client's stream ends.

use crate::support::{connect, get_json, next, sync, varz_u64, varz_until, within};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread")]
async fn unsubscribe_after_delivers_exactly_n_then_ends() {
    let broker = junction_conformance::broker().await;
    let subscriber = connect(&broker).await;
    let publisher = connect(&broker).await;

    let mut sub = subscriber.subscribe("auto.unsub").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    sync(&subscriber).await;
    // The subscription and the sync request's inbox.
    assert_eq!(varz_u64(&broker, "subscriptions").await, 2);
    let in_before = varz_u64(&broker, "in_msgs").await;
    let out_before = varz_u64(&broker, "out_msgs").await;

    for i in 0..10 {
        publisher
            .publish("auto.unsub", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();

    for i in 0..3 {
        let m = next(&mut sub, "one of the first three").await;
        assert_eq!(m.payload, i.to_string());
    }
    assert!(
        within("end of the stream", sub.next()).await.is_none(),
        "the stream ends after three messages"
    );

    // The broker itself stopped after three and forgot the subscription.
    let varz = varz_until(&broker, "all ten messages in", |v| {
        v["in_msgs"].as_u64().unwrap() >= in_before + 10
    })
    .await;
    assert_eq!(varz["in_msgs"].as_u64().unwrap() - in_before, 10);
    assert_eq!(varz["out_msgs"].as_u64().unwrap() - out_before, 3);
    assert_eq!(
        varz_u64(&broker, "subscriptions").await,
        1,
        "only the subscriber's sync inbox is left"
    );
}

/// Reads from `stream` until `buf` contains `marker`.
async fn read_until(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, marker: &[u8]) {
    within("raw reply", async {
        while !buf.windows(marker.len()).any(|w| w == marker) {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "server closed the connection: {:?}",
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_enforces_the_limit_on_the_wire() {
    let broker = junction_conformance::broker().await;
    let publisher = connect(&broker).await;
    let mut raw = tokio::net::TcpStream::connect(broker.nats_addr())
        .await
        .unwrap();
    raw.write_all(b"CONNECT {\"verbose\":false}\r\nSUB wire.auto 7\r\nUNSUB 7 2\r\nPING\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    read_until(&mut raw, &mut buf, b"PONG\r\n").await;

    for i in 0..5 {
        publisher
            .publish("wire.auto", Bytes::from(format!("m{i}")))
            .await
            .unwrap();
    }
    sync(&publisher).await;

    let mut buf = Vec::new();
    raw.write_all(b"PING\r\n").await.unwrap();
    read_until(&mut raw, &mut buf, b"PONG\r\n").await;
    let text = String::from_utf8(buf).unwrap();
    let text = text.replace("PING\r\n", ""); // a server keep-alive may interleave
    assert_eq!(
        text,
        "MSG wire.auto 7 2\r\nm0\r\nMSG wire.auto 7 2\r\nm1\r\nPONG\r\n"
    );

    let connz = get_json(&broker, "/connz?subs=1").await;
    let total_subs: u64 = connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subscriptions"].as_u64().unwrap())
        .sum();
    assert_eq!(
        total_subs, 1,
        "only the publisher's sync inbox is left: {connz}"
    );
}
