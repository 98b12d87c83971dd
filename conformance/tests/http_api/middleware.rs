//! What every response gets from the gateway's layers: an `x-request-id` (the
//! caller's, or a fresh one), CORS headers and preflight answers.

use crate::support::Api;
use junction_conformance::broker;

#[tokio::test(flavor = "multi_thread")]
async fn request_id_is_propagated_or_generated() {
    let b = broker().await;
    let api = Api::new(&b);
    let r = api
        .send(
            api.request(reqwest::Method::GET, "/v1/server")
                .header("x-request-id", "trace-me-42"),
        )
        .await;
    assert_eq!(
        r.headers.get("x-request-id").and_then(|v| v.to_str().ok()),
        Some("trace-me-42")
    );
    // Errors carry it too, and one is made up when the caller sent none.
    let r = api.get("/v1/stations/NOPE").await;
    let id = r
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(!id.is_empty());
    r.expect_error(404, "station_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_and_headers() {
    let b = broker().await;
    let api = Api::new(&b);
    let r = api
        .send(
            api.request(reqwest::Method::OPTIONS, "/v1/stations")
                .header("origin", "https://console.example")
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "content-type,authorization",
                ),
        )
        .await;
    assert!(r.status.is_success(), "{r:?}");
    assert!(
        r.headers.get("access-control-allow-origin").is_some(),
        "{r:?}"
    );
    assert!(
        r.headers.get("access-control-allow-methods").is_some(),
        "{r:?}"
    );

    let r = api
        .send(
            api.request(reqwest::Method::GET, "/v1/stations")
                .header("origin", "https://console.example"),
        )
        .await;
    assert!(
        r.headers.get("access-control-allow-origin").is_some(),
        "{r:?}"
    );
}
