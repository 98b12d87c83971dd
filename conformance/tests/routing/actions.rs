//! What each action does to messages from NATS and HTTP producers.

use crate::support::{Api, within};
use bytes::Bytes;
use futures::StreamExt;
use junction_conformance::broker;
use serde_json::json;
use std::time::Duration;

async fn messages(api: &Api, station: &str) -> Vec<serde_json::Value> {
    api.get(&format!("/v1/stations/{station}/messages"))
        .await
        .expect(200)["messages"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn route_by_header_field_and_token() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("orders", &["orders.>"]).await;
    api.station("eu-audit", &["audit.eu"]).await;
    api.station("big", &["big.orders"]).await;
    api.post(
        "/v1/routing/rules",
        &json!({"name": "eu", "match": [{"header": "X-Region", "equals": "eu"}],
                "action": {"route": ["eu-audit"]}}),
    )
    .await
    .expect(201);
    api.post(
        "/v1/routing/rules",
        &json!({"name": "big-orders", "subjects": ["orders.>"],
                "match": [{"field": "/amount", "gt": 1000},
                          {"field": "/country", "in": ["DE", "FR"]},
                          {"token": 1, "glob": "w*"}],
                "action": {"route": ["big"]}}),
    )
    .await
    .expect(201);

    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let publish = |subject: &'static str, region: &'static str, body: &'static str| {
        let client = client.clone();
        async move {
            let mut h = async_nats::HeaderMap::new();
            h.insert("X-Region", region);
            let reply = within(
                "publish",
                client.request_with_headers(subject, h, Bytes::from_static(body.as_bytes())),
            )
            .await
            .unwrap();
            let ack: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
            assert_eq!(ack["stream"], "orders", "{ack}");
        }
    };
    publish("orders.web", "eu", r#"{"amount": 5000, "country": "DE"}"#).await;
    publish("orders.web", "us", r#"{"amount": 5000, "country": "US"}"#).await;
    publish("orders.shop", "us", r#"{"amount": 5000, "country": "FR"}"#).await;
    publish("orders.web", "us", r#"{"amount": 10, "country": "FR"}"#).await;
    publish("orders.web", "us", "not json").await;
    // HTTP producers are routed the same way.
    api.post_raw(
        "/v1/subjects/orders.web",
        r#"{"amount": 2000.5, "country": "FR"}"#,
        &[("X-Junction-Header-X-Region", "eu")],
    )
    .await
    .expect(201);

    assert_eq!(messages(&api, "orders").await.len(), 6);
    // Every station that stores a routed copy keeps the original subject.
    let audit = messages(&api, "eu-audit").await;
    assert_eq!(audit.len(), 2);
    assert!(audit.iter().all(|m| m["subject"] == "orders.web"));
    let big = messages(&api, "big").await;
    let bodies: Vec<&str> = big.iter().map(|m| m["payload"].as_str().unwrap()).collect();
    assert_eq!(
        bodies,
        [
            r#"{"amount": 5000, "country": "DE"}"#,
            r#"{"amount": 2000.5, "country": "FR"}"#
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_and_resubject() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("orders", &["orders.>"]).await;
    api.station("modern", &["modern.>"]).await;
    api.post(
        "/v1/routing/rules",
        &json!({"name": "no-tests", "priority": 1,
                "match": [{"header": "X-Test", "exists": true}],
                "action": {"drop": true}}),
    )
    .await
    .expect(201);
    api.post(
        "/v1/routing/rules",
        &json!({"name": "legacy", "priority": 2,
                "match": [{"token": 1, "equals": "legacy"}],
                "action": {"resubject": "modern.{2}"}}),
    )
    .await
    .expect(201);

    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let mut live = client.subscribe(">").await.unwrap();
    let mut h = async_nats::HeaderMap::new();
    h.insert("X-Test", "1");
    client
        .publish_with_headers("orders.x", h, Bytes::from_static(b"test"))
        .await
        .unwrap();
    client
        .publish("orders.legacy.eu", Bytes::from_static(b"moved"))
        .await
        .unwrap();
    within("flush", client.flush()).await.unwrap();

    // The dropped message reaches nobody; the moved one arrives on its new subject.
    let first = within("live delivery", live.next()).await.unwrap();
    assert_eq!(first.subject.as_str(), "modern.eu");
    assert_eq!(&first.payload[..], b"moved");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), live.next())
            .await
            .is_err(),
        "nothing else is delivered"
    );
    assert!(messages(&api, "orders").await.is_empty());
    let modern = messages(&api, "modern").await;
    assert_eq!(modern.len(), 1);
    assert_eq!(modern[0]["subject"], "modern.eu");
    // Lineage remembers where it was published (rendered on request only).
    assert!(
        modern[0]["headers"]
            .get("Junction-Origin-Subject")
            .is_none()
    );
    let with_lineage = api
        .send(
            api.request(reqwest::Method::GET, "/v1/stations/modern/messages/1")
                .header("Junction-Lineage", "true"),
        )
        .await
        .expect(200);
    assert_eq!(
        with_lineage["headers"]["Junction-Origin-Subject"],
        "modern.eu"
    );
}
