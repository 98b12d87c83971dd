//! What lands in a dead-letter station, with which headers, and the advisories.

use crate::support::{Api, LONG_GUARD, within, within_for};
use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures::StreamExt;
use junction_conformance::{TestBroker, broker};
use serde_json::{Value, json};
use std::time::Duration;

/// A station `orders` on `orders.>` dead-lettering every cause.
pub async fn orders_station(b: &TestBroker) -> Api {
    let api = Api::new(b);
    let created = api
        .post(
            "/v1/stations",
            &json!({
                "name": "orders",
                "subjects": ["orders.>"],
                "dead_letter": {"max_deliveries": true, "terminated": true, "schema_violation": true}
            }),
        )
        .await
        .expect(201);
    assert_eq!(created["dead_letter_station"], "$dls_orders");
    api
}

/// The dead letters of `station`, once there are `n`.
pub async fn dead_letters(api: &Api, station: &str, n: usize) -> Vec<Value> {
    let path = format!("/v1/stations/{station}/dls/messages");
    within_for(LONG_GUARD, &format!("{n} dead letters"), async {
        loop {
            let page = api.get(&path).await.expect(200);
            let got = page["messages"].as_array().cloned().unwrap_or_default();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn max_deliveries_over_nats_with_advisory() {
    let b = broker().await;
    let api = orders_station(&b).await;
    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let mut advisories = client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.orders.workers")
        .await
        .unwrap();
    let js = jetstream::new(client.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "order-1");
    headers.insert("X-Customer", "c42");
    within("publish", async {
        js.publish_with_headers("orders.eu", headers, Bytes::from_static(b"poison"))
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await;
    let stream = js.get_stream("orders").await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("workers".into()),
            ack_policy: AckPolicy::Explicit,
            max_deliver: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    // Two deliveries, each NAKed: the group gives up.
    for attempt in 1..=2 {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .unwrap();
        let m = within("delivery", batch.next()).await.unwrap().unwrap();
        assert_eq!(m.info().unwrap().delivered, attempt);
        m.ack_with(AckKind::Nak(None)).await.unwrap();
    }

    let advisory = within("advisory", advisories.next()).await.unwrap();
    let a: Value = serde_json::from_slice(&advisory.payload).unwrap();
    assert_eq!(a["type"], "io.nats.jetstream.advisory.v1.max_deliver");
    assert_eq!(a["stream"], "orders");
    assert_eq!(a["consumer"], "workers");
    assert_eq!(a["stream_seq"], 1);
    assert_eq!(a["deliveries"], 2);
    assert!(a["id"].as_str().is_some_and(|s| !s.is_empty()), "{a}");
    assert!(a["timestamp"].as_str().is_some(), "{a}");

    let letters = dead_letters(&api, "orders", 1).await;
    let l = &letters[0];
    assert_eq!(l["subject"], "$dls.orders.orders.eu");
    assert_eq!(l["payload"], "poison");
    let h = &l["headers"];
    assert_eq!(h["Junction-Dls-Reason"], "max_deliveries");
    assert_eq!(h["Junction-Dls-Station"], "orders");
    assert_eq!(h["Junction-Dls-Subject"], "orders.eu");
    assert_eq!(h["Junction-Dls-Sequence"], "1");
    assert_eq!(h["Junction-Dls-Group"], "workers");
    assert_eq!(h["Junction-Dls-Deliveries"], "2");
    assert!(h["Junction-Dls-Timestamp"].as_str().is_some(), "{h}");
    // The producer's headers travel with the copy; the de-duplication id is kept
    // under another name so that it does not de-duplicate dead letters.
    assert_eq!(h["X-Customer"], "c42");
    assert_eq!(h["Junction-Dls-Msg-Id"], "order-1");
    assert!(h.get("Nats-Msg-Id").is_none(), "{h}");

    // The system log records it (before the copy is stored).
    let log = api.get("/v1/events?limit=1000").await.expect(200);
    let e = log["events"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["kind"] == "dead_letter"))
        .unwrap_or_else(|| panic!("a dead_letter event: {log}"));
    assert_eq!(e["station"], "orders");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("max deliveries (2)") && message.contains("$dls_orders"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn terminated_over_nats_and_http_carry_the_reason() {
    let b = broker().await;
    let api = orders_station(&b).await;
    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let mut advisories = client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.orders.>")
        .await
        .unwrap();
    api.publish_stored("orders.a", "first").await;
    api.publish_stored("orders.b", "second").await;

    // NATS: `+TERM reason` on the ack subject.
    let js = jetstream::new(client.clone());
    let stream = js.get_stream("orders").await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("nats-workers".into()),
            filter_subject: "orders.a".into(),
            ack_policy: AckPolicy::Explicit,
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
    let reply = m.reply.clone().unwrap();
    client
        .publish(reply, Bytes::from_static(b"+TERM unparseable order"))
        .await
        .unwrap();

    let advisory = within("advisory", advisories.next()).await.unwrap();
    assert_eq!(
        advisory.subject.as_str(),
        "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.orders.nats-workers"
    );
    let a: Value = serde_json::from_slice(&advisory.payload).unwrap();
    assert_eq!(a["type"], "io.nats.jetstream.advisory.v1.terminated");
    assert_eq!(a["stream"], "orders");
    assert_eq!(a["consumer"], "nats-workers");
    assert_eq!(a["stream_seq"], 1);
    assert_eq!(a["consumer_seq"], 1);
    assert_eq!(a["deliveries"], 1);
    assert_eq!(a["reason"], "unparseable order");

    // HTTP: a `term` with a reason.
    api.group(
        "orders",
        "http-workers",
        json!({"filter_subjects": ["orders.b"]}),
    )
    .await;
    let got = api.fetch("orders", "http-workers", 1, 5000).await;
    assert_eq!(got.len(), 1);
    api.post(
        "/v1/stations/orders/groups/http-workers/ack",
        &json!({"term": [{"token": crate::support::token(&got[0]), "reason": "out of stock"}]}),
    )
    .await
    .expect(200);

    let letters = dead_letters(&api, "orders", 2).await;
    let by_group = |g: &str| {
        letters
            .iter()
            .find(|l| l["headers"]["Junction-Dls-Group"] == g)
            .unwrap_or_else(|| panic!("no dead letter of {g}: {letters:?}"))
            .clone()
    };
    let nats = by_group("nats-workers");
    assert_eq!(nats["headers"]["Junction-Dls-Reason"], "terminated");
    assert_eq!(
        nats["headers"]["Junction-Dls-Term-Reason"],
        "unparseable order"
    );
    assert_eq!(nats["headers"]["Junction-Dls-Sequence"], "1");
    assert_eq!(nats["payload"], "first");
    let http = by_group("http-workers");
    assert_eq!(http["headers"]["Junction-Dls-Reason"], "terminated");
    assert_eq!(http["headers"]["Junction-Dls-Term-Reason"], "out of stock");
    assert_eq!(http["headers"]["Junction-Dls-Sequence"], "2");
    assert_eq!(http["headers"]["Junction-Dls-Deliveries"], "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_violations_are_copied_when_the_policy_says_so() {
    let b = broker().await;
    let api = Api::new(&b);
    api.post(
        "/v1/schemas",
        &json!({"name": "num", "definition": {"type": "object", "required": ["n"]}}),
    )
    .await
    .expect(201);
    api.post(
        "/v1/stations",
        &json!({"name": "kept", "subjects": ["kept.>"], "schema": "num",
                "dead_letter": {"schema_violation": true}}),
    )
    .await
    .expect(201);
    // A station with a schema but no dead-letter policy has no DLS.
    api.post(
        "/v1/stations",
        &json!({"name": "dropped", "subjects": ["dropped.>"], "schema": "num"}),
    )
    .await
    .expect(201);

    api.publish("kept.x", r#"{"m":1}"#)
        .await
        .expect_error(422, "schema_violation");
    api.publish("dropped.x", r#"{"m":1}"#)
        .await
        .expect_error(422, "schema_violation");

    let letters = dead_letters(&api, "kept", 1).await;
    let h = &letters[0]["headers"];
    assert_eq!(h["Junction-Dls-Reason"], "schema_violation");
    assert_eq!(h["Junction-Dls-Subject"], "kept.x");
    assert!(
        h["Junction-Dls-Validation-Error"]
            .as_str()
            .is_some_and(|e| e.contains("\"n\"")),
        "{h}"
    );
    assert!(
        h.get("Junction-Dls-Sequence").is_none(),
        "never stored: {h}"
    );
    assert_eq!(letters[0]["payload"], r#"{"m":1}"#);

    api.get("/v1/stations/dropped/dls/messages")
        .await
        .expect_error(404, "dead_letter_station_not_found");
    api.get("/v1/stations/$dls_dropped")
        .await
        .expect_error(404, "station_not_found");
}
