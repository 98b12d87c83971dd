//! The DLS is a normal station: consumed with JetStream, purged, deleted with its
//! station; its name is reserved and it survives a restart.

use crate::captures::{dead_letters, orders_station};
use crate::support::{Api, within};
use async_nats::jetstream;
use async_nats::jetstream::consumer::pull;
use futures::StreamExt;
use junction_conformance::{broker, start_in};
use serde_json::json;
use std::time::Duration;

/// Terminates every message of `orders` through an HTTP group.
async fn terminate_all(api: &Api, n: usize) {
    api.group("orders", "g", json!({})).await;
    let got = api.fetch("orders", "g", n as u64, 5000).await;
    assert_eq!(got.len(), n);
    let term: Vec<_> = got
        .iter()
        .map(|m| json!({"token": crate::support::token(m), "reason": "bad"}))
        .collect();
    api.post("/v1/stations/orders/groups/g/ack", &json!({ "term": term }))
        .await
        .expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn consumed_with_jetstream_purged_and_deleted_with_its_station() {
    let b = broker().await;
    let api = orders_station(&b).await;
    for i in 0..3 {
        api.publish_stored("orders.x", &format!("m{i}")).await;
    }
    terminate_all(&api, 3).await;
    dead_letters(&api, "orders", 3).await;

    // A JetStream consumer on the DLS, filtered by the original subject.
    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let dls = within("get DLS stream", js.get_stream("$dls_orders"))
        .await
        .unwrap();
    let consumer = dls
        .create_consumer(pull::Config {
            durable_name: Some("triage".into()),
            filter_subject: "$dls.orders.orders.x".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // A waiting pull request until all three arrived (the browse above may see a
    // dead letter a moment before it is durable and deliverable).
    let mut payloads = Vec::new();
    within("three DLS deliveries", async {
        while payloads.len() < 3 {
            let mut batch = consumer
                .batch()
                .max_messages(3 - payloads.len())
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .unwrap();
            while let Some(m) = batch.next().await {
                let m = m.unwrap();
                let headers = m.headers.clone().unwrap();
                assert_eq!(
                    headers.get("Junction-Dls-Reason").map(|v| v.as_str()),
                    Some("terminated")
                );
                payloads.push(String::from_utf8(m.payload.to_vec()).unwrap());
                m.ack().await.unwrap();
            }
        }
    })
    .await;
    assert_eq!(payloads, ["m0", "m1", "m2"]);

    // Purge.
    let purged = api
        .delete("/v1/stations/orders/dls/messages")
        .await
        .expect(200);
    assert_eq!(purged["purged"], 3);
    let page = api
        .get("/v1/stations/orders/dls/messages")
        .await
        .expect(200);
    assert_eq!(page["messages"], json!([]));

    // The DLS is not deleted on its own, and goes with its station.
    api.delete("/v1/stations/$dls_orders")
        .await
        .expect_error(403, "denied");
    api.delete("/v1/stations/orders").await.expect(204);
    api.get("/v1/stations/$dls_orders")
        .await
        .expect_error(404, "station_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn names_are_reserved_and_dead_letters_survive_a_restart() {
    let b = broker().await;
    let api = orders_station(&b).await;
    api.post("/v1/stations", &json!({"name": "$dls_mine"}))
        .await
        .expect_error(422, "invalid_config");
    api.publish_stored("orders.x", "keep me").await;
    terminate_all(&api, 1).await;
    dead_letters(&api, "orders", 1).await;

    let (config, dir) = b.stop().await;
    let b = start_in(config, dir).await;
    let api = Api::new(&b);
    let letters = dead_letters(&api, "orders", 1).await;
    assert_eq!(letters[0]["payload"], "keep me");
    assert_eq!(letters[0]["headers"]["Junction-Dls-Term-Reason"], "bad");
    let station = api.get("/v1/stations/orders").await.expect(200);
    assert_eq!(station["dead_letter"]["terminated"], true);
}
