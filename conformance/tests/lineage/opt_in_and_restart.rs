//! Lineage reaches a client only when it asks (a JetStream consumer's
//! `junction.lineage_headers` metadata, an HTTP group's `lineage_headers`, the HTTP
//! `Junction-Lineage` request header), names an HTTP producer by its caller, and
//! survives a restart of the broker.

use crate::support::{Api, poll_until, within};
use async_nats::jetstream::{self, consumer::pull};
use bytes::Bytes;
use futures::StreamExt;
use junction_conformance::{broker, start_in};
use serde_json::{Value, json};
use std::collections::HashMap;
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

fn is_msg_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn fetch_one(
    stream: &jetstream::stream::Stream,
    config: pull::Config,
) -> async_nats::jetstream::Message {
    let consumer = stream.create_consumer(config).await.unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    within("delivery", batch.next()).await.unwrap().unwrap()
}

/// A NATS client named `orders-svc` (the producer name lineage records) and its
/// JetStream context.
async fn orders_svc(
    b: &junction_conformance::TestBroker,
) -> (async_nats::Client, jetstream::Context) {
    let client = within(
        "connect",
        async_nats::ConnectOptions::new()
            .name("orders-svc")
            .connect(b.nats_url()),
    )
    .await
    .unwrap();
    let js = jetstream::new(client.clone());
    (client, js)
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_and_requests_that_opt_in_get_the_lineage_headers() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("orders", &["orders.>"]).await;
    let (_client, js) = orders_svc(&b).await;
    let mut h = async_nats::HeaderMap::new();
    h.insert("X-App", "1");
    within("publish", async {
        js.publish_with_headers("orders.eu", h, Bytes::from_static(b"o1"))
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await;
    let stream = js.get_stream("orders").await.unwrap();

    // A JetStream consumer that asks through its metadata.
    let m = fetch_one(
        &stream,
        pull::Config {
            durable_name: Some("with-lineage".into()),
            metadata: HashMap::from([("junction.lineage_headers".into(), "true".into())]),
            ..Default::default()
        },
    )
    .await;
    let h = m.headers.clone().unwrap();
    let get = |n: &str| h.get(n).map(|v| v.as_str().to_string());
    let msg_id = get("Junction-Msg-Id").unwrap();
    assert!(is_msg_id(&msg_id), "{msg_id}");
    assert_eq!(get("X-App").as_deref(), Some("1"));
    assert_eq!(get("Junction-Origin-Protocol").as_deref(), Some("nats"));
    assert_eq!(get("Junction-Client-Name").as_deref(), Some("orders-svc"));
    assert_eq!(get("Junction-Origin-Subject").as_deref(), Some("orders.eu"));
    assert!(get("Junction-Conn-Id").is_some_and(|c| c.parse::<u64>().is_ok()));
    assert!(get("Junction-Remote-Addr").is_some_and(|a| a.starts_with("127.0.0.1:")));
    assert!(get("Junction-Received").is_some_and(|t| t.ends_with('Z')));
    let traceparent = get("traceparent").unwrap();
    assert!(valid_traceparent(&traceparent), "{traceparent}");
    // The consumer's metadata is kept as set.
    let info = stream
        .get_consumer::<pull::Config>("with-lineage")
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(
        info.config
            .metadata
            .get("junction.lineage_headers")
            .map(String::as_str),
        Some("true")
    );

    // A consumer that does not ask gets the producer's headers only.
    let plain = fetch_one(
        &stream,
        pull::Config {
            durable_name: Some("plain".into()),
            ..Default::default()
        },
    )
    .await;
    let names: Vec<String> = plain
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(names, vec!["X-App".to_string()]);

    // An HTTP group that asks.
    let group = api
        .group("orders", "http-lineage", json!({"lineage_headers": true}))
        .await;
    assert_eq!(group["lineage_headers"], true);
    let got = api.fetch("orders", "http-lineage", 1, 5000).await;
    assert_eq!(got[0]["headers"]["Junction-Msg-Id"], msg_id.as_str());
    assert_eq!(got[0]["headers"]["traceparent"], traceparent.as_str());

    // An HTTP group that does not, fetched with and without the request header.
    let group = api.group("orders", "http-plain", json!({})).await;
    assert_eq!(group["lineage_headers"], false);
    let fetch = |lineage: Option<&'static str>| {
        let mut r = api
            .request(
                reqwest::Method::POST,
                "/v1/stations/orders/groups/http-plain/fetch",
            )
            .json(&json!({"batch": 1, "max_wait_ms": 5000}));
        if let Some(v) = lineage {
            r = r.header("Junction-Lineage", v);
        }
        api.send(r)
    };
    let without = fetch(None).await.expect(200);
    assert_eq!(without["messages"][0]["headers"], json!({"X-App": "1"}));
    api.post(
        "/v1/stations/orders/groups/http-plain/ack",
        &json!({"nak": [{"token": without["messages"][0]["ack_token"]}]}),
    )
    .await
    .expect(200);
    let with = fetch(Some("true")).await.expect(200);
    assert_eq!(
        with["messages"][0]["headers"]["Junction-Msg-Id"],
        msg_id.as_str()
    );
    assert_eq!(
        fetch(Some("maybe"))
            .await
            .expect_error(400, "invalid_header"),
        "Junction-Lineage: expected true or false"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_producers_are_named_by_their_caller() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("s", &["s.>"]).await;
    let reply = api
        .send(
            api.request(reqwest::Method::POST, "/v1/subjects/s.x")
                .header("User-Agent", "billing-batch/2.1")
                .body("p"),
        )
        .await
        .expect(201);
    assert_eq!(reply["seq"], 1);
    let stored = api
        .send(
            api.request(reqwest::Method::GET, "/v1/stations/s/messages/1")
                .header("Junction-Lineage", "true"),
        )
        .await
        .expect(200);
    let h = &stored["headers"];
    assert_eq!(h["Junction-Origin-Protocol"], "http", "{stored}");
    assert_eq!(h["Junction-Client-Name"], "billing-batch/2.1", "{stored}");
    let remote = h["Junction-Remote-Addr"].as_str().unwrap();
    assert!(remote.starts_with("127.0.0.1:"), "{remote}");
    let id = h["Junction-Msg-Id"].as_str().unwrap();
    let path = api.get(&format!("/v1/lineage/{id}")).await.expect(200);
    let hop = &path["messages"][0];
    assert_eq!(hop["protocol"], "http");
    assert_eq!(hop["client"], "billing-batch/2.1");
    assert_eq!(hop["remote"], remote);
    assert_eq!(hop["user"], Value::Null);
    let graph = api.get("/v1/lineage/graph").await.expect(200);
    assert!(
        graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["from"] == "producer:http:billing-batch/2.1" && e["to"] == "station:s"),
        "{graph}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lineage_index_survives_a_restart() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("orders", &["orders.>"]).await;
    let (client, js) = orders_svc(&b).await;
    for n in 0..3 {
        within("publish", async {
            js.publish(format!("orders.{n}"), Bytes::from_static(b"o"))
                .await
                .unwrap()
                .await
                .unwrap()
        })
        .await;
    }
    drop(js);
    drop(client);
    let lineage_of = |m: &Value| {
        m["headers"]["Junction-Msg-Id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let page = api
        .send(
            api.request(reqwest::Method::GET, "/v1/stations/orders/messages")
                .header("Junction-Lineage", "true"),
        )
        .await
        .expect(200);
    let ids: Vec<String> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(lineage_of)
        .collect();
    assert_eq!(ids.len(), 3);

    let (config, dir) = b.stop().await;
    let b = start_in(config, dir).await;
    let api = Api::new(&b);
    // The index is refilled off the start-up path: wait until it answers.
    let last = ids[2].clone();
    poll_until("lineage restored", || {
        let api = api.clone();
        let path = format!("/v1/lineage/{last}");
        async move { api.get(&path).await.status == 200 }
    })
    .await;
    for (n, id) in ids.iter().enumerate() {
        let path = api.get(&format!("/v1/lineage/{id}")).await.expect(200);
        let hop = &path["messages"][0];
        assert_eq!(hop["msg_id"], id.as_str());
        assert_eq!(hop["protocol"], "nats");
        assert_eq!(hop["client"], "orders-svc");
        assert_eq!(hop["subject"], format!("orders.{n}"));
        assert_eq!(hop["station"], "orders");
        assert_eq!(hop["seq"], n as u64 + 1);
    }
    let graph = api.get("/v1/lineage/graph").await.expect(200);
    let edge = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["from"] == "producer:nats:orders-svc" && e["to"] == "station:orders")
        .cloned()
        .unwrap_or_else(|| panic!("no edge: {graph}"));
    assert_eq!(edge["messages"], 3);
    // The restored message renders the same lineage headers as before.
    let again = api
        .send(
            api.request(reqwest::Method::GET, "/v1/stations/orders/messages/3")
                .header("Junction-Lineage", "true"),
        )
        .await
        .expect(200);
    assert_eq!(lineage_of(&again), ids[2]);
}
