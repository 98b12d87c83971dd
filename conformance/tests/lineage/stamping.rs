//! The headers stamped on stored messages, and what clients cannot set.

use crate::support::{Api, within};
use async_nats::jetstream;
use async_nats::jetstream::consumer::pull;
use bytes::Bytes;
use futures::StreamExt;
use junction_conformance::broker;
use serde_json::json;
use std::time::Duration;

/// `00-<32 hex>-<16 hex>-<2 hex>`.
fn valid_traceparent(t: &str) -> bool {
    let parts: Vec<&str> = t.split('-').collect();
    parts.len() == 4
        && parts[0] == "00"
        && parts[1].len() == 32
        && parts[2].len() == 16
        && parts[3].len() == 2
        && parts[1..]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_producer_is_stamped_and_core_fan_out_is_untouched() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("orders", &["orders.>"]).await;
    let client = within(
        "connect",
        async_nats::ConnectOptions::new()
            .name("orders-svc")
            .connect(b.nats_url()),
    )
    .await
    .unwrap();
    let mut live = client.subscribe("orders.>").await.unwrap();
    let js = jetstream::new(client.clone());
    let ack = within("publish", async {
        js.publish("orders.eu", Bytes::from_static(b"o1"))
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(ack.sequence, 1);

    // The live subscriber gets the message as published: no headers at all.
    let core = within("live delivery", live.next()).await.unwrap();
    assert!(core.headers.is_none(), "{:?}", core.headers);

    // The stored message carries lineage, over JetStream...
    let stream = js.get_stream("orders").await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("c".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let m = within("delivery", batch.next()).await.unwrap().unwrap();
    let h = m.headers.clone().unwrap();
    let get = |n: &str| h.get(n).map(|v| v.as_str().to_string());
    let msg_id = get("Junction-Msg-Id").unwrap();
    assert_eq!(msg_id.len(), 32, "{msg_id}");
    assert_eq!(get("Junction-Origin-Protocol").as_deref(), Some("nats"));
    assert_eq!(get("Junction-Client-Name").as_deref(), Some("orders-svc"));
    assert_eq!(get("Junction-Origin-Subject").as_deref(), Some("orders.eu"));
    assert!(get("Junction-Conn-Id").is_some_and(|c| c.parse::<u64>().is_ok()));
    assert!(get("Junction-Received").is_some_and(|t| t.ends_with('Z')));
    assert!(
        get("traceparent").is_some_and(|t| valid_traceparent(&t)),
        "{h:?}"
    );

    // ...and over HTTP, the same.
    let stored = api.get("/v1/stations/orders/messages/1").await.expect(200);
    assert_eq!(stored["headers"]["Junction-Msg-Id"], msg_id.as_str());

    // Lineage does not count against the station's byte limit: one 2-byte message
    // on a 9-byte subject is accounted as before.
    let info = api.get("/v1/stations/orders").await.expect(200);
    assert_eq!(info["state"]["bytes"], 2 + 9 + 16);
}

#[tokio::test(flavor = "multi_thread")]
async fn reserved_headers_cannot_be_forged_and_traceparent_is_kept() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("s", &["s.>"]).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply = api
        .post_raw(
            "/v1/subjects/s.x",
            "p",
            &[
                ("X-Junction-Header-Junction-Msg-Id", "forged"),
                ("X-Junction-Header-Junction-Dls-Reason", "forged"),
                ("X-Junction-Header-traceparent", traceparent),
                ("X-Junction-Header-App", "kept"),
            ],
        )
        .await
        .expect(201);
    let seq = reply["seq"].as_u64().unwrap();
    let stored = api
        .get(&format!("/v1/stations/s/messages/{seq}"))
        .await
        .expect(200);
    let h = &stored["headers"];
    assert_ne!(h["Junction-Msg-Id"], "forged", "{h}");
    assert!(h.get("Junction-Dls-Reason").is_none(), "{h}");
    assert_eq!(h["traceparent"], traceparent);
    assert_eq!(h["App"], "kept");
    assert_eq!(h["Junction-Origin-Protocol"], "http");
    assert_eq!(h["Junction-Client-Name"], "junction-http");
    assert_eq!(
        crate::support::producer_headers(&stored),
        json!({"App": "kept"})
    );

    // Core fan-out strips them too.
    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let mut live = client.subscribe("core.>").await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Junction-Msg-Id", "forged");
    headers.insert("X-App", "1");
    client
        .publish_with_headers("core.x", headers, Bytes::from_static(b"c"))
        .await
        .unwrap();
    let m = within("live delivery", live.next()).await.unwrap();
    let h = m.headers.unwrap();
    assert!(h.get("Junction-Msg-Id").is_none(), "{h:?}");
    assert_eq!(h.get("X-App").map(|v| v.as_str()), Some("1"));
}
