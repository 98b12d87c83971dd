//! NATS publishes into a station with a schema: a JetStream publish that fails
//! gets a PubAck error (code 400, err_code 19001) carrying the validation errors
//! and the connection stays up; a core publish that fails is neither stored nor
//! delivered live.

use crate::registry_admin::order_schema;
use crate::support::{Api, within};
use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use junction_conformance::broker;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn jetstream_publish_gets_a_puback_error() {
    let b = broker().await;
    let api = Api::new(&b);
    api.post(
        "/v1/schemas",
        &json!({"name": "order", "definition": order_schema()}),
    )
    .await
    .expect(201);
    api.post(
        "/v1/stations",
        &json!({"name": "orders", "subjects": ["orders.>"], "schema": "order"}),
    )
    .await
    .expect(201);
    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();

    // Raw request: the PubAck error JSON.
    let reply = within(
        "publish request",
        client.request("orders.eu", Bytes::from_static(br#"{"id":1}"#)),
    )
    .await
    .unwrap();
    let ack: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(ack["error"]["code"], 400, "{ack}");
    assert_eq!(ack["error"]["err_code"], 19001, "{ack}");
    let description = ack["error"]["description"].as_str().unwrap();
    assert!(description.contains("schema violation"), "{description}");
    assert!(description.contains("/id"), "{description}");
    assert!(description.contains("amount"), "{description}");

    // async-nats sees an error, and the connection keeps working.
    let js = jetstream::new(client.clone());
    let refused = within("js publish", async {
        js.publish("orders.eu", Bytes::from_static(b"[]"))
            .await
            .unwrap()
            .await
    })
    .await;
    assert!(refused.is_err(), "{refused:?}");
    let ack = within("js publish", async {
        js.publish("orders.eu", Bytes::from_static(br#"{"id":"a","amount":2}"#))
            .await
            .unwrap()
            .await
    })
    .await
    .unwrap();
    assert_eq!(ack.stream, "orders");
    assert_eq!(ack.sequence, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn core_publish_that_fails_is_neither_stored_nor_delivered() {
    let b = broker().await;
    let api = Api::new(&b);
    api.post(
        "/v1/schemas",
        &json!({"name": "order", "definition": order_schema()}),
    )
    .await
    .expect(201);
    api.post(
        "/v1/stations",
        &json!({"name": "orders", "subjects": ["orders.>"], "schema": "order"}),
    )
    .await
    .expect(201);
    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let mut live = client.subscribe("orders.>").await.unwrap();
    client
        .publish("orders.eu", Bytes::from_static(b"not json"))
        .await
        .unwrap();
    client
        .publish(
            "orders.eu",
            Bytes::from_static(br#"{"id":"ok","amount":0}"#),
        )
        .await
        .unwrap();
    within("flush", client.flush()).await.unwrap();
    // Messages from one publisher arrive in order: the first live delivery is the
    // valid one.
    let first = within("live delivery", live.next()).await.unwrap();
    assert_eq!(&first.payload[..], br#"{"id":"ok","amount":0}"#);
    let station = api.get("/v1/stations/orders").await.expect(200);
    assert_eq!(station["state"]["messages"], 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), live.next())
            .await
            .is_err(),
        "the refused message must not be delivered live"
    );
}
