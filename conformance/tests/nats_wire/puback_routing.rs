//! Where a JetStream PubAck goes: straight to the publisher's own subscription on
//! the reply subject (how every client's request works), honouring `UNSUB sid max`;
//! to whoever subscribes to the reply subject otherwise. Exact bytes.

use super::support::{QUIET, Wire};
use junction_conformance::broker;

/// Creates stream `S` on `s.>` over the raw JetStream API.
async fn stream(wire: &mut Wire) {
    let body = r#"{"name":"S","subjects":["s.>"]}"#;
    wire.send(b"SUB _INBOX.setup 90\r\n").await;
    wire.send(
        format!(
            "PUB $JS.API.STREAM.CREATE.S _INBOX.setup {}\r\n{body}\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    let frame = wire.next_frame().await;
    assert!(
        frame.starts_with(b"MSG _INBOX.setup 90 ")
            && !String::from_utf8_lossy(&frame).contains("\"error\""),
        "{}",
        String::from_utf8_lossy(&frame)
    );
    wire.send(b"UNSUB 90\r\n").await;
}

fn ack(seq: u64) -> String {
    format!(r#"{{"stream":"S", "seq":{seq}}}"#)
}

#[tokio::test]
async fn puback_reaches_the_publishers_own_inbox_and_respects_unsub_max() {
    let broker = broker().await;
    let mut wire = Wire::client_with(broker.nats_addr(), QUIET).await;
    stream(&mut wire).await;

    // A multiplexed inbox, as clients use.
    wire.send(b"SUB _INBOX.mux.* 1\r\nPUB s.a _INBOX.mux.1 1\r\nx\r\n")
        .await;
    let a = ack(1);
    wire.expect(format!("MSG _INBOX.mux.1 1 {}\r\n{a}\r\n", a.len()).as_bytes())
        .await;

    // A one-shot inbox: `UNSUB 2 1` ends it after the first PubAck.
    wire.send(b"SUB _INBOX.once 2\r\nUNSUB 2 1\r\nPUB s.b _INBOX.once 1\r\ny\r\n")
        .await;
    let b = ack(2);
    wire.expect(format!("MSG _INBOX.once 2 {}\r\n{b}\r\n", b.len()).as_bytes())
        .await;
    wire.send(b"PUB s.c _INBOX.once 1\r\nz\r\n").await;
    // The message is stored (seq 3) but its PubAck has nobody to go to.
    wire.send(b"PUB s.d _INBOX.mux.2 1\r\nw\r\n").await;
    let d = ack(4);
    wire.expect(format!("MSG _INBOX.mux.2 1 {}\r\n{d}\r\n", d.len()).as_bytes())
        .await;
    wire.ping_pong().await;
}

#[tokio::test]
async fn puback_to_another_connections_subject_is_routed() {
    let broker = broker().await;
    let mut listener = Wire::client_with(broker.nats_addr(), QUIET).await;
    listener.send(b"SUB acks.> 7\r\nPING\r\n").await;
    listener.expect(b"PONG\r\n").await;
    let mut publisher = Wire::client_with(broker.nats_addr(), QUIET).await;
    stream(&mut publisher).await;
    publisher.send(b"PUB s.a acks.here 1\r\nx\r\n").await;
    let a = ack(1);
    listener
        .expect(format!("MSG acks.here 7 {}\r\n{a}\r\n", a.len()).as_bytes())
        .await;
    publisher.ping_pong().await;
}
