//! A request to a subject nobody subscribes to fails at once with the `503`
//! no-responders status instead of waiting for the request timeout.

use crate::support::{connect, sync, within};
use async_nats::RequestErrorKind;
use bytes::Bytes;

#[tokio::test(flavor = "multi_thread")]
async fn request_without_subscribers_reports_no_responders() {
    let broker = junction_conformance::broker().await;
    let client = connect(&broker).await;

    let err = within(
        "no-responders reply",
        client.request("nobody.home", Bytes::from_static(b"anyone?")),
    )
    .await
    .expect_err("a request with no subscribers fails");
    assert_eq!(err.kind(), RequestErrorKind::NoResponders, "{err:?}");

    // The connection is still fine afterwards, and a second attempt fails the same way.
    let err = within(
        "second no-responders reply",
        client.request("nobody.home", Bytes::new()),
    )
    .await
    .expect_err("still no subscribers");
    assert_eq!(err.kind(), RequestErrorKind::NoResponders, "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_responders_once_the_only_responder_unsubscribed() {
    let broker = junction_conformance::broker().await;
    let responder = connect(&broker).await;
    let requester = connect(&broker).await;

    let mut sub = responder.subscribe("svc.gone").await.unwrap();
    sync(&responder).await;
    let reply = within(
        "no-responders while subscribed",
        requester.request("svc.gone", Bytes::from_static(b"x")),
    );
    // Subscribed but silent: the request is delivered, so it times out rather than
    // failing fast. Answer it instead, to prove it was delivered.
    let answer = async {
        let m = crate::support::next(&mut sub, "the request").await;
        responder
            .publish(m.reply.unwrap(), Bytes::from_static(b"here"))
            .await
            .unwrap();
        responder.flush().await.unwrap();
    };
    let (reply, ()) = tokio::join!(reply, answer);
    assert_eq!(reply.unwrap().payload, "here");

    sub.unsubscribe().await.unwrap();
    sync(&responder).await;

    let err = within(
        "no-responders reply",
        requester.request("svc.gone", Bytes::from_static(b"x")),
    )
    .await
    .expect_err("the responder is gone");
    assert_eq!(err.kind(), RequestErrorKind::NoResponders, "{err:?}");
}
