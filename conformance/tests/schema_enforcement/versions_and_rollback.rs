//! Versions: a new version is active at once for stations that follow the schema;
//! a pinned station keeps its version; a rollback makes an old version active.
//! HTTP refusals are 422 with the validation errors listed.

use crate::registry_admin::order_schema;
use crate::support::Api;
use junction_conformance::broker;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn http_publish_is_validated_with_errors_listed() {
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

    assert_eq!(
        api.publish_stored("orders.eu", r#"{"id":"a1","amount":3.5}"#)
            .await,
        1
    );
    let reply = api.publish("orders.eu", r#"{"id":7,"amount":-1}"#).await;
    let body = reply.json.clone();
    let message = reply.expect_error(422, "schema_violation");
    assert!(message.contains("schema 'order' version 1"), "{message}");
    let errors: Vec<&str> = body["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("/id: ")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.starts_with("/amount: ")),
        "{errors:?}"
    );

    // Not JSON at all.
    let message = api
        .publish("orders.eu", "hello")
        .await
        .expect_error(422, "schema_violation");
    assert!(message.contains("not valid JSON"), "{message}");

    // Publishing into the station by name is validated the same way.
    api.post_raw("/v1/stations/orders/messages?subject=orders.x", "{}", &[])
        .await
        .expect_error(422, "schema_violation");

    // Nothing refused was stored.
    let station = api.get("/v1/stations/orders").await.expect(200);
    assert_eq!(station["state"]["messages"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn new_versions_pinning_and_rollback() {
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
        &json!({"name": "follows", "subjects": ["f.>"], "schema": "order"}),
    )
    .await
    .expect(201);
    api.post(
        "/v1/stations",
        &json!({"name": "pinned", "subjects": ["p.>"], "schema": "order", "schema_version": 1}),
    )
    .await
    .expect(201);

    // Version 2 also requires a currency.
    let mut v2 = order_schema();
    v2["required"] = json!(["id", "amount", "currency"]);
    let added = api
        .post("/v1/schemas/order/versions", &json!({"definition": v2}))
        .await
        .expect(201);
    assert_eq!(added["active_version"], 2);
    assert_eq!(added["versions"].as_array().unwrap().len(), 2);
    assert_eq!(added["stations"], json!(["follows", "pinned"]));

    let old_shape = r#"{"id":"a","amount":1}"#;
    let msg = api
        .publish("f.x", old_shape)
        .await
        .expect_error(422, "schema_violation");
    assert!(msg.contains("version 2"), "{msg}");
    api.publish_stored("p.x", old_shape).await;
    api.publish_stored("f.x", r#"{"id":"a","amount":1,"currency":"EUR"}"#)
        .await;

    // Roll back to 1: the old shape is accepted again.
    let rolled = api
        .post("/v1/schemas/order/rollback", &json!({"version": 1}))
        .await
        .expect(200);
    assert_eq!(rolled["active_version"], 1);
    assert_eq!(rolled["versions"].as_array().unwrap().len(), 2);
    api.publish_stored("f.x", old_shape).await;

    api.post("/v1/schemas/order/rollback", &json!({"version": 9}))
        .await
        .expect_error(404, "schema_not_found");
    api.post(
        "/v1/schemas/order/versions",
        &json!({"definition": {"type": 5}}),
    )
    .await
    .expect_error(422, "invalid_config");
}
