//! The rules' admin routes: create, replace, list in order, read, delete, refuse
//! malformed rules, and keep them across a restart.

use crate::support::Api;
use junction_conformance::{broker, start_in};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn create_replace_list_delete_and_restart() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("s", &["s.>"]).await;
    let rule = json!({"name": "b", "priority": 5, "subjects": ["s.>"],
                      "match": [{"field": "/n", "gte": 3}], "action": {"drop": true}});
    let created = api.post("/v1/routing/rules", &rule).await.expect(201);
    assert_eq!(created["name"], "b");
    assert_eq!(created["match"][0]["gte"], 3.0);
    api.post(
        "/v1/routing/rules",
        &json!({"name": "a", "priority": 9, "match_all": true, "action": {"route": ["s"]}}),
    )
    .await
    .expect(201);
    // Same name: replaced (200), and the order follows priority.
    api.post(
        "/v1/routing/rules",
        &json!({"name": "a", "priority": 1, "match_all": true, "action": {"route": ["s"]}}),
    )
    .await
    .expect(200);
    let list = api.get("/v1/routing/rules").await.expect(200);
    let names: Vec<&str> = list["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);

    // It is enforced: n >= 3 is dropped, and the producer is told (202).
    let dropped = api.publish("s.x", r#"{"n": 4}"#).await.expect(202);
    assert_eq!(dropped["dropped_by"], "b");
    api.publish_stored("s.x", r#"{"n": 1}"#).await;

    let (config, dir) = b.stop().await;
    let b = start_in(config, dir).await;
    let api = Api::new(&b);
    let got = api.get("/v1/routing/rules/b").await.expect(200);
    assert_eq!(got, created);
    api.publish("s.x", r#"{"n": 4}"#).await.expect(202);
    api.delete("/v1/routing/rules/b").await.expect(204);
    api.get("/v1/routing/rules/b")
        .await
        .expect_error(404, "routing_rule_not_found");
    api.publish_stored("s.x", r#"{"n": 4}"#).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_rules_are_refused() {
    let b = broker().await;
    let api = Api::new(&b);
    for bad in [
        json!({"name": "x", "action": {}}),
        json!({"name": "x", "action": {"drop": true, "resubject": "y"}}),
        json!({"name": "x", "match": [{"header": "h"}], "action": {"drop": true}}),
        json!({"name": "x", "match": [{"header": "h", "gt": 1}], "action": {"drop": true}}),
        json!({"name": "x", "match": [{"field": "n", "exists": true}], "action": {"drop": true}}),
        json!({"name": "x", "subjects": ["a..b"], "action": {"drop": true}}),
        json!({"name": "x", "action": {"route": ["no-such-station"]}}),
        json!({"name": "bad name", "action": {"drop": true}}),
    ] {
        api.post("/v1/routing/rules", &bad)
            .await
            .expect_error(422, "invalid_config");
    }
    api.post(
        "/v1/routing/rules",
        &json!({"name": "x", "action": {"drop": true}, "unknown": 1}),
    )
    .await
    .expect_error(400, "invalid_json");
}
