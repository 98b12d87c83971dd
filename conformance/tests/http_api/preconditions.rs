//! Optimistic concurrency over HTTP: the `Junction-Expected-*` request headers
//! are preconditions checked against the station before a message is stored. A
//! failed one answers `412 Precondition Failed` with the same error codes as the
//! older form (JetStream's `Nats-Expected-*` headers set as message headers through
//! `X-Junction-Header-*`), which keeps its `409`. Malformed values are a 400
//! before anything is published; nothing refused is stored.

use crate::support::Api;
use junction_conformance::broker;
use serde_json::json;

fn error(code: &str, message: &str) -> serde_json::Value {
    json!({"error": {"code": code, "message": message}})
}

/// Publishes `body` to `path` with `headers`, expects it refused with `status`,
/// and returns the error body.
async fn refused(
    api: &Api,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
    status: u16,
) -> serde_json::Value {
    let r = api.post_raw(path, body, headers).await;
    assert_eq!(r.status.as_u16(), status, "{r:?}");
    r.json
}

async fn messages(api: &Api, station: &str) -> u64 {
    api.get(&format!("/v1/stations/{station}"))
        .await
        .expect(200)["state"]["messages"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn expected_last_sequence_is_a_412_precondition() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("ORDERS", &["orders.*"]).await;
    api.publish_stored("orders.eu", "1").await;
    api.publish_stored("orders.us", "2").await;

    let refusal = refused(
        &api,
        "/v1/subjects/orders.eu",
        "3",
        &[("Junction-Expected-Last-Sequence", "1")],
        412,
    )
    .await;
    assert_eq!(
        refusal,
        error(
            "wrong_last_sequence",
            "expected last sequence does not match: the station's last sequence is 2"
        )
    );
    assert_eq!(messages(&api, "ORDERS").await, 2);
    // Through the station route as well, and it is stored once it matches.
    refused(
        &api,
        "/v1/stations/ORDERS/messages?subject=orders.eu",
        "3",
        &[("Junction-Expected-Last-Sequence", "7")],
        412,
    )
    .await;
    let ok = api
        .post_raw(
            "/v1/subjects/orders.eu",
            "3",
            &[("Junction-Expected-Last-Sequence", "2")],
        )
        .await
        .expect(201);
    assert_eq!(
        ok,
        json!({"station": "ORDERS", "seq": 3, "duplicate": false})
    );
    // The precondition is not a message header: nothing of it is stored.
    let m = api.get("/v1/stations/ORDERS/messages/3").await.expect(200);
    assert_eq!(m["headers"], json!({}), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn subject_station_and_idempotency_key_preconditions() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("ORDERS", &["orders.*"]).await;
    api.post_raw("/v1/subjects/orders.eu", "1", &[("Idempotency-Key", "k-1")])
        .await
        .expect(201);
    api.publish_stored("orders.us", "2").await;

    // Last sequence on the subject: orders.eu was last stored at 1, orders.new never.
    let refusal = refused(
        &api,
        "/v1/subjects/orders.eu",
        "x",
        &[("Junction-Expected-Last-Subject-Sequence", "2")],
        412,
    )
    .await;
    assert_eq!(
        refusal,
        error(
            "wrong_last_subject_sequence",
            "expected last subject sequence does not match: the subject's last sequence is 1"
        )
    );
    api.post_raw(
        "/v1/subjects/orders.new",
        "x",
        &[("Junction-Expected-Last-Subject-Sequence", "0")],
    )
    .await
    .expect(201);

    // The station that captures the subject.
    let refusal = refused(
        &api,
        "/v1/subjects/orders.eu",
        "x",
        &[("Junction-Expected-Station", "PAYMENTS")],
        412,
    )
    .await;
    assert_eq!(
        refusal,
        error(
            "wrong_expected_station",
            "the message was captured by another station than the expected one"
        )
    );
    api.post_raw(
        "/v1/subjects/orders.eu",
        "x",
        &[("Junction-Expected-Station", "ORDERS")],
    )
    .await
    .expect(201);

    // The last idempotency key the station stored.
    let refusal = refused(
        &api,
        "/v1/subjects/orders.eu",
        "x",
        &[("Junction-Expected-Last-Idempotency-Key", "k-0")],
        412,
    )
    .await;
    assert_eq!(
        refusal,
        error(
            "wrong_last_msg_id",
            "expected last message id does not match: the station's last message id is 'k-1'"
        )
    );
    let ok = api
        .post_raw(
            "/v1/subjects/orders.eu",
            "x",
            &[
                ("Junction-Expected-Last-Idempotency-Key", "k-1"),
                ("Idempotency-Key", "k-2"),
            ],
        )
        .await
        .expect(201);
    assert_eq!(
        ok,
        json!({"station": "ORDERS", "seq": 5, "duplicate": false})
    );
    assert_eq!(messages(&api, "ORDERS").await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn older_form_keeps_409_and_the_new_header_wins() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("S", &["s.*"]).await;
    api.publish_stored("s.a", "1").await;
    let refusal = refused(
        &api,
        "/v1/subjects/s.a",
        "2",
        &[("X-Junction-Header-Nats-Expected-Last-Sequence", "5")],
        409,
    )
    .await;
    assert_eq!(
        refusal,
        error(
            "wrong_last_sequence",
            "expected last sequence does not match: the station's last sequence is 1"
        )
    );
    // Both forms: the request header decides (and a failure is then a 412).
    api.post_raw(
        "/v1/subjects/s.a",
        "2",
        &[
            ("X-Junction-Header-Nats-Expected-Last-Sequence", "5"),
            ("Junction-Expected-Last-Sequence", "1"),
        ],
    )
    .await
    .expect(201);
    let refusal = refused(
        &api,
        "/v1/subjects/s.a",
        "3",
        &[
            ("X-Junction-Header-Nats-Expected-Last-Sequence", "2"),
            ("Junction-Expected-Last-Sequence", "1"),
        ],
        412,
    )
    .await;
    assert_eq!(refusal["error"]["code"], "wrong_last_sequence");
    // The older form is a message header: stored as the producer set it.
    let m = api.get("/v1/stations/S/messages/2").await.expect(200);
    assert_eq!(m["headers"], json!({"Nats-Expected-Last-Sequence": "5"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_preconditions_are_400_and_store_nothing() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("S", &["s.*"]).await;
    api.publish_stored("s.a", "1").await;
    for (name, value, message) in [
        (
            "Junction-Expected-Last-Sequence",
            "one",
            "Junction-Expected-Last-Sequence: 'one' is not a sequence number (a whole number, 0 or more)",
        ),
        (
            "Junction-Expected-Last-Subject-Sequence",
            "-1",
            "Junction-Expected-Last-Subject-Sequence: '-1' is not a sequence number (a whole number, 0 or more)",
        ),
        (
            "X-Junction-Header-Nats-Expected-Last-Sequence",
            "1x",
            "Nats-Expected-Last-Sequence: '1x' is not a sequence number (a whole number, 0 or more)",
        ),
        (
            "Junction-Expected-Station",
            "",
            "Junction-Expected-Station: the value is empty",
        ),
    ] {
        let r = api
            .post_raw("/v1/subjects/s.a", "2", &[(name, value)])
            .await;
        assert_eq!(r.status.as_u16(), 400, "{name}: {r:?}");
        assert_eq!(r.json, error("invalid_header", message), "{name}");
    }
    // A batch has no one last sequence: the request headers are refused there.
    let r = api
        .send(
            api.request(reqwest::Method::POST, "/v1/stations/S/messages/batch")
                .header("content-type", "application/json")
                .header("Junction-Expected-Last-Sequence", "1")
                .body(json!([{"subject": "s.a", "payload": "b"}]).to_string()),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400, "{r:?}");
    assert_eq!(
        r.json,
        error(
            "invalid_header",
            "Junction-Expected-Last-Sequence: not supported on a batch (each item may carry the older form in its headers)"
        )
    );
    assert_eq!(messages(&api, "S").await, 1);
}
