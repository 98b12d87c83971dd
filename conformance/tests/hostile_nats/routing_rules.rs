//! Routing rules cannot stop the broker's own traffic, a rule that would match
//! every message must say so, and a producer whose message a rule dropped is told
//! (JetStream: PubAck error 19002).

use crate::js::{self, api, expect_api_error};
use junction_conformance::broker;
use serde_json::json;

async fn put_rule(
    broker: &junction_conformance::TestBroker,
    rule: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/routing/rules", broker.http_url()))
        .json(&rule)
        .send()
        .await
        .expect("HTTP request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn a_rule_without_predicates_is_refused_unless_match_all() {
    let broker = broker().await;
    let (status, body) = put_rule(
        &broker,
        json!({"name":"x","match":[],"action":{"drop":true}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_config", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("match_all"),
        "{body}"
    );
    for subjects in [json!(["$JS.API.>"]), json!(["_INBOX.>"])] {
        let (status, body) = put_rule(
            &broker,
            json!({"name":"y","subjects":subjects,"match_all":true,"action":{"drop":true}}),
        )
        .await;
        assert_eq!(status, 422, "{body}");
    }
}

#[tokio::test]
async fn a_drop_everything_rule_leaves_jetstream_working_and_tells_producers() {
    let broker = broker().await;
    let (client, jsx) = js::connect(&broker).await;
    js::simple_stream(&jsx, "ORDERS", &["orders.>"]).await;
    let (status, body) = put_rule(
        &broker,
        json!({"name":"x","match":[],"match_all":true,"action":{"drop":true}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // The JetStream API is out of the rule's reach.
    let info = api(&client, "$JS.API.STREAM.INFO.ORDERS", "").await;
    assert!(info["error"].is_null(), "{info}");
    assert!(jsx.get_stream("ORDERS").await.is_ok());

    // A JetStream publish the rule dropped gets a PubAck error naming the rule.
    let r = api(&client, "orders.new", "hello").await;
    let text = expect_api_error(&r, 400, 19002);
    assert!(text.contains("'x'"), "{text}");
    let err = jsx
        .publish("orders.new", "hello".into())
        .await
        .expect("publish sent")
        .await
        .expect_err("the rule dropped it");
    assert!(err.to_string().contains("routing rule"), "{err}");

    // HTTP producers get 202 with dropped_by.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/subjects/orders.http", broker.http_url()))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["dropped_by"], "x", "{body}");

    assert_eq!(js::stream_state(&jsx, "ORDERS").await.messages, 0);
}
