//! The schema registry's admin routes: create, list, read, delete (refused while a
//! station uses the schema), bad definitions, and persistence across a restart.

use crate::support::Api;
use junction_conformance::{broker, start_in};
use serde_json::{Value, json};

pub fn order_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "amount"],
        "properties": {
            "id": {"type": "string"},
            "amount": {"type": "number", "minimum": 0}
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn create_list_get_delete() {
    let b = broker().await;
    let api = Api::new(&b);
    let created = api
        .post(
            "/v1/schemas",
            &json!({"name": "order", "type": "json", "definition": order_schema()}),
        )
        .await
        .expect(201);
    assert_eq!(created["name"], "order");
    assert_eq!(created["type"], "json");
    assert_eq!(created["active_version"], 1);
    assert_eq!(created["versions"][0]["version"], 1);
    assert_eq!(created["versions"][0]["definition"], order_schema());
    assert_eq!(created["stations"], json!([]));

    api.post(
        "/v1/schemas",
        &json!({"name": "order", "definition": order_schema()}),
    )
    .await
    .expect_error(409, "schema_exists");

    let list = api.get("/v1/schemas").await.expect(200);
    assert_eq!(list["schemas"].as_array().unwrap().len(), 1);
    assert_eq!(list["schemas"][0]["name"], "order");

    api.get("/v1/schemas/nope")
        .await
        .expect_error(404, "schema_not_found");

    // Attached: the station names it, and it cannot be deleted.
    api.post(
        "/v1/stations",
        &json!({"name": "orders", "subjects": ["orders.>"], "schema": "order"}),
    )
    .await
    .expect(201);
    let got = api.get("/v1/schemas/order").await.expect(200);
    assert_eq!(got["stations"], json!(["orders"]));
    let msg = api
        .delete("/v1/schemas/order")
        .await
        .expect_error(409, "schema_in_use");
    assert!(msg.contains("orders"), "{msg}");

    // Detached (the station is replaced without a schema): now it can go.
    api.put("/v1/stations/orders", &json!({"subjects": ["orders.>"]}))
        .await
        .expect(200);
    api.delete("/v1/schemas/order").await.expect(204);
    api.get("/v1/schemas/order")
        .await
        .expect_error(404, "schema_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_definitions_and_references_are_refused() {
    let b = broker().await;
    let api = Api::new(&b);
    api.post(
        "/v1/schemas",
        &json!({"name": "broken", "definition": {"type": "no-such-type"}}),
    )
    .await
    .expect_error(422, "invalid_config");
    api.post(
        "/v1/schemas",
        &json!({"name": "bad name!", "definition": order_schema()}),
    )
    .await
    .expect_error(422, "invalid_config");
    api.post(
        "/v1/schemas",
        &json!({"name": "x", "type": "protobuf", "definition": {}}),
    )
    .await
    .expect_error(422, "invalid_config");
    // A station may only name a schema (and version) that exists.
    api.post("/v1/stations", &json!({"name": "s", "schema": "missing"}))
        .await
        .expect_error(422, "invalid_config");
    api.post(
        "/v1/schemas",
        &json!({"name": "order", "definition": order_schema()}),
    )
    .await
    .expect(201);
    api.post(
        "/v1/stations",
        &json!({"name": "s", "schema": "order", "schema_version": 2}),
    )
    .await
    .expect_error(422, "invalid_config");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemas_and_attachments_survive_a_restart() {
    let b = broker().await;
    let api = Api::new(&b);
    api.post(
        "/v1/schemas",
        &json!({"name": "order", "definition": order_schema()}),
    )
    .await
    .expect(201);
    api.post(
        "/v1/schemas/order/versions",
        &json!({"definition": {"type": "object", "required": ["id"]}}),
    )
    .await
    .expect(201);
    api.post(
        "/v1/stations",
        &json!({"name": "orders", "subjects": ["orders.>"], "schema": "order", "schema_version": 1}),
    )
    .await
    .expect(201);
    let (config, dir) = b.stop().await;

    let b = start_in(config, dir).await;
    let api = Api::new(&b);
    let got = api.get("/v1/schemas/order").await.expect(200);
    assert_eq!(got["active_version"], 2);
    assert_eq!(got["versions"].as_array().unwrap().len(), 2);
    assert_eq!(got["versions"][0]["definition"], order_schema());
    let station = api.get("/v1/stations/orders").await.expect(200);
    assert_eq!(station["schema"], "order");
    assert_eq!(station["schema_version"], 1);
    // Still enforced (version 1 wants an amount).
    api.publish("orders.new", r#"{"id":"a"}"#)
        .await
        .expect_error(422, "schema_violation");
    api.publish_stored("orders.new", r#"{"id":"a","amount":1}"#)
        .await;
}
