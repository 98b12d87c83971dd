//! Publish subjects that other protocols cannot carry (NUL, control characters,
//! bytes that are not UTF-8) and subjects that are the broker's own state: the
//! publisher gets `-ERR` and keeps its connection; nothing is stored or delivered.

use crate::js;
use crate::wire::Wire;
use junction_conformance::broker;

#[tokio::test]
async fn control_characters_and_bad_utf8_are_refused_per_publish() {
    let broker = broker().await;
    let (_client, jsx) = js::connect(&broker).await;
    js::simple_stream(&jsx, "ALL", &["bad.>"]).await;
    let mut watcher = Wire::client(broker.nats_addr()).await;
    watcher.send(b"SUB bad.> 1\r\nPING\r\n").await;
    watcher.expect(b"PONG\r\n").await;

    let mut wire = Wire::client(broker.nats_addr()).await;
    for subject in [
        &b"bad.\x00"[..],
        b"bad.\xff\xfe",
        b"bad.a\x01b",
        b"bad.\x7f",
    ] {
        let mut op = b"PUB ".to_vec();
        op.extend_from_slice(subject);
        op.extend_from_slice(b" 2\r\nhi\r\nPING\r\n");
        wire.send(&op).await;
        wire.expect(b"-ERR 'Invalid Publish Subject'\r\nPONG\r\n")
            .await;
    }
    // The connection still works, and a good subject goes through.
    wire.send(b"PUB bad.ok 2\r\nok\r\nPING\r\n").await;
    wire.expect(b"PONG\r\n").await;
    watcher.expect(b"MSG bad.ok 1 2\r\nok\r\n").await;
    watcher.ping_pong().await;
    let state = js::stream_state(&jsx, "ALL").await;
    assert_eq!(state.messages, 1, "only the valid publish is stored");
}

#[tokio::test]
async fn internal_subjects_get_a_permissions_violation() {
    let broker = broker().await;
    let mut bystander = Wire::bystander(broker.nats_addr()).await;
    let mut wire = Wire::client(broker.nats_addr()).await;
    for subject in [
        "$MQTT.sess.abc",
        "$MQTT.msgs.x",
        "$dls.orders.x",
        "$sys.events.x",
    ] {
        wire.send(format!("PUB {subject} 2\r\nhi\r\nPING\r\n").as_bytes())
            .await;
        wire.expect(
            format!("-ERR 'Permissions Violation for Publish to \"{subject}\"'\r\nPONG\r\n")
                .as_bytes(),
        )
        .await;
    }
    bystander.assert_healthy().await;
}
