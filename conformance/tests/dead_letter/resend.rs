//! Re-sending dead letters: a background task with progress; back to the group that
//! gave up (a fresh round of deliveries) or into the station as a new message.

use crate::captures::{dead_letters, orders_station};
use crate::support::{Api, LONG_GUARD, deliveries, payload, seq, within_for};
use junction_conformance::broker;
use serde_json::{Value, json};

/// Polls a resend task until it is done; returns its final progress.
async fn finished(api: &Api, station: &str, task: &Value) -> Value {
    let path = format!(
        "/v1/stations/{station}/dls/resend/{}",
        task["id"].as_u64().unwrap()
    );
    within_for(LONG_GUARD, "resend task done", async {
        loop {
            let status = api.get(&path).await.expect(200);
            if status["state"] == "done" {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_all_to_the_group_that_gave_up() {
    let b = broker().await;
    let api = orders_station(&b).await;
    api.publish_stored("orders.x", "retry me").await;
    api.group("orders", "g", json!({"max_deliver": 3})).await;
    let got = api.fetch("orders", "g", 1, 5000).await;
    api.post(
        "/v1/stations/orders/groups/g/ack",
        &json!({"term": [{"token": crate::support::token(&got[0])}]}),
    )
    .await
    .expect(200);
    dead_letters(&api, "orders", 1).await;
    // Another group acked it: a resend to `g` must not reach it.
    api.group("orders", "other", json!({})).await;
    let other = api.fetch("orders", "other", 1, 5000).await;
    api.ack("orders", "other", &other).await;

    let task = api
        .post("/v1/stations/orders/dls/resend", &json!({"ids": "all"}))
        .await
        .expect(202);
    assert_eq!(task["total"], 1);
    let done = finished(&api, "orders", &task).await;
    assert_eq!(done["redelivered"], 1, "{done}");
    assert_eq!(done["failed"], 0, "{done}");
    assert!(done["finished"].as_str().is_some(), "{done}");

    let again = api.fetch("orders", "g", 1, 5000).await;
    assert_eq!(again.len(), 1);
    assert_eq!(payload(&again[0]), "retry me");
    assert_eq!(seq(&again[0]), 1, "the original message, not a copy");
    assert_eq!(deliveries(&again[0]), 1, "a fresh round of deliveries");
    api.ack("orders", "g", &again).await;
    let none = api.fetch("orders", "other", 1, 200).await;
    assert!(none.is_empty(), "{none:?}");

    // Re-sent dead letters leave the DLS.
    let page = api
        .get("/v1/stations/orders/dls/messages")
        .await
        .expect(200);
    assert_eq!(page["messages"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_schema_rejects_into_the_station_after_a_rollback() {
    let b = broker().await;
    let api = Api::new(&b);
    api.post(
        "/v1/schemas",
        &json!({"name": "order", "definition": {"type": "object"}}),
    )
    .await
    .expect(201);
    api.post(
        "/v1/schemas/order/versions",
        &json!({"definition": {"type": "object", "required": ["currency"]}}),
    )
    .await
    .expect(201);
    api.post(
        "/v1/stations",
        &json!({"name": "orders", "subjects": ["orders.>"], "schema": "order",
                "dead_letter": {"schema_violation": true}}),
    )
    .await
    .expect(201);
    api.publish("orders.x", r#"{"id":1}"#)
        .await
        .expect_error(422, "schema_violation");
    api.publish("orders.x", r#"{"id":2}"#)
        .await
        .expect_error(422, "schema_violation");
    let letters = dead_letters(&api, "orders", 2).await;

    // Still invalid: the resend fails and the dead letter stays.
    let first = seq(&letters[0]);
    let task = api
        .post("/v1/stations/orders/dls/resend", &json!({"ids": [first]}))
        .await
        .expect(202);
    let done = finished(&api, "orders", &task).await;
    assert_eq!(done["failed"], 1, "{done}");
    assert!(
        done["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("schema")),
        "{done}"
    );
    // The dead letter stays, and is not copied a second time.
    let letters = dead_letters(&api, "orders", 2).await;
    assert_eq!(letters.len(), 2);

    // Roll back to a version they match, and re-send everything into the station.
    api.post("/v1/schemas/order/rollback", &json!({"version": 1}))
        .await
        .expect(200);
    let task = api
        .post(
            "/v1/stations/orders/dls/resend",
            &json!({"ids": "all", "target": "station"}),
        )
        .await
        .expect(202);
    let done = finished(&api, "orders", &task).await;
    assert_eq!(done["republished"], 2, "{done}");
    let station = api.get("/v1/stations/orders").await.expect(200);
    assert_eq!(station["state"]["messages"], 2);
    let stored = api.get("/v1/stations/orders/messages").await.expect(200);
    let first = &stored["messages"][0];
    assert_eq!(first["subject"], "orders.x");
    assert!(
        first["headers"].get("Junction-Dls-Reason").is_none(),
        "{first}"
    );

    api.post("/v1/stations/orders/dls/resend", &json!({"ids": "some"}))
        .await
        .expect_error(400, "bad_request");
    api.get("/v1/stations/orders/dls/resend/999")
        .await
        .expect_error(404, "resend_task_not_found");
}
