//! A WebSocket upgrade with a `Sec-WebSocket-Version` other than 13 is answered
//! `426 Upgrade Required` with `Sec-WebSocket-Version: 13` (RFC 6455 §4.4) and the
//! JSON error body, on `/v1/ws` and on `/mqtt`; a request that is not an upgrade
//! at all stays 400.

use crate::raw::{exchange, exchange_one, upgrade_request};
use junction_conformance::broker_with;

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_version_gets_426_with_the_version_we_speak() {
    let b = broker_with(|_| {}).await;
    let addr = b.running.http_addr().unwrap();
    for path in ["/v1/ws", "/mqtt"] {
        for version in ["8", "14", "banana"] {
            let answer = exchange_one(addr, &upgrade_request(path, version, None)).await;
            answer.expect_error(426, "upgrade_required");
            assert_eq!(
                answer.header("sec-websocket-version"),
                Some("13"),
                "{path} {version}: {answer:?}"
            );
        }
        let plain = exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        plain.expect_error(400, "bad_request");
    }
}
