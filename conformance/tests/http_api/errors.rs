//! Every error status the gateway answers over a socket, each with its JSON shape
//! and code: 400, 403, 404, 405, 409, 413, 422 and 429. (401 is in `auth.rs`; 500
//! and 503 are router tests in `junction-http`.)

use crate::support::{Api, poll_until};
use junction_conformance::{broker, broker_with};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_400() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("S", &["s.*"]).await;
    api.group("S", "g", json!({})).await;

    api.post_raw("/v1/stations", "{not json", &[])
        .await
        .expect_error(400, "invalid_json");
    api.post("/v1/stations", &json!({"name": "X", "colour": "red"}))
        .await
        .expect_error(400, "invalid_json");
    api.post("/v1/stations", &json!({"name": 7}))
        .await
        .expect_error(400, "invalid_json");
    api.publish("s.*", "wild")
        .await
        .expect_error(400, "invalid_subject");
    api.publish("a..b", "empty token")
        .await
        .expect_error(400, "invalid_subject");
    api.post_raw("/v1/stations/S/messages", "x", &[])
        .await
        .expect_error(400, "subject_required");
    api.post_raw("/v1/stations/S/messages?subject=t.x", "x", &[])
        .await
        .expect_error(400, "subject_not_in_station");
    api.get("/v1/stations/S/messages/abc")
        .await
        .expect_error(400, "invalid_path");
    api.get("/v1/stations/S/messages?limit=many")
        .await
        .expect_error(400, "invalid_query");
    api.get("/v1/stations/S/messages?from_time=yesterday")
        .await
        .expect_error(400, "invalid_query");
    api.get("/v1/stations/S/messages?from_seq=1&from_time=2020-01-01T00:00:00Z")
        .await
        .expect_error(400, "invalid_query");
    api.post(
        "/v1/stations/S/groups/g/ack",
        &json!({"ack": ["bm90LWEtdG9rZW4"]}),
    )
    .await
    .expect_error(400, "invalid_ack_token");
    api.post("/v1/stations/S/messages/batch", &json!({"subject": "s.a"}))
        .await
        .expect_error(400, "invalid_json");
    api.post_raw(
        "/v1/stations/S/messages/batch",
        "{\"subject\":\"s.a\"}\n{oops\n",
        &[("content-type", "application/x-ndjson")],
    )
    .await
    .expect_error(400, "invalid_json");
    api.post_raw("/v1/subjects/s.a", "x", &[("x-junction-header-", "v")])
        .await
        .expect_error(400, "invalid_header");
    api.post(
        "/v1/stations/S/groups",
        &json!({"name": "f", "filter_subjects": ["a..b"]}),
    )
    .await
    .expect_error(400, "invalid_subject");
    // Nothing was published by the refused requests.
    assert_eq!(
        api.get("/v1/stations/S").await.expect(200)["state"]["messages"],
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_operations_are_403() {
    let b = broker().await;
    let api = Api::new(&b);
    api.post(
        "/v1/stations",
        &json!({"name": "LOCKED", "deny_delete": true, "deny_purge": true}),
    )
    .await
    .expect(201);
    api.publish_stored("LOCKED", "keep me").await;
    // In this API's words (stations, their fields), not nats-server's ("stream purge
    // is not permitted").
    let message = api
        .post("/v1/stations/LOCKED/purge", &json!({}))
        .await
        .expect_error(403, "denied");
    assert_eq!(message, "the station denies purges (deny_purge)");
    let message = api
        .delete("/v1/stations/LOCKED/messages/1")
        .await
        .expect_error(403, "denied");
    assert_eq!(message, "the station denies message deletes (deny_delete)");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_things_are_404_and_wrong_methods_405() {
    let b = broker().await;
    let api = Api::new(&b);
    api.get("/v1/stations/NOPE")
        .await
        .expect_error(404, "station_not_found");
    api.post_raw("/v1/stations/NOPE/messages", "x", &[])
        .await
        .expect_error(404, "station_not_found");
    api.get("/v1/stations/NOPE/messages")
        .await
        .expect_error(404, "station_not_found");
    api.station("S", &["s"]).await;
    api.get("/v1/stations/S/groups/none")
        .await
        .expect_error(404, "group_not_found");
    api.post(
        "/v1/stations/S/groups/none/fetch",
        &json!({"max_wait_ms": 0}),
    )
    .await
    .expect_error(404, "group_not_found");
    api.post("/v1/stations/S/groups/none/ack", &json!({}))
        .await
        .expect_error(404, "group_not_found");
    api.get("/v1/stations/S/messages/1")
        .await
        .expect_error(404, "message_not_found");
    api.get("/v1/no/such/route")
        .await
        .expect_error(404, "route_not_found");

    let r = api
        .send(api.request(reqwest::Method::PATCH, "/v1/stations"))
        .await;
    let allow = r
        .headers
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    r.expect_error(405, "method_not_allowed");
    assert!(allow.contains("POST") && allow.contains("GET"), "{allow}");
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicts_are_409() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("A", &["a.>"]).await;
    api.post("/v1/stations", &json!({"name": "A", "subjects": ["a.x"]}))
        .await
        .expect_error(409, "station_exists");
    api.post("/v1/stations", &json!({"name": "B", "subjects": ["a.b"]}))
        .await
        .expect_error(409, "subjects_overlap");
    api.group("A", "g", json!({"ack_wait_ms": 1000})).await;
    api.post(
        "/v1/stations/A/groups",
        &json!({"name": "g", "ack_wait_ms": 2000}),
    )
    .await
    .expect_error(409, "group_exists");

    api.publish_stored("a.one", "1").await;
    let message = api
        .post_raw(
            "/v1/subjects/a.two",
            "2",
            &[("x-junction-header-nats-expected-last-sequence", "7")],
        )
        .await
        .expect_error(409, "wrong_last_sequence");
    assert_eq!(
        message,
        "expected last sequence does not match: the station's last sequence is 1"
    );
    // With the right expectation it is stored.
    api.post_raw(
        "/v1/subjects/a.two",
        "2",
        &[("x-junction-header-nats-expected-last-sequence", "1")],
    )
    .await
    .expect(201);
}

#[tokio::test(flavor = "multi_thread")]
async fn too_large_is_413() {
    let b = broker_with(|c| c.limits.max_payload = 1024).await;
    let api = Api::new(&b);
    api.post("/v1/stations", &json!({"name": "SMALL", "max_msg_size": 8}))
        .await
        .expect(201);
    // Larger than the broker's max_payload: refused by the body limit.
    api.post_raw("/v1/subjects/SMALL", vec![b'x'; 2000], &[])
        .await
        .expect_error(413, "payload_too_large");
    api.post_raw("/v1/stations/SMALL/messages", vec![b'x'; 2000], &[])
        .await
        .expect_error(413, "payload_too_large");
    // Within max_payload but over the station's max_msg_size: refused by the station.
    api.publish("SMALL", "0123456789")
        .await
        .expect_error(413, "message_too_large");
    // In a batch each message is checked on its own.
    let r = api
        .post(
            "/v1/stations/SMALL/messages/batch",
            &json!([{"payload": "ok"}, {"payload": "x".repeat(1500)}, {"payload": "0123456789"}]),
        )
        .await
        .expect(200);
    assert_eq!(r["results"][0], json!({"seq": 1, "duplicate": false}));
    assert_eq!(r["results"][1]["error"]["code"], "payload_too_large");
    assert_eq!(r["results"][2]["error"]["code"], "message_too_large");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_values_are_422() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("S", &["s"]).await;
    api.group("S", "g", json!({})).await;
    api.post("/v1/stations", &json!({"subjects": ["x"]}))
        .await
        .expect_error(422, "invalid_config");
    api.post("/v1/stations", &json!({"name": "bad.name"}))
        .await
        .expect_error(422, "invalid_config");
    api.put("/v1/stations/S", &json!({"name": "T"}))
        .await
        .expect_error(422, "name_mismatch");
    api.get("/v1/stations/S/messages?limit=5000")
        .await
        .expect_error(422, "invalid_limit");
    api.post("/v1/stations/S/groups/g/fetch", &json!({"batch": 0}))
        .await
        .expect_error(422, "invalid_batch");
    api.post(
        "/v1/stations/S/groups/g/fetch",
        &json!({"max_wait_ms": 3_600_000}),
    )
    .await
    .expect_error(422, "invalid_max_wait");
    api.post(
        "/v1/stations/S/groups",
        &json!({"name": "x", "deliver_policy": "by_start_sequence"}),
    )
    .await
    .expect_error(422, "invalid_group_config");
    api.post(
        "/v1/stations/S/groups",
        &json!({"name": "y", "start_seq": 4}),
    )
    .await
    .expect_error(422, "invalid_group_config");
    let many: Vec<_> = (0..1001).map(|_| json!({"payload": "x"})).collect();
    api.post("/v1/stations/S/messages/batch", &json!(many))
        .await
        .expect_error(422, "too_many_messages");
}

#[tokio::test(flavor = "multi_thread")]
async fn back_pressure_is_429() {
    let b = broker().await;
    let api = Api::new(&b);
    api.post(
        "/v1/stations",
        &json!({"name": "FULL", "retention": {"max_msgs": 1, "discard": "new"}}),
    )
    .await
    .expect(201);
    api.publish_stored("FULL", "first").await;
    let message = api
        .publish("FULL", "second")
        .await
        .expect_error(429, "station_full");
    assert_eq!(
        message,
        "the station is full (max_msgs) and discards new messages"
    );

    // One fetch may wait on this group; a second one is turned away.
    api.station("W", &["w"]).await;
    api.group("W", "g", json!({"max_waiting": 1})).await;
    let waiting = {
        let api = api.clone();
        tokio::spawn(async move { api.fetch("W", "g", 1, 20_000).await })
    };
    poll_until("the first fetch to wait", || {
        let api = api.clone();
        async move { api.group_state("W", "g").await["waiting"] == 1 }
    })
    .await;
    api.post(
        "/v1/stations/W/groups/g/fetch",
        &json!({"max_wait_ms": 1000}),
    )
    .await
    .expect_error(429, "too_many_waiting");
    // Let the waiting fetch finish.
    api.publish_stored("w", "done").await;
    assert_eq!(waiting.await.unwrap().len(), 1);
}
