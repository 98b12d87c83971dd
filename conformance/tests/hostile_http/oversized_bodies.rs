//! Oversized bodies: beyond `limits.max_payload` (batch: its own limit) a body is
//! answered `413 {"error":{"code":"payload_too_large"}}`, whether its length is
//! announced, lied about or only found while reading a chunked body.

use crate::raw::exchange;
use crate::support::Api;
use junction_conformance::broker_with;

#[tokio::test(flavor = "multi_thread")]
async fn too_large_bodies_are_413() {
    let b = broker_with(|c| c.limits.max_payload = 1024).await;
    let api = Api::new(&b);
    let addr = b.running.http_addr().unwrap();

    api.post_raw("/v1/subjects/big", vec![b'x'; 4096], &[])
        .await
        .expect_error(413, "payload_too_large");

    // A Content-Length of a terabyte, and no body: refused from the header alone.
    let answer = exchange(
        addr,
        b"POST /v1/subjects/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1099511627776\r\nConnection: close\r\n\r\n",
    )
    .await;
    answer.expect_error(413, "payload_too_large");

    // Chunked, with no length announced: refused once the limit is passed.
    let mut chunked = b"POST /v1/subjects/big HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'y'; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    exchange(addr, &chunked)
        .await
        .expect_error(413, "payload_too_large");

    // A batch beyond its own limit (8 MiB at least), announced in the head.
    api.station("BIG", &["big.>"]).await;
    let head = format!(
        "POST /v1/stations/BIG/messages/batch HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        9 << 20
    );
    exchange(addr, head.as_bytes())
        .await
        .expect_error(413, "payload_too_large");
}
