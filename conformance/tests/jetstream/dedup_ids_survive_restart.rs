//! De-duplication ids survive a graceful restart of a real broker, whichever
//! protocol set them: a NATS `Nats-Msg-Id` (or `msg-id`) header and an HTTP
//! `Idempotency-Key` are answered as duplicates of their original sequence after
//! the restart, the last id still satisfies `Nats-Expected-Last-Msg-Id`, and the
//! stored headers are exactly what the producer sent.

use crate::support::{LONG_GUARD, connect, simple_stream, stream_state, within, within_for};
use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use junction_conformance::{TestBroker, start_in};

async fn restart(broker: TestBroker) -> TestBroker {
    let port = broker.nats_addr().port();
    let (mut config, dir) = within_for(LONG_GUARD, "graceful stop", broker.stop()).await;
    config.nats_listen = format!("127.0.0.1:{port}");
    within_for(LONG_GUARD, "restart", start_in(config, dir)).await
}

async fn send(js: &async_nats::jetstream::Context, message: PublishMessage) -> PublishAck {
    within("publish", async {
        js.send_publish("s.x", message)
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await
}

async fn send_with_id(js: &async_nats::jetstream::Context, name: &str, id: &str) -> PublishAck {
    let mut h = HeaderMap::new();
    h.insert(name, id);
    within("publish", async {
        js.publish_with_headers("s.x", h, "again".into())
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await
}

async fn http_publish(b: &TestBroker, key: &str) -> (u16, serde_json::Value) {
    let r = within(
        "HTTP publish",
        reqwest::Client::new()
            .post(format!("{}/v1/subjects/s.x", b.http_url()))
            .header("Idempotency-Key", key)
            .body("over http")
            .send(),
    )
    .await
    .unwrap();
    let status = r.status().as_u16();
    (status, within("HTTP body", r.json()).await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn dedup_ids_from_nats_and_http_survive_a_restart() {
    let b = junction_conformance::broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "S", &["s.>"]).await;
    let first = send(
        &js,
        PublishMessage::build()
            .payload("one".into())
            .message_id("n-1"),
    )
    .await;
    assert_eq!((first.sequence, first.duplicate), (1, false));
    assert_eq!(
        http_publish(&b, "h-1").await,
        (
            201,
            serde_json::json!({"station": "S", "seq": 2, "duplicate": false})
        )
    );
    let lower = send_with_id(&js, "msg-id", "l-1").await;
    assert_eq!((lower.sequence, lower.duplicate), (3, false));
    drop((client, js));

    let b = restart(b).await;
    let (_client, js) = connect(&b).await;
    // The NATS id, the HTTP key (from either protocol: they share the station's
    // window) and the lower-case id are all still known.
    let dup = send(
        &js,
        PublishMessage::build()
            .payload("one again".into())
            .message_id("n-1"),
    )
    .await;
    assert_eq!((dup.sequence, dup.duplicate), (1, true));
    assert_eq!(
        http_publish(&b, "h-1").await,
        (
            201,
            serde_json::json!({"station": "S", "seq": 2, "duplicate": true})
        )
    );
    let dup = send_with_id(&js, "Nats-Msg-Id", "h-1").await;
    assert_eq!((dup.sequence, dup.duplicate), (2, true));
    let dup = send_with_id(&js, "msg-id", "l-1").await;
    assert_eq!((dup.sequence, dup.duplicate), (3, true));
    assert_eq!(stream_state(&js, "S").await.messages, 3);

    // The last id stored before the restart is still the station's last msg id.
    let ok = send(
        &js,
        PublishMessage::build()
            .payload("four".into())
            .expected_last_message_id("l-1"),
    )
    .await;
    assert_eq!((ok.sequence, ok.duplicate), (4, false));

    // Stored headers are the producer's, as sent.
    let stream = within("get stream", js.get_stream("S")).await.unwrap();
    let m = within("get 1", stream.get_raw_message(1)).await.unwrap();
    assert_eq!(
        m.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some("n-1")
    );
    assert_eq!(m.headers.iter().count(), 1, "{:?}", m.headers);
    let m = within("get 3", stream.get_raw_message(3)).await.unwrap();
    assert_eq!(m.headers.get("msg-id").map(|v| v.as_str()), Some("l-1"));
    assert!(m.headers.get("Nats-Msg-Id").is_none(), "{:?}", m.headers);
}
