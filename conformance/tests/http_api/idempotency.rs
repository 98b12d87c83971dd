//! Idempotent publishing: `Idempotency-Key` (and a batch item's
//! `idempotency_key`) is the station's de-duplication key, shared with NATS
//! `Nats-Msg-Id`: a repeat within the duplicate window is answered with the
//! original sequence and `duplicate: true`, and nothing new is stored.

use crate::support::{Api, within};
use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use junction_conformance::broker;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn repeated_key_is_stored_once() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("PAY", &["pay.*"]).await;
    let key = [("idempotency-key", "order-17")];
    let first = api
        .post_raw("/v1/subjects/pay.in", "17", &key)
        .await
        .expect(201);
    assert_eq!(
        first,
        json!({"station": "PAY", "seq": 1, "duplicate": false})
    );
    let again = api
        .post_raw("/v1/subjects/pay.in", "17", &key)
        .await
        .expect(201);
    assert_eq!(
        again,
        json!({"station": "PAY", "seq": 1, "duplicate": true})
    );
    // Through the station route too.
    let again = api
        .post_raw("/v1/stations/PAY/messages?subject=pay.in", "17", &key)
        .await
        .expect(201);
    assert_eq!(again["duplicate"], true);
    // A different key is a different message.
    let other = api
        .post_raw(
            "/v1/subjects/pay.in",
            "18",
            &[("idempotency-key", "order-18")],
        )
        .await
        .expect(201);
    assert_eq!(other["seq"], 2);
    let m = api.get("/v1/stations/PAY/messages/1").await.expect(200);
    assert_eq!(m["headers"]["Nats-Msg-Id"], "order-17");
    assert_eq!(
        api.get("/v1/stations/PAY").await.expect(200)["state"]["messages"],
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_keys_dedupe_within_and_across_requests() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("B", &["b"]).await;
    let r = api
        .post(
            "/v1/stations/B/messages/batch",
            &json!([
                {"payload": "a", "idempotency_key": "k1"},
                {"payload": "b", "idempotency_key": "k2"},
                {"payload": "a", "idempotency_key": "k1"},
            ]),
        )
        .await
        .expect(200);
    assert_eq!(
        r["results"],
        json!([
            {"seq": 1, "duplicate": false},
            {"seq": 2, "duplicate": false},
            {"seq": 1, "duplicate": true},
        ])
    );
    let r = api
        .post(
            "/v1/stations/B/messages/batch",
            &json!([{"payload": "b", "idempotency_key": "k2"}]),
        )
        .await
        .expect(200);
    assert_eq!(r["results"], json!([{"seq": 2, "duplicate": true}]));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_key_and_nats_msg_id_share_the_window() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("X", &["x"]).await;
    api.post_raw("/v1/subjects/x", "1", &[("idempotency-key", "same")])
        .await
        .expect(201);

    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", "same");
    let ack = within("publish", async {
        js.publish_with_headers("x", headers, Bytes::from_static(b"1"))
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await;
    assert!(ack.duplicate);
    assert_eq!(ack.sequence, 1);
}
