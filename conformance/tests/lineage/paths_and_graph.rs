//! `GET /v1/lineage/{id}` follows a message across a republish that keeps its
//! `traceparent`; `GET /v1/lineage/graph` shows producers, stations and groups.

use crate::support::{Api, payload, within};
use bytes::Bytes;
use junction_conformance::broker;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_republish_with_the_same_traceparent_is_the_next_hop() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("orders", &["orders.>"]).await;
    api.station("invoices", &["invoices.>"]).await;
    // The billing worker asks for lineage headers, to pass the trace on.
    api.group("orders", "billing", json!({"lineage_headers": true}))
        .await;

    // HTTP producer → orders.
    let first = api
        .post_raw("/v1/subjects/orders.new", "o-1", &[])
        .await
        .expect(201);
    assert_eq!(first["seq"], 1);

    // The billing group consumes it over HTTP...
    let got = api.fetch("orders", "billing", 1, 5000).await;
    assert_eq!(payload(&got[0]), "o-1");
    let msg_id = got[0]["headers"]["Junction-Msg-Id"]
        .as_str()
        .unwrap()
        .to_string();
    let traceparent = got[0]["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_string();
    let trace_id = traceparent.split('-').nth(1).unwrap().to_string();
    api.ack("orders", "billing", &got).await;

    // ...and republishes over NATS with the same traceparent.
    let client = within(
        "connect",
        async_nats::ConnectOptions::new()
            .name("billing-worker")
            .connect(b.nats_url()),
    )
    .await
    .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", traceparent.as_str());
    let ack = within(
        "republish",
        client.request_with_headers("invoices.new", headers, Bytes::from_static(b"i-1")),
    )
    .await
    .unwrap();
    let ack: serde_json::Value = serde_json::from_slice(&ack.payload).unwrap();
    assert_eq!(ack["stream"], "invoices");

    for id in [&msg_id, &trace_id] {
        let path = api.get(&format!("/v1/lineage/{id}")).await.expect(200);
        assert_eq!(path["trace_id"], trace_id.as_str());
        let hops = path["messages"].as_array().unwrap();
        assert_eq!(hops.len(), 2, "{path}");
        assert_eq!(hops[0]["msg_id"], msg_id.as_str());
        assert_eq!(hops[0]["protocol"], "http");
        assert_eq!(hops[0]["subject"], "orders.new");
        assert_eq!(hops[0]["station"], "orders");
        assert_eq!(hops[0]["seq"], 1);
        assert_eq!(hops[0]["deliveries"][0]["group"], "billing");
        assert_eq!(hops[0]["deliveries"][0]["delivery_count"], 1);
        assert_eq!(hops[1]["protocol"], "nats");
        assert_eq!(hops[1]["client"], "billing-worker");
        assert_eq!(hops[1]["subject"], "invoices.new");
        assert_eq!(hops[1]["station"], "invoices");
        assert_eq!(hops[1]["seq"], 1);
    }
    api.get("/v1/lineage/0123456789abcdef0123456789abcdef")
        .await
        .expect_error(404, "lineage_not_found");

    let graph = api.get("/v1/lineage/graph").await.expect(200);
    let ids: Vec<&str> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    for id in [
        // An HTTP caller without a User-Agent is named by its address.
        "producer:http:127.0.0.1",
        "producer:nats:billing-worker",
        "station:orders",
        "station:invoices",
        "group:orders/billing",
    ] {
        assert!(ids.contains(&id), "{id} not in {ids:?}");
    }
    let edge = |from: &str, to: &str| {
        graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["from"] == from && e["to"] == to)
            .unwrap_or_else(|| panic!("no edge {from} → {to}: {graph}"))
            .clone()
    };
    let stored = edge("producer:http:127.0.0.1", "station:orders");
    assert_eq!(stored["messages"], 1);
    assert!(stored["rate"].as_f64().unwrap() > 0.0, "{stored}");
    assert_eq!(
        edge("station:orders", "group:orders/billing")["messages"],
        1
    );
    assert_eq!(
        edge("producer:nats:billing-worker", "station:invoices")["messages"],
        1
    );
}
