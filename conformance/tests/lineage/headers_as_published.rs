//! Stock clients get exactly the headers their producer sent: a live subscription,
//! a JetStream fetch and a stream get return the published headers and nothing else, and
//! clients cannot set the engine's reserved `Junction-*` headers.

use crate::support::{Api, within};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use futures::StreamExt;
use junction_conformance::broker;
use serde_json::json;
use std::time::Duration;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Every (name, value) of a header map, sorted, names as sent.
fn pairs(h: Option<&HeaderMap>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = h
        .into_iter()
        .flat_map(|h| h.iter())
        .flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string())))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn jetstream_fetch_and_get_return_exactly_the_published_headers() {
    let b = broker().await;
    let client = within(
        "connect",
        async_nats::ConnectOptions::new()
            .name("orders-svc")
            .connect(b.nats_url()),
    )
    .await
    .unwrap();
    let js = jetstream::new(client.clone());
    let stream = js
        .create_stream(stream::Config {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut live = client.subscribe("orders.>").await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("X-App", "1");
    headers.append("X-Multi", "a");
    headers.append("X-Multi", "b");
    headers.insert("Nats-Msg-Id", "order-1");
    headers.insert("traceparent", TRACEPARENT);
    let published = pairs(Some(&headers));
    let ack = within("publish", async {
        js.publish_with_headers("orders.eu", headers.clone(), Bytes::from_static(b"o1"))
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(ack.sequence, 1);
    let ack = within("publish", async {
        js.publish("orders.us", Bytes::from_static(b"o2"))
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(ack.sequence, 2);

    // Live: as published.
    let core = within("live delivery", live.next()).await.unwrap();
    assert_eq!(pairs(core.headers.as_ref()), published);

    // A pull consumer: as published; none where none were sent.
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("c".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(2)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let first = within("delivery", batch.next()).await.unwrap().unwrap();
    assert_eq!(pairs(first.headers.as_ref()), published);
    let second = within("delivery", batch.next()).await.unwrap().unwrap();
    assert_eq!(pairs(second.headers.as_ref()), Vec::new());

    // STREAM.MSG.GET: as published. (async-nats reads the `hdrs` block of a get
    // with `insert`, so a repeated header keeps its last value, as it does against
    // nats-server.)
    let got = within("get", stream.get_raw_message(1)).await.unwrap();
    let last_of_each: Vec<(String, String)> = published
        .iter()
        .filter(|(k, v)| k != "X-Multi" || v == "b")
        .cloned()
        .collect();
    assert_eq!(pairs(Some(&got.headers)), last_of_each);
    let got = within("get", stream.get_raw_message(2)).await.unwrap();
    assert_eq!(pairs(Some(&got.headers)), Vec::new());

    // Lineage is not in the headers, so it does not count against the station's
    // byte limit either: the header-less 2-byte message on a 9-byte subject is
    // accounted as subject + payload + 16.
    let api = Api::new(&b);
    let info = api.get("/v1/stations/orders").await.expect(200);
    let first_size = 9
        + 2
        + 16
        + 12
        + published
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>()
        - ("traceparent".len() + TRACEPARENT.len() + 4);
    assert_eq!(info["state"]["bytes"], (first_size + 9 + 2 + 16) as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn reserved_headers_cannot_be_forged_and_traceparent_is_kept() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("s", &["s.>"]).await;
    let reply = api
        .post_raw(
            "/v1/subjects/s.x",
            "p",
            &[
                ("X-Junction-Header-Junction-Msg-Id", "forged"),
                ("X-Junction-Header-Junction-Dls-Reason", "forged"),
                ("X-Junction-Header-traceparent", TRACEPARENT),
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
    // Exactly the producer's headers: the forged ones are gone, nothing is added.
    assert_eq!(
        stored["headers"],
        json!({"App": "kept", "traceparent": TRACEPARENT})
    );

    // Core fan-out strips them too.
    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let mut live = client.subscribe("core.>").await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("Junction-Msg-Id", "forged");
    headers.insert("X-App", "1");
    client
        .publish_with_headers("core.x", headers, Bytes::from_static(b"c"))
        .await
        .unwrap();
    let m = within("live delivery", live.next()).await.unwrap();
    assert_eq!(
        pairs(m.headers.as_ref()),
        vec![("X-App".to_string(), "1".to_string())]
    );
}
