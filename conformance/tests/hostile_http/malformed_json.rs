//! Malformed JSON bodies, as a fuzzer or a broken client sends them: each gets a
//! 4xx with the JSON error body (`400 invalid_json` for what does not parse or
//! does not fit the shape, `422` for a well-formed body with values out of range),
//! never a 500, a plain-text answer or a dropped connection.

use crate::raw::exchange;
use crate::support::Api;
use junction_conformance::broker;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn bodies_that_do_not_parse_are_400_invalid_json() {
    let b = broker().await;
    let api = Api::new(&b);
    let json = [("content-type", "application/json")];
    let mut nested = "[".repeat(100_000);
    nested.push_str(&"]".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", b"{\"name\":\"A\"".to_vec()),
        ("not UTF-8", b"{\"name\":\"\xff\xfe\"}".to_vec()),
        ("NUL bytes", b"\0\0\0\0".to_vec()),
        ("a bare string", b"\"station\"".to_vec()),
        ("an array", b"[1,2,3]".to_vec()),
        ("deep nesting", nested.into_bytes()),
        ("trailing garbage", b"{\"name\":\"A\"} {}".to_vec()),
        (
            "a duplicated key",
            b"{\"name\":\"A\",\"name\":\"B\"}".to_vec(),
        ),
        (
            "a number too large",
            b"{\"name\":\"A\",\"max_msgs\":1e400}".to_vec(),
        ),
    ];
    for (what, body) in cases {
        let r = api.post_raw("/v1/stations", body, &json).await;
        assert_eq!(r.status.as_u16(), 400, "{what}: {r:?}");
        r.expect_error(400, "invalid_json");
    }
    // Nothing was created on the way.
    let list = api.get("/v1/stations").await.expect(200);
    assert_eq!(list["stations"], json!([]), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn well_formed_bodies_with_bad_values_are_422() {
    let b = broker().await;
    let api = Api::new(&b);
    // An empty body reads as `{}`: well-formed, but a station needs a name.
    api.post_raw("/v1/stations", "", &[("content-type", "application/json")])
        .await
        .expect_error(422, "invalid_config");
    api.post("/v1/stations", &json!({"name": "has.dots"}))
        .await
        .expect_error(422, "invalid_config");
    api.station("S", &["s.>"]).await;
    api.post(
        "/v1/stations/S/groups",
        &json!({"name": "g", "ack_wait_ms": 0}),
    )
    .await
    .expect_error(422, "invalid_group_config");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_hyper_cannot_parse_is_400() {
    let b = broker().await;
    let addr = b.running.http_addr().unwrap();
    // A header line with no colon: refused before any route.
    let answer = exchange(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nbroken header\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");
}
