//! Headers published with `HPUB` arrive unchanged: every value of a repeated header,
//! in order, and header-only messages with an empty payload.

use crate::support::{connect, next, sync};
use async_nats::HeaderMap;
use bytes::Bytes;

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .map(|v| v.as_str().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_round_trip_with_repeated_values() {
    let broker = junction_conformance::broker().await;
    let publisher = connect(&broker).await;
    let subscriber = connect(&broker).await;
    let mut sub = subscriber.subscribe("hdr.>").await.unwrap();
    sync(&subscriber).await;

    let mut headers = HeaderMap::new();
    headers.append("X-Multi", "one");
    headers.append("X-Multi", "two");
    headers.append("X-Multi", "three");
    headers.insert("X-Single", "hello world");
    headers.insert("X-Colon", "a:b: c");
    headers.insert("Nats-Msg-Id", "id-42");
    publisher
        .publish_with_headers("hdr.full", headers, Bytes::from_static(b"body"))
        .await
        .unwrap();

    let mut only = HeaderMap::new();
    only.insert("X-Only", "no payload");
    publisher
        .publish_with_headers("hdr.empty", only, Bytes::new())
        .await
        .unwrap();

    // A plain message after header messages on the same subscription has none.
    publisher
        .publish("hdr.plain", Bytes::from_static(b"plain"))
        .await
        .unwrap();
    publisher.flush().await.unwrap();

    let m = next(&mut sub, "message with headers").await;
    assert_eq!(m.subject.as_str(), "hdr.full");
    assert_eq!(m.payload, "body");
    let h = m.headers.expect("headers delivered");
    assert_eq!(values(&h, "X-Multi"), ["one", "two", "three"]);
    assert_eq!(values(&h, "X-Single"), ["hello world"]);
    assert_eq!(values(&h, "X-Colon"), ["a:b: c"]);
    assert_eq!(values(&h, "Nats-Msg-Id"), ["id-42"]);
    assert!(m.status.is_none(), "no status on a plain header message");

    let m = next(&mut sub, "header-only message").await;
    assert_eq!(m.subject.as_str(), "hdr.empty");
    assert!(m.payload.is_empty());
    let h = m.headers.expect("headers delivered");
    assert_eq!(values(&h, "X-Only"), ["no payload"]);

    let m = next(&mut sub, "plain message").await;
    assert_eq!(m.subject.as_str(), "hdr.plain");
    assert_eq!(m.payload, "plain");
    assert!(
        m.headers.as_ref().is_none_or(|h| h.is_empty()),
        "plain message has no headers: {:?}",
        m.headers
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_reach_a_responder_and_come_back_in_the_reply() {
    let broker = junction_conformance::broker().await;
    let responder = connect(&broker).await;
    let requester = connect(&broker).await;
    let mut requests = responder.subscribe("hdr.svc").await.unwrap();
    sync(&responder).await;

    let server = tokio::spawn(async move {
        let m = next(&mut requests, "request").await;
        let incoming = m.headers.clone().expect("request headers");
        let mut reply_headers = HeaderMap::new();
        for v in incoming.get_all("X-Trace") {
            reply_headers.append("X-Trace", v.as_str());
        }
        reply_headers.insert("X-Served-By", "responder");
        responder
            .publish_with_headers(m.reply.expect("reply subject"), reply_headers, m.payload)
            .await
            .unwrap();
        responder.flush().await.unwrap();
    });

    let mut headers = HeaderMap::new();
    headers.append("X-Trace", "hop-1");
    headers.append("X-Trace", "hop-2");
    let reply = crate::support::within(
        "reply",
        requester.request_with_headers("hdr.svc", headers, Bytes::from_static(b"ping")),
    )
    .await
    .unwrap();
    assert_eq!(reply.payload, "ping");
    let h = reply.headers.expect("reply headers");
    assert_eq!(values(&h, "X-Trace"), ["hop-1", "hop-2"]);
    assert_eq!(values(&h, "X-Served-By"), ["responder"]);
    server.await.unwrap();
}
