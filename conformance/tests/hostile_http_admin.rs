//! The HTTP admin and produce API's part of the hostile battery (issue 12): bad
//! names, negative limits, NUL in subjects, the broker's internal stations and
//! routing rules, each with the exact status and JSON error code, and nothing
//! stored behind a refusal. (Transport-level abuse — slow headers, WebSocket
//! protocol errors — is in `hostile_http.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "http_api/support.rs"]
mod support;

use junction_conformance::mqtt_broker;
use serde_json::json;
use support::Api;

#[tokio::test]
async fn negative_limits_are_refused_with_422() {
    let broker = junction_conformance::broker().await;
    let api = Api::new(&broker);
    for field in [
        "max_msgs",
        "max_bytes",
        "max_msgs_per_subject",
        "max_msg_size",
        "max_consumers",
    ] {
        let mut body = json!({"name": "neg", "subjects": ["neg.>"]});
        if field.starts_with("max_msg_size") || field == "max_consumers" {
            body[field] = json!(-5);
        } else {
            body["retention"] = json!({ field: -5 });
        }
        let message = api
            .post("/v1/stations", &body)
            .await
            .expect_error(422, "invalid_config");
        assert_eq!(
            message,
            format!("{field} must be -1 (unlimited) or a positive number, not -5")
        );
    }
    api.station("ok", &["ok.>"]).await;
    for (field, value) in [("max_deliver", -5), ("max_ack_pending", -7)] {
        let reply = api
            .post(
                "/v1/stations/ok/groups",
                &json!({"name": "g", field: value}),
            )
            .await;
        let message = reply.expect_error(422, "invalid_group_config");
        assert!(message.contains(field), "{message}");
    }
    let names = api.get("/v1/stations").await.expect(200);
    assert_eq!(names.to_string().matches("\"neg\"").count(), 0, "{names}");
}

#[tokio::test]
async fn names_and_subjects_are_validated_at_ingress() {
    let broker = junction_conformance::broker().await;
    let api = Api::new(&broker);
    api.station("s", &["s.>"]).await;
    let long_group = "g".repeat(10_000);
    let message = api
        .post("/v1/stations/s/groups", &json!({"name": long_group}))
        .await
        .expect_error(422, "invalid_group_config");
    assert_eq!(message, "consumer name is too long, maximum allowed is 255");
    let message = api
        .post(
            "/v1/stations",
            &json!({"name": "a\u{0}b", "subjects": ["n.x"]}),
        )
        .await
        .expect_error(422, "invalid_config");
    assert_eq!(message, "stream name can not contain control characters");
    let message = api
        .post(
            "/v1/stations",
            &json!({"name": "x".repeat(256), "subjects": ["n.y"]}),
        )
        .await
        .expect_error(422, "invalid_config");
    assert_eq!(message, "stream name is too long, maximum allowed is 255");
    // `%00` in a subject path.
    let reply = api.publish("s.a%00b", "hi").await;
    let message = reply.expect_error(400, "invalid_subject");
    assert!(message.contains("control character"), "{message}");
    let info = api.get("/v1/stations/s").await.expect(200);
    assert_eq!(info["state"]["messages"], 0, "{info}");
}

#[tokio::test]
async fn internal_stations_and_subjects_are_out_of_reach() {
    let broker = mqtt_broker().await;
    let api = Api::new(&broker);
    // MQTT's stations exist once an MQTT client connected.
    let options = rumqttc::MqttOptions::new("dev", "127.0.0.1", broker.mqtt_port());
    let (_mqtt, mut events) = rumqttc::AsyncClient::new(options, 8);
    support::within("MQTT CONNACK", async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) =
                events.poll().await.expect("MQTT poll")
            {
                break;
            }
        }
    })
    .await;
    api.get("/v1/stations/$MQTT_sess").await.expect(200);
    api.delete("/v1/stations/$MQTT_sess")
        .await
        .expect_error(403, "internal_station");
    api.post("/v1/stations/$MQTT_msgs/purge", &json!({}))
        .await
        .expect_error(403, "internal_station");
    api.post("/v1/stations/$MQTT_msgs/groups", &json!({"name": "spy"}))
        .await
        .expect_error(403, "internal_station");
    api.post(
        "/v1/stations",
        &json!({"name": "$MQTT_x", "subjects": ["x.>"]}),
    )
    .await
    .expect_error(422, "invalid_config");
    let message = api
        .post(
            "/v1/stations",
            &json!({"name": "inbox", "subjects": ["_INBOX.>"]}),
        )
        .await
        .expect_error(422, "invalid_config");
    assert!(message.contains("reserved"), "{message}");
    api.publish("$MQTT.sess.abc", "{}")
        .await
        .expect_error(403, "internal_subject");
    api.get("/v1/stations/$MQTT_sess").await.expect(200);
}

#[tokio::test]
async fn routing_rules_cannot_reach_internal_traffic() {
    let broker = junction_conformance::broker().await;
    let api = Api::new(&broker);
    api.post(
        "/v1/routing/rules",
        &json!({"name": "x", "match": [], "action": {"drop": true}}),
    )
    .await
    .expect_error(422, "invalid_config");
    api.post(
        "/v1/routing/rules",
        &json!({"name": "x", "match_all": true, "action": {"resubject": "$JS.API.STREAM.DELETE.s"}}),
    )
    .await
    .expect_error(422, "invalid_config");
    api.station("s", &["s.>"]).await;
    api.post(
        "/v1/routing/rules",
        &json!({"name": "x", "match_all": true, "action": {"drop": true}}),
    )
    .await
    .expect(201);
    let body = api.publish("s.a", "hi").await.expect(202);
    assert_eq!(body, json!({"dropped_by": "x", "delivered": 0}));
    let body = api
        .post_raw("/v1/stations/s/messages?subject=s.b", "hi", &[])
        .await
        .expect(202);
    assert_eq!(body["dropped_by"], "x", "{body}");
    let info = api.get("/v1/stations/s").await.expect(200);
    assert_eq!(info["state"]["messages"], 0, "{info}");
}
