//! Response compression (gzip when asked for) and CORS with configured origins.

use crate::support::{Api, within};
use junction_conformance::{broker, broker_with};

#[tokio::test(flavor = "multi_thread")]
async fn large_json_responses_are_gzipped_when_asked() {
    let b = broker().await;
    let api = Api::new(&b);
    let response = within(
        "openapi",
        api.request(reqwest::Method::GET, "/v1/openapi.json")
            .header("accept-encoding", "gzip")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let body = within("body", response.bytes()).await.unwrap();
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream");

    // Server-Sent Events are never compressed: events must arrive as written.
    let events = within(
        "event stream",
        api.request(reqwest::Method::GET, "/v1/subjects/gz.%3E/events")
            .header("accept-encoding", "gzip")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(events.status().as_u16(), 200);
    assert!(events.headers().get("content-encoding").is_none());
    drop(events);

    // Without Accept-Encoding the body is plain JSON.
    let plain = api.get("/v1/openapi.json").await;
    assert!(plain.headers.get("content-encoding").is_none());
    assert!(plain.json["paths"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_allows_only_configured_origins() {
    let b = broker_with(|c| c.http.cors_origins = vec!["https://app.example".into()]).await;
    let api = Api::new(&b);
    let allowed = |origin: &'static str| {
        let api = api.clone();
        async move {
            let response = within(
                "preflight",
                api.request(reqwest::Method::OPTIONS, "/v1/stations")
                    .header("origin", origin)
                    .header("access-control-request-method", "POST")
                    .send(),
            )
            .await
            .unwrap();
            response
                .headers()
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        }
    };
    assert_eq!(
        allowed("https://app.example").await.as_deref(),
        Some("https://app.example")
    );
    assert_eq!(allowed("https://evil.example").await, None);

    // A simple request from the configured origin gets it echoed too.
    let response = within(
        "get",
        api.request(reqwest::Method::GET, "/v1/stations")
            .header("origin", "https://app.example")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example")
    );

    // The default configuration allows any origin.
    let open = broker().await;
    let response = within(
        "get",
        Api::new(&open)
            .request(reqwest::Method::GET, "/v1/stations")
            .header("origin", "https://anywhere.example")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
}
